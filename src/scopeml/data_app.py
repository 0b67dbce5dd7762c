"""The data stage of scopeml-data: build a data set from its recipe, validate it, compute baselines, write the report.

The command itself (start-up, config check, failures, exit codes) is scopeml.cli.data.
"""

from __future__ import annotations

from pathlib import Path

from scopeml.training import artifacts


def report_data(config, run_dir: Path, resolved: dict) -> bool:
    """The data stage, top to bottom. Returns whether every blocking check passed."""
    from scopeml.data import build_dataset
    from scopeml.data.html import render
    from scopeml.data.report import build_report

    artifacts.save_config(run_dir, resolved)
    artifacts.mark(run_dir, "running", stage="data")
    data = build_dataset(config.data, config.scoping.classes, tolerate_bad=True)
    artifacts.write_json(run_dir / "data_fingerprint.json", data.fingerprint)
    artifacts.mark(run_dir, "running", stage="checks")
    report = build_report(data, config.data, config.seed)
    artifacts.write_json(run_dir / "report.json", report)
    (run_dir / "report.html").write_text(render(report, data.manifest, f"Data report: {config.scoping.name}"))
    data.manifest.to_parquet(run_dir / "manifest.parquet", index=False)
    _log_to_wandb(config, run_dir, report)
    _print_summary(report, run_dir)
    artifacts.mark(run_dir, "complete", stage="done", finished_utc=artifacts.now(), passed=report["passed"])
    return report["passed"]


def _log_to_wandb(config, run_dir: Path, report: dict) -> None:
    if config.tracker.kind == "none":
        return
    import wandb

    from scopeml.training.tracking import settings as tracking_settings

    run = wandb.init(
        project=config.tracker.project,
        entity=config.tracker.entity,
        mode=config.tracker.mode,
        dir=str(run_dir),
        name=f"data-{run_dir.name}",
        job_type="data-validation",
        settings=tracking_settings(),
        group=config.tracker.group,
        config={"scoping": config.scoping.name, "data": report["fingerprint"]["recipe"]},
    )
    run.summary.update({f"check/{c['name']}": c["status"] for c in report["checks"]})
    run.summary["passed"] = report["passed"]
    run.summary["data/fingerprint"] = report["fingerprint"]["fingerprint"]
    art = wandb.Artifact(
        f"data-report-{report['fingerprint']['recipe']}", type="data-report", metadata=report["fingerprint"]
    )
    art.add_file(str(run_dir / "report.json"))
    art.add_file(str(run_dir / "report.html"))
    run.log_artifact(art)
    run.finish()


def _print_summary(report: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"Data checks ({report['fingerprint']['clips']} clips, "
        f"fingerprint {report['fingerprint']['fingerprint']})"
    )
    for col in ("check", "result", "blocking", "finding"):
        table.add_column(col)
    colour = {"pass": "green", "warn": "yellow", "fail": "red"}
    for c in report["checks"]:
        table.add_row(
            c["name"],
            f"[{colour[c['status']]}]{c['status'].upper()}[/]",
            "yes" if c["blocking"] else "no",
            c["summary"],
        )
    b = report["baseline"]
    console = Console(stderr=True)
    console.print(table)
    logreg = b["logreg_mfcc"]
    console.print(
        f"baselines (test accuracy): majority {b['majority']['test']['accuracy']:.3f}, "
        + (
            f"logistic regression on MFCC stats {logreg['test']['accuracy']:.3f}"
            if "test" in logreg
            else f"logistic regression on MFCC stats skipped: {logreg['skipped']}"
        )
        + (f", pocketsphinx {b['pocketsphinx']['test']['accuracy']:.3f}" if "pocketsphinx" in b else "")
        + (f"; best on {b['chosen_on']}: {b['best']}" if b.get("chosen_on") else "")
    )
    console.print(f"report: {run_dir / 'report.html'}")

"""Hydra callbacks for sweeps: check every job's config before the first starts, and summarize at the end.

Registered in conf/config.yaml under hydra.callbacks, so any `scopeml-train -m ...` gets them.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from scopeml.metrics import CATEGORY_METRICS, QUALITY
from scopeml.run_files import RunFileError, RunMetrics, RunStatus, read_metrics, read_status

log = logging.getLogger("scopeml.sweep")


class SweepGuard(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Compose and check every job of a grid sweep up front: a typo in job 7 must not cost jobs 1-6."""
        from hydra import compose
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        from scopeml.config import ConfigError, load
        from scopeml.stage import ExitCode

        task = list(config.hydra.overrides.task)
        parsed = OverridesParser.create().parse_overrides(task)
        params = OmegaConf.select(config, "hydra.sweeper.params")  # a search sweeper's space (scopeml.hpo)
        searched = [o for o in parsed if o.is_sweep_override()]
        search = params is not None or any(not (o.is_choice_sweep() or o.is_range_sweep()) for o in searched)
        if search:
            # A search samples each key on its own: check every choice of each searched key (an interval's two ends)
            # once, not the product. Row i sets each key to its i-th value (cycling), beside the fixed part.
            # As scopeml.hpo.parse_space reads them: the params, then the command line in order, a later line
            # replacing an earlier one for its key, whether it searches the key or fixes it.
            lines = {k: param_line(k, v) for k, v in (params or {}).items() if not isinstance(v, (dict, DictConfig))}
            fixed: dict[str, str] = {}
            for o in parsed:
                key = o.get_key_element()
                if o.is_sweep_override():
                    lines[key] = o.input_line
                    fixed.pop(key, None)
                else:
                    fixed[key] = o.input_line
                    lines.pop(key, None)
            values = [search_values(line) for line in lines.values()]
            rows = max((len(v) for v in values), default=1)
            jobs = [[*fixed.values(), *(v[i % len(v)] for v in values)] for i in range(rows)]
        else:
            jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
        problems: dict[str, list[str]] = {}
        for overrides in jobs:
            try:
                load(compose(config_name=config.hydra.job.config_name, overrides=overrides))
            except ConfigError as exc:
                for p in exc.problems:
                    problems.setdefault(p, []).append(" ".join(overrides))
            except Exception as exc:  # Hydra's own composition errors (unknown key without +, bad group option)
                problems.setdefault(str(exc).splitlines()[0], []).append(" ".join(overrides))
        if problems:
            lines = [
                f"  - {p}  (in {len(jobs_)} of {len(jobs)} jobs, e.g. {jobs_[0]})" for p, jobs_ in problems.items()
            ]
            print(
                f"scopeml-train: error: the sweep was not started; {len(problems)} problem(s) in its configs:",
                *lines,
                sep="\n",
                file=sys.stderr,
            )
            raise SystemExit(ExitCode.BAD_INPUT)
        if search:
            log.info("search: every searched value checked, in %d config(s)", len(jobs))
        else:
            log.info("sweep of %d job(s): every config checked", len(jobs))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = summarize(sweep_dir)
        if not rows:
            return
        write_summary(sweep_dir, rows)
        _log_summary_to_wandb(config, sweep_dir, rows)
        failed = [r for r in rows if r["status"] not in ("complete", "pruned")]
        pruned = sum(r["status"] == "pruned" for r in rows)
        report = log.warning if failed else log.info
        report(
            "sweep summary: %d job(s), %d failed%s%s; see %s",
            len(rows),
            len(failed),
            f" (jobs {', '.join(r['job'] for r in failed)})" if failed else "",
            f", {pruned} pruned by the Optuna sweeper" if pruned else "",
            sweep_dir / "sweep_summary.md",
        )


def param_line(key: str, value: Any) -> str:
    """One entry of hydra.sweeper.params as an override line (None is null, booleans lowercase, as YAML wrote them)."""
    text = "null" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
    return f"{key}={text}"


def search_values(line: str, most: int = 50) -> list[str]:
    """The overrides that stand for a searched key when its configs are checked: `key=v` for each choice (and range
    value, up to `most`), an interval's two ends; a fixed `key=value` stands for itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(line)
    key = override.get_key_element()
    if not override.is_sweep_override():
        return [line]
    if override.is_interval_sweep():
        value = override.value()
        ints = re.search(r"interval\(\s*[-+]?\d+\s*,\s*[-+]?\d+\s*\)", line)
        return [format_override(key, int(v) if ints else float(v)) for v in (value.start, value.end)]
    return [format_override(key, v) for v in list(override.sweep_iterator())[:most]]


def format_override(key: str, value: Any) -> str:
    """`key=value` as Hydra's override parser reads back to the same value (quoted where it must be)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"{key}={value!r}"
    if isinstance(value, (list, dict)):
        from hydra.core.override_parser.types import Override

        return f"{key}={Override._get_value_element_as_str(value)}"
    text = str(value)
    try:
        if OverridesParser.create().parse_override(f"{key}={text}").value() == text:
            return f"{key}={text}"
    except Exception:
        pass
    return f"{key}={quote(text)}"


def quote(text: str) -> str:
    """A single-quoted Hydra override string."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def summarize(sweep_dir: Path) -> list[dict]:
    """One row per job folder: the overrides that make it different, its status and metrics, and its gates."""
    rows = []
    for job in sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").exists()), key=_job_number):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        status = _read(read_status, job) or RunStatus("not started")
        metrics = _read(read_metrics, job) or RunMetrics()
        row = {"job": job.name, "overrides": " ".join(overrides), "status": status.status}
        if status.status == "failed":
            row["error"] = (str(status.error or "").splitlines() or [""])[0][:200]
        pruned = status.extra.get("pruned") if status.status == "pruned" else None
        if isinstance(pruned, dict):  # stopped on purpose by the Optuna sweeper: at which epoch, on what score
            value = pruned.get("value")
            row["pruned_at"] = f"epoch {pruned.get('epoch')}" + (f" ({value:.4f})" if isinstance(value, float) else "")
        # The split each job is judged on (validation, or the cross-validation mean ± std): the test split
        # is left out of the summary, so no one picks a configuration by it.
        cv = metrics.cv or {}
        chosen_on = metrics.selection_scores
        row["split"] = metrics.selection_split if status.status == "complete" else None
        for key in QUALITY:
            if key not in chosen_on and key in CATEGORY_METRICS:
                continue  # a scoping without category classes has no such column
            row[key] = chosen_on.get(key)
            if cv:
                row[f"{key}_std"] = cv.get("std", {}).get(key)
        if cv:
            row["folds"] = " ".join(f"{'+'.join(f['speakers'])}:{f['accuracy']:.3f}" for f in cv.get("per_fold", []))
        row["model_size_mb"] = metrics.model.get("model_size_mb")
        row["targets_met"] = metrics.targets_met
        row["missed_gates"] = ", ".join(t.metric for t in metrics.targets if t.passed is False)
        rows.append(row)
    _mark_varying(rows)
    return rows


def _mark_varying(rows: list[dict]) -> None:
    """Keep only the overrides that differ between jobs: shared ones say nothing about the comparison."""
    split = [dict(o.split("=", 1) for o in r["overrides"].split() if "=" in o) for r in rows]
    varying = {k for k in set().union(*split) if len({s.get(k) for s in split}) > 1}
    for row, ov in zip(rows, split):
        row["overrides"] = " ".join(f"{k}={ov[k]}" for k in sorted(varying) if k in ov)


def write_summary(sweep_dir: Path, rows: list[dict]) -> None:
    import pandas as pd

    table = pd.DataFrame(rows)
    table.to_csv(sweep_dir / "sweep_summary.csv", index=False)
    cols = [c for c in table.columns if c != "error"]
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        md.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    errors = [f"- job {r['job']}: {r['error']}" for r in rows if r.get("error")]
    (sweep_dir / "sweep_summary.md").write_text(
        "\n".join(["# Sweep summary", "", *md, "", *(["## Failed jobs", "", *errors] if errors else [])]) + "\n"
    )


def _log_summary_to_wandb(config: DictConfig, sweep_dir: Path, rows: list[dict]) -> None:
    tracker = config.get("tracker", {})
    if tracker.get("kind") != "wandb":
        return
    import pandas as pd
    import wandb

    from scopeml.training.tracking import settings as tracking_settings

    run = wandb.init(
        project=tracker.get("project"),
        entity=tracker.get("entity"),
        mode=tracker.get("mode"),
        dir=str(sweep_dir),
        name=f"sweep-{sweep_dir.name}",
        group=tracker.get("group") or sweep_dir.name,
        job_type="sweep-summary",
        settings=tracking_settings(),
    )
    run.log({"sweep_summary": wandb.Table(dataframe=pd.DataFrame(rows).astype(str))})
    run.summary.update({"jobs": len(rows), "failed": sum(r["status"] != "complete" for r in rows)})
    run.finish()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


def _job_number(path: Path) -> tuple:
    head = path.name.split("_", 1)[0]
    return (int(head), path.name) if head.isdigit() else (1 << 30, path.name)


def _read(reader, job: Path):
    """A run file of the job, or None when it is missing or unreadable (a job that never got that far)."""
    try:
        return reader(job)
    except RunFileError:
        return None

"""The lifecycle report: one static HTML page and a Markdown summary a person reads at the end.

Every scoping target beside what each phase achieved (offline metrics, serving latency and
throughput, model size, estimated and realized accuracy in production), then the evidence:
data checks, the sweep table and selection, error analysis, and drift in production.
Self-contained: plots are inlined PNGs, no scripts, nothing fetched.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from scopeml.metrics import METRICS
from scopeml.run_files import RunFileError, RunMetrics, Selection, read_metrics, read_selection

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.4}
h1{margin-bottom:.1em} .sub{color:#666} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.8em 0} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px}
.pass{color:#1a7f37;font-weight:600} .warn{color:#9a6700;font-weight:600} .fail{color:#cf222e;font-weight:600} .na{color:#888}
img{max-width:100%} code{background:#f4f4f4;padding:1px 4px}
"""


def _read(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _read_run_file(reader, path: Path | None, empty):
    """A run file through its typed reader (scopeml.run_files), or `empty` when the stage did not get that far."""
    try:
        return reader(path) if path is not None else empty
    except RunFileError:
        return empty


def gather(lc) -> dict:
    """Everything the report shows, read from the stages' artifacts."""
    selection = _read_run_file(read_selection, lc.dir("select") / "selection.json", Selection())
    run_dir = Path(selection.selected.run_dir) if selection.selected else None
    return {
        "data": _read(lc.dir("data") / "report.json"),
        "sweep": pd.read_csv(lc.dir("sweep") / "sweep_summary.csv")
        if (lc.dir("sweep") / "sweep_summary.csv").exists()
        else None,
        "selection": selection,
        "run_dir": run_dir,
        "metrics": _read_run_file(read_metrics, run_dir, RunMetrics()),
        "scorecard": _read(lc.dir("loadtest") / "scorecard.json"),
        "simulation": (
            json.loads((lc.dir("simulate") / "simulation.json").read_text())
            if (lc.dir("simulate") / "simulation.json").exists()
            else []
        ),
        "monitor": _read(lc.dir("monitor") / "summary.json"),
        "log": Path(lc.env["SCOPEML_PREDICTION_LOG"]),
        "labels": {
            p.name.removesuffix("_labels.csv"): pd.read_csv(p) for p in sorted(lc.dir("simulate").glob("*_labels.csv"))
        },
        "stages": {s: _read(lc.dir(s) / "stage.json") for s in lc.STAGES[:-1]},
    }


def production_by_scenario(facts: dict) -> pd.DataFrame:
    """Each logged prediction with the scenario that sent it and, where labels arrived, its true label."""
    from scopeml.monitoring.labels import read_labels
    from scopeml.serving.log import read_log

    if not facts["log"].exists():
        return pd.DataFrame()
    log = read_log(facts["log"]).rename(columns={"label": "pred"})
    scenario = {rid: name for name, table in facts["labels"].items() for rid in table["request_id"]}
    log["scenario"] = log["request_id"].map(scenario)
    truth = read_labels(facts["log"]).set_index("request_id")["label"]
    log["truth"] = log["request_id"].map(truth)
    return log[log["scenario"].notna()].reset_index(drop=True)


def target_rows(facts: dict, production: pd.DataFrame) -> list[dict]:
    """Every scoping target with what was achieved in the phase that can measure it."""
    offline = facts["metrics"].measured
    chosen_on = {"val": "validation split, unseen voices", "cv": "cross-validation mean, held-out voices"}.get(
        facts["metrics"].selection_split, f"{facts['metrics'].selection_split} split"
    )
    serving = facts["scorecard"].get("measured", {})
    monitor = facts["monitor"]
    estimated = _min_estimated_accuracy(monitor)
    labelled = production[production["truth"].notna()] if len(production) else production
    realized = float((labelled["pred"] == labelled["truth"]).mean()) if len(labelled) else None
    rows = []
    for t in facts["metrics"].targets:
        name = t.metric
        if name in offline:
            value, phase = offline[name], f"modeling ({chosen_on}; chose the model)"
        elif name in serving:
            value, phase = serving[name], "deployment (load test)"
        elif name == "estimated_accuracy":
            value, phase = estimated, "monitoring (lowest chunk, NannyML CBPE)"
        else:
            value, phase = None, METRICS[name].phase
        passed = None if value is None else (value >= t.target if t.op == ">=" else value <= t.target)
        rows.append({"metric": name, "bound": f"{t.op} {t.target:g}", "phase": phase, "value": value, "passed": passed})
    test = facts["metrics"].test
    for t in facts["metrics"].targets:
        if t.metric in test:
            rows.append(
                {
                    "metric": f"{t.metric} (test split, reported once)",
                    "bound": f"{t.op} {t.target:g}",
                    "phase": "modeling (test split, unseen voices; chose nothing)",
                    "value": test[t.metric],
                    "passed": test[t.metric] >= t.target if t.op == ">=" else test[t.metric] <= t.target,
                }
            )
    if realized is not None:
        acc = next((t for t in facts["metrics"].targets if t.metric == "accuracy"), None)
        rows.append(
            {
                "metric": "accuracy (realized in production)",
                "bound": f">= {acc.target:g}" if acc else "-",
                "phase": "monitoring (labels delivered)",
                "value": realized,
                "passed": (realized >= acc.target) if acc else None,
            }
        )
    return rows


ESTIMATE_GAP_GOAL = 0.03  # the monitoring issue's goal: CBPE within 0.03 of realized accuracy under covariate shift


def estimate_gap_rows(scenarios: pd.DataFrame) -> list[dict]:
    """How far CBPE's estimate (made before labels) was from the accuracy the labels then showed, worst scenario."""
    if not len(scenarios) or scenarios["estimate - realized"].isna().all():
        return []
    gaps = scenarios.dropna(subset=["estimate - realized"])
    worst = gaps.loc[gaps["estimate - realized"].abs().idxmax()]
    return [
        {
            "metric": "|CBPE estimate - realized accuracy|",
            "bound": f"<= {ESTIMATE_GAP_GOAL:g}",
            "phase": f"monitoring (worst scenario: {worst['scenario']})",
            "value": abs(float(worst["estimate - realized"])),
            "passed": bool(abs(worst["estimate - realized"]) <= ESTIMATE_GAP_GOAL),
        }
    ]


def _min_estimated_accuracy(monitor: dict) -> float | None:
    value = monitor.get("headline", {}).get("min_estimated_accuracy")
    return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else None


def write_report(lc, out: Path) -> tuple[Path, Path]:
    facts = gather(lc)
    production = production_by_scenario(facts)
    targets = target_rows(facts, production)
    scenarios = _scenario_table(production, facts["monitor"].get("chunks", []))
    targets += estimate_gap_rows(scenarios)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(_html(facts, targets, scenarios, production))
    md_path.write_text(_markdown(facts, targets, scenarios))
    return html_path, md_path


def _scenario_table(production: pd.DataFrame, chunks: list[dict]) -> pd.DataFrame:
    """Per scenario: realized accuracy from the delivered labels next to what CBPE estimated before them.

    The estimate is the row-weighted mean of the CBPE chunks the scenario's predictions fell in
    (the monitor's analysis rows are the scenario rows in log order, so chunk row ranges map onto them).
    """
    if not len(production):
        return pd.DataFrame()
    estimated = _estimated_per_row(chunks, len(production))
    rows = []
    for name, g in production.groupby("scenario", sort=False):
        labelled = g[g["truth"].notna()]
        realized = float((labelled["pred"] == labelled["truth"]).mean()) if len(labelled) else None
        est = float(np.mean(estimated[g.index])) if estimated is not None else None
        rows.append(
            {
                "scenario": name,
                "predictions": len(g),
                "labelled": len(labelled),
                "realized accuracy": realized,
                "estimated accuracy (CBPE)": est,
                "estimate - realized": None if est is None or realized is None else est - realized,
                "mean confidence": float(g["confidence"].mean()),
                "spectral centroid (Hz)": float(g["spectral_centroid_hz"].median()),
                "SNR (dB)": float(g["snr_db"].median()),
            }
        )
    return pd.DataFrame(rows)


def _estimated_per_row(chunks: list[dict], n_rows: int) -> np.ndarray | None:
    """Each analysis row's chunk estimate of accuracy, or None when the chunks do not cover exactly these rows."""
    if not chunks or sum(int(c.get("rows") or 0) for c in chunks) != n_rows:
        return None
    out = np.full(n_rows, np.nan)
    for c in chunks:
        value = (c.get("estimated") or {}).get("accuracy", {}).get("value")
        if isinstance(value, (int, float)):
            out[int(c["start_index"]) : int(c["end_index"]) + 1] = value
    return None if np.isnan(out).any() else out


# ---------------------------------------------------------------------------------- HTML
def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))


def _result(passed) -> str:
    return {
        True: "<span class=pass>PASS</span>",
        False: "<span class=fail>FAIL</span>",
        None: "<span class=na>not measured</span>",
    }[passed]


def _table(df: pd.DataFrame) -> str:
    if df is None or not len(df):
        return "<p class=na>nothing recorded</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in df.itertuples(index=False))
    return f"<table><tr>{head}</tr>{body}</table>"


def _img_file(path: Path) -> str:
    if not path or not Path(path).exists():
        return "<p class=na>not available</p>"
    return f"<img alt='{html.escape(Path(path).name)}' src='data:image/png;base64,{base64.b64encode(Path(path).read_bytes()).decode()}'>"


def _production_plot(production: pd.DataFrame) -> str:
    if not len(production):
        return "<p class=na>no production traffic logged</p>"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2), dpi=100)
    window = max(len(production) // 30, 10)
    correct = (production["pred"] == production["truth"]).where(production["truth"].notna())
    for ax, series, title in (
        (axes[0], correct, "realized accuracy (rolling)"),
        (axes[1], production["spectral_centroid_hz"], "spectral centroid, Hz"),
        (axes[2], production["snr_db"], "estimated SNR, dB"),
    ):
        for name, g in production.groupby("scenario", sort=False):
            ax.plot(g.index, series.loc[g.index].rolling(window, min_periods=1).mean(), label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("request")
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f"<img alt='production drift' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _html(facts: dict, targets: list[dict], scenarios: pd.DataFrame, production: pd.DataFrame) -> str:
    sel = facts["selection"].selected
    rejects = facts["selection"].rejected
    flagged = (facts["metrics"].error_analysis or {}).get("flagged_slices", [])
    data = facts["data"]
    monitor = facts["monitor"]
    stages = "".join(
        f"<tr><td>{html.escape(s)}</td><td>{_fmt(r.get('seconds'))}</td></tr>" for s, r in facts["stages"].items() if r
    )
    parts = [
        "<h1>scopeml lifecycle report</h1>",
        f"<p class=sub>selected model: <code>{_fmt(facts['metrics'].model.get('arch'))}</code> "
        f"(sweep job {_fmt(sel and sel.run_name)}) · "
        f"primary metric {_fmt(sel and sel.primary_metric)} = {_fmt(sel and sel.value)}</p>",
        "<h2 id=targets>Scoping targets against every phase</h2>",
        "<table><tr><th>target</th><th>bound</th><th>measured in</th><th>achieved</th><th>result</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(t['metric'])}</td><td>{html.escape(t['bound'])}</td><td>{html.escape(t['phase'])}</td>"
            f"<td>{_fmt(t['value'])}</td><td>{_result(t['passed'])}</td></tr>"
            for t in targets
        )
        + "</table>",
        "<h2 id=data>Data</h2>",
        "<table><tr><th>check</th><th>result</th><th>finding</th></tr>"
        + "".join(
            f"<tr><td>{html.escape(c['name'])}</td><td class={c['status']}>{c['status'].upper()}</td><td>{html.escape(c['summary'])}</td></tr>"
            for c in data.get("checks", [])
        )
        + "</table>",
        f"<p>baselines (test accuracy): majority {_fmt(data.get('baseline', {}).get('majority', {}).get('test', {}).get('accuracy'))}, "
        f"logistic regression on MFCC statistics {_fmt(data.get('baseline', {}).get('logreg_mfcc', {}).get('test', {}).get('accuracy'))}</p>",
        "<h2 id=sweep>Sweep and selection</h2>",
        _table(facts["sweep"]),
        f"<p>selected: <code>{_fmt(sel and sel.run_dir)}</code></p>",
        "<ul>"
        + "".join(f"<li>{html.escape(Path(r.run_dir).name)}: {html.escape('; '.join(r.reasons))}</li>" for r in rejects)
        + "</ul>",
        "<h2 id=errors>Error analysis (test split)</h2>",
        _img_file(facts["run_dir"] / "errors" / "confusion_matrix.png" if facts["run_dir"] else None),
        "<p>flagged slices: "
        + html.escape(", ".join(f"{s.get('slice')}={s.get('value')}" for s in flagged) or "none")
        + "</p>",
        "<h2 id=serving>Serving</h2>",
        _table(
            pd.DataFrame(facts["scorecard"].get("levels", []))[
                ["concurrency", "requests", "error_rate", "qps", "p50_ms", "p95_ms", "p99_ms"]
            ]
            if facts["scorecard"].get("levels")
            else None
        ),
        "<h2 id=production>Production: simulated traffic, drift and monitoring</h2>",
        _table(scenarios),
        _production_plot(production),
        "<p>drifted features: "
        + html.escape(", ".join(map(str, monitor.get("drifted_features", []))) or "none")
        + "</p>",
        "<ul>" + "".join(f"<li>{html.escape(str(r))}</li>" for r in monitor.get("recommendations", [])) + "</ul>",
        "<h2 id=stages>Stages</h2><table><tr><th>stage</th><th>seconds</th></tr>" + stages + "</table>",
    ]
    return f"<!doctype html><html><head><meta charset=utf-8><title>scopeml lifecycle report</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"


def _markdown(facts: dict, targets: list[dict], scenarios: pd.DataFrame) -> str:
    lines = [
        "# scopeml lifecycle report",
        "",
        "## Scoping targets",
        "",
        "| target | bound | measured in | achieved | result |",
        "|---|---|---|---|---|",
    ]
    for t in targets:
        lines.append(
            f"| {t['metric']} | {t['bound']} | {t['phase']} | {_fmt(t['value'])} | {({True: 'PASS', False: 'FAIL', None: '-'})[t['passed']]} |"
        )
    if len(scenarios):
        lines += [
            "",
            "## Production scenarios",
            "",
            "| " + " | ".join(scenarios.columns) + " |",
            "|" + "---|" * len(scenarios.columns),
        ]
        lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in scenarios.itertuples(index=False)]
    recs = facts["monitor"].get("recommendations", [])
    if recs:
        lines += ["", "## Next steps", ""] + [f"- {r}" for r in recs]
    return "\n".join(lines) + "\n"

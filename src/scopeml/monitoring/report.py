"""scopeml-monitor's outputs besides summary.json: estimated.csv, drift.csv, realized.csv, next_experiment.yaml,
a self-contained report.html (NannyML's plotly figures, plotly.js inline once), and the console summary.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path

from scopeml.monitoring.findings import band, experiment_yaml, fmt3


def write_outputs(results, summary: dict, run_dir: Path) -> None:
    """estimated.csv, drift.csv, realized.csv, report.html and next_experiment.yaml (summary.json is the caller's)."""
    import pandas as pd

    flat = results.estimated.filter(period="analysis").to_df(multilevel=False)
    flat.to_csv(run_dir / "estimated.csv", index=False)
    drift = results.drift["univariate"].filter(period="analysis").to_df(multilevel=False)
    if results.drift["multivariate"] is not None:
        mv = results.drift["multivariate"].filter(period="analysis").to_df(multilevel=False)
        drift = pd.concat([drift, mv[[c for c in mv.columns if not c.startswith("chunk")]]], axis=1)
    drift.to_csv(run_dir / "drift.csv", index=False)
    side_by_side(summary).to_csv(run_dir / "realized.csv", index=False)
    if summary["next_experiment"]:
        (run_dir / "next_experiment.yaml").write_text(experiment_yaml(summary["next_experiment"], summary))
    (run_dir / "report.html").write_text(render_html(results, summary))


def side_by_side(summary: dict):
    import pandas as pd

    rows = []
    for c in summary["chunks"]:
        row = {"chunk": c["key"], "rows": c["rows"], "labeled": c["labeled"]}
        for m in summary["metrics"]:
            row |= {
                f"estimated_{m}": c["estimated"][m]["value"],
                f"realized_{m}": c["realized"][m],
                f"abs_difference_{m}": c["difference"][m],
            }
        rows.append(row)
    return pd.DataFrame(rows)


def render_html(results, summary: dict) -> str:
    """One self-contained page: plotly.js inline once in <head>, every NannyML figure as a div without it."""
    from plotly.offline import get_plotlyjs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figs = _figures(results, summary)
    div = {k: [f.to_html(full_html=False, include_plotlyjs=False) for f in v] for k, v in figs.items()}
    h = html.escape
    status = (
        f"<p class='bad'>Alerts that fail this check: {h(', '.join(summary['failed_on']))}</p>"
        if summary["failed_on"]
        else "<p class='ok'>No alert of a kind in monitor.fail_on.</p>"
    )
    b, log = summary["bounds"], summary["log"]
    chunk_table = _html_table(
        ["chunk", "rows", "estimated accuracy [band]", "estimated f1", "NannyML alert", "below bound"],
        [
            [
                c["key"],
                c["rows"],
                f"{fmt3(c['estimated']['accuracy']['value'])} [{band(c['estimated']['accuracy'])}]",
                fmt3(c["estimated"].get("f1", {}).get("value")),
                "yes" if any(e["nannyml_alert"] for e in c["estimated"].values()) else "",
                "ALERT" if c["alerts"]["performance"] else "",
            ]
            for c in summary["chunks"]
        ],
    )
    real_table = (
        _html_table(
            ["chunk", "labelled", "estimated accuracy", "realized accuracy", "|difference|"],
            [
                [
                    c["key"],
                    c["labeled"],
                    fmt3(c["estimated"]["accuracy"]["value"]),
                    fmt3(c["realized"]["accuracy"]),
                    fmt3(c["difference"]["accuracy"]),
                ]
                for c in summary["chunks"]
                if c["labeled"]
            ],
        )
        if summary["counts"]["chunks_with_labels"]
        else "<p>No labels yet: deliver them with <code>scopeml-label</code>.</p>"
    )
    drift_table = _html_table(
        ["column", "kind", "method", "alerting chunks", "threshold", "max", "drifted"],
        [
            [
                col,
                d["kind"],
                d["method"],
                f"{d['alerting_chunks']} / {d['chunks']}",
                fmt3(d["upper_threshold"]),
                fmt3(d["max_value"]),
                "DRIFTED" if d["drifted"] else "",
            ]
            for col, d in summary["drift"]["columns"].items()
        ],
    )
    slices = "".join(f"<li>{h(s['text'])}</li>" for s in summary["slices"]) or "<li>No drifted continuous feature.</li>"
    explained = "".join(f"<li>{h(e['chunk'])}: {h(e['text'])}</li>" for e in summary["alert_chunks"])
    alerts = (
        "".join(f"<li class='{h(a['kind'])}'><b>{h(a['kind'])}</b>: {h(a['message'])}</li>" for a in summary["alerts"])
        or "<li>None.</li>"
    )
    recs = "".join(f"<li>{h(r)}</li>" for r in summary["recommendations"])
    exp = (
        f"<h3>next_experiment.yaml</h3><pre>{h(experiment_yaml(summary['next_experiment'], summary))}</pre>"
        if summary["next_experiment"]
        else ""
    )
    class_rows = summary.get("classes") or []
    class_table = _html_table(
        ["class", "predicted (reference)", "predicted (log)", "labelled", "realized recall"],
        [
            [
                c["class"],
                f"{c['reference_predicted_share']:.1%}",
                f"{c['predicted_share']:.1%}",
                c["labelled"],
                fmt3(c["realized_recall"]),
            ]
            for c in class_rows
        ],
    )
    classes = ", ".join(summary["model"]["classes"])
    notes = "".join(f"<li>{h(n)}</li>" for n in summary["notes"])
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Monitoring: {h(summary["model"]["tag"])}</title>
<script type="text/javascript">{get_plotlyjs()}</script>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} .bad{{color:#b00;font-weight:bold}} .ok{{color:#070;font-weight:bold}}
li.performance,li.realized{{color:#b00}} .scroll{{max-height:400px;overflow:auto}}</style></head><body>
<h1>Monitoring report: {h(summary["model"]["tag"])}</h1>
<p>Classes: {h(classes)}.</p>
<p>Log {h(log["path"])}: {log["model_rows"]} prediction(s) of this model ({log["labeled"]} labelled) from {h(str(log["first_time"]))} to {h(str(log["last_time"]))};
reference: {summary["reference"]["rows"]} held-out predictions. Chunking: {h(str({k: v for k, v in summary["chunking"].items() if k != "timestamp_column_name"}))}.
Bound on estimated accuracy: {fmt3(b["estimated_accuracy"])} ({h(str(b["estimated_accuracy_source"]))}); realized accuracy target: {fmt3(b["realized_accuracy"])}.</p>
{status}<ul>{notes}</ul>
<section id="estimated-performance"><h2>Estimated performance (CBPE, no labels)</h2>{"".join(div["estimated"])}<div class="scroll">{chunk_table}</div></section>
<section id="realized-vs-estimated"><h2>Realized vs estimated</h2>{"".join(div["comparison"])}<div class="scroll">{real_table}</div></section>
<section id="classes"><h2>Per class</h2>{class_table if class_rows else "<p>-</p>"}</section>
<section id="drift"><h2>Drift</h2>{"".join(div["drift"])}{drift_table}<h3>Slices that moved</h3><ul>{slices}</ul>
{f"<h3>What moved in the alerting chunks</h3><ul>{explained}</ul>" if explained else ""}</section>
<section id="alerts"><h2>Alerts</h2><ul>{alerts}</ul></section>
<section id="next-steps"><h2>Next steps</h2><ol>{recs}</ol>{exp}</section>
</body></html>
"""


def _figures(results, summary: dict) -> dict:
    figs: dict = {"estimated": [results.estimated.plot()], "comparison": [], "drift": []}
    if results.realized is not None:
        figs["comparison"] = [
            results.estimated.filter(metrics=[m]).compare(results.realized.filter(metrics=[m])).plot()
            for m in summary["metrics"]
        ]
    figs["drift"].append(results.drift["univariate"].plot(kind="drift"))
    if results.drift["multivariate"] is not None:
        figs["drift"].append(results.drift["multivariate"].plot())
    drifted = [s["feature"] for s in summary["slices"]]
    if drifted and len(summary["chunks"]) <= 60:  # joy plots of hundreds of chunks are too heavy to be useful
        figs["drift"].append(results.drift["univariate"].filter(column_names=drifted).plot(kind="distribution"))
    return figs


def _html_table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def print_summary(summary: dict, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    chunks = summary["chunks"]
    shown = (
        chunks
        if len(chunks) <= 24
        else [c for i, c in enumerate(chunks) if i < 3 or i >= len(chunks) - 3 or _alerting(c)][:24]
    )
    title = (
        f"{summary['model']['tag']}: {summary['log']['model_rows']} predictions, {summary['log']['labeled']} labelled"
    )
    table = Table(
        title=title
        + (f" ({len(shown)} of {len(chunks)} chunks: first, last and alerting)" if len(shown) < len(chunks) else "")
    )
    for col in ("chunk", "rows", "estimated acc [band]", "realized acc", "drift alerts"):
        table.add_column(col, no_wrap=col != "drift alerts")
    for c in shown:
        e = c["estimated"]["accuracy"]
        est = f"{fmt3(e['value'])} [{_fmt2(e['lower'])}-{_fmt2(e['upper'])}]"
        real = f"{fmt3(c['realized']['accuracy'])} (n={c['labeled']})" if c["realized"]["accuracy"] is not None else "-"
        table.add_row(
            c["key"],
            str(c["rows"]),
            f"[red]{est}[/]" if c["alerts"]["performance"] else est,
            f"[red]{real}[/]" if c["alerts"]["realized"] else real,
            ", ".join(c["alerts"]["drift"]),
        )
    console = Console(stderr=True)
    console.print(table)
    if summary["drifted_features"]:
        console.print(f"drifted: {', '.join(summary['drifted_features'])}")
    for s in summary["slices"]:
        console.print(f"  - {s['text']}")
    console.print("next steps:")
    for r in summary["recommendations"]:
        console.print(f"  - {r}")
    verdict = f"[red]ALERT ({', '.join(summary['failed_on'])})[/]" if summary["failed_on"] else "[green]OK[/]"
    console.print(f"{verdict}  report: {run_dir / 'report.html'}")


# --------------------------------------------------------------------------- small helpers
def _alerting(c: dict) -> bool:
    return bool(c["alerts"]["performance"] or c["alerts"]["realized"] or c["alerts"]["drift"])


def _fmt2(x) -> str:
    return "-" if x is None else f"{x:.2f}"

"""Render the data report as one self-contained HTML page (plots inlined as PNG)."""

from __future__ import annotations

import base64
import html
import io

import numpy as np
import pandas as pd

from scopeml.data.dataset import SPLITS

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{margin-bottom:0} .sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:1em 0} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px}
.pass{color:#1a7f37;font-weight:600} .warn{color:#9a6700;font-weight:600} .fail{color:#cf222e;font-weight:600}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1em} img{max-width:100%} details{margin:.3em 0}
"""


def render(report: dict, manifest: pd.DataFrame, title: str) -> str:
    fp = report["fingerprint"]
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=sub>recipe <b>{html.escape(str(fp['recipe']))}</b> · fingerprint <code>{fp['fingerprint']}</code> · "
        f"{fp['clips']} clips · {len(report['speakers'])} speakers · {'<span class=pass>all blocking checks pass</span>' if report['passed'] else '<span class=fail>blocking checks fail: ' + ', '.join(report['blocking_failures']) + '</span>'}</p>",
        "<h2 id=checks>Checks</h2>",
        _checks_table(report["checks"]),
        "<h2 id=baseline>Baselines</h2>",
        _baseline_table(report["baseline"]),
        "<h2 id=balance>Class balance</h2>",
        _img(_balance_plot(report["balance"])),
        "<h2 id=speakers>Speakers</h2>",
        _img(_speaker_plot(manifest)),
        "<h2 id=audio>Audio</h2><div class=grid>",
    ]
    for col, label in (
        ("duration_ms", "duration (ms)"),
        ("lead_ms", "leading silence (ms)"),
        ("trail_ms", "trailing silence (ms)"),
        ("loudness_lufs", "loudness (LUFS)"),
        ("rms_dbfs", "RMS level (dBFS)"),
        ("clipped_fraction", "fraction of samples clipped"),
    ):
        if col in manifest:
            parts.append(_img(_hist(manifest, col, label)))
    parts.append("</div>")
    parts.append(
        "<h2 id=formats>Formats</h2>"
        + _kv_table(
            {"sample rates (Hz)": report["formats"].get("sample_rates"), "channels": report["formats"].get("channels")}
        )
    )
    return f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"


def _checks_table(checks: list[dict]) -> str:
    rows = []
    for c in checks:
        details = html.escape(str(c["details"])[:3000])
        rows.append(
            f"<tr><td>{c['name']}</td><td class={c['status']}>{c['status'].upper()}</td><td>{'yes' if c['blocking'] else 'no'}</td>"
            f"<td>{html.escape(c['summary'])}<details><summary>details</summary><pre style='white-space:pre-wrap'>{details}</pre></details></td></tr>"
        )
    return "<table><tr><th>check</th><th>result</th><th>blocking</th><th>finding</th></tr>" + "".join(rows) + "</table>"


def _baseline_table(b: dict) -> str:
    names = [n for n in ("majority", "logreg_mfcc", "pocketsphinx") if n in b]
    chosen_on = b.get("chosen_on") or "val"
    rows = "".join(
        f"<tr><td>{name}{f' (best on {chosen_on})' if b.get('best') == name else ''}</td>"
        + "".join(
            f"<td>{b[name][s]['accuracy']:.3f}</td><td>{b[name][s]['macro_f1']:.3f}</td>"
            if s in b[name]
            else "<td>-</td><td>-</td>"
            for s in ("val", "test")
        )
        + "</tr>"
        for name in names
    )
    note = "".join(
        f"<p class=sub>{name} skipped: {html.escape(str(b[name]['skipped']))}</p>"
        for name in names
        if "skipped" in b[name]
    )
    if "pocketsphinx" in b:
        ps = b["pocketsphinx"]
        note += (
            f"<p class=sub>{html.escape(ps['model'])}, listening for "
            f"{html.escape(', '.join(ps['words'].values()))}; no hypothesis is "
            f"{html.escape(str(ps['no_hypothesis'] or 'counted wrong'))} "
            f"({', '.join(f'{s}: {k} clips' for s, k in ps['no_hypothesis_clips'].items())}); "
            f"{ps['ms_per_clip']:.1f} ms per clip</p>"
        )
    return (
        "<table><tr><th>baseline</th><th>val accuracy</th><th>val macro-F1</th><th>test accuracy</th><th>test macro-F1</th></tr>"
        + rows
        + "</table>"
        + note
    )


def _kv_table(d: dict) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in d.items())
        + "</table>"
    )


def _figure(width=6.0, height=3.2):
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100)


def _img(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return f"<img alt='plot' src='data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}'>"


def _balance_plot(balance: dict):
    fig, ax = _figure(11, 3.2)
    labels = list(next(iter(balance.values())).keys())
    x = np.arange(len(labels))
    for k, split in enumerate(SPLITS):
        ax.bar(x + (k - 1) * 0.27, [balance[split][c] for c in labels], width=0.27, label=split)
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylabel("clips")
    ax.legend()
    return fig


def _speaker_plot(m: pd.DataFrame):
    counts = m.groupby(["speaker", "split"]).size().unstack(fill_value=0).reindex(columns=list(SPLITS), fill_value=0)
    counts = counts.loc[counts.sum(axis=1).sort_values(ascending=False).index[:60]]
    fig, ax = _figure(11, 3.4)
    bottom = np.zeros(len(counts))
    for split in SPLITS:
        ax.bar(range(len(counts)), counts[split], bottom=bottom, label=split)
        bottom += counts[split].to_numpy()
    ax.set_xticks(range(len(counts)), [str(s) for s in counts.index], rotation=90, fontsize=7)
    ax.set_ylabel("clips")
    ax.legend()
    return fig


def _hist(m: pd.DataFrame, col: str, label: str):
    fig, ax = _figure(5.4, 2.8)
    for split in SPLITS:
        x = pd.to_numeric(m.loc[m["split"] == split, col], errors="coerce").dropna()
        x = x[np.isfinite(x)]
        if len(x):
            ax.hist(x, bins=30, alpha=0.5, label=split)
    ax.set_xlabel(label)
    ax.legend()
    return fig

"""The selection for people: the ranking table, why each rejected run was rejected, what was not gated."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from scopeml.metrics import METRICS
from scopeml.run_files import Selection


def fmt(x: Any) -> str:
    """Readable numbers: 0.84, 1.0, 0.9123, 120000."""
    if isinstance(x, bool) or x is None:
        return "-" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    if not isinstance(x, float):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if x.is_integer() and abs(x) < 1e6:
        return f"{x:.1f}"
    return f"{x:.4g}"


def with_unit(metric: str, x: Any) -> str:
    """A metric value for people: counts stay integers, everything else reads as a decimal, plus the unit."""
    number = isinstance(x, (int, float)) and not isinstance(x, bool)
    text = fmt(float(x) if number and metric != "params" else x)
    unit = METRICS[metric].unit if metric in METRICS else ""
    return f"{text} {unit}" if unit else text


def print_report(selection: Selection, out: Path) -> None:
    primary = selection.primary_metric or "primary metric"
    direction = "higher is better" if selection.higher_is_better else "lower is better"
    headers = ("rank", "run", f"{primary} ({selection.split})", "size MB", "p95 ms", "gates")
    rows = _rows(selection)
    title = f"Model selection by {primary} on the {selection.split} split ({direction})"
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers[:-1])]
        print(title)
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)) + "  " + headers[-1])
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
    else:
        table = Table(title=title)
        for h in headers:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*row, style=None if row[0] != "rejected" else "dim")
        Console(width=max(120, _terminal_width())).print(table)

    for w in selection.warnings:
        print(f"warning: {w}")
    notes = [g for g in selection.gates if not g.gated]
    if notes:
        print(
            "not gated ("
            + ", ".join(f"{g.metric} {g.op} {fmt(g.target)}" for g in notes)
            + "): not measured offline; later phases check them"
        )
    sel = selection.selected
    if sel:
        size = sel.model.get("model_size_mb")
        print(
            f"selected: {sel.run_name}  {primary}={fmt(sel.value)}"
            + (f"  size={fmt(size)} MB" if size is not None else "")
            + f"\n  checkpoint: {sel.checkpoint}"
        )
        if sel.cv:
            print(
                f"  cross-validation: {primary} {fmt(sel.value)} ± {fmt(sel.cv['std'].get(primary))} over "
                f"{sel.cv['folds']} folds ({sel.cv['scheme']})"
            )
        if primary in sel.test:
            print(f"  test split (reported once, not used to choose): {primary}={fmt(sel.test[primary])}")
    print(f"wrote {out}")


def print_no_winner(selection: Selection) -> None:
    err = sys.stderr
    print(f"scopeml-select: no run passed the gates ({len(selection.rejected)} rejected):", file=err)
    for r in selection.rejected:
        print(f"  {r.run_name} ({r.run_dir}):", file=err)
        for reason in r.reasons:
            print(f"    - {reason}", file=err)


def _rows(selection: Selection) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for r in selection.ranking:
        later = r.not_measured_offline
        note = "passed" + (f"; not measured offline: {', '.join(later)}" if later else "")
        rows.append(
            (
                str(r.rank),
                r.run_name,
                fmt(r.value),
                fmt(r.model_size_mb),
                fmt(r.latency_p95_ms) if r.latency_p95_ms is not None else "-",
                note,
            )
        )
    for r in selection.rejected:
        rows.append(
            (
                "rejected",
                r.run_name,
                fmt(r.value) if r.value is not None else "-",
                fmt(r.model_size_mb) if r.model_size_mb is not None else "-",
                "-",
                "; ".join(r.reasons),
            )
        )
    return rows


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return int(os.environ.get("COLUMNS", "0") or 0)

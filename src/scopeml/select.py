"""scopeml-select: pick the model to ship from finished training runs.

Reads the run folders that scopeml-train leaves (one run, or a sweep folder of
runs), rejects every run that did not finish or missed an offline scoping
target, ranks the rest by the primary metric on the test split, and writes
selection.json: the winner's checkpoint and files, the ranking, and why each
rejected run was rejected.

Plain argparse and the standard library (plus `rich` for the table when it is
installed): it starts fast and never imports torch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from scopeml.metrics import METRICS

SELECTION_FILE = "selection.json"
RUN_MARKER = "status.json"
SEARCH_DEPTH = 2  # sweep/<job>/ and sweeps/<time>/<job>/


class SelectError(Exception):
    """A usage problem (nothing to select from, an unknown metric): exit code 2."""


# --------------------------------------------------------------------------- discovery


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders under the given paths: a path holding status.json is a run, otherwise its
    subfolders down to depth 2 that hold one are. Raises SelectError naming a path with none."""
    runs: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SelectError(f"{path}: no such file or folder")
        if not path.is_dir():
            raise SelectError(f"{path}: not a folder (give a run folder or a sweep folder of runs)")
        found = _runs_under(path)
        if not found:
            raise SelectError(
                f"{path}: no training runs found (no {RUN_MARKER} in it or in its subfolders "
                f"down to depth {SEARCH_DEPTH}); give a run folder or a sweep folder written by scopeml-train"
            )
        for run in found:
            key = run.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(run)
    return runs


def _runs_under(path: Path) -> list[Path]:
    if (path / RUN_MARKER).is_file():
        return [path]
    found: list[Path] = []
    frontier = [path]
    for _ in range(SEARCH_DEPTH):
        nxt = []
        for folder in frontier:
            for child in sorted(_subdirs(folder)):
                if (child / RUN_MARKER).is_file():
                    found.append(child)
                else:
                    nxt.append(child)
        frontier = nxt
    return sorted(found, key=lambda p: (p.parent.as_posix(), p.name))


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return []


# --------------------------------------------------------------------------- reading one run


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    """(content, None) or (None, why it could not be read)."""
    if not path.is_file():
        return None, "missing"
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    except ValueError as exc:
        return None, f"corrupt ({exc})"
    if not isinstance(obj, dict):
        return None, f"corrupt (expected a JSON object, got {type(obj).__name__})"
    return obj, None


def _first_line(text: Any) -> str:
    lines = [ln.strip() for ln in str(text or "").strip().splitlines() if ln.strip()]
    return lines[0] if lines else "no error recorded"


def _number(x: Any) -> float | None:
    """A finite-or-NaN float, or None when x is not a number at all."""
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        return float(x)
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _is_nan(x: Any) -> bool:
    v = _number(x)
    return v is None or math.isnan(v)


def fmt(x: Any) -> str:
    """Readable numbers: 0.84, 1.0, 0.9123, 120000."""
    if isinstance(x, bool) or x is None:
        return "-" if x is None else str(x)
    if isinstance(x, int):
        return str(x)
    v = _number(x)
    if v is None:
        return str(x)
    if math.isnan(v):
        return "NaN"
    if v.is_integer() and abs(v) < 1e6:
        return f"{v:.1f}"
    return f"{v:.4g}"


def _with_unit(metric: str, x: Any) -> str:
    """A metric value for people: counts stay integers, everything else reads as a decimal, plus the unit."""
    v = _number(x)
    text = fmt(x if metric == "params" or v is None else v)
    unit = METRICS[metric].unit if metric in METRICS else ""
    return f"{text} {unit}" if unit else text


def describe_miss(target: dict) -> str:
    """'accuracy 0.84 < 0.9' for a >= target, 'model_size_mb 1.3 MB > 1.0 MB' for a <= one."""
    metric, op = target.get("metric", "?"), target.get("op")
    negated = {">=": "<", "<=": ">"}.get(op, f"fails {op}")
    value = target.get("value")
    if value is None:
        return f"{metric} not measured (target {op} {_with_unit(metric, target.get('target'))})"
    return f"{metric} {_with_unit(metric, value)} {negated} {_with_unit(metric, target.get('target'))}"


def _metric_value(metrics: dict, name: str) -> Any:
    """The primary metric's value: test split first, then the measured block, then the model block."""
    for block in ("test", "measured", "model"):
        section = metrics.get(block)
        if isinstance(section, dict) and name in section:
            return section[name]
    return None


def _latency_p95(metrics: dict) -> float | None:
    lat = metrics.get("latency_ms")
    if isinstance(lat, dict):
        v = _number(lat.get("p95"))
        if v is not None and not math.isnan(v):
            return v
    return None


def _model_size(metrics: dict) -> float | None:
    model = metrics.get("model") if isinstance(metrics.get("model"), dict) else {}
    v = _number(model.get("model_size_mb", (metrics.get("measured") or {}).get("model_size_mb")))
    return None if v is None or math.isnan(v) else v


def _targets(metrics: dict) -> list[dict]:
    targets = metrics.get("targets")
    return [t for t in targets if isinstance(t, dict) and "metric" in t] if isinstance(targets, list) else []


def _required_check(metric: str, metrics: dict) -> str | None:
    """--require METRIC: the target must have been measured and met. Returns the miss, or None."""
    target = next((t for t in _targets(metrics) if t["metric"] == metric), None)
    if target is None:
        return f"{metric} is required but the scoping has no target for it"
    if target.get("passed") is True:
        return None
    if target.get("passed") is False:
        return describe_miss(target)
    # Not measured by training: the CPU latency measured after training stands in for the p95 target.
    if metric == "latency_p95_ms" and _latency_p95(metrics) is not None:
        value, bound, op = _latency_p95(metrics), _number(target.get("target")), target.get("op", "<=")
        if bound is None or (value <= bound if op == "<=" else value >= bound):
            return None
        return describe_miss({**target, "value": value})
    return f"{metric} is required but was not measured (target {target.get('op')} {_with_unit(metric, target.get('target'))})"


def read_run(run_dir: Path, primary: str | None, require: Iterable[str] = ()) -> dict:
    """Everything selection needs from one run folder, with the reasons it is rejected (if any)."""
    run_dir = run_dir.resolve()
    info: dict[str, Any] = {
        "run_dir": str(run_dir),
        "run_name": run_dir.name,
        "status": None,
        "metrics": None,
        "reasons": [],
        "not_measured_offline": [],
    }
    status, why = _read_json(run_dir / RUN_MARKER)
    if status is None:
        info["reasons"].append(f"{RUN_MARKER} {why}")
        return info
    state = status.get("status")
    info["status"] = state
    if state == "failed":
        info["reasons"].append(f"failed at stage {status.get('stage', 'unknown')}: {_first_line(status.get('error'))}")
        return info
    if state != "complete":
        stage = status.get("stage")
        info["reasons"].append(f"did not finish (status {state}" + (f", stage {stage})" if stage else ")"))
        return info

    metrics, why = _read_json(run_dir / "metrics.json")
    if metrics is None:
        info["reasons"].append(f"metrics.json {why} although status is complete")
        return info
    info["metrics"] = metrics
    info["run_name"] = str(metrics.get("run_name") or run_dir.name)

    for t in _targets(metrics):
        if t.get("passed") is False:
            info["reasons"].append(describe_miss(t))
        elif t.get("passed") is None:
            info["not_measured_offline"].append(t["metric"])
    for metric in require:
        miss = _required_check(metric, metrics)
        if miss and miss not in info["reasons"]:
            info["reasons"].append(miss)

    name = primary or metrics.get("primary_metric")
    raw = _metric_value(metrics, name) if name else None
    info["value"] = _number(raw)
    if not name:
        info["reasons"].append("metrics.json names no primary_metric (pass --primary)")
    elif raw is None:
        info["reasons"].append(f"primary metric {name} not in metrics.json")
    elif _is_nan(raw):
        info["reasons"].append(f"primary metric {name} is NaN")
    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        info["reasons"].append("checkpoints/best.ckpt missing")
    info["model_size_mb"] = _model_size(metrics)
    info["latency_p95_ms"] = _latency_p95(metrics)
    return info


# --------------------------------------------------------------------------- selection


def _choose_primary(runs: list[dict], primary: str | None, warnings: list[str]) -> str:
    if primary:
        return primary
    named = Counter(r["metrics"]["primary_metric"] for r in runs if r["metrics"] and r["metrics"].get("primary_metric"))
    if not named:
        raise SelectError("no finished run names a primary_metric in metrics.json; pass --primary METRIC")
    ranked = sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) > 1:
        warnings.append(f"runs disagree on primary_metric ({', '.join(k for k, _ in ranked)}); "
                        f"ranking by {ranked[0][0]}; pass --primary to choose")
    return ranked[0][0]


def _check_metric(name: str, flag: str) -> None:
    if name not in METRICS:
        hint = f" ({name} is a path: put --require after the paths)" if flag == "--require" and Path(name).exists() else ""
        raise SelectError(f"{flag} {name}: unknown metric; known: {', '.join(METRICS)}{hint}")


def _gates(runs: list[dict], require: list[str]) -> list[dict]:
    """The target list the runs were held against (first finished run that states each target)."""
    gates: dict[str, dict] = {}
    for r in runs:
        for t in _targets(r["metrics"] or {}):
            if t["metric"] in gates:
                continue
            measured = t.get("passed") is not None
            entry = {"metric": t["metric"], "op": t.get("op"), "target": t.get("target"),
                     "phase": METRICS[t["metric"]].phase if t["metric"] in METRICS else None,
                     "gated": measured or t["metric"] in require}
            if not measured:
                entry["note"] = "not measured offline" + (" (required: --require)" if t["metric"] in require else "")
            gates[t["metric"]] = entry
    for metric in require:
        gates.setdefault(metric, {"metric": metric, "op": None, "target": None, "phase": METRICS[metric].phase,
                                  "gated": True, "note": "required, but no run has a target for it"})
    return list(gates.values())


def _sort_key(run: dict, higher_is_better: bool) -> tuple:
    value = round(run["value"], 12)
    size = run["model_size_mb"] if run["model_size_mb"] is not None else math.inf
    latency = run["latency_p95_ms"] if run["latency_p95_ms"] is not None else math.inf
    return (-value if higher_is_better else value, size, latency, Path(run["run_dir"]).name, run["run_dir"])


def _selected_entry(run: dict, primary: str) -> dict:
    d = Path(run["run_dir"])
    m = run["metrics"]
    entry = {
        "run_dir": str(d),
        "run_name": run["run_name"],
        "primary_metric": primary,
        "value": run["value"],
        "checkpoint": str(d / "checkpoints" / "best.ckpt"),
        "metrics": str(d / "metrics.json"),
        "config": str(d / "config.yaml"),
        "predictions_test": str(d / "predictions_test.parquet"),
        "predictions_val": str(d / "predictions_val.parquet"),
        "model": m.get("model", {}),
        "test": m.get("test", {}),
        "targets": _targets(m),
        "not_measured_offline": run["not_measured_offline"],
        "data_fingerprint": m.get("data_fingerprint"),
    }
    for optional in ("calibration", "latency_ms"):
        if isinstance(m.get(optional), dict):
            entry[optional] = m[optional]
    return entry


def select_runs(paths: list[Path], primary: str | None = None, require: Iterable[str] = ()) -> dict:
    """The selection dict for the runs under `paths` (see the module doc). Raises SelectError (no runs,
    unknown metric); a selection where no run passes has "selected": None and every run's reasons."""
    require = list(dict.fromkeys(require))
    if primary:
        _check_metric(primary, "--primary")
    for metric in require:
        _check_metric(metric, "--require")
    run_dirs = find_runs(paths)
    warnings: list[str] = []
    runs = [read_run(d, primary, require) for d in run_dirs]
    finished = [r for r in runs if r["metrics"] is not None]
    if finished or primary:
        primary = _choose_primary(runs, primary, warnings)
    else:
        primary = None  # nothing finished: nothing to rank by
    if primary is not None:
        _check_metric(primary, "primary_metric")
        # Re-read runs whose own primary differs from the chosen one, so every value is the same metric.
        runs = [read_run(Path(r["run_dir"]), primary, require) if r["metrics"] is not None
                and r["metrics"].get("primary_metric") != primary else r for r in runs]
    higher = METRICS[primary].higher_is_better if primary else True

    fingerprints = {r["metrics"].get("data_fingerprint") for r in finished if r["metrics"].get("data_fingerprint")}
    if len(fingerprints) > 1:
        warnings.append(f"runs were trained on {len(fingerprints)} different data versions (data_fingerprint); "
                        "their test scores are not directly comparable")

    survivors = sorted((r for r in runs if not r["reasons"]), key=lambda r: _sort_key(r, higher))
    rejected = [r for r in runs if r["reasons"]]
    return {
        "selected": _selected_entry(survivors[0], primary) if survivors else None,
        "primary_metric": primary,
        "higher_is_better": higher,
        "split": "test",
        "ranking": [
            {"rank": i + 1, "run_dir": r["run_dir"], "run_name": r["run_name"], "value": r["value"],
             "model_size_mb": r["model_size_mb"], "latency_p95_ms": r["latency_p95_ms"],
             "not_measured_offline": r["not_measured_offline"]}
            for i, r in enumerate(survivors)
        ],
        "rejected": [
            {"run_dir": r["run_dir"], "run_name": r["run_name"], "status": r["status"],
             "value": r.get("value"), "model_size_mb": r.get("model_size_mb"), "reasons": r["reasons"]}
            for r in rejected
        ],
        "gates": _gates(runs, require),
        "required": require,
        "inputs": [str(Path(p).resolve()) for p in paths],
        "warnings": warnings,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------- output


def _clean(obj: Any) -> Any:
    """NaN/inf become null so selection.json is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_selection(path: Path, selection: dict) -> Path:
    """Write atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_clean(selection), f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def default_out(paths: list[Path]) -> Path:
    first = Path(paths[0])
    if first.is_dir() and not (first / RUN_MARKER).is_file():
        return first / SELECTION_FILE
    return Path.cwd() / SELECTION_FILE


def _rows(selection: dict) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for r in selection["ranking"]:
        note = "passed" + (f"; not measured offline: {', '.join(r['not_measured_offline'])}" if r["not_measured_offline"] else "")
        rows.append((str(r["rank"]), r["run_name"], fmt(r["value"]), fmt(r["model_size_mb"]),
                     fmt(r["latency_p95_ms"]) if r["latency_p95_ms"] is not None else "-", note))
    for r in selection["rejected"]:
        rows.append(("rejected", r["run_name"], fmt(r["value"]) if r["value"] is not None else "-",
                     fmt(r["model_size_mb"]) if r["model_size_mb"] is not None else "-", "-", "; ".join(r["reasons"])))
    return rows


def print_report(selection: dict, out: Path) -> None:
    primary = selection["primary_metric"] or "primary metric"
    direction = "higher is better" if selection["higher_is_better"] else "lower is better"
    headers = ("rank", "run", f"{primary} (test)", "size MB", "p95 ms", "gates")
    rows = _rows(selection)
    title = f"Model selection by {primary} on the test split ({direction})"
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
            style = None if row[0] != "rejected" else "dim"
            table.add_row(*row, style=style)
        Console(width=max(120, _terminal_width())).print(table)

    for w in selection["warnings"]:
        print(f"warning: {w}")
    notes = [g for g in selection["gates"] if not g["gated"]]
    if notes:
        print("not gated (" + ", ".join(f"{g['metric']} {g['op']} {fmt(g['target'])}" for g in notes)
              + "): not measured offline; later phases check them")
    sel = selection["selected"]
    if sel:
        size = (sel.get("model") or {}).get("model_size_mb")
        print(f"selected: {sel['run_name']}  {primary}={fmt(sel['value'])}"
              + (f"  size={fmt(size)} MB" if size is not None else "")
              + f"\n  checkpoint: {sel['checkpoint']}")
    print(f"wrote {out}")


def _terminal_width() -> int:
    try:
        return os.get_terminal_size().columns
    except OSError:
        return int(os.environ.get("COLUMNS", "0") or 0)


def _print_no_winner(selection: dict) -> None:
    err = sys.stderr
    print(f"scopeml-select: no run passed the gates ({len(selection['rejected'])} rejected):", file=err)
    for r in selection["rejected"]:
        print(f"  {r['run_name']} ({r['run_dir']}):", file=err)
        for reason in r["reasons"]:
            print(f"    - {reason}", file=err)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scopeml-select",
        description=(
            "Pick the model to ship from scopeml-train runs.\n\n"
            "Rejects runs that did not complete, whose metrics.json is missing or corrupt, that missed\n"
            "any offline scoping target, or whose primary metric is NaN. Ranks the rest by the primary\n"
            "metric on the test split (ties: smaller model, then lower measured latency, then folder\n"
            "name) and writes selection.json: the winner's checkpoint and files, the ranking, and every\n"
            "rejected run's reasons."
        ),
        epilog=(
            "exit status: 0 a run was selected; 1 no run passed the gates (selection.json is still\n"
            "written, with \"selected\": null and each run's reasons); 2 usage error (no runs found,\n"
            "unknown metric).\n\n"
            "examples:\n"
            "  scopeml-select outputs/sweeps/2024-05-01_12-00-00\n"
            "  scopeml-select outputs/train/a outputs/train/b --out selection.json --primary accuracy\n"
            "  scopeml-select outputs/sweeps/last --require latency_p95_ms"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="SWEEP_DIR_OR_RUN_DIR",
                        help="a run folder (holds status.json) or a sweep folder whose subfolders (depth 2) are runs")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write {SELECTION_FILE} (default: into the first path if it is a sweep folder, "
                             "else the current folder)")
    parser.add_argument("--primary", metavar="METRIC", default=None,
                        help="rank by this metric instead of metrics.json's primary_metric "
                             f"({', '.join(m.name for m in METRICS.values() if m.phase == 'offline')})")
    parser.add_argument("--require", metavar="METRIC", nargs="+", action="extend", default=[],
                        help="also require these targets to have been measured and met (targets not measured offline, "
                             "e.g. latency_p95_ms, are otherwise reported but not gated); give it after the paths")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        selection = select_runs(args.paths, primary=args.primary, require=args.require)
    except SelectError as exc:
        print(f"scopeml-select: {exc}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else default_out(args.paths)
    if out.is_dir():
        out = out / SELECTION_FILE
    out = write_selection(out.resolve(), selection)
    print_report(selection, out)
    if selection["selected"] is None:
        _print_no_winner(selection)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Why a run cannot be selected: it did not finish, missed an offline scoping target, or lacks what shipping needs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopeml.metrics import METRICS, TargetResult
from scopeml.run_files import METRICS_FILE, STATUS_FILE, Gate, RunFileError, RunMetrics, read_metrics, read_status
from scopeml.selection.explain import with_unit

SELECTION_SPLITS = ("val", "cv")  # what selection may rank on; the test split is reported, never ranked on


@dataclass
class Candidate:
    """One run folder as selection sees it. No reasons: it passed every gate and competes."""

    run_dir: Path  #: resolved
    run_name: str  #: metrics.json's run_name, else the folder's name
    status: str | None = None  #: status.json's status (None: unreadable)
    metrics: RunMetrics | None = None  #: None unless the run completed with a readable metrics.json
    reasons: list[str] = field(default_factory=list)  #: why it is rejected
    not_measured_offline: list[str] = field(default_factory=list)  #: its targets training could not measure
    value: float | None = None  #: the primary metric
    model_size_mb: float | None = None
    latency_p95_ms: float | None = None  #: the CPU latency measured after training
    split: str | None = None  #: where its value was measured: "val" or "cv"


def read_run(run_dir: Path, primary: str | None, require: Iterable[str] = ()) -> Candidate:
    """Everything selection needs from one run folder, with the reasons it is rejected (if any)."""
    run_dir = Path(run_dir).resolve()
    run = Candidate(run_dir, run_dir.name)
    try:
        status = read_status(run_dir)
    except RunFileError as exc:
        run.reasons.append(f"{STATUS_FILE} {exc.why}")
        return run
    run.status = status.status
    if status.status == "failed":
        run.reasons.append(f"failed at stage {status.stage or 'unknown'}: {_first_line(status.error)}")
        return run
    if status.status == "pruned":  # stopped on purpose by the Optuna sweeper (scopeml.hpo): no final model to rank
        pruned = status.extra.get("pruned") or {}
        run.reasons.append(f"pruned by the Optuna sweeper at epoch {pruned.get('epoch', '?')} (did not finish)")
        return run
    if status.status != "complete":
        stage = f", stage {status.stage}" if status.stage else ""
        run.reasons.append(f"did not finish (status {status.status}{stage})")
        return run
    try:
        metrics = read_metrics(run_dir)
    except RunFileError as exc:
        run.reasons.append(f"{METRICS_FILE} {exc.why} although status is complete")
        return run
    run.metrics = metrics
    run.run_name = metrics.run_name or run_dir.name
    run.split = metrics.selection_split
    if metrics.selection_split not in SELECTION_SPLITS:
        # Older metrics.json measured targets on the test split: choosing by them would tune on the test split.
        run.reasons.append(
            f"{METRICS_FILE} measured its targets on the {metrics.selection_split} split (written before selection "
            "moved to validation); re-train it to compete"
        )
        return run

    for t in metrics.targets:
        if t.passed is False:
            run.reasons.append(describe_miss(t))
        elif t.passed is None:
            run.not_measured_offline.append(t.metric)
    for metric in require:
        miss = required_check(metric, metrics)
        if miss and miss not in run.reasons:
            run.reasons.append(miss)

    name = primary or metrics.primary_metric
    raw = metric_value(metrics, name) if name else None
    run.value = _number(raw)
    if not name:
        run.reasons.append(f"{METRICS_FILE} names no primary_metric (pass --primary)")
    elif raw is None:
        run.reasons.append(f"primary metric {name} not in {METRICS_FILE}")
    elif run.value is None or math.isnan(run.value):
        run.reasons.append(f"primary metric {name} is NaN")
    if not (run_dir / "checkpoints" / "best.ckpt").is_file():
        run.reasons.append("checkpoints/best.ckpt missing")
    run.model_size_mb = _finite(metrics.model_size_mb)
    run.latency_p95_ms = latency_p95(metrics)
    return run


def metric_value(metrics: RunMetrics, name: str) -> Any:
    """A metric's value on the run's selection split (validation, or the cross-validation mean), then the
    measured block (size, parameters, minutes), then the model block. Never the test split."""
    for block in (metrics.selection_scores, metrics.measured, metrics.model):
        if name in block:
            return block[name]
    return None


def latency_p95(metrics: RunMetrics) -> float | None:
    return _finite((metrics.latency_ms or {}).get("p95"))


def describe_miss(target: TargetResult) -> str:
    """'accuracy 0.84 < 0.9' for a >= target, 'model_size_mb 1.3 MB > 1.0 MB' for a <= one."""
    negated = {">=": "<", "<=": ">"}.get(target.op, f"fails {target.op}")
    if target.value is None:
        return f"{target.metric} not measured (target {target.op} {with_unit(target.metric, target.target)})"
    metric = target.metric
    return f"{metric} {with_unit(metric, target.value)} {negated} {with_unit(metric, target.target)}"


def required_check(metric: str, metrics: RunMetrics) -> str | None:
    """--require METRIC: the target must have been measured and met. Returns the miss, or None."""
    target = next((t for t in metrics.targets if t.metric == metric), None)
    if target is None:
        return f"{metric} is required but the scoping has no target for it"
    if target.passed is True:
        return None
    if target.passed is False:
        return describe_miss(target)
    # Not measured by training: the CPU latency measured after training stands in for the p95 target.
    value = latency_p95(metrics)
    if metric == "latency_p95_ms" and value is not None:
        bound, op = _number(target.target), target.op or "<="
        if bound is None or (value <= bound if op == "<=" else value >= bound):
            return None
        return describe_miss(dataclasses.replace(target, value=value))
    return f"{metric} is required but was not measured (target {target.op} {with_unit(metric, target.target)})"


def gate_table(runs: list[Candidate], require: list[str]) -> list[Gate]:
    """The targets the runs were held against (the first finished run that states each target)."""
    gates: dict[str, Gate] = {}
    for r in runs:
        for t in r.metrics.targets if r.metrics else []:
            if t.metric in gates:
                continue
            measured = t.passed is not None
            required = " (required: --require)" if t.metric in require else ""
            note = None if measured else f"not measured offline{required}"
            gates[t.metric] = Gate(
                t.metric,
                t.op,
                t.target,
                METRICS[t.metric].phase if t.metric in METRICS else None,
                gated=measured or t.metric in require,
                note=note,
            )
    for metric in require:
        gates.setdefault(
            metric,
            Gate(
                metric, None, None, METRICS[metric].phase, gated=True, note="required, but no run has a target for it"
            ),
        )
    return list(gates.values())


def _first_line(text: Any) -> str:
    lines = [ln.strip() for ln in str(text or "").strip().splitlines() if ln.strip()]
    return lines[0] if lines else "no error recorded"


def _number(x: Any) -> float | None:
    """A float (NaN included), or None when x is not a number at all."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _finite(x: Any) -> float | None:
    v = _number(x)
    return None if v is None or math.isnan(v) else v

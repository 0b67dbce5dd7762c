"""Rank the runs that passed every gate and build the selection: by the primary metric on each run's selection
split (validation, or the cross-validation mean), ties broken by the smaller model, then the lower measured
latency, then the folder name. The test split is carried beside for the selected run and chooses nothing."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from scopeml.metrics import METRICS
from scopeml.run_files import RankedRun, RejectedRun, SelectedRun, Selection, now
from scopeml.selection import SelectError
from scopeml.selection.discover import find_runs
from scopeml.selection.gates import SELECTION_SPLITS, Candidate, gate_table, read_run


def select_runs(paths: list[Path], primary: str | None = None, require: Iterable[str] = ()) -> Selection:
    """The selection for the runs under `paths`. Raises SelectError (no runs, unknown metric); a selection
    where no run passes has `selected` None and every run's reasons."""
    require = list(dict.fromkeys(require))
    if primary:
        check_metric(primary, "--primary")
    for metric in require:
        check_metric(metric, "--require")
    warnings: list[str] = []
    runs = [read_run(d, primary, require) for d in find_runs(paths)]
    finished = [r for r in runs if r.metrics is not None]
    if finished or primary:
        primary = _choose_primary(runs, primary, warnings)
    else:
        primary = None  # nothing finished: nothing to rank by
    if primary is not None:
        check_metric(primary, "primary_metric")
        # Re-read runs whose own primary differs from the chosen one, so every value is the same metric.
        runs = [
            read_run(r.run_dir, primary, require)
            if r.metrics is not None and r.metrics.primary_metric != primary
            else r
            for r in runs
        ]
    higher = METRICS[primary].higher_is_better if primary else True

    fingerprints = {r.metrics.data_fingerprint for r in finished if r.metrics.data_fingerprint}
    if len(fingerprints) > 1:
        warnings.append(
            f"runs were trained on {len(fingerprints)} different data versions (data_fingerprint); "
            "their scores are not directly comparable"
        )
    splits = sorted({r.split for r in runs if r.metrics is not None and r.split in SELECTION_SPLITS})
    if len(splits) > 1:
        warnings.append(
            "runs were measured on different kinds of split (" + ", ".join(splits) + "): a cross-validation mean "
            "and a single validation split estimate the same thing with different noise"
        )

    survivors = sorted((r for r in runs if not r.reasons), key=lambda r: _sort_key(r, higher))
    return Selection(
        selected=_selected(survivors[0], primary) if survivors else None,
        primary_metric=primary,
        higher_is_better=higher,
        split="+".join(splits) if splits else "val",
        ranking=[
            RankedRun(
                i + 1, str(r.run_dir), r.run_name, r.value, r.model_size_mb, r.latency_p95_ms, r.not_measured_offline
            )
            for i, r in enumerate(survivors)
        ],
        rejected=[
            RejectedRun(str(r.run_dir), r.run_name, r.status, r.value, r.model_size_mb, r.reasons)
            for r in runs
            if r.reasons
        ],
        gates=gate_table(runs, require),
        required=require,
        inputs=[str(Path(p).resolve()) for p in paths],
        warnings=warnings,
        created_utc=now(),
    )


def check_metric(name: str, flag: str) -> None:
    if name not in METRICS:
        is_path = flag == "--require" and Path(name).exists()
        hint = f" ({name} is a path: put --require after the paths)" if is_path else ""
        raise SelectError(f"{flag} {name}: unknown metric; known: {', '.join(METRICS)}{hint}")


def _choose_primary(runs: list[Candidate], primary: str | None, warnings: list[str]) -> str:
    if primary:
        return primary
    named = Counter(r.metrics.primary_metric for r in runs if r.metrics and r.metrics.primary_metric)
    if not named:
        raise SelectError("no finished run names a primary_metric in metrics.json; pass --primary METRIC")
    ranked = sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))
    if len(ranked) > 1:
        warnings.append(
            f"runs disagree on primary_metric ({', '.join(k for k, _ in ranked)}); "
            f"ranking by {ranked[0][0]}; pass --primary to choose"
        )
    return ranked[0][0]


def _sort_key(run: Candidate, higher_is_better: bool) -> tuple:
    value = round(run.value, 12)
    size = run.model_size_mb if run.model_size_mb is not None else math.inf
    latency = run.latency_p95_ms if run.latency_p95_ms is not None else math.inf
    return (-value if higher_is_better else value, size, latency, run.run_dir.name, str(run.run_dir))


def _selected(run: Candidate, primary: str) -> SelectedRun:
    d, m = run.run_dir, run.metrics
    return SelectedRun(
        run_dir=str(d),
        run_name=run.run_name,
        primary_metric=primary,
        value=run.value,
        checkpoint=str(d / "checkpoints" / "best.ckpt"),
        metrics=str(d / "metrics.json"),
        config=str(d / "config.yaml"),
        predictions_test=str(d / "predictions_test.parquet"),
        predictions_val=str(d / ("predictions_cv.parquet" if m.selection_split == "cv" else "predictions_val.parquet")),
        model=m.model,
        split=m.selection_split,
        test=m.test,
        val=m.val,
        cv=m.cv,
        targets=m.targets,
        not_measured_offline=run.not_measured_offline,
        data_fingerprint=m.data_fingerprint,
        calibration=m.calibration,
        latency_ms=m.latency_ms,
    )

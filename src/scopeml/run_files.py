"""The files one command leaves for the next to read: status.json, metrics.json and selection.json.

This module is the only one that writes them and the one every reader goes through, so their
layout is written down once, as the dataclasses below. The JSON keys are the ones these files have
always had (tools outside Python read them): a reader keeps keys it does not know (`extra`, written
back unchanged), and a key an older file lacks takes its default, so existing run folders still read.
Writes are atomic (a reader never sees half a file). No torch here: `scopeml-select` reads these and
must start fast.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import numbers
import os
import tempfile
import traceback
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Union

from scopeml.metrics import TargetResult

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
SELECTION_FILE = "selection.json"
#: per-clip predictions of clips the model (or, for "cv", its fold model) never trained on, in the order
#: the monitoring reference and bundles list them; a run has val or cv, and test when its split has clips
HELD_OUT_PREDICTIONS = ("predictions_val.parquet", "predictions_cv.parquet", "predictions_test.parquet")

log = logging.getLogger("scopeml.run_files")
OMIT_IF_NONE = {"omit_if_none": True}  # field metadata: a key that is left out rather than written as null


class RunFileError(ValueError):
    """A run file that cannot be used. `why` is "missing", "unreadable (...)" or "corrupt (...)"."""

    def __init__(self, path: Path, why: str):
        self.path, self.why = Path(path), why
        super().__init__(f"{path}: {why}")


# --------------------------------------------------------------------------- status.json
@dataclass
class RunStatus:
    """status.json: written first and updated at every stage, so a crash never looks like a finished run."""

    #: "running", "complete" or "failed"
    status: str
    #: the stage running, or where it failed ("config", "data", "fit", ...; "done" when complete)
    stage: str | None = None
    #: when the command started (ISO 8601, UTC)
    started_utc: str | None = field(default=None, metadata=OMIT_IF_NONE)
    #: the last change of this file
    updated_utc: str | None = field(default=None, metadata=OMIT_IF_NONE)
    #: when the run completed
    finished_utc: str | None = field(default=None, metadata=OMIT_IF_NONE)
    #: on failure: "ExceptionType: message"
    error: str | None = field(default=None, metadata=OMIT_IF_NONE)
    #: on failure: the traceback's last 4000 characters
    traceback: str | None = field(default=None, metadata=OMIT_IF_NONE)
    #: the command's exit code (scopeml.stage.ExitCode)
    exit_code: int | None = field(default=None, metadata=OMIT_IF_NONE)
    #: scopeml-data: every blocking check passed
    passed: bool | None = field(default=None, metadata=OMIT_IF_NONE)
    #: keys this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_status(run_dir: Path) -> RunStatus:
    """The run's status.json; raises RunFileError when it is missing, unreadable or corrupt."""
    return _from_json(RunStatus, _read_object(Path(run_dir) / STATUS_FILE), Path(run_dir) / STATUS_FILE)


def update_status(run_dir: Path, status: str, **fields: Any) -> RunStatus:
    """Set status.json's status and the given fields, keeping the rest (a corrupt or missing file starts afresh)."""
    run_dir = Path(run_dir)
    try:
        state = dataclasses.asdict(read_status(run_dir))
    except RunFileError:
        state = {"status": status}
    extra = state.pop("extra", {})
    known = {f.name for f in dataclasses.fields(RunStatus)}
    for key, value in {"status": status, "updated_utc": now(), **fields}.items():
        (state if key in known else extra)[key] = value
    updated = RunStatus(**state, extra=extra)
    write_json(run_dir / STATUS_FILE, _to_json(updated))
    return updated


def mark_failed(run_dir: Path, stage: str, exc: BaseException, **fields: Any) -> RunStatus:
    """Record a failure: the stage it happened in, the error and its traceback."""
    return update_status(
        run_dir,
        "failed",
        stage=stage,
        error=f"{type(exc).__name__}: {exc}",
        traceback="".join(traceback.format_exception(exc))[-4000:],
        **fields,
    )


def read_stage(run_dir: Path) -> str:
    """The stage status.json last recorded ("unknown" without a readable one): where a failure happened."""
    try:
        return read_status(run_dir).stage or "unknown"
    except RunFileError:
        return "unknown"


# --------------------------------------------------------------------------- metrics.json
@dataclass
class RunMetrics:
    """metrics.json: a finished training run's scores. Written last, so its presence means the run completed.

    Built by scopeml.training.report.build_metrics; read by selection, the sweep summary, packaging and reports.
    """

    #: the run's name (its folder's name unless run_name was set)
    run_name: str | None = None
    #: "complete"
    status: str | None = None
    #: the scoping's name (scoping.name)
    scoping: str | None = None
    #: the metric sweeps optimize and selection ranks by (scoping.primary_metric)
    primary_metric: str | None = None
    #: where `measured`, `targets` and the sweep objective come from: "val", or "cv" (the cross-validation
    #: mean). Files written before selection moved off the test split say nothing: "test".
    selection_split: str = "test"
    #: split name -> what it is, for every split a figure in this file comes from
    splits: dict[str, str] = field(default_factory=dict)
    #: test-split scores: accuracy, macro_f1, min_class_recall, loss, clips (reported; they choose nothing)
    test: dict[str, float | None] = field(default_factory=dict)
    #: the same on the validation split (empty for a cross-validated run)
    val: dict[str, float | None] = field(default_factory=dict)
    #: cross-validation: scheme, folds, per_fold, mean, std, pooled (data.split.folds; None without)
    cv: dict[str, Any] | None = field(default=None, metadata=OMIT_IF_NONE)
    #: class -> precision, recall, f1, support (test)
    per_class_test: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: arch, params, model_size_mb
    model: dict[str, Any] = field(default_factory=dict)
    #: wall time of fit and test
    train_minutes: float | None = None
    #: every offline-measured scoping metric, by name
    measured: dict[str, float | None] = field(default_factory=dict)
    #: each scoping target with its value and pass/fail (None: later phase)
    targets: list[TargetResult] = field(default_factory=list)
    #: every target measured offline passed
    targets_met: bool | None = None
    #: targets only a later phase measures (serving, monitoring)
    targets_not_measured: list[str] = field(default_factory=list)
    #: the data version trained and tested on
    data_fingerprint: str | None = None
    #: majority and logreg_mfcc baselines' scores, by split
    baseline: dict[str, Any] = field(default_factory=dict)
    #: model minus the better baseline on the selection split, by metric
    lift_over_baseline: dict[str, Any] = field(default_factory=dict)
    #: temperature, note, ECE before/after
    calibration: dict[str, Any] | None = field(default=None, metadata=OMIT_IF_NONE)
    #: confused_pairs, flagged_slices
    error_analysis: dict[str, Any] | None = field(default=None, metadata=OMIT_IF_NONE)
    #: CPU latency after training: p50, p95
    latency_ms: dict[str, float | None] | None = field(default=None, metadata=OMIT_IF_NONE)
    #: keys this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        """The calibration temperature (1.0: uncalibrated)."""
        return (self.calibration or {}).get("temperature", 1.0)

    @property
    def model_size_mb(self) -> float | None:
        return self.model.get("model_size_mb", self.measured.get("model_size_mb"))

    @property
    def selection_scores(self) -> dict[str, float | None]:
        """The scores on selection_split: the cross-validation mean, or validation. Never test."""
        return (self.cv or {}).get("mean", {}) if self.selection_split == "cv" else self.val


def held_out_predictions(run_dir: Path) -> list[Path]:
    """The run's held-out prediction files that exist (never the training split's)."""
    return [Path(run_dir) / name for name in HELD_OUT_PREDICTIONS if (Path(run_dir) / name).is_file()]


def read_metrics(run_dir: Path) -> RunMetrics:
    """The run's metrics.json; raises RunFileError when it is missing, unreadable or corrupt."""
    path = Path(run_dir) / METRICS_FILE
    return _from_json(RunMetrics, _read_object(path), path)


def write_metrics(run_dir: Path, metrics: RunMetrics | dict) -> Path:
    """Write metrics.json. A dict (what build_metrics returns) is checked against RunMetrics first."""
    path = Path(run_dir) / METRICS_FILE
    if isinstance(metrics, dict):
        metrics = _from_json(RunMetrics, metrics, path)
        if metrics.extra:  # written all the same: losing a finished run's scores over a new key would be worse
            log.warning(
                "%s: key(s) %s are not RunMetrics fields; declare them in scopeml.run_files",
                path,
                ", ".join(metrics.extra),
            )
    write_json(path, _to_json(metrics))
    return path


# --------------------------------------------------------------------------- selection.json
@dataclass
class SelectedRun:
    """The winner of a selection, with the paths of the files the next phases use."""

    #: the run folder (absolute)
    run_dir: str
    #: metrics.json's run_name, else the folder's name
    run_name: str
    #: the metric it was ranked by
    primary_metric: str
    #: its value on the selection split (`split`)
    value: float | None
    #: checkpoints/best.ckpt
    checkpoint: str
    #: metrics.json
    metrics: str
    #: config.yaml
    config: str
    #: predictions_test.parquet: per-clip labels and calibrated probabilities on the test split
    predictions_test: str
    #: predictions_val.parquet, or predictions_cv.parquet (out-of-fold) for a cross-validated run
    predictions_val: str
    #: arch, params, model_size_mb
    model: dict[str, Any] = field(default_factory=dict)
    #: where `value` and the targets were measured: "val" or "cv" (absent in files from before that rule)
    split: str | None = field(default=None, metadata=OMIT_IF_NONE)
    #: test-split scores, reported beside: never used to choose
    test: dict[str, float | None] = field(default_factory=dict)
    #: validation scores (empty for a cross-validated run)
    val: dict[str, float | None] | None = field(default=None, metadata=OMIT_IF_NONE)
    #: the cross-validation block of metrics.json, when the run has one
    cv: dict[str, Any] | None = field(default=None, metadata=OMIT_IF_NONE)
    #: every scoping target, as training measured it
    targets: list[TargetResult] = field(default_factory=list)
    #: targets a later phase checks
    not_measured_offline: list[str] = field(default_factory=list)
    #: the data version it was trained and tested on
    data_fingerprint: str | None = None
    #: metrics.json's calibration block, when it has one
    calibration: dict[str, Any] | None = field(default=None, metadata=OMIT_IF_NONE)
    #: metrics.json's latency_ms block (CPU latency after training), when it has one
    latency_ms: dict[str, float | None] | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class RankedRun:
    """A run that passed every gate, in ranking order."""

    #: 1 is the selected run
    rank: int
    #: the run folder (absolute)
    run_dir: str
    #: metrics.json's run_name, else the folder's name
    run_name: str
    #: the primary metric (selection split)
    value: float | None
    #: first tie-breaker (smaller wins)
    model_size_mb: float | None
    #: second tie-breaker (lower wins)
    latency_p95_ms: float | None
    #: its targets a later phase checks
    not_measured_offline: list[str] = field(default_factory=list)


@dataclass
class RejectedRun:
    """A run that did not compete, and every reason why."""

    #: the run folder (absolute)
    run_dir: str
    #: metrics.json's run_name, else the folder's name
    run_name: str
    #: its status.json status (None: unreadable)
    status: str | None
    #: the primary metric, when it got that far
    value: float | None = None
    #: its model size, when metrics.json says
    model_size_mb: float | None = None
    #: e.g. "accuracy 0.84 < 0.9", "failed at stage fit: ..."
    reasons: list[str] = field(default_factory=list)


@dataclass
class Gate:
    """A target the runs were held against."""

    #: the scoping metric (scopeml.metrics.METRICS)
    metric: str
    #: ">=" or "<="
    op: str | None
    #: the bound
    target: float | None
    #: where the metric is measured: offline, serving, monitoring
    phase: str | None
    #: whether selection rejected runs on it (offline targets, and --require ones)
    gated: bool
    #: why it is not gated, or has no target
    note: str | None = field(default=None, metadata=OMIT_IF_NONE)


@dataclass
class Selection:
    """selection.json: which run to ship, the ranking, and why every other run was rejected."""

    #: None: no run passed the gates
    selected: SelectedRun | None = None
    #: what the runs were ranked by
    primary_metric: str | None = None
    #: the primary metric's direction
    higher_is_better: bool = True
    #: the split the ranking metric comes from: "val", "cv", or "val+cv" when both kinds of run competed
    split: str = "val"
    #: every run that passed the gates, best first
    ranking: list[RankedRun] = field(default_factory=list)
    #: every other run, with its reasons
    rejected: list[RejectedRun] = field(default_factory=list)
    #: the targets the runs were held against
    gates: list[Gate] = field(default_factory=list)
    #: --require metrics
    required: list[str] = field(default_factory=list)
    #: the folders given, resolved
    inputs: list[str] = field(default_factory=list)
    #: what makes the comparison doubtful (e.g. different data versions)
    warnings: list[str] = field(default_factory=list)
    #: when the selection was made (ISO 8601, UTC)
    created_utc: str | None = None
    #: keys this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)


def read_selection(path: Path) -> Selection:
    """A selection.json; raises RunFileError when it is missing, unreadable or corrupt."""
    return _from_json(Selection, _read_object(Path(path)), Path(path))


def write_selection(path: Path, selection: Selection) -> Path:
    """Write selection.json as strict JSON: NaN and infinity become null."""
    path = Path(path)
    write_json(path, _finite(_to_json(selection)), allow_nan=False)
    return path


# --------------------------------------------------------------------------- JSON
def write_json(path: Path, obj: Any, allow_nan: bool = True) -> None:
    """Write atomically: a reader never sees half a file. numpy scalars and arrays are written as plain numbers."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, default=_jsonable, allow_nan=allow_nan)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, without importing numpy
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def _read_object(path: Path) -> dict:
    if not path.is_file():
        raise RunFileError(path, "missing")
    try:
        obj = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(path, f"unreadable ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        raise RunFileError(path, f"corrupt ({exc})") from None
    if not isinstance(obj, dict):
        raise RunFileError(path, f"corrupt (expected a JSON object, got {type(obj).__name__})")
    return obj


def _to_json(obj: Any) -> Any:
    """A dataclass as its file's JSON object: `extra` keys merged back in, OMIT_IF_NONE fields left out when None."""
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.name == "extra":
                out.update({k: v for k, v in value.items() if k not in out})
            elif not (value is None and f.metadata.get("omit_if_none")):
                out[f.name] = _to_json(value)
        return out
    if isinstance(obj, dict):
        return {k: _to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_json(v) for v in obj]
    return obj


def _from_json(cls: type, data: dict, path: Path) -> Any:
    try:
        return _build(cls, data, "")
    except _Mismatch as exc:
        raise RunFileError(path, f"corrupt ({exc})") from None


class _Mismatch(ValueError):
    pass


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise _Mismatch(f"{where or 'the file'}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "extra":
            continue
        if f.name in data:
            values[f.name] = _check(hints[f.name], data[f.name], f"{where}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Mismatch(f"{where}{f.name}: missing")
    unknown = {k: v for k, v in data.items() if k not in names or k == "extra"}
    if "extra" in names:
        values["extra"] = unknown
    return cls(**values)


def _check(tp: Any, value: Any, where: str) -> Any:
    """`value` if it fits the annotation `tp` (nested dataclasses built), else _Mismatch naming the key."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union or type(tp).__name__ == "UnionType":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check(arg, value, where)
            except _Mismatch:
                continue
        raise _Mismatch(f"{where}: unexpected {type(value).__name__} {value!r:.60}")
    if origin is list:
        if not isinstance(value, list):
            raise _Mismatch(f"{where}: expected a list, got {type(value).__name__}")
        (inner,) = typing.get_args(tp)
        return [_check(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch(f"{where}: expected an object, got {type(value).__name__}")
        _, inner = typing.get_args(tp)
        return {k: _check(inner, v, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{where}.")
    if tp is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    else:
        ok = isinstance(value, tp)
    if not ok:
        raise _Mismatch(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r:.60}")
    return value

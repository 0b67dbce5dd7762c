"""status.json, metrics.json, selection.json: typed, written and read by scopeml.run_files, in the files' old layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scopeml.metrics import TargetResult
from scopeml.run_files import (
    Gate,
    RankedRun,
    RejectedRun,
    RunFileError,
    RunMetrics,
    SelectedRun,
    Selection,
    mark_failed,
    read_metrics,
    read_selection,
    read_stage,
    read_status,
    update_status,
    write_metrics,
    write_selection,
)

# A metrics.json exactly as scopeml-train has written it (key order, NaN token and all) before it was typed.
EXISTING_METRICS = """{
  "run_name": "2025-01-01_12-00-00",
  "status": "complete",
  "scoping": "kws10",
  "primary_metric": "macro_f1",
  "test": {"accuracy": 0.93, "macro_f1": 0.925, "min_class_recall": NaN, "loss": 0.31, "clips": 400},
  "val": {"accuracy": 0.94, "macro_f1": 0.935, "min_class_recall": 0.85, "loss": 0.29, "clips": 380},
  "per_class_test": {"yes": {"precision": 1.0, "recall": 0.9, "f1": 0.947, "support": 40}},
  "model": {"arch": "cnn", "params": 100000, "model_size_mb": 0.4},
  "train_minutes": 3.2,
  "measured": {"accuracy": 0.93, "macro_f1": 0.925, "min_class_recall": NaN, "model_size_mb": 0.4, "params": 100000,
               "train_minutes": 3.2},
  "targets": [
    {"metric": "accuracy", "op": ">=", "target": 0.9, "value": 0.93, "passed": true},
    {"metric": "model_size_mb", "op": "<=", "target": 1.0, "value": 0.4, "passed": true},
    {"metric": "train_minutes", "op": "<=", "target": 10, "value": 3.2, "passed": true},
    {"metric": "latency_p95_ms", "op": "<=", "target": 50, "value": null, "passed": null}
  ],
  "targets_met": true,
  "targets_not_measured": ["latency_p95_ms"],
  "data_fingerprint": "kws-abc123",
  "baseline": {"majority": {"accuracy": 0.1}, "logreg_mfcc": {"accuracy": 0.55}},
  "lift_over_baseline": {"accuracy": 0.38},
  "calibration": {"temperature": 1.3, "note": "fitted on the validation split", "ece_val_before": 0.08},
  "error_analysis": {"confused_pairs": [], "flagged_slices": [{"slice": "speaker", "value": "bob"}]},
  "latency_ms": {"p50": 3.1, "p95": 4.2, "threads": 1}
}
"""


def test_an_existing_metrics_json_reads_typed(tmp_path):
    (tmp_path / "metrics.json").write_text(EXISTING_METRICS)
    m = read_metrics(tmp_path)
    assert m.primary_metric == "macro_f1" and m.test["macro_f1"] == 0.925 and math.isnan(m.test["min_class_recall"])
    assert m.targets[0] == TargetResult("accuracy", ">=", 0.9, 0.93, True)
    assert m.targets[-1].passed is None and m.targets_not_measured == ["latency_p95_ms"]
    assert m.temperature == 1.3 and m.model_size_mb == 0.4 and m.latency_ms["p95"] == 4.2
    assert m.extra == {} and m.selection_split == "test" and m.cv is None  # written before selection left test


def test_metrics_round_trip_keeps_the_layout_and_unknown_keys(tmp_path):
    original = json.loads(EXISTING_METRICS)
    (tmp_path / "metrics.json").write_text(json.dumps({**original, "from_a_newer_version": {"x": 1}}))
    m = read_metrics(tmp_path)
    assert m.extra == {"from_a_newer_version": {"x": 1}}
    out = tmp_path / "again"
    write_metrics(out, m)
    again = json.loads((out / "metrics.json").read_text())
    assert [k for k in again if k in original] == list(original)  # same keys, same order
    # Keys added since are written with what an old file means: its targets were measured on the test split.
    assert again["selection_split"] == "test" and again["splits"] == {}
    assert again["from_a_newer_version"] == {"x": 1}
    assert again["targets"] == original["targets"] and again["calibration"] == original["calibration"]
    write_metrics(tmp_path / "third", read_metrics(out))  # a fixed point (NaN != NaN, so compare the files)
    assert (tmp_path / "third" / "metrics.json").read_text() == (out / "metrics.json").read_text()


def test_metrics_written_from_a_dict_as_build_metrics_returns_it(tmp_path):
    import numpy as np

    metrics = json.loads(EXISTING_METRICS)
    metrics["test"]["accuracy"] = np.float32(0.93)  # numpy scalars are written as plain numbers
    metrics["model"]["params"] = np.int64(100000)
    write_metrics(tmp_path, metrics)
    m = read_metrics(tmp_path)
    assert m.test["accuracy"] == pytest.approx(0.93) and m.model["params"] == 100000


def test_older_metrics_without_optional_keys_get_defaults(tmp_path):
    old = {"run_name": "old", "test": {"accuracy": 0.8}, "model": {"arch": "cnn"}}
    (tmp_path / "metrics.json").write_text(json.dumps(old))
    m = read_metrics(tmp_path)
    assert m.primary_metric is None and m.targets == [] and m.calibration is None and m.temperature == 1.0
    assert m.model_size_mb is None and m.latency_ms is None
    write_metrics(tmp_path / "out", m)
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "calibration" not in written and "latency_ms" not in written  # optional blocks are left out, not null


@pytest.mark.parametrize(
    "content, why",
    [
        (None, "missing"),
        ('{"test": {', "corrupt"),
        ("[1, 2]", "corrupt (expected a JSON object, got list)"),
        ('{"test": {"accuracy": "high"}}', "corrupt (test.accuracy"),
        ('{"targets": [{"metric": "accuracy"}]}', "corrupt (targets[0].op: missing)"),
    ],
)
def test_a_bad_metrics_json_says_why(tmp_path, content, why):
    if content is not None:
        (tmp_path / "metrics.json").write_text(content)
    with pytest.raises(RunFileError) as info:
        read_metrics(tmp_path)
    assert info.value.why.startswith(why) and info.value.path == tmp_path / "metrics.json"


def test_status_updates_keep_fields_and_failures_record_the_traceback(tmp_path):
    assert read_stage(tmp_path) == "unknown"
    update_status(tmp_path, "running", stage="config", started_utc="2025-01-01T00:00:00+00:00", custom="kept")
    update_status(tmp_path, "running", stage="fit")
    try:
        raise RuntimeError("loss became NaN")
    except RuntimeError as exc:
        mark_failed(tmp_path, read_stage(tmp_path), exc, exit_code=3)
    status = read_status(tmp_path)
    assert (status.status, status.stage, status.exit_code) == ("failed", "fit", 3)
    assert status.started_utc == "2025-01-01T00:00:00+00:00" and status.extra == {"custom": "kept"}
    assert status.error == "RuntimeError: loss became NaN" and "Traceback" in status.traceback
    raw = json.loads((tmp_path / "status.json").read_text())
    assert raw["status"] == "failed" and raw["custom"] == "kept" and "finished_utc" not in raw


def test_an_existing_status_json_reads(tmp_path):
    (tmp_path / "status.json").write_text(
        json.dumps(
            {
                "status": "complete",
                "updated_utc": "2025-01-01T00:05:00+00:00",
                "stage": "done",
                "started_utc": "2025-01-01T00:00:00+00:00",
                "finished_utc": "2025-01-01T00:05:00+00:00",
                "passed": False,
            }
        )
    )
    status = read_status(tmp_path)
    assert status.status == "complete" and status.stage == "done" and status.passed is False and status.extra == {}


# A selection.json as scopeml-select wrote it before it was typed.
EXISTING_SELECTION = {
    "selected": {
        "run_dir": "/runs/4_model=tiny",
        "run_name": "4_model=tiny",
        "primary_metric": "macro_f1",
        "value": 0.93,
        "checkpoint": "/runs/4_model=tiny/checkpoints/best.ckpt",
        "metrics": "/runs/4_model=tiny/metrics.json",
        "config": "/runs/4_model=tiny/config.yaml",
        "predictions_test": "/runs/4_model=tiny/predictions_test.parquet",
        "predictions_val": "/runs/4_model=tiny/predictions_val.parquet",
        "model": {"arch": "tiny", "params": 62500, "model_size_mb": 0.25},
        "test": {"accuracy": 0.93, "macro_f1": 0.93},
        "targets": [{"metric": "accuracy", "op": ">=", "target": 0.9, "value": 0.93, "passed": True}],
        "not_measured_offline": ["latency_p95_ms"],
        "data_fingerprint": "kws-abc123",
        "calibration": {"temperature": 1.3},
    },
    "primary_metric": "macro_f1",
    "higher_is_better": True,
    "split": "test",
    "ranking": [
        {
            "rank": 1,
            "run_dir": "/runs/4_model=tiny",
            "run_name": "4_model=tiny",
            "value": 0.93,
            "model_size_mb": 0.25,
            "latency_p95_ms": None,
            "not_measured_offline": ["latency_p95_ms"],
        }
    ],
    "rejected": [
        {
            "run_dir": "/runs/1_lr",
            "run_name": "1_lr",
            "status": "failed",
            "value": None,
            "model_size_mb": None,
            "reasons": ["failed at stage fit: RuntimeError: loss became NaN at step 12"],
        }
    ],
    "gates": [
        {"metric": "accuracy", "op": ">=", "target": 0.9, "phase": "offline", "gated": True},
        {
            "metric": "latency_p95_ms",
            "op": "<=",
            "target": 50,
            "phase": "serving",
            "gated": False,
            "note": "not measured offline",
        },
    ],
    "required": [],
    "inputs": ["/runs"],
    "warnings": [],
    "created_utc": "2025-01-01T12:00:00+00:00",
}


def test_an_existing_selection_json_reads_and_round_trips(tmp_path):
    path = tmp_path / "selection.json"
    path.write_text(json.dumps(EXISTING_SELECTION, indent=2))
    selection = read_selection(path)
    assert selection.selected.run_dir == "/runs/4_model=tiny" and selection.selected.latency_ms is None
    assert selection.selected.targets[0].passed is True and selection.ranking[0].rank == 1
    assert selection.rejected[0].reasons[0].startswith("failed at stage fit")
    assert selection.gates[0].note is None and selection.gates[1].note == "not measured offline"
    write_selection(tmp_path / "again.json", selection)
    # the same file again: note and latency_ms are left out when absent, as before
    assert json.loads((tmp_path / "again.json").read_text()) == EXISTING_SELECTION


def test_a_selection_without_a_winner_and_with_nan_is_strict_json(tmp_path):
    selection = Selection(
        selected=None,
        primary_metric="macro_f1",
        rejected=[RejectedRun("/runs/nan", "nan", "complete", float("nan"), 0.4, ["primary metric macro_f1 is NaN"])],
        gates=[Gate("accuracy", ">=", 0.9, "offline", True)],
    )
    path = write_selection(tmp_path / "selection.json", selection)
    raw = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert raw["selected"] is None and raw["rejected"][0]["value"] is None
    assert read_selection(path).rejected[0].value is None


def test_a_selection_round_trips_through_the_dataclasses(tmp_path):
    winner = SelectedRun(
        "/r",
        "r",
        "accuracy",
        0.9,
        "/r/checkpoints/best.ckpt",
        "/r/metrics.json",
        "/r/config.yaml",
        "/r/predictions_test.parquet",
        "/r/predictions_val.parquet",
        latency_ms={"p50": 1.0, "p95": 2.0},
    )
    selection = Selection(
        selected=winner,
        primary_metric="accuracy",
        ranking=[RankedRun(1, "/r", "r", 0.9, None, 2.0)],
        created_utc="2025-01-01T00:00:00+00:00",
    )
    assert read_selection(write_selection(tmp_path / "s.json", selection)) == selection


def test_a_selection_that_is_not_one_says_so(tmp_path):
    (tmp_path / "s.json").write_text('{"selected": "yes"}')
    with pytest.raises(RunFileError, match="corrupt"):
        read_selection(tmp_path / "s.json")
    with pytest.raises(RunFileError, match="missing"):
        read_selection(Path(tmp_path / "none.json"))


def test_an_empty_run_metrics_is_valid():
    assert RunMetrics().targets == [] and RunMetrics().temperature == 1.0

"""scopeml-select: gates, ranking and selection.json, on run folders written the way scopeml-train writes them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from scopeml.metrics import evaluate_targets
from scopeml.selection import SelectError
from scopeml.selection.rank import select_runs

# The kws10 scoping targets (conf/scoping/keywords.yaml).
TARGETS = {
    "accuracy": SimpleNamespace(min=0.90, max=None),
    "macro_f1": SimpleNamespace(min=0.90, max=None),
    "min_class_recall": SimpleNamespace(min=0.75, max=None),
    "model_size_mb": SimpleNamespace(min=None, max=1.0),
    "train_minutes": SimpleNamespace(min=None, max=10),
    "latency_p95_ms": SimpleNamespace(min=None, max=50),
    "throughput_qps": SimpleNamespace(min=100, max=None),
    "estimated_accuracy": SimpleNamespace(min=0.85, max=None),
}


def _split(accuracy: float, macro_f1: float, min_class_recall: float) -> dict:
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "min_class_recall": min_class_recall,
        "loss": 0.31,
        "clips": 400,
    }


def write_run(
    folder: Path,
    status: str = "complete",
    *,
    stage: str = "done",
    error: str | None = None,
    accuracy: float = 0.93,
    macro_f1: float = 0.93,
    min_class_recall: float = 0.85,
    size_mb: float = 0.4,
    arch: str = "dscnn",
    primary: str = "macro_f1",
    extra: dict | None = None,
    checkpoint: bool = True,
    test_offset: float = -0.01,
) -> Path:
    """A run folder as scopeml-train leaves it (status.json; when complete, metrics.json and the rest).

    accuracy, macro_f1 and min_class_recall are the validation scores (what selection ranks on); the test
    split's are those plus `test_offset`."""
    folder.mkdir(parents=True)
    state = {
        "status": status,
        "stage": stage,
        "started_utc": "2025-01-01T00:00:00+00:00",
        "updated_utc": "2025-01-01T00:05:00+00:00",
    }
    if error is not None:
        state.update(error=error, traceback=f"Traceback (most recent call last):\n  ...\n{error}\n")
    (folder / "status.json").write_text(json.dumps(state, indent=2))
    (folder / "config.yaml").write_text(
        "# Resolved config of this run\n" + yaml.safe_dump({"model": {"arch": arch}, "seed": 0})
    )
    (folder / "provenance.json").write_text(json.dumps({"python": sys.version}))
    if status != "complete":
        return folder
    params = int(size_mb * 1e6 / 4)
    measured = {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "min_class_recall": min_class_recall,
        "model_size_mb": size_mb,
        "params": params,
        "train_minutes": 3.2,
    }
    targets = evaluate_targets(TARGETS, measured)
    checked = [t for t in targets if t.passed is not None]
    metrics = {
        "run_name": folder.name,
        "status": "complete",
        "scoping": "kws10",
        "primary_metric": primary,
        "selection_split": "val",
        "test": _split(accuracy + test_offset, macro_f1 + test_offset, min_class_recall + test_offset),
        "val": _split(accuracy, macro_f1, min_class_recall),
        "model": {"arch": arch, "params": params, "model_size_mb": size_mb},
        "train_minutes": 3.2,
        "measured": measured,
        "targets": [t.as_dict() for t in targets],
        "targets_met": all(t.passed for t in checked),
        "targets_not_measured": [t.metric for t in targets if t.passed is None],
        "data_fingerprint": "kws-abc123",
        "baseline": {"majority": {"accuracy": 0.1}, "logreg_mfcc": {"accuracy": 0.55}},
        "lift_over_baseline": {"accuracy": accuracy - 0.55},
        **(extra or {}),
    }
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for name in ("data_fingerprint.json",):
        (folder / name).write_text(json.dumps({"fingerprint": "kws-abc123"}))
    for split in ("test", "val"):
        (folder / f"predictions_{split}.parquet").write_bytes(b"PAR1")
    if checkpoint:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "best.ckpt").write_bytes(b"ckpt")
    return folder


def run_select(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scopeml.cli.select", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture()
def sweep(tmp_path) -> Path:
    """A Hydra-style sweep folder: multirun.yaml beside numbered job folders."""
    root = tmp_path / "outputs" / "sweeps" / "2025-01-01_12-00-00"
    root.mkdir(parents=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    write_run(root / "0_model=big", macro_f1=0.97, accuracy=0.97, size_mb=2.4, arch="big")
    write_run(
        root / "1_hparams.lr=0.1",
        "failed",
        stage="fit",
        error="RuntimeError: loss became NaN at step 12\nsecond line that is not shown",
    )
    write_run(root / "2_hparams.lr=0.0001", "running", stage="fit")
    write_run(root / "3_model=small", macro_f1=0.93, size_mb=0.40, arch="small")
    write_run(
        root / "4_model=tiny",
        macro_f1=0.93,
        size_mb=0.25,
        arch="tiny",
        extra={
            "calibration": {"temperature": 1.3, "ece_before": 0.08, "ece_after": 0.02},
            "latency_ms": {"p50": 3.1, "p95": 4.2},
        },
    )
    write_run(root / "5_model=weak", macro_f1=0.95, accuracy=0.89, size_mb=0.3, arch="weak")
    return root


def test_selects_best_passing_run_from_a_sweep(sweep, tmp_path):
    result = run_select(sweep, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4_model=tiny" in result.stdout and "selected" in result.stdout

    selection = json.loads((sweep / "selection.json").read_text())
    winner = selection["selected"]
    run = sweep / "4_model=tiny"
    assert winner["run_dir"] == str(run.resolve())
    assert winner["run_name"] == "4_model=tiny"
    assert winner["primary_metric"] == "macro_f1" and winner["value"] == pytest.approx(0.93)
    assert winner["checkpoint"] == str(run.resolve() / "checkpoints" / "best.ckpt")
    assert Path(winner["checkpoint"]).is_file() and Path(winner["checkpoint"]).is_absolute()
    for key, name in [
        ("metrics", "metrics.json"),
        ("config", "config.yaml"),
        ("predictions_test", "predictions_test.parquet"),
        ("predictions_val", "predictions_val.parquet"),
    ]:
        assert Path(winner[key]) == run.resolve() / name
    assert winner["model"] == {"arch": "tiny", "params": 62500, "model_size_mb": 0.25}
    assert winner["calibration"]["temperature"] == 1.3

    # The tie on macro_f1 (0.93) is broken by the smaller model.
    assert [r["run_name"] for r in selection["ranking"]] == ["4_model=tiny", "3_model=small"]
    assert [r["model_size_mb"] for r in selection["ranking"]] == [0.25, 0.40]

    reasons = {r["run_name"]: r["reasons"] for r in selection["rejected"]}
    assert set(reasons) == {"0_model=big", "1_hparams.lr=0.1", "2_hparams.lr=0.0001", "5_model=weak"}
    assert reasons["0_model=big"] == ["model_size_mb 2.4 MB > 1.0 MB"]
    assert reasons["1_hparams.lr=0.1"] == ["failed at stage fit: RuntimeError: loss became NaN at step 12"]
    assert reasons["2_hparams.lr=0.0001"] == ["did not finish (status running, stage fit)"]
    assert reasons["5_model=weak"] == ["accuracy 0.89 < 0.9"]

    gates = {g["metric"]: g for g in selection["gates"]}
    assert gates["model_size_mb"] == {
        "metric": "model_size_mb",
        "op": "<=",
        "target": 1.0,
        "phase": "offline",
        "gated": True,
    }
    assert gates["latency_p95_ms"]["gated"] is False and gates["latency_p95_ms"]["note"] == "not measured offline"
    assert selection["ranking"][0]["not_measured_offline"] == ["latency_p95_ms", "throughput_qps", "estimated_accuracy"]
    assert selection["created_utc"].endswith("+00:00")
    # Readable table: every run and its reasons appear.
    for text in (
        "0_model=big",
        "model_size_mb 2.4 MB > 1.0 MB",
        "failed at stage fit",
        "accuracy 0.89 < 0.9",
        "not measured offline",
    ):
        assert text in result.stdout


def test_console_script_and_run_folders_as_inputs(sweep, tmp_path):
    exe = Path(sys.executable).with_name("scopeml-select")
    assert exe.exists(), "pip install -e . has not created the scopeml-select entry point"
    out = tmp_path / "sel" / "chosen.json"
    result = subprocess.run(
        [str(exe), str(sweep / "3_model=small"), str(sweep / "0_model=big"), "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["selected"]["run_name"] == "3_model=small"
    assert not (sweep / "selection.json").exists()


def test_run_folder_input_writes_to_current_folder(sweep, tmp_path):
    work = tmp_path / "cwd"
    work.mkdir()
    assert run_select(sweep / "4_model=tiny", cwd=work).returncode == 0
    assert json.loads((work / "selection.json").read_text())["selected"]["run_name"] == "4_model=tiny"


def test_no_run_passes_exits_1_with_every_reason(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "0_big", macro_f1=0.97, size_mb=2.4)
    write_run(root / "1_weak", accuracy=0.84, macro_f1=0.8, min_class_recall=0.5)
    write_run(root / "2_crashed", "failed", stage="data", error="DataError: no clips for class 'go'")
    write_run(root / "3_running", "running", stage="fit")
    result = run_select(root, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr

    selection = json.loads((root / "selection.json").read_text())
    assert selection["selected"] is None and selection["ranking"] == []
    reasons = {r["run_name"]: r["reasons"] for r in selection["rejected"]}
    assert reasons == {
        "0_big": ["model_size_mb 2.4 MB > 1.0 MB"],
        "1_weak": ["accuracy 0.84 < 0.9", "macro_f1 0.8 < 0.9", "min_class_recall 0.5 < 0.75"],
        "2_crashed": ["failed at stage data: DataError: no clips for class 'go'"],
        "3_running": ["did not finish (status running, stage fit)"],
    }
    assert "no run passed the gates" in result.stderr
    for name, why in reasons.items():
        assert name in result.stderr
        for reason in why:
            assert reason in result.stderr


def test_empty_or_missing_folder_exits_2(tmp_path):
    empty = tmp_path / "empty_sweep"
    (empty / "not_a_run").mkdir(parents=True)
    result = run_select(empty, cwd=tmp_path)
    assert result.returncode == 2
    assert "no training runs found" in result.stderr and str(empty) in result.stderr
    assert not (empty / "selection.json").exists()

    missing = run_select(tmp_path / "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_unknown_metric_exits_2(sweep, tmp_path):
    result = run_select(sweep, "--primary", "f2_score", cwd=tmp_path)
    assert result.returncode == 2 and "f2_score" in result.stderr and "macro_f1" in result.stderr


def test_help_mentions_selection_json(tmp_path):
    result = run_select("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "selection.json" in result.stdout and "--primary" in result.stdout and "--require" in result.stdout


def test_imports_no_torch(tmp_path):
    code = (
        "import sys, scopeml.cli.select as cli; cli.build_parser()\nassert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_selection_run_imports_no_torch(sweep, tmp_path):
    code = (
        "import sys, runpy; sys.argv = ['scopeml-select', sys.argv[1]]\n"
        "try:\n    runpy.run_module('scopeml.cli.select', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(sweep)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_sweeps_parent_is_searched_two_levels_deep(sweep):
    selection = select_runs([sweep.parent])
    assert selection.selected.run_name == "4_model=tiny"
    assert len(selection.ranking) + len(selection.rejected) == 6


def test_ties_broken_by_latency_then_folder_name(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "b_slow", size_mb=0.3, extra={"latency_ms": {"p50": 5.0, "p95": 9.0}})
    write_run(root / "a_fast", size_mb=0.3, extra={"latency_ms": {"p50": 2.0, "p95": 3.0}})
    write_run(root / "d_same", size_mb=0.5)
    write_run(root / "c_same", size_mb=0.5)
    selection = select_runs([root])
    assert [r.run_name for r in selection.ranking] == ["a_fast", "b_slow", "c_same", "d_same"]
    assert selection.selected.latency_ms == {"p50": 2.0, "p95": 3.0}
    assert selection.selected.calibration is None


def test_primary_override_and_lower_is_better(sweep):
    by_accuracy = select_runs([sweep], primary="accuracy")
    assert by_accuracy.primary_metric == "accuracy"
    assert [r.run_name for r in by_accuracy.ranking] == ["4_model=tiny", "3_model=small"]
    by_size = select_runs([sweep], primary="model_size_mb")
    assert by_size.higher_is_better is False
    assert by_size.selected.run_name == "4_model=tiny" and by_size.selected.value == 0.25
    with pytest.raises(SelectError, match="unknown metric"):
        select_runs([sweep], primary="nonsense")


def test_corrupt_metrics_nan_primary_and_missing_checkpoint_are_rejected(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "ok")
    bad = write_run(root / "corrupt")
    (bad / "metrics.json").write_text('{"run_name": "corrupt", "test": {')
    gone = write_run(root / "no_metrics")
    (gone / "metrics.json").unlink()
    write_run(root / "nan", extra={"val": _split(0.93, float("nan"), 0.8)})
    write_run(root / "no_ckpt", checkpoint=False)
    selection = select_runs([root])
    assert selection.selected.run_name == "ok"
    reasons = {r.run_name: r.reasons for r in selection.rejected}
    assert reasons["corrupt"][0].startswith("metrics.json corrupt")
    assert reasons["no_metrics"] == ["metrics.json missing although status is complete"]
    assert reasons["nan"] == ["primary metric macro_f1 is NaN"]
    assert reasons["no_ckpt"] == ["checkpoints/best.ckpt missing"]
    # selection.json stays strict JSON even with a NaN in a rejected run.
    from scopeml.run_files import write_selection

    path = write_selection(tmp_path / "selection.json", selection)
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert not math.isnan(selection.selected.value)


def test_require_gates_targets_not_measured_offline(tmp_path):
    root = tmp_path / "sweep"
    write_run(root / "measured_fast", macro_f1=0.92, extra={"latency_ms": {"p50": 10.0, "p95": 20.0}})
    write_run(root / "measured_slow", macro_f1=0.95, extra={"latency_ms": {"p50": 60.0, "p95": 80.0}})
    write_run(root / "unmeasured", macro_f1=0.96)
    assert select_runs([root]).selected.run_name == "unmeasured"  # latency is not a gate by default

    result = run_select(root, "--require", "latency_p95_ms", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    selection = json.loads((root / "selection.json").read_text())
    assert selection["selected"]["run_name"] == "measured_fast"
    reasons = {r["run_name"]: r["reasons"] for r in selection["rejected"]}
    assert reasons["measured_slow"] == ["latency_p95_ms 80.0 ms > 50.0 ms"]
    assert reasons["unmeasured"] == ["latency_p95_ms is required but was not measured (target <= 50.0 ms)"]
    assert selection["required"] == ["latency_p95_ms"]


def test_selection_ranks_on_validation_and_never_on_test(tmp_path):
    """The run with the better test score but the worse validation score is not selected; the test figure of
    the selected run is carried beside, and selection.json says the split it chose on."""
    root = tmp_path / "sweep"
    root.mkdir()
    write_run(root / "0_better_test", macro_f1=0.93, accuracy=0.93, test_offset=+0.05)  # test 0.98, val 0.93
    write_run(root / "1_better_val", macro_f1=0.95, accuracy=0.95, test_offset=-0.04)  # test 0.91, val 0.95
    result = run_select(root, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    selection = json.loads((root / "selection.json").read_text())
    assert selection["split"] == "val"
    assert selection["selected"]["run_name"] == "1_better_val"
    assert selection["selected"]["value"] == pytest.approx(0.95)
    assert selection["selected"]["test"]["macro_f1"] == pytest.approx(0.91)
    assert [r["run_name"] for r in selection["ranking"]] == ["1_better_val", "0_better_test"]
    assert "test split (reported once, not used to choose): macro_f1=0.91" in result.stdout


def test_a_run_whose_targets_were_measured_on_test_cannot_compete(tmp_path):
    """metrics.json from before selection moved to validation measured its targets on test: rejected, said why."""
    old = write_run(tmp_path / "old", macro_f1=0.99)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["selection_split"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    write_run(tmp_path / "new", macro_f1=0.92)
    selection = select_runs([tmp_path / "old", tmp_path / "new"])
    assert selection.selected.run_name == "new"
    (rejected,) = selection.rejected
    assert rejected.run_name == "old" and "measured its targets on the test split" in rejected.reasons[0]


def test_cross_validated_runs_rank_on_their_cv_mean(tmp_path):
    cv = {
        "scheme": "leave-one-speaker-out",
        "folds": 2,
        "per_fold": [],
        "mean": {"accuracy": 0.96, "macro_f1": 0.96, "min_class_recall": 0.9},
        "std": {"accuracy": 0.02, "macro_f1": 0.02, "min_class_recall": 0.05},
        "pooled": {},
    }
    write_run(tmp_path / "cv", macro_f1=0.91, extra={"selection_split": "cv", "cv": cv, "val": {}})
    write_run(tmp_path / "val", macro_f1=0.94)
    selection = select_runs([tmp_path / "cv", tmp_path / "val"])
    assert selection.selected.run_name == "cv" and selection.selected.value == pytest.approx(0.96)
    assert selection.split == "cv+val"
    assert any("different kinds of split" in w for w in selection.warnings)

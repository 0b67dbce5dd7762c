"""Error analysis on a hand-made predictions frame whose confusions, slices and worst clips are known."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from scopeml.training.errors import analyze, log_to_wandb

CLASSES = ["yes", "no", "up"]
PNG = b"\x89PNG\r\n\x1a\n"

# (speaker, label, pred, confidence): ann is always right; bob is always wrong and says "no" for "yes" three times.
ROWS = [
    ("ann", "yes", "yes", 0.90),
    ("ann", "yes", "yes", 0.85),
    ("ann", "no", "no", 0.80),
    ("ann", "no", "no", 0.45),
    ("ann", "up", "up", 0.70),
    ("ann", "up", "up", 0.95),
    ("bob", "yes", "no", 0.95),
    ("bob", "yes", "no", 0.70),
    ("bob", "yes", "no", 0.60),
    ("bob", "no", "yes", 0.50),
    ("bob", "up", "no", 0.80),
    ("bob", "no", "up", 0.40),
]
# Rows true yes/no/up, columns predicted yes/no/up.
EXPECTED_CM = np.array([[2, 3, 0], [1, 2, 1], [0, 1, 2]])


def make_preds() -> pd.DataFrame:
    records = []
    for k, (speaker, label, pred, conf) in enumerate(ROWS):
        rest = (1 - conf) / (len(CLASSES) - 1)
        probs = {f"prob_{c}": conf if c == pred else rest for c in CLASSES}
        records.append(
            {
                "clip_id": f"c{k:02d}",
                "source": "synth",
                "speaker": speaker,
                "split": "test",
                "label": label,
                "pred": pred,
                "confidence": conf,
                "correct": label == pred,
                **probs,
            }
        )
    frame = pd.DataFrame(records)
    frame["duration_ms"] = [100, 200, 300, 400, 500, 600, 700, 800, 900, np.nan, np.inf, -np.inf]
    frame["snr_db"] = np.nan  # nothing finite: no slices at all
    frame["voice"] = [f"v{k}" for k in range(len(frame))]
    return frame


@pytest.fixture
def result(tmp_path):
    out = tmp_path / "errors"
    return analyze(make_preds(), CLASSES, out, target_accuracy=0.8, worst_n=8), out


def test_writes_every_file_and_a_valid_png(result):
    _, out = result
    for name in [
        "confusion_matrix.png",
        "confusion_matrix.csv",
        "per_class.csv",
        "slices.csv",
        "confused_pairs.csv",
        "worst_examples.csv",
    ]:
        assert (out / name).is_file(), name
    assert (out / "confusion_matrix.png").read_bytes()[:8] == PNG


def test_confusion_matrix_csv_matches_hand_count(result):
    _, out = result
    cm = pd.read_csv(out / "confusion_matrix.csv", index_col=0)
    assert list(cm.index) == CLASSES and list(cm.columns) == CLASSES
    np.testing.assert_array_equal(cm.to_numpy(), EXPECTED_CM)


def test_per_class_and_confused_pairs(result):
    summary, out = result
    assert summary["per_class"]["yes"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 5, "f1": 0.5, "support": 5})
    assert summary["confused_pairs"][0] == {"true": "yes", "pred": "no", "count": 3, "share_of_true": 0.6}
    assert all(p["true"] != p["pred"] for p in summary["confused_pairs"])
    assert sum(p["count"] for p in summary["confused_pairs"]) == EXPECTED_CM.sum() - np.trace(EXPECTED_CM)
    assert len(pd.read_csv(out / "confused_pairs.csv")) == 4
    assert summary["overall"]["accuracy"] == pytest.approx(6 / 12)


def test_speaker_slice_below_target_is_flagged(result):
    summary, out = result
    speaker = {s["value"]: s for s in summary["slices"] if s["slice"] == "speaker"}
    assert speaker["ann"]["accuracy"] == 1.0 and not speaker["ann"]["below_target"]
    assert speaker["bob"]["accuracy"] == 0.0 and speaker["bob"]["below_target"]
    assert speaker["bob"]["macro_f1"] == 0.0 and speaker["ann"]["macro_f1"] == 1.0
    flagged = [(s["slice"], s["value"]) for s in summary["flagged_slices"]]
    assert ("speaker", "bob") in flagged and ("speaker", "ann") not in flagged
    # Singleton voice slices are all wrong or right but too small (n < min_slice_size) to flag.
    assert not any(s == "voice" for s, _ in flagged)
    assert len(pd.read_csv(out / "slices.csv")) == len(summary["slices"])


def test_numeric_buckets_skip_nan_and_inf(result):
    summary, _ = result
    duration = [s for s in summary["slices"] if s["slice"] == "duration_ms"]
    assert 2 <= len(duration) <= 4
    assert sum(s["n"] for s in duration) == 9  # the NaN and both infinities are in no bucket
    assert duration[0]["value"].startswith("[100.0, ") and duration[-1]["value"].endswith(", 900.0]")
    assert all(s["value"].startswith("[") for s in duration)
    assert not any(s["slice"] == "snr_db" for s in summary["slices"])


def test_high_cardinality_columns_are_not_slices(tmp_path):
    preds = pd.concat([make_preds()] * 5, ignore_index=True)
    preds["voice"] = [f"v{k}" for k in range(len(preds))]  # 60 distinct: an identifier, not a slice
    preds["speaker"] = [f"s{k}" for k in range(len(preds))]  # speakers always slice
    summary = analyze(preds, CLASSES, tmp_path)
    columns = {s["slice"] for s in summary["slices"]}
    assert "voice" not in columns and "speaker" in columns
    assert summary["flagged_slices"] == []  # no target, nothing flagged


def test_worst_examples_start_with_most_confident_error(result):
    summary, out = result
    worst = summary["worst_examples"]
    assert len(worst) == 8
    assert set(worst[0]) == {"clip_id", "source", "label", "pred", "confidence", "true_prob"}
    assert worst[0]["clip_id"] == "c06" and worst[0]["confidence"] == 0.95
    errors = [w for w in worst if w["label"] != w["pred"]]
    assert [w["confidence"] for w in errors] == [0.95, 0.8, 0.7, 0.6, 0.5, 0.4]
    # Then correct clips, least sure of the true class first.
    assert [w["clip_id"] for w in worst[6:]] == ["c03", "c04"]
    assert worst[6]["true_prob"] == pytest.approx(0.45)
    assert pd.read_csv(out / "worst_examples.csv")["clip_id"].tolist() == [w["clip_id"] for w in worst]


def test_summary_is_strict_json(result):
    summary, _ = result
    json.dumps(summary, allow_nan=False)


def test_unknown_label_is_an_error(tmp_path):
    preds = make_preds()
    preds.loc[0, "label"] = "down"
    with pytest.raises(ValueError, match="down"):
        analyze(preds, CLASSES, tmp_path)


def test_log_to_wandb_offline(result, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from scopeml.training.tracking import read_offline_run

    monkeypatch.setenv("WANDB_SILENT", "true")
    summary, out = result

    def audio(clip_id):
        if clip_id == "c03":
            raise KeyError(clip_id)  # a missing clip leaves an empty cell, not a failed log
        t = np.arange(800) / 8000
        return np.sin(2 * np.pi * 440 * t).astype(np.float32), 8000

    run = wandb.init(mode="offline", dir=tmp_path, project="scopeml-test")
    try:
        log_to_wandb(run, summary, out, make_preds(), audio_lookup=audio)
    finally:
        run.finish()
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    # finish() can return before wandb-core has flushed the record stream: wait for it rather than race it.
    deadline = time.monotonic() + 30
    while "errors/flagged_slices" not in (summary_logged := read_offline_run(run_dir)["summary"]):
        assert time.monotonic() < deadline, f"no flagged_slices in offline summary: {sorted(summary_logged)}"
        time.sleep(0.2)
    assert summary_logged["errors/flagged_slices"] == len(summary["flagged_slices"])
    assert summary_logged["errors/worst_examples/nrows"] == len(summary["worst_examples"])
    assert summary_logged["errors/worst_examples/ncols"] == 7  # six columns plus audio
    assert summary_logged["errors/slices/nrows"] == len(summary["slices"])
    assert summary_logged["errors/confusion_matrix/_type"] == "image-file"

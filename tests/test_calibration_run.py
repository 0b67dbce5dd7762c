"""The fitted calibration path end to end: a short real run whose validation split has errors fits T on the
validation logits, saves softmax(logits / T) and serves the same probabilities from its bundle.

The shared tiny run has fewer validation clips than calibration fits on (T stays 1 there), so this run has
its own data: the five tiny voices at two pitches and two rates, 40 clips per voice and one voice (40 clips)
in validation; six short epochs leave it far from perfect (measured: about 30% validation accuracy).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import TINY_DATA, read_json, train

pytestmark = pytest.mark.slow

VOICES = next(o for o in TINY_DATA if o.startswith("++data.source.voices="))
CALIBRATED_RUN = [
    VOICES,
    "data.source.pitches=[40,60]",
    "data.source.rates=[150,190]",
    "hparams.max_epochs=6",
    "hparams.batch_size=8",
    "hparams.lr=0.005",
    "trainer.progress_bar=none",
    "tracker=none",
    "scoping=keywords10",  # the class set its figures were measured with (the ECE comment below)
]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory) -> dict:
    """The run, its bundle (loaded in process: no bentoml import), and the model's logits recomputed from it."""
    import torch
    import yaml

    from scopeml.config import load
    from scopeml.data import build_dataset
    from scopeml.serving.bundle import ServingBundle, write_bundle

    base = tmp_path_factory.mktemp("calibrated")
    run_dir = base / "run"
    proc = train(run_dir, *CALIBRATED_RUN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    write_bundle(run_dir, base / "bundle", deploy={})
    bundle = ServingBundle.load(base / "bundle")
    config = load(yaml.safe_load((run_dir / "config.yaml").read_text()))
    data = build_dataset(config.data, config.scoping.classes, progress=False)  # the run's cached clips
    out = {"run": run_dir, "bundle": bundle, "data": data, "logits": {}, "targets": {}, "waves": {}}
    for split in ("val", "test"):
        rows = data.indices(split)
        out["waves"][split] = data.waves[rows]
        out["targets"][split] = data.targets[rows]
        with torch.inference_mode():
            logits = bundle.model(torch.from_numpy(np.ascontiguousarray(data.waves[rows])))
        out["logits"][split] = logits.numpy().astype(np.float64)
        preds = pd.read_parquet(run_dir / f"predictions_{split}.parquet")
        assert preds["clip_id"].tolist() == data.manifest["clip_id"].iloc[rows].tolist()  # same clips, same order
        out[f"preds_{split}"] = preds
    return out


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def probs_of(preds: pd.DataFrame, classes: list[str]) -> np.ndarray:
    return preds[[f"prob_{c}" for c in classes]].to_numpy(dtype=np.float64)


def test_temperature_is_fitted_on_validation_logits_that_have_errors(calibrated):
    from scopeml.training.calibration import MIN_FIT_CLIPS, T_MAX, T_MIN, fit_temperature

    val_logits, y_val = calibrated["logits"]["val"], calibrated["targets"]["val"]
    errors = int((val_logits.argmax(1) != y_val).sum())
    assert len(y_val) >= MIN_FIT_CLIPS and errors > 0, f"{errors} errors in {len(y_val)} validation clips"
    assert (~calibrated["preds_val"]["correct"]).sum() == errors

    cal = read_json(calibrated["run"] / "metrics.json")["calibration"]
    fitted = fit_temperature(val_logits, y_val)
    assert T_MIN < fitted < T_MAX, f"fit {fitted} is clamped: this test is meant to check an unclamped fit"
    assert cal["temperature"] != 1.0
    assert cal["temperature"] == pytest.approx(fitted, rel=1e-4)
    assert cal["fitted_on"] == "val" and cal["note"] == f"fitted on 'val' ({errors} errors in {len(y_val)} clips)"


def test_saved_probabilities_are_the_model_logits_over_t_and_nll_improves_on_validation(calibrated):
    from scopeml.training.calibration import expected_calibration_error, softmax

    cal = read_json(calibrated["run"] / "metrics.json")["calibration"]
    t, classes = cal["temperature"], calibrated["data"].classes
    for split in ("val", "test"):
        saved = probs_of(calibrated[f"preds_{split}"], classes)
        logits, y = calibrated["logits"][split], calibrated["targets"][split]
        np.testing.assert_allclose(saved, softmax(logits, t), atol=1e-5, err_msg=split)
        assert np.abs(saved - softmax(logits)).max() > 1e-3  # T moved them: these are not the raw softmax
        assert cal[f"ece_{split}_before"] == pytest.approx(expected_calibration_error(softmax(logits), y), abs=1e-5)
        assert cal[f"ece_{split}_after"] == pytest.approx(expected_calibration_error(saved, y), abs=1e-5)
    # What the fit guarantees: validation NLL is no worse than at T = 1 (the clamp keeps that: NLL is unimodal in T).
    logits, y = calibrated["logits"]["val"], calibrated["targets"]["val"]
    saved = probs_of(calibrated["preds_val"], classes)
    assert nll(saved, y) < nll(softmax(logits), y)
    # Not asserted: that ECE falls. T minimizes NLL, not ECE, and ECE on 40 clips is noisy: this seeded run
    # improved it on one machine (0.143 -> 0.080) and worsened it on another (0.098 -> 0.111, the same code and
    # data: CPU kernels differ in rounding), and nearby seeds made it worse in 4 of 7 runs. The ECE figures
    # are checked above against their definition, on the probabilities the run saved.


def test_the_bundle_serves_the_calibrated_probabilities(calibrated):
    cal = read_json(calibrated["run"] / "metrics.json")["calibration"]
    bundle = calibrated["bundle"]
    assert bundle.temperature == cal["temperature"]
    preds = calibrated["preds_test"]
    wave = calibrated["waves"]["test"][:1]
    response = bundle.describe(bundle.predict(wave)[0])
    expected = {c: float(preds[f"prob_{c}"].iloc[0]) for c in bundle.classes}
    assert response["probabilities"] == pytest.approx(expected, abs=1e-5)
    assert response["label"] == preds["pred"].iloc[0]
    assert response["confidence"] == pytest.approx(float(preds["confidence"].iloc[0]), abs=1e-5)

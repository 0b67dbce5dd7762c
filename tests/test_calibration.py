"""Temperature scaling: fits T the right way round, never moves argmax, and ECE measures what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from scopeml.training.calibration import (
    MIN_FIT_CLIPS,
    T_MAX,
    T_MIN,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    logits_from_probs,
    reliability_plot,
    softmax,
)

N, C = 5000, 5


def synthetic_logits(scale: float, noise: float = 0.6, seed: int = 0):
    """Logits = scale * (one-hot of the true class + Gaussian noise): ~70% top-1 accuracy at noise 0.6."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, N)
    return scale * (np.eye(C)[labels] + noise * rng.standard_normal((N, C))), labels


def test_over_confident_logits_get_t_above_one_and_better_ece():
    logits, labels = synthetic_logits(5.0)
    assert 0.6 < (logits.argmax(1) == labels).mean() < 0.8
    t = fit_temperature(logits, labels)
    before = expected_calibration_error(softmax(logits), labels)
    after = expected_calibration_error(softmax(logits, t), labels)
    assert t > 1.2
    assert before > 0.08 and after < before / 3


def test_under_confident_logits_get_t_below_one():
    logits, labels = synthetic_logits(0.3)
    t = fit_temperature(logits, labels)
    assert t < 1.0
    assert expected_calibration_error(softmax(logits, t), labels) < expected_calibration_error(softmax(logits), labels)


def test_fit_is_deterministic_and_minimizes_nll():
    logits, labels = synthetic_logits(5.0, seed=3)
    t = fit_temperature(logits, labels)
    assert fit_temperature(logits, labels) == t

    def nll(temp):
        return -np.mean(np.log(softmax(logits, temp)[np.arange(N), labels]))

    assert nll(t) <= min(nll(t * 0.95), nll(t * 1.05), nll(1.0))


def test_temperature_never_changes_argmax():
    logits, _ = synthetic_logits(5.0, seed=1)
    for t in (0.1, 0.5, 2.0, 10.0):
        np.testing.assert_array_equal(softmax(logits, t).argmax(1), logits.argmax(1))


def test_empty_input_gives_identity_temperature():
    assert fit_temperature(np.zeros((0, C)), np.zeros(0, dtype=int)) == 1.0
    assert expected_calibration_error(np.zeros((0, C)), np.zeros(0, dtype=int)) == 0.0


def test_ece_of_calibrated_probs_is_small_and_of_overconfident_is_large():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(C) * 0.5, size=20_000)
    # Labels drawn from the predicted distribution: calibrated by construction.
    labels = (rng.random(len(probs))[:, None] > probs.cumsum(1)).sum(1).clip(max=C - 1)
    assert expected_calibration_error(probs, labels) < 0.03
    sharpened = softmax(logits_from_probs(probs), 0.3)
    assert expected_calibration_error(sharpened, labels) > 0.1


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 0])
    # Bins (n=10): 0.9 -> acc 0.5 vs conf 0.9 (2 clips); 0.6 -> one right at 0.6 and one wrong at 0.6.
    expected = 2 / 4 * abs(0.5 - 0.9) + 2 / 4 * abs(0.5 - 0.6)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)


def test_logits_from_probs_round_trips_and_stays_finite():
    probs = np.array([[0.7, 0.3, 0.0], [0.2, 0.2, 0.6]])
    logits = logits_from_probs(probs)
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(softmax(logits), probs, atol=1e-9)


def test_reliability_plot_writes_png(tmp_path):
    logits, labels = synthetic_logits(5.0)
    path = tmp_path / "plots" / "reliability.png"
    reliability_plot(path, softmax(logits), softmax(logits, fit_temperature(logits, labels)), labels)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- calibrate: the decision and its report
def test_calibrate_fits_on_the_fit_split_and_applies_t_to_every_split(tmp_path):
    val, y_val = synthetic_logits(5.0, seed=0)
    test, y_test = synthetic_logits(5.0, seed=1)
    info, probs = calibrate(
        {"val": val, "test": test}, {"val": y_val, "test": y_test}, "val", tmp_path / "c.png", "test"
    )
    t = fit_temperature(val, y_val)
    assert T_MIN < t < T_MAX and info["temperature"] == t
    assert info["fitted_on"] == "val" and info["note"].startswith("fitted on 'val'") and info["plotted"] == "test"
    for split, lg, y in (("val", val, y_val), ("test", test, y_test)):
        np.testing.assert_allclose(probs[split], softmax(lg, t))
        assert info[f"ece_{split}_before"] == pytest.approx(expected_calibration_error(softmax(lg), y))
        assert info[f"ece_{split}_after"] == pytest.approx(expected_calibration_error(softmax(lg, t), y))
        assert info[f"ece_{split}_after"] < info[f"ece_{split}_before"]
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_calibrate_clamps_a_fitted_t_that_leaves_the_bounds():
    logits, labels = synthetic_logits(0.05)  # nearly flat logits: the fit wants T far below 1
    assert fit_temperature(logits, labels) < T_MIN
    info, _ = calibrate({"val": logits}, {"val": labels}, "val", None)
    assert info["temperature"] == T_MIN and "clamped" in info["note"]


def test_a_fit_split_without_errors_keeps_t_at_one_and_says_why():
    labels = np.arange(60) % C
    logits = 2.0 * np.eye(C)[labels]  # every clip right, at moderate confidence
    assert fit_temperature(logits, labels) < T_MIN  # what fitting would do: sharpen as far as the search goes
    test, y_test = synthetic_logits(2.0)
    info, probs = calibrate({"val": logits, "test": test}, {"val": labels, "test": y_test}, "val", None)
    assert info["temperature"] == 1.0
    assert "kept T = 1" in info["note"] and "no errors in the 60 'val' clips" in info["note"]
    np.testing.assert_allclose(probs["test"], softmax(test))
    assert info["ece_test_after"] == info["ece_test_before"]


def test_too_few_fit_clips_keep_t_at_one_and_say_why():
    logits, labels = synthetic_logits(5.0)
    n = MIN_FIT_CLIPS - 1
    assert (logits[:n].argmax(1) != labels[:n]).any()  # errors, but too few clips to fit on
    info, probs = calibrate({"val": logits[:n]}, {"val": labels[:n]}, "val", None)
    assert info["temperature"] == 1.0 and f"only {n} 'val' clips" in info["note"]
    np.testing.assert_allclose(probs["val"], softmax(logits[:n]))
    info, _ = calibrate({"val": logits[: n + 1]}, {"val": labels[: n + 1]}, "val", None)
    assert info["temperature"] != 1.0


def test_missing_and_empty_splits(tmp_path):
    logits, labels = synthetic_logits(5.0)
    # No test split at all: the plot falls back to the fit split, and only the splits given are reported.
    info, probs = calibrate({"cv": logits}, {"cv": labels}, "cv", tmp_path / "a.png", plot_split="test")
    assert info["fitted_on"] == "cv" and info["plotted"] == "cv" and (tmp_path / "a.png").exists()
    assert set(probs) == {"cv"} and {k for k in info if k.startswith("ece_")} == {"ece_cv_before", "ece_cv_after"}
    # An empty test split: calibrated to an empty array, its ECE reported as None rather than a perfect 0.
    empty = {"val": logits, "test": np.zeros((0, C))}
    info, probs = calibrate(empty, {"val": labels, "test": np.zeros(0, int)}, "val", tmp_path / "b.png", "test")
    assert info["plotted"] == "val" and info["temperature"] != 1.0
    assert probs["test"].shape == (0, C) and info["ece_test_before"] is None and info["ece_test_after"] is None
    # No fit split: nothing to fit on, T stays 1; nothing plotted when no split has clips.
    info, probs = calibrate({"test": np.zeros((0, C))}, {"test": np.zeros(0, int)}, "val", tmp_path / "c.png", "test")
    assert info["temperature"] == 1.0 and info["note"] == "kept T = 1: no 'val' clips to fit on"
    assert "plotted" not in info and not (tmp_path / "c.png").exists()


def test_calibrate_rejects_logits_without_matching_targets():
    logits, labels = synthetic_logits(5.0)
    with pytest.raises(ValueError, match="'test'"):
        calibrate({"val": logits, "test": logits}, {"val": labels}, "val", None)
    with pytest.raises(ValueError, match="'val' has logits of shape"):
        calibrate({"val": logits}, {"val": labels[:10]}, "val", None)

"""Temperature scaling: fits T the right way round, never moves argmax, and ECE measures what it claims."""

from __future__ import annotations

import numpy as np
import pytest

from scopeml.training.calibration import (
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

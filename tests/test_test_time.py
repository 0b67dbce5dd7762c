"""models.test_time: the member trained as it is, scored on warped and shifted views, scored without them in CV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_DATA, composed, packaged_cv_run, read_json, train

CLASSES = ["low", "mid", "high"]


def spotter(*overrides: str):
    from scopeml.training.module import KeywordSpotter

    cfg = composed("model=dscnn_tta", *overrides)
    return KeywordSpotter(cfg["model"], cfg["frontend"], cfg["hparams"], CLASSES, 16000, clip_seconds=0.5)


def waves(n: int = 6) -> torch.Tensor:
    return 0.1 * torch.randn(n, 8000, generator=torch.Generator().manual_seed(1))


def tones() -> torch.Tensor:
    """Six half-second clips, a tone each from 200 Hz to 4 kHz: a frequency warp moves each to other bins."""
    t = torch.arange(8000) / 16000
    burst = ((t > 0.1) & (t < 0.35)).float()
    return torch.stack([0.1 * torch.sin(2 * torch.pi * f * t) * burst for f in (200, 500, 900, 1500, 2500, 4000)])


def fit_to_tones(front, member) -> None:
    """A few steps on the tones: an untrained DS-CNN answers every input alike, which would hide the views."""
    opt = torch.optim.Adam(member.parameters(), lr=0.01)
    features, labels = front(tones()).detach(), torch.arange(6) % len(CLASSES)
    member.eval()  # fitted as it is scored: batch norm on its running statistics, no dropout
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(member(features), labels).backward()
        opt.step()


def edge_shift(features: torch.Tensor, s: int) -> torch.Tensor:
    """The features delayed by s frames (advanced for s < 0), the edge frame repeated into the gap."""
    out = torch.roll(features, s, dims=-1)
    if s > 0:
        out[..., :s] = features[..., :1]
    else:
        out[..., s:] = features[..., -1:]
    return out


def test_in_training_it_is_the_member_alone():
    torch.manual_seed(0)
    module = spotter("model.member.dropout=0.0").train()
    front, views = module.net[0], module.net[1]
    features = front(waves())
    torch.testing.assert_close(views(features), views.member(features))


def test_in_evaluation_it_averages_the_members_probabilities_over_the_warps_training_draws_from():
    from scopeml.data.augment import vtlp_warp

    torch.manual_seed(0)
    module = spotter()
    front, views = module.net[0], module.net[1]
    fit_to_tones(front, views.member)
    module.eval()
    x = tones()
    with torch.no_grad():
        features = front(x)
        bins = front.bin_frequencies()
        warped = [vtlp_warp(features, bins, torch.full((len(x),), a, dtype=torch.float64)) for a in (0.9, 1.1)]
        each = torch.stack([torch.softmax(views.member(f), -1) for f in [features, *warped]])
        probs = torch.softmax(module(x), -1)
    torch.testing.assert_close(probs, each.mean(0))
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the warp changed what the member sees


def test_shifted_views_repeat_the_edge_frame_and_script_like_the_python_module():
    torch.manual_seed(0)
    module = spotter("model.warps=[]", "model.shifts=[3,-2]").eval()
    front, views = module.net[0], module.net[1]
    x = waves()
    with torch.no_grad():
        features = front(x)
        got = views.views(features)
        for view, s in zip(got[1:], (3, -2)):
            torch.testing.assert_close(view, edge_shift(features, s))
        scripted = torch.jit.script(module.net)
        torch.testing.assert_close(scripted(x), module(x))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.warps=[1.0]", "warps are factors in [0.5, 2] other than 1"),
        ("model.shifts=[0]", "shifts are frame counts other than 0"),
    ],
)
def test_a_bad_view_fails_before_any_data_naming_the_model(tmp_path: Path, override: str, message: str):
    proc = train(tmp_path / "run", *TINY_DATA, "model=dscnn_tta", override)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model: building scopeml.models.test_time.TestTimeViews failed: ValueError: " + message in proc.stderr
    assert not (tmp_path / "run" / "data_report.json").exists()  # no data was built


@pytest.mark.slow
def test_cross_validation_scores_it_without_views_and_the_package_serves_the_views(tmp_path: Path):
    from scopeml.data.augment import vtlp_warp
    from scopeml.training.calibration import softmax

    # fewer epochs leave the model answering near-uniformly, views or not
    run_dir, bundle, waves, saved_probs = packaged_cv_run(tmp_path, "model=dscnn_tta", "hparams.max_epochs=4")
    per_fold = read_json(run_dir / "metrics.json")["cv"]["per_fold"]
    log = (run_dir / "train.log").read_text()
    for fold in per_fold:
        assert f"without test-time views: {fold['without_views_accuracy']:.4f}" in log

    assert bundle.model[1].warp_lo.shape[0] == 2  # rebuilt from the packaged config with its two warps
    served = bundle.predict(waves)
    np.testing.assert_allclose(served, saved_probs, atol=1e-5)
    t = read_json(run_dir / "metrics.json")["calibration"]["temperature"]
    with torch.no_grad():  # those are the member's averaged over the warps, at the run's temperature
        front, member = bundle.model[0], bundle.model[1].member
        features = front(torch.from_numpy(waves))
        views = [features] + [
            vtlp_warp(features, front.bin_frequencies(), torch.full((len(waves),), a, dtype=torch.float64))
            for a in (0.9, 1.1)
        ]
        each = [torch.softmax(member(v), -1).numpy().astype(np.float64) for v in views]
    averaged = softmax(np.log(np.mean(each, axis=0)), t)
    plain = softmax(np.log(each[0]), t)
    # A model this small and briefly trained answers nearly alike on every view, so compare distances: the served
    # probabilities are the views' average to float precision, far closer than to the member's without views.
    for probs in (served, saved_probs):
        assert np.abs(probs - averaged).max() < np.abs(probs - plain).max() / 20

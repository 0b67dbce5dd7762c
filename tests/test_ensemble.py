"""models.ensemble: each member trained on its own loss, probabilities averaged, scored alone in CV, packaged whole."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import composed, packaged_cv_run, read_json, train

CLASSES = ["low", "mid", "high"]


def spotter(*overrides: str):
    from scopeml.training.module import KeywordSpotter

    cfg = composed("model=dscnn_ensemble", *overrides)
    return KeywordSpotter(cfg["model"], cfg["frontend"], cfg["hparams"], CLASSES, 16000, clip_seconds=0.5)


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.randn(n, 8000, generator=g), torch.arange(n) % len(CLASSES)


def test_members_start_apart_and_each_gets_the_gradient_it_would_get_alone():
    torch.manual_seed(0)
    module = spotter("model.member.dropout=0.0")  # no dropout: a member alone computes what it computed inside
    front, ensemble = module.net[0], module.net[1]
    first = [next(m.parameters()) for m in ensemble.members]
    assert not torch.equal(first[0], first[1])  # two initializations, not one model twice
    alone = [torch.nn.Sequential(copy.deepcopy(front), copy.deepcopy(m)).train() for m in ensemble.members]
    waves, labels = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log() outside a Trainer
        module.training_step((waves, labels, torch.arange(len(labels))), 0).backward()
    for net, member in zip(alone, ensemble.members):
        module.loss(net(waves), labels).backward()
        # a mean of the losses would halve these, a loss on the averaged output would mix the members
        for (name, p_alone), p_inside in zip(net[1].named_parameters(), member.parameters()):
            torch.testing.assert_close(p_inside.grad, p_alone.grad, msg=name)


def test_in_evaluation_it_returns_the_members_averaged_probabilities_as_logits():
    torch.manual_seed(0)
    module = spotter().eval()
    front, ensemble = module.net[0], module.net[1]
    waves, _ = batch()
    with torch.no_grad():
        probs = torch.softmax(module(waves), dim=-1)
        each = torch.stack([torch.softmax(member(front(waves)), dim=-1) for member in ensemble.members])
    torch.testing.assert_close(probs, each.mean(0))
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # so the average is not one member's output


def test_a_bad_member_key_fails_before_any_work_naming_it(tmp_path: Path):
    proc = train(tmp_path / "run", "model=dscnn_ensemble", "+model.member.chanels=3")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "model.member.chanels: unknown keyword for scopeml.models.dscnn.DsCnn" in proc.stderr
    assert "did you mean 'channels'?" in proc.stderr
    assert not (tmp_path / "run" / "data_report.json").exists()  # no data was built


@pytest.mark.slow
def test_cross_validation_scores_each_member_alone_and_the_package_serves_the_ensemble(tmp_path: Path):
    from scopeml.training.calibration import softmax

    run_dir, bundle, waves, saved_probs = packaged_cv_run(tmp_path, "model=dscnn_ensemble", "hparams.max_epochs=1")
    per_fold = read_json(run_dir / "metrics.json")["cv"]["per_fold"]
    assert [len(f["members_accuracy"]) for f in per_fold] == [2, 2]
    for fold in per_fold:
        assert f"members alone: {fold['members_accuracy'][0]:.4f}" in (run_dir / "train.log").read_text()

    assert len(bundle.model[1].members) == 2  # the network rebuilt from the packaged config: both members
    np.testing.assert_allclose(bundle.predict(waves), saved_probs, atol=1e-5)
    with torch.no_grad():  # and those are the averaged members', at the run's temperature
        front, members = bundle.model[0], bundle.model[1].members
        features = front(torch.from_numpy(waves))
        each = [torch.softmax(m(features), -1).numpy().astype(np.float64) for m in members]
    t = read_json(run_dir / "metrics.json")["calibration"]["temperature"]
    np.testing.assert_allclose(saved_probs, softmax(np.log(np.mean(each, axis=0)), t), atol=1e-5)

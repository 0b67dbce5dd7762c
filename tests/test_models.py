"""Every architecture in conf/model/ builds from its YAML, fits the edge budget, learns, and exports."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import yaml
from conftest import ROOT

from scopeml.config._validate import parse
from scopeml.config.components import NetworkComponent
from scopeml.models import build_classifier, count_parameters, size_mb

ARCHS = ["cnn", "dscnn", "bcresnet"]
N_CLASSES = 10


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is fastest and keeps timings stable on a busy machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def model_config(arch: str) -> dict:
    return parse(NetworkComponent, yaml.safe_load((ROOT / "conf" / "model" / f"{arch}.yaml").read_text()))


def frontend_config() -> dict:
    return yaml.safe_load((ROOT / "conf" / "frontend" / "logmel.yaml").read_text())


def classifier(
    arch: str, sample_rate: int = 16000, n_classes: int = N_CLASSES, seed: int = 0, seconds: float = 1.0
) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_classifier(frontend_config(), model_config(arch), n_classes, sample_rate, seconds)


def tones(n: int, sample_rate: int, seconds: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two separable classes: a 300 Hz sine (0) or a 2000 Hz sine (1), random phase and gain, light noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    t = torch.arange(int(sample_rate * seconds)) / sample_rate
    freq = torch.where(labels == 0, 300.0, 2000.0)[:, None]
    phase = torch.rand(n, 1, generator=g) * 2 * math.pi
    gain = 10 ** (-torch.rand(n, 1, generator=g) * 1.5)  # 0.03 .. 1
    waves = gain * torch.sin(2 * math.pi * freq * t + phase) + 1e-3 * torch.randn(n, t.numel(), generator=g)
    return waves, labels


def test_every_model_yaml_exists_and_parses():
    for arch in ARCHS:
        path = ROOT / "conf" / "model" / f"{arch}.yaml"
        assert path.is_file(), path
        cfg = model_config(arch)
        assert cfg["_target_"].startswith(f"scopeml.models.{arch}.")


@pytest.mark.parametrize("arch", ARCHS)
def test_waveforms_to_logits_at_16k_1s(arch):
    model = classifier(arch).eval()
    with torch.no_grad():
        logits = model(torch.randn(4, 16000))
    assert logits.shape == (4, N_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_waveforms_to_logits_at_8k_half_second(arch):
    model = classifier(arch, sample_rate=8000, seconds=0.5).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchaudio may warn about empty mel filters at 8 kHz
        with torch.no_grad():
            logits = model(torch.randn(4, 4000))
    assert logits.shape == (4, N_CLASSES)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_fits_the_edge_budget(arch):
    model = classifier(arch)
    assert count_parameters(model) < 100_000
    assert size_mb(model) < 1.0


@pytest.mark.parametrize("arch", ARCHS)
def test_learns_a_tiny_separable_task(arch):
    torch.manual_seed(0)
    model = classifier(arch, n_classes=2).train()
    waves, labels = tones(8, 16000, 0.5, seed=1)  # ~1 s of CPU per arch
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(waves), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 <= 0.5 * losses[0], losses


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_output_is_deterministic(arch):
    model = classifier(arch).eval()
    x = torch.randn(4, 16000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first, second)
    # A second build from the same seed is the same model.
    with torch.no_grad():
        assert torch.equal(classifier(arch).eval()(x), first)


@pytest.mark.parametrize("arch", ARCHS)
def test_torchscript_export_matches_eager(arch, tmp_path):
    model = classifier(arch).eval()
    # Give BN non-trivial running statistics so the comparison covers them.
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 16000))
    model.eval()
    x = torch.randn(2, 16000, generator=torch.Generator().manual_seed(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still what deployment loads
        scripted = torch.jit.script(model)
        path = tmp_path / f"{arch}.pt"
        scripted.save(str(path))
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        expected = model(x)
        assert torch.allclose(scripted(x), expected, atol=1e-5)
        assert torch.allclose(loaded(x), expected, atol=1e-5)
        # Scripted (not traced) graphs keep working at other clip lengths.
        assert loaded(torch.randn(1, 8000)).shape == (1, N_CLASSES)


def test_band_normalization_removes_a_fixed_spectral_tilt_that_clip_normalization_keeps():
    """A microphone or vocal tract that tilts the spectrum (here: pre-emphasis) shifts every frame of a mel band by
    about the same log gain; normalize=band takes that shift out, one level per clip cannot."""
    import torch

    from scopeml.models.frontend import LogMel

    args = dict(n_mels=40, n_fft=480, win_length=480, hop_length=160, f_min=20.0, f_max=None)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    wave = (
        torch.sin(2 * torch.pi * 300 * t) * (1 + torch.sin(2 * torch.pi * 3 * t))
        + 0.3 * torch.randn(16000, generator=g)
    )[None]
    tilted = torch.cat([wave[:, :1], wave[:, 1:] - 0.95 * wave[:, :-1]], dim=1)
    diffs = {}
    for normalize in ("clip", "band"):
        front = LogMel(16000, **args, normalize=normalize)
        diffs[normalize] = (front(wave) - front(tilted)).abs().mean().item()
    assert diffs["band"] < 0.2 * diffs["clip"], diffs
    scripted = torch.jit.script(LogMel(16000, **args, normalize="band"))  # edge export scripts the front end
    assert torch.allclose(scripted(wave), LogMel(16000, **args, normalize="band")(wave))
    with pytest.raises(ValueError, match="normalize must be 'clip' or 'band'"):
        LogMel(16000, **args, normalize="utterance")


@pytest.mark.parametrize("arch, channels_last", [("cnn", True), ("dscnn", True), ("bcresnet", False)])
def test_networks_that_ask_train_channels_last_on_cpu_and_save_the_same_model(arch, channels_last):
    import lightning as L

    from scopeml.training.module import KeywordSpotter

    hparams = {
        "lr": 1e-3,
        "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True},
        "loss": {"_target_": "torch.nn.CrossEntropyLoss"},
    }
    torch.manual_seed(0)
    module = KeywordSpotter(model_config(arch), frontend_config(), hparams, ["low", "high"], 16000, clip_seconds=0.5)
    waves, labels = tones(8, 16000, 0.5, seed=1)
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(waves, labels, torch.arange(8)), batch_size=4)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, batches)
    seen = []  # the layout of the activations the network computes (its 1x1 and depthwise weights look the same)
    first_norm = next(m for m in module.net[1].modules() if isinstance(m, torch.nn.BatchNorm2d))
    first_norm.register_forward_hook(lambda _m, _args, out: seen.append(out))
    module(waves)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) == channels_last
    assert seen[0].is_contiguous() != channels_last
    # What is saved loads into a network built the plain way and gives the same logits.
    plain = build_classifier(frontend_config(), model_config(arch), 2, 16000, 0.5)
    plain.load_state_dict(module.net.state_dict())
    module.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(waves), module(waves), rtol=1e-4, atol=1e-5)

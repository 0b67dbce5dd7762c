"""scopeml-export: artifacts exist, reload, agree with the bundle, and EdgeRunner serves them without the model code.

A user's network that one format cannot hold is reported (format, class, reason) and the other formats still export.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import ROOT, run_cli
from torch import nn

from scopeml.config.schema import PreprocessConfig
from scopeml.data import espeak
from scopeml.data.audio import resample
from scopeml.models import build_classifier
from scopeml.serving import edge
from scopeml.serving.bundle import SERVING_FILE, WEIGHTS_FILE, ServingBundle
from scopeml.serving.edge import pipeline
from scopeml.serving.edge.artifacts import quiet
from scopeml.serving.edge.modules import Calibrated

CLASSES = ["left", "right", "up", "down"]
SR = 16000


def make_bundle(folder: Path, seed: int = 0) -> Path:
    """A serving bundle from an untrained CNN (fixed seed); BN gets running stats from noise so int8 has real ranges."""
    cfg = yaml.safe_load((ROOT / "conf" / "model" / "cnn.yaml").read_text())
    frontend = yaml.safe_load((ROOT / "conf" / "frontend" / "logmel.yaml").read_text())
    torch.manual_seed(seed)
    model = build_classifier(frontend, cfg, len(CLASSES), SR, 1.0).train()
    with torch.no_grad():
        for _ in range(3):
            model(0.1 * torch.randn(8, SR))
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    info = {
        "classes": CLASSES,
        "preprocess": asdict(PreprocessConfig(sample_rate=SR)),
        "model": cfg,
        "frontend": frontend,
        "temperature": 1.7,
        "deploy": {},
        "run_dir": None,
        "scoping": {"name": "test", "targets": {"model_size_mb": {"min": None, "max": 1.0}}},
    }
    (folder / SERVING_FILE).write_text(json.dumps(info))
    return folder


def word(text: str, voice: str = "en+m5") -> np.ndarray:
    return resample(espeak.synthesize(text, voice=voice), espeak.sample_rate(), SR)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("edge") / "bundle")


@pytest.fixture(scope="module")
def bundle(bundle_dir) -> ServingBundle:
    return ServingBundle.load(bundle_dir)


@pytest.fixture(scope="module")
def clips(bundle) -> np.ndarray:
    """Prepared words in a voice the export's own parity clips do not use."""
    return np.stack([bundle.prepare(word(w), SR) for w in CLASSES + ["stop", "go", "yes", "no"]])


@pytest.fixture(scope="module")
def exported(bundle_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edge") / "export"
    proc = run_cli("scopeml.cli.export", str(bundle_dir), "--out", str(out), "--threads", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model.ts" in proc.stdout  # the markdown report is printed
    return out


def export_here(*argv) -> int:
    """scopeml-export in this process (so it can be patched); it sets torch's thread count: restored after."""
    threads = torch.get_num_threads()
    try:
        from scopeml.cli import export

        return export.main([str(a) for a in argv])
    finally:
        torch.set_num_threads(threads)


def raising(message: str):
    """An exporter that fails as a network the format cannot hold would."""

    def export(*args):
        raise RuntimeError(message)

    return export


def load_ts(path: Path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path))


def test_writes_every_artifact_and_a_manifest(exported, bundle):
    for name in ("model.ts", "model_int8.ts", "model.onnx", "edge.json", "edge_report.json", "edge_report.md"):
        assert (exported / name).is_file(), name
    manifest = json.loads((exported / "edge.json").read_text())
    assert manifest["classes"] == CLASSES
    assert manifest["temperature"] == pytest.approx(1.7)
    assert manifest["sample_rate"] == SR and manifest["clip_samples"] == bundle.clip_samples
    assert manifest["preprocess"] == asdict(bundle.preprocess)
    # deploy.vad (the default here: the bundle has no deploy section), with every setting for a device's own code
    assert manifest["format"] == 2
    assert manifest["vad"] == {
        "_target_": "scopeml.serving.vad.SileroVAD",
        "threshold": 0.5,
        "min_speech_ms": 100.0,
        "min_silence_ms": 150.0,
        "pad_ms": 60.0,
        "onnx": False,
    }
    files = {a["file"]: a for a in manifest["artifacts"].values()}
    assert set(files) == {"model.ts", "model_int8.ts", "model.onnx"}
    for name, entry in files.items():
        assert entry["bytes"] == (exported / name).stat().st_size


def test_torchscript_reloads_and_matches_the_bundle(exported, bundle, clips):
    model = load_ts(exported / "model.ts")
    with torch.inference_mode():
        probs = model(torch.from_numpy(clips)).numpy()
        assert model(torch.from_numpy(clips[:1])).shape == (1, len(CLASSES))
        assert model(torch.from_numpy(clips[:8])).shape == (8, len(CLASSES))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # calibrated probabilities, not logits
    assert np.abs(probs - bundle.predict(clips)).max() <= 1e-4


def test_int8_within_its_tolerance(exported, bundle, clips):
    model = load_ts(exported / "model_int8.ts")
    with torch.inference_mode():
        probs = model(torch.from_numpy(clips)).numpy()
        assert model(torch.from_numpy(clips[:1])).shape == (1, len(CLASSES))
    assert np.abs(probs - bundle.predict(clips)).max() <= 0.05
    entry = json.loads((exported / "edge_report.json").read_text())["artifacts"]["torchscript_int8"]
    assert 0.0 <= entry["top1_agreement"] <= 1.0 and entry["within_tolerance"] is True
    assert entry["quantization"]["scheme"] in ("static", "dynamic") and entry["quantization"]["covers"]


def test_onnx_matches_the_bundle(exported, bundle, clips):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: ONNX parity is not checked")
    session = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"waveform": clips})[0]
    assert session.run(None, {"waveform": clips[:1]})[0].shape == (1, len(CLASSES))
    assert np.abs(probs - bundle.predict(clips)).max() <= 1e-4


def test_report_has_sizes_latency_and_targets(exported):
    report = json.loads((exported / "edge_report.json").read_text())
    assert report["float_exports_within_tolerance"] is True
    assert report["clips"]["n"] == 32 and report["threads"] == 1
    assert report["targets"]["model_size_mb_max"] == 1.0
    for key, entry in report["artifacts"].items():
        assert 0 < entry["size_mb"] < 1.0 and entry["size_target_pass"] is True, key
        assert entry["within_tolerance"] is True and entry["batch_1_and_8_ok"] is True, key
        assert 0 < entry["latency_ms"]["p50"] <= entry["latency_ms"]["p95"], key
        assert entry["latency_ms"]["runs"] == 100
    assert "| model_int8.ts |" in (exported / "edge_report.md").read_text()


def test_runner_classifies_like_the_bundle(exported, bundle):
    runner = edge.EdgeRunner(exported)
    audio = espeak.synthesize("right", voice="en+f5")  # 22050 Hz: the runner resamples like the bundle
    result = runner.classify(audio, espeak.sample_rate())
    expected = bundle.predict(bundle.prepare(audio, espeak.sample_rate())[None])[0]
    assert result["label"] == CLASSES[int(np.argmax(expected))]
    assert max(abs(result["probabilities"][c] - p) for c, p in zip(CLASSES, expected)) <= 1e-4
    assert edge.EdgeRunner(exported, int8=True).classify(audio, espeak.sample_rate())["label"] in CLASSES


def test_runner_segments_words_and_ignores_silence(exported):
    runner = edge.EdgeRunner(exported)
    gap = np.zeros(int(0.8 * SR), dtype=np.float32)
    audio = np.concatenate([gap[: SR // 4], word("left"), gap, word("right"), gap[: SR // 4]])
    segments = runner.segments(audio, SR)
    assert len(segments) == 2, segments
    assert (
        0
        <= segments[0]["start_s"]
        < segments[0]["end_s"]
        < segments[1]["start_s"]
        < segments[1]["end_s"]
        <= len(audio) / SR
    )
    assert all(s["label"] in CLASSES and 0 < s["confidence"] <= 1 for s in segments)
    assert runner.segments(np.zeros(2 * SR, dtype=np.float32), SR) == []


@pytest.mark.parametrize(
    "vad",
    [
        {"_target_": "scopeml.serving.vad.EnergyVAD", "min_silence_ms": 300.0},
        {"floor_dbfs": -45.0, "min_gap_ms": 300.0},  # an edge.json of format 1: the energy gate's arguments
    ],
    ids=["energy", "format-1"],
)
def test_runner_uses_the_manifests_vad(exported, tmp_path, vad):
    import shutil

    folder = shutil.copytree(exported, tmp_path / "export")
    manifest = json.loads((folder / "edge.json").read_text())
    (folder / "edge.json").write_text(json.dumps({**manifest, "vad": vad}))
    runner = edge.EdgeRunner(folder)
    assert type(runner.vad).__name__ == "EnergyVAD" and runner.vad.min_silence_ms == 300.0
    gap = np.zeros(int(0.8 * SR), dtype=np.float32)
    assert len(runner.segments(np.concatenate([gap, word("left"), gap, word("right"), gap]), SR)) == 2


def test_selection_source_and_no_quantize(bundle_dir, tmp_path):
    selection = tmp_path / "selection.json"
    selection.write_text(json.dumps({"selected": {"run_dir": str(bundle_dir)}}))
    out = tmp_path / "out"
    proc = run_cli("scopeml.cli.export", str(selection), "--out", str(out), "--no-quantize", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.ts").is_file() and not (out / "model_int8.ts").exists()
    with pytest.raises(FileNotFoundError, match="no torchscript_int8"):
        edge.EdgeRunner(out, int8=True)


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "unselected"])
def test_bad_source_is_a_clear_error(kind, tmp_path):
    source = {"missing": tmp_path / "nope", "empty_dir": tmp_path, "unselected": tmp_path / "selection.json"}[kind]
    if kind == "unselected":
        source.write_text(json.dumps({"selected": None, "rejected": []}))
    proc = run_cli("scopeml.cli.export", str(source), "--out", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("scopeml-export: error:") and str(source) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runner_loads_no_model_code(exported):
    """The device side: EdgeRunner answers without scopeml.models, the bundle or training code being imported."""
    code = (
        "import sys, numpy as np; from scopeml.serving.edge import EdgeRunner; r = EdgeRunner(sys.argv[1]); "
        "print(r.predict(np.zeros((2, r.manifest['clip_samples']), np.float32)).shape); "
        "print(sorted(m for m in sys.modules if m.startswith(('scopeml.models', 'scopeml.serving.bundle', "
        "'scopeml.training', 'scopeml.serving.edge.export'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(exported)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[:2] == [f"(2, {len(CLASSES)})", "[]"]


def test_float_parity_miss_exits_1(bundle_dir, tmp_path, monkeypatch, capsys):
    def wrong_temperature(bundle, path, example):  # a float export that disagrees: temperature 1e-3 makes it one-hot
        with quiet():
            torch.jit.script(Calibrated(bundle.model[0], bundle.model[1], 1e-3).eval()).save(str(path))
        return {"method": "script"}

    monkeypatch.setattr(pipeline, "export_torchscript", wrong_temperature)
    monkeypatch.setattr(pipeline, "export_onnx", raising("skipped in this test"))
    assert export_here(bundle_dir, "--out", tmp_path / "out", "--no-quantize") == 1
    report = json.loads((tmp_path / "out" / "edge_report.json").read_text())
    assert report["artifacts"]["torchscript"]["within_tolerance"] is False
    assert report["formats"]["onnx"] == {
        "status": "failed",
        "file": "model.onnx",
        "reason": "RuntimeError: skipped in this test",
    }
    assert report["formats"]["torchscript_int8"]["status"] == "skipped"
    assert "beyond deploy.parity_tolerance" in capsys.readouterr().err


class ScaledTanh(torch.autograd.Function):
    """A custom op with an ONNX symbolic, as users write them: TorchScript can neither script it nor save its trace."""

    @staticmethod
    def forward(ctx, x):
        return 2 * torch.tanh(x)

    @staticmethod
    def symbolic(g, x):
        return g.op("Mul", g.op("Tanh", x), g.op("Constant", value_t=torch.tensor(2.0)))


class Unscriptable(nn.Module):
    """A user's network (not scopeml's) that TorchScript cannot hold; FX (int8) and ONNX can."""

    def __init__(self, n_mels: int, n_classes: int):
        super().__init__()
        self.fc = nn.Linear(n_mels, n_classes)

    def forward(self, x):
        return self.fc(ScaledTanh.apply(x.mean(-1).flatten(1)))


class NoOnnxOp(Unscriptable):
    """A user's network with an operator the ONNX exporter lacks (cummax); TorchScript and int8 hold it."""

    def forward(self, x):
        return self.fc(torch.cummax(x.mean(-1).flatten(1), dim=-1)[0])


@pytest.mark.parametrize(
    "net, broken, reason",
    [
        (Unscriptable, "torchscript", "torch.jit.script: RuntimeError: Python builtin"),
        (NoOnnxOp, "onnx", "UnsupportedOperatorError: Exporting the operator 'aten::cummax'"),
    ],
)
def test_a_format_the_network_cannot_take_is_reported_and_the_others_export(
    net, broken, reason, bundle, bundle_dir, tmp_path, monkeypatch, capsys
):
    torch.manual_seed(0)
    n_mels = bundle.model[0](torch.zeros(1, bundle.clip_samples)).shape[2]
    user = ServingBundle(
        nn.Sequential(bundle.model[0], net(n_mels, len(CLASSES))).eval(),
        bundle.classes,
        bundle.preprocess,
        bundle.temperature,
        "user",
        bundle.info,
    )
    monkeypatch.setattr(ServingBundle, "load", classmethod(lambda cls, folder, tag="local": user))
    out = tmp_path / "out"
    assert export_here(bundle_dir, "--out", out) == 0  # the other formats exported
    name, file = {"torchscript": ("TorchScript", "model.ts"), "onnx": ("ONNX", "model.onnx")}[broken]
    err, network = capsys.readouterr().err, f"{net.__module__}.{net.__qualname__}"  # test_edge.Unscriptable
    assert f"scopeml-export: {name} export ({file}) failed for network {network}: {reason}" in err, err
    report = json.loads((out / "edge_report.json").read_text())
    assert report["network"] == network
    assert report["formats"][broken]["status"] == "failed" and report["formats"][broken]["reason"].startswith(
        reason.split(":")[0]
    )
    others = {"torchscript", "torchscript_int8", "onnx"} - {broken}
    assert all(report["formats"][k]["status"] == "ok" for k in others), report["formats"]
    assert not (out / file).exists() and all((out / report["formats"][k]["file"]).is_file() for k in others)
    assert set(json.loads((out / "edge.json").read_text())["artifacts"]) == others  # the device sees what exists
    assert f"{name} (`{file}`): FAILED: " in (out / "edge_report.md").read_text()
    assert edge.EdgeRunner(out, int8=True).classify(word("up"), SR)["label"] in CLASSES


def test_no_format_exported_exits_1(bundle_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pipeline, "export_torchscript", raising("no script"))
    monkeypatch.setattr(pipeline, "export_onnx", raising("no onnx"))
    assert export_here(bundle_dir, "--out", tmp_path / "out", "--no-quantize") == 1
    err = capsys.readouterr().err
    network = "scopeml.models.cnn.SmallCnn"  # the stock CNN's network
    assert f"TorchScript export (model.ts) failed for network {network}: RuntimeError: no script" in err
    assert "no format could be exported" in err
    report = json.loads((tmp_path / "out" / "edge_report.json").read_text())
    statuses = {k: f["status"] for k, f in report["formats"].items()}
    assert statuses == {"torchscript": "failed", "torchscript_int8": "skipped", "onnx": "failed"}

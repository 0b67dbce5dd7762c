"""scopeml-export: artifacts exist, reload, agree with the bundle, and EdgeRunner serves them without the model code."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT, run_cli
from scopeml.config._validate import parse
from scopeml.config.schema import ModelConfig, PreprocessConfig
from scopeml.data import espeak
from scopeml.data.audio import resample
from scopeml.models import build_classifier
from scopeml.serving import edge
from scopeml.serving.bundle import SERVING_FILE, WEIGHTS_FILE, ServingBundle

CLASSES = ["left", "right", "up", "down"]
SR = 16000


def make_bundle(folder: Path, seed: int = 0) -> Path:
    """A serving bundle from an untrained CNN (fixed seed); BN gets running stats from noise so int8 has real ranges."""
    cfg = parse(ModelConfig, yaml.safe_load((ROOT / "conf" / "model" / "cnn.yaml").read_text()))
    torch.manual_seed(seed)
    model = build_classifier(cfg, len(CLASSES), SR).train()
    with torch.no_grad():
        for _ in range(3):
            model(0.1 * torch.randn(8, SR))
    folder.mkdir(parents=True)
    torch.save(model.state_dict(), folder / WEIGHTS_FILE)
    info = {"classes": CLASSES, "preprocess": asdict(PreprocessConfig(sample_rate=SR)), "model": asdict(cfg),
            "temperature": 1.7, "deploy": {}, "run_dir": None,
            "scoping": {"name": "test", "targets": {"model_size_mb": {"min": None, "max": 1.0}}}}
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
    assert manifest["vad"]["floor_dbfs"] == -45.0 and manifest["vad"]["min_gap_ms"] == 250.0
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
    assert 0 <= segments[0]["start_s"] < segments[0]["end_s"] < segments[1]["start_s"] < segments[1]["end_s"] <= len(audio) / SR
    assert all(s["label"] in CLASSES and 0 < s["confidence"] <= 1 for s in segments)
    assert runner.segments(np.zeros(2 * SR, dtype=np.float32), SR) == []


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


def test_float_parity_miss_exits_1(bundle_dir, tmp_path, monkeypatch, capsys):
    from scopeml.cli import export

    def wrong_temperature(bundle, path):  # a float export that disagrees: temperature 1e-3 makes it one-hot
        Calibrated, _ = edge._modules()
        with edge._quiet():
            torch.jit.script(Calibrated(bundle.model[0], bundle.model[1], 1e-3).eval()).save(str(path))

    monkeypatch.setattr(edge, "export_torchscript", wrong_temperature)
    monkeypatch.setattr(edge, "export_onnx", lambda *a: (_ for _ in ()).throw(RuntimeError("skipped in this test")))
    threads = torch.get_num_threads()
    try:
        assert export.main([str(bundle_dir), "--out", str(tmp_path / "out"), "--no-quantize"]) == 1
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "out" / "edge_report.json").read_text())
    assert report["artifacts"]["torchscript"]["within_tolerance"] is False
    assert "not exported" in report["onnx"]
    assert "beyond deploy.parity_tolerance" in capsys.readouterr().err

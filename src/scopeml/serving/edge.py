"""scopeml-export: turn a serving bundle into on-device artifacts, and check they still agree with it.

    scopeml-export SOURCE --out DIR [--no-quantize] [--threads 1]

SOURCE is a selection.json from scopeml-select, a training run folder (its bundle is written to
DIR/bundle first) or a serving bundle folder. DIR receives:

  model.ts        TorchScript: prepared waveform (batch, clip_samples) -> calibrated probabilities
                  (softmax(logits / temperature) is inside, so a device needs no calibration code)
  model_int8.ts   the same with int8 weights and activations (unless --no-quantize or deploy.quantize=false)
  model.onnx      the same float model for ONNX runtimes (opset 17, dynamic batch axis). The STFT is a
                  conv1d with a windowed DFT basis: the TorchScript-based exporter cannot export
                  torch.stft's complex output, and this keeps the whole front end in the file.
  edge.json       manifest for the device: classes, preprocessing, temperature, VAD settings, files
  edge_report.json / edge_report.md   size, parity with the float bundle, CPU latency, scoping targets

Exit status: 0 exported and every float export within deploy.parity_tolerance; 1 a float export
missed it (int8 misses are reported, not fatal); 2 bad SOURCE or arguments.
EdgeRunner runs an exported folder with torch, numpy, the shared preprocessing and the VAD only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np

MANIFEST, REPORT_JSON, REPORT_MD = "edge.json", "edge_report.json", "edge_report.md"
TS_FILE, INT8_FILE, ONNX_FILE = "model.ts", "model_int8.ts", "model.onnx"
ONNX_OPSET = 17
N_CLIPS, LATENCY_RUNS, WARMUP_RUNS = 32, 100, 10
# Parity clips and int8 calibration clips come from different eSpeak voices, so the int8 check
# is not scored on the audio its activation ranges were fitted to.
EVAL_VOICES, CALIBRATION_VOICES = ("en+m2", "en+f1", "en+m4", "en+m6"), ("en+m1", "en+f4", "en+m3", "en+m8")


class EdgeError(ValueError):
    pass


@contextlib.contextmanager
def _quiet():
    """torch.jit and the TorchScript ONNX exporter warn that they are deprecated; they are still what devices load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# --------------------------------------------------------------------------- modules
def _modules():
    """nn.Module classes, built lazily so importing this file (EdgeRunner) does not need them."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Calibrated(nn.Module):
        """features -> network -> softmax(logits / T): the artifact answers with calibrated probabilities."""

        def __init__(self, features: nn.Module, net: nn.Module, temperature: float):
            super().__init__()
            self.features, self.net, self.temperature = features, net, float(temperature)

        def forward(self, waves: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(self.features(waves)) / self.temperature, dim=-1)

    class DftMelSpectrogram(nn.Module):
        """torchaudio's MelSpectrogram (power 2, centred, reflect-padded) as conv1d + matmul, for ONNX.

        Same window, hop and filterbank as the trained front end; features agree to ~3e-6. The DFT
        basis (bins x n_fft, ~0.9 MB as float32) is rebuilt in the graph from N-entry cos/sin tables
        and integer indices held as initializers, so the file stays small; export with
        do_constant_folding=False keeps it unfolded, and onnxruntime folds it once at session load.
        """

        def __init__(self, mel: nn.Module):
            super().__init__()
            spec = mel.spectrogram
            expected = dict(power=2.0, normalized=False, center=True, pad_mode="reflect", onesided=True, pad=0)
            found = {k: getattr(spec, k, None) for k in expected}
            if found != expected:
                raise EdgeError(f"the DFT front end only reproduces MelSpectrogram{expected}, not {found}")
            n_fft, window = spec.n_fft, spec.window.double()
            full = torch.zeros(n_fft, dtype=torch.float64)
            left = (n_fft - window.numel()) // 2  # torch.stft centres a short window inside n_fft
            full[left:left + window.numel()] = window
            angle = 2 * torch.pi * torch.arange(n_fft, dtype=torch.float64) / n_fft
            self.register_buffer("cos", torch.cos(angle).float())  # float64 tables: exact to float32 rounding
            self.register_buffer("sin", (-torch.sin(angle)).float())
            self.register_buffer("window", full.float())
            self.register_buffer("k", torch.arange(n_fft // 2 + 1))
            self.register_buffer("n", torch.arange(n_fft))
            self.register_buffer("fb", mel.mel_scale.fb.detach().clone())
            self.n_fft, self.hop, self.bins = n_fft, spec.hop_length, n_fft // 2 + 1

        def forward(self, waves: torch.Tensor) -> torch.Tensor:
            phase = (self.k[:, None] * self.n[None]) % self.n_fft  # integer k*n mod N: no float angle error
            basis = (torch.cat([self.cos[phase], self.sin[phase]]) * self.window).unsqueeze(1)  # real rows, then imaginary
            x = F.pad(waves.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2), mode="reflect")
            y = F.conv1d(x, basis, stride=self.hop)
            power = y[:, : self.bins] ** 2 + y[:, self.bins:] ** 2
            return torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)

    return Calibrated, DftMelSpectrogram


# --------------------------------------------------------------------------- source
def resolve_bundle(source: Path, out: Path) -> Path:
    """The bundle folder for SOURCE; a run (or a selection's run) is bundled into out/bundle first."""
    from scopeml.serving.bundle import SERVING_FILE, write_bundle

    if source.is_file():
        try:
            selected = json.loads(source.read_text()).get("selected")
        except (ValueError, AttributeError):
            raise EdgeError(f"{source}: not a selection.json (not a JSON object)") from None
        if not selected or not selected.get("run_dir"):
            raise EdgeError(f"{source}: no run was selected (every run missed a gate; see its 'rejected' list)")
        source = Path(selected["run_dir"])
        if not source.is_dir():
            raise EdgeError(f"{source}: the selected run folder does not exist")
    elif not source.is_dir():
        raise EdgeError(f"{source}: no such selection.json, training run folder or serving bundle")
    if (source / SERVING_FILE).is_file():
        return source
    if not (source / "checkpoints" / "best.ckpt").is_file():
        raise EdgeError(f"{source}: neither a serving bundle ({SERVING_FILE}) nor a training run (checkpoints/best.ckpt)")
    missing = [n for n in ("config.yaml", "metrics.json", "predictions_val.parquet", "predictions_test.parquet") if not (source / n).is_file()]
    if missing:
        raise EdgeError(f"{source}: not a finished training run (missing {', '.join(missing)})")
    from dataclasses import asdict

    import yaml

    from scopeml.config import load

    deploy = {**asdict(load(yaml.safe_load((source / "config.yaml").read_text())).deploy), "kind": "edge"}
    write_bundle(source, out / "bundle", deploy)
    return out / "bundle"


# --------------------------------------------------------------------------- clips
def make_clips(bundle, voices: tuple[str, ...], n: int = N_CLIPS, seed: int = 0) -> tuple[np.ndarray, str]:
    """n prepared clips of the bundle's own words in eSpeak voices; prepared noise if eSpeak is unavailable."""
    try:
        from scopeml.data import espeak

        sr = espeak.sample_rate()
        clips = []
        for i in range(n):
            word = bundle.classes[i % len(bundle.classes)].replace("_", " ").strip() or "hello"  # "_unknown_" -> "unknown"
            voice = voices[(i // len(bundle.classes)) % len(voices)]
            clips.append(bundle.prepare(espeak.synthesize(word, voice=voice, pitch=30 + (7 * i) % 41), sr))
        return np.stack(clips), f"espeak words ({', '.join(voices)})"
    except Exception as exc:  # noqa: BLE001 - any eSpeak failure: parity on noise beats no parity check
        rng = np.random.default_rng(seed)
        sr = bundle.preprocess.sample_rate
        noise = rng.standard_normal((n, bundle.clip_samples)).astype(np.float32) * rng.uniform(0.01, 0.3, (n, 1)).astype(np.float32)
        return np.stack([bundle.prepare(x, sr) for x in noise]), f"random noise (eSpeak failed: {exc})"


# --------------------------------------------------------------------------- exports
def export_torchscript(bundle, path: Path):
    import torch

    Calibrated, _ = _modules()
    with _quiet():
        torch.jit.script(Calibrated(bundle.model[0], bundle.model[1], bundle.temperature).eval()).save(str(path))


def export_int8(bundle, path: Path, calibration: np.ndarray) -> dict:
    """Static int8 (FX graph mode) of the network; dynamic int8 of the Linear layers if FX fails.

    export() also falls back to dynamic when the static model misses its tolerance or is no smaller.

    The log-mel front end stays float32 in both: int8 STFT/log would cost accuracy and quantized
    kernels do not cover them. Returns {"scheme", "covers", "engine"} for the manifest.
    """
    import copy

    import torch

    Calibrated, _ = _modules()
    engine = torch.backends.quantized.engine
    features = bundle.model[0]
    with _quiet():
        try:
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

            from scopeml.models.bcresnet import SubSpectralNorm

            # SubSpectralNorm unpacks x.shape into Python ints, which FX cannot trace: it stays a float island.
            custom = PrepareCustomConfig().set_non_traceable_module_classes([SubSpectralNorm])
            with torch.no_grad():
                feats = features(torch.from_numpy(calibration))
                prepared = prepare_fx(copy.deepcopy(bundle.model[1]).eval(), get_default_qconfig_mapping(engine), (feats[:1],),
                                      prepare_custom_config=custom)
                prepared(feats)  # observe activation ranges
                model = Calibrated(features, convert_fx(prepared), bundle.temperature).eval()
                try:
                    scripted = torch.jit.script(model)
                except Exception:  # noqa: BLE001 - GraphModules with float islands do not script; a trace keeps batch dynamic
                    scripted = torch.jit.trace(model, torch.from_numpy(calibration[:2]), check_trace=False)
            islands = any(isinstance(m, SubSpectralNorm) for m in bundle.model[1].modules())
            info = {"scheme": "static", "engine": engine,
                    "covers": "conv and linear weights and activations int8 (FX graph mode, calibrated on "
                              f"{len(calibration)} clips); float32: the log-mel front end" + (", SubSpectralNorm" if islands else "")}
        except Exception as exc:  # noqa: BLE001 - any FX failure: fall back to the scheme that always applies
            info = _dynamic_info(engine, f"static int8 failed: {type(exc).__name__}: {exc}")
            scripted = _dynamic(bundle, Calibrated)
        scripted.save(str(path))
    return info


def _dynamic_info(engine: str, why: str) -> dict:
    return {"scheme": "dynamic", "engine": engine, "fallback_reason": why,
            "covers": "Linear weights only (quantize_dynamic covers Linear/LSTM); convs stay float32, so a conv net shrinks little"}


def _dynamic(bundle, Calibrated):
    import copy

    import torch
    from torch import nn

    model = Calibrated(bundle.model[0], copy.deepcopy(bundle.model[1]), bundle.temperature).eval()
    return torch.jit.script(torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8))


def export_onnx(bundle, path: Path, example: np.ndarray) -> None:
    import copy

    import torch

    Calibrated, DftMelSpectrogram = _modules()
    features = copy.deepcopy(bundle.model[0])
    if not hasattr(features, "mel"):
        raise EdgeError(f"front end {type(features).__name__} has no .mel MelSpectrogram to replace")
    features.mel = DftMelSpectrogram(features.mel)  # LogMel.forward (log, per-clip standardization) is reused as is
    model = Calibrated(features, bundle.model[1], bundle.temperature).eval()
    with _quiet():
        torch.onnx.export(model, (torch.from_numpy(example[:2]),), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          do_constant_folding=False, input_names=["waveform"], output_names=["probabilities"],
                          dynamic_axes={"waveform": {0: "batch"}, "probabilities": {0: "batch"}})


# --------------------------------------------------------------------------- checks
def _torch_runner(path: Path):
    import torch

    with _quiet():
        model = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run


def _onnx_runner(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"waveform": np.ascontiguousarray(x, dtype=np.float32)})[0]


def check(run, clips: np.ndarray, reference: np.ndarray, tolerance: float, latency_max) -> dict:
    """Parity with the float bundle on all clips, batch-1/batch-8 shapes, then single-clip latency."""
    probs = run(clips)
    try:  # a traced graph that baked in its example batch size fails here rather than on the device
        shapes_ok = all(run(clips[:b]).shape == (b, reference.shape[1]) for b in (1, 8))
    except Exception:  # noqa: BLE001
        shapes_ok = False
    diff = float(np.abs(probs - reference).max())
    latency = measure_latency(run, clips)
    return {"max_abs_prob_diff": diff, "tolerance": tolerance, "within_tolerance": bool(diff <= tolerance and shapes_ok),
            "batch_1_and_8_ok": shapes_ok, "top1_agreement": float(np.mean(probs.argmax(1) == reference.argmax(1))),
            "latency_ms": latency, "latency_target_pass": None if latency_max is None else latency["p95"] <= latency_max}


def measure_latency(run, clips: np.ndarray) -> dict:
    """p50/p95 of single-clip calls after warm-up (the first calls pay for graph optimization and allocation)."""
    for i in range(WARMUP_RUNS):
        run(clips[i % len(clips)][None])
    times = []
    for i in range(LATENCY_RUNS):
        clip = clips[i % len(clips)][None]
        start = time.perf_counter()
        run(clip)
        times.append(1000 * (time.perf_counter() - start))
    p50, p95 = (float(v) for v in np.percentile(times, [50, 95]))
    return {"p50": p50, "p95": p95, "runs": LATENCY_RUNS}


# --------------------------------------------------------------------------- main flow
def export(source: Path, out: Path, quantize: bool | None = None, threads: int = 1) -> dict:
    import dataclasses
    import inspect
    from dataclasses import asdict

    import torch

    from scopeml.config.schema import DeployConfig
    from scopeml.serving.bundle import ServingBundle
    from scopeml.serving.vad import find_segments

    torch.set_num_threads(threads)  # export and latency both at the device's thread count
    out.mkdir(parents=True, exist_ok=True)
    bundle_dir = resolve_bundle(source, out)
    try:
        bundle = ServingBundle.load(bundle_dir)
    except Exception as exc:  # noqa: BLE001 - a broken bundle is a bad SOURCE, not a crash
        raise EdgeError(f"{bundle_dir}: cannot load the serving bundle ({type(exc).__name__}: {exc})") from None
    defaults = {f.name: f.default for f in dataclasses.fields(DeployConfig)}
    deploy = {**defaults, **{k: v for k, v in (bundle.info.get("deploy") or {}).items() if k in defaults}}
    quantize = bool(deploy["quantize"]) if quantize is None else quantize
    targets = (bundle.info.get("scoping") or {}).get("targets") or {}
    size_max = (targets.get("model_size_mb") or {}).get("max")
    latency_max = (targets.get("latency_p95_ms") or {}).get("max")

    clips, clip_kind = make_clips(bundle, EVAL_VOICES)
    reference = bundle.predict(clips)
    results: dict[str, dict] = {}

    def record(key: str, file: str, kind: str, tolerance: float, run, **extra) -> None:
        size = (out / file).stat().st_size
        entry = {"file": file, "kind": kind, "bytes": size, "size_mb": size / 1e6,
                 "size_target_pass": None if size_max is None else size / 1e6 <= size_max, **extra}
        results[key] = {**entry, **(check(run, clips, reference, tolerance, latency_max) if run else {})}

    export_torchscript(bundle, out / TS_FILE)
    record("torchscript", TS_FILE, "TorchScript float32, waveform -> calibrated probabilities",
           deploy["parity_tolerance"], _torch_runner(out / TS_FILE))

    (out / INT8_FILE).unlink(missing_ok=True)
    if quantize:
        calibration, _ = make_clips(bundle, CALIBRATION_VOICES, seed=1)
        info = export_int8(bundle, out / INT8_FILE, calibration)
        record("torchscript_int8", INT8_FILE, f"TorchScript {info['scheme']} int8, waveform -> calibrated probabilities",
               deploy["quantized_tolerance"], _torch_runner(out / INT8_FILE), quantization=info)
        static = results["torchscript_int8"]
        if info["scheme"] == "static" and (not static["within_tolerance"] or static["bytes"] >= results["torchscript"]["bytes"]):
            # Static int8 outside tolerance is not worth shipping, nor is one larger than float (BC-ResNet's float
            # SubSpectralNorm islands add a dequantize/quantize pair each); dynamic int8 stays close to float.
            why = (f"static int8 missed the tolerance (max |dp| {static['max_abs_prob_diff']:.4f})" if not static["within_tolerance"]
                   else f"static int8 was no smaller than float ({static['size_mb']:.3f} MB, p50 {static['latency_ms']['p50']:.2f} ms)")
            with _quiet():
                _dynamic(bundle, _modules()[0]).save(str(out / INT8_FILE))
            info = _dynamic_info(torch.backends.quantized.engine, why)
            record("torchscript_int8", INT8_FILE, "TorchScript dynamic int8, waveform -> calibrated probabilities",
                   deploy["quantized_tolerance"], _torch_runner(out / INT8_FILE), quantization=info)

    (out / ONNX_FILE).unlink(missing_ok=True)
    onnx_note = None
    try:
        export_onnx(bundle, out / ONNX_FILE, clips)
    except Exception as exc:  # noqa: BLE001 - ONNX is optional for a device; the report says why it is missing
        onnx_note = f"not exported: {type(exc).__name__}: {exc}"
        print(f"scopeml-export: warning: ONNX {onnx_note}", file=sys.stderr)
    if onnx_note is None:
        extra = {"opset": ONNX_OPSET, "input": "waveform", "output": "probabilities",
                 "front_end": "STFT as conv1d with a windowed DFT basis (same window, hop and mel filterbank)"}
        try:
            import onnx

            onnx.checker.check_model(str(out / ONNX_FILE))
            import onnxruntime

            run = _onnx_runner(out / ONNX_FILE, threads)
            extra["verified_with"] = f"onnxruntime {onnxruntime.__version__}"
        except ImportError as exc:
            run, extra["verified_with"] = None, f"not verified ({exc.name} is not installed)"
        record("onnx", ONNX_FILE, "ONNX float32, waveform -> calibrated probabilities", deploy["parity_tolerance"], run, **extra)

    vad = {k: p.default for k, p in inspect.signature(find_segments).parameters.items() if p.default is not inspect.Parameter.empty}
    failed = [k for k in ("torchscript", "onnx") if k in results and results[k].get("within_tolerance") is False]
    report = {
        "source": str(source), "bundle": str(bundle_dir), "arch": bundle.info.get("model", {}).get("arch"),
        "threads": threads, "torch": torch.__version__, "clips": {"n": len(clips), "kind": clip_kind},
        "targets": {"model_size_mb_max": size_max, "latency_p95_ms_max": latency_max},
        "artifacts": results, "reference_pytorch": {"latency_ms": measure_latency(bundle.predict, clips)},  # eager float, for comparison
        "onnx": onnx_note or "exported", "float_exports_within_tolerance": not failed,
    }
    manifest = {
        "format": 1, "classes": bundle.classes, "preprocess": asdict(bundle.preprocess), "temperature": bundle.temperature,
        "sample_rate": bundle.preprocess.sample_rate, "clip_samples": bundle.clip_samples,
        "input": {"name": "waveform", "shape": ["batch", bundle.clip_samples], "dtype": "float32",
                  "note": "mono audio prepared by scopeml.data.preprocess.apply with 'preprocess'"},
        "output": {"name": "probabilities", "note": "calibrated: softmax(logits / temperature) is inside the model"},
        "features": bundle.info.get("model", {}).get("features"), "vad": vad,
        "artifacts": results,
        "source": {"bundle": str(bundle_dir), "run_dir": bundle.info.get("run_dir"), "arch": report["arch"],
                   "scoping": (bundle.info.get("scoping") or {}).get("name")},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2))
    (out / REPORT_MD).write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    def yes(v):
        return "n/a" if v is None else ("pass" if v else "FAIL")

    lines = [f"# Edge export report ({report['arch']})", "",
             f"Source `{report['source']}`; parity on {report['clips']['n']} clips ({report['clips']['kind']}); "
             f"latency: one clip, {report['threads']} CPU thread(s), p50/p95 of {LATENCY_RUNS} runs after {WARMUP_RUNS} warm-up runs.",
             f"Size target: <= {report['targets']['model_size_mb_max']} MB (MB = 10^6 bytes).", "",
             "| artifact | size MB | max abs prob diff | tolerance | parity | top-1 agreement | p50 ms | p95 ms | size target |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in report["artifacts"].values():
        lat = r.get("latency_ms") or {}
        diff = f"{r['max_abs_prob_diff']:.2e}" if "max_abs_prob_diff" in r else "not verified"
        lines.append(f"| {r['file']} | {r['size_mb']:.3f} | {diff} | {r.get('tolerance', '-')} | {yes(r.get('within_tolerance'))} | "
                     f"{r.get('top1_agreement', float('nan')):.3f} | {lat.get('p50', float('nan')):.2f} | {lat.get('p95', float('nan')):.2f} | "
                     f"{yes(r['size_target_pass'])} |")
    ref = report["reference_pytorch"]["latency_ms"]
    lines += [f"| (float PyTorch bundle) | - | - | - | - | - | {ref['p50']:.2f} | {ref['p95']:.2f} | - |", ""]
    int8 = report["artifacts"].get("torchscript_int8", {}).get("quantization")
    if int8:
        lines.append(f"int8: {int8['scheme']} ({int8['engine']} engine): {int8['covers']}."
                     + (f" Fallback: {int8['fallback_reason']}." if int8.get("fallback_reason") else ""))
    lines.append(f"ONNX: {report['onnx']}" + (f"; {report['artifacts']['onnx'].get('verified_with')}." if "onnx" in report["artifacts"] else "."))
    lines.append(f"Float exports within tolerance: {'yes' if report['float_exports_within_tolerance'] else 'NO'}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scopeml-export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="selection.json, training run folder, or serving bundle folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-quantize", action="store_true", help="skip model_int8.ts (default: deploy.quantize)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for inference and latency (default 1)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    try:
        report = export(args.source, args.out, quantize=False if args.no_quantize else None, threads=args.threads)
    except EdgeError as exc:
        print(f"scopeml-export: error: {exc}", file=sys.stderr)
        return 2
    print((args.out / REPORT_MD).read_text())
    if not report["float_exports_within_tolerance"]:
        print("scopeml-export: a float export disagrees with the bundle beyond deploy.parity_tolerance", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------- on-device runner
def _namespace(value):
    """The manifest's preprocess dict with attribute access, which is all preprocess.apply needs."""
    return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()}) if isinstance(value, dict) else value


class EdgeRunner:
    """Runs an exported folder: edge.json + model.ts (or model_int8.ts). No model builders, no bundle."""

    def __init__(self, folder: str | Path, int8: bool = False, threads: int | None = None):
        import torch

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text())
        key = "torchscript_int8" if int8 else "torchscript"
        if key not in self.manifest["artifacts"]:
            raise FileNotFoundError(f"{self.folder}: no {key} artifact (exported with --no-quantize?)")
        if int8:
            engine = self.manifest["artifacts"][key]["quantization"]["engine"]
            if engine in torch.backends.quantized.supported_engines:
                torch.backends.quantized.engine = engine
        if threads:
            torch.set_num_threads(threads)
        self.classes: list[str] = list(self.manifest["classes"])
        self.sample_rate: int = int(self.manifest["sample_rate"])
        self._preprocess = _namespace(self.manifest["preprocess"])
        self._run = _torch_runner(self.folder / self.manifest["artifacts"][key]["file"])

    def prepare(self, samples: np.ndarray, sr: int) -> np.ndarray:
        from scopeml.data.preprocess import apply

        return apply(samples, sr, self._preprocess)

    def predict(self, waves: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for prepared clips (batch, clip_samples)."""
        return self._run(waves)

    def _describe(self, probs: np.ndarray) -> dict:
        best = int(np.argmax(probs))
        return {"label": self.classes[best], "confidence": float(probs[best]),
                "probabilities": {c: float(p) for c, p in zip(self.classes, probs)}}

    def classify(self, samples: np.ndarray, sr: int) -> dict:
        return self._describe(self.predict(self.prepare(samples, sr)[None])[0])

    def segments(self, samples: np.ndarray, sr: int) -> list[dict]:
        """VAD first, then one prediction per voiced segment; silence gives [] rather than a guess."""
        from scopeml.data.audio import check_samples, to_mono
        from scopeml.serving.vad import find_segments

        mono = to_mono(check_samples(np.asarray(samples, dtype=np.float32), "samples"))
        spans = find_segments(mono, sr, **self.manifest["vad"])
        if not spans:
            return []
        probs = self.predict(np.stack([self.prepare(mono[a:b], sr) for a, b in spans]))
        return [{"start_s": a / sr, "end_s": b / sr, **{k: v for k, v in self._describe(p).items() if k != "probabilities"}}
                for (a, b), p in zip(spans, probs)]


if __name__ == "__main__":
    sys.exit(main())

"""scopeml-export's flow: load the bundle SOURCE names, write and check each format, write manifest and report.

Each format converts the network its own way (TorchScript scripts or traces it, int8 rewrites it
with FX, ONNX traces it into another operator set), and a user's network may defeat any of them.
A format that fails is reported with the network's class and the reason; the others go on.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scopeml.serving.edge import report as edge_report
from scopeml.serving.edge.artifacts import FORMATS, INT8_FILE, torchscript_runner
from scopeml.serving.edge.export import (
    export_dynamic_int8,
    export_int8,
    export_onnx,
    export_torchscript,
    network_name,
    reason,
)
from scopeml.serving.edge.parity import CALIBRATION_VOICES, EVAL_VOICES, check, make_clips, measure_latency, verify_onnx
from scopeml.serving.edge.source import load_bundle, resolve_bundle

PROBABILITIES = "waveform -> calibrated probabilities"


@dataclass
class Formats:
    """The formats tried for one bundle: each written file checked against the bundle, or why there is none."""

    out: Path
    network: str
    clips: np.ndarray
    reference: np.ndarray
    size_max: float | None
    latency_max: float | None
    status: dict = field(default_factory=dict)  # key -> {"status": ok | failed | skipped, "file", "reason"}
    artifacts: dict = field(default_factory=dict)  # key -> size, parity and latency of the file written

    def attempt(self, key: str, tolerance: float, write) -> dict | None:
        """write(path) -> (kind, extra entries, run or None); the checked entry, or None where the format failed."""
        file = FORMATS[key][1]
        path = self.out / file
        try:
            kind, extra, run = write(path)
            size = path.stat().st_size
            entry = {
                "file": file,
                "kind": kind,
                "bytes": size,
                "size_mb": size / 1e6,
                "size_target_pass": None if self.size_max is None else size / 1e6 <= self.size_max,
                **extra,
                **(check(run, self.clips, self.reference, tolerance, self.latency_max) if run else {}),
            }
        except Exception as exc:  # noqa: BLE001 - a network this format cannot hold (or a file that does not run)
            path.unlink(missing_ok=True)
            self.mark(key, "failed", reason(exc))
            return None
        self.status[key] = {"status": "ok", "file": file}
        self.artifacts[key] = entry
        return entry

    def mark(self, key: str, status: str, why: str) -> None:
        name, file = FORMATS[key]
        self.status[key] = {"status": status, "file": file, "reason": why}
        self.artifacts.pop(key, None)
        if status == "failed":
            print(f"scopeml-export: {name} export ({file}) failed for network {self.network}: {why}", file=sys.stderr)


def deploy_settings(bundle) -> dict:
    """The bundle's deploy section over DeployConfig's defaults (an older bundle may lack newer keys)."""
    from scopeml.config.schema import DeployConfig

    defaults = dataclasses.asdict(DeployConfig())  # default_factory fields (batching, vad) too
    return {**defaults, **{k: v for k, v in (bundle.info.get("deploy") or {}).items() if k in defaults}}


def export_source(source: Path, out: Path, quantize: bool | None = None, threads: int = 1) -> dict:
    """Every format for SOURCE into out, checked; returns the report (also in edge_report.json/.md)."""
    torch.set_num_threads(threads)  # export and latency both at the device's thread count
    out.mkdir(parents=True, exist_ok=True)
    bundle_dir = resolve_bundle(source, out)
    bundle = load_bundle(bundle_dir)
    deploy = deploy_settings(bundle)
    quantize = bool(deploy["quantize"]) if quantize is None else quantize
    targets = (bundle.info.get("scoping") or {}).get("targets") or {}
    clips, clip_kind = make_clips(bundle, EVAL_VOICES)
    formats = Formats(
        out,
        network_name(bundle),
        clips,
        bundle.predict(clips),
        (targets.get("model_size_mb") or {}).get("max"),
        (targets.get("latency_p95_ms") or {}).get("max"),
    )

    write_formats(bundle, formats, deploy, quantize, threads)
    arch = bundle.info.get("model", {}).get("_target_")  # the network's import path
    failed = [k for k in ("torchscript", "onnx") if formats.artifacts.get(k, {}).get("within_tolerance") is False]
    report = {
        "source": str(source),
        "bundle": str(bundle_dir),
        "arch": arch,
        "network": formats.network,
        "threads": threads,
        "torch": torch.__version__,
        "clips": {"n": len(clips), "kind": clip_kind},
        "targets": {"model_size_mb_max": formats.size_max, "latency_p95_ms_max": formats.latency_max},
        "formats": formats.status,
        "artifacts": formats.artifacts,
        "reference_pytorch": {"latency_ms": measure_latency(bundle.predict, clips)},  # eager float, for comparison
        "float_exports_within_tolerance": not failed,
    }
    edge_report.write(out, edge_report.manifest(bundle, bundle_dir, formats.artifacts, arch, deploy["vad"]), report)
    return report


def write_formats(bundle, formats: Formats, deploy: dict, quantize: bool, threads: int) -> None:
    """model.ts, then model_int8.ts, then model.onnx; a failure in one does not stop the next."""
    clips = formats.clips

    def torchscript(path: Path):
        info = export_torchscript(bundle, path, clips)
        return f"TorchScript float32, {PROBABILITIES}", info, torchscript_runner(path)

    def onnx(path: Path):
        extra = export_onnx(bundle, path, clips)
        run, extra["verified_with"] = verify_onnx(path, threads)
        return f"ONNX float32, {PROBABILITIES}", extra, run

    formats.attempt("torchscript", deploy["parity_tolerance"], torchscript)
    (formats.out / INT8_FILE).unlink(missing_ok=True)  # a stale int8 file from an earlier export must not linger
    if quantize:
        write_int8(bundle, formats, deploy["quantized_tolerance"])
    else:
        formats.mark("torchscript_int8", "skipped", "--no-quantize or deploy.quantize=false")
    formats.attempt("onnx", deploy["parity_tolerance"], onnx)


def write_int8(bundle, formats: Formats, tolerance: float) -> None:
    """Static int8, replaced by dynamic int8 where static misses its tolerance or is no smaller than float."""
    calibration, _ = make_clips(bundle, CALIBRATION_VOICES, seed=1)

    def int8(info: dict, path: Path):
        return f"TorchScript {info['scheme']} int8, {PROBABILITIES}", {"quantization": info}, torchscript_runner(path)

    static = formats.attempt(
        "torchscript_int8", tolerance, lambda path: int8(export_int8(bundle, path, calibration), path)
    )
    if not static or static["quantization"]["scheme"] != "static":
        return
    float_ts = formats.artifacts.get("torchscript")
    if static["within_tolerance"] and (float_ts is None or static["bytes"] < float_ts["bytes"]):
        return
    # Static int8 outside tolerance is not worth shipping, nor is one larger than float (BC-ResNet's float
    # SubSpectralNorm islands add a dequantize/quantize pair each); dynamic int8 stays close to float.
    why = (
        f"static int8 missed the tolerance (max |dp| {static['max_abs_prob_diff']:.4f})"
        if not static["within_tolerance"]
        else f"static int8 was no smaller than float ({static['size_mb']:.3f} MB, "
        f"p50 {static['latency_ms']['p50']:.2f} ms)"
    )
    trial = formats.out / (INT8_FILE + ".dynamic")  # written aside: the static file stays if dynamic fails
    try:
        info = export_dynamic_int8(bundle, trial, calibration, why)
    except Exception as exc:  # noqa: BLE001 - keep the static file: it is the only int8 this network has
        trial.unlink(missing_ok=True)
        static["quantization"]["dynamic_fallback"] = f"failed: {reason(exc)}"
        return
    trial.replace(formats.out / INT8_FILE)
    formats.attempt("torchscript_int8", tolerance, lambda path: int8(info, path))

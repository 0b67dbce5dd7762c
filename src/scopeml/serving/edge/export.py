"""One writer per format: the bundle's front end, network and temperature as a file a device loads.

A writer raises where it cannot convert the network (FormatFailed, with a one-line reason, where
it tried more than one way); pipeline.py records that format as failed and goes on with the others.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from scopeml.serving.edge.artifacts import quiet
from scopeml.serving.edge.modules import Calibrated, DftMelSpectrogram

ONNX_OPSET = 17


class FormatFailed(RuntimeError):
    """Every way of writing one format failed; the message is the reason, on one line."""


def reason(exc: BaseException) -> str:
    """An exception on one line: its type and first non-blank line (TorchScript's messages go on for pages)."""
    if isinstance(exc, FormatFailed):
        return str(exc)
    line = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {line.rstrip(':')}"[:400]  # TorchScript ends its first line with ":"


def network_name(bundle) -> str:
    """Import path of the network class inside the bundle's model (features, network), e.g. mypkg.nets.Tiny."""
    from scopeml.components import target_name

    return target_name(bundle.model[1])


def save_torchscript(model: nn.Module, example: np.ndarray, path: Path, strict: bool = True) -> dict:
    """torch.jit.script, or torch.jit.trace on two example clips where script fails; {"method": ...} for the report.

    strict: a TracerWarning fails the trace, because it means the trace read a tensor's value and
    froze one branch of the network. The static int8 graph passes strict=False: it reads its
    calibrated scales as Python floats, constants by design. A trace that froze the batch size is
    caught by the parity check's batch-1/8 run.
    """
    with quiet():
        try:
            torch.jit.script(model).save(str(path))
            return {"method": "script"}
        except Exception as exc:  # noqa: BLE001 - any script failure: the trace may still hold the network
            script_failed = reason(exc)
        try:
            with warnings.catch_warnings():
                if strict:
                    warnings.simplefilter("error", torch.jit.TracerWarning)
                torch.jit.trace(model, torch.from_numpy(example[:2]), check_trace=False).save(str(path))
        except Exception as exc:  # noqa: BLE001
            raise FormatFailed(f"torch.jit.script: {script_failed}; torch.jit.trace: {reason(exc)}") from exc
    return {"method": "trace", "script_failed": script_failed}


def export_torchscript(bundle, path: Path, example: np.ndarray) -> dict:
    """Float TorchScript: prepared waveform -> calibrated probabilities."""
    return save_torchscript(Calibrated(bundle.model[0], bundle.model[1], bundle.temperature).eval(), example, path)


def export_int8(bundle, path: Path, calibration: np.ndarray) -> dict:
    """Static int8 (FX graph mode) of the network; dynamic int8 of the Linear layers if static fails.

    pipeline.py also falls back to dynamic when the static model misses its tolerance or is no smaller.
    The log-mel front end stays float32 in both: int8 STFT/log would cost accuracy and quantized
    kernels do not cover them. Returns {"scheme", "covers", "engine", "method"} for the manifest.
    """
    engine = torch.backends.quantized.engine
    try:
        with quiet():
            model, covers = _static_int8(bundle, calibration, engine)
        return {
            "scheme": "static",
            "engine": engine,
            "covers": covers,
            **save_torchscript(model, calibration, path, strict=False),
        }
    except Exception as exc:  # noqa: BLE001 - any static failure: fall back to the scheme that applies to most nets
        return export_dynamic_int8(bundle, path, calibration, f"static int8 failed: {reason(exc)}")


def _static_int8(bundle, calibration: np.ndarray, engine: str) -> tuple[nn.Module, str]:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.fx.custom_config import PrepareCustomConfig
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    from scopeml.models.bcresnet import SubSpectralNorm

    features, net = bundle.model[0], bundle.model[1]
    # SubSpectralNorm unpacks x.shape into Python ints, which FX cannot trace: it stays a float island.
    custom = PrepareCustomConfig().set_non_traceable_module_classes([SubSpectralNorm])
    with torch.no_grad():
        feats = features(torch.from_numpy(calibration))
        prepared = prepare_fx(
            copy.deepcopy(net).eval(), get_default_qconfig_mapping(engine), (feats[:1],), prepare_custom_config=custom
        )
        prepared(feats)  # observe activation ranges
        model = Calibrated(features, convert_fx(prepared), bundle.temperature).eval()
    islands = any(isinstance(m, SubSpectralNorm) for m in net.modules())
    covers = (
        "conv and linear weights and activations int8 (FX graph mode, calibrated on "
        f"{len(calibration)} clips); float32: the log-mel front end" + (", SubSpectralNorm" if islands else "")
    )
    return model, covers


def export_dynamic_int8(bundle, path: Path, example: np.ndarray, why: str) -> dict:
    """Dynamic int8 of the Linear layers (weights only); `why` says why static int8 was not kept."""
    engine = torch.backends.quantized.engine
    try:
        model = Calibrated(bundle.model[0], copy.deepcopy(bundle.model[1]), bundle.temperature).eval()
        with quiet():
            model = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        how = save_torchscript(model, example, path)
    except Exception as exc:  # noqa: BLE001 - neither scheme holds this network: say why for both
        raise FormatFailed(f"{why}; dynamic int8: {reason(exc)}") from exc
    return {
        "scheme": "dynamic",
        "engine": engine,
        "fallback_reason": why,
        **how,
        "covers": "Linear weights only (quantize_dynamic covers Linear/LSTM); convs stay float32, "
        "so a conv net shrinks little",
    }


def export_onnx(bundle, path: Path, example: np.ndarray) -> dict:
    """Float ONNX with the spectrogram as a DFT convolution (the TorchScript-based exporter cannot export stft)."""
    features = copy.deepcopy(bundle.model[0])
    if not hasattr(features, "mel"):
        raise ValueError(f"front end {type(features).__name__} has no .mel MelSpectrogram to replace")
    features.mel = DftMelSpectrogram(features.mel)  # LogMel.forward (log, per-clip standardization) is reused as is
    model = Calibrated(features, bundle.model[1], bundle.temperature).eval()
    with quiet():
        torch.onnx.export(
            model,
            (torch.from_numpy(example[:2]),),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            do_constant_folding=False,
            input_names=["waveform"],
            output_names=["probabilities"],
            dynamic_axes={"waveform": {0: "batch"}, "probabilities": {0: "batch"}},
        )
    return {
        "opset": ONNX_OPSET,
        "input": "waveform",
        "output": "probabilities",
        "front_end": "STFT as conv1d with a windowed DFT basis (same window, hop and mel filterbank)",
    }

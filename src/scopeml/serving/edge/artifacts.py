"""The exported folder's file names, and a TorchScript file loaded as a numpy function.

Shared by the export (which checks each file it writes) and EdgeRunner (which serves them), so
the two read the folder the same way.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

MANIFEST, REPORT_JSON, REPORT_MD = "edge.json", "edge_report.json", "edge_report.md"
TS_FILE, INT8_FILE, ONNX_FILE = "model.ts", "model_int8.ts", "model.onnx"
# report key -> (name in messages, file); the keys are also the manifest's artifact keys EdgeRunner looks up
FORMATS = {
    "torchscript": ("TorchScript", TS_FILE),
    "torchscript_int8": ("int8 TorchScript", INT8_FILE),
    "onnx": ("ONNX", ONNX_FILE),
}


@contextlib.contextmanager
def quiet():
    """torch.jit and the TorchScript ONNX exporter warn that they are deprecated; they are still what devices load."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def torchscript_runner(path: Path):
    """A TorchScript file as prepared clips (batch, samples) -> probabilities, on CPU."""
    import torch

    with quiet():
        model = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run

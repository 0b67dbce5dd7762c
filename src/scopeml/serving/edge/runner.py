"""EdgeRunner: serve an exported folder on a device with torch, numpy, the shared preprocessing and the VAD only.

It loads the TorchScript program and edge.json; no model builders, no bundle, no scopeml.models,
so a user's network runs here without its package.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from scopeml.serving.edge.artifacts import MANIFEST, torchscript_runner


def _namespace(value):
    """The manifest's preprocess dict with attribute access, which is all preprocess.apply needs."""
    return SimpleNamespace(**{k: _namespace(v) for k, v in value.items()}) if isinstance(value, dict) else value


class EdgeRunner:
    """Runs an exported folder: edge.json + model.ts (or model_int8.ts)."""

    def __init__(self, folder: str | Path, int8: bool = False, threads: int | None = None):
        import torch

        self.folder = Path(folder)
        self.manifest = json.loads((self.folder / MANIFEST).read_text())
        key = "torchscript_int8" if int8 else "torchscript"
        if key not in self.manifest["artifacts"]:
            raise FileNotFoundError(
                f"{self.folder}: no {key} artifact (exported with --no-quantize, "
                "or this network could not be exported to it: see edge_report.md)"
            )
        if int8:
            engine = self.manifest["artifacts"][key]["quantization"]["engine"]
            if engine in torch.backends.quantized.supported_engines:
                torch.backends.quantized.engine = engine
        if threads:
            torch.set_num_threads(threads)
        self.classes: list[str] = list(self.manifest["classes"])
        self.sample_rate: int = int(self.manifest["sample_rate"])
        self._preprocess = _namespace(self.manifest["preprocess"])
        self._run = torchscript_runner(self.folder / self.manifest["artifacts"][key]["file"])
        from scopeml.serving.vad import from_settings

        # the exported deploy.vad; silero's model loads now, so a runtime without silero-vad says so at once
        self.vad = from_settings(self.manifest.get("vad"), key="edge.json vad")
        getattr(self.vad, "load", lambda: None)()

    def prepare(self, samples: np.ndarray, sr: int) -> np.ndarray:
        from scopeml.data.preprocess import apply

        return apply(samples, sr, self._preprocess)

    def predict(self, waves: np.ndarray) -> np.ndarray:
        """Calibrated probabilities for prepared clips (batch, clip_samples)."""
        return self._run(waves)

    def _describe(self, probs: np.ndarray) -> dict:
        best = int(np.argmax(probs))
        return {
            "label": self.classes[best],
            "confidence": float(probs[best]),
            "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
        }

    def classify(self, samples: np.ndarray, sr: int) -> dict:
        return self._describe(self.predict(self.prepare(samples, sr)[None])[0])

    def segments(self, samples: np.ndarray, sr: int) -> list[dict]:
        """VAD first, then one prediction per voiced segment; silence gives [] rather than a guess."""
        from scopeml.data.audio import check_samples, to_mono

        mono = to_mono(check_samples(np.asarray(samples, dtype=np.float32), "samples"))
        spans = self.vad.segments(mono, sr)
        if not spans:
            return []
        probs = self.predict(np.stack([self.prepare(mono[a:b], sr) for a, b in spans]))
        described = [{k: v for k, v in self._describe(p).items() if k != "probabilities"} for p in probs]
        return [{"start_s": a / sr, "end_s": b / sr, **d} for (a, b), d in zip(spans, described)]

"""The packaged model: weights, features and network config, classes, preprocessing and calibration.

Everything serving needs to score audio exactly as the model was evaluated. Weights are
a plain state_dict loaded with weights_only=True (no arbitrary unpickling); the network
is rebuilt from its config by the same code that trained it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

SERVING_FILE = "serving.json"
WEIGHTS_FILE = "weights.pt"
REFERENCE_FILES = ("predictions_val.parquet", "predictions_test.parquet")


@dataclass
class ServingBundle:
    model: "object"  # torch.nn.Module in eval mode, on CPU
    classes: list[str]
    preprocess: "object"  # PreprocessConfig
    temperature: float
    tag: str
    info: dict

    @classmethod
    def load(cls, folder: str | Path, tag: str = "local") -> "ServingBundle":
        import torch

        from scopeml.config import _validate
        from scopeml.config.schema import ModelConfig, PreprocessConfig
        from scopeml.models import build_classifier

        folder = Path(folder)
        info = json.loads((folder / SERVING_FILE).read_text())
        preprocess = _validate.parse(PreprocessConfig, info["preprocess"], "preprocess")
        model_cfg = _validate.parse(ModelConfig, info["model"], "model")
        model = build_classifier(model_cfg, len(info["classes"]), preprocess.sample_rate)
        model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        model.eval()
        return cls(model, list(info["classes"]), preprocess, float(info["temperature"]), tag, info)

    @property
    def clip_samples(self) -> int:
        return int(round(self.preprocess.clip_seconds * self.preprocess.sample_rate))

    def prepare(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """The training preprocessing, from the packaged definition."""
        from scopeml.data.preprocess import apply

        return apply(samples, sample_rate, self.preprocess)

    def predict(self, waves: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities for prepared clips (batch, samples)."""
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)))
            return torch.softmax(logits / self.temperature, dim=-1).numpy()

    def describe(self, probs: np.ndarray) -> dict:
        best = int(np.argmax(probs))
        return {
            "label": self.classes[best],
            "confidence": float(probs[best]),
            "probabilities": {c: float(p) for c, p in zip(self.classes, probs)},
            "model": self.tag,
        }


def write_bundle(run_dir: Path, out: Path, deploy: dict) -> dict:
    """Write a run's serving bundle into `out`: weights, serving.json, and the held-out predictions for monitoring."""
    import torch
    import yaml

    from scopeml.config import load
    from scopeml.run_files import read_metrics

    config = load(yaml.safe_load((run_dir / "config.yaml").read_text()))
    metrics = read_metrics(run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    state = {k[len("net."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / WEIGHTS_FILE)
    for name in REFERENCE_FILES:
        shutil.copy(run_dir / name, out / name)
    from scopeml.monitoring.reference import REFERENCE_FILE, build_reference

    build_reference(run_dir).to_parquet(out / REFERENCE_FILE, index=False)
    info = {
        "classes": list(config.scoping.classes),
        "preprocess": asdict(config.data.preprocess),
        "model": asdict(config.model),
        "temperature": metrics.temperature,
        "deploy": deploy,
        "scoping": {"name": config.scoping.name, "primary_metric": config.scoping.primary_metric,
                    "targets": {k: asdict(v) for k, v in config.scoping.targets.items()}},
        "metrics": {"test": metrics.test, "val": metrics.val, "model": metrics.model, "calibration": metrics.calibration},
        "data_fingerprint": metrics.data_fingerprint,
        "run_dir": str(run_dir),
    }
    (out / SERVING_FILE).write_text(json.dumps(info, indent=2))
    shutil.copy(run_dir / "config.yaml", out / "config.yaml")
    return info

"""The packaged model: weights, features and network config, classes, preprocessing and calibration.

Everything serving needs to score audio exactly as the model was evaluated. Weights are
a plain state_dict loaded with weights_only=True (no arbitrary unpickling); the network
is rebuilt from its `_target_` config by the same code that trained it. When that code (or the
front-end, a monitoring feature, the deploy.vad detector) is a user's own (a module outside
scopeml and outside site-packages), its package's source
is carried in the bundle under code/ and put on the import path when the bundle loads, so
`bentoml serve`, scopeml-batch and a built bento need nothing but the bundle.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

SERVING_FILE = "serving.json"
CODE_DIR = "code"  # a user's network/front-end/feature/VAD source, carried with the weights
WEIGHTS_FILE = "weights.pt"


@dataclass
class ServingBundle:
    model: object  # torch.nn.Module in eval mode, on `device`
    classes: list[str]
    preprocess: object  # PreprocessConfig
    temperature: float
    tag: str
    info: dict
    # name -> fn(clip, sample_rate): the training run's monitor.custom_features
    custom_features: dict = field(default_factory=dict)
    device: str = "cpu"

    @classmethod
    def load(cls, folder: str | Path, tag: str = "local", device: str = "cpu") -> ServingBundle:
        """The packaged model on `device` ("cpu", "cuda", or "auto": cuda when torch sees one); asking for cuda
        where there is none fails here, at start-up, not on the first request."""
        import sys

        import torch

        from scopeml.config import _validate
        from scopeml.config.schema import PreprocessConfig
        from scopeml.models import build_classifier

        folder = Path(folder)
        info = json.loads((folder / SERVING_FILE).read_text())
        if (folder / CODE_DIR).is_dir() and str(folder / CODE_DIR) not in sys.path:
            sys.path.append(str(folder / CODE_DIR))  # after the installed packages: an installed copy wins
        preprocess = _validate.parse(PreprocessConfig, info["preprocess"], "preprocess")
        model = build_classifier(
            info["frontend"], info["model"], len(info["classes"]), preprocess.sample_rate, preprocess.clip_seconds
        )
        model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("deploy.device=cuda, but torch sees no CUDA device here (use cpu or auto)")
        model.eval().to(device)
        from scopeml.features import build_custom

        custom = build_custom(info.get("custom_features") or {})
        return cls(model, list(info["classes"]), preprocess, float(info["temperature"]), tag, info, custom, device)

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
            logits = self.model(torch.from_numpy(np.ascontiguousarray(waves, dtype=np.float32)).to(self.device))
            return torch.softmax(logits.float() / self.temperature, dim=-1).cpu().numpy()

    def features(self, wave: np.ndarray, duration_s: float | None = None) -> dict:
        """The monitoring features of one prepared clip: the built-ins and this model's custom ones."""
        from scopeml.features import monitoring_features

        return monitoring_features(wave, self.preprocess.sample_rate, duration_s, self.custom_features)

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
    from scopeml.run_files import held_out_predictions, read_metrics

    config = load(yaml.safe_load((run_dir / "config.yaml").read_text()))
    metrics = read_metrics(run_dir)
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    state = {k[len("net.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / WEIGHTS_FILE)
    for path in held_out_predictions(run_dir):
        shutil.copy(path, out / path.name)
    from scopeml.monitoring.reference import REFERENCE_FILE, build_reference

    build_reference(run_dir).to_parquet(out / REFERENCE_FILE, index=False)
    info = {
        "classes": list(config.scoping.classes),
        "preprocess": asdict(config.data.preprocess),
        "model": dict(config.model),
        "frontend": dict(config.frontend),
        "temperature": metrics.temperature,
        "deploy": deploy,
        "scoping": {
            "name": config.scoping.name,
            "description": config.scoping.description,
            "primary_metric": config.scoping.primary_metric,
            "targets": {k: asdict(v) for k, v in config.scoping.targets.items()},
        },
        "metrics": {
            "selection_split": metrics.selection_split,
            "test": metrics.test,
            "val": metrics.val,
            "cv": metrics.cv,
            "model": metrics.model,
            "calibration": metrics.calibration,
        },
        "data_fingerprint": metrics.data_fingerprint,
        "run_dir": str(run_dir),
    }
    info["custom_features"] = dict(config.monitor.custom_features)
    vad_target = (deploy.get("vad") or {}).get("_target_")
    targets = [
        config.frontend["_target_"],
        config.model["_target_"],
        *(f["_target_"] for f in config.monitor.custom_features.values()),
        *([vad_target] if vad_target else []),
    ]
    info["code"] = carry_code(out / CODE_DIR, targets)
    (out / SERVING_FILE).write_text(json.dumps(info, indent=2))
    shutil.copy(run_dir / "config.yaml", out / "config.yaml")
    return info


def carry_code(dest: Path, targets: list[str]) -> list[str]:
    """Copy the source of each target's top-level package into `dest`, unless scopeml or an installed package holds it.

    Returns the package names carried. Code in site-packages is an installed dependency: the serving
    environment installs it like scopeml itself; a user's working folder is not, so it travels.
    """
    import importlib.util

    carried = []
    for top in sorted({t.split(".")[0] for t in targets}):
        spec = importlib.util.find_spec(top)
        if top == "scopeml" or spec is None or spec.origin in (None, "built-in"):
            continue
        roots = list(spec.submodule_search_locations or [spec.origin])
        if any(part in ("site-packages", "dist-packages") for root in roots for part in Path(root).parts):
            continue
        for root in map(Path, roots):
            if root.is_dir():
                for src in root.rglob("*.py"):
                    if "__pycache__" in src.parts:
                        continue
                    target = dest / top / src.relative_to(root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, target)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(root, dest / root.name)
        carried.append(top)
    return carried

"""scopeml-package: put the selected model into the BentoML model store, ready for `bentoml serve` and `bentoml build`.

    scopeml-package outputs/sweeps/<time>/selection.json [deploy=realtime_batching] [deploy.max_body_mb=2]

The model is saved as <deploy.model_name>:<version> with its weights, preprocessing,
classes, calibration temperature, deploy settings and held-out predictions (the
monitoring reference); its metadata carries the scoping targets, metrics, data
fingerprint and git commit. The service loads <name>:latest, so the model just
packaged is the one served (SCOPEML_MODEL_TAG pins another).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

from scopeml.run_files import HELD_OUT_PREDICTIONS, RunFileError, held_out_predictions, read_selection


class PackageError(ValueError):
    """A source that cannot be packaged (no such file, nothing selected, an unfinished run) or a bad deploy override."""


def run_dir_of(source: Path) -> Path:
    if source.is_dir():
        run_dir = source
    elif source.is_file():
        try:
            selection = read_selection(source)
        except RunFileError as exc:
            raise PackageError(f"{exc} (expected a selection.json from scopeml-select)") from None
        if selection.selected is None:
            raise PackageError(f"{source}: no run was selected (every run missed a gate; see its 'rejected' list)")
        run_dir = Path(selection.selected.run_dir)
    else:
        raise PackageError(f"{source}: no such selection.json or run folder")
    missing = [n for n in ("config.yaml", "metrics.json", "checkpoints/best.ckpt") if not (run_dir / n).exists()]
    if not held_out_predictions(run_dir):
        missing.append(" or ".join(HELD_OUT_PREDICTIONS))
    if missing:
        raise PackageError(f"{run_dir}: not a finished training run (missing {', '.join(missing)})")
    return run_dir


def deploy_config(overrides: list[str], config_dir: str | None = None):
    from scopeml.config import ConfigError, load
    from scopeml.config.paths import compose
    from scopeml.serving.vad import from_settings

    try:
        deploy = load(compose("config", overrides, config_dir)).deploy
        from_settings(deploy.vad)  # a user's VAD is built once here, so a bad one fails before anything is stored
    except (ConfigError, ValueError) as exc:
        raise PackageError(str(exc)) from None
    return deploy


def package(source: Path, overrides: list[str] = (), config_dir: str | None = None) -> str:
    import tempfile

    import bentoml

    from scopeml.provenance import git_state
    from scopeml.redact import without_url_password
    from scopeml.serving.bundle import write_bundle

    run_dir = run_dir_of(source)
    deploy = deploy_config(list(overrides), config_dir)
    with tempfile.TemporaryDirectory() as tmp:
        settings = asdict(deploy)
        # what the store keeps names the log but never its password (the server reads PGPASSWORD or ~/.pgpass)
        settings["prediction_log"] = without_url_password(settings["prediction_log"])
        info = write_bundle(run_dir, Path(tmp), settings)
        provenance = (
            json.loads((run_dir / "provenance.json").read_text()) if (run_dir / "provenance.json").exists() else {}
        )
        git = provenance.get("git") or git_state()
        # BentoML metadata takes only plain scalars in its nested values (no null): nested
        # structures go in as JSON strings, and the fields people filter on stay flat.
        metadata = {
            "scoping": json.dumps(info["scoping"]),
            "metrics": json.dumps(info["metrics"]),
            "config": json.dumps(_yaml(run_dir / "config.yaml")),
            "primary_metric": info["scoping"]["primary_metric"],
            **_primary_values(info),
            "data_fingerprint": str(info["data_fingerprint"]),
            "git_commit": str(git.get("commit")),
            "git_dirty": str(git.get("dirty")),
            "run_dir": str(run_dir),
        }
        labels = {"project": "scopeml", "scoping": info["scoping"]["name"], "arch": info["model"]["_target_"]}
        with bentoml.models.create(deploy.model_name, labels=labels, metadata=metadata) as model:
            shutil.copytree(tmp, model.path, dirs_exist_ok=True)  # weights, serving.json, reference, carried code/
        tag = str(model.tag)
    (run_dir / "package.json").write_text(
        json.dumps({"tag": tag, "bentoml_home": os.environ.get("BENTOML_HOME", "~/bentoml")}, indent=2)
    )
    return tag


def _primary_values(info: dict) -> dict:
    """The primary metric where it was chosen (validation or the CV mean) and, beside it, on the test split."""
    metrics, primary = info["metrics"], info["scoping"]["primary_metric"]
    split = metrics["selection_split"]
    chosen_on = (metrics["cv"] or {}).get("mean", {}) if split == "cv" else metrics["val"]
    out = {"selection_split": split}
    if primary in chosen_on:
        out["value"] = float(chosen_on[primary])
    if primary in metrics["test"]:
        out["test_value"] = float(metrics["test"][primary])
    return out


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())

"""Which serving bundle a SOURCE names: a selection.json, a training run folder (bundled first) or a bundle."""

from __future__ import annotations

import json
from pathlib import Path

from scopeml.run_files import HELD_OUT_PREDICTIONS, held_out_predictions


class EdgeError(ValueError):
    """A SOURCE that names no usable bundle: the command's fault to report, not a crash."""


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
        raise EdgeError(
            f"{source}: neither a serving bundle ({SERVING_FILE}) nor a training run (checkpoints/best.ckpt)"
        )
    missing = [n for n in ("config.yaml", "metrics.json") if not (source / n).is_file()]
    if not held_out_predictions(source):
        missing.append(" or ".join(HELD_OUT_PREDICTIONS))
    if missing:
        raise EdgeError(f"{source}: not a finished training run (missing {', '.join(missing)})")
    from dataclasses import asdict

    import yaml

    from scopeml.config import load

    deploy = {**asdict(load(yaml.safe_load((source / "config.yaml").read_text())).deploy), "kind": "edge"}
    write_bundle(source, out / "bundle", deploy)
    return out / "bundle"


def load_bundle(folder: Path):
    """The ServingBundle in folder; one that does not load is a bad SOURCE."""
    from scopeml.serving.bundle import ServingBundle

    try:
        return ServingBundle.load(folder)
    except Exception as exc:  # noqa: BLE001 - any load failure: say which folder and why
        raise EdgeError(f"{folder}: cannot load the serving bundle ({type(exc).__name__}: {exc})") from None

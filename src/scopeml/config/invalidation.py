"""What a config edit invalidates: the lifecycle stages that would re-run, and the recorded runs made
with the values it changes.

Lifecycle stages. `scopeml-lifecycle` (lifecycle/run.py) skips a stage whose inputs hash as
before. The data and sweep stages hash the config composed with the lifecycle's `train`
overrides, the monitor stage the config with `train + monitor`; the other stages hash their own
section of conf/lifecycle/<name>.yaml and the files earlier stages wrote, so a re-run stage
re-runs the stages reading its output. Both compositions are compared between the two trees.

Recorded runs. A run folder keeps the config it ran with (config.yaml, or .hydra/config.yaml
for a run that stopped before writing it). A run holding the old value of a changed key was
made with what the edit replaces; re-running it now gives a different run. Only those YAML
files are read, so a folder of many runs is scanned in well under a second.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scopeml.config.diff import DiffEngine
from scopeml.config.key_groups import KeyLine
from scopeml.config.snapshot import ABSENT, describe, flatten, same
from scopeml.lifecycle.run import Lifecycle

STAGES = Lifecycle.STAGES
# The stages whose outputs each stage reads (its inputs besides the config); mirrors Lifecycle.run.
UPSTREAM = {
    "sweep": ("data",),
    "select": ("sweep",),
    "package": ("select",),
    "loadtest": ("package",),
    "simulate": ("package",),
    "label": ("simulate",),
    "monitor": ("package", "label"),
    "report": tuple(s for s in STAGES if s != "report"),
}
SERVED = ("loadtest", "simulate", "label", "monitor")  # any of these re-running starts the service (serve)
# Sections of conf/lifecycle/<name>.yaml and the stage each one is an input of.
SECTION_STAGE = {"sweep": "sweep", "loadtest": "loadtest", "simulate": "simulate"}
SKIPPED_DIRS = {".hydra", "wandb", "checkpoints", "bentoml", "__pycache__", ".cache"}
MAX_DEPTH = 6  # outputs/lifecycle/02_sweep/<job>/ is 3 below outputs/


# --------------------------------------------------------------------------- lifecycle stages
@dataclass
class StageImpact:
    lifecycle: str  # the name in conf/lifecycle/
    status: str  # "reruns" | "unchanged" | "added" | "removed" | "fails"
    triggers: dict[str, str] = field(default_factory=dict)  # stage -> why its own inputs changed
    reruns: list[str] = field(default_factory=list)  # every stage that would run again, in order
    error: str = ""

    @property
    def first(self) -> str:
        return next((s for s in STAGES if s in self.triggers), "")


def lifecycle_impacts(engine: DiffEngine) -> list[StageImpact]:
    """Per lifecycle config of either tree, the stages that would re-run after the edit."""
    folders = [side.conf / "lifecycle" if side.conf else None for side in engine.sides]
    names = sorted({p.stem for f in folders if f and f.is_dir() for p in f.glob("*.yaml")})
    return [stage_impact(engine, name, [f / f"{name}.yaml" if f else None for f in folders]) for name in names]


def stage_impact(engine: DiffEngine, name: str, paths: list[Path | None]) -> StageImpact:
    from scopeml.config import ConfigError
    from scopeml.lifecycle.config import load_lifecycle

    present = [p is not None and p.exists() for p in paths]
    if not all(present):
        return StageImpact(name, "added" if present[1] else "removed")
    try:
        old, new = (asdict(load_lifecycle(str(p))) for p in paths)
    except ConfigError as exc:
        return StageImpact(name, "fails", error="; ".join(exc.problems))

    triggers: dict[str, str] = {}
    train = engine.compare("config", (old["train"], new["train"]))
    if train.changed:
        why = comparison_reason(train, "its training config")
        triggers["data"] = triggers["sweep"] = why
    for section, stage in SECTION_STAGE.items():
        if not same(old[section], new[section]):
            triggers.setdefault(stage, f"its `{section}` settings changed")
    if not same(old["simulate"]["labelled"], new["simulate"]["labelled"]):
        triggers.setdefault("label", "the labelled scenarios changed")
    monitor = engine.compare("config", (old["train"] + old["monitor"], new["train"] + new["monitor"]))
    if monitor.changed:
        triggers.setdefault("monitor", comparison_reason(monitor, "its monitoring config"))
    if old["out"] != new["out"]:  # a new output folder has no stage recorded: everything runs
        triggers = {s: f"its output folder moved to {new['out']}" for s in STAGES}
    reruns = propagate(set(triggers))
    return StageImpact(name, "reruns" if reruns else "unchanged", triggers, reruns)


def comparison_reason(comparison, what: str) -> str:
    if comparison.new_error and comparison.new_error != comparison.old_error:
        return f"{what} no longer composes: {comparison.new_error}"
    if comparison.old_error and not comparison.new_error:
        return f"{what} composes again"
    keys = [describe(c) for c in comparison.changes if c.key not in comparison.follows]
    more = f" (+{len(keys) - 2} more)" if len(keys) > 2 else ""
    followed = sorted(comparison.follows)
    also = f"; followed by {', '.join(followed[:3])}" + (f" and {len(followed) - 3} more" if len(followed) > 3 else "")
    return f"{what} changes at {', '.join(keys[:2])}{more}{also if followed else ''}"


def propagate(triggered: set[str]) -> list[str]:
    """The triggered stages and every stage reading their outputs, transitively, in lifecycle order."""
    reruns = set(triggered)
    for stage in STAGES:  # STAGES is in dependency order, so one pass reaches everything downstream
        if any(up in reruns for up in UPSTREAM.get(stage, ())):
            reruns.add(stage)
    if reruns & set(SERVED):
        reruns.add("serve")
        reruns.add("report")
    return [s for s in STAGES if s in reruns]


# --------------------------------------------------------------------------- recorded runs
@dataclass
class RunsImpact:
    folder: Path
    scanned: int = 0  # run folders found
    affected: list[tuple[str, list[str]]] = field(default_factory=list)  # (run folder, keys it holds old values of)

    @property
    def exists(self) -> bool:
        return self.folder.is_dir()


def recorded_runs(folder: Path, lines: list[KeyLine]) -> RunsImpact:
    """Runs below folder holding the old value of a changed key that was not set on their command line."""
    impact = RunsImpact(folder)
    keyed = [line for line in lines if not line.change.key.startswith("hydra.")]
    if not impact.exists or not keyed:
        impact.scanned = sum(1 for _ in run_folders(folder)) if impact.exists else 0
        return impact
    for run, config_file in run_folders(folder):
        impact.scanned += 1
        saved = read_yaml(config_file)
        if not isinstance(saved, dict):
            continue
        flat, pinned = flatten(saved), command_line_keys(config_file)
        keys = sorted(
            {line.change.key for line in keyed if not _pinned(line.change.key, pinned) and holds_old(flat, line)}
        )
        if keys:
            impact.affected.append((str(run), keys))
    impact.affected.sort()
    return impact


def run_folders(folder: Path):
    """(run folder, its config file) below folder; a run folder is not searched further."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        depth = len(here.relative_to(folder).parts)
        config = here / "config.yaml" if "config.yaml" in filenames else here / ".hydra" / "config.yaml"
        if depth > 0 and config.is_file():
            yield here, config
            dirnames[:] = []
            continue
        wanted = [d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith(".")]
        dirnames[:] = [] if depth >= MAX_DEPTH else sorted(wanted)


def holds_old(flat: dict[str, Any], line: KeyLine) -> bool:
    saved = flat.get(line.change.key, ABSENT)
    old = line.change.old
    if old is ABSENT or saved is ABSENT:  # an added key: every run without it would now get it
        return old is ABSENT and saved is ABSENT
    return same(saved, old)


def command_line_keys(config_file: Path) -> set[str]:
    """Keys the run set on its command line (`hparams.lr=...`): an edit of their default does not reach it."""
    overrides = (
        read_yaml(config_file.parent / "overrides.yaml")
        if config_file.parent.name == ".hydra"
        else read_yaml(config_file.parent / ".hydra" / "overrides.yaml")
    )
    keys = set()
    for item in overrides if isinstance(overrides, list) else []:
        key, sep, _ = str(item).lstrip("+~").partition("=")
        if sep:
            keys.add(key)
    return keys


def _pinned(key: str, pinned: set[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in pinned)


def read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None

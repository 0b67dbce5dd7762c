"""One source for each default: a shipped YAML never restates what the schema (or a component's own
constructor) already says, and every schema key is read by some code."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import typing
from pathlib import Path

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from scopeml.config import schema
from scopeml.config.paths import conf_dir

CONF = conf_dir()
SRC = ROOT / "src" / "scopeml"
COMPONENT_GROUPS = ("model", "frontend", "hparams/optimizer", "hparams/scheduler", "hparams/loss", "deploy/vad")
NOT_GROUPS = ("hydra", "simulate", "lifecycle", "experiment", "hparams_search")


def group_files():
    for path in sorted(CONF.rglob("*.yaml")):
        group = path.parent.relative_to(CONF).as_posix()
        if group != "." and group.split("/")[0] not in NOT_GROUPS:
            yield group, path


def _raw(path: Path) -> dict:
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False) or {}
    node.pop("defaults", None)
    return node


def _schema_defaults(group: str, body: dict) -> dict:
    node = schema.defaults_node()
    for part in group.split("/"):
        node = node.get(part, {})
    if group == "data" and "recipe" in body:
        node = {**node, **schema.variant_defaults().get(f"data_{body['recipe']}", {})}
    return node


def _restated(body: dict, defaults: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in body.items():
        if key not in defaults or (isinstance(value, str) and "${" in value):
            continue
        if isinstance(value, dict) and isinstance(defaults[key], dict):
            found += _restated(value, defaults[key], f"{prefix}{key}.")
        elif value == defaults[key]:
            found.append(f"{prefix}{key}: {value!r}")
    return found


def _constructor_defaults(target: str) -> dict:
    module, _, name = target.rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    return {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("group,path", list(group_files()), ids=lambda v: str(v).rpartition("conf/")[2])
def test_a_shipped_yaml_states_only_what_differs_from_the_default(group, path):
    body = _raw(path)
    if group in COMPONENT_GROUPS:
        defaults = _constructor_defaults(body["_target_"])
    else:
        defaults = _schema_defaults(group, body)
    assert _restated(body, defaults) == [], f"{path.relative_to(CONF)} restates defaults; delete these lines"


def test_the_check_catches_a_restated_default(tmp_path):
    """The rule above can fail: a file restating the schema's batch size is caught."""
    assert _restated({"batch_size": 64, "lr": 0.1}, _schema_defaults("hparams", {})) == ["batch_size: 64"]


def _schema_fields() -> list[tuple[str, str]]:
    """(dataclass name, field name) of every schema dataclass reachable from the root configs."""
    roots = [schema.Config, schema.ScenarioConfig, *schema.DataConfig.__variants__.values()]
    seen, out = set(), []
    while roots:
        tp = roots.pop()
        if tp in seen:
            continue
        seen.add(tp)
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            out.append((tp.__name__, f.name))
            for inner in [hints[f.name], *typing.get_args(hints[f.name])]:
                for candidate in [inner, *typing.get_args(inner)]:
                    if dataclasses.is_dataclass(candidate):
                        roots.append(candidate)
    return out


def test_every_schema_key_is_read_by_some_code():
    code = "\n".join(p.read_text() for p in SRC.rglob("*.py"))  # schema.py too: its check() methods read fields
    code += "\n".join(p.read_text() for p in CONF.rglob("*.yaml"))  # read through an interpolation counts
    unread = [
        f"{owner}.{name}"
        for owner, name in _schema_fields()
        if not re.search(rf"(\.{name}\b|\[[\"']{name}[\"']\]|\{{[^}}]*\b{name}\b[^}}]*\}}|get\([\"']{name}[\"'])", code)
    ]
    assert unread == [], f"declared in the schema but read by no code: {unread}"

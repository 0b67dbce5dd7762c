"""A composed config as dotted keys to plain values, and the key-level changes between two of them."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from scopeml.config.composer import Composed

# hydra.* keys left out of the diff: runtime facts (paths, versions, the overrides used to
# compose, which differ between targets by construction) and the --help text templates.
HYDRA_SKIP = ("runtime", "help", "hydra_help", "overrides", "job.override_dirname", "job.id", "job.num")


class _Absent:
    """The value of a key a config does not have (a key added or removed by a change)."""

    def __repr__(self) -> str:
        return "<absent>"


ABSENT = _Absent()


@dataclass(frozen=True)
class KeyChange:
    key: str
    old: Any  # ABSENT when the key was added
    new: Any  # ABSENT when the key was removed

    @property
    def kind(self) -> str:
        return "added" if self.old is ABSENT else "removed" if self.new is ABSENT else "changed"

    def signature(self) -> tuple:
        """What two configs must share to show the same change: the key and both values, types included."""
        return (self.key, fmt(self.old) + type(self.old).__name__, fmt(self.new) + type(self.new).__name__)


def flatten(node: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Dotted keys to leaf values; lists and empty mappings are leaves."""
    out = {} if out is None else out
    if isinstance(node, dict) and node:
        for k, v in node.items():
            flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = node
    return out


def same(a: Any, b: Any) -> bool:
    """Equal in value *and* type: 1 vs 1.0 or 1 vs true is a semantic change (a batch count vs a fraction)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def fmt(value: Any) -> str:
    """A value as the reports print it: JSON (strings quoted)."""
    if value is ABSENT:
        return "(absent)"
    return json.dumps(value, ensure_ascii=False, default=str)


def snapshot(composed: Composed) -> dict[str, Any]:
    """The resolved config's leaves plus the hydra node's (less HYDRA_SKIP), as dotted keys."""
    flat = flatten(composed.main or {})
    hydra = copy.deepcopy(composed.hydra or {})
    for key in HYDRA_SKIP:
        *parents, leaf = key.split(".")
        node = hydra
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    if hydra:
        flatten(hydra, "hydra", flat)
    return flat


def key_changes(old: dict[str, Any], new: dict[str, Any]) -> list[KeyChange]:
    """Every key whose value or type differs, was added or was removed, sorted by key."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        if a is ABSENT or b is ABSENT or not same(a, b):
            changes.append(KeyChange(key, a, b))
    return changes


def describe(change: KeyChange) -> str:
    """`key: old -> new`, `+ key: new` or `- key: old`."""
    if change.kind == "added":
        return f"+ {change.key}: {fmt(change.new)}"
    if change.kind == "removed":
        return f"- {change.key}: {fmt(change.old)}"
    return f"{change.key}: {fmt(change.old)} -> {fmt(change.new)}"

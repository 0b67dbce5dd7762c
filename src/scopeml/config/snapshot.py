"""A composed config as dotted keys to plain values, and the key-level changes between two of them."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from scopeml.config.composer import Composed
from scopeml.config.tree_facts import UNKNOWN, reference_target

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


def followers(changes: list[KeyChange], raw: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, str]:
    """{key: the changed key it follows} for the changes that only follow another: the key is written the same
    on both sides (raw: the config flattened as written, old and new) as an interpolation, `${hparams.lr}`,
    and what it reads changed. It follows the changed key it reads, back along a chain of interpolations to a
    key that changed in its own right. A key whose source is not among the changes is not a follower."""
    changed = {c.key for c in changes}
    reads: dict[str, list[str]] = {}
    for change in changes:
        leaf = written_key(change.key, raw)
        if leaf is None or leaf not in raw[0] or leaf not in raw[1] or not same(raw[0][leaf], raw[1][leaf]):
            continue
        refs = [r for r in references(raw[0][leaf]) if r != UNKNOWN]
        pure = pure_reference(raw[0][leaf])
        if pure is not None and pure + change.key[len(leaf) :] in changed:
            sources = [pure + change.key[len(leaf) :]]  # ${data.preprocess} for data.components.real.preprocess.x
        else:
            sources = sorted(k for k in changed if any(_under(k, r) or _under(r, k) for r in refs))
        if sources := [k for k in sources if k != change.key]:
            reads[change.key] = sources

    def source(key: str, seen: frozenset) -> str | None:
        if key not in reads:
            return key
        for read in reads[key]:
            if read not in seen and (found := source(read, seen | {key})) is not None:
                return found
        return None

    return {key: root for key in reads if (root := source(key, frozenset())) not in (None, key)}


def written_key(key: str, raw: tuple[dict[str, Any], dict[str, Any]]) -> str | None:
    """The key as written that holds a resolved key: itself, or an interpolation of a mapping above it."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in raw[0] or candidate in raw[1]:
            return candidate
    return None


def references(value: Any) -> list[str]:
    """The keys a written value interpolates (in a list: every item's)."""
    if isinstance(value, str):
        return reference_target(value)
    if isinstance(value, list):
        return [ref for item in value for ref in references(item)]
    return []


def pure_reference(value: Any) -> str | None:
    """S when the value is exactly `${S}` (it then *is* S's value, mapping included)."""
    if not isinstance(value, str):
        return None
    refs = reference_target(value)
    return refs[0] if len(refs) == 1 and refs[0] != UNKNOWN and value.replace(" ", "") == f"${{{refs[0]}}}" else None


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


def describe(change: KeyChange) -> str:
    """`key: old -> new`, `+ key: new` or `- key: old`."""
    if change.kind == "added":
        return f"+ {change.key}: {fmt(change.new)}"
    if change.kind == "removed":
        return f"- {change.key}: {fmt(change.old)}"
    return f"{change.key}: {fmt(change.old)} -> {fmt(change.new)}"

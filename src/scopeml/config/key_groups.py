"""One line per changed key instead of one per config: an edit to a shared default reaches dozens of
configs with the same change, and the review needs the change once, with the configs it skips. A key
that changes only because it interpolates a changed one (`hparams.optimizer.lr: ${hparams.lr}`) is no
line of its own: it is named on the line of the key it follows."""

from __future__ import annotations

from dataclasses import dataclass, field

from scopeml.config.diff import Outcome
from scopeml.config.snapshot import KeyChange


@dataclass
class KeyLine:
    change: KeyChange  # the key and its old and new values
    configs: list[str] = field(default_factory=list)  # the configs showing exactly this change
    holders: list[str] = field(default_factory=list)  # the configs holding the key (on either side), configs included
    followers: list[str] = field(default_factory=list)  # keys that interpolate it and change with it, in those configs

    @property
    def others(self) -> list[str]:
        """Configs that hold the key but do not show this change: they keep their own value or change differently."""
        return [label for label in self.holders if label not in self.configs]


def group_by_key(outcomes: list[Outcome]) -> list[KeyLine]:
    """A line per distinct (key, old, new) over the composed configs, ordered by key, widest change first;
    the keys following a change (outcome.follows) are named on its line instead."""
    tree = [o for o in outcomes if o.target.kind != "standalone" and o.status in ("same", "changed")]
    lines: dict[tuple, KeyLine] = {}
    following: dict[tuple, set[str]] = {}
    for o in tree:
        by_key = {change.key: change for change in o.changes}
        for change in o.changes:
            if change.key in o.follows:
                following.setdefault(by_key[o.follows[change.key]].signature(), set()).add(change.key)
            else:
                lines.setdefault(change.signature(), KeyLine(change)).configs.append(o.target.label)
    for signature, line in lines.items():
        line.holders = [o.target.label for o in tree if o.target.label in line.configs or o.holds(line.change.key)]
        line.followers = sorted(following.get(signature, ()))
    return sorted(lines.values(), key=lambda line: (line.change.key, -len(line.configs)))


def file_changes(outcomes: list[Outcome]) -> list[Outcome]:
    """Standalone files (scenarios, lifecycle settings) that changed: each is its own config, shown per file."""
    return [o for o in outcomes if o.target.kind == "standalone" and o.status == "changed"]


def config_events(outcomes: list[Outcome]) -> list[Outcome]:
    """Configs added, removed, or that started or stopped composing."""
    return [o for o in outcomes if o.counted and o.status != "changed"]

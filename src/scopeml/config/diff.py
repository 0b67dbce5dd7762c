"""Compose the configs of two conf/ trees and compare them, composing only what an edit can change.

Every config (see targets.py) gets an Outcome: its key-level changes, or how its composition
started or stopped failing. Composing all of them twice costs 0.2-0.4 CPU-s each (measured), so three steps keep
the work proportional to the edit instead:

1. Not reached. The files a config may read are known statically (tree_facts.reach); a config
   none of whose files differ between the trees is unchanged.
2. Inferred. A config that is `config` plus overrides changes like `config` outside the
   overridden regions; inside them, and where an interpolation reads them, its changes are
   worked out from the files the overrides load (inference.py). Only `config` is composed.
3. Composed. Everything else is composed on both sides, with one Hydra initialization per side.

`compose_all=True` skips steps 1 and 2 (the reference the shortcuts are tested against).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scopeml.config.composer import Composed, Composer, load_standalone_plain
from scopeml.config.inference import Base, Inferred, infer
from scopeml.config.snapshot import KeyChange, flatten, followers, key_changes, snapshot
from scopeml.config.targets import Target, discover, wanted
from scopeml.config.tree_facts import TreeFacts

NOT_REACHED, INFERRED, COMPOSED = "not reached", "inferred", "composed"


@dataclass
class Side:
    """One of the two trees being compared."""

    name: str  # "main", "HEAD", "working tree"
    conf: Path | None  # None when that revision has no config folder
    facts: TreeFacts = field(init=False)
    targets: dict[str, Target] = field(init=False)

    def __post_init__(self) -> None:
        present = self.conf is not None and self.conf.is_dir()
        self.facts = TreeFacts(self.conf if present else None)
        self.targets = {t.label: t for t in discover(self.conf)} if present else {}


@dataclass
class Outcome:
    """What happened to one config between the two trees."""

    target: Target
    # "same" | "changed" | "added" | "removed" | "now fails" | "now composes" | "fails" | "fails differently"
    status: str
    how: str = COMPOSED  # NOT_REACHED, INFERRED (with `via`) or COMPOSED
    changes: list[KeyChange] = field(default_factory=list)
    error: str = ""  # the composition error(s) for the failing statuses
    vs_config: list[KeyChange] = field(default_factory=list)  # for a config on one side only: what it sets
    holds: Callable[[str], bool] = lambda key: False  # whether the config has a key (on either side)
    note: str = ""  # why it was composed rather than inferred (-v)
    follows: dict[str, str] = field(default_factory=dict)  # changed key -> the changed key it interpolates

    @property
    def counted(self) -> bool:
        """Whether it is a change to report (a config failing alike on both sides is not)."""
        return self.status not in ("same", "fails")


@dataclass
class Comparison:
    """The composed config of one config name + overrides at both sides (lifecycle stages use it)."""

    changes: list[KeyChange]
    old_error: str = ""
    new_error: str = ""
    how: str = COMPOSED
    follows: dict[str, str] = field(default_factory=dict)  # changed key -> the changed key it interpolates

    @property
    def changed(self) -> bool:
        return bool(self.changes) or self.old_error != self.new_error


class DiffEngine:
    def __init__(
        self,
        old: Side,
        new: Side,
        compose_all: bool = False,
        verbose: bool = False,
        old_compositions: dict[tuple, Composed] | None = None,
    ):
        """old_compositions: `compositions(0)` of an engine whose old side was the same tree (not copied
        from a new side: that tree is this engine's to compose)."""
        self.sides = (old, new)
        self.compose_all, self.verbose = compose_all, verbose
        self.edited = edited_files(old.facts, new.facts)
        self._composed: dict[tuple, Composed] = {k: v for k, v in (old_compositions or {}).items() if k[0] == 0}
        self._flat: dict[int, dict] = {}
        self.bases: dict[str, Base] = {}  # label -> a config composed on both sides, to infer others from
        self.composes = 0

    # ------------------------------------------------------------------ the configs of the tree
    def outcomes(self, only: list[str] | None = None) -> list[Outcome]:
        old, new = self.sides
        every = {**old.targets, **new.targets}
        labels = [lb for lb in sorted(every, key=lambda lb: every[lb].order) if wanted(lb, only)]
        both = [lb for lb in labels if lb in old.targets and lb in new.targets]
        reached = {lb for lb in both if self.compose_all or self.reaches(every[lb])}

        if "config" in both and reached:
            self.compose_config(every["config"], changed="config" in reached)
        inferred: dict[str, Inferred] = {}
        notes: dict[str, str] = {}
        if not self.compose_all:
            for lb in sorted(reached - {"config"}, key=lambda lb: every[lb].order):
                result, notes[lb] = self.try_infer(every[lb])
                if result is not None:
                    inferred[lb] = result
        composed = [every[lb] for lb in both if lb in reached and lb not in inferred]
        self.compose_both(composed)
        for t in composed:  # a composed option is a closer base for lifecycle configs picking it too
            if t.kind == "option" and t.config_name == "config" and t.label != "config":
                self.bases[t.label] = self.base_of(t)
        self.compose_one_sided([every[lb] for lb in labels if lb not in both])

        outcomes = []
        for lb in labels:
            t = every[lb]
            if lb not in both:
                outcomes.append(self.one_sided(t, lb in new.targets))
            elif lb not in reached:
                outcomes.append(self.not_reached(t))
            elif lb in inferred:
                outcomes.append(self.from_inferred(t, inferred[lb]))
            else:
                outcomes.append(self.compared(t, notes.get(lb, "")))
        if self.verbose:
            for o in outcomes:
                print(f"  {o.how:11} {o.target.label}{f'  ({o.note})' if o.note else ''}", file=sys.stderr)
        return outcomes

    def compose_config(self, config: Target, changed: bool) -> None:
        """`config` is the base most configs are inferred from. Not reached, it is the same on both sides:
        composed once, it still says what the others hold and where their options replace its own."""
        if changed:
            self.compose_both([config])
        else:
            self._composed[self.key(0, config)] = self.get(1, config)
        self.bases["config"] = self.base_of(config)

    def reaches(self, t: Target) -> bool:
        """Whether an edited file is among those the target may read, on either side."""
        if t.kind == "standalone":
            return any(t.path is not None and f"{t.group}/{t.path.stem}" == path for path in self.edited)
        reach = [side.facts.reach(t.config_name, t.overrides) for side in self.sides]
        return any(r is None or r & self.edited for r in reach)

    def try_infer(self, t: Target) -> tuple[Inferred | None, str]:
        if t.kind == "standalone":
            return None, ""
        return self.infer_from_bases(t.config_name, t.overrides)

    def infer_from_bases(self, config_name: str, overrides: list[str]) -> tuple[Inferred | None, str]:
        """Infer from the composed base sharing most overrides with the target; (None, why) if none fits."""
        facts = (self.sides[0].facts, self.sides[1].facts)
        why = "no base composed"
        candidates = [(label, b) for label, b in self.bases.items() if all(o in overrides for o in b.overrides)]
        for label, base in sorted(candidates, key=lambda item: -len(item[1].overrides)):
            reach = self.reach_of(config_name, overrides, "config", base.overrides)
            result, why = infer(config_name, overrides, base, label, facts, self.edited, reach)
            if result is not None:
                return result, ""
        return None, why

    def reach_of(self, *names_and_overrides) -> set[str] | None:
        """The files any of (config name, overrides, ...) may read on either side; None when unknown."""
        files: set[str] = set()
        pairs = zip(names_and_overrides[::2], names_and_overrides[1::2])
        for config_name, overrides in pairs:
            for side in self.sides:
                reach = side.facts.reach(config_name, list(overrides))
                if reach is None:
                    return None
                files |= reach
        return files

    # ------------------------------------------------------------------ outcomes
    def compared(self, t: Target, note: str) -> Outcome:
        a, b = self.get(0, t), self.get(1, t)
        holds = self.holder(a, b)
        if a.error or b.error:
            return Outcome(
                t,
                failure_status(a.error, b.error),
                COMPOSED,
                error=failure_text(self, a.error, b.error),
                holds=holds,
                note=note,
            )
        changes = key_changes(self.flat(a), self.flat(b))
        follows = followers(changes, written(a, b))
        return Outcome(t, "changed" if changes else "same", COMPOSED, changes, holds=holds, note=note, follows=follows)

    def from_inferred(self, t: Target, inferred: Inferred) -> Outcome:
        base = self.bases[inferred.base_label]
        base_holds = self.holder(base.old, base.new)
        return Outcome(
            t,
            "changed" if inferred.changes else "same",
            INFERRED,
            inferred.changes,
            holds=lambda key: inferred.contains(key, base_holds(key)),
            note=f"from {inferred.base_label}",
            follows=followers(inferred.changes, inferred.raw),
        )

    def not_reached(self, t: Target) -> Outcome:
        """Unchanged by construction; which keys it holds is inferred or read from its files, for the counts."""
        if t.kind != "standalone" and "config" in self.bases:
            inferred, _ = self.infer_from_bases(t.config_name, t.overrides)
            if inferred is not None:
                base_holds = self.holder(self.bases[inferred.base_label].old, self.bases[inferred.base_label].new)
                return Outcome(t, "same", NOT_REACHED, holds=lambda key: inferred.contains(key, base_holds(key)))
        facts = self.sides[1].facts
        reach = facts.reach(t.config_name, t.overrides) or set()
        placed = set().union(*(facts.files[p].placed() for p in reach if p in facts.files and facts.files[p].parsed))
        return Outcome(t, "same", NOT_REACHED, holds=lambda key: key in placed)

    def one_sided(self, t: Target, in_new: bool) -> Outcome:
        side = 1 if in_new else 0
        composed = self.get(side, t)
        status = "added" if in_new else "removed"
        if composed.error:
            return Outcome(t, status, error=composed.error)
        config = self._composed.get((side, "config", ()))
        comparable = config and not config.error and t.kind != "standalone"
        vs = key_changes(self.flat(config), self.flat(composed)) if comparable else []
        return Outcome(t, status, vs_config=vs)

    # ------------------------------------------------------------------ any config name + overrides
    def compare(self, config_name: str, overrides: tuple[list[str], list[str]]) -> Comparison:
        """The change of one composition (each side with its own overrides); used for lifecycle stages."""
        if overrides[0] == overrides[1] and not self.compose_all:
            probe = Target("probe", "option", config_name=config_name, overrides=list(overrides[0]))
            if not self.reaches(probe):
                return Comparison([], how=NOT_REACHED)
            if config_name == "config":
                inferred, _ = self.infer_from_bases(config_name, list(overrides[0]))
                if inferred is not None:  # the stages key on the config without its hydra node
                    changes = [c for c in inferred.changes if not c.key.startswith("hydra.")]
                    return Comparison(changes, how=INFERRED, follows=followers(changes, inferred.raw))
        pair = [Target("probe", "option", config_name=config_name, overrides=list(o)) for o in overrides]
        for side, t in enumerate(pair):
            self.compose_side(side, [t])
        a, b = self.get(0, pair[0]), self.get(1, pair[1])
        if a.error or b.error:
            return Comparison([], a.error or "", b.error or "")
        changes = key_changes(self.flat(a, hydra=False), self.flat(b, hydra=False))
        return Comparison(changes, follows=followers(changes, written(a, b)))

    # ------------------------------------------------------------------ composing
    def compose_both(self, targets: list[Target]) -> None:
        for side in (0, 1):
            self.compose_side(side, targets)

    def compose_one_sided(self, targets: list[Target]) -> None:
        """A config on one side only is composed there, with that side's `config` to say what it sets."""
        for side in (0, 1):
            mine = [t for t in targets if t.label in self.sides[side].targets]
            if mine:
                config = self.sides[side].targets.get("config")
                self.compose_side(side, mine + ([config] if config else []))

    def compose_side(self, side: int, targets: list[Target]) -> None:
        todo = [t for t in targets if self.key(side, t) not in self._composed]
        conf = self.sides[side].conf
        if not todo:
            return
        if conf is None or not conf.is_dir():
            for t in todo:
                self._composed[self.key(side, t)] = Composed(error=f"no config folder in {self.sides[side].name}")
            return
        hydra_targets = [t for t in todo if t.kind != "standalone"]
        for t in todo:
            if t.kind == "standalone":  # the file of this side's tree, not the other's
                own = self.sides[side].targets.get(t.label)
                self._composed[self.key(side, t)] = load_standalone_plain(own.path) if own else Composed(error="absent")
        if hydra_targets:
            with Composer(conf) as composer:
                for t in hydra_targets:
                    self._composed[self.key(side, t)] = composer.compose(t.config_name, t.overrides)
                    self.composes += 1

    def compositions(self, side: int) -> dict[tuple, Composed]:
        """What this engine composed on one side (0 old, 1 new), keyed as it looks them up."""
        return {k: v for k, v in self._composed.items() if k[0] == side}

    def get(self, side: int, t: Target) -> Composed:
        if self.key(side, t) not in self._composed:
            self.compose_side(side, [t])
        return self._composed[self.key(side, t)]

    def base_of(self, t: Target) -> Base:
        a, b = self.get(0, t), self.get(1, t)
        changes = [] if a.error or b.error else key_changes(self.flat(a), self.flat(b))
        return Base(list(t.overrides), a, b, changes)

    @staticmethod
    def key(side: int, t: Target) -> tuple:
        if t.kind == "standalone":
            return (side, "standalone", t.label)
        return (side, t.config_name, tuple(t.overrides))

    def flat(self, composed: Composed, hydra: bool = True) -> dict:
        if not hydra:
            return snapshot(Composed(main=composed.main))
        if id(composed) not in self._flat:
            self._flat[id(composed)] = snapshot(composed)
        return self._flat[id(composed)]

    def holder(self, a: Composed, b: Composed) -> Callable[[str], bool]:
        keys = (set(self.flat(a)) if not a.error else set()) | (set(self.flat(b)) if not b.error else set())
        return keys.__contains__


def written(a: Composed, b: Composed) -> tuple[dict, dict]:
    """Two composed configs flattened as written (interpolations unresolved), without their hydra node."""
    return flatten(a.raw or {}), flatten(b.raw or {})


def edited_files(old: TreeFacts, new: TreeFacts) -> set[str]:
    """Config paths of the YAML files that differ between the trees, added and removed ones included (the
    schema's nodes are the same on both sides: both are composed with this process's schema)."""
    paths = old.files.keys() | new.files.keys()
    stored = {p for facts in (old, new) for p, f in facts.files.items() if f.stored}
    return {p for p in paths - stored if _digest(old, p) != _digest(new, p)}


def _digest(facts: TreeFacts, path: str) -> str | None:
    return facts.files[path].digest if path in facts.files else None


def failure_status(old_error: str | None, new_error: str | None) -> str:
    if old_error and new_error:
        return "fails" if old_error == new_error else "fails differently"
    return "now fails" if new_error else "now composes"


def failure_text(engine: DiffEngine, old_error: str | None, new_error: str | None) -> str:
    old_name, new_name = (s.name for s in engine.sides)
    if old_error and new_error:
        return old_error if old_error == new_error else f"in {old_name}: {old_error} | in {new_name}: {new_error}"
    if new_error:
        return f"composes in {old_name}, not in {new_name}: {new_error}"
    return f"failed in {old_name}: {old_error}"

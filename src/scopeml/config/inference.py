"""Infer a config's changes from a composed base config instead of composing it (the diff's shortcut).

Most configs are a base plus a few overrides: trainer=gpu is `config` plus one group choice,
experiment=bcresnet is `config` plus `model=bcresnet` and `hparams.lr=0.005` (an experiment's
defaults pick groups, its body sets keys, and nothing after it in the defaults list sets them
again), data_report is `config` plus hydra settings, a lifecycle stage's config is `config` plus
its overrides. Each override owns a *region* of the config: the group's package (`trainer`),
the key it sets, or a hydra node. Outside its regions the config is its base; so when the
regions are isolated from the edit, its changes are the base's changes outside the regions
plus the regions' own changes:

* a value region holds a literal, the same on both sides: no change;
* a group region holds its option's files (with their own defaults, all inside the package).
  Untouched by the edit, it does not change. Touched, it is recomposed from just those files
  (OmegaConf, in Hydra's defaults order), provided no other file puts keys there and nothing
  in or out of it is an interpolation across its border;
* a hydra region (hydra/help=..., hydra/sweeper=...) must not be touched at all.

The base's choice for a replaced group must come from the group's own defaults on both sides,
and no interpolation may connect a region with a key the edit changes. Whenever one of these
cannot be shown, `infer` returns None with the reason, and the config is composed. A config
that fails alike on both sides is not detected here (`scopeml-config check` reports those).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from scopeml.config.composer import Composed
from scopeml.config.snapshot import KeyChange, flatten, key_changes
from scopeml.config.tree_facts import UNKNOWN, TreeFacts, reference_target

GROUP, VALUE, HYDRA = "group", "value", "hydra"


@dataclass
class Region:
    path: str  # the dotted key prefix an override owns: "trainer", "data.augment", "hparams.batch_size"
    kind: str  # GROUP, VALUE or HYDRA
    keys: set[str] = field(default_factory=set)  # key paths the target has inside it (GROUP)
    files: list[tuple[str, str]] = field(default_factory=list)  # GROUP: (config path, package) of its option
    touched: bool = False  # GROUP: an edited file puts keys here, so it is recomposed
    changes: list[KeyChange] = field(default_factory=list)  # GROUP: its own changes, once recomposed

    def holds(self, key: str) -> bool:
        return key == self.path or key.startswith(self.path + ".")

    def touched_by(self, key: str) -> bool:
        """Whether a key inside, at or above the region reads or writes it."""
        return self.holds(key) or self.path.startswith(key + ".")


@dataclass
class Base:
    """A config composed on both sides, and its changes."""

    overrides: list[str]
    old: Composed
    new: Composed
    changes: list[KeyChange]

    def __post_init__(self) -> None:
        self.raw = (flatten(self.old.raw or {}), flatten(self.new.raw or {}))
        changed_raw = {c.key for c in key_changes(*self.raw)}
        # keys the edit changes, by resolved value or as written (an interpolation retargeted)
        self.moved = {c.key for c in self.changes if not c.key.startswith("hydra.")} | changed_raw


@dataclass
class Inferred:
    base_label: str
    changes: list[KeyChange]
    regions: list[Region]

    def contains(self, key: str, base_has: bool) -> bool:
        inside = [r for r in self.regions if r.holds(key)]
        if not inside:
            return base_has
        return any(
            r.kind == VALUE or (r.kind == GROUP and key in r.keys) or (r.kind == HYDRA and base_has) for r in inside
        )


class NotInferable(Exception):
    """Why a config has to be composed."""


def infer(
    config_name: str,
    overrides: list[str],
    base: Base,
    base_label: str,
    facts: tuple[TreeFacts, TreeFacts],
    edited: set[str],
    reach: set[str] | None,
) -> tuple[Inferred | None, str]:
    """The target's changes from the base's, or (None, why not).

    edited: the files that differ between the trees; reach: the files the target or the base may read
    on either side (None: unknown).
    """
    try:
        if base.old.error or base.new.error:
            raise NotInferable(f"{base_label} does not compose on both sides")
        if reach is None:
            raise NotInferable("the files it reads cannot be told")
        regions = build_regions(plan(config_name, overrides, base, facts, edited), base, facts)
        check_edits(regions, facts, edited & reach)
        for region in regions:
            if region.touched:
                recompose(region, regions, facts, reach)
        check_interpolations(regions, base, facts)
    except NotInferable as exc:
        return None, str(exc)
    except Exception as exc:  # a file the shortcut cannot read: composing it is always right
        return None, f"inference failed ({type(exc).__name__}: {exc})"
    kept = [c for c in base.changes if not any(r.holds(c.key) for r in regions)]
    values = [r for r in regions if r.kind == VALUE]
    own = [c for r in regions for c in r.changes if not any(v.holds(c.key) for v in values)]
    return Inferred(base_label, sorted(kept + own, key=lambda c: c.key), regions), ""


# --------------------------------------------------------------------------- what the target adds to its base
def plan(
    config_name: str, overrides: list[str], base: Base, facts: tuple[TreeFacts, TreeFacts], edited: set[str]
) -> list[tuple[str, str, str]]:
    """(kind, group or key, option) for everything the target adds to the base."""
    extra = list(overrides)
    for item in base.overrides:
        if item not in extra:
            raise NotInferable("the base has an override the target lacks")
        extra.remove(item)
    items = wrapper_items(config_name, facts, edited) if config_name != "config" else []
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or key.startswith(("+", "~")) or _is_sweep(value):
            raise NotInferable(f"override {item!r} is not a plain choice or value")
        if not all(f.is_group(key) for f in facts) and any(f.is_group(key) for f in facts):
            raise NotInferable(f"{key} is a group on one side only")
        if facts[1].is_group(key):
            file = facts[1].files.get(f"{key}/{value}")
            if file is not None and file.header == "_global_":
                items += global_items(key, value, base, facts, edited)
            else:
                items.append((HYDRA if key.startswith("hydra/") else GROUP, key, value))
        elif "${" in value or value.lstrip().startswith("{"):
            raise NotInferable(f"override {item!r} is not a literal")
        else:
            items.append((VALUE, key, ""))
    return items


def wrapper_items(config_name: str, facts: tuple[TreeFacts, TreeFacts], edited: set[str]) -> list[tuple[str, str, str]]:
    """A primary config that is `config` plus hydra settings: defaults [config, override hydra/...: x, _self_]."""
    file = _unedited(facts, config_name, edited)
    entries = list(file.defaults)
    if entries and entries[-1] == "_self_":
        entries.pop()  # _self_ last (or absent: Hydra appends it): its keys override config's
    if not entries or entries[0] != "config" or set(file.body) - {"hydra"}:
        raise NotInferable(f"{config_name} is not `config` plus hydra settings")
    items = [_override_item(entry, hydra_only=True) for entry in entries[1:]]
    return items + [(VALUE, key, "") for key in (flatten(file.body) if file.body else {})]


def global_items(
    group: str, option: str, base: Base, facts: tuple[TreeFacts, TreeFacts], edited: set[str]
) -> list[tuple[str, str, str]]:
    """An option placed at the root (an experiment): its defaults pick groups, its body sets keys."""
    file = _unedited(facts, f"{group}/{option}", edited)
    primary = facts[1].files.get("config")
    if primary is None:
        raise NotInferable("no config.yaml")
    groups = [_entry_group(e) for e in primary.defaults if not _is_override(e)]
    later = groups[groups.index(group) + 1 :] if group in groups else []
    for name in later:  # what comes after the option in the defaults list could set its keys again
        if name is None or base.old.choices.get(name) is not None or base.new.choices.get(name) is not None:
            raise NotInferable(f"{group}={option} is followed by {name or 'config itself'} in the defaults list")
    items = [_override_item(e) for e in file.defaults if e != "_self_"]
    for key, value in (flatten(file.body) if file.body else {}).items():
        if key.startswith("hydra."):
            items.append((VALUE, key, ""))
        elif isinstance(value, dict) or _has_interpolation(value):
            raise NotInferable(f"{group}={option} sets {key} to something other than a literal")
        else:
            items.append((VALUE, key, ""))
    return items


def _override_item(entry: Any, hydra_only: bool = False) -> tuple[str, str, str]:
    if isinstance(entry, dict) and len(entry) == 1:
        ((key, option),) = entry.items()
        words = str(key).split()
        if len(words) == 2 and words[0] == "override" and isinstance(option, str) and "@" not in words[1]:
            group = words[1].lstrip("/")
            if group.startswith("hydra/"):
                return HYDRA, group, option
            if not hydra_only and words[1].startswith("/"):
                return GROUP, group, option
    raise NotInferable(f"defaults entry {entry!r} is not a plain override")


def _is_override(entry: Any) -> bool:
    return isinstance(entry, dict) and len(entry) == 1 and str(next(iter(entry))).split()[0] == "override"


def _entry_group(entry: Any) -> str | None:
    if isinstance(entry, dict) and len(entry) == 1:
        return str(next(iter(entry))).split()[-1].partition("@")[0].lstrip("/")
    return None if entry == "_self_" else str(entry)


def _unedited(facts: tuple[TreeFacts, TreeFacts], path: str, edited: set[str]):
    file = facts[1].files.get(path)
    if path in edited or file is None or not file.parsed:
        raise NotInferable(f"{path}.yaml is edited or unreadable")
    return file


def _is_sweep(value: str) -> bool:
    """`a,b` (several values, a sweep) rather than one value such as `[a,b]` or `'a,b'`."""
    outside = re.sub(r"\[[^\]]*\]|\{[^}]*\}|'[^']*'|\"[^\"]*\"", "", value)
    return "," in outside or any(outside.startswith(f"{fn}(") for fn in ("range", "choice", "interval", "glob"))


def _has_interpolation(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    return isinstance(value, list) and any(_has_interpolation(v) for v in value)


# --------------------------------------------------------------------------- regions
def build_regions(items: list[tuple[str, str, str]], base: Base, facts: tuple[TreeFacts, TreeFacts]) -> list[Region]:
    picks = {name: option for kind, name, option in items if kind == GROUP}
    regions: list[Region] = []
    for kind, name, option in items:
        if kind == GROUP:
            if any(name.startswith(parent + "/") for parent in picks):
                continue  # picked inside a parent group that is replaced as a whole
            region = group_region(name, option, picks, base, facts)
        elif kind == HYDRA:
            region = Region(name.replace("/", "."), HYDRA)
        else:
            region = Region(name, VALUE)
        if region is not None:
            regions.append(region)
    for r in regions:  # a value set on the command line needs its key (Hydra refuses new keys there)
        if (
            r.kind == VALUE
            and not r.path.startswith("hydra.")
            and not all(_is_leaf(raw, r.path) for raw in base.raw)
            and not any(g.kind == GROUP and r.path in g.keys for g in regions)
        ):
            raise NotInferable(f"{r.path} is set, but the base does not hold it as a value")
    return regions


def group_region(
    group: str, option: str, picks: dict[str, str], base: Base, facts: tuple[TreeFacts, TreeFacts]
) -> Region | None:
    if any(
        o.partition("=")[0].startswith(group + "/") or group.startswith(o.partition("=")[0] + "/")
        for o in base.overrides
    ):
        raise NotInferable(f"the base overrides a group nested with {group}")
    before = (base.old.choices.get(group), base.new.choices.get(group))
    if before[0] != before[1]:
        raise NotInferable(f"the base picks {group} differently on the two sides")
    nested = {k: v for k, v in picks.items() if k.startswith(group + "/")}
    if before[0] == option and not nested:
        return None  # the base's own choice: nothing replaced
    files = [confined_subtree(f, group, option, picks) for f in facts]
    if files[0] is None or files[0] != files[1]:
        raise NotInferable(f"{group}={option} is not confined to its package on both sides")
    for side, composed in zip(facts, (base.old, base.new)):
        if before[0] is None:
            continue
        replaced = confined_subtree(side, group, before[0], {})
        if replaced is None:
            raise NotInferable(f"the base's {group}={before[0]} is not confined to its package")
        loaded = {path for path, _ in replaced}
        for name, choice in composed.choices.items():
            if name.startswith(group + "/") and choice is not None and f"{name}/{choice}" not in loaded:
                raise NotInferable(f"the base's {name} is overridden, not its {group} option's default")
    region = Region(group.replace("/", "."), GROUP, {group.replace("/", ".")}, files[1])
    for path, package in region.files:
        region.keys |= facts[1].files[path].placed(package)
        parts = package.split(".")
        region.keys |= {".".join(parts[:i]) for i in range(len(region.path.split(".")), len(parts) + 1)}
    return region


def confined_subtree(facts: TreeFacts, group: str, option: str, picks: dict[str, str]) -> list[tuple[str, str]] | None:
    """(file, package) of an option and everything its defaults list loads, in Hydra's merge order, if all of it
    stays inside the group's package: only `_self_`, options of the same group (`- name`, `- name@sub.key`)
    and of groups nested in it (`- child: option`, which a pick of GROUP/child replaces)."""
    out: list[tuple[str, str]] = []

    def visit(path: str, own_group: str, package: str, depth: int) -> bool:
        file = facts.files.get(path)
        if depth > 20 or file is None or not file.parsed or file.header not in (None, "_group_"):
            return False
        entries = list(file.defaults)
        if "_self_" not in entries:
            entries.append("_self_")  # Hydra merges a config's own keys after its defaults unless told otherwise
        for entry in entries:
            if entry == "_self_":
                out.append((path, package))
            elif isinstance(entry, str) and "/" not in entry and "${" not in entry:
                name, _, sub = entry.partition("@")
                if not visit(f"{own_group}/{name}", own_group, f"{package}.{sub}" if sub else package, depth + 1):
                    return False
            elif isinstance(entry, dict) and len(entry) == 1:
                ((child, choice),) = entry.items()
                if not str(child).isidentifier() or not isinstance(choice, str) or "${" in choice:
                    return False
                child_group, child_package = f"{own_group}/{child}", f"{package}.{child}"
                if child_package == child_group.replace("/", "."):  # a pick on the command line reaches this one only
                    choice = picks.get(child_group, choice)
                if not visit(f"{child_group}/{choice}", child_group, child_package, depth + 1):
                    return False
            else:
                return False
        return True

    return out if visit(f"{group}/{option}", group, group.replace("/", "."), 0) else None


# --------------------------------------------------------------------------- isolation
def check_edits(regions: list[Region], facts: tuple[TreeFacts, TreeFacts], edited: set[str]) -> None:
    """Mark the group regions an edited file puts keys in; refuse edits reaching a hydra region or a value's parent."""
    for path in sorted(edited):
        for side in facts:
            file = side.files.get(path)
            if file is None:
                continue
            packages = side.packages(path)
            if not file.parsed or packages is None:
                raise NotInferable(f"edited {path}.yaml could put keys anywhere")
            for key, is_dict in (node for package in packages for node in _placed_nodes(file.body, package)):
                for r in regions:
                    inside, replaces_parent = r.holds(key), r.path.startswith(key + ".") and not is_dict
                    if r.kind == GROUP and (inside or replaces_parent):
                        r.touched = True
                    elif (r.kind == HYDRA and inside) or replaces_parent:
                        raise NotInferable(f"edited {path}.yaml sets {key}, inside {r.path}")


def recompose(region: Region, regions: list[Region], facts: tuple[TreeFacts, TreeFacts], reach: set[str]) -> None:
    """A touched group region's own changes, merged from its option's files alone on each side."""
    from omegaconf import OmegaConf

    own = {path for path, _ in region.files}
    group = region.files[0][0].rpartition("/")[0] if region.files else ""
    for side in facts:
        for path in own:
            if "${" in str(side.files[path].body):
                raise NotInferable(f"{path}.yaml has interpolations: {region.path} cannot be merged alone")
        for path in sorted(reach - own):  # any other loaded file putting keys here blocks the shortcut
            file = side.files.get(path)
            if file is None or path.startswith("hydra/") or _same_group(file.group, group):
                continue  # another option of the group is not loaded: the pick replaces it
            packages = side.packages(path)
            if not file.parsed or packages is None:
                raise NotInferable(f"{path}.yaml could put keys in {region.path}")
            for key, is_dict in (node for package in packages for node in _placed_nodes(file.body, package)):
                covered = any(v.kind == VALUE and v.holds(key) for v in regions)
                if not is_dict and region.touched_by(key) and not covered:
                    raise NotInferable(f"{path}.yaml also puts {key} in {region.path}")
    merged = []
    for side in facts:
        cfg = OmegaConf.create()
        for path, package in region.files:
            loaded = OmegaConf.to_container(OmegaConf.load(side.conf / f"{path}.yaml"), resolve=False)
            loaded.pop("defaults", None)
            for part in reversed(package.split(".") if package else []):
                loaded = {part: loaded}
            cfg = OmegaConf.merge(cfg, loaded)
        node = OmegaConf.select(cfg, region.path)
        merged.append(flatten(OmegaConf.to_container(node) if node is not None else {}, region.path))
    region.changes = key_changes(*merged)
    region.keys |= set(merged[0]) | set(merged[1])


def _same_group(group: str, region_group: str) -> bool:
    """Options of the region's group or of groups nested in it: loaded only when picked, and the pick replaces them."""
    return bool(region_group) and (group == region_group or group.startswith(region_group + "/"))


def check_interpolations(regions: list[Region], base: Base, facts: tuple[TreeFacts, TreeFacts]) -> None:
    """Refuse interpolations that carry the edit into a region, or a region's content into a changed key."""
    if not regions:
        return
    moving = [r for r in regions if r.changes]
    for raw in base.raw:
        graph = {key: refs for key, value in raw.items() if (refs := _refs_of(value))}
        for key, refs in graph.items():
            reached = _closure(refs, raw, graph)
            if UNKNOWN in reached:
                raise NotInferable(f"{key} has an interpolation that cannot be followed")
            crosses = any(r.holds(key) or any(r.touched_by(k) for k in reached) for r in regions)
            if crosses and (key in base.moved or reached & base.moved):
                raise NotInferable(f"{key} connects an override's region with a changed key")
            if any(not r.holds(key) and any(r.touched_by(k) for k in reached) for r in moving):
                raise NotInferable(f"{key} reads a region whose content changes")
            for target in refs:
                if any(r.holds(target) and r.kind == GROUP and target not in r.keys for r in regions):
                    raise NotInferable(f"{key} reads {target}, which the target may not have")
    for r in regions:  # what the target's own option files read
        for path, _ in r.files:
            for _, target in facts[1].files[path].references():
                check_reference(path, target, r, regions, base)


def check_reference(path: str, target: str, region: Region, regions: list[Region], base: Base) -> None:
    if target == UNKNOWN:
        raise NotInferable(f"{path}.yaml has an interpolation that cannot be followed")
    if region.holds(target):
        if target not in region.keys:
            raise NotInferable(f"{path}.yaml reads {target}, which is not there")
        return
    others = [other for other in regions if other.touched_by(target)]
    if others:  # another region's content is fixed (or recomposed): reading it is fine while it does not move
        if all(o.kind == VALUE or (o.kind == GROUP and not o.changes and target in o.keys) for o in others):
            return
        raise NotInferable(f"{path}.yaml reads {target}, inside another override's region")
    for raw in base.raw:
        graph = {key: refs for key, value in raw.items() if (refs := _refs_of(value))}
        reached = _closure([target], raw, graph)
        if not reached or reached & base.moved or UNKNOWN in reached:
            raise NotInferable(f"{path}.yaml reads {target}, which the edit changes or the base lacks")


def _placed_nodes(node: Any, prefix: str) -> list[tuple[str, bool]]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.append((path, isinstance(v, dict)))
            out += _placed_nodes(v, path)
    return out


def _refs_of(value: Any) -> list[str]:
    if isinstance(value, str):
        return reference_target(value)
    if isinstance(value, list):
        return [ref for item in value for ref in _refs_of(item)]
    return []


def _leaves_under(raw: dict[str, Any], target: str) -> set[str]:
    return {k for k in raw if k == target or k.startswith(target + ".") or target.startswith(k + ".")}


def _closure(refs: list[str], raw: dict[str, Any], graph: dict[str, list[str]]) -> set[str]:
    """Every key the references read, following interpolations transitively (UNKNOWN included if met)."""
    seen: set[str] = set()
    todo = list(refs)
    while todo:
        ref = todo.pop()
        if ref == UNKNOWN:
            seen.add(UNKNOWN)
            continue
        for key in _leaves_under(raw, ref) - seen:
            seen.add(key)
            todo += graph.get(key, [])
    return seen


def _is_leaf(raw: dict[str, Any], key: str) -> bool:
    return key in raw and not isinstance(raw[key], dict)

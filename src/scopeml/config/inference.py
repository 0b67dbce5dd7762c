"""Infer a config's changes from a composed base config instead of composing it (the diff's shortcut).

Most configs are a base plus a few overrides: trainer=gpu is `config` plus one group choice,
experiment=bcresnet is `config` plus `model=bcresnet` and `hparams.lr=0.005` (an experiment's
defaults pick groups, its body sets keys, and nothing after it in the defaults list sets them
again), data_report is `config` plus hydra settings, a lifecycle stage's config is `config` plus
its overrides. Each override owns a *region* of the config: the group's package (`trainer`),
the key it sets, or a hydra node. Outside its regions the config is its base, as written; so
the target's config *as written* (interpolations unresolved) is known on both sides:

* a value region holds a literal, the same on both sides;
* a group region holds its option's files (with their own defaults, all inside the package),
  merged alone (OmegaConf, in Hydra's defaults order) on each side, over the base's keys there
  that the base's own option did not set (the schema's defaults, config.yaml's own keys).
  When the edit touches it, or an interpolation reads or sits in it, no file merged after the
  option may put keys there;
* a hydra region (hydra/help=..., hydra/sweeper=...) must not be touched at all.

Its literal keys change as written; its interpolations that read a region (or sit in one) are
resolved on each side from that written config, so `${hparams.lr}` follows the target's own
learning rate, fixed by a value region or recomposed in a group region; the others change as
in the base. The base's choice for a replaced group must come from the group's own defaults on
both sides. Whenever one of these cannot be shown, `infer` returns None with the reason, and
the config is composed. A config that fails alike on both sides is not detected here
(`scopeml-config check` reports those).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from scopeml.config.composer import Composed
from scopeml.config.snapshot import (
    ABSENT,
    KeyChange,
    flatten,
    key_changes,
    pure_reference,
    references,
    same,
    written_key,
)
from scopeml.config.tree_facts import UNKNOWN, TreeFacts, entry_files

GROUP, VALUE, HYDRA = "group", "value", "hydra"
FORCED = "forced"  # a value set with ++key=value: the key may be new
VALUE_MARK = "\x00scopeml-diff-value:"  # stands for a value region's literal when it cannot be read


@dataclass
class Region:
    path: str  # the dotted key prefix an override owns: "trainer", "data.augment", "hparams.batch_size"
    kind: str  # GROUP, VALUE or HYDRA
    keys: set[str] = field(default_factory=set)  # key paths the target has inside it (GROUP)
    files: list[tuple[str, str]] = field(default_factory=list)  # GROUP: (config path, package) of its option
    touched: bool = False  # GROUP: an edited file puts keys here
    # GROUP: the key paths the base's own option sets (per side), and its files
    replaced: tuple[set[str], set[str]] = field(default_factory=lambda: (set(), set()))
    replaced_files: set[str] = field(default_factory=set)
    # GROUP: its option's files merged alone, as written, per side (flat)
    content: tuple[dict, dict] = field(default_factory=lambda: ({}, {}))
    value: Any = None  # VALUE: the literal it sets (the same on both sides)
    forced: bool = False  # VALUE: set with ++ (added when the base lacks it)

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
        self.raw = (flatten(self.old.raw or {}), flatten(self.new.raw or {}))  # as written, without hydra


@dataclass
class Inferred:
    base_label: str
    changes: list[KeyChange]
    regions: list[Region]
    raw: tuple[dict, dict] = field(default_factory=lambda: ({}, {}))  # the target as written on each side

    def contains(self, key: str, base_has: bool) -> bool:
        """Whether the target holds a (resolved) key on either side."""
        inside = [r for r in self.regions if r.holds(key)]
        if key.startswith("hydra."):
            return base_has if not inside else any(r.kind == VALUE or (r.kind == HYDRA and base_has) for r in inside)
        leaf = written_key(key, self.raw)
        if leaf is None:
            return False
        values = [raw[leaf] for raw in self.raw if leaf in raw]
        if leaf != key:  # below a key written as an interpolation: it holds what the interpolation reads
            return any(_has_interpolation(v) for v in values)
        targets = [pure_reference(v) for v in values]  # ${data.preprocess}: a mapping, its keys are held instead
        return not all(t is not None and any(k.startswith(t + ".") for raw in self.raw for k in raw) for t in targets)


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
            if region.kind == GROUP:
                region.content = tuple(merge_alone(region, side) for side in facts)
        raw = written(regions, base)
        changes, involved = target_changes(regions, base, raw)
        for region in regions:
            if region.kind == GROUP and (region.touched or any(region.holds(k) for k in involved)):
                check_merged_after(region, regions, facts, reach)
    except NotInferable as exc:
        return None, str(exc)
    except Exception as exc:  # a file the shortcut cannot read: composing it is always right
        return None, f"inference failed ({type(exc).__name__}: {exc})"
    return Inferred(base_label, changes, regions, raw), ""


# --------------------------------------------------------------------------- what the target adds to its base
def plan(
    config_name: str, overrides: list[str], base: Base, facts: tuple[TreeFacts, TreeFacts], edited: set[str]
) -> list[tuple[str, str, Any]]:
    """(kind, group or key, option) for everything the target adds to the base."""
    extra = list(overrides)
    for item in base.overrides:
        if item not in extra:
            raise NotInferable("the base has an override the target lacks")
        extra.remove(item)
    items = wrapper_items(config_name, facts, edited) if config_name != "config" else []
    for item in extra:
        key, sep, value = item.partition("=")
        forced = key.startswith("++")
        key = key[2:] if forced else key
        if not sep or key.startswith(("+", "~")) or _is_sweep(value) or (forced and facts[1].is_group(key)):
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
            items.append((FORCED if forced else VALUE, key, override_value(item)))
    return items


def override_value(item: str) -> Any:
    """The value a `key=value` override sets, parsed as Hydra parses it (VALUE_MARK when it cannot be)."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        return OverridesParser.create().parse_override(item).value()
    except Exception:
        return VALUE_MARK + item.partition("=")[0]


def wrapper_items(config_name: str, facts: tuple[TreeFacts, TreeFacts], edited: set[str]) -> list[tuple[str, str, Any]]:
    """A primary config that is `config` plus hydra settings: defaults [config, override hydra/...: x, _self_]."""
    file = _unedited(facts, config_name, edited)
    entries = list(file.defaults)
    if entries and entries[-1] == "_self_":
        entries.pop()  # _self_ last (or absent: Hydra appends it): its keys override config's
    if not entries or entries[0] != "config" or set(file.body) - {"hydra"}:
        raise NotInferable(f"{config_name} is not `config` plus hydra settings")
    items = [_override_item(entry, hydra_only=True) for entry in entries[1:]]
    return items + [(VALUE, key, value) for key, value in (flatten(file.body) if file.body else {}).items()]


def global_items(
    group: str, option: str, base: Base, facts: tuple[TreeFacts, TreeFacts], edited: set[str]
) -> list[tuple[str, str, Any]]:
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
            items.append((VALUE, key, value))
        elif isinstance(value, dict) or _has_interpolation(value):
            raise NotInferable(f"{group}={option} sets {key} to something other than a literal")
        else:
            items.append((VALUE, key, value))
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
def build_regions(items: list[tuple[str, str, Any]], base: Base, facts: tuple[TreeFacts, TreeFacts]) -> list[Region]:
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
            region = Region(name, VALUE, value=option, forced=kind == FORCED)
        if region is not None:
            regions.append(region)
    for r in regions:  # a value set on the command line needs its key (Hydra refuses new keys there, but for ++)
        if (
            r.kind == VALUE
            and not r.path.startswith("hydra.")
            and not all(_is_leaf(raw, r.path) for raw in base.raw)
            and not (r.forced and not any(r.touched_by(k) for raw in base.raw for k in raw))
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
    replaced_keys: tuple[set[str], set[str]] = (set(), set())
    replaced_files: set[str] = set()
    for side, composed, keys in zip(facts, (base.old, base.new), replaced_keys):
        if before[0] is None:
            continue
        replaced = confined_subtree(side, group, before[0], {})
        if replaced is None:
            raise NotInferable(f"the base's {group}={before[0]} is not confined to its package")
        loaded = {path for path, _ in replaced}
        for name, choice in composed.choices.items():
            if name.startswith(group + "/") and choice is not None and f"{name}/{choice}" not in loaded:
                raise NotInferable(f"the base's {name} is overridden, not its {group} option's default")
        keys |= {key for path, package in replaced for key in side.files[path].placed(package)}
        replaced_files |= loaded
    region = Region(group.replace("/", "."), GROUP, {group.replace("/", ".")}, files[1], replaced=replaced_keys)
    region.replaced_files = replaced_files
    for path, package in region.files:
        region.keys |= facts[1].files[path].placed(package)
        parts = package.split(".")
        region.keys |= {".".join(parts[:i]) for i in range(len(region.path.split(".")), len(parts) + 1)}
    return region


def confined_subtree(facts: TreeFacts, group: str, option: str, picks: dict[str, str]) -> list[tuple[str, str]] | None:
    """(file, package) of an option and everything its defaults list loads, in Hydra's merge order, if all of it
    stays inside the group's package: only `_self_`, options of the same group (`- name`, `- name@sub.key`,
    `- name@_here_`), configs placed right here (`- /schema/data_mixture@_here_`, a schema node), and
    options of groups nested in it (`- child: option`, which `override child: other` in the option or a pick
    of GROUP/child on the command line replaces)."""
    out: list[tuple[str, str]] = []

    def visit(path: str, own_group: str, package: str, depth: int, forced: dict[str, str]) -> bool:
        file = facts.files.get(path)
        if depth > 20 or file is None or not file.parsed or file.header not in (None, "_group_"):
            return False
        entries = list(file.defaults)
        if "_self_" not in entries:
            entries.append("_self_")  # Hydra merges a config's own keys after its defaults unless told otherwise
        local = {}
        for entry in entries:
            if _is_override(entry):
                ((key, choice),) = entry.items()
                child = str(key).split()[-1]
                if not child.isidentifier() or not isinstance(choice, str) or "${" in choice:
                    return False
                local[f"{own_group}/{child}"] = choice
        if any(forced.get(g, c) != c for g, c in local.items()):
            return False  # overridden differently inside and outside: leave it to Hydra
        forced = {**local, **forced}
        for entry in entries:
            if entry == "_self_":
                out.append((path, package))
            elif _is_override(entry):
                continue  # applied where the group is named (forced)
            elif isinstance(entry, str) and "${" not in entry:
                name, _, sub = entry.partition("@")
                where = package if sub == "_here_" else f"{package}.{sub}" if sub else package
                if name.startswith("/"):  # another group's config: only when placed right here
                    if sub != "_here_":
                        return False
                    target, target_group = name[1:], name[1:].rpartition("/")[0]
                elif "/" in name or sub.startswith("_global_"):
                    return False
                else:
                    target, target_group = f"{own_group}/{name}", own_group
                if not visit(target, target_group, where, depth + 1, forced):
                    return False
            elif isinstance(entry, dict) and len(entry) == 1:
                ((child, choice),) = entry.items()
                if not str(child).isidentifier() or not isinstance(choice, str) or "${" in choice:
                    return False
                child_group, child_package = f"{own_group}/{child}", f"{package}.{child}"
                choice = forced.get(child_group, choice)
                if child_package == child_group.replace("/", "."):  # a pick on the command line reaches this one only
                    choice = picks.get(child_group, choice)
                if not visit(f"{child_group}/{choice}", child_group, child_package, depth + 1, forced):
                    return False
            else:
                return False
        return True

    return out if visit(f"{group}/{option}", group, group.replace("/", "."), 0, {}) else None


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


def merge_alone(region: Region, side: TreeFacts) -> dict[str, Any]:
    """A group region's option files merged alone, as Hydra merges them (in order, each at its package), as written."""
    merged: dict = {}
    for path, package in region.files:
        loaded: Any = side.content(path)
        for part in reversed(package.split(".") if package else []):
            loaded = {part: loaded}
        _merge(merged, loaded)
    node: Any = merged
    for part in region.path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return flatten(node if node is not None else {}, region.path)


def _merge(dst: dict, src: dict) -> None:
    """OmegaConf.merge on plain containers: mappings merge key by key, `???` keeps what is there, the rest replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        elif not (isinstance(value, str) and value == "???" and key in dst):
            dst[key] = copy.deepcopy(value)


def _same_group(group: str, region_group: str) -> bool:
    """Options of the region's group or of groups nested in it: loaded only when picked, and the pick replaces them."""
    return bool(region_group) and (group == region_group or group.startswith(region_group + "/"))


def check_merged_after(region: Region, regions: list[Region], facts: tuple[TreeFacts, TreeFacts], reach: set[str]):
    """Refuse a group region whose keys another loaded file may set after its option (what is merged alone would
    not be what the target holds). Files merged before the group's entry in config.yaml only fill keys the option
    leaves alone, and the base's replaced option is not loaded."""
    own = {path for path, _ in region.files} | region.replaced_files
    group = region.path.replace(".", "/")
    for side in facts:
        for path in sorted(reach - own - files_before(side, group)):
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


def files_before(facts: TreeFacts, group: str) -> set[str]:
    """The files config.yaml's defaults list merges before the entry of group's top group (config's own keys
    included when its `_self_` comes first)."""
    root = facts.files.get("config")
    if root is None or not root.parsed:
        return set()
    top, todo, before = group.split("/")[0], [], set()
    for entry in root.defaults:
        if entry == "_self_":
            before.add("config")
        elif not _is_override(entry):
            if _entry_group(entry) == top:
                break
            todo += [path for path, _ in entry_files(root, entry) or []]
    else:
        return set()  # the group is not in config's defaults list: nothing is known to come first
    while todo:
        path = todo.pop()
        if path in before:
            continue
        before.add(path)
        file = facts.files.get(path)
        if file is not None and file.parsed:
            for entry in file.defaults:
                todo += [p for p, _ in entry_files(file, entry) or []]
    return before


# --------------------------------------------------------------------------- the target as written, and its changes


def written(regions: list[Region], base: Base) -> tuple[dict, dict]:
    """The target's config as written on each side, flat: the base outside the regions; in a group region the
    base's keys its own option did not set, with the option's files merged over them; a value region's mark."""
    out = []
    for side, raw in enumerate(base.raw):
        flat = {k: v for k, v in raw.items() if not any(r.holds(k) for r in regions)}
        for r in regions:
            if r.kind == GROUP:
                flat.update({k: v for k, v in raw.items() if r.holds(k) and k not in r.replaced[side]})
                _overlay(flat, r.content[side])
        for r in regions:
            if r.kind == VALUE and not r.path.startswith("hydra."):
                if any(r.path.startswith(k + ".") for k in flat):
                    raise NotInferable(f"{r.path} is set below a key that holds no mapping")
                for k in [k for k in flat if k.startswith(r.path + ".")]:
                    del flat[k]
                flat[r.path] = copy.deepcopy(r.value)
        out.append(flat)
    return out[0], out[1]


def _overlay(flat: dict[str, Any], content: dict[str, Any]) -> None:
    """Merge flat content over a flat config the way _merge does nested ones."""
    for key, value in content.items():
        below = [k for k in flat if k.startswith(key + ".")]
        keeps = (isinstance(value, str) and value == "???") or (isinstance(value, dict) and not value)
        if keeps and (key in flat or below):
            continue
        for k in below:
            del flat[k]
        parts = key.split(".")
        for i in range(1, len(parts)):
            flat.pop(".".join(parts[:i]), None)
        flat[key] = value


def target_changes(regions: list[Region], base: Base, raw: tuple[dict, dict]) -> tuple[list[KeyChange], set[str]]:
    """The target's changes, and the keys inside regions its interpolations read (or sit at).

    Outside the regions, a key whose interpolations read no region changes as in the base. Inside, a literal
    changes as written; every interpolation in or into a region is resolved from the written config."""

    def inside(key: str) -> bool:
        return any(r.holds(key) for r in regions)

    graphs = [{k: refs for k, v in flat.items() if (refs := references(v))} for flat in raw]
    resolve: set[str] = set()
    involved: set[str] = set()
    for key in {k for flat in raw for k, v in flat.items() if _has_interpolation(v)}:  # ${oc.env:...} included
        reads = [_closure(graph.get(key, []), flat, graph) for flat, graph in zip(raw, graphs)]
        if any(UNKNOWN in r for r in reads):
            raise NotInferable(f"{key} has an interpolation that cannot be followed")
        touched = {k for r in reads for k in r if inside(k)}
        if inside(key) or touched:
            resolve.add(key)
            involved |= touched | ({key} if inside(key) else set())
    values = [_resolve(resolve, flat, graph) for flat, graph in zip(raw, graphs)]

    changes = []
    for key in sorted(resolve):
        old, new = (flatten(v[key], key) if key in v else {} for v in values)
        for change in key_changes(old, new):
            if _marked(change.old) or _marked(change.new):
                raise NotInferable(f"{key} mixes a value the target sets with one the edit changes")
            changes.append(change)
    for key in sorted(raw[0].keys() | raw[1].keys()):
        if inside(key) and key not in resolve:  # a literal in a region
            a, b = raw[0].get(key, ABSENT), raw[1].get(key, ABSENT)
            if a is ABSENT or b is ABSENT or not same(a, b):
                changes.append(KeyChange(key, a, b))
    for change in base.changes:  # outside the regions: as in the base, unless resolved above
        if change.key.startswith("hydra."):
            if not inside(change.key):
                changes.append(change)
        elif not inside(change.key) and written_key(change.key, raw) not in resolve:
            changes.append(change)
    return sorted(changes, key=lambda c: c.key), involved


def _resolve(keys: set[str], flat: dict[str, Any], graph: dict[str, list[str]]) -> dict[str, Any]:
    """The resolved values of some keys of a flat config as written (what to_plain gives them)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    out, slow = {}, set()
    for key in keys:
        if key in flat:
            try:
                out[key] = _follow(key, flat, frozenset())
            except _NotPlain:
                slow.add(key)
    if not slow:
        return out
    needed = set(slow)
    for key in slow:
        needed |= _closure(graph.get(key, []), flat, graph)
    cfg = OmegaConf.create(_unflatten({k: flat[k] for k in needed if k in flat}))
    for key in slow:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True, throw_on_resolution_failure=True)
        except Exception as exc:
            raise NotInferable(f"{key} does not resolve from what the target holds ({type(exc).__name__})") from exc
        out[key] = OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
    return out


def _marked(value: Any) -> bool:
    """Whether a resolved value holds a value region's literal that could not be read."""
    if isinstance(value, str):
        return VALUE_MARK in value
    if isinstance(value, dict):
        return any(_marked(v) for v in value.values())
    return isinstance(value, list) and any(_marked(v) for v in value)


class _NotPlain(Exception):
    """Not a chain of plain `${key}` references to literals: left to OmegaConf."""


def _follow(key: str, flat: dict[str, Any], seen: frozenset) -> Any:
    """A key's value when only `${key}` references stand between it and literals (OmegaConf's result, faster)."""
    if key in flat:
        value = flat[key]
        if isinstance(value, str) and "${" in value:
            target = pure_reference(value)
            if target is None or key in seen:
                raise _NotPlain
            return _follow(target, flat, seen | {key})
        if _has_interpolation(value) or (isinstance(value, str) and value == "???"):
            raise _NotPlain
        return copy.deepcopy(value)
    below = {k[len(key) + 1 :]: k for k in flat if k.startswith(key + ".")}
    if not below:
        raise _NotPlain  # absent, or below an interpolation: OmegaConf says which
    return _unflatten({rest: _follow(k, flat, seen) for rest, k in below.items()})


def _unflatten(flat: dict[str, Any]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(value)
    return nested


def _placed_nodes(node: Any, prefix: str) -> list[tuple[str, bool]]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.append((path, isinstance(v, dict)))
            out += _placed_nodes(v, path)
    return out


def _leaves_under(raw: dict[str, Any], target: str) -> set[str]:
    if target in raw:  # a leaf: nothing lies below it, and no leaf above it
        return {target}
    return {k for k in raw if k.startswith(target + ".") or target.startswith(k + ".")}


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

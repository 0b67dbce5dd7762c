"""What each YAML file of a conf tree declares, read without Hydra: its package, its defaults list,
the keys it places and the keys it references. `scopeml-config diff` uses these facts to skip
configs an edit cannot reach and to infer configs whose result follows from another's.

Everything here over-approximates: a file a config *might* load is counted as loaded, a
reference that cannot be parsed is UNKNOWN, and callers treat UNKNOWN as "could be anything".

A group option may load a node of Hydra's ConfigStore instead of a file (a data recipe's
`- /schema/data_mixture@_here_`, its defaults from the schema): such a node is described like a
file (`stored=True`). It is the same on both sides of a diff (both compose with this process's
schema), so it is never an edited file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

UNKNOWN = "<unknown>"  # a reference or a defaults entry whose target cannot be known statically
# Resolvers whose value cannot depend on the config's own keys (they read the environment or the clock).
PLAIN_RESOLVERS = ("oc.env", "now")
_REF = re.compile(r"\$\{\s*([^${}:\s]*)\s*([:}])")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")


@dataclass
class FileFacts:
    path: str  # config path: "hparams/fast" for conf/hparams/fast.yaml, "config" for conf/config.yaml
    digest: str  # of the file's bytes: a changed digest is a changed file
    parsed: bool  # False when the YAML does not parse (then nothing below can be trusted)
    header: str | None = None  # the `# @package` value, None when absent
    defaults: list = field(default_factory=list)
    body: Any = None  # the content without its defaults list
    stored: bool = False  # a ConfigStore node (the schema's), not a file of the tree

    @property
    def group(self) -> str:
        return self.path.rpartition("/")[0]

    @property
    def package(self) -> str | None:
        """Where the file's keys land when it is loaded by its group ("" = the root); None when unsure."""
        if self.header in (None, "_group_"):
            return self.group.replace("/", ".")
        if self.header == "_global_":
            return ""
        return None  # an explicit package: placed somewhere else

    def placed(self, package: str | None = None) -> set[str]:
        """Every key path (inner nodes too) the file sets when placed at package (default: its own)."""
        package = self.package if package is None else package
        paths: set[str] = set()
        _paths(self.body, package or "", paths)
        return paths

    def references(self) -> list[tuple[str, str]]:
        """(key inside the file, referenced key or UNKNOWN) for every `${...}` that reads the config."""
        refs: list[tuple[str, str]] = []
        _refs(self.body, "", refs)
        return refs


class TreeFacts:
    """Facts about every YAML file below one conf/ folder."""

    def __init__(self, conf: Path | None):
        self.conf = conf
        self.files: dict[str, FileFacts] = {}
        self._reach: dict[tuple, frozenset[str] | None] = {}
        if conf is not None and conf.is_dir():
            for path in sorted(conf.rglob("*.yaml")):
                rel = path.relative_to(conf).with_suffix("").as_posix()
                try:
                    self.files[rel] = read_facts(rel, path.read_bytes())
                except OSError:  # a dangling link: Hydra will say what is wrong when it composes
                    self.files[rel] = FileFacts(rel, digest="", parsed=False)
            self._add_stored_nodes()

    def _add_stored_nodes(self) -> None:
        """ConfigStore nodes that group options name in their defaults lists (`- /schema/data_mixture@_here_`)."""
        wanted = set()
        for facts in list(self.files.values()):
            if not facts.group:
                continue  # a primary config's (scopeml_defaults): merged before every group, never a region's part
            for entry in facts.defaults:
                wanted |= {path for path, _ in entry_files(facts, entry) or [] if path not in self.files}
        for path in sorted(wanted):
            node = stored_node(path)
            if node is not None:
                self.files[path] = node

    def content(self, path: str) -> dict:
        """A file's (or stored node's) keys as Hydra loads them, without its defaults list."""
        body = self.files[path].body
        return body if isinstance(body, dict) else {}

    def is_group(self, name: str) -> bool:
        return self.conf is not None and (self.conf / name).is_dir()

    @cached_property
    def _explicit_packages(self) -> dict[str, set[str | None]]:
        """Files some defaults list loads with an explicit @package, and where (None: cannot tell)."""
        out: dict[str, set[str | None]] = {}
        for facts in self.files.values():
            for entry in facts.defaults:
                for path, package in entry_files(facts, entry) or []:
                    if package is not None:  # relative to the package of the file naming it
                        out.setdefault(path, set()).add(explicit_package(facts.package, package))
        return out

    def packages(self, path: str) -> set[str] | None:
        """Every package a file's keys may land at (its own, and any @package it is loaded with); None if unknown."""
        file = self.files[path]
        found = {file.package} | self._explicit_packages.get(path, set())
        return None if None in found else found

    def reach(self, config_name: str, overrides: list[str]) -> frozenset[str] | None:
        """The files composing config_name with overrides may read (None: cannot tell, assume all).

        Every entry of every defaults list met is followed, so an option an experiment overrides
        still counts: the set is larger than what Hydra reads, never smaller. hydra/ counts whole.
        """
        key = (config_name, tuple(overrides))
        if key not in self._reach:
            self._reach[key] = self._find_reach(config_name, overrides)
        return self._reach[key]

    def _find_reach(self, config_name: str, overrides: list[str]) -> frozenset[str] | None:
        todo = [config_name] + [f"{group}/{option}" for group, option in group_overrides(self, overrides)]
        seen = {p for p in self.files if p.startswith("hydra/")}
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            facts = self.files.get(path)
            if facts is None:
                continue
            if not facts.parsed:
                return None
            for entry in facts.defaults:
                listed = entry_files(facts, entry)
                if listed is None:
                    return None
                todo += [p for p, _ in listed]
        return frozenset(seen)


@cache
def yaml_loader() -> type:
    """PyYAML's C loader typing values the way OmegaConf.load does (1e-3 is a float, a date a string, a
    duplicate key an error), so a file's body is what Hydra merges."""
    import yaml

    class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        def construct_mapping(self, node, deep=False):
            keys = set()
            for key_node, _ in node.value:
                if key_node.tag == yaml.resolver.BaseResolver.DEFAULT_SCALAR_TAG:
                    if key_node.value in keys:
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark, f"found duplicate key {key_node.value}"
                        )
                    keys.add(key_node.value)
            return super().construct_mapping(node, deep=deep)

    try:
        from omegaconf._utils import get_yaml_loader

        Loader.yaml_implicit_resolvers = get_yaml_loader().yaml_implicit_resolvers
    except ImportError:  # an OmegaConf without it: PyYAML's own types (a float needs its dot)
        pass
    return Loader


def explicit_package(parent: str | None, package: str) -> str | None:
    """Where `- name@package` puts a config named in a file placed at parent (None: cannot tell)."""
    if package == "_global_" or package.startswith("_global_."):
        return package[len("_global_.") :]
    if parent is None:
        return None
    if package == "_here_":
        return parent
    return ".".join(p for p in (parent, package) if p)


def stored_node(path: str) -> FileFacts | None:
    """A ConfigStore node (`schema/data_mixture`) described like a file; None when the store has no such node."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    import scopeml.config.paths  # noqa: F401  (registers the schema's nodes)

    try:
        node = ConfigStore.instance().load(f"{path}.yaml")
        content = OmegaConf.to_container(node.node, resolve=False)
    except Exception:
        return None
    if not isinstance(content, dict):
        return None
    defaults = content.pop("defaults", [])
    digest = "stored:" + hashlib.sha1(repr(content).encode()).hexdigest()
    return FileFacts(
        path,
        digest,
        parsed=isinstance(defaults, list),
        header=node.package,
        defaults=defaults or [],
        body=content,
        stored=True,
    )


def read_facts(rel: str, data: bytes) -> FileFacts:
    import yaml

    digest = hashlib.sha1(data).hexdigest()
    text = data.decode(errors="replace")
    header = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        if match := _PACKAGE.match(line):
            header = match.group(1)
    try:
        content = yaml.load(text, Loader=yaml_loader())
    except yaml.YAMLError:
        return FileFacts(rel, digest, parsed=False, header=header)
    content = {} if content is None else content
    if not isinstance(content, dict):
        return FileFacts(rel, digest, parsed=False, header=header)
    defaults = content.get("defaults", [])
    if not isinstance(defaults, list):
        return FileFacts(rel, digest, parsed=False, header=header)
    body = {k: v for k, v in content.items() if k != "defaults"}
    return FileFacts(rel, digest, parsed=True, header=header, defaults=defaults, body=body)


def entry_files(facts: FileFacts, entry: Any) -> list[tuple[str, str | None]] | None:
    """The files one defaults entry may load, with the @package it gives them (None = their own).

    `- name` and `- name@pkg` name a config of the file's own group; `- group: option` (with
    optional/override keywords, a leading / for an absolute group) one option of a group; a
    list of options names several. None when an interpolation makes the target unknowable.
    """
    if isinstance(entry, str):
        if entry == "_self_":
            return []
        if "${" in entry:
            return None
        name, _, package = entry.partition("@")
        return [(_join(facts.group, name), package or None)]
    if not isinstance(entry, dict) or len(entry) != 1:
        return None
    ((key, value),) = entry.items()
    key = str(key)
    group, _, package = key.split()[-1].partition("@")
    if "${" in key or (isinstance(value, str) and "${" in value):
        return None
    options = value if isinstance(value, list) else [value]
    if any(o is not None and not isinstance(o, str) for o in options):
        return None
    return [(f"{_join(facts.group, group)}/{o}", package or None) for o in options if o not in (None, "???")]


def group_overrides(facts: TreeFacts, overrides: list[str]) -> list[tuple[str, str]]:
    """(group, option) of each override that picks a group option (`model=dscnn`, `+data/augment=heavy`)."""
    picked = []
    for item in overrides:
        key, sep, value = item.lstrip("+~").partition("=")
        if sep and facts.is_group(key) and "," not in value:
            picked.append((key, value))
    return picked


def reference_target(text: str) -> list[str]:
    """The config keys a string's interpolations read (UNKNOWN for ones that cannot be followed)."""
    if "${" not in text:
        return []
    found = []
    for match in _REF.finditer(text):
        name, kind = match.groups()
        if kind == ":":
            if name not in PLAIN_RESOLVERS:
                found.append(UNKNOWN)  # ${hydra:...}, ${oc.select:...} and custom resolvers: could read anything
        elif not name or name.startswith(".") or "[" in name:
            found.append(UNKNOWN)  # relative or indexed references are not followed
        else:
            found.append(name)
    if text.count("${") > len(_REF.findall(text)):
        found.append(UNKNOWN)
    return found


def _join(group: str, name: str) -> str:
    if name.startswith("/"):
        return name[1:]
    return f"{group}/{name}" if group else name


def _paths(node: Any, prefix: str, out: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.add(path)
            _paths(v, path, out)


def _refs(node: Any, prefix: str, out: list[tuple[str, str]]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _refs(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, prefix, out)
    elif isinstance(node, str):
        out += [(prefix, target) for target in reference_target(node)]

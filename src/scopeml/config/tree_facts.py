"""What each YAML file of a conf tree declares, read without Hydra: its package, its defaults list,
the keys it places and the keys it references. `scopeml-config diff` uses these facts to skip
configs an edit cannot reach and to infer configs whose result follows from another's.

Everything here over-approximates: a file a config *might* load is counted as loaded, a
reference that cannot be parsed is UNKNOWN, and callers treat UNKNOWN as "could be anything".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cached_property
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
        if conf is not None and conf.is_dir():
            for path in sorted(conf.rglob("*.yaml")):
                rel = path.relative_to(conf).with_suffix("").as_posix()
                try:
                    self.files[rel] = read_facts(rel, path.read_bytes())
                except OSError:  # a dangling link: Hydra will say what is wrong when it composes
                    self.files[rel] = FileFacts(rel, digest="", parsed=False)

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
                        where = None if facts.package is None else ".".join(p for p in (facts.package, package) if p)
                        out.setdefault(path, set()).add(where)
        return out

    def packages(self, path: str) -> set[str] | None:
        """Every package a file's keys may land at (its own, and any @package it is loaded with); None if unknown."""
        file = self.files[path]
        found = {file.package} | self._explicit_packages.get(path, set())
        return None if None in found else found

    def reach(self, config_name: str, overrides: list[str]) -> set[str] | None:
        """The files composing config_name with overrides may read (None: cannot tell, assume all).

        Every entry of every defaults list met is followed, so an option an experiment overrides
        still counts: the set is larger than what Hydra reads, never smaller. hydra/ counts whole.
        """
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
        return seen


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
        content = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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

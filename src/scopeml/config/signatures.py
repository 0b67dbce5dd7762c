"""Read a `_target_`'s constructor signature from its source, without importing it.

A bad config must fail in well under 3 s, and importing torch alone takes over 2 s here:
so the config check finds the target's module file with the import system's finders
(which run no module code), parses it, and reads the signature of the class or function
(following `from x import Name` re-exports and base classes without an `__init__`).
What cannot be read statically (a C extension, a name built at run time) is reported as
unknown and checked when the component is built, still before any data is read.
"""

from __future__ import annotations

import ast
import importlib.machinery
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_HOPS = 8  # re-exports and base classes followed before giving up


class TargetNotFound(LookupError):
    """The `_target_` names a module or attribute that does not exist."""


@dataclass
class Param:
    name: str
    kind: str  # "positional" (positional-or-keyword), "keyword" (keyword-only), "args" (*args), "kwargs" (**kwargs)
    required: bool
    annotation: str | None = None  # the annotation's source text


@dataclass
class Signature:
    target: str
    params: list[Param] = field(default_factory=list)

    @property
    def accepts_any_keyword(self) -> bool:
        return any(p.kind == "kwargs" for p in self.params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params if p.kind in ("positional", "keyword")]

    def describe(self) -> str:
        shown = [("*" if p.kind == "args" else "**" if p.kind == "kwargs" else "") + p.name for p in self.params]
        return f"{self.target}({', '.join(shown)})"


def read_signature(target: str) -> Signature | None:
    """The signature of `target` ("pkg.module.Name"); None when it cannot be read statically.

    Raises TargetNotFound naming the missing module or attribute.
    """
    parts = target.split(".")
    if len(parts) < 2 or not all(p.isidentifier() for p in parts):
        raise TargetNotFound(f"{target!r} is not an import path like 'package.module.Name'")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        origin = _module_origin(module)
        if origin is None:
            continue
        if len(parts) - cut != 1:  # pkg.missing_module.Name, or Outer.Inner (not worth reading statically)
            tree = _parse(origin)
            if tree is not None and _find_definition(tree.body, parts[cut]) is None and not _star_sources(tree):
                raise TargetNotFound(f"cannot import {target!r}: no module named {'.'.join(parts[: cut + 1])!r}")
            return None
        return _signature_in(origin, module, parts[-1], target, hops=0)
    missing = parts[0] if _module_origin(parts[0]) is None else ".".join(parts[:-1])
    raise TargetNotFound(f"cannot import {target!r}: no module named {missing!r}")


# --------------------------------------------------------------------------- finding modules
def _module_origin(name: str) -> str | None:
    """The source file of module `name` (or "<builtin>"), found without executing any package's code."""
    loaded = sys.modules.get(name)
    if loaded is not None:
        origin = getattr(getattr(loaded, "__spec__", None), "origin", None) or getattr(loaded, "__file__", None)
        return origin or "<builtin>"
    parts = name.split(".")
    spec = importlib.machinery.PathFinder.find_spec(parts[0])
    if spec is None and parts[0] in sys.builtin_module_names:
        return "<builtin>"
    for part in parts[1:]:
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = importlib.machinery.PathFinder.find_spec(f"{spec.name}.{part}", list(spec.submodule_search_locations))
    if spec is None:
        return None
    return spec.origin if spec.origin not in (None, "namespace") else "<namespace>"


def _parse(origin: str) -> ast.Module | None:
    if not origin.endswith(".py"):
        return None
    try:
        return ast.parse(Path(origin).read_text(encoding="utf-8"), filename=origin)
    except (OSError, SyntaxError, ValueError):
        return None  # a syntax error surfaces, with its line, when the component is imported for real


# --------------------------------------------------------------------------- reading definitions
def _signature_in(origin: str, module: str, name: str, target: str, hops: int) -> Signature | None:
    tree = _parse(origin)
    if tree is None or hops > MAX_HOPS:
        return None
    node = _find_definition(tree.body, name)
    if node is None:
        unresolved = False
        for star in _star_sources(tree):  # `from .modules import *` (torch.nn does this)
            star_module = _absolute(star, module, origin)
            star_origin = _module_origin(star_module)
            if star_origin is None or not star_origin.endswith(".py"):
                unresolved = True
                continue
            try:
                return _signature_in(star_origin, star_module, name, target, hops + 1)
            except TargetNotFound:
                continue
        if unresolved or _has_module_getattr(tree):
            return None
        raise TargetNotFound(f"cannot import {target!r}: module {module!r} has no attribute {name!r}")
    if isinstance(node, tuple):  # re-exported: from X import name [as alias]
        source_module, source_name = node
        source_module = _absolute(source_module, module, origin)
        source_origin = _module_origin(source_module)
        if source_origin is None:
            return None
        return _signature_in(source_origin, source_module, source_name, target, hops + 1)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return Signature(target, _params(node.args, drop_first=False))
    if isinstance(node, ast.ClassDef):
        return _class_signature(node, tree, origin, module, target, hops)
    return None  # an assignment: built at run time


def _find_definition(body: list[ast.stmt], name: str):
    """The last top-level definition of `name` (class, def, re-export, assignment), searching if/try blocks too."""
    found = None
    for stmt in body:
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name == name:
            found = stmt
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name and alias.name != "*":
                    found = ("." * stmt.level + (stmt.module or ""), alias.name)
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                found = stmt
        elif isinstance(stmt, (ast.If, ast.Try)):
            blocks = [stmt.body, stmt.orelse] + (
                [h.body for h in stmt.handlers] + [stmt.finalbody] if isinstance(stmt, ast.Try) else []
            )
            for block in blocks:
                inner = _find_definition(block, name)
                if inner is not None:
                    found = inner
    return found


def _star_sources(tree: ast.Module) -> list[str]:
    return [
        "." * s.level + (s.module or "")
        for s in tree.body
        if isinstance(s, ast.ImportFrom) and any(a.name == "*" for a in s.names)
    ]


def _has_module_getattr(tree: ast.Module) -> bool:
    """A module-level __getattr__ can define any name: do not call it missing."""
    return any(isinstance(s, ast.FunctionDef) and s.name == "__getattr__" for s in tree.body)


def _absolute(source: str, module: str, origin: str) -> str:
    if not source.startswith("."):
        return source
    level = len(source) - len(source.lstrip("."))
    package = module if origin.endswith("__init__.py") else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    rest = source.lstrip(".")
    return f"{package}.{rest}" if rest else package


def _class_signature(node: ast.ClassDef, tree: ast.Module, origin: str, module: str, target: str, hops: int):
    init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
    if init is not None:
        return Signature(target, _params(init.args, drop_first=True))
    if any(_decorator_name(d) == "dataclass" for d in node.decorator_list):
        return _dataclass_signature(node, target)
    for base in node.bases:  # the first base that defines a readable signature decides
        base_name = ast.unparse(base)
        if base_name in ("object", "Generic") or "[" in base_name:
            continue
        if "." in base_name:
            head, _, attr = base_name.rpartition(".")
            resolved = _resolve_alias(tree, head)
            if resolved is None:
                return None
            base_module = _absolute(resolved, module, origin)
            base_origin = _module_origin(base_module)
            return None if base_origin is None else _signature_in(base_origin, base_module, attr, target, hops + 1)
        return _signature_in(origin, module, base_name, target, hops + 1)
    return Signature(target, [])  # a plain class: takes no arguments


def _resolve_alias(tree: ast.Module, name: str) -> str | None:
    """The module a name like `nn` or `torch.nn` refers to in this file.

    (import torch.nn as nn; from torch import nn)
    """
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name or (
                    alias.asname is None and name.startswith(alias.name.split(".")[0])
                ):
                    return name if alias.asname is None else alias.name
        elif isinstance(stmt, ast.ImportFrom):
            for alias in stmt.names:
                if (alias.asname or alias.name) == name:
                    return f"{'.' * stmt.level}{stmt.module + '.' if stmt.module else ''}{alias.name}"
    return None


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    return ast.unparse(node).rpartition(".")[2]


def _dataclass_signature(node: ast.ClassDef, target: str) -> Signature:
    params = []
    for stmt in node.body:
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and "ClassVar" not in ast.unparse(stmt.annotation)
        ):
            params.append(Param(stmt.target.id, "positional", stmt.value is None, ast.unparse(stmt.annotation)))
    return Signature(target, params)


def _params(args: ast.arguments, drop_first: bool) -> list[Param]:
    positional = [*args.posonlyargs, *args.args]
    if drop_first and positional:
        positional = positional[1:]
        n_defaults = len(args.defaults)
        first_default = len(positional) + 1 - n_defaults
        required = [i + 1 < first_default for i in range(len(positional))]
    else:
        first_default = len(positional) - len(args.defaults)
        required = [i < first_default for i in range(len(positional))]
    params = [Param(a.arg, "positional", req, _annotation(a)) for a, req in zip(positional, required)]
    if args.vararg:
        params.append(Param(args.vararg.arg, "args", False))
    params += [Param(a.arg, "keyword", d is None, _annotation(a)) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        params.append(Param(args.kwarg.arg, "kwargs", False))
    return params


def _annotation(arg: ast.arg) -> str | None:
    return ast.unparse(arg.annotation) if arg.annotation is not None else None

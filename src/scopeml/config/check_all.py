"""`scopeml-config check`: compose and validate every config of a conf/ folder, report every problem in one run.

Each target (see targets.py) is composed and validated with `scopeml.config.load`, standalone
files with their own loader. Two rules make single options checkable on their own (both are
reported as notes, see -v):

* Companions. Some options only make sense with another choice (data=fsdd speaks digits, so
  it needs scoping=digits). When a group option fails *only* the cross-checks between its
  labels and `scoping.classes`, it is retried with each scoping option (a scoping option is
  retried with each data/labels option); it passes if one of them fits. Experiments and
  primary configs get no companions: they must be complete on their own.
* Required values. A key set to `???` in the YAML (data/manifest.yaml's `manifest`) is
  deliberately left for the command line; it is not a problem, it is checked with a
  placeholder string and listed as "needs KEY=... at run time". A required key that is
  absent from the YAML altogether is still a problem.
"""

from __future__ import annotations

import copy
import importlib
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scopeml.config.composer import Composed, Composer, describe_error, display, yaml_detail
from scopeml.config.targets import STANDALONE, Target, discover, group_options

NO_COMPANIONS = ("experiment",)  # groups whose options must validate exactly as they are
PLACEHOLDER = "<set at run time>"


@dataclass
class Result:
    target: Target
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_check(conf: Path, verbose: bool = False) -> int:
    """Check every config below conf/, print the problems and a summary; the exit status (0 valid, 1 not, 2 usage)."""
    conf = conf.resolve()
    if not conf.is_dir():
        print(f"scopeml-config: no config folder {conf}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    syntax = yaml_errors(conf)
    groups = group_options(conf)
    with Composer(conf) as composer:
        results = [check_target(composer, t, groups) for t in discover(conf)]
    print_results(results, syntax, verbose)
    return summarize(results, syntax, time.perf_counter() - started)


# --------------------------------------------------------------------------- one config
def check_target(composer: Composer, target: Target, groups: dict[str, list[str]]) -> Result:
    if target.kind == "standalone":
        return check_standalone(target)
    problems, notes = validate(composer.compose(target.config_name, target.overrides))
    if only_class_cross_checks(problems):
        tried = companions_for(target, groups)
        for companion in tried:
            retry, retry_notes = validate(composer.compose(target.config_name, [*target.overrides, companion]))
            if not retry:
                return Result(target, [], [f"composed with {companion}", *retry_notes])
        if tried:
            notes.append(f"also fails with each of {', '.join(tried)}")
    return Result(target, problems, notes)


def check_standalone(target: Target) -> Result:
    from scopeml.config import ConfigError

    module, _, name = STANDALONE[target.group].partition(":")
    try:
        getattr(importlib.import_module(module), name)(str(target.path))
    except ConfigError as exc:
        return Result(target, list(exc.problems))
    except Exception as exc:
        return Result(target, [f"cannot load: {describe_error(exc)}"])
    return Result(target)


def validate(composed: Composed) -> tuple[list[str], list[str]]:
    """(problems, notes) of one composed config under the schema."""
    from scopeml.config import ConfigError, load

    if composed.error:
        return [composed.error], []
    plain = copy.deepcopy(composed.main)
    required = list(_walk_missing(plain))
    for key in required:
        _fill(plain, key, PLACEHOLDER)
    notes = [f"needs {key}=... at run time" for key in required]
    try:
        load(plain)
    except ConfigError as exc:
        return [p for p in exc.problems if p.partition(": ")[0] not in required], notes
    except Exception as exc:  # a schema check that crashed is a problem too, not a traceback
        return [f"validation crashed: {type(exc).__name__}: {exc}"], notes
    return [], notes


def _walk_missing(node: Any, path: str = "") -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_missing(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_missing(v, f"{path}[{i}]")
    elif node == "???":
        yield path


def _fill(node: Any, path: str, value: Any) -> None:
    """Set the leaf at a dotted path (with [i] list indices) in a plain dict."""
    parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def only_class_cross_checks(problems: list[str]) -> bool:
    return bool(problems) and all("scoping.classes" in p for p in problems)


def companions_for(target: Target, groups: dict[str, list[str]]) -> list[str]:
    if target.kind != "option" or target.group in NO_COMPANIONS:
        return []
    other = "data/labels" if target.group == "scoping" else "scoping"
    return [f"{other}={o}" for o in groups.get(other, [])]


def yaml_errors(conf: Path) -> list[str]:
    """Every YAML file below conf/ (hydra/ and standalone folders included) that does not parse, with file and line."""
    import yaml
    from omegaconf import OmegaConf

    errors = []
    for path in sorted(conf.rglob("*.yaml")):
        try:
            OmegaConf.load(path)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"{display(path)}:{mark.line + 1}:{mark.column + 1}" if mark else display(path)
            errors.append(f"{where}: YAML syntax error: {yaml_detail(exc)}")
        except Exception as exc:
            errors.append(f"{display(path)}: cannot load: {describe_error(exc)}")
    return errors


# --------------------------------------------------------------------------- report
def print_results(results: list[Result], syntax: list[str], verbose: bool) -> None:
    # A problem of the default config is inherited by every config that keeps that default;
    # it is listed once, under `config`, not once per inheriting target.
    base = set(results[0].problems) if results and results[0].target.label == "config" else set()
    inheriting = 0
    for r in results:
        shown = r.problems
        if base and r is not results[0] and r.target.kind != "standalone":
            shown = [p for p in r.problems if p not in base]
            inheriting += len(shown) < len(r.problems)
        for p in shown:
            print(f"{r.target.label}: {p}")
        if verbose:
            status = "ok  " if not r.problems else "FAIL"
            extra = f"  ({'; '.join(r.notes)})" if r.notes else ""
            print(f"  {status} {r.target.label}{extra}", file=sys.stderr)
    for line in syntax:
        print(line)
    if inheriting:
        print(f"({inheriting} more config(s) inherit the problems listed under config; not repeated)")


def summarize(results: list[Result], syntax: list[str], elapsed: float) -> int:
    invalid = sum(1 for r in results if r.problems)
    if not invalid and not syntax:
        print(f"checked {len(results)} configs: all valid ({elapsed:.1f} s)")
        return 0
    summary = f"checked {len(results)} configs: {invalid} invalid, {sum(len(r.problems) for r in results)} problem(s)"
    if syntax:
        summary += f", {len(syntax)} YAML file(s) with syntax errors"
    print(f"{summary} ({elapsed:.1f} s)")
    return 1

"""scopeml-config: review the Hydra config tree as a whole.

`check` composes every config a user can ask for (the default, each primary config, each
option of each group, each experiment) plus every standalone file (simulation scenarios in
conf/simulate/, lifecycle settings in conf/lifecycle/), validates each with `scopeml.config.load`
(standalone files with their own loader), and reports every problem of every config in one run.

`diff` composes the same configs at a git revision and in the working tree (or a second
revision), resolves them to plain values and prints the keys whose values changed, so a
config edit can be reviewed by its effect rather than by its text: comments, key order and
quoting never show up, an edit to a shared default shows up in every config that inherits it.

Two rules make single options checkable on their own (both are reported as notes, see -v):

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

import argparse
import copy
import fnmatch
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from scopeml.config.paths import conf_dir

DEFAULT_CONF = conf_dir()
# Folders of conf/ holding standalone YAML files that are not Hydra groups of `config`, with the
# function (module:name, given the file's path) that validates one file. Add new ones here.
STANDALONE = {
    "simulate": "scopeml.monitoring.simulate:load_scenario",  # scopeml-simulate scenarios
    "lifecycle": "scopeml.lifecycle.config:load_lifecycle",  # scopeml-lifecycle settings
}
NOT_GROUPS = ("hydra", *STANDALONE)  # top folders of conf/ that are not option groups for `config`
NO_COMPANIONS = ("experiment",)  # groups whose options must validate exactly as they are
PLACEHOLDER = "<set at run time>"
# hydra.* keys left out of the diff: runtime facts (paths, versions, the overrides used to
# compose, which differ between targets by construction) and the --help text templates.
HYDRA_SKIP = ("runtime", "help", "hydra_help", "overrides", "job.override_dirname", "job.id", "job.num")


# --------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One config to compose: a primary config with optional overrides, or a standalone file."""

    label: str  # how reports name it: "config", "data_report", "experiment=fsdd_digits", "simulate/noisy"
    kind: str  # "primary" | "option" | "standalone"
    config_name: str = "config"
    overrides: list[str] = field(default_factory=list)
    group: str = ""
    path: Path | None = None  # standalone file

    @property
    def order(self) -> tuple:
        rank = {"primary": 0 if self.label == "config" else 1, "option": 2, "standalone": 3}[self.kind]
        return (rank, self.group != "experiment", self.label)


def group_options(conf: Path) -> dict[str, list[str]]:
    """{group: [option, ...]} for every YAML file below conf/ except hydra/ and simulate/."""
    groups: dict[str, list[str]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        group = path.parent.relative_to(conf).as_posix()
        if group == "." or group.split("/")[0] in NOT_GROUPS:
            continue
        groups.setdefault(group, []).append(path.stem)
    return groups


def discover(conf: Path) -> list[Target]:
    """Every config `check` and `diff` look at, default config first."""
    targets = [Target("config", "primary")]
    targets += [Target(p.stem, "primary", config_name=p.stem) for p in sorted(conf.glob("*.yaml")) if p.stem != "config"]
    for group, options in group_options(conf).items():
        targets += [Target(f"{group}={o}", "option", overrides=[f"{group}={o}"], group=group) for o in options]
    for folder in STANDALONE:
        targets += [Target(f"{folder}/{p.stem}", "standalone", group=folder, path=p) for p in sorted((conf / folder).glob("*.yaml"))]
    if not (conf / "config.yaml").exists():  # no default config: only the other primaries and standalone files
        targets = [t for t in targets if t.kind == "standalone" or (t.kind == "primary" and t.label != "config")]
    return sorted(targets, key=lambda t: t.order)


# --------------------------------------------------------------------------- composing
def display(path: str | Path) -> str:
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def describe_error(exc: BaseException) -> str:
    """One line for a composition or load error, YAML errors with their file and line."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{display(mark.name)} line {mark.line + 1}" if mark else "a YAML file"
        return f"YAML syntax error in {where}: {yaml_detail(exc)}"
    text = str(exc).split("\nConfig search path:")[0]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).splitlines() and str(cause).splitlines()[0] not in text:
        text += f" ({str(cause).splitlines()[0]})"
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text or type(exc).__name__


@dataclass
class Composed:
    main: dict | None = None  # the resolved config without its hydra node
    hydra: dict | None = None  # the hydra node, unresolved (it holds ${now:...} and the like)
    error: str | None = None  # why it could not be composed or resolved


class Composer:
    """Compose many configs from one conf/ folder (one Hydra initialization for all)."""

    def __init__(self, conf: Path):
        self.conf = conf.resolve()
        self._ctx = None

    def __enter__(self) -> "Composer":
        from hydra import initialize_config_dir

        self._ctx = initialize_config_dir(config_dir=str(self.conf), version_base="1.3")
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    def compose(self, config_name: str, overrides: list[str]) -> Composed:
        from hydra import compose
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf, open_dict

        from scopeml.config import ConfigError, to_plain

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
                except Exception as exc:  # a group the defaults list does not name is appended with +
                    if "Could not override" not in str(exc):
                        raise
                    plus = [o if o.startswith(("+", "~")) else "+" + o for o in overrides]
                    cfg = compose(config_name=config_name, overrides=plus, return_hydra_config=True)
        except Exception as exc:
            return Composed(error=f"cannot compose: {describe_error(exc)}")
        hydra = None
        if "hydra" in cfg:
            HydraConfig.instance().set_config(cfg)  # so ${hydra:...} in the user's config resolves as in a run
            hydra = OmegaConf.to_container(cfg.hydra, resolve=False)
            with open_dict(cfg):
                del cfg["hydra"]
        try:
            return Composed(main=to_plain(cfg), hydra=hydra)
        except ConfigError as exc:
            return Composed(error="; ".join(exc.problems), hydra=hydra)
        except Exception as exc:
            return Composed(error=f"cannot resolve: {describe_error(exc)}", hydra=hydra)


def load_standalone_plain(path: Path) -> Composed:
    from omegaconf import OmegaConf

    from scopeml.config import ConfigError, to_plain

    try:
        return Composed(main=to_plain(OmegaConf.load(path)))
    except ConfigError as exc:
        return Composed(error="; ".join(exc.problems))
    except Exception as exc:
        return Composed(error=f"cannot load: {describe_error(exc)}")


# --------------------------------------------------------------------------- check
@dataclass
class Result:
    target: Target
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    import re

    parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


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


def only_class_cross_checks(problems: list[str]) -> bool:
    return bool(problems) and all("scoping.classes" in p for p in problems)


def companions_for(target: Target, groups: dict[str, list[str]]) -> list[str]:
    if target.kind != "option" or target.group in NO_COMPANIONS:
        return []
    other = "data/labels" if target.group == "scoping" else "scoping"
    return [f"{other}={o}" for o in groups.get(other, [])]


def check_target(composer: Composer, target: Target, groups: dict[str, list[str]]) -> Result:
    if target.kind == "standalone":
        import importlib

        from scopeml.config import ConfigError

        module, _, name = STANDALONE[target.group].partition(":")
        try:
            getattr(importlib.import_module(module), name)(str(target.path))
        except ConfigError as exc:
            return Result(target, list(exc.problems))
        except Exception as exc:
            return Result(target, [f"cannot load: {describe_error(exc)}"])
        return Result(target)
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


def yaml_detail(exc: Any) -> str:
    """The parser's complaint, plus where the construct it was parsing started."""
    detail = exc.problem or exc.context or str(exc)
    if exc.problem and exc.context and exc.context_mark is not None:
        detail += f" ({exc.context} started at line {exc.context_mark.line + 1})"
    return detail


def yaml_errors(conf: Path) -> list[str]:
    """Every YAML file below conf/ (hydra/ and simulate/ included) that does not parse, with file and line."""
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


def cmd_check(args: argparse.Namespace) -> int:
    conf = Path(args.conf).resolve()
    if not conf.is_dir():
        print(f"scopeml-config: no config folder {conf}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    syntax = yaml_errors(conf)
    groups = group_options(conf)
    targets = discover(conf)
    with Composer(conf) as composer:
        results = [check_target(composer, t, groups) for t in targets]

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
        if args.verbose:
            status = "ok  " if not r.problems else "FAIL"
            extra = f"  ({'; '.join(r.notes)})" if r.notes else ""
            print(f"  {status} {r.target.label}{extra}", file=sys.stderr)
    for line in syntax:
        print(line)
    if inheriting:
        print(f"({inheriting} more config(s) inherit the problems listed under config; not repeated)")

    invalid = sum(1 for r in results if r.problems)
    elapsed = time.perf_counter() - started
    if not invalid and not syntax:
        print(f"checked {len(results)} configs: all valid ({elapsed:.1f} s)")
        return 0
    summary = f"checked {len(results)} configs: {invalid} invalid, {sum(len(r.problems) for r in results)} problem(s)"
    if syntax:
        summary += f", {len(syntax)} YAML file(s) with syntax errors"
    print(f"{summary} ({elapsed:.1f} s)")
    return 1


# --------------------------------------------------------------------------- diff
class GitError(RuntimeError):
    pass


def git(top: Path | None, *args: str, input: bytes | None = None, cwd: Path | None = None) -> bytes:
    cmd = ["git", *(["-C", str(top)] if top else []), *args]
    proc = subprocess.run(cmd, input=input, capture_output=True, cwd=cwd)
    if proc.returncode != 0:
        raise GitError(proc.stderr.decode(errors="replace").strip() or f"{' '.join(cmd)} failed")
    return proc.stdout


def materialize(top: Path, rev: str, conf_rel: str, dest: Path) -> Path | None:
    """Write the conf/ folder as it is at `rev` under dest; None when rev has no such folder.

    Blobs are read with ls-tree and cat-file (not `git archive`, whose export-ignore and
    export-subst attributes could drop or rewrite files).
    """
    listing = git(top, "ls-tree", "-r", "-z", "--full-tree", rev, "--", conf_rel)
    entries = []
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, _, name = item.partition(b"\t")
        mode, kind, oid = meta.decode().split()
        if kind == "blob":
            entries.append((mode, oid, name.decode()))
    if not entries:
        return None
    out = git(top, "cat-file", "--batch", input="".join(f"{oid}\n" for _, oid, _ in entries).encode())
    pos = 0
    for mode, _, name in entries:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        data = out[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            os.symlink(data.decode(), target)
        else:
            target.write_bytes(data)
    return dest / conf_rel


def flatten(node: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys to leaf values; lists and empty mappings are leaves."""
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
    return json.dumps(value, ensure_ascii=False, default=str)


def snapshot(composed: Composed) -> dict[str, Any]:
    flat = flatten(composed.main or {}, "", {})
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


def key_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if key not in new:
            lines.append(f"- {key}: {fmt(old[key])}")
        elif key not in old:
            lines.append(f"+ {key}: {fmt(new[key])}")
        elif not same(old[key], new[key]):
            lines.append(f"{key}: {fmt(old[key])} -> {fmt(new[key])}")
    return lines


def compose_side(conf: Path | None, only: list[str] | None = None) -> tuple[dict[str, Target], dict[str, Composed]]:
    """Compose every target of one side (those matching `only`, plus `config` to compare new targets with)."""
    if conf is None or not conf.is_dir():
        return {}, {}
    targets = [t for t in discover(conf) if wanted(t.label, only) or t.label == "config"]
    composed: dict[str, Composed] = {}
    with Composer(conf) as composer:
        for t in targets:
            composed[t.label] = load_standalone_plain(t.path) if t.kind == "standalone" else composer.compose(t.config_name, t.overrides)
    return {t.label: t for t in targets}, composed


def wanted(label: str, only: list[str] | None) -> bool:
    return not only or any(fnmatch.fnmatchcase(label, pattern) for pattern in only)


def cmd_diff(args: argparse.Namespace) -> int:
    conf = Path(args.conf).resolve()
    try:
        top = Path(git(None, "rev-parse", "--show-toplevel", cwd=conf if conf.is_dir() else conf.parent).decode().strip()).resolve()
    except (GitError, FileNotFoundError) as exc:
        print(f"scopeml-config diff: {conf} is not inside a git repository ({exc})", file=sys.stderr)
        return 2
    try:
        conf_rel = conf.relative_to(top).as_posix()
    except ValueError:
        print(f"scopeml-config diff: {conf} is outside the repository {top}", file=sys.stderr)
        return 2
    revs = [args.rev] + ([args.against] if args.against else [])
    shas = []
    for rev in revs:
        try:
            shas.append(git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip())
        except GitError:
            print(f"scopeml-config diff: unknown revision {rev!r}", file=sys.stderr)
            return 2

    old_name, new_name = args.rev, args.against or "working tree"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scopeml-config-diff-") as tmp:
        old_conf = materialize(top, shas[0], conf_rel, Path(tmp) / "old")
        new_conf = materialize(top, shas[1], conf_rel, Path(tmp) / "new") if args.against else conf
        for name, side in ((old_name, old_conf), (new_name, new_conf)):
            if side is None or not side.is_dir():
                print(f"note: {name} has no {conf_rel}/ folder; every config there counts as absent", file=sys.stderr)
        old_targets, old = compose_side(old_conf, args.only)
        new_targets, new = compose_side(new_conf, args.only)

    every = {**old_targets, **new_targets}
    labels = [label for label in sorted(every, key=lambda label: every[label].order) if wanted(label, args.only)]
    changes = changed_targets = 0
    for label in labels:
        lines: list[str] = []
        counted = True
        if label not in old:
            lines.append(f"+ new target (only in {new_name})")
            lines += added_or_removed(new[label], new.get("config"), "vs config: ")
        elif label not in new:
            lines.append(f"- removed target (only in {old_name})")
            lines += added_or_removed(old[label], old.get("config"), "vs config: ")
        elif old[label].error or new[label].error:
            a, b = old[label].error, new[label].error
            if a == b:
                lines.append(f"fails on both sides, unchanged: {a}")
                counted = False
            elif a and b:
                lines.append(f"fails on both sides: in {old_name}: {a} | in {new_name}: {b}")
            elif b:
                lines.append(f"now fails (composes in {old_name}, not in {new_name}): {b}")
            else:
                lines.append(f"now composes (failed in {old_name}: {a})")
        else:
            lines = key_changes(snapshot(old[label]), snapshot(new[label]))
        for line in lines:
            print(f"{label}: {line}")
        if lines and counted:
            changed_targets += 1
            changes += len(lines)
    elapsed = time.perf_counter() - started
    if not changed_targets:
        print(f"no semantic changes ({old_name} -> {new_name}, {len(labels)} configs, {elapsed:.1f} s)")
        return 0
    print(f"{changes} change(s) in {changed_targets} of {len(labels)} configs ({old_name} -> {new_name}, {elapsed:.1f} s)")
    return 1 if args.exit_code else 0


def added_or_removed(composed: Composed, config: Composed | None, lead: str) -> list[str]:
    """For a target on one side only: what it sets relative to that side's default config."""
    if composed.error:
        return [f"  {composed.error}"]
    if config is None or config.error or composed is config:
        return []
    return [f"  {lead}{line}" for line in key_changes(snapshot(config), snapshot(composed))]


# --------------------------------------------------------------------------- CLI
CHECK_HELP = """\
Compose and validate every config the tree can produce, reporting all problems at once:
the default config, each primary config (conf/*.yaml), each option of each group
(GROUP=OPTION, nested groups such as data/augment=light included), each experiment, and
each standalone file (conf/simulate/*.yaml scenarios, conf/lifecycle/*.yaml); plus a YAML
syntax check of every file under conf/. Problems are printed one per line as
TARGET: KEY: MESSAGE; a problem of the default config is listed once, under `config`.

An option that fails only the label/class cross-checks is retried with each scoping option
(its companion: data=fsdd passes with scoping=digits). Keys set to ??? in the YAML are left
for the command line (checked with a placeholder, listed by -v).

exit status: 0 when every config is valid, 1 otherwise, 2 on usage errors.

examples:
  scopeml-config check
  scopeml-config check --conf path/to/conf -v      # list each config and its notes
"""

DIFF_HELP = """\
Show the semantic difference between the composed configs at git revision REV and the
working tree (or revision --against REV2). Both sides compose the same configs (default,
primary configs, each experiment, each group option, each standalone file), resolve them
to plain values, and only keys whose value or type changed are printed:

  experiment=fsdd_digits: hparams.max_epochs: 25 -> 30
  config: + data.max_per_word: 100        (key added)
  config: - tracker.notes: null           (key removed)
  experiment=new: + new target (only in working tree)

Values are JSON (strings quoted). Comments, key order and YAML quoting never show.
A config that does not compose on one side is reported, not fatal.

exit status: 0 (it is a report), or with --exit-code 1 when anything changed; 2 on errors.

examples:
  scopeml-config diff HEAD                       # uncommitted config edits
  scopeml-config diff main --exit-code           # CI: fail when a branch changes configs
  scopeml-config diff v0.1 --against v0.2 --only 'experiment=*'
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scopeml-config",
        description="Review the Hydra config tree: validate every config at once, or diff composed configs between git revisions.",
        epilog="run `scopeml-config check -h` or `scopeml-config diff -h` for details and examples",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,diff}")
    fmt_cls = argparse.RawDescriptionHelpFormatter

    check = sub.add_parser("check", help="compose and validate every config, report every problem", description=CHECK_HELP, formatter_class=fmt_cls)
    check.add_argument("--conf", default=str(DEFAULT_CONF), help=f"config folder (default: {display(DEFAULT_CONF)})")
    check.add_argument("-v", "--verbose", action="store_true", help="list every config checked, with companions used and required keys (stderr)")
    check.set_defaults(func=cmd_check)

    diff = sub.add_parser("diff", help="semantic diff of the composed configs between git revisions", description=DIFF_HELP, formatter_class=fmt_cls)
    diff.add_argument("rev", metavar="REV", help="git revision of the old side (HEAD, main, a tag, a commit)")
    diff.add_argument("--against", metavar="REV2", help="compare with this revision instead of the working tree")
    diff.add_argument("--conf", default=str(DEFAULT_CONF), help="config folder in the working tree; its path inside the repository is used at each revision "
                      f"(default: {display(DEFAULT_CONF)})")
    diff.add_argument("--only", action="append", metavar="GLOB", help="only configs whose name matches, e.g. 'experiment=*' (repeatable)")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when anything changed (for CI)")
    diff.set_defaults(func=cmd_diff)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

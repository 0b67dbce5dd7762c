"""scopeml-config: review the Hydra config tree as a whole.

`check` composes and validates every config a user can ask for, reporting every problem at
once (scopeml/config/check_all.py). `diff REV` composes the same configs at a git revision
and in the working tree, and reports each changed key once with the configs it reaches (and the
keys that only interpolate it), the lifecycle stages it would re-run and the recorded runs it
makes stale (scopeml/config/diff.py, inference.py, key_groups.py, invalidation.py). No model
code is imported, and for an edit of a few keys only `config` is composed: about a second.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from scopeml.config.composer import display
from scopeml.config.paths import conf_dir

DEFAULT_CONF = conf_dir()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from scopeml.config.check_all import run_check

        return run_check(Path(args.conf), args.verbose)  # compose and validate every config
    return review(args)


def review(args: argparse.Namespace) -> int:
    from scopeml.config.git_tree import GitError
    from scopeml.config.review_report import as_markdown, as_text

    try:
        report = build_review(
            Path(args.conf), args.rev, args.against, Path(args.runs), args.only, args.compose_all, args.verbose
        )
    except GitError as exc:
        print(f"scopeml-config diff: {exc}", file=sys.stderr)
        return 2
    print(as_markdown(report) if args.format == "markdown" else as_text(report) + "\n", end="")
    return 1 if args.exit_code and report.changed else 0


def build_review(
    conf: Path,
    rev: str,
    against: str | None = None,
    runs: Path = Path("outputs"),
    only: list[str] | None = None,
    compose_all: bool = False,
    verbose: bool = False,
    old_compositions: dict | None = None,
):
    """The review `scopeml-config diff` prints (a review_report.Review); GitError for a bad revision.

    old_compositions: the old side's configs composed earlier (DiffEngine.compositions(0) of an engine
    with the same old tree), for a process comparing one revision with several trees."""
    from scopeml.config.diff import DiffEngine, Side
    from scopeml.config.git_tree import trees_to_compare
    from scopeml.config.invalidation import lifecycle_impacts, recorded_runs
    from scopeml.config.key_groups import group_by_key
    from scopeml.config.review_report import Review

    started = time.perf_counter()
    with trees_to_compare(conf, rev, against) as (old, new):  # the two conf/ trees
        for name, folder in (old, new):
            if folder is None or not folder.is_dir():
                print(f"note: {name} has no config folder; every config there counts as absent", file=sys.stderr)
        engine = DiffEngine(Side(*old), Side(*new), compose_all, verbose, old_compositions)
        outcomes = engine.outcomes(only)  # each config's changes, composing only what the edit reaches
        lines = group_by_key(outcomes)  # one line per changed key, with the configs it skips
        stages = lifecycle_impacts(engine)  # lifecycle stages that would re-run
    stale = recorded_runs(runs, lines)  # recorded runs made with the old values
    return Review(old[0], new[0], outcomes, lines, stages, stale, time.perf_counter() - started, engine.composes)


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
Show what a config edit changes: the configs at git revision REV against the working tree
(or revision --against REV2). Both sides compose the same configs (default, primary configs,
each experiment, each group option, each standalone file) and resolve them to plain values;
each changed key is printed once, with how many of the configs holding it change that way,
which do not (they set their own value, or change differently), and the keys that change only
because they interpolate it (`${hparams.lr}`), named after "followed by" instead of printed:

  hparams.lr: 0.003 -> 0.004  (39 of 42 configs; not in: hparams=fast; followed by hparams.optimizer.lr)
  + data.source.max_per_word: 100  (12 of 12 configs)            (key added; - for a removed key)
  simulate/noisy: clips: 300 -> 200                        (a standalone file)
  + experiment=new: new config (only in working tree); vs config: hparams.max_epochs: 15 -> 99

Then what the edit invalidates: per lifecycle config (conf/lifecycle/), the first stage
that would re-run and every stage after it; and the recorded runs under --runs (training
runs, sweep jobs, lifecycle stages) that hold the old values. Values are JSON (strings
quoted); comments, key order and YAML quoting never show. A config that does not compose on
one side is reported, not fatal. Only the configs an edited file can reach are composed (the
others are unchanged by construction or follow from `config`); --compose-all composes all.

exit status: 0 (it is a report), or with --exit-code 1 when anything changed; 2 on errors.

examples:
  scopeml-config diff HEAD                       # uncommitted config edits
  scopeml-config diff main --format markdown     # a pull-request comment
  scopeml-config diff main --exit-code           # CI: fail when a branch changes configs
  scopeml-config diff v0.1 --against v0.2 --only 'experiment=*'
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scopeml-config",
        description="Review the Hydra config tree: validate every config at once, "
        "or diff composed configs between git revisions.",
        epilog="run `scopeml-config check -h` or `scopeml-config diff -h` for details and examples",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{check,diff}")
    raw = argparse.RawDescriptionHelpFormatter

    check = sub.add_parser(
        "check",
        help="compose and validate every config, report every problem",
        description=CHECK_HELP,
        formatter_class=raw,
    )
    check.add_argument("--conf", default=str(DEFAULT_CONF), help=f"config folder (default: {display(DEFAULT_CONF)})")
    check.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="list every config checked, with companions used and required keys (stderr)",
    )

    diff = sub.add_parser(
        "diff",
        help="what a config edit changes between git revisions, and what it invalidates",
        description=DIFF_HELP,
        formatter_class=raw,
    )
    diff.add_argument("rev", metavar="REV", help="git revision of the old side (HEAD, main, a tag, a commit)")
    diff.add_argument("--against", metavar="REV2", help="compare with this revision instead of the working tree")
    diff.add_argument(
        "--conf",
        default=str(DEFAULT_CONF),
        help="config folder in the working tree; its path inside the repository is used at each "
        f"revision (default: {display(DEFAULT_CONF)})",
    )
    diff.add_argument(
        "--only",
        action="append",
        metavar="GLOB",
        help="only configs whose name matches, e.g. 'experiment=*' (repeatable)",
    )
    diff.add_argument(
        "--format",
        choices=("text", "markdown"),
        default="text",
        help="text (default) or markdown: tables for a pull-request comment",
    )
    diff.add_argument(
        "--runs",
        default="outputs",
        metavar="DIR",
        help="folder of recorded runs to check for old values (default: %(default)s)",
    )
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when anything changed (for CI)")
    diff.add_argument(
        "--compose-all",
        action="store_true",
        help="compose every config on both sides, not only those the edit reaches (slower; same result)",
    )
    diff.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="how each config was compared: composed, inferred or not reached (stderr)",
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())

"""scopeml-lifecycle: scoping to monitored production in one command (the work is scopeml.lifecycle.run)."""

from __future__ import annotations

import sys

from scopeml import stage
from scopeml.lifecycle import run

PROG = "scopeml-lifecycle"


def build_parser():
    parser = stage.parser(
        PROG,
        run.__doc__,
        here={
            stage.ExitCode.CHECK_FAILED: "a stage failed (it is named, with its log)",
            stage.ExitCode.BAD_INPUT: "a bad lifecycle config",
        },
    )
    parser.add_argument(
        "--config", default="default", help="conf/lifecycle/<name>.yaml or a YAML path (default: %(default)s)"
    )
    parser.add_argument("--out", help="output folder (default: the config's `out`)")
    parser.add_argument(
        "--config-dir",
        help="your own config folder (model/, data/, experiment/, lifecycle/ ...), searched before scopeml's",
    )
    parser.add_argument(
        "--force", nargs="*", default=[], choices=run.Lifecycle.STAGES, help="re-run from this stage on"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> stage.ExitCode:
        finished = run.run_lifecycle(args.config, args.out, args.config_dir, args.force)
        return stage.ExitCode.OK if finished else stage.ExitCode.CHECK_FAILED

    return stage.run(PROG, work)


if __name__ == "__main__":
    sys.exit(main())

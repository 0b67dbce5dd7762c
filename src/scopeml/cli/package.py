"""scopeml-package: put the selected model into the BentoML model store (the work is scopeml.serving.package)."""

from __future__ import annotations

import sys
from pathlib import Path

from scopeml import stage
from scopeml.serving import package

PROG = "scopeml-package"


def build_parser():
    parser = stage.parser(
        PROG,
        package.__doc__,
        here={
            stage.ExitCode.BAD_INPUT: "the source is not a selection.json with a winner nor a finished run folder, "
            "or a deploy override is bad"
        },
    )
    parser.add_argument("source", type=Path, help="selection.json from scopeml-select, or a training run folder")
    parser.add_argument(
        "overrides", nargs="*", help="config overrides for the deploy group, e.g. deploy=realtime_batching"
    )
    parser.add_argument(
        "--config-dir", help="your own config folder (e.g. a deploy/ option of yours), searched before scopeml's"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # overrides may follow --config-dir

    def work() -> None:
        print(package.package(args.source, args.overrides, config_dir=args.config_dir))  # the tag, for scripts

    return stage.run(PROG, work, bad_input=(package.PackageError,))


if __name__ == "__main__":
    sys.exit(main())

"""scopeml-loadtest: drive the running service and score it against the scoping targets (the work is
scopeml.serving.loadtest)."""

from __future__ import annotations

import sys
from pathlib import Path

from scopeml import stage
from scopeml.serving import loadtest

PROG = "scopeml-loadtest"


def build_parser():
    parser = stage.parser(
        PROG,
        loadtest.__doc__,
        here={
            stage.ExitCode.CHECK_FAILED: "a latency or throughput target was missed",
            stage.ExitCode.BAD_INPUT: "no service at --url",
        },
    )
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency level")
    parser.add_argument("--clips", type=Path, help="a folder of .wav files to send instead of the model's test split")
    parser.add_argument("--out", type=Path, help="where to write scorecard.json/.md (default: <run>/deployment)")
    parser.add_argument("--no-wandb", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> stage.ExitCode:
        met = loadtest.loadtest(
            args.url, args.concurrency, args.duration, args.clips, args.out, use_wandb=not args.no_wandb
        )
        return stage.ExitCode.OK if met else stage.ExitCode.CHECK_FAILED

    return stage.run(PROG, work, bad_input=(loadtest.LoadtestError,))


if __name__ == "__main__":
    sys.exit(main())

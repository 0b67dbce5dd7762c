"""scopeml-label: deliver ground-truth labels for logged predictions (the work is scopeml.monitoring.labels)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scopeml import stage
from scopeml.config.schema import DeployConfig
from scopeml.monitoring import labels

PROG = "scopeml-label"
DEFAULT_LOG = DeployConfig.prediction_log  # the service's default


def build_parser():
    parser = stage.parser(
        PROG,
        labels.__doc__,
        here={
            stage.ExitCode.CHECK_FAILED: "some labels were refused (they are listed)",
            stage.ExitCode.BAD_INPUT: "no such labels file or log, or missing columns",
        },
    )
    parser.add_argument("labels", type=Path, help="CSV or JSONL with request_id,label")
    parser.add_argument(
        "--log",
        default=os.environ.get("SCOPEML_PREDICTION_LOG", DEFAULT_LOG),
        help="the prediction log: a path, sqlite:///path or postgresql://user@host:port/db (default: %(default)s)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> stage.ExitCode:
        return stage.ExitCode.OK if labels.deliver(args.labels, args.log) else stage.ExitCode.CHECK_FAILED

    return stage.run(PROG, work, bad_input=(labels.LabelError,))


if __name__ == "__main__":
    sys.exit(main())

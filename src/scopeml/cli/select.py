"""scopeml-select: pick the model to ship from scopeml-train runs (the work is scopeml.selection)."""

from __future__ import annotations

import sys
from pathlib import Path

from scopeml import stage
from scopeml.metrics import METRICS
from scopeml.run_files import SELECTION_FILE
from scopeml.selection import SelectError, select

PROG = "scopeml-select"

DESCRIPTION = """\
Pick the model to ship from scopeml-train runs.

Rejects runs that did not complete, whose metrics.json is missing or corrupt, that missed
any offline scoping target, or whose primary metric is NaN. Ranks the rest by the primary
metric on the validation split (or the cross-validation mean; ties: smaller model, then
lower measured latency, then folder name) and writes selection.json: the winner's
checkpoint and files, the ranking, and every rejected run's reasons. The test split
chooses nothing: the winner's test figures are carried beside, reported once."""

EPILOG = """\
examples:
  scopeml-select outputs/sweeps/2024-05-01_12-00-00
  scopeml-select outputs/train/a outputs/train/b --out selection.json --primary accuracy
  scopeml-select outputs/sweeps/last --require latency_p95_ms"""


def build_parser():
    parser = stage.parser(
        PROG,
        DESCRIPTION,
        EPILOG,
        here={
            stage.ExitCode.CHECK_FAILED: "no run passed the gates (selection.json is still written, with "
            '"selected": null and each run\'s reasons)',
            stage.ExitCode.BAD_INPUT: "no runs found, or an unknown metric",
        },
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="SWEEP_DIR_OR_RUN_DIR",
        help="a run folder (holds status.json) or a sweep folder whose subfolders (depth 2) are runs",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where to write {SELECTION_FILE} (default: into the first path if it is a sweep folder, "
        "else the current folder)",
    )
    parser.add_argument(
        "--primary",
        metavar="METRIC",
        default=None,
        help="rank by this metric instead of metrics.json's primary_metric "
        f"({', '.join(m.name for m in METRICS.values() if m.phase == 'offline')})",
    )
    parser.add_argument(
        "--require",
        metavar="METRIC",
        nargs="+",
        action="extend",
        default=[],
        help="also require these targets to have been measured and met (targets not measured offline, "
        "e.g. latency_p95_ms, are otherwise reported but not gated); give it after the paths",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return stage.run(PROG, lambda: select(args.paths, args.out, args.primary, args.require), bad_input=(SelectError,))


if __name__ == "__main__":
    sys.exit(main())

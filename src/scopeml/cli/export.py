"""scopeml-export: turn a serving bundle into on-device artifacts, and check they still agree with it
(the work is scopeml.serving.edge)."""

from __future__ import annotations

import sys
from pathlib import Path

from scopeml import stage
from scopeml.serving import edge

PROG = "scopeml-export"


def build_parser():
    parser = stage.parser(PROG, edge.__doc__, here={
        stage.ExitCode.CHECK_FAILED: "a float export missed deploy.parity_tolerance",
        stage.ExitCode.BAD_INPUT: "a bad SOURCE or argument"})
    parser.add_argument("source", type=Path, help="selection.json, training run folder, or serving bundle folder")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--no-quantize", action="store_true", help="skip model_int8.ts (default: deploy.quantize)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for inference and latency (default 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")

    def work() -> stage.ExitCode:
        report = edge.export(args.source, args.out, quantize=False if args.no_quantize else None, threads=args.threads)
        print((args.out / edge.REPORT_MD).read_text())
        if not report["float_exports_within_tolerance"]:
            print(f"{PROG}: a float export disagrees with the bundle beyond deploy.parity_tolerance", file=sys.stderr)
            return stage.ExitCode.CHECK_FAILED
        return stage.ExitCode.OK

    return stage.run(PROG, work, bad_input=(edge.EdgeError,))


if __name__ == "__main__":
    sys.exit(main())

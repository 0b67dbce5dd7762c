"""scopeml-simulate: send production scenarios to the running service, keeping the true labels for later
(the work is scopeml.monitoring.simulate)."""

from __future__ import annotations

import sys
from pathlib import Path

from scopeml import stage
from scopeml.monitoring import simulate

PROG = "scopeml-simulate"


def build_parser():
    names = ", ".join(sorted(p.stem for p in simulate.CONF.glob("*.yaml")))
    parser = stage.parser(
        PROG, simulate.__doc__, here={stage.ExitCode.BAD_INPUT: "a bad scenario, or no service at --url"}
    )
    parser.add_argument("scenarios", nargs="+", help=f"names in conf/simulate ({names}) or YAML paths")
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--out", type=Path, default=Path("outputs/simulate"))
    parser.add_argument("--batch-dir", type=Path, help="write WAV files for scopeml-batch instead of sending them")
    parser.add_argument("--clips", type=int, help="override every scenario's clip count")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        simulate.simulate(args.scenarios, args.url, args.out, args.batch_dir, args.clips)

    return stage.run(PROG, work, bad_input=(simulate.SimulateError,))


if __name__ == "__main__":
    sys.exit(main())

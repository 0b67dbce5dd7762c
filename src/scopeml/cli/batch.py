"""scopeml-batch: score a folder of audio files or a manifest offline (the work is scopeml.serving.batch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scopeml import stage
from scopeml.config.schema import DeployConfig
from scopeml.serving import batch

PROG = "scopeml-batch"
DEFAULT_LOG = DeployConfig.prediction_log  # the service's default


def build_parser():
    parser = stage.parser(
        PROG,
        batch.__doc__,
        here={
            stage.ExitCode.BAD_INPUT: "no such folder or manifest, no audio in it, symbolic links or paths outside "
            "the input root (each named), no such model, or an --out folder begun with another model"
        },
    )
    parser.add_argument(
        "source", type=Path, help="a folder of .wav/.flac files, or a CSV/JSONL manifest with a `path` column"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder: one job (re-use it to resume; a new one is a new job)"
    )
    parser.add_argument(
        "--root", type=Path, help="paths must stay under this folder (default: the folder, or the manifest's folder)"
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("SCOPEML_MODEL_TAG", "scopeml-kws:latest"),
        help="BentoML model tag (default: %(default)s)",
    )
    parser.add_argument("--bundle", type=Path, help="a serving bundle folder instead of the BentoML store")
    parser.add_argument(
        "--log",
        default=os.environ.get("SCOPEML_PREDICTION_LOG", DEFAULT_LOG),
        help="prediction log to append to: a path, sqlite:///path or postgresql://user@host:port/db "
        "(default: %(default)s)",
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        print(
            batch.score_files(
                args.source, args.out, args.model, args.bundle, args.root, args.batch_size, args.log, args.format
            )
        )

    return stage.run(PROG, work, bad_input=(batch.BatchError,))


if __name__ == "__main__":
    sys.exit(main())

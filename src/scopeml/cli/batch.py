"""scopeml-batch: score a folder of audio files or a manifest offline (the work is scopeml.serving.batch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from scopeml import stage
from scopeml.config.schema import DeployConfig
from scopeml.serving import batch
from scopeml.serving.batch_ray import RayEngine

PROG = "scopeml-batch"
DEFAULT_LOG = DeployConfig.prediction_log  # the service's default


def build_parser():
    parser = stage.parser(
        PROG,
        batch.__doc__,
        here={
            stage.ExitCode.BAD_INPUT: "no such folder or manifest, no audio in it, symbolic links or paths outside "
            "the input root (each named), no such model, an --out folder begun with another model, or (--engine ray) "
            "a Ray address where no Ray cluster answers"
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
    ray = parser.add_argument_group("Ray (--engine ray: the same job on Ray Data workers; see docs/deployment.md)")
    ray.add_argument(
        "--engine",
        choices=["process", "ray"],
        default="process",
        help="process: score in this process; ray: on --workers map_batches actors (default: %(default)s)",
    )
    ray.add_argument(
        "--ray-address",
        help="a running cluster, HOST:PORT as `ray start --head` prints it (default: $RAY_ADDRESS when set, else "
        "Ray started on this machine for the job)",
    )
    ray.add_argument("--workers", type=int, help=f"actors, each holding the model (default: {RayEngine.workers})")
    ray.add_argument(
        "--cpus-per-worker",
        type=float,
        help=f"Ray CPUs (and torch threads) per actor (default: {RayEngine.cpus_per_worker:g})",
    )
    return parser


def engine(args):
    """The Ray engine the arguments ask for, or None (this process); BatchError for Ray options without it."""
    given = {"address": args.ray_address, "workers": args.workers, "cpus_per_worker": args.cpus_per_worker}
    given = {k: v for k, v in given.items() if v is not None}
    if args.engine == "ray":
        return RayEngine(**given)
    if given:
        flags = ", ".join("--" + ("ray-address" if k == "address" else k.replace("_", "-")) for k in given)
        raise batch.BatchError(f"{flags}: only with --engine ray")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> None:
        print(
            batch.score_files(
                args.source,
                args.out,
                args.model,
                args.bundle,
                args.root,
                args.batch_size,
                args.log,
                args.format,
                engine(args),
            )
        )

    return stage.run(PROG, work, bad_input=(batch.BatchError,))


if __name__ == "__main__":
    sys.exit(main())

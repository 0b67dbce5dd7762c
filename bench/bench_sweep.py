"""Scale-out on one machine: a sweep run sequentially vs with the joblib launcher, and DDP on 2 CPU processes vs 1.

    python bench/bench_sweep.py [--jobs 4] [--epochs 3] [--voices 20]

Both sides run the real `scopeml-train` CLI on the same cached data (synthesized keywords,
--voices voices) and the same configs; wall time includes each job's start-up, as a user sees it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "scopeml.cli.train", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"scopeml-train failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--voices", type=int, default=20)
    args = parser.parse_args()

    from scopeml.data import espeak

    voices = ",".join(espeak.list_voices("en")[: args.voices])
    with tempfile.TemporaryDirectory(prefix="scopeml-bench-sweep-") as tmp:
        os.environ.setdefault("SCOPEML_CACHE_DIR", str(Path(tmp) / "cache"))
        common = [
            f"++data.source.voices=[{voices}]",
            f"hparams.max_epochs={args.epochs}",
            "trainer.progress_bar=none",
            "tracker=none",
        ]
        lrs = ",".join(f"{0.001 * (i + 1):.3f}" for i in range(args.jobs))
        run([*common, f"hydra.run.dir={tmp}/warm", "hparams.max_epochs=1"])  # builds the data cache once

        seq = run(["-m", f"hydra.sweep.dir={tmp}/seq", *common, f"hparams.lr={lrs}"])
        seq1 = run(["-m", f"hydra.sweep.dir={tmp}/seq1", *common, "trainer.num_threads=1", f"hparams.lr={lrs}"])
        par = run(
            [
                "-m",
                f"hydra.sweep.dir={tmp}/par",
                "hydra/launcher=parallel",
                "trainer.num_threads=1",
                *common,
                f"hparams.lr={lrs}",
            ]
        )
        print(f"sweep of {args.jobs} jobs x {args.epochs} epochs, {args.voices} voices, {os.cpu_count()} cores")
        print(f"{'':<44}{'seconds':>9}{'speed-up':>10}")
        print(f"{'sequential (basic launcher, 2 threads/job)':<44}{seq:>9.1f}{1.0:>10.2f}")
        print(f"{'sequential (basic launcher, 1 thread/job)':<44}{seq1:>9.1f}{seq / seq1:>10.2f}")
        print(f"{'joblib launcher, 2 jobs at once, 1 thread':<44}{par:>9.1f}{seq / par:>10.2f}")

        ddp_args = [*common, "hparams.max_epochs=4"]
        one = run([*ddp_args, f"hydra.run.dir={tmp}/one"])
        two = run([*ddp_args, "trainer=ddp_cpu", f"hydra.run.dir={tmp}/ddp"])
        print(f"\nsingle run, 4 epochs{'':<24}{'seconds':>9}{'speed-up':>10}")
        print(f"{'1 process, 2 threads':<44}{one:>9.1f}{1.0:>10.2f}")
        print(f"{'DDP, 2 processes x 1 thread (gloo)':<44}{two:>9.1f}{one / two:>10.2f}")


if __name__ == "__main__":
    main()

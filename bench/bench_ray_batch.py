"""scopeml-batch on Ray Data workers vs the single-process job vs the bare batched model call, in one run.

    .venv/bin/python bench/bench_ray_batch.py [--model TAG | --bundle DIR] [--clips 2000] [--workers 2]

The model: --bundle (a serving bundle folder), or --model from the BentoML store in $BENTOML_HOME (default: the
lifecycle's store, outputs/lifecycle/bentoml, and scopeml-kws:latest). The input: --clips generated 1 s WAV files at
16 kHz (a decaying tone in noise, a few seconds to write), scored three ways:

- single process: scopeml.serving.batch.score_files as scopeml-batch runs it (decode, preprocess, monitoring
  features, the model in batches of --batch-size, the prediction log, the parts), with torch's default threads and
  again with one thread;
- Ray: the same call with --engine ray on --workers local actors of --cpus-per-worker CPUs (one torch thread each),
  on a Ray started once before it (its start-up is printed apart; the job's own wall includes its actors' start-up);
- the limit: the same model's predict on the clips already prepared, --batch-size at a time, in this process: what
  the model alone costs, without reading, preprocessing, features, logging or writing (with torch's default
  threads, and with one thread: what each Ray worker has).

Each job writes a fresh --out and log. Prints clips/s and the ratios, and the load average before and after (the
machine is shared: figures from a busy machine say so). Results: docs/benchmarks.md#batch-scoring-on-ray-data.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_clips(folder: Path, n: int, sr: int = 16000) -> list[Path]:
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(sr) / sr
    paths = []
    for i in range(n):
        (folder / f"d{i // 500}").mkdir(parents=True, exist_ok=True)
        tone = np.sin(2 * np.pi * rng.uniform(120, 2500) * t) * np.exp(-t * rng.uniform(0.5, 6))
        x = 0.3 * tone + rng.normal(0, rng.uniform(0.002, 0.05), sr)
        paths.append(folder / f"d{i // 500}" / f"clip{i:05d}.wav")
        sf.write(paths[-1], x.astype(np.float32), sr, subtype="PCM_16")
    return paths


def load_average() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=os.environ.get("SCOPEML_MODEL_TAG", "scopeml-kws:latest"))
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus-per-worker", type=float, default=1.0)
    args = parser.parse_args()
    os.environ.setdefault("BENTOML_HOME", str(ROOT / "outputs" / "lifecycle" / "bentoml"))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

    import torch

    from scopeml.serving import batch
    from scopeml.serving.batch_ray import LOCAL_OBJECT_STORE_BYTES, RayEngine

    before = load_average()
    with tempfile.TemporaryDirectory(prefix="scopeml-bench-ray-batch-") as tmp:
        tmp = Path(tmp)
        paths = write_clips(tmp / "clips", args.clips)
        bundle = batch.load_bundle(args.model, args.bundle)
        print(f"model {bundle.tag}, {args.clips} clips of 1 s at 16 kHz, batch {args.batch_size}, {before}")

        threads = torch.get_num_threads()
        started = time.perf_counter()
        batch.score_files(tmp / "clips", tmp / "single", args.model, args.bundle, None, args.batch_size, tmp / "1.db")
        single = time.perf_counter() - started
        torch.set_num_threads(1)
        started = time.perf_counter()
        batch.score_files(tmp / "clips", tmp / "single1", args.model, args.bundle, None, args.batch_size, tmp / "3.db")
        single1 = time.perf_counter() - started
        torch.set_num_threads(threads)

        import ray

        started = time.perf_counter()
        cpus = max(1, round(args.workers * args.cpus_per_worker))
        ray.init(address="local", num_cpus=cpus, num_gpus=0, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                 include_dashboard=False, logging_level=logging.WARNING)  # fmt: skip
        ray_start = time.perf_counter() - started
        engine = RayEngine(None, args.workers, args.cpus_per_worker, progress=False)
        started = time.perf_counter()
        batch.score_files(
            tmp / "clips", tmp / "ray", args.model, args.bundle, None, args.batch_size, tmp / "2.db", engine=engine
        )
        on_ray = time.perf_counter() - started
        ray.shutdown()

        waves = np.stack([bundle.prepare(*_read(p)) for p in paths])
        limit = model_call(bundle, waves, args.batch_size)
        torch.set_num_threads(1)
        limit1 = model_call(bundle, waves, args.batch_size)
        torch.set_num_threads(threads)

        import pandas as pd

        a = pd.read_parquet(tmp / "single" / "predictions.parquet")
        b = pd.read_parquet(tmp / "ray" / "predictions.parquet")
        probs = [c for c in a.columns if c.startswith("prob_")]
        same = (a["label"] == b["label"]).all()
        diff = float(np.abs(a[probs].to_numpy() - b[probs].to_numpy()).max())

    n = args.clips
    rows = [
        (f"single process ({threads} torch threads; scopeml-batch)", single),
        ("single process (1 torch thread)", single1),
        (f"Ray Data, {args.workers} local workers x {args.cpus_per_worker:g} CPU", on_ray),
        (f"in-process batched model call ({threads} threads): the limit", limit),
        ("in-process batched model call (1 thread)", limit1),
    ]
    print(f"\n{'':<52}{'seconds':>9}{'clips/s':>10}{'vs single':>11}{'vs limit':>10}")
    for name, seconds in rows:
        print(f"{name:<52}{seconds:9.2f}{n / seconds:10.1f}{single / seconds:11.2f}{limit / seconds:10.2f}")
    print(f"Ray start-up (ray.init, local, before the job): {ray_start:.1f} s; with it the Ray job runs "
          f"{n / (on_ray + ray_start):.1f} clips/s ({single / (on_ray + ray_start):.2f}x single)")  # fmt: skip
    print(f"predictions: labels identical {same}, max |probability difference| {diff:.1e}")
    print(f"before: {before}; after: {load_average()}; {os.cpu_count()} cores")


def model_call(bundle, waves: np.ndarray, batch_size: int) -> float:
    """Seconds for bundle.predict over `waves`, `batch_size` at a time, after one warm-up call."""
    bundle.predict(waves[:batch_size])
    started = time.perf_counter()
    for i in range(0, len(waves), batch_size):
        bundle.predict(waves[i : i + batch_size])
    return time.perf_counter() - started


def _read(path: Path):
    import soundfile as sf

    samples, sr = sf.read(path, dtype="float32")
    return samples, sr


if __name__ == "__main__":
    sys.exit(main())

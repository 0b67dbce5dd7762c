"""Monitoring cost: scopeml-monitor on 100,000 logged predictions of a 10-class model.

    python bench/bench_monitor.py [--rows 100000] [--reference 2000] [--chunk-size 200] [--labelled 0.2] [--keep DIR]

Generates a packaged model (serving.json and a 2,000-row reference with calibrated
probabilities) in a temporary BentoML store, and a prediction log written with PredictionLog
as the service writes it: a week of traffic, the last 30% from higher voices in noisier rooms,
with labels delivered for a fraction of the rows. Then runs the real CLI in a subprocess pinned
to 2 CPU cores and reports wall time and peak memory (maximum resident set size of the
process, from /usr/bin/time -v or getrusage) against the targets (<= 60 s, <= 2 GB), and the
stage's own breakdown from summary.json (read log, NannyML import, CBPE, drift, realized, report).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
FEATURES = {
    "duration_s": (1.0, 0.15),
    "rms_dbfs": (-24.0, 5.0),
    "silence_ratio": (0.35, 0.1),
    "spectral_centroid_hz": (1500.0, 250.0),
    "snr_db": (24.0, 6.0),
}
TARGET_S, TARGET_GB, CORES = 60.0, 2.0, 2
MAKE_MODEL = """
import pathlib, shutil, sys
import bentoml
with bentoml.models.create("scopeml-kws", labels={"project": "scopeml"}) as model:
    for item in pathlib.Path(sys.argv[1]).iterdir():
        shutil.copy(item, pathlib.Path(model.path) / item.name)
print(model.tag)
"""


def generate(n: int, rng: np.random.Generator, shift: float = 0.0) -> dict:
    """Calibrated predictions (true class drawn from the probabilities).

    shift in [0, 1] moves voices up, SNR down, confidence down.
    """
    logits = rng.normal(0.0, 1.0, (n, len(CLASSES)))
    logits[np.arange(n), rng.integers(0, len(CLASSES), n)] += 6.0 - 3.5 * shift
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = (rng.random(n)[:, None] < probs.cumsum(axis=1)).argmax(axis=1)
    feats = {f: rng.normal(mean, sd, n) for f, (mean, sd) in FEATURES.items()}
    feats["spectral_centroid_hz"] *= 1 + 0.5 * shift
    feats["snr_db"] -= 12.0 * shift
    feats["silence_ratio"] = np.clip(feats["silence_ratio"], 0, 1)
    return {"probs": probs, "pred": probs.argmax(axis=1), "truth": truth, "features": feats}


def package(home: Path, n_ref: int, rng: np.random.Generator) -> str:
    g = generate(n_ref, rng)
    ref = pd.DataFrame(
        {
            "request_id": [f"val-{i}" for i in range(n_ref)],
            "speaker": [f"spk{i % 40}" for i in range(n_ref)],
            "label": [CLASSES[i] for i in g["truth"]],
            "pred": [CLASSES[i] for i in g["pred"]],
            "confidence": g["probs"].max(axis=1),
        }
    )
    for i, c in enumerate(CLASSES):
        ref[f"prob_{c}"] = g["probs"][:, i]
    for f, v in g["features"].items():
        ref[f] = v
    ref["time_utc"] = pd.Timestamp("2000-01-01", tz="UTC") + pd.to_timedelta(np.arange(n_ref), unit="s")
    bundle = home.parent / "bundle"
    bundle.mkdir()
    (bundle / "serving.json").write_text(json.dumps({"classes": CLASSES, "scoping": {"name": "kws10"}, "metrics": {}}))
    ref.to_parquet(bundle / "reference.parquet", index=False)
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    made = subprocess.run(
        [sys.executable, "-c", MAKE_MODEL, str(bundle)], capture_output=True, text=True, env=env, check=True
    )
    return made.stdout.strip().splitlines()[-1]


def write_log(path: Path, tag: str, n: int, labelled: float, rng: np.random.Generator) -> None:
    from scopeml.monitoring.labels import ingest
    from scopeml.serving.log import PredictionLog

    n_drift = int(0.3 * n)
    parts = [generate(n - n_drift, rng), generate(n_drift, rng, shift=1.0)]
    start = pd.Timestamp("2024-05-01", tz="UTC")
    seconds = np.sort(rng.uniform(0, 7 * 24 * 3600, n))
    log, truth, i = PredictionLog(path), [], 0
    for g in parts:
        batch = []
        for k in range(len(g["pred"])):
            p = g["probs"][k]
            batch.append(
                {
                    "time_utc": (start + pd.Timedelta(seconds=float(seconds[i]))).isoformat(timespec="milliseconds"),
                    "request_id": f"req-{i:07d}",
                    "model_tag": tag,
                    "endpoint": "classify",
                    "source": f"clip{i}.wav",
                    "label": CLASSES[g["pred"][k]],
                    "confidence": float(p.max()),
                    "probabilities": {c: float(x) for c, x in zip(CLASSES, p)},
                    **{f: float(v[k]) for f, v in g["features"].items()},
                }
            )
            truth.append(CLASSES[g["truth"][k]])
            i += 1
            if len(batch) == 5000:
                log.append(batch)
                batch = []
        log.append(batch)
    log.close()
    picked = rng.choice(n, int(labelled * n), replace=False)
    ingest(path, pd.DataFrame({"request_id": [f"req-{j:07d}" for j in picked], "label": [truth[j] for j in picked]}))


def run_monitor(home: Path, log: Path, out: Path, chunk_size: int) -> tuple[subprocess.CompletedProcess, float, float]:
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "True",
        "HYDRA_FULL_ERROR": "1",
        **{k: str(CORES) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    cmd = [
        sys.executable,
        "-m",
        "scopeml.cli.monitor",
        f"hydra.run.dir={out}",
        f"monitor.log={log}",
        "tracker=none",
        f"monitor.chunk_size={chunk_size}",
    ]
    timer = Path("/usr/bin/time")
    if timer.exists():
        cmd = [str(timer), "-v", *cmd]
    cores = sorted(os.sched_getaffinity(0))[:CORES]
    started = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, env=env, preexec_fn=lambda: os.sched_setaffinity(0, cores)
    )
    wall = time.perf_counter() - started
    peak_kb = next(
        (int(line.split(":")[1]) for line in proc.stderr.splitlines() if "Maximum resident set size" in line),
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return proc, wall, peak_kb / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reference", type=int, default=2000)
    parser.add_argument("--chunk-size", type=int, default=200)
    parser.add_argument("--labelled", type=float, default=0.2, help="fraction of rows with delivered labels")
    parser.add_argument("--keep", type=Path, help="keep the store, log and run folder here")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    work = Path(tempfile.mkdtemp(prefix="bench-monitor-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        tag = package(work / "bentoml", args.reference, rng)
        write_log(work / "predictions.sqlite", tag, args.rows, args.labelled, rng)
        print(
            f"generated {args.rows:,} logged predictions ({args.labelled:.0%} labelled) "
            f"and a {args.reference:,}-row reference for {tag} in {time.perf_counter() - t0:.1f} s; "
            f"log {(work / 'predictions.sqlite').stat().st_size / 1e6:.1f} MB"
        )
        proc, wall, peak_gb = run_monitor(work / "bentoml", work / "predictions.sqlite", work / "run", args.chunk_size)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"scopeml-monitor exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        summary = json.loads((work / "run" / "summary.json").read_text())
        timings = summary["timings_s"]
        print(
            f"\nscopeml-monitor on {CORES} cores: exit {proc.returncode}, "
            f"{summary['counts']['chunks']} chunks of {args.chunk_size}, "
            f"drifted {summary['drifted_features']}, {summary['counts']['performance_alerts']} performance alert(s)"
        )
        print(f"  wall time    {wall:6.1f} s    target <= {TARGET_S:.0f} s   {'PASS' if wall <= TARGET_S else 'FAIL'}")
        print(
            f"  peak memory  {peak_gb:6.2f} GB   target <= {TARGET_GB:.0f} GB   "
            f"{'PASS' if peak_gb <= TARGET_GB else 'FAIL'}"
        )
        print("  breakdown (the stage's own timings):")
        for name, seconds in timings.items():
            print(f"    {name:<15} {seconds:6.1f} s")
        print(
            f"    {'startup/other':<15} {wall - sum(timings.values()):6.1f} s   (interpreter, Hydra, config, W&B off)"
        )
        print(f"  report.html {(work / 'run' / 'report.html').stat().st_size / 1e6:.1f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Optuna search with and without pruning, side by side: trials per hour and the best validation score after N trials.

    python bench/bench_optuna.py [--trials 16] [--epochs 8] [--voices 12] [--workers 1] [--startup 4] [--warmup 0]

Both sides run the real `scopeml-train -m hparams_search=optuna` on the same cached data (synthesized keywords, the
ten commands of scoping=keywords10, --voices voices), the same search space, sampler seed and number of trials;
the only difference is the pruner (MedianPruner with --startup completed trials before it prunes and --warmup
epochs never judged, vs NopPruner). With --workers W, W processes share each study through
a journal file, each running trials/W of them. Wall time includes every job's start-up, as a user sees it.
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
SPACE = {  # wide on purpose: part of it trains badly, which is what a pruner is for
    "hparams.lr": "tag(log, interval(1e-5, 0.1))",
    "model.dropout": "choice(0.0, 0.1, 0.3)",
    "hparams.batch_size": "choice(16, 32, 64)",
}


def sweep(folder: Path, common: list[str], pruner: list[str], trials: int, workers: int) -> float:
    from scopeml import hpo

    store = folder / "study.journal"
    folder.mkdir(parents=True)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            hpo.worker_command(
                store, trials // workers + (i < trials % workers), folder / f"worker{i}", [*common, *pruner]
            ),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"scopeml-train failed:\n{err[-3000:]}")
    return time.perf_counter() - started


def summarize(folder: Path, seconds: float) -> dict:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    study = optuna.load_study(study_name="scopeml", storage=storage)
    trials = study.get_trials()
    state = optuna.trial.TrialState
    complete = [t for t in trials if t.state == state.COMPLETE]
    best = max(complete, key=lambda t: t.value) if complete else None
    return {
        "trials": len(trials),
        "complete": len(complete),
        "pruned": sum(t.state == state.PRUNED for t in trials),
        "failed": sum(t.state == state.FAIL for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in trials),
        "seconds": seconds,
        "per_hour": len(trials) / seconds * 3600,
        "best": best.value if best else float("nan"),
        "best_trial": best.number if best else None,
        "best_params": best.params if best else {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--voices", type=int, default=12)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup", type=int, default=4, help="MedianPruner n_startup_trials")
    parser.add_argument("--warmup", type=int, default=0, help="MedianPruner n_warmup_steps (epochs, from 0)")
    args = parser.parse_args()
    pruners = {
        "median pruner": [
            "hydra/sweeper/pruner=median",
            f"hydra.sweeper.pruner.n_startup_trials={args.startup}",
            f"hydra.sweeper.pruner.n_warmup_steps={args.warmup}",
        ],
        "no pruning": ["hydra/sweeper/pruner=nop"],
    }

    from scopeml.data import espeak

    voices = ",".join(espeak.list_voices("en")[: args.voices])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="scopeml-bench-optuna-") as tmp:
        os.environ.setdefault("SCOPEML_CACHE_DIR", str(Path(tmp) / "cache"))
        data = ["scoping=keywords10", f"++data.source.voices=[{voices}]"]
        warm = subprocess.run(
            [sys.executable, "-m", "scopeml.cli.data", *data, f"hydra.run.dir={tmp}/data", "tracker=none"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )  # builds the data cache once, outside both timings
        if warm.returncode not in (0, 1):  # 1: a data check failed; the clips are cached all the same
            raise SystemExit(f"scopeml-data failed:\n{warm.stderr[-3000:]}")
        common = [
            "hparams_search=optuna",
            "hydra.sweeper.params=null",
            *(f"{k}={v}" for k, v in SPACE.items()),
            f"hydra.sweeper.sampler.seed={args.seed}",
            *data,
            f"hparams.max_epochs={args.epochs}",
            "trainer.progress_bar=none",
            "tracker=none",
            *(["trainer.num_threads=1"] if args.workers > 1 else []),
        ]
        results = {}
        for name, pruner in pruners.items():
            folder = Path(tmp) / name.replace(" ", "_")
            results[name] = summarize(folder, sweep(folder, common, pruner, args.trials, args.workers))
            print(f"{name}: {results[name]}", flush=True)
    load_after = os.getloadavg()

    print(
        f"\n{args.trials} trials, {args.epochs} epochs max, {args.voices} voices, {args.workers} worker(s), "
        f"sampler seed {args.seed}, median pruner n_startup_trials={args.startup} n_warmup_steps={args.warmup}; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    )
    rows = [
        ("wall time (s)", "seconds", "{:.0f}"),
        ("trials per hour", "per_hour", "{:.0f}"),
        ("epochs trained", "epochs", "{}"),
        ("complete / pruned / failed", None, None),
        ("best val macro_f1", "best", "{:.4f}"),
        ("best trial", "best_trial", "{}"),
    ]
    names = list(results)
    print("| | " + " | ".join(names) + " | ratio |")
    print("|---|" + "---|" * (len(names) + 1))
    a, b = (results[n] for n in names)
    for label, key, fmt in rows:
        if key is None:
            cells = [f"{r['complete']} / {r['pruned']} / {r['failed']}" for r in (a, b)]
            print(f"| {label} | " + " | ".join(cells) + " | |")
            continue
        ratio = f"{a[key] / b[key]:.2f}" if key in ("seconds", "per_hour", "epochs", "best") and b[key] else ""
        print(f"| {label} | {fmt.format(a[key])} | {fmt.format(b[key])} | {ratio} |")
    for name in names:
        print(f"{name}: best params {results[name]['best_params']}")


if __name__ == "__main__":
    main()

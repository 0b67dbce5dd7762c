"""Sweeps through submitit (hydra/launcher=submitit_slurm on a SLURM cluster): its local executor runs the same path
here, each job a submitit job in its own process, pickled and unpickled as on SLURM."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import TINY_DATA, read_json, run_cli

pytestmark = pytest.mark.slow


def test_sweep_on_submitit_local(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "scopeml.cli.train",
        "-m",
        "hydra/launcher=submitit_local",
        f"hydra.sweep.dir={sweep}",
        *TINY_DATA,
        "hparams.max_epochs=1",
        "trainer.progress_bar=none",
        "trainer.num_threads=1",  # the local executor starts every job at once: one thread each on 2 cores
        "tracker=none",
        "hparams.lr=0.001,0.003",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(summary["status"]) == ["complete", "complete"]
    assert list(summary["overrides"]) == ["hparams.lr=0.001", "hparams.lr=0.003"]
    for job, lr in (("0", 0.001), ("1", 0.003)):
        run = sweep / job
        assert f"lr: {lr}" in (run / "config.yaml").read_text()
        metrics = read_json(run / "metrics.json")
        assert not math.isnan(metrics["val"]["accuracy"]) and metrics["latency_ms"]["threads"] == 1
        assert (run / "checkpoints" / "best.ckpt").exists()
    assert len(list((sweep / ".submitit").glob("*/*_log.out"))) == 2  # submitit's own logs, one per job

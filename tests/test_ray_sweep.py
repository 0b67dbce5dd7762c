"""Sweeps on Ray (hydra/launcher=ray, scopeml.launchers): a real cluster joined by address, a failing trial in the
same sweep, a job Ray lost, and a wrong address that fails at start-up."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, TINY_DATA, TINY_FIT, offline_run, read_json, refused_sweep
from ray_cluster import ray_cluster  # noqa: F401  (a real head node on loopback, one per file)

pytestmark = pytest.mark.slow


def test_sweep_on_a_ray_cluster_by_address(tmp_path, ray_cluster):  # noqa: F811
    """Three jobs on a 2-CPU head node: the first fails (a model the network refuses), the other two complete.

    Launched from another folder than the cluster's, with a relative sweep folder: jobs must run where the sweep was
    launched, or the driver's summary would find none of them.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "scopeml.cli.train", "-m", "hydra/launcher=ray",
         f"hydra.launcher.ray.init.address={ray_cluster}", "hydra.sweep.dir=sweep", *TINY_DATA, *TINY_FIT,
         "model.dropout=1.5,0.0,0.1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},  # with the fixture's token authentication settings
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ConnectionResetError" not in proc.stderr  # W&B's service stopped inside each task, before Ray's exit
    sweep = tmp_path / "sweep"
    summary = pd.read_csv(sweep / "sweep_summary.csv")
    assert list(summary["job"]) == [0, 1, 2] and list(summary["status"]) == ["failed", "complete", "complete"]
    assert summary.loc[0, "overrides"] == "model.dropout=1.5"
    assert "## Failed jobs" in (sweep / "sweep_summary.md").read_text()
    failed = read_json(sweep / "0" / "status.json")
    assert failed["stage"] == "build" and "dropout must be in [0, 1)" in failed["error"]
    assert not (sweep / "0" / "metrics.json").exists()

    runs = {}
    for job, dropout in (("1", 0.0), ("2", 0.1)):
        run = sweep / job
        assert read_json(run / "status.json")["status"] == "complete"
        assert f"dropout: {dropout}" in (run / "config.yaml").read_text()  # the job's own resolved config
        metrics = read_json(run / "metrics.json")
        assert not math.isnan(metrics["val"]["accuracy"])
        assert metrics["latency_ms"]["threads"] == 1  # remote.num_cpus=1: Ray set OMP_NUM_THREADS, torch followed
        assert (run / "checkpoints" / "best.ckpt").exists() and (run / "predictions_val.parquet").exists()
        (wandb_run,) = (run / "wandb").glob("offline-run-*")  # each job its own W&B run, in the sweep's group
        runs[job] = offline_run(wandb_run)
        assert runs[job]["group"] == "sweep" and runs[job]["name"] == job
    assert runs["1"]["id"] != runs["2"]["id"]
    (summary_run,) = (sweep / "wandb").glob("offline-run-*")  # the summary table, in the same group
    logged = offline_run(summary_run)
    assert logged["group"] == "sweep" and logged["summary"]["failed"] == 1
    assert not (ROOT / "sweep").exists()


def test_unreachable_ray_address_fails_at_start_up(tmp_path):
    stderr = refused_sweep(
        tmp_path / "sweep",
        "hydra/launcher=ray",
        "hydra.launcher.ray.init.address=127.0.0.1:1",
        "hparams.lr=0.001,0.003",
    )
    assert "hydra.launcher.ray.init.address" in stderr and "127.0.0.1:1" in stderr


def test_a_job_ray_lost_is_recorded_and_returns_nan(tmp_path):
    """A worker killed mid-job (out of memory, a lost node) surfaces as a Ray error in the driver: the job is marked
    failed where its run folder is, and the sweep summary lists it, even when it never started."""
    from hydra import compose, initialize_config_dir
    from ray.exceptions import WorkerCrashedError

    from scopeml.config.paths import conf_dir
    from scopeml.launchers import lost_job
    from scopeml.sweep import summarize

    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("config", [f"hydra.sweep.dir={tmp_path}", "hparams.lr=0.01"], return_hydra_config=True)
    cfg.hydra.job.num = 3
    ret = lost_job(WorkerCrashedError(), ["hparams.lr=0.01"], cfg)
    assert math.isnan(ret.return_value) and Path(ret.working_dir) == tmp_path / "3"
    (row,) = summarize(tmp_path)
    assert row["status"] == "failed" and "WorkerCrashedError" in row["error"]


def test_only_non_secret_variables_reach_the_jobs(monkeypatch):
    from scopeml.launchers import FORWARD_ENV, forwarded_environment

    monkeypatch.setenv("SCOPEML_CACHE_DIR", "/data/cache")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", "sekret")
    monkeypatch.setenv("UNRELATED", "x")
    monkeypatch.setenv("WANDB_SERVICE", "2-123-tcp-localhost-45678")  # another process's W&B service: jobs stop it
    env = forwarded_environment(FORWARD_ENV)
    assert env["SCOPEML_CACHE_DIR"] == "/data/cache" and env["WANDB_MODE"] == "offline"
    assert "WANDB_API_KEY" not in env and "UNRELATED" not in env and "WANDB_SERVICE" not in env


def test_ray_init_arguments_start_here_or_join():
    """null starts Ray here with the laptop settings; an address (or $RAY_ADDRESS) joins without the settings Ray
    refuses when joining (the plugin as released always passed object_store_memory: Hydra issue #2893)."""
    from omegaconf import OmegaConf

    from scopeml.config.paths import conf_dir
    from scopeml.launchers import init_arguments

    init = OmegaConf.to_container(OmegaConf.load(conf_dir() / "hydra" / "launcher" / "ray.yaml").ray.init)
    args, key, joining = init_arguments(init, {})
    assert not joining and args["address"] == "local" and args["object_store_memory"] == 200_000_000
    args, key, joining = init_arguments({**init, "address": "10.0.0.5:6379"}, {})
    assert joining and args == {"address": "10.0.0.5:6379"} and key == "hydra.launcher.ray.init.address"
    args, key, joining = init_arguments(init, {"RAY_ADDRESS": "10.0.0.6:6379"})
    assert joining and args == {"address": "10.0.0.6:6379"} and key.startswith("RAY_ADDRESS")

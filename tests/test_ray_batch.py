"""scopeml-batch --engine ray (scopeml.serving.batch_ray) on a real Ray head node: the same predictions as the
single-process job, each record logged once through a SIGKILL of the driver and its resume (on a Ray started by the job
itself), nothing added by a re-run, and addresses that cannot work refused in seconds naming the setting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, write_wav
from ray_cluster import ray_cluster  # noqa: F401  (a real head node on loopback, one per file)

pytestmark = pytest.mark.slow

N_CLIPS = 300


def clips(folder: Path) -> Path:
    """N_CLIPS tones at three rates, some stereo, in two sub-folders, and two files the model cannot use."""
    for i in range(N_CLIPS):
        (folder / f"day{i % 2}").mkdir(parents=True, exist_ok=True)
        sr, channels = (8000, 16000, 22050)[i % 3], 1 + (i % 7 == 0)
        write_wav(folder / f"day{i % 2}" / f"clip{i:03d}.wav", 0.2 + (i % 5) / 10, sr, 150.0 + 13 * i, channels)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEgarbage")
    write_wav(folder / "silent.wav", freq=0.0)  # sin(0) everywhere: digital silence
    return folder


def batch_cli(*args, env: dict, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scopeml.cli.batch", *map(str, args)],
        cwd=ROOT, env={**os.environ, **env}, text=True, **popen,
    )  # fmt: skip


def finished(proc: subprocess.Popen, timeout: float = 180) -> str:
    """The job's output (progress on stdout, Ray's lines on stderr), once it succeeded."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def test_ray_job_matches_the_single_process_job_and_survives_a_kill(packaged, ray_cluster, tmp_path, monkeypatch):  # noqa: F811
    from scopeml.serving import batch
    from scopeml.serving.log import read_log

    folder, log = clips(tmp_path / "incoming"), tmp_path / "log.sqlite"
    monkeypatch.setenv("BENTOML_HOME", str(packaged["home"]))
    single = batch.score_files(folder, tmp_path / "single", packaged["tag"], log_path=log)  # batches of 64

    env = {"BENTOML_HOME": str(packaged["home"])}  # the token authentication's settings come from the fixture
    out = tmp_path / "ray"
    args = [folder, "--out", out, "--log", log, "--model", packaged["tag"], "--engine", "ray", "--batch-size", 8]
    job = batch_cli(*args, "--ray-address", ray_cluster, "--workers", 2, env=env, start_new_session=True,
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(out.glob("parts/part-*.parquet"))) < 3 and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)  # the driver only: the cluster's actors die with its job
    job.wait()
    killed_at = len(list(out.glob("parts/part-*.parquet")))
    assert 0 < killed_at < (N_CLIPS + 2) / 8, "the kill should land mid-job"

    # resumed on a Ray the job starts on this machine (no address): the same job, the rest of the files
    said = finished(batch_cli(*args, env={**env, "RAY_ADDRESS": ""}, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert f"Scoring {N_CLIPS + 2 - 8 * killed_at} of {N_CLIPS + 2} files" in said  # what was left, not every file
    table = pd.read_parquet(out / "predictions.parquet")
    logged = read_log(log)
    ray_job = (out / "job.json").read_text()
    assert logged["job"].nunique() == 2 and logged.groupby("job").size().tolist() == [N_CLIPS, N_CLIPS]
    assert not logged.duplicated(["request_id", "job"]).any()

    # a re-run on the cluster adds nothing: no part, no record
    parts = sorted(p.name for p in out.glob("parts/part-*.parquet"))
    finished(batch_cli(*args, "--ray-address", ray_cluster, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    assert sorted(p.name for p in out.glob("parts/part-*.parquet")) == parts
    assert len(read_log(log)) == 2 * N_CLIPS and (out / "job.json").read_text() == ray_job

    # the same predictions as the single-process job, file by file
    ref = pd.read_parquet(single)
    assert list(table["path"]) == list(ref["path"]) and table["path"].is_unique and len(table) == N_CLIPS + 2
    assert table["label"].notna().sum() == N_CLIPS
    assert table["label"].fillna("").tolist() == ref["label"].fillna("").tolist()
    assert table["error"].fillna("").tolist() == ref["error"].fillna("").tolist()
    errors = table.set_index("path")["error"]
    assert "broken.wav" in errors["broken.wav"] and "silent" in errors["silent.wav"]
    numeric = [c for c in ref.columns if c.startswith("prob_") or c in ("confidence", "snr_db", "rms_dbfs")]
    assert sorted(table.columns) == sorted(ref.columns)
    diff = np.nanmax(np.abs(table[numeric].to_numpy(float) - ref[numeric].to_numpy(float)))
    assert diff <= 1e-6, diff
    assert table["job"].nunique() == 1 and table["job"].iloc[0] != ref["job"].iloc[0]


def test_addresses_that_cannot_work_fail_in_seconds_naming_the_setting(tmp_path):
    folder = clips_few(tmp_path / "incoming")
    common = [folder, "--out", tmp_path / "out", "--log", tmp_path / "log.sqlite", "--model", "no-such-model:v0"]
    env = {"BENTOML_HOME": str(tmp_path / "bentoml-home"), "RAY_ADDRESS": ""}

    with socket.socket() as http:  # something that answers on the port, but not Ray (the dashboard's, a proxy)
        http.bind(("127.0.0.1", 0))
        http.listen()
        threading.Thread(target=_answer_http, args=(http,), daemon=True).start()
        cases = {
            "127.0.0.1:1": "no Ray cluster answers at 127.0.0.1:1",
            f"127.0.0.1:{http.getsockname()[1]}": "not a Ray cluster",
            "nonsense": "expected HOST:PORT",
        }
        for address, reason in cases.items():
            started = time.monotonic()
            proc = batch_cli(*common, "--engine", "ray", "--ray-address", address, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 2, err[-3000:]
            assert time.monotonic() - started < 10
            assert "--ray-address: " in err and reason in err, err[-3000:]
            assert "no-such-model" not in err  # before the model is looked up
    assert not (tmp_path / "out").exists()

    proc = batch_cli(*common, "--workers", 3, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "--workers: only with --engine ray" in err


def clips_few(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(2):
        write_wav(folder / f"clip{i}.wav")
    return folder


def _answer_http(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

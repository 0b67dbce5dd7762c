"""A user's project outside scopeml (examples/sound_events) runs through train -> select -> package ->
a real `bentoml serve` -> scopeml-batch, with a network and a data source scopeml has never seen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sound_events"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def command(name: str, *args: str, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the example, as a user would have it: their own folder, their module on PYTHONPATH."""
    dest = tmp_path_factory.mktemp("user") / "sound_events"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", "outputs"))
    return dest


@pytest.fixture(scope="module")
def user_env(project: Path, tmp_path_factory) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(project),
        "BENTOML_HOME": str(tmp_path_factory.mktemp("bentoml")),
        "BENTOML_DO_NOT_TRACK": "True",
        "HYDRA_FULL_ERROR": "0",
    }


@pytest.fixture(scope="module")
def packaged(project: Path, user_env: dict) -> dict:
    sweep = project / "outputs" / "sweep"
    command(
        "scopeml-train",
        "-m",
        "--config-dir",
        "conf",
        "experiment=sound_events",
        "tracker=none",
        "trainer.progress_bar=none",
        "model.hidden=4,8",
        f"hydra.sweep.dir={sweep}",
        cwd=project,
        env=user_env,
    )
    command("scopeml-select", str(sweep), "--out", str(project / "selection.json"), cwd=project, env=user_env)
    tag = (
        command("scopeml-package", str(project / "selection.json"), cwd=project, env=user_env)
        .stdout.strip()
        .splitlines()[-1]
    )
    return {"sweep": sweep, "tag": tag, "selection": json.loads((project / "selection.json").read_text())}


def test_the_sweep_trained_the_users_network_on_the_users_data(packaged):
    jobs = sorted(p for p in packaged["sweep"].iterdir() if (p / "metrics.json").exists())
    assert len(jobs) == 2
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["model"]["arch"] == "sound_events.nets.TinyNet"
        assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]  # three very different sounds: an easy task
        fingerprint = json.loads((job / "data_fingerprint.json").read_text())
        assert fingerprint["recipe"] == "source" and fingerprint["clips"] == 10 * 3 * 6
    assert packaged["selection"]["selected"] is not None


def test_the_bundle_carries_the_users_code(packaged, user_env):
    # The store's own layout, read without importing bentoml here: bentoml fixes its store folder at its
    # first import in a process, which would point every later test of this session at this store.
    name, _, version = packaged["tag"].partition(":")
    folder = Path(user_env["BENTOML_HOME"]) / "models" / name / version
    info = json.loads((folder / "serving.json").read_text())
    assert info["code"] == ["sound_events"]
    assert (folder / "code" / "sound_events" / "nets.py").read_text() == (
        EXAMPLE / "sound_events" / "nets.py"
    ).read_text()


def _events(tmp: Path) -> dict[Path, str]:
    """New WAV files from a recording device the model never heard (source 42)."""
    import soundfile as sf

    sys.path.insert(0, str(EXAMPLE))
    try:
        from sound_events.clips import KINDS, render
    finally:
        sys.path.remove(str(EXAMPLE))
    rng = np.random.default_rng(42)
    files = {}
    for kind in KINDS:
        for i in range(4):
            path = tmp / f"{kind}_{i}.wav"
            sf.write(path, render(kind, 190.0, 16000, 0.6, rng), 16000)
            files[path] = kind
    return files


def test_served_and_batch_scored_without_the_users_module_on_the_path(packaged, user_env, tmp_path):
    """The server and the batch job run from the repo with no PYTHONPATH: the network comes from the bundle."""
    import httpx

    from tests.serving_helpers import Server

    files = _events(tmp_path)
    env = {k: v for k, v in user_env.items() if k != "PYTHONPATH"}
    server = Server(
        Path(env["BENTOML_HOME"]),
        tmp_path / "predictions.sqlite",
        extra_env={"SCOPEML_MODEL_TAG": packaged["tag"], "PYTHONPATH": ""},
    )
    try:
        answers = {}
        for path, _kind in files.items():
            reply = httpx.post(
                f"{server.url}/classify", files={"audio": (path.name, path.read_bytes(), "audio/wav")}, timeout=30
            )
            assert reply.status_code == 200, reply.text
            answers[path] = reply.json()["label"]
    finally:
        server.stop()
    served_accuracy = np.mean([answers[p] == k for p, k in files.items()])
    assert served_accuracy >= 0.75, answers

    out = tmp_path / "scored"
    command(
        "scopeml-batch",
        str(tmp_path),
        "--out",
        str(out),
        "--model",
        packaged["tag"],
        "--log",
        str(tmp_path / "batch.sqlite"),
        cwd=ROOT,
        env=env,
    )
    import pandas as pd

    scored = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))], ignore_index=True)
    assert len(scored) == len(files)
    truth = {p.name: k for p, k in files.items()}
    batch_labels = {Path(str(row["path"])).name: row["label"] for row in scored.to_dict("records")}
    assert {name: batch_labels[name] for name in truth} == {
        p.name: answers[p] for p in files
    }  # same model, same answers


def test_the_lifecycle_takes_the_users_config_folder(tmp_path, monkeypatch):
    """scopeml-lifecycle --config-dir: its own settings file and every stage's config come from the user's folder."""
    from scopeml.lifecycle.config import load_lifecycle
    from scopeml.lifecycle.run import Lifecycle

    conf = tmp_path / "conf"
    shutil.copytree(EXAMPLE / "conf", conf)
    (conf / "lifecycle").mkdir()
    (conf / "lifecycle" / "mine.yaml").write_text(
        "out: out\ntrain: [experiment=sound_events]\nsweep: ['model.hidden=4,8']\n"
    )
    monkeypatch.syspath_prepend(str(EXAMPLE))
    cfg = load_lifecycle("mine", {"out": str(tmp_path / "out")}, config_dir=conf)
    assert cfg.sweep == ["model.hidden=4,8"]
    lifecycle = Lifecycle(cfg, config_dir=conf)
    composed = lifecycle.composed(*cfg.train)
    assert composed["model"]["_target_"] == "sound_events.nets.TinyNet"
    assert composed["data"]["source"]["_target_"] == "sound_events.clips.SoundEvents"
    assert lifecycle.hydra_args == ["--config-dir", str(conf.resolve())]

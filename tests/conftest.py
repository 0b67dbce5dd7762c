"""Shared fixtures: an isolated cache and W&B, a tiny real data recipe, and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from warm_python import WarmPython

ROOT = Path(__file__).resolve().parents[1]
FSDD_ROOT = ROOT.parent / "shared" / "datasets" / "fsdd"

# Five voices, one pitch, one rate: 50 real synthesized clips, enough for speaker-disjoint splits.
TINY_DATA = [
    "++data.source.voices=[en+m1,en+f1,en+m3,en+f4,en+m7]",
    "data.source.pitches=[50]",
    "data.source.rates=[175]",
]
TINY_FIT = ["hparams.max_epochs=2", "hparams.batch_size=16", "trainer.progress_bar=none"]

needs_fsdd = pytest.mark.skipif(
    not (FSDD_ROOT / "recordings").is_dir(),
    reason=f"FSDD is not at {FSDD_ROOT} (CI has ../shared beside the clone; a user's clone does not)",
)


# Files that take minutes start first (measured under `make test`'s two workers: the lifecycle about 11 min, the
# config review about 8), so neither worker is left alone with one of them at the end of the run.
LONG_FILES = ("test_lifecycle.py", "test_config_review.py", "test_serving.py", "test_modeling.py")


def pytest_configure(config):
    """Each worker's share of the cores in math threads (1 for two workers on two cores). The two workers already keep
    both cores busy, so a second torch thread per process adds CPU time, not speed: one training run took 49 CPU-s on
    two threads and 40 on one (alone on the machine), and the suite went from 54 to 43 CPU-min. The processes the
    tests start inherit it; a config that sets its own thread count (trainer.num_threads, deploy.torch_threads)
    still wins."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


def _host_speed_line(when: str) -> str:
    from scopeml.provenance import host_speed

    return (
        f"host speed {when}: a 2M-step Python loop took {host_speed()} CPU-s (lower is faster; the suite's time scales)"
    )


def pytest_report_header(config):
    """The suite's wall time depends on how fast this (often shared) machine runs today: say so beside it."""
    return _host_speed_line("at the start")


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(_host_speed_line("at the end"))


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """No test touches the user's cache, W&B settings or network."""
    cache = tmp_path_factory.mktemp("scopeml-cache")
    saved = dict(os.environ)
    os.environ["SCOPEML_CACHE_DIR"] = str(cache)
    os.environ["WANDB_SILENT"] = "true"
    os.environ["WANDB_CONFIG_DIR"] = str(tmp_path_factory.mktemp("wandb-config"))
    os.environ.pop("WANDB_API_KEY", None)
    yield cache
    os.environ.clear()
    os.environ.update(saved)


_warm: WarmPython | None = None


@pytest.fixture(scope="session", autouse=True)
def warm_python(isolated_env):
    """This worker's warm server (tests/warm_python.py), started under the session's isolated environment, before
    any test changes it; it imports while the first tests run."""
    global _warm
    with tempfile.TemporaryDirectory(prefix="scopeml-warm-") as folder:
        _warm = WarmPython(Path(folder))
        _warm.start(dict(os.environ))
        yield _warm
        _warm.stop()
        _warm = None


def run_cli(
    module: str, *args: str, timeout: float = 600, env: dict | None = None, fresh: bool = False
) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` from the repo root, as a user would.

    Forked from this worker's warm server, which has the heavy stack imported already (tests/warm_python.py);
    `fresh=True` starts a new interpreter instead, for what only a fresh process shows (determinism across
    processes, start-up time, what a command imports). A command whose environment changes what an interpreter
    reads at start gets one too, with a warning."""
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", **(env or {})}
    if not fresh and _warm is not None:
        refused = _warm.refuses(env)
        if refused is None:
            return _warm.run([module, *args], cwd=ROOT, env=env, timeout=timeout)
        warnings.warn(f"{module} starts a fresh interpreter: {refused}", stacklevel=2)
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


def refused_sweep(sweep_dir: Path, *args: str) -> str:
    """`scopeml-train -m args... hydra.sweep.dir=sweep_dir`, which must be refused at start-up: exit 2 within
    10 s, a message rather than a traceback, and no sweep folder (nothing ran). Returns stderr to check the
    message against."""
    started = time.monotonic()
    proc = run_cli("scopeml.cli.train", "-m", *args, f"hydra.sweep.dir={sweep_dir}", timeout=60, fresh=True)
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert elapsed < 10, f"refused after {elapsed:.1f} s"
    assert not Path(sweep_dir).exists()
    return proc.stderr


def train(run_dir: Path, *overrides: str, timeout: float = 600, fresh: bool = False) -> subprocess.CompletedProcess:
    return run_cli("scopeml.cli.train", f"hydra.run.dir={run_dir}", *overrides, timeout=timeout, fresh=fresh)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def packaged_cv_run(tmp_path: Path, *overrides: str):
    """A tiny two-fold cross-validated run (test speaker en+m7), packaged and loaded back.

    Returns (run_dir, bundle, test waves, the run's saved test probabilities), for checking that the
    package serves what the run measured."""
    import numpy as np
    import pandas as pd
    import yaml

    from scopeml.config import load
    from scopeml.data import build_dataset
    from scopeml.serving.bundle import ServingBundle, write_bundle

    run_dir = tmp_path / "run"
    folds = ["data.split.folds=2", "data.split.test_speakers=[en+m7]"]
    proc = train(run_dir, *TINY_DATA, *TINY_FIT, *folds, *overrides)
    assert proc.returncode == 0, proc.stderr[-3000:]
    write_bundle(run_dir, tmp_path / "bundle", deploy={})
    bundle = ServingBundle.load(tmp_path / "bundle")
    config = load(yaml.safe_load((run_dir / "config.yaml").read_text()))
    data = build_dataset(config.data, config.scoping.classes, progress=False)
    waves = np.ascontiguousarray(data.waves[data.indices("test")])
    saved = pd.read_parquet(run_dir / "predictions_test.parquet")
    return run_dir, bundle, waves, saved[[f"prob_{c}" for c in data.classes]].to_numpy(dtype=np.float64)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One real tiny training run (W&B offline), shared by the tests that inspect its outputs.

    Trained once per session, not once per xdist worker: the first worker to ask trains it under a file lock in the
    folder all workers' temporary folders share, and the others wait for it and read it."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # pytest-N/ holds each worker's popen-gwK/
    run_dir = shared / "tiny-run"
    with FileLock(str(shared / "tiny-run.lock")):
        if not (run_dir / "status.json").exists() or read_json(run_dir / "status.json")["status"] != "complete":
            proc = train(run_dir, *TINY_DATA, *TINY_FIT, "seed=7")
            assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="session")
def packaged(tiny_run, tmp_path_factory) -> dict:
    """The tiny run packaged into a fresh BentoML store, with a secret in the environment that must not leak."""
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {"BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True", "WANDB_API_KEY": "sekret-key-0123456789"}
    proc = run_cli("scopeml.cli.package", str(tiny_run), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tag = proc.stdout.strip().splitlines()[-1]
    assert tag.startswith("scopeml-kws:")
    return {"home": home, "tag": tag, "run": tiny_run}


@pytest.fixture(scope="session")
def server(packaged, tmp_path_factory):
    """A real `bentoml serve` of the packaged tiny run on a free loopback port, shared by the serving tests."""
    from serving_helpers import Server

    srv = Server(packaged["home"], tmp_path_factory.mktemp("serving") / "predictions.sqlite")
    yield srv
    srv.stop()


def write_wav(path: Path, seconds: float = 0.5, sr: int = 8000, freq: float = 440.0, channels: int = 1) -> Path:
    import soundfile as sf

    t = np.arange(int(seconds * sr)) / sr
    tone = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    sf.write(path, np.stack([tone] * channels, axis=1) if channels > 1 else tone, sr, subtype="PCM_16")
    return path


@pytest.fixture
def fsdd_layout(tmp_path) -> Path:
    """A small folder in FSDD's layout: 3 speakers x 2 digits x 2 takes of tones."""
    rec = tmp_path / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for s, speaker in enumerate(["ann", "bob", "cyd"]):
        for digit in (0, 1):
            for take in (0, 1):
                write_wav(rec / f"{digit}_{speaker}_{take}.wav", freq=300 + 100 * digit + 10 * s + take)
    return tmp_path / "fsdd"


def offline_run(run_path: Path, needs: str = "summary", timeout: float = 30.0) -> dict:
    """Read an offline W&B run, waiting for its record stream to be complete.

    wandb 0.29's finish() can return before its service has flushed the stream, so a
    read straight after a run may see no summary yet (measured: about 1 in 6), or no
    stream file at all yet (seen once, for a sweep's summary run on a loaded machine).
    """
    import time

    from scopeml.training.tracking import read_offline_run

    deadline = time.monotonic() + timeout
    while True:
        try:
            run = read_offline_run(run_path)
        except ValueError:  # `(stream,) = glob(...)`: the service has not created the file yet
            if time.monotonic() > deadline:
                raise
            run = {}
        if run.get(needs) or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def composed(*overrides: str) -> dict:
    """The resolved config a command would run with (shipped configs plus overrides), as plain values."""
    from scopeml.config import to_plain
    from scopeml.config.paths import compose

    plain = to_plain(compose("config", list(overrides)))
    plain.pop("hydra", None)
    return plain

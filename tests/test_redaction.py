"""Secrets never written: a train -> package -> serve -> monitor run, with a token, a password and an
environment value in its config, leaves none of them in any file it writes (run folder, Hydra's copies,
the W&B offline run, the BentoML store, the prediction log, the monitoring folder)."""

from __future__ import annotations

import os
import socket
import subprocess

import httpx
import pytest
from conftest import ROOT, TINY_DATA, TINY_FIT, run_cli

from scopeml.redact import REDACTED, environment_keys, redact, redact_argv

pytestmark = pytest.mark.slow

TOKEN, CHANNEL, PASSWORD = "tok-4f1c9e-SECRET", "chan-77b2d0-SECRET", "hunter2-90aa1f-SECRET"
SECRET_OVERRIDES = [
    "+callbacks.notify={_target_:user_parts.Notify,webhook_token:${oc.env:MY_WEBHOOK_TOKEN},"
    "channel:${oc.env:MY_CHANNEL},password:" + PASSWORD + "}",
]


def test_the_rule_on_a_config():
    raw = {
        "data": {"cache_dir": "${oc.env:CACHE,.cache}", "source": {"root": "${oc.env:ROOT}"}},
        "tracker": {"api_key": "plain-key", "project": "p"},
        "extra": {"channel": "${oc.env:CHAN}", "copy": "${extra.channel}", "n": 3},
    }
    resolved = {
        "data": {"cache_dir": "/c", "source": {"root": "/r"}},
        "tracker": {"api_key": "plain-key", "project": "p"},
        "extra": {"channel": "c-1", "copy": "c-1", "n": 3},
    }
    env = environment_keys(raw)
    assert env == {
        "data.cache_dir": "${oc.env:CACHE}",
        "data.source.root": "${oc.env:ROOT}",
        "extra.channel": "${oc.env:CHAN}",
        "extra.copy": "${oc.env:CHAN}",
    }
    public = redact(resolved, env, ["data.cache_dir", "data.source.root"])
    assert public == {
        "data": {"cache_dir": "/c", "source": {"root": "/r"}},  # marked safe: a path the run needs
        "tracker": {"api_key": REDACTED, "project": "p"},  # secret-named, not from the environment
        "extra": {"channel": "${oc.env:CHAN}", "copy": "${oc.env:CHAN}", "n": 3},  # re-runs where CHAN is set
    }
    argv = ["scopeml-train", "+tracker.api_key=plain-key", "extra.channel=c-1", "hparams.lr=0.1"]
    assert redact_argv(argv, {"c-1"}) == [
        "scopeml-train",
        f"+tracker.api_key={REDACTED}",
        f"extra.channel={REDACTED}",
        "hparams.lr=0.1",
    ]


def _run(module: str, *args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = run_cli(module, *args, env=env, timeout=timeout)
    assert proc.returncode in (0, 1), f"{module} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def test_no_secret_reaches_any_file_of_train_package_serve_monitor(tmp_path):
    from serving_helpers import Server, encode, tone

    env = {
        **os.environ,
        "HYDRA_FULL_ERROR": "0",
        "PYTHONPATH": str(ROOT / "tests"),
        "MY_WEBHOOK_TOKEN": TOKEN,
        "MY_CHANNEL": CHANNEL,
        "BENTOML_HOME": str(tmp_path / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    run = tmp_path / "run"
    _run("scopeml.cli.train", f"hydra.run.dir={run}", *TINY_DATA, *TINY_FIT, *SECRET_OVERRIDES, env=env)
    saved = (run / "config.yaml").read_text()
    assert "${oc.env:MY_WEBHOOK_TOKEN}" in saved and "${oc.env:MY_CHANNEL}" in saved and REDACTED in saved
    _run("scopeml.cli.package", str(run), env=env)

    log = tmp_path / "serving" / "predictions.sqlite"
    log.parent.mkdir()
    server = Server(tmp_path / "bentoml", log, extra_env={"PYTHONPATH": str(ROOT / "tests")})
    try:
        reply = httpx.post(
            f"{server.url}/classify", files={"audio": ("a.wav", encode(tone()), "audio/wav")}, timeout=30
        )
        assert reply.status_code == 200, reply.text
    finally:
        server.stop()
    _run(
        "scopeml.cli.monitor",
        f"hydra.run.dir={tmp_path / 'monitor'}",
        f"monitor.log={log}",
        "monitor.chunk_size=20",
        *SECRET_OVERRIDES,
        env=env,
    )
    assert (tmp_path / "monitor" / "config.yaml").is_file()

    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any("wandb" in p.parts for p in written) and any("bentoml" in p.parts for p in written)
    host = socket.gethostname()
    for path in written:
        data = path.read_bytes()
        for secret in (TOKEN, CHANNEL, PASSWORD):
            assert secret.encode() not in data, f"{secret} written to {path.relative_to(tmp_path)}"
        if len(host) >= 6 and path.suffix in {".json", ".yaml"}:
            assert host.encode() not in data, f"host name written to {path.relative_to(tmp_path)}"

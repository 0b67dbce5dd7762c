"""The prediction log on a real PostgreSQL server: one log that several `bentoml serve` processes share.

A cluster is initialized in a temporary folder and started on a free loopback port for this module (Debian's
`postgresql`, which `make test` installs the way it installs chromium); the tests skip, saying why, when its
binaries or the psycopg driver are missing. A bad URL or an unreachable server must stop every entry point at
start-up, naming the setting, in under 10 s (issue 14), never answer 500 per request.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from conftest import ROOT
from test_prediction_log import OLD_ROWS, record

PG_BINS = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
START_BOUND_S = 10.0  # the bound for a bad or unreachable log URL


def _driver_missing() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


class Cluster:
    """A throwaway PostgreSQL cluster: initdb in a temporary folder, postgres on a free loopback port."""

    def __init__(self):
        from scopeml.lifecycle.server import free_port

        self.bin = Path(PG_BINS[-1]).parent
        # not under pytest's tmp folder: that is private to this user, and as root the server runs as `postgres`
        self.root = Path(tempfile.mkdtemp(prefix="scopeml-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # postgres refuses to run as root
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sock, "postgres")
        self.port = free_port()
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "scopeml", "-E", "UTF8", "--locale=C", "--no-sync")
        options = f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 -c max_connections=60"
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "server.log", "-w", "-t", "60", "start")

    def _run(self, tool: str, *args) -> None:
        proc = subprocess.run(
            [*self.as_user, str(self.bin / tool), *map(str, args)], capture_output=True, text=True, timeout=120
        )
        if proc.returncode:
            raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr[-2000:]}")

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        user = f"scopeml:{password}" if password else "scopeml"
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database's URL."""
        import psycopg

        name = f"log_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    if not PG_BINS:
        pytest.skip("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql; make test does)")
    if reason := _driver_missing():
        pytest.skip(reason)
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start postgres as the postgres user")
    try:
        server = Cluster()
    except (RuntimeError, LookupError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"could not start a PostgreSQL server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(cluster) -> str:
    return cluster.database()


def closed_port_url() -> str:
    from scopeml.lifecycle.server import free_port

    return f"postgresql://scopeml@127.0.0.1:{free_port()}/nothing"  # nothing listens there


# ---------------------------------------------------------------- the storage layer
def test_round_trip_labels_and_forward_migration_on_postgresql(pg_url):
    import psycopg

    from scopeml.monitoring.labels import ingest, read_labels
    from scopeml.serving.log import SCHEMA_VERSION, open_log, read_log
    from scopeml.serving.log_postgres import PostgresLog

    # a log as the release before `job` (schema 1) left it: written literally, with two rows
    old_columns = "time_utc, request_id, model_tag, endpoint, source, label, confidence, probabilities, " + (
        "duration_s, rms_dbfs, silence_ratio, spectral_centroid_hz, snr_db, extra_features"
    )
    with psycopg.connect(pg_url, autocommit=True) as db:
        kinds = {
            c: "DOUBLE PRECISION"
            if c in {"confidence", "duration_s", "rms_dbfs", "silence_ratio", "spectral_centroid_hz", "snr_db"}
            else "TEXT"
            for c in old_columns.split(", ")
        }
        columns = ", ".join(f"{c} {t}" for c, t in kinds.items())
        db.execute(f"CREATE TABLE predictions (id BIGSERIAL PRIMARY KEY, {columns})")
        db.execute("CREATE TABLE prediction_log_schema (version INTEGER NOT NULL)")
        db.execute("INSERT INTO prediction_log_schema VALUES (1)")
        with db.cursor() as cur:
            cur.executemany(f"INSERT INTO predictions ({old_columns}) VALUES ({', '.join(['%s'] * 14)})", OLD_ROWS)

    log = open_log(pg_url, custom_features=["peak"])
    assert isinstance(log, PostgresLog) and log.version() == SCHEMA_VERSION >= 2
    log.append([record("batch:c.wav", job="job-1", peak=0.25)])
    assert log.existing(["batch:b.wav", "batch:c.wav"], job="job-1", model_tag="m:2") == {"batch:c.wav"}
    assert log.existing(["batch:c.wav"], job=None, model_tag="m:2") == set()
    with pytest.raises(ValueError):  # never a non-finite number, as on SQLite
        log.append([record("bad", confidence=float("nan"))])
    log.close()

    table = read_log(pg_url)
    assert table["request_id"].tolist() == ["req-1", "batch:b.wav", "batch:c.wav"]
    assert table["confidence"].tolist() == pytest.approx([0.9, 0.6, 0.8])
    assert table["prob_no"].tolist() == pytest.approx([0.1, 0.6, 0.2])
    assert table["snr_db"].tolist() == pytest.approx([30.0, 20.0, 25.0])
    assert table["peak"].iloc[1:].tolist() == pytest.approx([0.5, 0.25])
    assert table["job"].iloc[:2].isna().all() and table["job"].iloc[2] == "job-1"

    import pandas as pd

    result = ingest(pg_url, pd.DataFrame({"request_id": ["req-1", "nope", "batch:c.wav"], "label": ["no", "yes", "x"]}))
    assert result["accepted"] == 1 and len(result["refused"]) == 2
    ingest(pg_url, pd.DataFrame({"request_id": ["req-1"], "label": ["yes"]}))  # a later label replaces it
    assert read_labels(pg_url).set_index("request_id")["label"].to_dict() == {"req-1": "yes"}

    open_log(pg_url).close()  # opening a current log again changes nothing
    assert len(read_log(pg_url)) == 3


def test_a_connection_the_server_dropped_is_opened_again_and_the_record_written(pg_url):
    """PostgreSQL restarted, or an administrator ended the session: the log's idle connection is dead, found so
    on the next BEGIN. Nothing was sent, so the append goes through on a new connection (no 500, no loss)."""
    import psycopg

    from scopeml.serving.log import read_log
    from scopeml.serving.log_postgres import PostgresLog

    log = PostgresLog(pg_url)
    log.append([record("before")])
    with psycopg.connect(pg_url, autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    assert ended == [(True,)]
    log.append([record("after")])
    assert sorted(read_log(pg_url)["request_id"]) == ["after", "before"]
    log.close()


def test_servers_starting_together_migrate_a_new_log_once(pg_url):
    from concurrent.futures import ThreadPoolExecutor

    from scopeml.serving.log import open_log, read_log

    def open_and_log(i: int) -> None:
        log = open_log(pg_url)
        log.append([record(f"w{i}")])
        log.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(open_and_log, range(6)))
    assert sorted(read_log(pg_url)["request_id"]) == [f"w{i}" for i in range(6)]


def test_a_batch_job_logs_to_postgresql_once_per_job_even_when_resumed(pg_url, tmp_path):
    from test_batch import FakeBundle, folder_of_clips

    from scopeml.serving import batch
    from scopeml.serving.log import read_log

    clips = folder_of_clips(tmp_path / "incoming")
    batch.run(clips, tmp_path / "day1", FakeBundle(), log_path=pg_url, batch_size=2, progress=False)
    sorted((tmp_path / "day1" / "parts").glob("part-*.parquet"))[-1].unlink()  # killed before its last part file
    batch.run(clips, tmp_path / "day1", FakeBundle(), log_path=pg_url, batch_size=2, progress=False)
    batch.run(clips, tmp_path / "day2", FakeBundle(), log_path=pg_url, batch_size=2, progress=False)
    table = read_log(pg_url)
    assert table.groupby(["job", "model_tag"]).size().tolist() == [5, 5]
    assert not table.duplicated(["request_id", "job", "model_tag"]).any()


# ---------------------------------------------------------------- two servers, one log
def test_two_servers_share_one_log_and_a_sigkill_loses_no_acknowledged_prediction(packaged, pg_url, tmp_path):
    """Two `bentoml serve` processes on their own ports write to one PostgreSQL log under load; one is SIGKILLed
    mid-load. Every request either server acknowledged is in the log, with both servers' rows there."""
    import httpx
    from serving_helpers import Server, encode, word

    from scopeml.serving.log import read_log

    env = {"SCOPEML_PREDICTION_LOG": pg_url}
    servers: dict[str, Server] = {}
    failures: list[BaseException] = []

    def start(name: str) -> None:
        try:
            servers[name] = Server(packaged["home"], tmp_path / f"{name}.sqlite", extra_env=env)
        except BaseException as exc:  # noqa: BLE001 (re-raised below, with the other server stopped)
            failures.append(exc)

    starters = [threading.Thread(target=start, args=(n,)) for n in ("a", "b")]
    for t in starters:
        t.start()
    for t in starters:
        t.join()
    try:
        if failures:
            raise failures[0]
        a, b = servers["a"], servers["b"]
        assert a.port != b.port
        acknowledged: dict[str, list[str]] = {"a": [], "b": []}
        stop = threading.Event()
        clip = encode(word("down"))

        def client(name: str) -> None:
            with httpx.Client(timeout=10) as http:
                while not stop.is_set():
                    try:
                        r = http.post(f"{servers[name].url}/classify", files={"audio": ("c.wav", clip)})
                    except httpx.HTTPError:
                        return  # the killed server's connections drop
                    if r.status_code == 200:
                        acknowledged[name].append(r.json()["request_id"])

        clients = [threading.Thread(target=client, args=(n,)) for n in ("a", "a", "b", "b")]
        for t in clients:
            t.start()
        deadline = time.monotonic() + 60
        while min(len(v) for v in acknowledged.values()) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        a.kill()  # SIGKILL, API and worker processes, mid-load
        killed_at = len(acknowledged["b"])
        while len(acknowledged["b"]) < killed_at + 10 and time.monotonic() < deadline:
            time.sleep(0.05)  # the other server goes on logging to the same log
        stop.set()
        for t in clients:
            t.join()
    finally:
        for srv in servers.values():
            srv.stop()
    assert len(acknowledged["a"]) >= 30 and len(acknowledged["b"]) >= killed_at + 10
    logged = set(read_log(pg_url)["request_id"])
    for name, ids in acknowledged.items():
        assert set(ids) <= logged, f"server {name}: {len(set(ids) - logged)} acknowledged predictions not logged"
    assert not (tmp_path / "a.sqlite").exists() and not (tmp_path / "b.sqlite").exists()  # nothing went to SQLite


# ---------------------------------------------------------------- bad URLs fail at start-up, naming the setting
def test_the_service_refuses_a_bad_scheme_and_an_unreachable_database_at_start_up(packaged, tmp_path):
    from serving_helpers import Server

    for url, reason in (("mysql://scopeml@127.0.0.1/log", "unsupported scheme 'mysql'"), (closed_port_url(), "")):
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited") as failed:
            Server(packaged["home"], tmp_path / "unused.sqlite", extra_env={"SCOPEML_PREDICTION_LOG": url})
        took = time.monotonic() - started
        message = str(failed.value)
        assert "deploy.prediction_log (SCOPEML_PREDICTION_LOG)" in message and reason in message, message[-1500:]
        assert took < START_BOUND_S, f"{url}: failed after {took:.1f} s"
        assert "cannot open the PostgreSQL prediction log" in message or reason


def test_cli_entry_points_refuse_bad_log_urls_within_the_bound(packaged, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr1,yes\n")
    unreachable = closed_port_url()
    cases = [
        (["scopeml.cli.label", str(labels), "--log", "ftp://host/log"], "scopeml-label --log", "unsupported scheme"),
        (["scopeml.cli.label", str(labels), "--log", unreachable], "scopeml-label --log", "cannot open"),
        (
            ["scopeml.cli.monitor", f"hydra.run.dir={tmp_path / 'mon'}", f"monitor.log={unreachable}"],
            "monitor.log",
            "cannot open",
        ),
        (
            ["scopeml.cli.monitor", f"hydra.run.dir={tmp_path / 'mon2'}", "monitor.log=mysql://h/db"],
            "monitor.log",
            "unsupported scheme 'mysql'",
        ),
        (  # before any training: the config check names the setting
            ["scopeml.cli.train", f"hydra.run.dir={tmp_path / 'train'}", "deploy.prediction_log=redis://h/0"],
            "deploy.prediction_log",
            "unsupported scheme",
        ),
    ]
    env = {"BENTOML_HOME": str(packaged["home"])}
    for argv, setting, reason in cases:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HYDRA_FULL_ERROR": "0", **env},
        )
        took = time.monotonic() - started
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, f"{argv}: exit {proc.returncode}\n{out[-2000:]}"
        assert setting in out and reason in out, f"{argv}:\n{out[-2000:]}"
        assert took < START_BOUND_S, f"{argv}: failed after {took:.1f} s"
    assert not (tmp_path / "train" / "metrics.json").exists()


def test_a_password_in_the_log_url_is_never_written(cluster, tmp_path):
    from scopeml.redact import redact, without_url_password
    from scopeml.serving.log import LogURLError, check_log

    url = cluster.url("nothing_here", password="hunter2-pw")
    assert without_url_password(url) == cluster.url("nothing_here")
    env = dict.fromkeys(["deploy.prediction_log", "monitor.log"], "${oc.env:SCOPEML_PREDICTION_LOG}")
    public = redact(
        {"deploy": {"prediction_log": url}, "monitor": {"log": url}}, env, ["deploy.prediction_log", "monitor.log"]
    )
    assert "hunter2" not in repr(public) and public["deploy"]["prediction_log"] == cluster.url("nothing_here")
    with pytest.raises(LogURLError) as failed:  # an error names the URL, without its password
        check_log(url)
    assert "hunter2" not in str(failed.value) and "deploy.prediction_log" in str(failed.value)

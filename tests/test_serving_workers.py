"""deploy.workers=2 under keep-alive load: both API workers take a fair share of the connections.

BentoML 1.4 shares one listening socket among its workers, and a burst of connections (a client's pool opening,
wrk's 32) went to whichever worker woke first: one worker at 100% CPU with every connection, the other idle.
scopeml.serving.sockets gives each worker a socket of its own (SO_REUSEPORT), so the kernel spreads them.
`SCOPEML_REUSEPORT=0` keeps BentoML's shared socket (the behaviour before; these tests then fail).
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serving_helpers import encode, tone

CONNECTIONS = 64  # if the kernel's hash gave each worker Binomial(64, 1/2), under 16 would have odds of 2.4e-5
REQUESTS_PER_CONNECTION = 3
MIN_SHARE = 0.25
BOUNDARY = "scopemlWorkersTest"


def _body() -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head + encode(tone(0.5)) + f"\r\n--{BOUNDARY}--\r\n".encode()


def _workers(server) -> dict[str, object]:
    """worker id -> psutil process of each API worker."""
    import psutil

    out = {}
    for p in server._tree():
        try:
            cmd = p.cmdline()
        except psutil.Error:  # gone, or a zombie not yet reaped
            continue
        if "_bentoml_impl.worker.service" in cmd and "--worker-id" in cmd:
            out[cmd[cmd.index("--worker-id") + 1]] = p
    return out


def _wait_all_serving(server, n: int, timeout: float = 60.0) -> None:
    """Until each of the n workers has answered on a fresh connection: /readyz is ready once one worker is."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with httpx.Client(timeout=5) as client:  # a new connection each time: a new hash
                seen.add(client.get(f"{server.url}/readyz").headers.get("x-scopeml-worker", "?"))
        except httpx.HTTPError:
            pass
        if len(seen - {"?"}) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"not every worker answered within {timeout:.0f} s: {sorted(seen)}")


def _burst(server, first: str) -> tuple[Counter, list[int]]:
    """CONNECTIONS keep-alive connections opened at once (as wrk or a client's pool opens them) while every worker
    is busy, then REQUESTS_PER_CONNECTION POSTs /classify on each, all connections at the same time. Returns the
    requests per worker (x-scopeml-worker) and the statuses.

    "Busy" is made deterministic: the workers are stopped (SIGSTOP) while the kernel completes the handshakes,
    then worker `first` resumes 50 ms before the others, as one worker finishes its work before another. With one
    shared listening socket the first worker back accepts every queued connection (what wrk showed: one worker
    with all 32); with a socket per worker each connection was already queued at one worker when it arrived."""
    workers = _workers(server)
    order = [workers[first], *(p for w, p in sorted(workers.items()) if w != first)]
    socks = []
    for p in order:
        p.suspend()
    try:
        for _ in range(CONNECTIONS):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", server.port))
            socks.append(s)
        time.sleep(0.05)
    finally:
        for p in order:
            p.resume()
            time.sleep(0.05)
    body = _body()
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}

    def drive(s: socket.socket) -> list[tuple[int, str]]:
        s.setblocking(True)
        s.settimeout(30)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.sock = s
        out = []
        try:
            for _ in range(REQUESTS_PER_CONNECTION):
                conn.request("POST", "/classify", body=body, headers=headers)
                r = conn.getresponse()
                r.read()
                out.append((r.status, r.getheader("x-scopeml-worker", "?")))
        finally:
            conn.close()
        return out

    with ThreadPoolExecutor(CONNECTIONS) as pool:
        per_connection = list(pool.map(drive, socks))
    for answers in per_connection:  # keep-alive: a connection stays with the worker that accepted it
        assert len({w for _, w in answers}) == 1, answers
    flat = [a for answers in per_connection for a in answers]
    return Counter(w for _, w in flat), [status for status, _ in flat]


def _assert_fair(counts: Counter, statuses: list[int], workers: int) -> None:
    total = CONNECTIONS * REQUESTS_PER_CONNECTION
    assert statuses.count(200) == total, Counter(statuses)
    shares = {w: counts.get(w, 0) / total for w in map(str, range(1, workers + 1))}
    assert min(shares.values()) >= MIN_SHARE, (
        f"requests per API worker over {CONNECTIONS} keep-alive connections: {dict(counts)} "
        f"(each should have at least {MIN_SHARE:.0%})"
    )


@pytest.fixture
def two_workers(server):
    info = httpx.post(f"{server.url}/info", json={}, timeout=30).json()
    assert info["workers"] == 2, info
    _wait_all_serving(server, 2)
    return server


def test_two_workers_share_keep_alive_connections(two_workers):
    for first in ("1", "2"):  # each worker back first once: neither may take the burst
        counts, statuses = _burst(two_workers, first)
        _assert_fair(counts, statuses, 2)


def test_a_restarted_worker_takes_its_share_again(two_workers):
    """A worker killed and restarted by BentoML's arbiter binds a socket of its own again (the shared one was
    shut by the first worker) and gets its share; nothing is left listening that no worker serves."""
    server = two_workers
    before = _workers(server)
    assert sorted(before) == ["1", "2"], before
    before["1"].kill()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = _workers(server)
        if "1" in now and now["1"].pid != before["1"].pid:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"worker 1 was not restarted: {_workers(server)}")
    _wait_all_serving(server, 2, timeout=90)
    counts, statuses = _burst(server, "2")  # the worker that stayed is back first
    _assert_fair(counts, statuses, 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux only")
def test_listen_per_worker_swaps_the_inherited_descriptor(monkeypatch):
    """In process, as in a worker: the descriptor BentoML passed (--fd) becomes a socket of the worker's own on
    the same address, the shared socket stops listening, and the new one accepts; nothing happens outside a
    worker of the named service, with one worker, or with SCOPEML_REUSEPORT=0."""
    from scopeml.serving.sockets import listen_per_worker

    monkeypatch.delenv("SCOPEML_REUSEPORT", raising=False)
    with socket.socket() as shared:
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        shared.bind(("127.0.0.1", 0))
        shared.listen(16)
        fd = os.dup(shared.fileno())  # the worker's inherited copy
        argv = ["service.py", "svc:Svc", "--fd", str(fd), "--service-name", "svc", "--worker-id", "1"]
        assert not listen_per_worker("svc", 2, ["bentoml", "serve", "svc:Svc"])  # the arbiter, not a worker
        assert not listen_per_worker("svc", 1, argv)
        assert not listen_per_worker("other", 2, argv)
        monkeypatch.setenv("SCOPEML_REUSEPORT", "0")
        assert not listen_per_worker("svc", 2, argv)
        monkeypatch.delenv("SCOPEML_REUSEPORT")
        assert os.fstat(fd).st_ino == os.fstat(shared.fileno()).st_ino
        assert listen_per_worker("svc", 2, argv)
        with socket.socket(fileno=fd) as own:
            assert os.fstat(fd).st_ino != os.fstat(shared.fileno()).st_ino
            assert own.getsockname() == shared.getsockname()
            assert own.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            assert not shared.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            with socket.create_connection(own.getsockname(), timeout=5):
                conn, _ = own.accept()
                conn.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux only")
def test_a_worker_that_cannot_listen_on_its_own_keeps_a_live_shared_socket_or_stops(monkeypatch):
    """Own socket failed: while the shared socket still listens the worker keeps it (a warning); once another
    worker took it out of service, keeping it would serve nobody, so the worker stops for the arbiter to restart.
    A descriptor that is no socket is left alone, and its duplicate is not leaked."""
    from scopeml.serving import sockets

    monkeypatch.delenv("SCOPEML_REUSEPORT", raising=False)
    read_end, write_end = os.pipe()
    try:
        before = len(os.listdir("/proc/self/fd"))
        assert not sockets.listen_per_worker("svc", 2, ["w", "--fd", str(read_end), "--service-name", "svc"])
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        os.close(read_end)
        os.close(write_end)

    def refuse(self, address):
        raise OSError(98, "Address already in use")

    with socket.socket() as shared:
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        shared.bind(("127.0.0.1", 0))
        shared.listen(16)
        fd = os.dup(shared.fileno())
        argv = ["w", "--fd", str(fd), "--service-name", "svc", "--worker-id", "2"]
        monkeypatch.setattr(socket.socket, "bind", refuse)
        try:
            assert not sockets.listen_per_worker("svc", 2, argv)  # the shared socket still listens: kept
            assert os.fstat(fd).st_ino == os.fstat(shared.fileno()).st_ino
            shared.shutdown(socket.SHUT_RD)  # as the first worker to get its own socket does
            with pytest.raises(RuntimeError, match="no socket of its own.*the shared one is closed"):
                sockets.listen_per_worker("svc", 2, argv)
        finally:
            os.close(fd)

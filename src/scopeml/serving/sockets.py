"""A listening socket of its own for each API worker, so that the kernel shares connections out among them.

`bentoml serve` (BentoML 1.4) binds one listening socket in its arbiter process (circus) and passes it to every
API worker (`--fd N`); each worker's uvicorn accepts from that one shared queue. When a burst of connections
arrives (a load balancer's or a client's connection pool opening, wrk's 32), the worker whose event loop wakes
first accepts every connection in the queue (asyncio accepts up to the backlog per wake-up), and keep-alive
keeps them there: one worker at 100% CPU serving all of them, the others idle. BentoML has no setting for this
(BentoML issue #5426).

`listen_per_worker`, called when the service module is imported in a worker (before BentoML starts uvicorn on
the inherited descriptor), gives the worker a socket of its own on the same address with SO_REUSEPORT and puts
it in place of the inherited one under the same descriptor number (dup2), so BentoML serves it unchanged. The
shared socket is taken out of the port's reuse group (shut down: it stops listening for every process holding
it), so the kernel hashes each new connection to one worker's own socket: each worker gets a fair share, by
chance, not by who woke first. Only on Linux (elsewhere SO_REUSEPORT does not spread connections), only for the
service's own TCP socket and only with more than one worker; `SCOPEML_REUSEPORT=0` keeps BentoML's shared socket.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

ENV = "SCOPEML_REUSEPORT"
log = logging.getLogger("scopeml.serving")


def _arg(argv: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` in a BentoML worker's command line."""
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def listen_per_worker(service_name: str, workers: int, argv: list[str] | None = None) -> bool:
    """In a BentoML API worker of `service_name` with more than one worker: serve a socket of the worker's own
    (SO_REUSEPORT) in place of the shared one. True when it did; False where it does not apply (not such a
    worker, one worker, not Linux, not TCP, SCOPEML_REUSEPORT=0) or failed while the shared socket still listens
    (it stays, with a warning). Failing after another worker closed the shared socket raises RuntimeError: the
    worker would serve nobody, so it stops and BentoML's arbiter starts it again."""
    argv = sys.argv if argv is None else argv
    fd_arg = _arg(argv, "--fd")
    if (
        workers <= 1
        or fd_arg is None
        or not fd_arg.isdigit()
        or _arg(argv, "--service-name") != service_name
        or not sys.platform.startswith("linux")
        or not hasattr(socket, "SO_REUSEPORT")
        or os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off")
    ):
        return False
    fd = int(fd_arg)
    copy = os.dup(fd)
    try:
        shared = socket.socket(fileno=copy)
    except OSError:  # not a socket
        os.close(copy)
        return False
    own = None
    try:
        # not required to be listening: the first worker here stops the shared socket for all the others
        if shared.family not in (socket.AF_INET, socket.AF_INET6) or shared.type != socket.SOCK_STREAM:
            return False
        address = shared.getsockname()
        if not address[1]:
            return False
        backlog = int(_arg(argv, "--backlog") or 2048)
        # the shared socket must allow the port's reuse for the worker's own to bind beside it
        shared.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        own = socket.socket(shared.family, socket.SOCK_STREAM)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        own.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if shared.family == socket.AF_INET6:
            v6only = shared.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
            own.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        own.bind(address)
        own.listen(backlog)  # listening before the shared socket stops: no moment without a listener
        try:
            # leaves the reuse group; a connection still queued on it is reset (only before the first
            # worker gets here, during start-up: nobody serves it yet)
            shared.shutdown(socket.SHUT_RD)
        except OSError:
            pass  # another worker did it already
        os.dup2(own.fileno(), fd)  # BentoML's worker wraps descriptor `fd` for uvicorn: now the worker's own
    except OSError as exc:
        if not _listening(shared):
            # another worker already took the shared socket out of service: keeping it would serve nobody, so
            # this worker stops, and BentoML's arbiter starts it again
            raise RuntimeError(
                f"API worker: no socket of its own to listen on ({exc}); the shared one is closed"
            ) from exc
        log.warning(
            "worker kept BentoML's shared listening socket (connections may not spread across workers): %s", exc
        )
        return False
    finally:
        shared.close()
        if own is not None:
            own.close()
    log.info("worker %s listens on its own socket for %s:%s (SO_REUSEPORT)", _arg(argv, "--worker-id"), *address[:2])
    return True


def _listening(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False

"""Is there a Ray cluster this shell may join at an address? Answered in seconds, before any work.

ray.init() retries for 20 s or more against a dead port, a port that is not Ray's (the dashboard's, a proxy) or
a cluster that refuses the token; the sweep launcher (hydra/launcher=ray) and `scopeml-batch --engine ray` ask
here first and fail naming their own setting.
"""

from __future__ import annotations

import os
import socket
import threading

CONNECT_TIMEOUT_S = 3.0
GCS_ANSWER_TIMEOUT_S = 5.0
TOKEN_HINT = (
    "a cluster with token authentication (what `ray start` enables) also needs RAY_AUTH_MODE=token and its token "
    "(RAY_AUTH_TOKEN or ~/.ray/auth_token) in this shell"
)


def init_failure(exc: Exception, joining: bool, setting: str, address: str, start_setting: str) -> str:
    """The message for a ray.init() that raised: naming `start_setting` when Ray was to start here, else the
    address `setting`, with the token advice when this shell has not asked for token authentication."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if not joining:
        return f"{start_setting}: could not start Ray on this machine: {first}"
    hint = "" if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" else f"; {TOKEN_HINT}"
    return f"{setting}: could not join the Ray cluster at {address}: {first}{hint}"


def problem(address: str, unset: str) -> str | None:
    """Why `address` cannot be joined, or None. `unset` says what leaving the setting out does (for the advice)."""
    return unreachable(address, unset) or not_ray(address)


def unreachable(address: str, unset: str) -> str | None:
    """Why nothing answers at a Ray address (HOST:PORT, ray://HOST:PORT), or None when a socket connects.
    `auto` (the cluster started on this machine) is left to Ray, which answers at once."""
    if address == "auto":
        return None
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        return f"expected HOST:PORT (what `ray start --head` prints), ray://HOST:PORT or auto, got {address!r}"
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        return (
            f"no Ray cluster answers at {host}:{port} ({reason} after at most {CONNECT_TIMEOUT_S:.0f} s); start one"
            f" with `ray start --head` and pass the address it prints, or {unset}"
        )


def not_ray(address: str) -> str | None:
    """Why what answers at HOST:PORT is not a Ray cluster this shell may join, or None. ray.init would retry for
    about 20 s against a port that answers something else (the dashboard's, a proxy) or refuses the token; one GCS
    request answers in under a second. Left to ray.init for ray:// and auto, and when Ray's client is not there."""
    if address == "auto" or "://" in address:
        return None
    try:
        from ray._raylet import GcsClient  # Ray's own GCS client (what ray.init connects with); not a public API
    except ImportError:
        return None
    answer: dict = {}

    def ask() -> None:
        try:
            answer["cluster"] = GcsClient(address=address).cluster_id
        except Exception as exc:  # AuthenticationError, RpcError, ...
            answer["error"] = exc

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(GCS_ANSWER_TIMEOUT_S)
    if "cluster" in answer:
        return None
    advice = "give the GCS address that `ray start --head` prints (port 6379 unless --port), not the dashboard's"
    exc = answer.get("error")
    if exc is None:
        waited = f"no answer within {GCS_ANSWER_TIMEOUT_S:.0f} s"
        return f"something accepts connections at {address}, but not a Ray cluster ({waited}): {advice}"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "auth" in type(exc).__name__.lower() or "token" in first.lower():
        hint = "" if "RAY_AUTH" in first else f"; {TOKEN_HINT}"  # Ray 2.60's own message says what to set
        return f"the Ray cluster at {address} refused this shell: {first}{hint}"
    return f"something answers at {address}, but not a Ray cluster ({first}): {advice}"

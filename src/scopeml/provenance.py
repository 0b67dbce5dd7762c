"""Where a result came from: code version, environment, command line."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("scopeml", "torch", "torchaudio", "lightning", "hydra-core", "wandb", "numpy")


def git_state(where: str | Path = ".") -> dict:
    """Commit and dirty flag of the repository holding `where`; nulls outside a git checkout."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "commit": commit,
        "dirty": bool(status) if status is not None else None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
    }


def collect(where: str | Path = ".", hidden: set[str] = frozenset()) -> dict:
    """Versions, git state and the command line (secret-named and `hidden` values redacted, scopeml.redact).

    The host is kept as a short digest of its name: enough to tell machines apart, nothing to look up.
    """
    import hashlib

    from scopeml.redact import redact_argv

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "git": git_state(where),
        "argv": redact_argv(sys.argv, set(hidden)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
        "packages": versions,
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def host_speed(steps: int = 2_000_000) -> float:
    """CPU seconds of a fixed pure-Python loop: a yardstick printed beside timings taken on a shared machine.

    On the 2-core development VM, 10M steps took 0.47 to 0.66 CPU-s within one minute (2026-12-01), and the
    serving benchmark's in-process call of a DS-CNN ran 181-194 clips/s that day against 390-572 two days before:
    a time without this beside it cannot be compared with another.
    """
    started = time.process_time()
    total = 0
    for i in range(steps):
        total += i
    return round(time.process_time() - started, 3)

"""The conf/ folder as it is at a git revision, written out to a scratch folder so Hydra can compose from it."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Where the configs lived before they moved into the package: a revision without the current
# folder is read from here, so a diff across the move still compares configs with configs.
FORMER_CONF = "conf"


class GitError(RuntimeError):
    pass


def git(top: Path | None, *args: str, input: bytes | None = None, cwd: Path | None = None) -> bytes:
    cmd = ["git", *(["-C", str(top)] if top else []), *args]
    try:
        proc = subprocess.run(cmd, input=input, capture_output=True, cwd=cwd)
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    if proc.returncode != 0:
        raise GitError(proc.stderr.decode(errors="replace").strip() or f"{' '.join(cmd)} failed")
    return proc.stdout


def repo_top(path: Path) -> Path:
    """The top folder of the git work tree holding path; GitError when there is none."""
    start = path if path.is_dir() else path.parent
    return Path(git(None, "rev-parse", "--show-toplevel", cwd=start).decode().strip()).resolve()


def commit_of(top: Path, rev: str) -> str:
    """The commit a revision name points at; GitError for an unknown revision."""
    return git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()


def export_conf(top: Path, commit: str, conf_rel: str, dest: Path) -> Path | None:
    """Write the config folder as it is at `commit` under dest; None when the commit has no such folder.

    Blobs are read with ls-tree and cat-file (not `git archive`, whose export-ignore and
    export-subst attributes could drop or rewrite files).
    """
    for folder in dict.fromkeys([conf_rel, FORMER_CONF]):
        entries = _blobs(top, commit, folder)
        if entries:
            _write_blobs(top, entries, dest)
            return dest / folder
    return None


def _blobs(top: Path, commit: str, folder: str) -> list[tuple[str, str, str]]:
    """(mode, object id, path) of every file below folder at commit; empty when folder is not a tree there."""
    listing = git(top, "ls-tree", "-r", "-z", "--full-tree", commit, "--", folder)
    entries = []
    for item in listing.split(b"\0"):
        if not item:
            continue
        meta, _, name = item.partition(b"\t")
        mode, kind, oid = meta.decode().split()
        if kind == "blob" and name.decode().startswith(folder + "/"):  # a link named like the folder is no tree
            entries.append((mode, oid, name.decode()))
    return entries


def _write_blobs(top: Path, entries: list[tuple[str, str, str]], dest: Path) -> None:
    out = git(top, "cat-file", "--batch", input="".join(f"{oid}\n" for _, oid, _ in entries).encode())
    pos = 0
    for mode, _, name in entries:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        data = out[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            os.symlink(data.decode(), target)
        else:
            target.write_bytes(data)


@contextmanager
def trees_to_compare(conf: Path, rev: str, against: str | None) -> Iterator[tuple[tuple[str, Path | None], ...]]:
    """((name, folder) of the old side, (name, folder) of the new side): the config folder at rev, and the
    working tree's folder (or the one at revision `against`). GitError with a message for the user otherwise."""
    conf = conf.resolve()
    try:
        top = repo_top(conf)
    except GitError as exc:
        raise GitError(f"{conf} is not inside a git repository ({exc})") from exc
    try:
        conf_rel = conf.relative_to(top).as_posix()
    except ValueError as exc:
        raise GitError(f"{conf} is outside the repository {top}") from exc
    commits = []
    for name in [rev] + ([against] if against else []):
        try:
            commits.append(commit_of(top, name))
        except GitError as exc:
            raise GitError(f"unknown revision {name!r}") from exc
    with tempfile.TemporaryDirectory(prefix="scopeml-config-diff-") as tmp:
        old = export_conf(top, commits[0], conf_rel, Path(tmp) / "old")
        new = export_conf(top, commits[1], conf_rel, Path(tmp) / "new") if against else conf
        yield (rev, old), (against or "working tree", new)

"""Which folders are training runs: a folder holding status.json is one; a sweep folder holds them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from scopeml.run_files import SELECTION_FILE, STATUS_FILE
from scopeml.selection import SelectError

SEARCH_DEPTH = 2  # sweep/<job>/ and sweeps/<time>/<job>/


def find_runs(paths: Iterable[Path]) -> list[Path]:
    """Run folders under the given paths: a path holding status.json is a run, otherwise its
    subfolders down to depth 2 that hold one are. Raises SelectError naming a path with none."""
    runs: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise SelectError(f"{path}: no such file or folder")
        if not path.is_dir():
            raise SelectError(f"{path}: not a folder (give a run folder or a sweep folder of runs)")
        found = _runs_under(path)
        if not found:
            raise SelectError(
                f"{path}: no training runs found (no {STATUS_FILE} in it or in its subfolders "
                f"down to depth {SEARCH_DEPTH}); give a run folder or a sweep folder written by scopeml-train"
            )
        for run in found:
            key = run.resolve()
            if key not in seen:
                seen.add(key)
                runs.append(run)
    return runs


def default_out(paths: list[Path]) -> Path:
    """selection.json goes into the sweep folder given first, else into the current folder."""
    first = Path(paths[0])
    if first.is_dir() and not (first / STATUS_FILE).is_file():
        return first / SELECTION_FILE
    return Path.cwd() / SELECTION_FILE


def _runs_under(path: Path) -> list[Path]:
    if (path / STATUS_FILE).is_file():
        return [path]
    found: list[Path] = []
    frontier = [path]
    for _ in range(SEARCH_DEPTH):
        nxt = []
        for folder in frontier:
            for child in sorted(_subdirs(folder)):
                if (child / STATUS_FILE).is_file():
                    found.append(child)
                else:
                    nxt.append(child)
        frontier = nxt
    return sorted(found, key=lambda p: (p.parent.as_posix(), p.name))


def _subdirs(folder: Path) -> list[Path]:
    try:
        return [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
    except OSError:
        return []

"""Which checkpoint a run resumes from, and the stale checkpoints a fresh run removes.

Path logic only, without Lightning or torch: a bad `resume=` fails before the heavy imports.
"""

from __future__ import annotations

from pathlib import Path


def clear_stale_checkpoints(run_dir: Path, resume_from: str | None) -> list[str]:
    """A fresh run into a folder that already holds checkpoints removes them first.

    Otherwise Lightning writes best-v1.ckpt beside an older best.ckpt, the run's metrics come from
    the new weights and packaging ships the old ones (it happened: a re-run lifecycle served the
    previous model while monitoring compared it with the new model's reference)."""
    folder = run_dir / "checkpoints"
    if resume_from is not None and Path(resume_from).resolve().parent == folder.resolve():
        return []  # resuming this very run: its checkpoints are the point
    stale = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return [p.name for p in stale]


def resume_checkpoint(resume: bool | str, run_dir: Path) -> str | None:
    """The checkpoint `resume` points at: this run folder's last.ckpt (true), a run folder, or a .ckpt file."""
    from scopeml.config import ConfigError

    if resume is False:
        return None
    target = run_dir if resume is True else Path(resume).expanduser()
    ckpt = target / "checkpoints" / "last.ckpt" if target.is_dir() else target
    if not ckpt.is_file():
        hint = (
            " (pass the killed run's folder: hydra.run.dir=<it> resume=true, or resume=<its folder>)"
            if resume is True
            else ""
        )
        raise ConfigError([f"resume: no checkpoint at {ckpt}{hint}"])
    return str(ckpt)

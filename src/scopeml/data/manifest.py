"""A user's own data: a CSV or JSONL manifest with path, label and optional speaker, split and tag columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scopeml.config.schema import ManifestData
from scopeml.data.dataset import DataError
from scopeml.data.files import Entry, read_entries
from scopeml.data.fingerprint import hash_file, hash_files

RESERVED = {"path", "label", "speaker", "split"}


def read_manifest(cfg: ManifestData) -> tuple[pd.DataFrame, Path]:
    path = Path(cfg.manifest).expanduser().resolve()
    if not path.is_file():
        raise DataError(f"data.manifest: file '{path}' does not exist")
    try:
        table = (
            pd.read_json(path, lines=True, dtype=False)
            if path.suffix in {".jsonl", ".json"}
            else pd.read_csv(path, dtype=str, keep_default_na=False)
        )
    except ValueError as exc:
        raise DataError(
            f"data.manifest: '{path}' is not valid {'JSONL' if path.suffix in {'.jsonl', '.json'} else 'CSV'} ({exc})"
        ) from None
    missing = [c for c in ("path", "label") if c not in table.columns]
    if missing:
        raise DataError(f"data.manifest: '{path}' lacks column(s) {missing}; it has {list(table.columns)}")
    if "speaker" not in table.columns and not cfg.allow_missing_speaker:
        raise DataError(
            f"data.manifest: '{path}' has no speaker column, so splits cannot keep speakers apart; "
            "add one, or set data.allow_missing_speaker=true to split clip by clip"
        )
    root = Path(cfg.root).expanduser().resolve() if cfg.root else path.parent
    return table, root


def resolve_under(root: Path, relative: str, row: int) -> Path:
    """Refuse a manifest path that escapes its root (../, absolute paths elsewhere, symlinks out)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise DataError(f"data.manifest row {row}: path {relative!r} resolves outside data.root '{root}'")
    return target


def list_entries(cfg: ManifestData) -> list[Entry]:
    table, root = read_manifest(cfg)
    tags = [c for c in table.columns if c not in RESERVED]
    entries = []
    for i, row in enumerate(table.to_dict("records"), start=2):  # row 1 is the header in a CSV
        path = resolve_under(root, str(row["path"]), i)
        speaker = str(row["speaker"]) if "speaker" in row and str(row["speaker"]) else f"clip-{i}"
        extra = {f"tag_{c}": row[c] for c in tags}
        if "split" in row and str(row["split"]):
            extra["manifest_split"] = str(row["split"])
        entries.append(Entry(path, str(row["label"]), speaker, extra))
    if not entries:
        raise DataError(f"data.manifest: '{cfg.manifest}' lists no clips")
    return entries


def source_info(cfg: ManifestData) -> dict:
    entries = list_entries(cfg)
    listing = [(str(e.path), e.path.stat().st_size if e.path.exists() else -1) for e in entries]
    return {"manifest_sha256": hash_file(Path(cfg.manifest).expanduser().resolve()), "listing": listing}


def content_hash(cfg: ManifestData, manifest: pd.DataFrame, waves: np.ndarray) -> str:
    _, root = read_manifest(cfg)
    return (
        hash_files(manifest["source"], root) if len(manifest) else hash_file(Path(cfg.manifest).expanduser().resolve())
    )


def make_clips(cfg: ManifestData, progress: bool = True) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    return read_entries(list_entries(cfg), cfg, progress, "manifest")

"""A user's own data: a CSV or JSONL manifest with path, label and optional speaker, split and tag columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import pandas as pd

from scopeml.data.dataset import DataError
from scopeml.data.fingerprint import hash_config, hash_file

RESERVED = {"path", "label", "speaker", "split"}


class Manifest:
    """Your own files, listed in a CSV or JSONL manifest: path, label, and optional speaker, split and tag columns.

    A data source (scopeml.data.source). Paths resolve under `root` (default: the manifest's folder)
    and none may leave it. A `split` column, when every value is train/val/test, is the split.
    Without a speaker column, set `allow_missing_speaker` to split clip by clip.
    """

    def __init__(self, manifest: str, root: Optional[str] = None, allow_missing_speaker: bool = False):
        self.manifest, self.root, self.allow_missing_speaker = manifest, root, allow_missing_speaker

    def read(self) -> tuple[pd.DataFrame, Path]:
        path = Path(self.manifest).expanduser().resolve()
        if not path.is_file():
            raise DataError(f"data.source.manifest: file '{path}' does not exist")
        json_lines = path.suffix in {".jsonl", ".json"}
        try:
            table = (
                pd.read_json(path, lines=True, dtype=False)
                if json_lines
                else pd.read_csv(path, dtype=str, keep_default_na=False)
            )
        except ValueError as exc:
            raise DataError(
                f"data.source.manifest: '{path}' is not valid {'JSONL' if json_lines else 'CSV'} ({exc})"
            ) from None
        missing = [c for c in ("path", "label") if c not in table.columns]
        if missing:
            raise DataError(f"data.source.manifest: '{path}' lacks column(s) {missing}; it has {list(table.columns)}")
        if "speaker" not in table.columns and not self.allow_missing_speaker:
            raise DataError(
                f"data.source.manifest: '{path}' has no speaker column, so splits cannot keep speakers apart; "
                "add one, or set data.source.allow_missing_speaker=true to split clip by clip"
            )
        root = Path(self.root).expanduser().resolve() if self.root else path.parent
        return table, root

    def fingerprint(self) -> str:
        """The manifest's bytes and the listed files' sizes (their content goes in the data fingerprint)."""
        table, root = self.read()
        listing = [
            (str(p), p.stat().st_size if p.exists() else -1)
            for p in (resolve_under(root, str(r), i) for i, r in enumerate(table["path"], start=2))
        ]
        return hash_config(
            {"manifest_sha256": hash_file(Path(self.manifest).expanduser().resolve()), "listing": listing}
        )

    def clips(self) -> Iterator[dict]:
        table, root = self.read()
        tags = [c for c in table.columns if c not in RESERVED]
        if table.empty:
            raise DataError(f"data.source.manifest: '{self.manifest}' lists no clips")
        for i, row in enumerate(table.to_dict("records"), start=2):  # row 1 is the header in a CSV
            clip = {
                "path": resolve_under(root, str(row["path"]), i),
                "label": str(row["label"]),
                "speaker": str(row["speaker"]) if "speaker" in row and str(row["speaker"]) else f"clip-{i}",
                **{f"tag_{c}": row[c] for c in tags},
            }
            if "split" in row and str(row["split"]):
                clip["manifest_split"] = str(row["split"])
            yield clip


def resolve_under(root: Path, relative: str, row: int) -> Path:
    """Refuse a manifest path that escapes its root (../, absolute paths elsewhere, symlinks out)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise DataError(f"data.source.manifest row {row}: path {relative!r} resolves outside data.source.root '{root}'")
    return target

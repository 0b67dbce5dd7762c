"""Google Speech Commands v2 in its published layout: root/<word>/<speaker>_nohash_<n>.wav."""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from scopeml.config.schema import SpeechCommandsData
from scopeml.data.dataset import DataError
from scopeml.data.files import Entry, read_entries
from scopeml.data.fingerprint import hash_file, hash_files

NOISE_FOLDER = "_background_noise_"


def root_dir(cfg: SpeechCommandsData) -> Path:
    root = Path(cfg.root).expanduser().resolve()
    if not root.exists():
        if not cfg.download:
            raise DataError(
                f"data.root: folder '{root}' does not exist "
                "(set data.download=true to fetch Speech Commands v2, 2.3 GB)"
            )
        download(cfg.url, cfg.sha256, root)
    if not root.is_dir():
        raise DataError(f"data.root: '{root}' is not a folder")
    return root


def list_entries(cfg: SpeechCommandsData) -> list[Entry]:
    root = root_dir(cfg)
    entries = []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != NOISE_FOLDER):
        files = sorted(word_dir.glob("*.wav"))
        if cfg.max_per_word is not None:
            # A hash order spreads the cap across speakers instead of taking the first few alphabetically.
            files = sorted(files, key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())[: cfg.max_per_word]
        for path in files:
            speaker = path.stem.split("_nohash_")[0]
            entries.append(Entry(path, word_dir.name, speaker))
    if not entries:
        raise DataError(f"data.root: no <word>/*.wav folders under '{root}'")
    return entries


def source_info(cfg: SpeechCommandsData) -> dict:
    root = root_dir(cfg)
    return {"listing": [_listing(e.path, root) for e in list_entries(cfg)]}


def _listing(path: Path, root: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.relative_to(root)), st.st_size, int(st.st_mtime)


def content_hash(cfg: SpeechCommandsData, manifest: pd.DataFrame, waves: np.ndarray) -> str:
    return hash_files(manifest["source"], root_dir(cfg))


def make_clips(cfg: SpeechCommandsData, progress: bool = True) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    return read_entries(list_entries(cfg), cfg, progress, "Speech Commands")


def download(url: str, sha256: str, root: Path) -> None:
    """Fetch the published archive, check its SHA-256, and unpack it (refusing paths that leave root)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        archive = Path(tmp) / "speech_commands.tar.gz"
        urllib.request.urlretrieve(url, archive)  # noqa: S310 - pinned URL from config
        digest = hash_file(archive)
        if digest != sha256:
            raise DataError(f"data.sha256: archive from {url} has SHA-256 {digest}, expected {sha256}")
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "out", filter="data")
        (Path(tmp) / "out").rename(root)

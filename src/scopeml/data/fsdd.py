"""The Free Spoken Digit Dataset: real 8 kHz recordings named {digit}_{speaker}_{index}.wav."""

from __future__ import annotations

import re
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from scopeml.config.schema import FsddData
from scopeml.data.dataset import DataError
from scopeml.data.files import Entry, read_entries
from scopeml.data.fingerprint import hash_files

NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<index>\d+)\.wav$")

# Integrity pin for a download of the upstream commit in FsddData.url: the digest
# (fingerprint.hash_files) of the recordings of these four speakers at that commit.
PINNED_SPEAKERS = ("george", "jackson", "lucas", "theo")
PINNED_SHA256 = "0ba643af27f63238db5a35c664af081d0d3eaff7ccacb88b5994ad94b886ac1d"


def recordings_dir(cfg: FsddData) -> Path:
    root = Path(cfg.root).expanduser().resolve()
    if not root.exists():
        if cfg.download:
            download(cfg.url, root)
        else:
            raise DataError(
                f"data.root: folder '{root}' does not exist. Point data.root at a copy of FSDD "
                "(the folder holding recordings/), or set data.download=true when online."
            )
    if not root.is_dir():
        raise DataError(f"data.root: '{root}' is not a folder")
    return root / "recordings" if (root / "recordings").is_dir() else root


def list_files(cfg: FsddData) -> list[Path]:
    folder = recordings_dir(cfg)
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise DataError(f"data.root: no .wav files in '{folder}'")
    return files


def source_info(cfg: FsddData) -> dict:
    """A cheap listing (names, sizes, times) for the cache key; the content hash goes in the fingerprint."""
    files = list_files(cfg)
    listing = [(p.name, st.st_size, int(st.st_mtime)) for p, st in ((p, p.stat()) for p in files)]
    return {"files": len(files), "listing": listing}


def content_hash(cfg: FsddData, manifest: pd.DataFrame, waves: np.ndarray) -> str:
    """Recorded data: the bytes of the files used, by name relative to the recordings' parent."""
    folder = recordings_dir(cfg)
    return hash_files(manifest["source"], folder.parent)


def make_clips(cfg: FsddData, progress: bool = True) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    entries, bad = [], []
    for path in list_files(cfg):
        match = NAME.match(path.name)
        if match:
            entries.append(Entry(path, match["digit"], match["speaker"], {"take": int(match["index"])}))
        else:
            bad.append({"source": str(path), "problem": "name does not follow {digit}_{speaker}_{index}.wav"})
    manifest, waves, unreadable = read_entries(entries, cfg, progress, "FSDD")
    return manifest, waves, bad + unreadable


def download(url: str, root: Path) -> None:
    """Fetch the pinned upstream commit and keep its recordings/ under root, after checking its content digest."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        archive = Path(tmp) / "fsdd.tar.gz"
        urllib.request.urlretrieve(url, archive)  # noqa: S310 - pinned https URL from config
        with tarfile.open(archive) as tar:
            members = [
                m for m in tar.getmembers() if "/recordings/" in m.name and m.name.endswith(".wav") and m.isfile()
            ]
            for m in members:
                m.name = "recordings/" + Path(m.name).name  # flatten; also defeats ../ in member names
            tar.extractall(Path(tmp) / "out", members=members, filter="data")
        out = Path(tmp) / "out"
        pinned = [p for p in (out / "recordings").glob("*.wav") if p.name.split("_")[1] in PINNED_SPEAKERS]
        digest = hash_files(pinned, out)
        if digest != PINNED_SHA256:
            raise DataError(
                f"data.url: downloaded FSDD does not match the pinned content digest ({digest} != {PINNED_SHA256})"
            )
        out.rename(root)

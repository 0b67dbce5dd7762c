"""Google Speech Commands v2 in its published layout: root/<word>/<speaker>_nohash_<n>.wav."""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from scopeml.data.dataset import DataError
from scopeml.data.fingerprint import hash_file

NOISE_FOLDER = "_background_noise_"


DEFAULT_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
DEFAULT_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"


class SpeechCommands:
    """Google Speech Commands v2 in its published layout: root/<word>/<speaker>_nohash_<n>.wav.

    A data source (scopeml.data.source). `max_per_word` caps clips per word (the full set has ~105k);
    `download` fetches and checks the published archive (2.3 GB) when `root` is missing.
    """

    def __init__(
        self,
        root: str,
        download: bool = False,
        url: str = DEFAULT_URL,
        sha256: str = DEFAULT_SHA256,
        max_per_word: Optional[int] = None,
    ):
        self.root, self.download, self.url, self.sha256, self.max_per_word = root, download, url, sha256, max_per_word

    def root_dir(self) -> Path:
        root = Path(self.root).expanduser().resolve()
        if not root.exists():
            if not self.download:
                raise DataError(
                    f"data.source.root: folder '{root}' does not exist "
                    "(set data.source.download=true to fetch Speech Commands v2, 2.3 GB)"
                )
            download(self.url, self.sha256, root)
        if not root.is_dir():
            raise DataError(f"data.source.root: '{root}' is not a folder")
        return root

    def clips(self) -> Iterator[dict]:
        root = self.root_dir()
        found = False
        for word_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name != NOISE_FOLDER):
            files = sorted(word_dir.glob("*.wav"))
            if self.max_per_word is not None:
                # A hash order spreads the cap across speakers instead of taking the first few alphabetically.
                files = sorted(files, key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())[: self.max_per_word]
            for path in files:
                found = True
                yield {"path": path, "label": word_dir.name, "speaker": path.stem.split("_nohash_")[0]}
        if not found:
            raise DataError(f"data.source.root: no <word>/*.wav folders under '{root}'")


def download(url: str, sha256: str, root: Path) -> None:
    """Fetch the published archive, check its SHA-256, and unpack it (refusing paths that leave root)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        archive = Path(tmp) / "speech_commands.tar.gz"
        urllib.request.urlretrieve(url, archive)  # noqa: S310 - pinned URL from config
        digest = hash_file(archive)
        if digest != sha256:
            raise DataError(f"data.source.sha256: archive from {url} has SHA-256 {digest}, expected {sha256}")
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "out", filter="data")
        (Path(tmp) / "out").rename(root)

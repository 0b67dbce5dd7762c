"""The Free Spoken Digit Dataset: real 8 kHz recordings named {digit}_{speaker}_{index}.wav."""

from __future__ import annotations

import re
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from scopeml.data.dataset import DataError
from scopeml.data.fingerprint import hash_files

NAME = re.compile(r"^(?P<digit>\d)_(?P<speaker>[A-Za-z]+)_(?P<index>\d+)\.wav$")

# Integrity pin for a download of the upstream commit in DEFAULT_URL: the digest
# (fingerprint.hash_files) of the recordings of these four speakers at that commit.
PINNED_SPEAKERS = ("george", "jackson", "lucas", "theo")
PINNED_SHA256 = "0ba643af27f63238db5a35c664af081d0d3eaff7ccacb88b5994ad94b886ac1d"


DEFAULT_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/26eb9aaf76e81b692f806f9140c2d2777410d7a1.tar.gz"
)


class FSDD:
    """The Free Spoken Digit Dataset read from `root` (its recordings/ folder or the files themselves).

    A data source (scopeml.data.source): one clip per file, labeled with its digit, spoken by the
    speaker its name gives. A file whose name does not follow the convention is reported as unusable.
    `download` fetches the pinned upstream commit into `root` when it is missing.
    """

    def __init__(self, root: str, download: bool = False, url: str = DEFAULT_URL):
        self.root, self.download, self.url = root, download, url

    def recordings_dir(self) -> Path:
        root = Path(self.root).expanduser().resolve()
        if not root.exists():
            if self.download:
                download(self.url, root)
            else:
                raise DataError(
                    f"data.source.root: folder '{root}' does not exist. Point data.source.root at a copy of FSDD "
                    "(the folder holding recordings/), or set data.source.download=true when online."
                )
        if not root.is_dir():
            raise DataError(f"data.source.root: '{root}' is not a folder")
        return root / "recordings" if (root / "recordings").is_dir() else root

    def clips(self) -> Iterator[dict]:
        folder = self.recordings_dir()
        files = sorted(folder.glob("*.wav"))
        if not files:
            raise DataError(f"data.source.root: no .wav files in '{folder}'")
        for path in files:
            match = NAME.match(path.name)
            if match:
                yield {"path": path, "label": match["digit"], "speaker": match["speaker"], "take": int(match["index"])}
            else:
                yield {"path": path, "label": "?", "problem": "name does not follow {digit}_{speaker}_{index}.wav"}


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
                f"data.source.url: downloaded FSDD does not match the pinned content digest "
                f"({digest} != {PINNED_SHA256})"
            )
        out.rename(root)

"""scopeml-batch without a trained model: which records reach the prediction log (one per job and model, never
twice for a resumed job), and which input paths are refused (symbolic links, paths resolving outside the root)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_wav

CLASSES = ["yes", "no"]


class FakeBundle:
    """What scopeml.serving.batch needs of a ServingBundle, with a fixed answer instead of a network."""

    def __init__(self, tag: str = "scopeml-kws:v1"):
        self.tag, self.classes, self.custom_features = tag, CLASSES, {}

    def prepare(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        mono = samples.mean(axis=-1) if samples.ndim > 1 else samples
        return np.resize(mono.astype(np.float32), 8000)

    def features(self, wave: np.ndarray, duration_s: float | None = None) -> dict:
        from scopeml.features import monitoring_features

        return monitoring_features(wave, 8000, duration_s)

    def predict(self, waves: np.ndarray) -> np.ndarray:
        return np.tile([0.7, 0.3], (len(waves), 1))

    def describe(self, probs: np.ndarray) -> dict:
        best = int(np.argmax(probs))
        return {
            "label": CLASSES[best],
            "confidence": float(probs[best]),
            "probabilities": dict(zip(CLASSES, map(float, probs))),
            "model": self.tag,
        }


def folder_of_clips(path: Path, n: int = 5) -> Path:
    (path / "day1").mkdir(parents=True)
    for i in range(n):
        write_wav(path / "day1" / f"clip{i}.wav", seconds=0.3, freq=300.0 + 50 * i)
    return path


def logged(log: Path):
    from scopeml.serving.log import read_log

    return read_log(log)


# ---------------------------------------------------------------- which records reach the log
def test_a_new_job_or_model_over_the_same_folder_is_logged_and_a_resumed_job_is_not_logged_twice(tmp_path):
    from scopeml.serving import batch

    clips, log = folder_of_clips(tmp_path / "incoming"), tmp_path / "log.sqlite"
    batch.run(clips, tmp_path / "day1", FakeBundle(), log_path=log, batch_size=2, progress=False)
    assert len(logged(log)) == 5
    batch.run(clips, tmp_path / "day2", FakeBundle(), log_path=log, batch_size=2, progress=False)  # the next day
    assert len(logged(log)) == 10, "the next day's job over the same folder is logged too"
    batch.run(clips, tmp_path / "v2", FakeBundle("scopeml-kws:v2"), log_path=log, batch_size=2, progress=False)
    table = logged(log)
    assert len(table) == 15, "so is a new model's"
    assert table["job"].notna().all() and table["job"].nunique() == 3
    assert table.groupby(["job", "model_tag"]).size().tolist() == [5, 5, 5]
    assert set(table["request_id"]) == {f"batch:day1/clip{i}.wav" for i in range(5)}  # labels still join by path

    # day2's job killed after logging its last chunk but before writing its part file: started again, the chunk
    # is scored again and not logged again
    parts = sorted((tmp_path / "day2" / "parts").glob("part-*.parquet"))
    parts[-1].unlink()
    batch.run(clips, tmp_path / "day2", FakeBundle(), log_path=log, batch_size=2, progress=False)
    again = logged(log)
    assert len(again) == 15
    assert not again.duplicated(["request_id", "job", "model_tag"]).any()
    scored = __import__("pandas").read_parquet(tmp_path / "day2" / "predictions.parquet")
    assert len(scored) == 5 and scored["job"].nunique() == 1
    assert scored["job"].iloc[0] in set(table["job"])


def test_a_job_closes_its_prediction_log_when_it_ends_or_fails(tmp_path, monkeypatch):
    import sqlite3

    from scopeml.serving import batch

    src, log = folder_of_clips(tmp_path / "in"), tmp_path / "log.sqlite"
    opened = []
    real_begin = batch.begin
    monkeypatch.setattr(batch, "begin", lambda *a, **k: opened.append(real_begin(*a, **k)) or opened[-1])
    batch.run(src, tmp_path / "out", FakeBundle(), log_path=log, progress=False)

    class Broken(FakeBundle):
        def predict(self, waves):
            raise RuntimeError("model broke")

    with pytest.raises(RuntimeError, match="model broke"):
        batch.run(src, tmp_path / "out2", Broken(), log_path=log, progress=False)
    assert len(opened) == 2
    for job in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            job.log._db.execute("SELECT 1")


def test_resuming_a_job_with_another_model_is_refused(tmp_path):
    from scopeml.serving import batch

    clips, log = folder_of_clips(tmp_path / "incoming"), tmp_path / "log.sqlite"
    batch.run(clips, tmp_path / "out", FakeBundle(), log_path=log, progress=False)
    with pytest.raises(batch.BatchError, match="scopeml-kws:v1.*scopeml-kws:v2.*new --out"):
        batch.run(clips, tmp_path / "out", FakeBundle("scopeml-kws:v2"), log_path=log, progress=False)
    assert len(logged(log)) == 5


# ---------------------------------------------------------------- which paths are refused
def batch_cli(tmp: Path, *args) -> subprocess.CompletedProcess:
    """scopeml-batch with an empty model store: inputs are checked before any model is loaded."""
    return subprocess.run(
        [sys.executable, "-m", "scopeml.cli.batch", *map(str, args), "--model", "no-such-model:v0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "BENTOML_HOME": str(tmp / "bentoml-home")},
    )


def test_a_symlink_in_the_folder_is_refused_naming_the_file(tmp_path):
    clips = folder_of_clips(tmp_path / "incoming")
    secret = write_wav(tmp_path / "elsewhere.wav")
    (clips / "day1" / "link.wav").symlink_to(secret)  # points outside the folder
    (clips / "inside.wav").symlink_to(clips / "day1" / "clip0.wav")  # points inside it: still a link
    proc = batch_cli(tmp_path, clips, "--out", tmp_path / "out", "--log", tmp_path / "log.sqlite")
    assert proc.returncode == 2, proc.stderr
    assert "day1/link.wav" in proc.stderr and "symbolic link" in proc.stderr and "outside" in proc.stderr
    assert "2 path(s)" in proc.stderr and "inside.wav" in proc.stderr
    assert "day1/clip1.wav" not in proc.stderr  # real files are not named
    assert not (tmp_path / "out" / "predictions.parquet").exists()


def test_a_manifest_path_through_a_symlink_or_outside_the_root_is_refused_naming_the_file(tmp_path):
    data = folder_of_clips(tmp_path / "data")
    (tmp_path / "outside").mkdir()
    write_wav(tmp_path / "outside" / "secret.wav")
    (data / "linked").symlink_to(tmp_path / "outside")  # a folder link inside the root, leading out of it
    (data / "alias.wav").symlink_to(data / "day1" / "clip1.wav")
    manifest = data / "manifest.csv"
    manifest.write_text(
        "path\nday1/clip0.wav\nlinked/secret.wav\nalias.wav\n../outside/secret.wav\n"
        f"{tmp_path / 'outside' / 'secret.wav'}\nday1/../day1/clip2.wav\n"
    )
    proc = batch_cli(tmp_path, manifest, "--out", tmp_path / "out", "--log", tmp_path / "log.sqlite")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr
    assert "4 path(s)" in err, err
    assert "linked/secret.wav" in err and "alias.wav" in err and "../outside/secret.wav" in err
    assert "outside the input root" in err and "symbolic link" in err
    assert "day1/clip0.wav" not in err and "clip2.wav" not in err


def test_list_inputs_keeps_plain_files_and_does_not_follow_folder_links(tmp_path):
    from scopeml.serving import batch

    clips = folder_of_clips(tmp_path / "incoming")
    (clips / "latest").symlink_to(clips / "day1", target_is_directory=True)
    root, files = batch.list_inputs(clips, None)
    assert root == clips.resolve()
    assert [f.relative_to(root).as_posix() for f in files] == [f"day1/clip{i}.wav" for i in range(5)]


def test_a_file_swapped_for_a_symlink_after_listing_is_a_per_file_error(tmp_path):
    from scopeml.serving import batch

    clips = folder_of_clips(tmp_path / "incoming", n=2)
    root, files = batch.list_inputs(clips, None)
    files[1].unlink()
    files[1].symlink_to(write_wav(tmp_path / "elsewhere.wav"))
    rows = batch.score_chunk(FakeBundle(), files, root)
    assert rows[0]["error"] is None and rows[0]["label"] == "yes"
    assert "day1/clip1.wav" in rows[1]["error"] and "symbolic link" in rows[1]["error"]

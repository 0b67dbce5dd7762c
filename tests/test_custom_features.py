"""A user's monitoring feature (monitor.custom_features) goes from the config through packaging to every
logged prediction and the monitoring reference; an older prediction log gains its column when opened."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_DATA, TINY_FIT, train, write_wav

from scopeml.features import FEATURES

TESTS = Path(__file__).resolve().parent
PEAK = "+monitor.custom_features.peak={_target_:tiny_features.peak,_partial_:true}"


def test_a_log_written_before_custom_features_migrates_forward(tmp_path):
    from scopeml.serving.log import PredictionLog, read_log

    path = tmp_path / "old.sqlite"
    old_columns = (
        "time_utc",
        "request_id",
        "model_tag",
        "endpoint",
        "source",
        "label",
        "confidence",
        "probabilities",
        *FEATURES,
    )
    with sqlite3.connect(path) as db:  # the table as the previous release created it
        cols = ", ".join(f"{c} REAL" if c in FEATURES or c == "confidence" else f"{c} TEXT" for c in old_columns)
        db.execute(f"CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
        db.execute(
            f"INSERT INTO predictions ({', '.join(old_columns)}) VALUES ({', '.join('?' * len(old_columns))})",
            (
                "t0",
                "old",
                "m:1",
                "classify",
                "a.wav",
                "yes",
                0.9,
                json.dumps({"yes": 0.9, "no": 0.1}),
                1,
                -20,
                0.1,
                900,
                30,
            ),
        )
    log = PredictionLog(path, custom_features=["peak"])
    log.append(
        [
            {
                "time_utc": "t1",
                "request_id": "new",
                "model_tag": "m:1",
                "endpoint": "classify",
                "source": "b.wav",
                "label": "no",
                "confidence": 0.8,
                "probabilities": {"yes": 0.2, "no": 0.8},
                "duration_s": 1.0,
                "rms_dbfs": -21.0,
                "silence_ratio": 0.2,
                "spectral_centroid_hz": 800.0,
                "snr_db": 25.0,
                "peak": 0.42,
            }
        ]
    )
    log.close()
    table = read_log(path)
    assert list(table["request_id"]) == ["old", "new"]
    assert np.isnan(table["peak"].iloc[0]) and table["peak"].iloc[1] == pytest.approx(0.42)
    assert table["prob_no"].tolist() == pytest.approx([0.1, 0.8])


def test_an_unknown_or_clashing_custom_feature_is_a_config_error():
    from conftest import composed

    from scopeml.config import ConfigError, load

    with pytest.raises(ConfigError) as info:
        load(
            composed(
                "monitor.features=[rms_dbfs,peek]",
                PEAK,
                "+monitor.custom_features.snr_db={_target_:tiny_features.peak,_partial_:true}",
            )
        )
    text = str(info.value)
    assert "monitor.features: unknown monitoring feature(s) ['peek']" in text
    assert "monitor.custom_features: ['snr_db'] would replace built-in features" in text


@pytest.mark.slow
def test_a_custom_feature_is_packaged_logged_and_in_the_reference(tmp_path, monkeypatch):
    from scopeml.serving import batch
    from scopeml.serving.bundle import ServingBundle, write_bundle
    from scopeml.serving.log import read_log

    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the user's module, importable by the training subprocess
    run = tmp_path / "run"
    proc = train(run, *TINY_DATA, *TINY_FIT, "tracker=none", PEAK, "monitor.features=[rms_dbfs,peak]")
    assert proc.returncode == 0, proc.stderr[-3000:]

    bundle_dir = tmp_path / "bundle"
    write_bundle(run, bundle_dir, {})
    reference = __import__("pandas").read_parquet(bundle_dir / "reference.parquet")
    assert "peak" in reference and reference["peak"].between(0.0, 1.5).all() and reference["peak"].std() > 0

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(3):
        write_wav(clips / f"{i}.wav", seconds=0.5, sr=16000, freq=440.0 + 100 * i)
    bundle = ServingBundle.load(bundle_dir)
    batch.run(clips, tmp_path / "scored", bundle, log_path=tmp_path / "log.sqlite", progress=False)
    logged = read_log(tmp_path / "log.sqlite").sort_values("source")
    from scopeml.data.audio import read_audio

    expected = [float(np.abs(bundle.prepare(*read_audio(clips / f"{i}.wav"))).max()) for i in range(3)]
    assert logged["peak"].tolist() == pytest.approx(expected, rel=1e-6)

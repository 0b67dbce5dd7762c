"""The prediction log's schema: versioned, and migrated forward when opened, so a log written by an older release
keeps its rows and takes new inserts, and a new monitoring feature (built-in or custom) can be added to it."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest

# The log as the release before schema versions created it (git 4a07d6a): written literally, not from the code.
PREVIOUS_DDL = (
    "CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, time_utc TEXT, request_id TEXT, model_tag TEXT, "
    "endpoint TEXT, source TEXT, label TEXT, confidence REAL, probabilities TEXT, duration_s REAL, rms_dbfs REAL, "
    "silence_ratio REAL, spectral_centroid_hz REAL, snr_db REAL, extra_features TEXT)",
    "CREATE INDEX by_request ON predictions (request_id)",
)
OLD_ROWS = [
    ("t0", "req-1", "m:1", "classify", "a.wav", "yes", 0.9, '{"yes": 0.9, "no": 0.1}', 1.0, -20.0, 0.1, 900.0, 30.0,
     None),
    ("t1", "batch:b.wav", "m:1", "batch", "b.wav", "no", 0.6, '{"yes": 0.4, "no": 0.6}', 0.5, -25.0, 0.2, 800.0, 20.0,
     '{"peak": 0.5}'),
]  # fmt: skip


def previous_log(path):
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for statement in PREVIOUS_DDL:
            db.execute(statement)
        db.executemany(
            "INSERT INTO predictions (time_utc, request_id, model_tag, endpoint, source, label, confidence, "
            "probabilities, duration_s, rms_dbfs, silence_ratio, spectral_centroid_hz, snr_db, extra_features) "
            f"VALUES ({', '.join('?' * 14)})",
            OLD_ROWS,
        )
    db.close()
    return path


def record(request_id: str, **extra) -> dict:
    return {
        "time_utc": "t9",
        "request_id": request_id,
        "model_tag": "m:2",
        "endpoint": "batch",
        "source": "c.wav",
        "label": "yes",
        "confidence": 0.8,
        "probabilities": {"yes": 0.8, "no": 0.2},
        "duration_s": 1.0,
        "rms_dbfs": -21.0,
        "silence_ratio": 0.2,
        "spectral_centroid_hz": 850.0,
        "snr_db": 25.0,
        **extra,
    }


def user_version(path) -> int:
    with sqlite3.connect(path) as db:
        version = db.execute("PRAGMA user_version").fetchone()[0]
    db.close()
    return version


def test_a_log_written_by_the_previous_schema_keeps_its_rows_and_takes_new_inserts(tmp_path):
    from scopeml.serving.log import SCHEMA_VERSION, PredictionLog, read_log

    path = previous_log(tmp_path / "old.sqlite")
    assert user_version(path) == 0
    log = PredictionLog(path, custom_features=["peak"])
    log.append([record("batch:c.wav", job="job-1", peak=0.25)])
    assert log.existing(["batch:b.wav", "batch:c.wav"], job="job-1", model_tag="m:2") == {"batch:c.wav"}
    log.close()
    assert user_version(path) == SCHEMA_VERSION >= 2

    table = read_log(path)
    assert table["request_id"].tolist() == ["req-1", "batch:b.wav", "batch:c.wav"]
    assert table["confidence"].tolist() == pytest.approx([0.9, 0.6, 0.8])
    assert table["prob_no"].tolist() == pytest.approx([0.1, 0.6, 0.2])
    assert table["snr_db"].tolist() == pytest.approx([30.0, 20.0, 25.0])
    assert np.isnan(table["peak"].iloc[0]) and table["peak"].iloc[1:].tolist() == pytest.approx([0.5, 0.25])
    assert table["job"].iloc[:2].isna().all() and table["job"].iloc[2] == "job-1"

    PredictionLog(path).close()  # opening a current log again changes nothing
    assert user_version(path) == SCHEMA_VERSION and len(read_log(path)) == 3


def test_adding_a_built_in_monitoring_feature_migrates_an_existing_log(tmp_path, monkeypatch):
    from scopeml.serving import log as prediction_log

    path = previous_log(tmp_path / "old.sqlite")
    prediction_log.PredictionLog(path).close()
    # a release that adds a feature to scopeml.features.FEATURES
    monkeypatch.setattr(prediction_log, "FEATURES", (*prediction_log.FEATURES, "zero_crossing_rate"))
    monkeypatch.setattr(prediction_log, "COLUMNS", (*prediction_log.COLUMNS, "zero_crossing_rate"))
    log = prediction_log.PredictionLog(path)
    log.append([record("new", zero_crossing_rate=0.125)])
    log.close()
    with sqlite3.connect(path) as db:
        kinds = {row[1]: row[2] for row in db.execute("PRAGMA table_info(predictions)")}
    db.close()
    assert kinds["zero_crossing_rate"] == "REAL"
    table = prediction_log.read_log(path)
    assert table["request_id"].tolist() == ["req-1", "batch:b.wav", "new"]
    assert table["zero_crossing_rate"].iloc[:2].isna().all() and table["zero_crossing_rate"].iloc[2] == 0.125


def test_adding_a_custom_monitoring_feature_to_an_existing_log(tmp_path):
    from scopeml.serving.log import PredictionLog, read_log

    path = previous_log(tmp_path / "old.sqlite")
    log = PredictionLog(path)  # the service before monitor.custom_features gained `zcr`
    log.append([record("before")])
    log.close()
    log = PredictionLog(path, custom_features=["peak", "zcr"])  # the model packaged with a new custom feature
    log.append([record("after", peak=0.75, zcr=0.1)])
    log.close()
    table = read_log(path).set_index("request_id")
    assert table.loc["after", "zcr"] == pytest.approx(0.1) and table.loc["after", "peak"] == pytest.approx(0.75)
    assert table[["zcr"]].drop(index="after").isna().all().all()
    assert table.loc["batch:b.wav", "peak"] == pytest.approx(0.5)
    assert json.loads(
        sqlite3.connect(path).execute("SELECT probabilities FROM predictions WHERE request_id='after'").fetchone()[0]
    ) == {"yes": 0.8, "no": 0.2}


def test_concurrent_openers_migrate_once(tmp_path):
    """Several server workers open the same old log at start-up: the migration runs once, none of them fails."""
    from concurrent.futures import ThreadPoolExecutor

    from scopeml.serving.log import SCHEMA_VERSION, PredictionLog

    path = previous_log(tmp_path / "old.sqlite")

    def open_and_log(i: int) -> None:
        log = PredictionLog(path)
        log.append([record(f"w{i}", job=None)])
        log.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(open_and_log, range(6)))
    assert user_version(path) == SCHEMA_VERSION
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 8
    db.close()

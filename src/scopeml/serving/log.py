"""The prediction log: every served prediction, appended durably for monitoring to read.

SQLite in WAL mode: a prediction is committed before its response is sent, so a
server killed at any moment has logged every prediction it acknowledged
(WAL with synchronous=NORMAL survives a process crash; only a power loss can
drop the last transactions).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from scopeml.features import FEATURES

COLUMNS = (
    "time_utc",
    "request_id",
    "model_tag",
    "endpoint",
    "source",
    "label",
    "confidence",
    "probabilities",
    *FEATURES,
    "extra_features",
)
# Columns added after a log's first release, with their type: an older log gains them when it is opened.
ADDED_COLUMNS = {"extra_features": "TEXT"}  # JSON: a user's monitoring features (monitor.custom_features)


class PredictionLog:
    def __init__(self, path: str | Path, custom_features: list[str] | tuple = ()):
        self.path = Path(path)
        self.custom_features = tuple(custom_features)  # a record's keys stored as JSON in extra_features
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{c} REAL" if c in FEATURES or c == "confidence" else f"{c} TEXT" for c in COLUMNS)
        self._db.execute(f"CREATE TABLE IF NOT EXISTS predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
        present = {row[1] for row in self._db.execute("PRAGMA table_info(predictions)")}
        for name, kind in ADDED_COLUMNS.items():  # migrate forward: old rows keep NULL there
            if name not in present:
                self._db.execute(f"ALTER TABLE predictions ADD COLUMN {name} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS by_request ON predictions (request_id)")

    def append(self, records: list[dict]) -> None:
        rows = [
            tuple(
                json.dumps(r[c]) if c == "probabilities" else self._extra(r) if c == "extra_features" else r.get(c)
                for c in COLUMNS
            )
            for r in records
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows
            )
            self._db.execute("COMMIT")

    def _extra(self, record: dict) -> str | None:
        extra = {k: record.get(k) for k in self.custom_features}
        return json.dumps(extra) if extra else None

    def existing(self, request_ids: list[str]) -> set[str]:
        """Which of these request ids are already logged (a resumed batch job must not log twice)."""
        if not request_ids:
            return set()
        with self._lock:
            rows = self._db.execute(
                f"SELECT request_id FROM predictions WHERE request_id IN ({', '.join('?' * len(request_ids))})",
                request_ids,
            )
            return {r[0] for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_log(path: str | Path):
    """The log as a DataFrame, one column per class probability (prob_<class>)."""
    import pandas as pd

    with sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True) as db:
        table = pd.read_sql_query("SELECT * FROM predictions ORDER BY id", db)
    if len(table):
        probs = pd.DataFrame([json.loads(p) for p in table.pop("probabilities")]).add_prefix("prob_")
        extra = table.pop("extra_features") if "extra_features" in table else pd.Series([None] * len(table))
        extras = pd.DataFrame([json.loads(e) if isinstance(e, str) and e else {} for e in extra], index=table.index)
        table = pd.concat([table, probs, extras.astype(float)], axis=1)
    return table

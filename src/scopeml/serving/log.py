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

COLUMNS = ("time_utc", "request_id", "model_tag", "endpoint", "source", "label", "confidence", "probabilities", *FEATURES)


class PredictionLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(f"{c} REAL" if c in FEATURES or c == "confidence" else f"{c} TEXT" for c in COLUMNS)
        self._db.execute(f"CREATE TABLE IF NOT EXISTS predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
        self._db.execute("CREATE INDEX IF NOT EXISTS by_request ON predictions (request_id)")

    def append(self, records: list[dict]) -> None:
        rows = [tuple(json.dumps(r[c]) if c == "probabilities" else r.get(c) for c in COLUMNS) for r in records]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})", rows)
            self._db.execute("COMMIT")

    def existing(self, request_ids: list[str]) -> set[str]:
        """Which of these request ids are already logged (a resumed batch job must not log twice)."""
        if not request_ids:
            return set()
        with self._lock:
            rows = self._db.execute(f"SELECT request_id FROM predictions WHERE request_id IN ({', '.join('?' * len(request_ids))})", request_ids)
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
        table = pd.concat([table, probs], axis=1)
    return table

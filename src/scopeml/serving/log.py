"""The prediction log: every served prediction, appended durably for monitoring to read.

SQLite in WAL mode: a prediction is committed before its response is sent, so a
server killed at any moment has logged every prediction it acknowledged
(WAL with synchronous=NORMAL survives a process crash; only a power loss can
drop the last transactions).

The table's schema is versioned (SQLite's user_version, SCHEMA_VERSION here) and only ever gains columns:
opening a log written by an older release adds the columns it lacks, in one transaction, so its rows keep
their values (NULL in the new columns) and new inserts work; an older release can still write to a newer log.
Versions: 0/1, the first releases (unversioned; extra_features was added in place); 2, `job` (the batch
job that logged a record, NULL for the service).
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
    "extra_features",  # JSON: a user's monitoring features (monitor.custom_features)
    "job",  # the scopeml-batch job that logged the record (its output folder's job id); NULL for the service
)
SCHEMA_VERSION = 2


def column_type(name: str) -> str:
    return "REAL" if name in FEATURES or name == "confidence" else "TEXT"


class PredictionLog:
    def __init__(self, path: str | Path, custom_features: list[str] | tuple = ()):
        self.path = Path(path)
        self.custom_features = tuple(custom_features)  # a record's keys stored as JSON in extra_features
        self.columns = COLUMNS  # this release's columns, read when the log is opened
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        """Create the table, or bring an older one forward: add the columns it lacks, stamp the version. One
        transaction, so workers opening the same log at once migrate it once and never see half of it."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cols = ", ".join(f"{c} {column_type(c)}" for c in self.columns)
            db.execute(f"CREATE TABLE IF NOT EXISTS predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, {cols})")
            present = {row[1] for row in db.execute("PRAGMA table_info(predictions)")}
            for name in self.columns:  # old rows keep NULL there
                if name not in present:
                    db.execute(f"ALTER TABLE predictions ADD COLUMN {name} {column_type(name)}")
            db.execute("CREATE INDEX IF NOT EXISTS by_request ON predictions (request_id)")
            if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # a newer log keeps its version
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def append(self, records: list[dict]) -> None:
        from scopeml.serving.decode import finite_record  # no NaN or infinity is ever stored (ValueError, or NULL)

        records = [finite_record(r) for r in records]
        cols = self.columns
        rows = [
            tuple(
                json.dumps(r[c]) if c == "probabilities" else self._extra(r) if c == "extra_features" else r.get(c)
                for c in cols
            )
            for r in records
        ]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                f"INSERT INTO predictions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
            )
            self._db.execute("COMMIT")

    def _extra(self, record: dict) -> str | None:
        extra = {k: record.get(k) for k in self.custom_features}
        return json.dumps(extra) if extra else None

    def existing(self, request_ids: list[str], job: str | None = None, model_tag: str | None = None) -> set[str]:
        """Which of these request ids this batch job has already logged with this model (a resumed job must not
        log twice; another job, or another model, over the same files logs them again)."""
        if not request_ids:
            return set()
        with self._lock:
            rows = self._db.execute(
                f"SELECT request_id FROM predictions WHERE request_id IN ({', '.join('?' * len(request_ids))}) "
                "AND job IS ? AND model_tag IS ?",
                [*request_ids, job, model_tag],
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

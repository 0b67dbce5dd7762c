"""The prediction log: every served prediction, appended durably for monitoring to read.

The one storage layer that the service, scopeml-batch, scopeml-label and scopeml-monitor go through. A log is
addressed by a URL (deploy.prediction_log, monitor.log, SCOPEML_PREDICTION_LOG): a plain path or
`sqlite:///abs/path` is an embedded SQLite file (this module); `postgresql://user@host:port/db` is a PostgreSQL
server that many `bentoml serve` processes share (scopeml.serving.log_postgres: the same table, the same
versioning). `open_log` checks the URL and connects at start-up, so a bad one fails there, naming the setting,
never with a 500 per request.

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
import re
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
SETTING = "deploy.prediction_log"  # what errors name; the monitor passes monitor.log
SCHEMES = ("sqlite", "postgresql")
ACCEPTED = "a file path, sqlite:///absolute/path or postgresql://user@host:port/database"


class LogURLError(ValueError):
    """A prediction log URL that cannot be used (wrong scheme, unreachable server); the message names the setting."""


class LogUnavailable(RuntimeError):
    """The log could not take a record now (its server went away, its disk is full or locked): nothing of the
    append was committed, or whether it was is unknown. The service answers 503 with a retry hint, not 500."""


def public_url(url: str | Path) -> str:
    """The URL without its password (what may be printed or written anywhere): libpq then takes the password from
    PGPASSWORD or ~/.pgpass, so the result still opens the log where those are set."""
    from scopeml.redact import without_url_password

    return without_url_password(str(url))


def parse_url(url: str | Path, setting: str = SETTING) -> tuple[str, str | Path]:
    """("sqlite", path) or ("postgresql", url). A plain path stays SQLite, as before URLs."""
    text = str(url)
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if not match:
        if not text.strip():
            raise LogURLError(f"{setting} is empty; set it to {ACCEPTED}")
        return "sqlite", Path(text)
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        path = text[len("sqlite:///") :] if text.startswith("sqlite:///") else ""
        if not path:
            raise LogURLError(f"{setting}={text}: a SQLite URL is sqlite:///absolute/path (three slashes)")
        return "sqlite", Path("/" + path.lstrip("/"))
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return "postgresql", "postgresql" + text[len(scheme) :]  # psycopg takes no SQLAlchemy driver suffix
    raise LogURLError(f"{setting}={public_url(text)}: unsupported scheme {scheme!r}; the prediction log is {ACCEPTED}")


def scheme_problem(url: str) -> str | None:
    """What is wrong with the URL's form (no connection made): for the config check, before any training."""
    try:
        parse_url(url, "")
    except LogURLError as exc:
        return str(exc).lstrip(" =")
    return None


def open_log(url: str | Path, custom_features: list[str] | tuple = (), setting: str = SETTING):
    """The log at this URL, created or brought forward; a PostgreSQL server is connected to now (LogURLError,
    naming `setting`, when it cannot be reached within its connect timeout)."""
    kind, target = parse_url(url, setting)
    if kind == "postgresql":
        from scopeml.serving.log_postgres import PostgresLog

        return PostgresLog(target, custom_features, setting)
    return PredictionLog(target, custom_features)


def check_log(url: str | Path, setting: str = SETTING) -> None:
    """Fail now, naming the setting, if the log's URL is malformed or its server cannot be reached."""
    kind, target = parse_url(url, setting)
    if kind == "postgresql":
        from scopeml.serving.log_postgres import connect

        connect(target, setting).close()


def log_exists(url: str | Path, setting: str = SETTING) -> bool:
    """Whether a prediction log has been written there (a SQLite file, or a server with the predictions table)."""
    kind, target = parse_url(url, setting)
    if kind == "postgresql":
        from scopeml.serving.log_postgres import has_table

        return has_table(target, setting, "predictions")
    return Path(target).is_file()


def column_type(name: str) -> str:
    return "REAL" if name in FEATURES or name == "confidence" else "TEXT"


def insert_rows(records: list[dict], columns: list[str], custom_features) -> list[tuple]:
    """The records as rows of `columns`, whatever the database: no NaN or infinity is ever stored (ValueError, or
    NULL), probabilities as JSON, the model's custom features as one JSON column."""
    from scopeml.serving.decode import finite_record

    def value(record: dict, column: str):
        if column == "probabilities":
            return json.dumps(record[column])
        if column == "extra_features":
            extra = {k: record.get(k) for k in custom_features}
            return json.dumps(extra) if extra else None
        return record.get(column)

    return [tuple(value(r, c) for c in columns) for r in map(finite_record, records)]


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
        cols, rows = self.columns, insert_rows(records, self.columns, self.custom_features)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    f"INSERT INTO predictions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
                )
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk full, I/O error
                if self._db.in_transaction:  # left open, every later append would fail on its BEGIN
                    self._db.execute("ROLLBACK")
                raise LogUnavailable(f"the prediction log {self.path} could not take the record: {exc}") from exc

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

    def known_predictions(self) -> dict[str, str | None]:
        """{request id: its logged probabilities (JSON)}, for scopeml-label."""
        with self._lock:
            return dict(self._db.execute("SELECT request_id, probabilities FROM predictions"))

    def store_labels(self, rows: list[tuple[str, str, str]]) -> None:
        """(request_id, label, received_utc) rows into the labels table; a later label for an id replaces it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(LABELS_TABLE)
            self._db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


LABELS_TABLE = "CREATE TABLE IF NOT EXISTS labels (request_id TEXT PRIMARY KEY, label TEXT, received_utc TEXT)"


def read_labels(url: str | Path, setting: str = SETTING):
    """The delivered labels (request_id, label, received_utc); empty when none were delivered yet."""
    import pandas as pd

    kind, target = parse_url(url, setting)
    if kind == "postgresql":
        from scopeml.serving.log_postgres import has_table, read_table

        if not has_table(target, setting, "labels"):
            return pd.DataFrame(columns=["request_id", "label", "received_utc"])
        return read_table(target, setting, "SELECT request_id, label, received_utc FROM labels")
    with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as db:
        exists = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='labels'").fetchone()
        if not exists:
            return pd.DataFrame(columns=["request_id", "label", "received_utc"])
        return pd.read_sql_query("SELECT request_id, label, received_utc FROM labels", db)


def read_log(url: str | Path, setting: str = SETTING):
    """The log as a DataFrame, one column per class probability (prob_<class>)."""
    import pandas as pd

    kind, target = parse_url(url, setting)
    if kind == "postgresql":
        from scopeml.serving.log_postgres import read_table

        table = read_table(target, setting, "SELECT * FROM predictions ORDER BY id")
    else:
        with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as db:
            table = pd.read_sql_query("SELECT * FROM predictions ORDER BY id", db)
    if len(table):
        probs = pd.DataFrame([json.loads(p) for p in table.pop("probabilities")]).add_prefix("prob_")
        extra = table.pop("extra_features") if "extra_features" in table else pd.Series([None] * len(table))
        extras = pd.DataFrame([json.loads(e) if isinstance(e, str) and e else {} for e in extra], index=table.index)
        table = pd.concat([table, probs, extras.astype(float)], axis=1)
    return table

"""The prediction log on a PostgreSQL server: one log that several `bentoml serve` processes share.

The same table and columns as the SQLite log (scopeml.serving.log), the same schema versions and forward
migration; the version is kept in a one-row table `prediction_log_schema` (PostgreSQL has no user_version).
Every append is its own transaction, committed before the service answers, so a server killed at any moment
has logged every prediction it acknowledged: the commit returns only once the server has flushed it to its WAL.
Opened through scopeml.serving.log.open_log with a `postgresql://user@host:port/database` URL; the password
belongs in PGPASSWORD or ~/.pgpass (a password in the URL works, but is never written to a run's files).
"""

from __future__ import annotations

import threading

from scopeml.serving.log import COLUMNS, SCHEMA_VERSION, LogUnavailable, LogURLError, insert_rows, public_url

CONNECT_TIMEOUT_S = 5  # an unreachable server fails start-up in well under 10 s (issue 14)
MIGRATION_LOCK = 0x5C0DE  # advisory lock: servers starting together create and migrate the table once


def column_type(name: str) -> str:
    from scopeml.features import FEATURES

    # DOUBLE PRECISION: SQLite's REAL is 8 bytes, so both logs hold the same numbers
    return "DOUBLE PRECISION" if name in FEATURES or name == "confidence" else "TEXT"


def connect(url: str, setting: str):
    """An autocommit connection (transactions are explicit), or LogURLError naming the setting."""
    try:
        import psycopg
    except ImportError:
        need = "a PostgreSQL log needs psycopg (pip install 'psycopg[binary]')"
        raise LogURLError(f"{setting}={public_url(url)}: {need}") from None
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())
        where = f"{setting}={public_url(url)}"
        raise LogURLError(f"{where}: cannot open the PostgreSQL prediction log ({reason})") from None


def has_table(url: str, setting: str, name: str) -> bool:
    with connect(url, setting) as db:
        return db.execute("SELECT to_regclass(%s)", [name]).fetchone()[0] is not None


def read_table(url: str, setting: str, query: str):
    import pandas as pd

    with connect(url, setting) as db:
        cur = db.execute(query)
        columns = [d.name for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=columns, coerce_float=True)


class PostgresLog:
    """PredictionLog's interface (append, existing, known_predictions, store_labels, close) on PostgreSQL."""

    def __init__(self, url: str, custom_features: list[str] | tuple = (), setting: str = "deploy.prediction_log"):
        self.url, self.setting = url, setting
        self.path = public_url(url)  # what messages show
        self.custom_features = tuple(custom_features)
        self.columns = COLUMNS
        self._lock = threading.Lock()
        self._db = connect(url, setting)
        self._migrate()

    def _conn(self):
        """The connection, opened again if the server dropped it (a restart): nothing is retried on it, so a
        record is never inserted twice."""
        if self._db.closed or self._db.broken:
            self._db = connect(self.url, self.setting)
        return self._db

    def _migrate(self) -> None:
        db = self._db
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
            cols = ", ".join(f"{c} {column_type(c)}" for c in self.columns)
            db.execute(f"CREATE TABLE IF NOT EXISTS predictions (id BIGSERIAL PRIMARY KEY, {cols})")
            present = {
                r[0]
                for r in db.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'predictions' AND table_schema = current_schema()"
                )
            }
            for name in self.columns:  # old rows keep NULL there
                if name not in present:
                    db.execute(f"ALTER TABLE predictions ADD COLUMN {name} {column_type(name)}")
            db.execute("CREATE INDEX IF NOT EXISTS by_request ON predictions (request_id)")
            db.execute("CREATE TABLE IF NOT EXISTS prediction_log_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM prediction_log_schema").fetchone()
            if row is None:
                db.execute("INSERT INTO prediction_log_schema VALUES (%s)", [SCHEMA_VERSION])
            elif row[0] < SCHEMA_VERSION:  # a newer log keeps its version
                db.execute("UPDATE prediction_log_schema SET version = %s", [SCHEMA_VERSION])

    def version(self) -> int:
        with self._lock:
            return self._conn().execute("SELECT version FROM prediction_log_schema").fetchone()[0]

    def append(self, records: list[dict]) -> None:
        cols, rows = self.columns, insert_rows(records, self.columns, self.custom_features)
        if not rows:
            return
        import psycopg

        insert = f"INSERT INTO predictions ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))})"
        with self._lock:
            for attempt in (1, 2):
                committing = False
                try:
                    db = self._conn()
                    with db.transaction(), db.cursor() as cur:  # committed when the block ends, before the response
                        cur.executemany(insert, rows)
                        committing = True
                    return
                except (psycopg.OperationalError, LogURLError) as exc:
                    # Lost before COMMIT was sent (a connection the server dropped while idle, found dead on BEGIN):
                    # nothing was written, so once more on a new connection. Lost during COMMIT: whether it was
                    # written is unknown, and retrying could log it twice; the caller answers 503 instead.
                    if committing or attempt == 2:
                        reason = " ".join(str(exc).split())
                        raise LogUnavailable(
                            f"the prediction log {self.path} could not take the record: {reason}"
                        ) from exc

    def existing(self, request_ids: list[str], job: str | None = None, model_tag: str | None = None) -> set[str]:
        """Which of these request ids this batch job has already logged with this model (see PredictionLog)."""
        if not request_ids:
            return set()
        with self._lock:
            rows = self._conn().execute(
                "SELECT request_id FROM predictions WHERE request_id = ANY(%s) "
                "AND job IS NOT DISTINCT FROM %s AND model_tag IS NOT DISTINCT FROM %s",
                [list(request_ids), job, model_tag],
            )
            return {r[0] for r in rows}

    def known_predictions(self) -> dict[str, str | None]:
        with self._lock:
            return dict(self._conn().execute("SELECT request_id, probabilities FROM predictions").fetchall())

    def store_labels(self, rows: list[tuple[str, str, str]]) -> None:
        """(request_id, label, received_utc) rows; a later label for an id replaces the earlier one."""
        with self._lock:
            db = self._conn()
            with db.transaction(), db.cursor() as cur:
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS labels (request_id TEXT PRIMARY KEY, label TEXT, received_utc TEXT)"
                )
                cur.executemany(
                    "INSERT INTO labels VALUES (%s, %s, %s) ON CONFLICT (request_id) "
                    "DO UPDATE SET label = EXCLUDED.label, received_utc = EXCLUDED.received_utc",
                    rows,
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

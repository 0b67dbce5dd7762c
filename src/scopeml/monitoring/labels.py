"""scopeml-label: deliver ground-truth labels for logged predictions, by request id, whenever they arrive.

    scopeml-label labels.csv [--log outputs/serving/predictions.sqlite]

The file is a CSV (or JSONL) with columns request_id,label. Labels go into a `labels` table
beside the predictions; monitoring joins them to compute realized performance. A request id
the log has never seen is refused and listed, never stored; a label outside the model's
classes is refused too.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path


class LabelError(ValueError):
    pass


def ingest(log_path: Path, table, classes: list[str] | None = None) -> dict:
    """Store labels for known request ids; return counts and the refused rows with reasons."""
    if not log_path.exists():
        raise LabelError(f"{log_path}: no prediction log there (the service or scopeml-batch writes it)")
    missing = {"request_id", "label"} - set(table.columns)
    if missing:
        raise LabelError(f"labels file lacks column(s) {sorted(missing)}; it has {list(table.columns)}")
    db = sqlite3.connect(log_path, timeout=10.0)
    try:
        db.execute("CREATE TABLE IF NOT EXISTS labels (request_id TEXT PRIMARY KEY, label TEXT, received_utc TEXT)")
        known = {r[0] for r in db.execute("SELECT request_id FROM predictions")}
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        accepted, refused = [], []
        for rid, label in zip(table["request_id"].astype(str), table["label"].astype(str)):
            if rid not in known:
                refused.append({"request_id": rid, "reason": "unknown request id (no such prediction in the log)"})
            elif classes is not None and label not in classes:
                refused.append({"request_id": rid, "reason": f"label {label!r} is not one of the model's classes"})
            else:
                accepted.append((rid, label, now))
        with db:
            db.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", accepted)
    finally:
        db.close()
    return {"accepted": len(accepted), "refused": refused}


def read_labels(log_path: Path):
    import pandas as pd

    with sqlite3.connect(f"file:{log_path}?mode=ro", uri=True) as db:
        exists = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='labels'").fetchone()
        if not exists:
            return pd.DataFrame(columns=["request_id", "label", "received_utc"])
        return pd.read_sql_query("SELECT request_id, label, received_utc FROM labels", db)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(prog="scopeml-label", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("labels", type=Path, help="CSV or JSONL with request_id,label")
    parser.add_argument("--log", type=Path, default=Path(os.environ.get("SCOPEML_PREDICTION_LOG", "outputs/serving/predictions.sqlite")))
    args = parser.parse_args(argv)
    try:
        if not args.labels.exists():
            raise LabelError(f"{args.labels}: no such file")
        table = pd.read_json(args.labels, lines=True, dtype=False) if args.labels.suffix in {".jsonl", ".json"} else pd.read_csv(args.labels, dtype=str)
        result = ingest(args.log, table)
    except LabelError as exc:
        print(f"scopeml-label: {exc}", file=sys.stderr)
        return 2
    print(f"stored {result['accepted']} label(s); refused {len(result['refused'])}")
    for r in result["refused"][:20]:
        print(f"  - {r['request_id']}: {r['reason']}", file=sys.stderr)
    return 1 if result["refused"] else 0


if __name__ == "__main__":
    sys.exit(main())

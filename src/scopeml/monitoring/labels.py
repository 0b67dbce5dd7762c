"""scopeml-label: deliver ground-truth labels for logged predictions, by request id, whenever they arrive.

    scopeml-label labels.csv [--log outputs/serving/predictions.sqlite | postgresql://user@host:port/db]

The file is a CSV (or JSONL) with columns request_id,label. Labels go into a `labels` table
beside the predictions; monitoring joins them to compute realized performance. A request id
the log has never seen is refused and listed, never stored; a label outside the model's
classes is refused too.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path


class LabelError(ValueError):
    """A labels file or prediction log that cannot be used; the message names it."""


SETTING = "scopeml-label --log"  # what a bad log URL's error names


def ingest(log_path: str | Path, table, classes: list[str] | None = None) -> dict:
    """Store labels for known request ids; return counts and the refused rows with reasons."""
    from scopeml.serving.log import LogURLError, log_exists, open_log, public_url

    try:
        if not log_exists(log_path, SETTING):
            where = public_url(log_path)
            raise LabelError(f"{where}: no prediction log there (the service or scopeml-batch writes it)")
        missing = {"request_id", "label"} - set(table.columns)
        if missing:
            raise LabelError(f"labels file lacks column(s) {sorted(missing)}; it has {list(table.columns)}")
        db = open_log(log_path, setting=SETTING)
    except LogURLError as exc:
        raise LabelError(str(exc)) from None
    try:
        # Each prediction's classes are the keys of its logged probabilities: the classes of the model that made it.
        known = {rid: _classes(probs) for rid, probs in db.known_predictions().items()}
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        accepted, refused = [], []
        for rid, label in zip(table["request_id"].astype(str), table["label"].astype(str)):
            allowed = classes if classes is not None else known.get(rid)
            if rid not in known:
                refused.append({"request_id": rid, "reason": "unknown request id (no such prediction in the log)"})
            elif allowed and label not in allowed:
                refused.append(
                    {"request_id": rid, "reason": f"label {label!r} is not one of the model's classes {list(allowed)}"}
                )
            else:
                accepted.append((rid, label, now))
        db.store_labels(accepted)
    finally:
        db.close()
    return {"accepted": len(accepted), "refused": refused}


def _classes(probabilities: str | None) -> list[str] | None:
    """The classes a logged prediction was made over (None when its probabilities are missing or unreadable)."""
    try:
        return list(json.loads(probabilities)) if probabilities else None
    except (TypeError, ValueError):
        return None


def read_labels(log_path: str | Path, setting: str = SETTING):
    from scopeml.serving.log import read_labels as read

    return read(log_path, setting)


def deliver(labels_path: Path, log_path: str | Path) -> bool:
    """scopeml-label's work: read the labels file and store its labels in the log. Returns whether every label
    was stored (refused ones are listed on stderr); raises LabelError for a file or log that cannot be used."""
    import pandas as pd

    if not labels_path.exists():
        raise LabelError(f"{labels_path}: no such file")
    if labels_path.suffix in {".jsonl", ".json"}:
        table = pd.read_json(labels_path, lines=True, dtype=False)
    else:
        table = pd.read_csv(labels_path, dtype=str)
    result = ingest(log_path, table)
    kinds = Counter(
        "unknown request id" if r["reason"].startswith("unknown") else "label outside the model's classes"
        for r in result["refused"]
    )
    by_kind = (
        ": " + ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in sorted(kinds.items())) if kinds else ""
    )
    print(f"stored {result['accepted']} label(s); refused {len(result['refused'])}{by_kind}")
    for r in result["refused"][:20]:
        print(f"  - {r['request_id']}: {r['reason']}", file=sys.stderr)
    return not result["refused"]

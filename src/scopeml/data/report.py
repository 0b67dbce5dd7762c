"""The data report: fingerprint, checks and baselines of a built data set, cached beside its clips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from scopeml.config.schema import DataConfig
from scopeml.data import baseline, checks
from scopeml.data.dataset import KeywordData
from scopeml.data.fingerprint import hash_config


def build_report(data: KeywordData, cfg: DataConfig, seed: int = 0) -> dict:
    """Checks and baselines depend only on the data, the checks and baseline configs and the seed: reuse them when
    those match (baseline.VERSION also changes the key, so a report from older baseline code is not reused)."""
    key = hash_config(
        [
            data.fingerprint["fingerprint"],
            dataclasses.asdict(cfg.checks),
            seed,
            data.classes,
            dataclasses.asdict(cfg.baseline),
            cfg.labels.unknown,
            baseline.VERSION,
        ]
    )[:16]
    cached = Path(data.fingerprint["cache"]) / f"report-{key}.json" if data.fingerprint.get("cache") else None
    if cached and cached.exists():
        return json.loads(cached.read_text())
    report = {
        "fingerprint": data.fingerprint,
        "classes": data.classes,
        **checks.run_checks(data, cfg.checks),
        "baseline": baseline.compute(data, seed, pocketsphinx=cfg.baseline.pocketsphinx, unknown=cfg.labels.unknown),
    }
    if cached:
        cached.write_text(json.dumps(report, default=str))
    return report

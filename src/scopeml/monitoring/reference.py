"""The monitoring reference: the model's calibrated predictions on its held-out splits (validation and test,
never training), with labels and the same monitoring features the service logs. Stored with the packaged model.

Both held-out splits, because NannyML sets its drift thresholds from the spread over reference chunks: the
validation split alone (440 clips of the built-in data) gave three chunks of 150, and in-distribution
traffic then tripped prediction-mix alerts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REFERENCE_FILE = "reference.parquet"


def build_reference(run_dir: Path) -> pd.DataFrame:
    import yaml

    from scopeml.config import load
    from scopeml.data import build_dataset
    from scopeml.features import build_custom, monitoring_features
    from scopeml.run_files import held_out_predictions

    config = load(yaml.safe_load((run_dir / "config.yaml").read_text()))
    # Never the training split: validation (or the out-of-fold predictions of cross-validation) and test.
    preds = pd.concat([pd.read_parquet(path) for path in held_out_predictions(run_dir)], ignore_index=True)
    data = build_dataset(config.data, config.scoping.classes, progress=False)
    index = {cid: i for i, cid in enumerate(data.manifest["clip_id"])}
    custom = build_custom(config.monitor.custom_features)
    rows = []
    for cid, duration_ms in zip(preds["clip_id"], preds.get("duration_ms", pd.Series([None] * len(preds)))):
        wave = data.waves[index[cid]]
        duration = float(duration_ms) / 1000 if duration_ms is not None and pd.notna(duration_ms) else None
        rows.append(monitoring_features(wave, data.sample_rate, duration, custom))
    features = pd.DataFrame(rows, index=preds.index)
    keep = ["clip_id", "speaker", "label", "pred", "confidence"] + [c for c in preds.columns if c.startswith("prob_")]
    reference = pd.concat([preds[keep], features], axis=1).rename(columns={"clip_id": "request_id"})
    reference["time_utc"] = pd.Timestamp("2000-01-01", tz="UTC") + pd.to_timedelta(range(len(reference)), unit="s")
    return reference

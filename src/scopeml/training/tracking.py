"""Experiment tracking with W&B through Lightning's WandbLogger; offline needs no account or network."""

from __future__ import annotations

import os
from pathlib import Path

from scopeml.config.schema import TrackerConfig


def settings():
    """W&B settings every scopeml run uses: no system metadata (W&B would record the raw command line and the
    host name, which scopeml.redact keeps out of every file); provenance.json holds the redacted version."""
    import wandb

    return wandb.Settings(x_disable_meta=True)


def build_logger(cfg: TrackerConfig, run_dir: Path, name: str, group: str | None, config: dict):
    if cfg.kind == "none":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        project=cfg.project,
        entity=cfg.entity,
        name=name,
        group=cfg.group or group,
        tags=list(cfg.tags),
        notes=cfg.notes,
        save_dir=str(run_dir),
        mode=cfg.mode,
        config=config,
        job_type="train",
        settings=settings(),
    )


def log_data_version(logger, fingerprint: dict, run_dir: Path) -> None:
    """Record the data version as a W&B artifact.

    A reference to the prepared-clip cache plus the fingerprint and report.
    """
    if logger is None:
        return
    import wandb

    art = wandb.Artifact(
        f"data-{fingerprint['recipe']}",
        type="dataset",
        metadata={k: v for k, v in fingerprint.items() if k != "splits"},
    )
    if fingerprint.get("cache"):
        art.add_reference(Path(fingerprint["cache"]).resolve().as_uri(), name="prepared-clips", checksum=False)
    for name in ("data_fingerprint.json", "data_report.json"):
        if (run_dir / name).exists():
            art.add_file(str(run_dir / name))
    # log, not use: an offline run cannot `use_artifact`, and logging records the same reference for `wandb sync`.
    logger.experiment.log_artifact(art)


def log_summary(logger, summary: dict) -> None:
    """Put final numbers in the run summary (what the W&B table of runs shows)."""
    if logger is None:
        return
    run = logger.experiment
    for key, value in summary.items():
        run.summary[key] = value


def finish(logger) -> None:
    if logger is None:
        return
    import wandb

    wandb.finish()


def read_offline_run(run_path: Path) -> dict:
    """Read back an offline W&B run (its .wandb record stream): name, group, config and final summary.

    W&B 0.29 writes only the record stream offline; config.yaml and wandb-summary.json
    appear after `wandb sync`. Tests and reports read the stream the way sync would.
    """
    import json

    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    (stream,) = Path(run_path).glob("run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(stream))
    out: dict = {"config": {}, "summary": {}, "history_rows": 0, "artifacts": []}
    from google.protobuf.message import DecodeError

    pending = b""
    while (record := store.scan_record()) is not None:
        # A record that crosses the stream's 32 KiB block boundary comes back in pieces: join until it parses.
        pending += record[1]
        rec = pb.Record()
        try:
            rec.ParseFromString(pending)
        except DecodeError:
            continue
        pending = b""
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(id=rec.run.run_id, name=rec.run.display_name, group=rec.run.run_group, project=rec.run.project)
            out["config"].update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            out["config"].update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "summary":
            for u in rec.summary.update:
                key = u.key or "/".join(u.nested_key)
                out["summary"][key] = json.loads(u.value_json)
        elif kind == "history":
            out["history_rows"] += 1
        elif kind == "artifact":
            out["artifacts"].append({"name": rec.artifact.name, "type": rec.artifact.type})
    return out

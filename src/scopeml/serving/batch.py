"""scopeml-batch: score a folder of audio files or a manifest offline with the packaged model.

    scopeml-batch /data/incoming --out outputs/batch/today            # every .wav/.flac under the folder
    scopeml-batch /data/manifest.csv --out outputs/batch/today        # its `path` column, under its folder

Writes <out>/predictions.parquet (or .csv) with one row per file (label, confidence, every
class probability, monitoring features, or the error for a file that could not be read),
and appends the same records to the prediction log that the service writes, so monitoring
reads batch and realtime traffic alike. Work is committed in chunks: a killed job started
again with the same arguments skips what is done. Paths outside the input root are refused.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

AUDIO_SUFFIXES = {".wav", ".flac"}


class BatchError(ValueError):
    """Input that cannot be scored: no such folder or manifest, no audio, paths outside the root, no such model."""


def list_inputs(source: Path, root: Path | None) -> tuple[Path, list[Path]]:
    source = source.expanduser().resolve()
    if source.is_dir():
        root = (root or source).resolve()
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    elif source.is_file():
        import pandas as pd

        table = (
            pd.read_json(source, lines=True) if source.suffix in {".jsonl", ".json"} else pd.read_csv(source, dtype=str)
        )
        if "path" not in table.columns:
            raise BatchError(f"{source}: manifest has no `path` column")
        root = (root or source.parent).resolve()
        files = [(root / p).resolve() for p in table["path"].astype(str)]
    else:
        raise BatchError(f"{source}: no such folder or manifest")
    outside = [p for p in files if not p.is_relative_to(root)]
    if outside:
        raise BatchError(f"{len(outside)} path(s) resolve outside the input root {root}, e.g. {outside[0]}")
    if not files:
        raise BatchError(f"{source}: no .wav or .flac files")
    return root, files


def score_chunk(bundle, files: list[Path], root: Path) -> list[dict]:
    import numpy as np

    from scopeml.data.audio import to_mono
    from scopeml.serving.decode import RequestError, check_not_silent, decode_audio

    rows, waves, good = [], [], []
    for path in files:
        rel = path.relative_to(root).as_posix()
        row = {"path": rel, "request_id": f"batch:{rel}", "error": None}
        try:
            samples, sr = decode_audio(path.read_bytes(), rel)
            check_not_silent(to_mono(samples), rel)
            waves.append(bundle.prepare(samples, sr))
            row.update(bundle.features(waves[-1], samples.shape[-1] / sr))
            good.append(len(rows))
        except (RequestError, OSError) as exc:
            row["error"] = str(exc)
        rows.append(row)
    if waves:
        for i, p in zip(good, bundle.predict(np.stack(waves))):
            d = bundle.describe(p)
            rows[i].update(
                label=d["label"],
                confidence=d["confidence"],
                model_tag=d["model"],
                **{f"prob_{c}": v for c, v in d["probabilities"].items()},
            )
    return rows


def run(
    source: Path,
    out: Path,
    bundle,
    root: Path | None = None,
    batch_size: int = 64,
    log_path: Path | None = None,
    fmt: str = "parquet",
    progress: bool = True,
) -> Path:
    import pandas as pd

    from scopeml.serving.log import PredictionLog

    root, files = list_inputs(source, root)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    done = set()
    for part in sorted(parts.glob("part-*.parquet")):
        done.update(pd.read_parquet(part, columns=["path"])["path"])
    todo = [p for p in files if p.relative_to(root).as_posix() not in done]
    log = PredictionLog(log_path, custom_features=list(bundle.custom_features)) if log_path else None
    chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    for chunk in _track(chunks, f"Scoring {len(todo)} of {len(files)} files", progress):
        rows = score_chunk(bundle, chunk, root)
        if log:  # log first, deduplicated: a chunk redone after a kill is never logged twice
            now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            logged = log.existing([r["request_id"] for r in rows])
            log.append(
                [
                    {
                        **r,
                        "time_utc": now,
                        "endpoint": "batch",
                        "source": r["path"],
                        "probabilities": {c[5:]: r[c] for c in r if c.startswith("prob_")},
                    }
                    for r in rows
                    if r["error"] is None and r["request_id"] not in logged
                ]
            )
        index = len(list(parts.glob("part-*.parquet")))
        tmp = parts / f".part-{index:05d}.tmp"
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, parts / f"part-{index:05d}.parquet")  # a chunk is done only once it is whole on disk
    table = pd.concat([pd.read_parquet(p) for p in sorted(parts.glob("part-*.parquet"))], ignore_index=True)
    table = table.set_index("path").loc[[p.relative_to(root).as_posix() for p in files]].reset_index()  # input order
    target = out / f"predictions.{fmt}"
    table.to_parquet(target, index=False) if fmt == "parquet" else table.to_csv(target, index=False)
    return target


def _track(items, description: str, enabled: bool):
    if not enabled or not items:
        return items
    from rich.progress import track

    return track(items, description=description)


def score_files(
    source: Path,
    out: Path,
    model: str,
    bundle_dir: Path | None = None,
    root: Path | None = None,
    batch_size: int = 64,
    log_path: Path | None = None,
    fmt: str = "parquet",
) -> Path:
    """scopeml-batch's work: check the inputs, load the model, score what is not done yet, write the predictions."""
    list_inputs(source, root)  # bad input fails before the model is loaded
    return run(source, out, load_bundle(model, bundle_dir), root, batch_size, log_path, fmt)


def load_bundle(model: str, bundle_dir: Path | None = None):
    """The serving bundle to score with: a bundle folder, or the model `model` from the BentoML store."""
    from scopeml.serving.bundle import SERVING_FILE, ServingBundle

    if bundle_dir:
        if not (Path(bundle_dir) / SERVING_FILE).is_file():
            raise BatchError(f"{bundle_dir}: not a serving bundle (no {SERVING_FILE})")
        return ServingBundle.load(bundle_dir, str(bundle_dir))
    import bentoml

    try:
        stored = bentoml.models.get(model)
    except bentoml.exceptions.NotFound:
        raise BatchError(f"no model {model} in the BentoML store; run scopeml-package first") from None
    return ServingBundle.load(stored.path, str(stored.tag))

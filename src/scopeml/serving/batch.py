"""scopeml-batch: score a folder of audio files or a manifest offline with the packaged model.

    scopeml-batch /data/incoming --out outputs/batch/today            # every .wav/.flac under the folder
    scopeml-batch /data/manifest.csv --out outputs/batch/today        # its `path` column, under its folder

Writes <out>/predictions.parquet (or .csv) with one row per file (label, confidence, every
class probability, monitoring features, or the error for a file that could not be read),
and appends the same records to the prediction log that the service writes, so monitoring
reads batch and realtime traffic alike. Each --out folder is one job (its id and model in
<out>/job.json, its id in every record it logs): another job or another model over the same files
logs them again, while a killed job started again with the same arguments skips what is done and
logs nothing twice. Work is committed in chunks. Symbolic links, and paths that resolve outside the
input root, are refused (each one named, before anything is scored); links to folders are not followed.
With --engine ray the same job is scored on Ray Data workers (scopeml.serving.batch_ray): the same outputs.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

AUDIO_SUFFIXES = {".wav", ".flac"}
JOB_FILE = "job.json"
SHOWN_REFUSALS = 20  # refused paths named in the error; the rest are counted


class BatchError(ValueError):
    """Input that cannot be scored: no such folder or manifest, no audio, paths outside the root, no such model."""


def list_inputs(source: Path, root: Path | None) -> tuple[Path, list[Path]]:
    """The input root and the audio files to score under it. Raises BatchError naming every refused path: a
    symbolic link (or a path through one), or a path that resolves outside the root."""
    source = source.expanduser().resolve()
    if source.is_dir():
        root = (root or source).resolve()
        candidates = []
        for folder, _, names in os.walk(source):  # links to folders are listed among the folders, never entered
            candidates += [Path(folder) / n for n in sorted(names) if Path(n).suffix.lower() in AUDIO_SUFFIXES]
        named = {p: p.relative_to(root).as_posix() if p.is_relative_to(root) else str(p) for p in candidates}
        files = sorted(p for p in candidates if p.is_file() or p.is_symlink())  # a dangling link is refused too
    elif source.is_file():
        import pandas as pd

        table = (
            pd.read_json(source, lines=True) if source.suffix in {".jsonl", ".json"} else pd.read_csv(source, dtype=str)
        )
        if "path" not in table.columns:
            raise BatchError(f"{source}: manifest has no `path` column")
        root = (root or source.parent).resolve()
        named = {root / p: p for p in table["path"].astype(str)}
        files = list(named)
    else:
        raise BatchError(f"{source}: no such folder or manifest")
    checked = [(path, *_check_path(path, root)) for path in files]
    refused = [f"{named[path]}: {reason}" for path, _, reason in checked if reason]
    if refused:
        shown = "\n  ".join(refused[:SHOWN_REFUSALS])
        more = f"\n  ... and {len(refused) - SHOWN_REFUSALS} more" if len(refused) > SHOWN_REFUSALS else ""
        raise BatchError(
            f"{len(refused)} path(s) refused: symbolic links and paths that resolve outside the input root {root} "
            f"are not scored\n  {shown}{more}"
        )
    if not files:
        raise BatchError(f"{source}: no .wav or .flac files")
    return root, [resolved for _, resolved, _ in checked]


def _check_path(path: Path, root: Path) -> tuple[Path, str | None]:
    """(the file path, why it is refused or None). `path` is root-joined, not resolved: it is refused when resolving
    it goes through a symbolic link (it then differs from the path with only `..` collapsed) or leaves the root."""
    lexical = Path(os.path.normpath(path))
    resolved = path.resolve()
    outside = "" if resolved.is_relative_to(root) else ", outside the input root"
    if resolved == lexical:
        return resolved, f"resolves to {resolved}{outside}" if outside else None
    link = next((p for p in (*reversed(lexical.parents), lexical) if p.is_relative_to(root) and p.is_symlink()), None)
    if link is None:  # the link is in a `..` the lexical path collapsed
        return resolved, f"goes through a symbolic link, to {resolved}{outside}"
    shown = link.relative_to(root).as_posix()
    kind = "a symbolic link" if link == lexical else f"under the symbolic link {shown}"
    return resolved, f"{kind}, to {resolved}{outside}"


def score_chunk(bundle, files: list[Path], root: Path, job: str | None = None) -> list[dict]:
    import numpy as np

    from scopeml.data.audio import to_mono
    from scopeml.serving.decode import RequestError, check_not_silent, decode_audio

    rows, waves, good = [], [], []
    for path in files:
        rel = path.relative_to(root).as_posix()
        row = {"path": rel, "request_id": f"batch:{rel}", "job": job, "error": None}
        try:
            samples, sr = decode_audio(_read_no_follow(path, rel), rel)
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


def _read_no_follow(path: Path, rel: str) -> bytes:
    """The file's bytes, refusing a symbolic link put in its place after the inputs were checked."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        if path.is_symlink():
            raise OSError(f"{rel}: a symbolic link (put there after the inputs were checked); not followed") from None
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read()


def start_job(out: Path, model_tag: str, source: Path, root: Path) -> str | None:
    """This --out folder's job id: new, or the one a killed job recorded (a job resumes with the model it began
    with). A folder a job wrote before job ids existed keeps none (its log records carry none either)."""
    path = out / JOB_FILE
    if path.is_file():
        job = json.loads(path.read_text())
        if job.get("model") not in (None, model_tag):
            raise BatchError(
                f"{out} holds a job scored with model {job['model']}; resuming it with model {model_tag} would mix "
                "two models in one output. Use a new --out for the new model"
            )
        return job.get("job")
    began = any((out / "parts").glob("part-*.parquet"))
    now = datetime.now(timezone.utc)
    job = None if began else f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    info = {
        "job": job,
        "model": model_tag,
        "started_utc": now.isoformat(timespec="seconds"),
        "source": str(source.resolve()),
    }
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{JOB_FILE}.tmp"
    tmp.write_text(json.dumps({**info, "root": str(root)}, indent=2) + "\n")
    os.replace(tmp, path)
    return job


@dataclass
class Job:
    """One --out folder being scored: what both engines (this module's and scopeml.serving.batch_ray's) share. The
    driver alone writes the log and the parts, from scored rows however they were computed."""

    out: Path
    root: Path
    files: list[Path]  # every input, in input order
    todo: list[Path]  # those no part holds yet
    id: str | None  # the job id every logged record carries
    model_tag: str
    log: object | None  # scopeml.serving.log's log, or None

    def commit(self, rows: list[dict]) -> None:
        """Log a scored chunk (deduplicated within the job: a chunk redone after a kill is never logged twice), then
        write it as the next part, atomically: a chunk is done only once it is whole on disk."""
        import pandas as pd

        if self.log:
            now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            logged = self.log.existing([r["request_id"] for r in rows], job=self.id, model_tag=self.model_tag)
            self.log.append(
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
        parts = self.out / "parts"
        index = 1 + max((int(p.stem.split("-")[1]) for p in parts.glob("part-*.parquet")), default=-1)
        tmp = parts / f".part-{index:05d}.tmp"
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, parts / f"part-{index:05d}.parquet")

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc) -> None:
        if self.log:
            self.log.close()

    def finish(self, fmt: str = "parquet") -> Path:
        """Every part joined into predictions.<fmt>, in input order."""
        import pandas as pd

        parts = sorted((self.out / "parts").glob("part-*.parquet"))
        table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        table = table.set_index("path").loc[[p.relative_to(self.root).as_posix() for p in self.files]].reset_index()
        target = self.out / f"predictions.{fmt}"
        table.to_parquet(target, index=False) if fmt == "parquet" else table.to_csv(target, index=False)
        return target


def begin(source: Path, out: Path, model_tag: str, custom_features, root: Path | None = None, log_path=None) -> Job:
    """Start or resume the job in `out`: list the inputs, record the job, find what the parts already hold, open the
    log (`custom_features`: the model's custom feature names, columns of the log). Use it in a `with` block: leaving
    it closes the log."""
    import pandas as pd

    from scopeml.serving.log import LogURLError, open_log

    root, files = list_inputs(source, root)
    job = start_job(out, model_tag, source, root)
    parts = out / "parts"
    parts.mkdir(parents=True, exist_ok=True)
    done = set()
    for part in sorted(parts.glob("part-*.parquet")):
        done.update(pd.read_parquet(part, columns=["path"])["path"])
    todo = [p for p in files if p.relative_to(root).as_posix() not in done]
    try:
        log = open_log(log_path, list(custom_features), setting="--log") if log_path else None
    except LogURLError as exc:
        raise BatchError(str(exc)) from None
    return Job(out, root, files, todo, job, model_tag, log)


def run(
    source: Path,
    out: Path,
    bundle,
    root: Path | None = None,
    batch_size: int = 64,
    log_path: str | Path | None = None,  # a path or URL (scopeml.serving.log)
    fmt: str = "parquet",
    progress: bool = True,
) -> Path:
    """Score in this process, one chunk of `batch_size` files per model call."""
    with begin(source, out, bundle.tag, bundle.custom_features, root, log_path) as job:
        todo = job.todo
        chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        for chunk in _track(chunks, f"Scoring {len(todo)} of {len(job.files)} files", progress):
            job.commit(score_chunk(bundle, chunk, job.root, job.id))
        return job.finish(fmt)


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
    log_path: str | Path | None = None,  # a path or URL (scopeml.serving.log)
    fmt: str = "parquet",
    engine=None,
) -> Path:
    """scopeml-batch's work: check the inputs, load the model, score what is not done yet, write the predictions.
    `engine`: None scores in this process; a scopeml.serving.batch_ray.RayEngine on Ray Data workers."""
    list_inputs(source, root)  # bad input fails before the model is loaded
    if log_path:
        from scopeml.serving.log import LogURLError, check_log

        try:
            check_log(log_path, "--log")
        except LogURLError as exc:
            raise BatchError(str(exc)) from None
    if engine is not None:
        engine.check()  # a Ray address that does not answer fails here, in seconds, before the model is loaded
        return engine.run(source, out, *locate_bundle(model, bundle_dir), root, batch_size, log_path, fmt)
    return run(source, out, load_bundle(model, bundle_dir), root, batch_size, log_path, fmt)


def locate_bundle(model: str, bundle_dir: Path | None = None) -> tuple[Path, str]:
    """(the serving bundle's folder, its tag): a bundle folder, or the model `model` in the BentoML store."""
    from scopeml.serving.bundle import SERVING_FILE

    if bundle_dir:
        if not (Path(bundle_dir) / SERVING_FILE).is_file():
            raise BatchError(f"{bundle_dir}: not a serving bundle (no {SERVING_FILE})")
        return Path(bundle_dir).resolve(), str(bundle_dir)
    import bentoml

    try:
        stored = bentoml.models.get(model)
    except bentoml.exceptions.NotFound:
        raise BatchError(f"no model {model} in the BentoML store; run scopeml-package first") from None
    return Path(stored.path).resolve(), str(stored.tag)


def load_bundle(model: str, bundle_dir: Path | None = None):
    """The serving bundle to score with: a bundle folder, or the model `model` from the BentoML store."""
    from scopeml.serving.bundle import ServingBundle

    return ServingBundle.load(*locate_bundle(model, bundle_dir))

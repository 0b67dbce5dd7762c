"""scopeml-batch --engine ray: the same job on Ray Data workers, for folders too large for one process.

    scopeml-batch /data/incoming --out outputs/batch/today --engine ray --workers 4       # Ray started here
    scopeml-batch /data/incoming --out outputs/batch/today --engine ray --ray-address HOST:PORT   # a running cluster

Nothing is scored differently: each worker is an actor of `map_batches` holding the packaged model (loaded once, by
ServingBundle.load, as the single-process job loads it) and scoring its batches with scopeml.serving.batch.score_chunk,
the single-process job's own decoding, preprocessing, features and prediction. The driver lists the inputs, records the
job, skips what the parts already hold, and writes the prediction log and the parts itself, from the rows streamed back
with `iter_batches` (scopeml.serving.batch.Job.commit): one writer, so the log's deduplication and a resumed job
behave as in the single-process job. A bad audio file is a row with its error, as there.

Workers read the input files and the model's folder by their absolute paths: on a cluster of several machines those
need a shared file system (and scopeml installed on every node). Rows come back pickled (Ray Data stores them as
bytes), so the driver commits exactly the dicts score_chunk returned, missing keys and None included.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import socket
from dataclasses import dataclass
from pathlib import Path

from scopeml import ray_address
from scopeml.serving.batch import BatchError, Job, begin, score_chunk

ADDRESS_SETTING = "--ray-address"
LOCAL_OBJECT_STORE_BYTES = 100 * 1024**2  # paths in, pickled rows out: Ray Data holds little at a time


@dataclass
class RayEngine:
    """Where and how wide the Ray job runs (scopeml-batch's --ray-address, --workers, --cpus-per-worker)."""

    address: str | None = None  # HOST:PORT, ray://HOST:PORT or auto; None: $RAY_ADDRESS when set, else Ray here
    workers: int = 2  # map_batches actors, each holding one copy of the model
    cpus_per_worker: float = 1.0  # Ray CPUs per actor; its torch threads
    progress: bool = True

    def target(self) -> tuple[str, str, bool]:
        """(the address to give ray.init, the setting that named it (for messages), whether it joins a cluster)."""
        address, setting = self.address, ADDRESS_SETTING
        if not address and os.environ.get("RAY_ADDRESS"):
            address, setting = os.environ["RAY_ADDRESS"], f"RAY_ADDRESS (used because {ADDRESS_SETTING} is not given)"
        joining = address not in (None, "", "local")
        return (address if joining else "local"), setting, joining

    def check(self) -> None:
        """The settings, and that a Ray cluster this shell may join answers at the address (a socket connect, then
        one request to its GCS: seconds); BatchError naming the setting otherwise, before the model is looked up.
        ray.init would retry for about 20 s."""
        if self.workers < 1:
            raise BatchError(f"--workers: must be >= 1, got {self.workers}")
        if not self.cpus_per_worker > 0:
            raise BatchError(f"--cpus-per-worker: must be > 0, got {self.cpus_per_worker}")
        address, setting, joining = self.target()
        problem = (
            ray_address.problem(address, f"leave {ADDRESS_SETTING} out to start Ray on this machine")
            if joining
            else None
        )
        if problem:
            raise BatchError(f"{setting}: {problem}")

    def run(
        self,
        source: Path,
        out: Path,
        bundle_folder: Path,
        model_tag: str,
        root: Path | None = None,
        batch_size: int = 64,
        log_path: str | Path | None = None,
        fmt: str = "parquet",
    ) -> Path:
        """Score what `out` does not hold yet on Ray workers; the driver logs and writes the parts."""
        from scopeml.serving.bundle import SERVING_FILE

        info = json.loads((bundle_folder / SERVING_FILE).read_text())
        custom_features = list(info.get("custom_features") or {})  # the log's columns; the workers compute them
        started = self._connect()
        try:
            with begin(source, out, model_tag, custom_features, root, log_path) as job:
                for rows in self._track(self.scored(job, bundle_folder, batch_size), job, batch_size):
                    job.commit(rows)
                return job.finish(fmt)
        finally:
            if started:
                import ray

                ray.shutdown()

    def scored(self, job: Job, bundle_folder: Path, batch_size: int):
        """The scored rows of `job.todo`, a batch at a time, as the workers finish them (in no fixed order)."""
        if not job.todo:
            return
        import numpy as np
        import ray.data

        _quiet_ray_data()
        items = [{"path": str(p)} for p in job.todo]
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_size))
        ds = ds.map_batches(
            Scorer,
            fn_constructor_kwargs={
                "bundle_folder": str(bundle_folder),
                "model_tag": job.model_tag,
                "root": str(job.root),
                "job": job.id,
                "threads": max(1, int(self.cpus_per_worker)),
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.cpus_per_worker,
        )
        for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
            yield [pickle.loads(b) for b in np.asarray(batch["row"])]

    def _connect(self) -> bool:
        """ray.init for this job; False when Ray was already initialized in this process (then it is left running)."""
        import ray

        if ray.is_initialized():
            return False
        address, setting, joining = self.target()
        args = dict(address=address, logging_level=logging.WARNING, log_to_driver=True)
        if not joining:  # Ray started here, just big enough for the pool; no dashboard
            cpus = max(1, math.ceil(self.workers * self.cpus_per_worker))
            args.update(
                num_cpus=cpus, num_gpus=0, object_store_memory=LOCAL_OBJECT_STORE_BYTES, include_dashboard=False
            )
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(**args)
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError or ValueError here
            raise BatchError(ray_address.init_failure(exc, joining, setting, address, "--engine ray")) from exc
        if joining:
            have = ray.cluster_resources().get("CPU", 0)
            need = self.workers * self.cpus_per_worker
            if have < need:
                logging.getLogger("scopeml.batch").warning(
                    "the cluster at %s has %g CPUs; %d workers x %g CPUs wait until it has %g",
                    address, have, self.workers, self.cpus_per_worker, need,
                )  # fmt: skip
        return True

    def _track(self, batches, job: Job, batch_size: int):
        if not self.progress or not job.todo:
            return batches
        from rich.progress import track

        total = math.ceil(len(job.todo) / batch_size)
        where = f"{self.workers} Ray worker(s)"
        return track(batches, total=total, description=f"Scoring {len(job.todo)} of {len(job.files)} files on {where}")


class Scorer:
    """One map_batches actor: the packaged model, loaded once, scoring batches of paths with score_chunk."""

    def __init__(self, bundle_folder: str, model_tag: str, root: str, job: str | None, threads: int):
        import torch

        from scopeml.serving.bundle import ServingBundle

        torch.set_num_threads(threads)
        for what, path in (("the input root", root), ("the model's folder", bundle_folder)):
            if not os.path.isdir(path):
                raise FileNotFoundError(
                    f"{what} {path} does not exist on Ray node {socket.gethostname()}: workers read it by its path, "
                    "so every node needs it at the same path (a shared file system)"
                )
        self.bundle = ServingBundle.load(bundle_folder, model_tag)
        self.root, self.job = Path(root), job

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        rows = score_chunk(self.bundle, [Path(p) for p in batch["path"]], self.root, self.job)
        return {"row": np.array([pickle.dumps(r) for r in rows], dtype=object)}


def _quiet_ray_data() -> None:
    """No progress bars or per-dataset INFO lines from Ray Data: scopeml-batch prints its own progress."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.enable_auto_log_stats = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "Progress bars disabled"

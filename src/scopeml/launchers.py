"""scopeml's Ray launcher for sweeps (`scopeml-train -m hydra/launcher=ray`), on the hydra-ray-launcher plugin.

conf/hydra/launcher/ray.yaml selects it (over the plugin's own `ray` option); the launcher class is
`hydra_plugins.scopeml_launchers.ray_launcher.RayLauncher` (Hydra takes launchers from that package only), the work
is here. Each job of a sweep is one Ray task, run by Hydra's `run_job` as the plugin does, so a job writes the same
run folder and W&B run (in the sweep's group) as with the basic launcher, and returns NaN when it fails. What it adds
to the plugin as released (1.2.2):

- start-up checks: the cluster named by `hydra.launcher.ray.init.address` (or $RAY_ADDRESS) must answer a short
  socket connect, and `ray.init` runs before the sweep folder is made, so a wrong address or a cluster that refuses
  the connection fails in seconds with exit code 2, naming the key, before any job (Ray's own connect to a closed
  port was still retrying after 150 s);
- `address: null` starts Ray on this machine (or joins $RAY_ADDRESS); joining a running cluster leaves out the
  settings Ray refuses there (`object_store_memory`, `num_cpus`, ...), which the plugin always passed (Hydra issue
  #2893: no release of the plugin could join a cluster);
- a job runs in the launching directory, with the launching shell's FORWARD_ENV variables: workers of a running
  cluster start where and with what `ray start` had, so relative paths (the default sweep folder, the data cache)
  would otherwise land elsewhere and the sweep summary would find no job;
- a job whose worker died (killed for memory, node lost, scopeml missing on the node) is recorded failed in its
  `status.json` and the sweep goes on, as when a job raises; the plugin's sweep stopped there without a summary.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import os
import socket
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from scopeml import ray_address

log = logging.getLogger("scopeml.launchers")

ADDRESS_KEY = "hydra.launcher.ray.init.address"
# ray.init() arguments that only apply when it starts Ray; Ray refuses them when joining a running cluster.
START_ONLY = (
    "num_cpus",
    "num_gpus",
    "resources",
    "labels",
    "object_store_memory",
    "include_dashboard",
    "dashboard_host",
    "dashboard_port",
    "_system_config",
    "_node_name",
    "_enable_object_reconstruction",
)
# The launching shell's variables every job gets (secret-named ones never: see forwarded_environment).
FORWARD_ENV = ("SCOPEML_*", "WANDB_*")
# Never forwarded, and dropped in the task: the address of a W&B service another process started. A job that
# joined it would stop it at its end (wandb.teardown, below), and the launching process's summary run, on the
# same service, would then never be written (seen in a test run whose pytest process had started W&B).
WANDB_SERVICE_VAR = "WANDB_SERVICE"


class LauncherError(Exception):
    """A launcher setting that cannot work; the message starts with the key."""


# --------------------------------------------------------------------------- start-up
def connect(init: dict) -> None:
    """ray.init() with `init` (the launcher's `ray.init` settings); LauncherError naming the key when it cannot."""
    import ray

    if ray.is_initialized():  # a second batch of the same sweep (Optuna), or a caller that started Ray itself
        return
    args, key, joining = init_arguments(init, os.environ)
    problem = (
        ray_address.problem(args["address"], "leave the key null to start Ray on this machine") if joining else None
    )
    if problem:
        raise LauncherError(f"{key}: {problem}")
    log.info("ray.init(%s)", ", ".join(f"{k}={v!r}" for k, v in args.items()))
    try:
        ray.init(**args)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError or ValueError here
        raise LauncherError(
            ray_address.init_failure(exc, joining, key, args["address"], "hydra.launcher.ray.init")
        ) from exc


def init_arguments(init: dict, environ) -> tuple[dict, str, bool]:
    """The ray.init() arguments for the launcher's `init` settings, the setting that names the address (for
    messages), and whether they join a running cluster.

    `address: null` joins $RAY_ADDRESS when set (as `ray job submit` sets it), else starts Ray here: "local", not
    Ray's own lookup, which would join any cluster started on this machine and then refuse the start settings.
    Joining leaves out the start-only settings (START_ONLY), which Ray refuses there.
    """
    args = dict(init)
    address, key = args.get("address"), ADDRESS_KEY
    if address in (None, "") and environ.get("RAY_ADDRESS"):
        address, key = environ["RAY_ADDRESS"], f"RAY_ADDRESS (used because {ADDRESS_KEY} is null)"
    joining = address not in (None, "", "local")
    if joining:
        dropped = sorted(k for k in START_ONLY if args.pop(k, None) is not None)
        if dropped:
            log.info("joining the Ray cluster at %s: its own settings hold (left out: %s)", address, ", ".join(dropped))
    args["address"] = address if joining else "local"
    return args, key, joining


def forwarded_environment(patterns: tuple[str, ...]) -> dict[str, str]:
    """The launching shell's variables that match `patterns`, secrets left out (scopeml.redact's rule): they would be
    visible to anyone who can read the cluster's task specs. Set those on the nodes (`ray start` passes its own)."""
    from scopeml.redact import is_secret_name

    return {
        k: v
        for k, v in os.environ.items()
        if any(fnmatch.fnmatchcase(k, p) for p in patterns) and not is_secret_name(k) and k != WANDB_SERVICE_VAR
    }


# --------------------------------------------------------------------------- in the Ray worker
def scopeml_job(hydra_context, sweep_config, task_function, singleton_state, cwd: str, env: dict[str, str]):
    """One sweep job in a Ray worker: in the launching directory, with the forwarded environment (both restored
    after, for a worker that runs more than one job)."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job

    if not os.path.isdir(cwd):
        raise FileNotFoundError(
            f"the sweep was launched in {cwd}, which does not exist on Ray node {socket.gethostname()}: jobs run"
            " there, so every node needs it at the same path (a shared file system)"
        )
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    os.environ.update(env)
    os.environ.pop(WANDB_SERVICE_VAR, None)  # a service of the job's own, which _teardown_wandb stops
    try:
        return _run_job(hydra_context, sweep_config, task_function, singleton_state)
    finally:
        _teardown_wandb()
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def _teardown_wandb() -> None:
    """Stop W&B's service inside the task: when the worker exits (max_calls: 1), Ray kills its child processes before
    W&B's own atexit teardown runs, which then prints a ConnectionResetError traceback for a run that was fine."""
    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    try:
        wandb.teardown()
    except Exception as exc:  # closing must never turn a finished job into a failed one
        log.warning("could not stop W&B's service: %s", exc)


# --------------------------------------------------------------------------- a job Ray lost
def lost_job(exc: Exception, overrides: list[str], sweep_config: DictConfig):
    """Record a job whose task never returned (its worker died, or it could not start) as failed, and return NaN
    for the sweeper, as scopeml.stage does for a job that raised: the sweep goes on and its summary lists it."""
    from hydra.core.utils import JobReturn, JobStatus

    from scopeml import run_files

    job_dir = _job_dir(sweep_config)
    job_dir.mkdir(parents=True, exist_ok=True)
    listed = job_dir / ".hydra" / "overrides.yaml"
    if not listed.exists():  # it never started: the summary lists a job by its overrides file
        listed.parent.mkdir(exist_ok=True)
        OmegaConf.save(OmegaConf.create(list(overrides)), listed)
    run_files.mark_failed(job_dir, run_files.read_stage(job_dir), exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    log.error("job %s: Ray lost it (%s): %s", job_dir.name, type(exc).__name__, first)
    task_cfg = copy.deepcopy(sweep_config)
    with open_dict(task_cfg):
        del task_cfg["hydra"]
    return JobReturn(
        overrides=list(overrides),
        cfg=task_cfg,
        hydra_cfg=sweep_config,
        working_dir=str(job_dir),
        task_name=str(sweep_config.hydra.job.name),
        status=JobStatus.COMPLETED,
        _return_value=float("nan"),
    )


def _job_dir(sweep_config: DictConfig) -> Path:
    """The job's folder, as Hydra's run_job names it (hydra.sweep.subdir is `${hydra:job.num}`: it needs the job's
    Hydra config in the HydraConfig singleton, which is put back after)."""
    from hydra.core.hydra_config import HydraConfig

    holder = HydraConfig.instance()
    saved = holder.cfg
    try:
        holder.set_config(sweep_config)
        return Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
    finally:
        holder.cfg = saved

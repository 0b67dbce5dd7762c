"""The launcher class of conf/hydra/launcher/ray.yaml: Hydra instantiates launchers only from `hydra_plugins`.

What it does, and why, is in scopeml.launchers. Hydra imports this module on every start (plugin discovery): keep its
imports light.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from hydra_plugins.hydra_ray_launcher.ray_launcher import RayLauncher as _PluginRayLauncher
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("scopeml.launchers")


class RayLauncher(_PluginRayLauncher):
    """The plugin's launcher with scopeml's start-up checks, working directory, environment and lost-job record."""

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from scopeml.launchers import LauncherError, connect

        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        try:
            connect(OmegaConf.to_container(self.ray_cfg.init, resolve=True) or {})
        except LauncherError as exc:
            print(f"scopeml-train: error: the sweep was not started: {exc}", file=sys.stderr)
            from scopeml.stage import ExitCode

            raise SystemExit(int(ExitCode.BAD_INPUT)) from None

    def launch(self, job_overrides, initial_job_idx: int):
        import ray
        from hydra.core.singleton import Singleton
        from hydra.core.utils import configure_log, filter_overrides, setup_globals

        from scopeml.launchers import FORWARD_ENV, forwarded_environment, lost_job, scopeml_job

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info("Ray: %d job(s), sweep folder %s", len(job_overrides), sweep_dir.absolute())
        options = OmegaConf.to_container(self.ray_cfg.remote, resolve=True) or {}
        job = ray.remote(**options)(scopeml_job) if options else ray.remote(scopeml_job)
        env = forwarded_environment(FORWARD_ENV)
        submitted = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"job_id_for_{idx}"
                sweep_config.hydra.job.num = idx
            ref = job.remote(
                self.hydra_context, sweep_config, self.task_function, Singleton.get_state(), os.getcwd(), env
            )
            submitted.append((ref, list(overrides), sweep_config))
        results = []
        try:
            for ref, overrides, sweep_config in submitted:
                try:
                    results.append(ray.get(ref))
                except ray.exceptions.RayError as exc:
                    results.append(lost_job(exc, overrides, sweep_config))
        except BaseException:
            # Ctrl-C, or the driver lost the cluster: the jobs not collected yet would run on with nobody to read
            # them (on a cluster, past this sweep's end)
            for ref, _, _ in submitted[len(results) :]:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished, or the cluster is gone
                    pass
            raise
        return results

"""scopeml-monitor: estimate a deployed model's performance before labels arrive, watch drift, confirm with labels.

Run `scopeml-monitor --help` for the config groups, examples and exit codes.
"""

from __future__ import annotations

import hydra

from scopeml import stage
from scopeml.config.paths import CONF_SEARCH_PATH


@stage.hydra_command
@hydra.main(config_path=CONF_SEARCH_PATH, config_name="monitor_report", version_base="1.3")
@stage.hydra_task("scopeml-monitor", bad_input=("scopeml.monitoring.monitor:MonitorError",))
def main(run: stage.StageRun) -> stage.ExitCode:
    """Exits CHECK_FAILED on an alert of a kind listed in monitor.fail_on."""
    from scopeml.monitoring.monitor import monitor

    summary = monitor(run.config, run.dir, run.public)
    return stage.ExitCode(summary["exit_code"])


if __name__ == "__main__":
    main()

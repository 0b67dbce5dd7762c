"""scopeml-data: build a data set from its recipe, validate it, compute baselines, and write the report.

Run `scopeml-data --help` for the config groups, examples and exit codes.
"""

from __future__ import annotations

import hydra

from scopeml import stage
from scopeml.config.paths import CONF_SEARCH_PATH

# A recipe that cannot be built (no such folder, unreadable audio) is the user's to fix: exit 2.
BAD_INPUT = ("scopeml.data.dataset:DataError", "scopeml.data.audio:AudioError")


@stage.hydra_command
@hydra.main(config_path=CONF_SEARCH_PATH, config_name="data_report", version_base="1.3")
@stage.hydra_task("scopeml-data", bad_input=BAD_INPUT)
def main(run: stage.StageRun) -> stage.ExitCode:
    """Exits CHECK_FAILED when a check listed in data.checks.blocking fails."""
    from scopeml.data_app import report_data

    passed = report_data(run.config, run.dir, run.public)
    return stage.ExitCode.OK if passed else stage.ExitCode.CHECK_FAILED


if __name__ == "__main__":
    main()

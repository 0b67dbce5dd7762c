"""scopeml-train: check the config, build data and model, train, test, and score against the scoping targets.

Run `scopeml-train --help` for the config groups, examples and exit codes.
"""

from __future__ import annotations

import hydra

from scopeml import stage
from scopeml.config.paths import CONF_SEARCH_PATH

# Bad data or paths get a clear message and exit 2; anything else is a bug and keeps its traceback.
BAD_INPUT = ("scopeml.data.dataset:DataError", "scopeml.data.audio:AudioError")


@stage.hydra_command
@hydra.main(config_path=CONF_SEARCH_PATH, config_name="config", version_base="1.3")
@stage.hydra_task("scopeml-train", bad_input=BAD_INPUT)
def main(run: stage.StageRun) -> float:
    """One run, or one job of a sweep (-m): returns the primary metric, which sweepers optimize."""
    from scopeml.train import train

    return train(run.config, run.dir, resolved=run.resolved, public=run.public, group=run.group)


if __name__ == "__main__":
    main()

"""The Hydra sweeper class and its configs: `hydra/sweeper=scopeml_optuna`, with the option groups
`hydra/sweeper/sampler` (tpe, random) and `hydra/sweeper/pruner` (median, percentile, hyperband, nop).

Hydra imports this module on every start (plugin discovery): it imports neither optuna nor scopeml's training code.
What a sweep does is in scopeml.hpo. No `from __future__ import annotations`: Hydra's plugin scan executes this
module without registering it in sys.modules, where dataclasses look string annotations up.
"""

import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from omegaconf import MISSING, DictConfig


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None  #: each trial's sampler is seeded from (seed, trial number): see scopeml.hpo
    n_startup_trials: int = 10  #: random trials before TPE models the results
    multivariate: Optional[bool] = None  #: null: Optuna's default
    constant_liar: bool = True  #: running trials count as bad ones, so parallel workers spread out


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class MedianPrunerConf:
    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5  #: no pruning until this many trials completed
    n_warmup_steps: int = 0  #: epochs (0-based) of every trial that are never pruned
    interval_steps: int = 1
    n_min_trials: int = 1  #: completed trials that must have reached an epoch before it is judged


@dataclass
class PercentilePrunerConf:
    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0  #: prune below this percentile of completed trials (for a maximized metric)
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3


@dataclass
class NopPrunerConf:
    _target_: str = "optuna.pruners.NopPruner"


@dataclass
class ScopemlOptunaSweeperConf:
    _target_: str = "hydra_plugins.scopeml_optuna_sweeper.optuna_sweeper.ScopemlOptunaSweeper"
    _recursive_: bool = False  # sampler and pruner are built by the sweeper (per trial) and by each job
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "median"}, "_self_"])
    sampler: Any = MISSING
    pruner: Any = MISSING
    #: maximize or minimize; null: as scoping.primary_metric says (what every trial returns)
    direction: Optional[str] = None
    #: where the study lives, shared by every worker: a journal file path (one machine, or a shared file system),
    #: sqlite:///PATH or postgresql://USER@HOST:PORT/DB (many machines). null: <sweep dir>/optuna.journal
    storage: Optional[str] = None
    study_name: str = "scopeml"
    n_trials: int = 20  #: trials this process runs (each worker of a shared study runs its own n_trials)
    n_jobs: int = 1  #: trials handed to the launcher at once (a parallel launcher runs them side by side)
    #: the search space: KEY: choice(...) | range(...) | interval(...) | tag(log, interval(...)) | a fixed value
    #: | {_target_: optuna.distributions.FloatDistribution, low: ..., high: ..., log: true}
    params: Optional[dict[str, Any]] = None


_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="scopeml_optuna", node=ScopemlOptunaSweeperConf, provider="scopeml")
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf}.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="scopeml")
for _name, _node in {
    "median": MedianPrunerConf,
    "percentile": PercentilePrunerConf,
    "hyperband": HyperbandPrunerConf,
    "nop": NopPrunerConf,
}.items():
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="scopeml")


class ScopemlOptunaSweeper(Sweeper):
    """Hydra's side of the search: settings in, a launcher to run trials; scopeml.hpo.OptunaSearch does the rest."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.search = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        from scopeml import hpo

        self.config = config
        self.hydra_context = hydra_context
        try:
            self.search = hpo.OptunaSearch(config, **self.settings)  # settings and storage checked here
        except hpo.SearchError as exc:
            _refuse(exc)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from scopeml import hpo

        try:
            return self.search.run(arguments, self.launcher)
        except hpo.SearchError as exc:
            _refuse(exc)


def _refuse(exc: Exception) -> None:
    from scopeml import hpo
    from scopeml.stage import ExitCode

    what = "the sweep stopped" if isinstance(exc, hpo.SearchChanged) else "the sweep was not started"
    print(f"scopeml-train: error: {what}: {exc}", file=sys.stderr)
    raise SystemExit(int(ExitCode.BAD_INPUT)) from None

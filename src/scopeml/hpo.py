"""Hyperparameter search with Optuna (>= 4): what scopeml's Hydra sweeper does (`hydra/sweeper=scopeml_optuna`,
selected by the preset `hparams_search=optuna`; the plugin class is in hydra_plugins/scopeml_optuna_sweeper).

- **Trials are jobs.** Each trial is a job of the multirun, launched by whichever Hydra launcher is configured (basic,
  joblib, Ray, ...) into its own run folder `<sweep dir>/<trial number>/`; its value is what the job returns, the
  primary metric on validation (or the cross-validation mean).
- **Shared studies.** `hydra.sweeper.storage` (a journal file, sqlite:///, postgresql://) and `hydra.sweeper.study_name`
  name the study; any number of `scopeml-train -m` processes, on one machine or many, ask it for trials, each running
  its own `n_trials`. Trial numbers come from the study, so run folders never collide even in one sweep folder.
- **Pruning.** A job learns its trial from `SCOPEML_OPTUNA_TRIAL` (set for the job only, through
  `hydra.job.env_set`), reports the validation primary metric at every epoch and stops when the pruner says so
  (scopeml.training.pruning); the sweeper then tells the study PRUNED, and the run folder's status.json says
  `pruned`. A job that fails (NaN, an exception) is told FAIL and the sweep goes on.
- **Checked at start-up.** A storage that cannot be opened, a study that already holds another search space, direction
  or objective, and malformed params stop the sweep before any job runs, naming the setting.
- **Seeded per trial.** With `hydra.sweeper.sampler.seed` set, each trial's sampler is seeded from (seed, trial
  number): one process reproduces its sweep exactly, and workers sharing a study do not draw the same points.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import socket
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from scopeml import sweep

log = logging.getLogger("scopeml.hpo")

TRIAL_ENV = "SCOPEML_OPTUNA_TRIAL"  #: a job's link to its trial (JSON: study, storage, trial, pruner)
SPACE_ATTR = "scopeml:search_space"  #: the study's search space (user attrs), checked by every worker that joins
OBJECTIVE_ATTR = "scopeml:objective"  #: what trial values are (the primary metric)
DEFAULT_JOURNAL = "optuna.journal"  #: the study's file in the sweep folder when hydra.sweeper.storage is null
RESULTS_FILE = "optimization_results.yaml"
CONNECT_TIMEOUT_S = 5
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")


class SearchError(ValueError):
    """A bad search setting or storage: the message names the setting. Raised before any trial runs."""


class SearchChanged(SearchError):
    """Another worker claimed the study for another search space or objective while this one was running trials."""


# --------------------------------------------------------------------------- storage
def resolve_storage(setting: str | None, default_path: Path) -> str:
    """The storage every worker and job opens: a journal file's absolute path or a database URL."""
    if setting is None or str(setting).strip() == "":
        return str(default_path.absolute())
    setting = str(setting).strip()
    if "://" not in setting:
        return str(Path(setting).expanduser().absolute())
    scheme = setting.split("://", 1)[0].lower()
    if scheme == "postgres":  # libpq accepts it, SQLAlchemy does not
        setting = "postgresql" + setting[len(scheme) :]
    return setting


def open_storage(spec: str) -> optuna.storages.BaseStorage:
    """Open (and create where needed) the study storage; any failure is a SearchError naming hydra.sweeper.storage."""
    from scopeml.redact import without_url_password

    shown = without_url_password(spec)
    if "://" not in spec:
        path = Path(spec)
        if not path.parent.is_dir():
            raise SearchError(f"hydra.sweeper.storage: the folder of the journal file {shown} does not exist")
        if path.is_dir():
            raise SearchError(f"hydra.sweeper.storage: {shown} is a folder; give a journal file's path")
        try:
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:
            raise SearchError(
                f"hydra.sweeper.storage: cannot open the journal file {shown}: {_first_line(exc)}"
            ) from None
    scheme = spec.split("://", 1)[0].lower()
    if scheme.split("+", 1)[0] not in RDB_SCHEMES:
        raise SearchError(
            f"hydra.sweeper.storage: unknown scheme '{scheme}' in {shown}; expected a journal file path (workers on "
            "one machine or a shared file system), sqlite:///PATH, or postgresql://USER@HOST:PORT/DB (workers on "
            "many machines)"
        )
    engine: dict[str, Any] = {}
    if scheme.startswith("postgresql") or scheme.startswith("mysql"):
        engine["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if scheme.startswith("sqlite"):
        db = spec.split(":///", 1)[-1]
        if db and db != ":memory:" and not Path(db).expanduser().absolute().parent.is_dir():
            raise SearchError(f"hydra.sweeper.storage: the folder of the SQLite file in {shown} does not exist")
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(spec, engine_kwargs=engine)
        except Exception as exc:
            # Workers starting together on a fresh database race to create Optuna's tables (PostgreSQL: a unique
            # violation on pg_type); the loser finds them made when it tries again.
            racing = any(w in str(exc) for w in ("already exists", "duplicate key", "UniqueViolation"))
            if not racing or attempt == 2:
                raise SearchError(f"hydra.sweeper.storage: cannot open {shown}: {_first_line(exc)}") from None
            time.sleep(0.5 + random.random())


# --------------------------------------------------------------------------- search space
def parse_space(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> tuple[dict, list[str]]:
    """The search space ({key: distribution}) and the fixed overrides every trial gets, from hydra.sweeper.params
    and the command line (where a choice(), range() or interval() is searched too)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines: list[tuple[str, str]] = []  # (override line, where it came from)
    for key, value in (params or {}).items():
        if isinstance(value, Mapping):
            lines.append((f"{key}=__distribution__", f"hydra.sweeper.params.{key}"))
        else:
            lines.append((sweep.param_line(key, value), f"hydra.sweeper.params.{key}"))
    lines += [(arg, "the command line") for arg in arguments]

    space: dict[str, optuna.distributions.BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for line, where in lines:
        key = line.split("=", 1)[0]
        if line.endswith("=__distribution__"):
            space[key] = _distribution_from_config(params[key], where)
            fixed.pop(key, None)
            continue
        try:
            override = parser.parse_override(line)
        except Exception as exc:
            raise SearchError(f"{where}: cannot parse {line!r}: {_first_line(exc)}") from None
        key = override.get_key_element()
        if override.is_sweep_override():
            space[key] = _distribution(override, line, where)
            fixed.pop(key, None)
        else:
            fixed[key] = override.input_line or line
            space.pop(key, None)
    return space, list(fixed.values())


def _distribution(override, line: str, where: str) -> optuna.distributions.BaseDistribution:
    from hydra.core.override_parser.types import Transformer

    dist = optuna.distributions
    value = override.value()
    if override.is_choice_sweep() or (override.is_range_sweep() and value.shuffle):
        choices = []
        for raw, encoded in zip(override.sweep_iterator(), override.sweep_iterator(transformer=Transformer.encode)):
            choices.append(raw if raw is None or isinstance(raw, (bool, int, float, str)) else encoded)
        return dist.CategoricalDistribution(choices)
    if override.is_range_sweep():
        values = list(override.sweep_iterator())
        if not values:
            raise SearchError(f"{where}: {line!r} is an empty range")
        if all(isinstance(v, int) for v in values):
            return dist.IntDistribution(values[0], values[-1], step=int(value.step))
        return dist.FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
    if override.is_interval_sweep():
        log_scale = "log" in value.tags
        low, high = value.start, value.end
        if low >= high:
            raise SearchError(f"{where}: {line!r}: the low end must be below the high end")
        if log_scale and low <= 0:
            raise SearchError(f"{where}: {line!r}: a log interval needs a positive low end")
        integers = re.search(r"interval\(\s*[-+]?\d+\s*,\s*[-+]?\d+\s*\)", line)
        if integers:
            return dist.IntDistribution(int(low), int(high), log=log_scale)
        return dist.FloatDistribution(float(low), float(high), log=log_scale)
    raise SearchError(f"{where}: {line!r}: only choice(), range() and interval() can be searched")


def _distribution_from_config(node: Mapping, where: str) -> optuna.distributions.BaseDistribution:
    from hydra.utils import instantiate

    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    target = str(plain.get("_target_", ""))
    if not target.startswith("optuna.distributions."):
        raise SearchError(f"{where}: a mapping must be an Optuna distribution (_target_: optuna.distributions.*)")
    try:
        made = instantiate(plain)
    except Exception as exc:
        raise SearchError(f"{where}: {_first_line(exc)}") from None
    return made


def space_to_json(space: Mapping[str, optuna.distributions.BaseDistribution]) -> dict[str, str]:
    return {k: optuna.distributions.distribution_to_json(space[k]) for k in sorted(space)}


def format_override(key: str, value: Any) -> str:
    """`key=value` for a sampled value, as Hydra's override parser reads it back."""
    if isinstance(value, str) and value[:1] in "[{":  # a list or dict choice, kept in its encoded form
        return f"{key}={value}"
    return sweep.format_override(key, value)


# --------------------------------------------------------------------------- sampler and pruner
def build_pruner(node: Any) -> optuna.pruners.BasePruner:
    from hydra.utils import instantiate

    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not plain:
        return optuna.pruners.NopPruner()
    try:
        pruner = instantiate(plain)
    except Exception as exc:
        raise SearchError(f"hydra.sweeper.pruner: {_first_line(exc)}") from None
    if not isinstance(pruner, optuna.pruners.BasePruner):
        raise SearchError(f"hydra.sweeper.pruner: {plain} is not an Optuna pruner (its _target_ names the class)")
    return pruner


def build_sampler(node: Any) -> optuna.samplers.BaseSampler:
    from hydra.utils import instantiate

    plain = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})
    seed = plain.pop("seed", None)

    if not plain:
        plain = {"_target_": "optuna.samplers.TPESampler"}  # Optuna's own default

    def make(seed_: int | None) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return instantiate(plain, seed=seed_)

    try:
        made = make(seed)
    except Exception as exc:
        raise SearchError(f"hydra.sweeper.sampler: {_first_line(exc)}") from None
    if not isinstance(made, optuna.samplers.BaseSampler):
        raise SearchError(f"hydra.sweeper.sampler: {plain} is not an Optuna sampler (its _target_ names the class)")
    return made if seed is None else PerTrialSeed(make, int(seed))


def worker_command(storage: str | Path, n_trials: int, sweep_dir: str | Path, overrides: Sequence[str]) -> list[str]:
    """The command line of one more worker on a shared study: `scopeml-train -m overrides...` asking the study at
    `storage` for `n_trials` trials into its own sweep folder (what a user types on each machine)."""
    import sys

    return [
        sys.executable,
        "-m",
        "scopeml.cli.train",
        "-m",
        *overrides,
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweep.dir={sweep_dir}",
    ]


def trial_seed(seed: int, number: int) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class PerTrialSeed(optuna.samplers.BaseSampler):
    """A sampler seeded afresh for each trial from (seed, trial number).

    One sampler seeded once would make every worker of a shared study draw the same points; reseeding per trial
    keeps a single process's sweep reproducible and gives each trial of a shared study its own draws. What the
    sampler learns from earlier trials comes from the study's storage, not from the sampler object.
    """

    def __init__(self, make, seed: int):
        self._make = make
        self._seed = seed
        self._by_trial: dict[int, optuna.samplers.BaseSampler] = {}

    def _for(self, trial) -> optuna.samplers.BaseSampler:
        if trial.number not in self._by_trial:
            self._by_trial[trial.number] = self._make(trial_seed(self._seed, trial.number))
        return self._by_trial[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        sampler = self._by_trial.pop(trial.number, None)
        if sampler is not None:
            sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:  # the seeds are fixed by design
        pass


# --------------------------------------------------------------------------- the search
class OptunaSearch:
    """One worker's sweep: open (or join) the study, then ask, launch, tell, `n_trials` times."""

    def __init__(
        self,
        config: DictConfig,
        *,
        sampler: Any = None,
        pruner: Any = None,
        direction: str | None = None,
        storage: str | None = None,
        study_name: str = "scopeml",
        n_trials: int = 20,
        n_jobs: int = 1,
        params: Any = None,
    ) -> None:
        self.config = config
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self.sampler_cfg, self.pruner_cfg, self.params = sampler, pruner, params
        if not study_name:
            raise SearchError("hydra.sweeper.study_name: give the study a name (workers join a study by it)")
        self.study_name = str(study_name)
        if n_trials < 1:
            raise SearchError(f"hydra.sweeper.n_trials: expected at least 1, got {n_trials}")
        if n_jobs < 1:
            raise SearchError(f"hydra.sweeper.n_jobs: expected at least 1, got {n_jobs}")
        self.n_trials, self.n_jobs = int(n_trials), int(n_jobs)
        self.objective = _objective(config)
        self.direction = _direction(direction, self.objective)
        self.storage_spec = resolve_storage(storage, self.sweep_dir / DEFAULT_JOURNAL)
        self.default_storage = storage is None or str(storage).strip() == ""
        # an explicit storage is opened now, so a wrong one fails in seconds; the default one is made with the folder
        self.storage = None if self.default_storage else open_storage(self.storage_spec)
        self.pruner = build_pruner(pruner)
        self.sampler = build_sampler(sampler)

    # ------------------------------------------------------------------ study
    def open_study(self, space: dict) -> optuna.Study:
        from scopeml.redact import without_url_password

        study = optuna.create_study(
            storage=self.storage,
            study_name=self.study_name,
            sampler=self.sampler,
            pruner=self.pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        where = f"study '{self.study_name}' in {without_url_password(self.storage_spec)}"
        there = study.directions[0].name.lower()
        if there != self.direction:
            raise SearchError(
                f"hydra.sweeper.direction: {where} is {there}d, this sweep would {self.direction} "
                f"{self.objective}; use another hydra.sweeper.study_name"
            )
        attrs = self.check_study(study, space)
        if SPACE_ATTR not in attrs:
            study.set_user_attr(SPACE_ATTR, space_to_json(space))
        if OBJECTIVE_ATTR not in attrs:
            study.set_user_attr(OBJECTIVE_ATTR, self.objective)
        # Storages have no compare-and-set: two workers that started together on a new study with different
        # spaces both saw none and both wrote theirs. Read back: the one whose write was overwritten stops here,
        # and run() reads again before every batch of trials, so a late writer is caught before its next batch.
        self.check_study(study, space)
        return study

    def check_study(self, study: optuna.Study, space: Mapping) -> dict:
        """The study's attributes, read from the storage; raises if it holds another search space or objective."""
        from scopeml.redact import without_url_password

        where = f"study '{self.study_name}' in {without_url_password(self.storage_spec)}"
        attrs = study.user_attrs
        wanted = space_to_json(space)
        if SPACE_ATTR in attrs and attrs[SPACE_ATTR] != wanted:
            raise SearchError(
                f"hydra.sweeper.params: {where} already holds a different search space "
                f"({_space_difference(attrs[SPACE_ATTR], wanted)}); search it with the same hydra.sweeper.params, "
                "or start a new study with another hydra.sweeper.study_name"
            )
        if OBJECTIVE_ATTR in attrs and attrs[OBJECTIVE_ATTR] != self.objective:
            raise SearchError(
                f"scoping.primary_metric: {where} holds trials scored on {attrs[OBJECTIVE_ATTR]}, this sweep scores "
                f"{self.objective}; use the same scoping or another hydra.sweeper.study_name"
            )
        return attrs

    # ------------------------------------------------------------------ sweep
    def run(self, arguments: list[str], launcher) -> list:
        from scopeml.redact import without_url_password

        space, fixed = parse_space(self.params, arguments)
        if not space:
            raise SearchError("hydra.sweeper.params: nothing to search (no choice(), range() or interval())")
        if self.default_storage:
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
            self.storage = open_storage(self.storage_spec)
        study = self.open_study(space)
        log.info(
            "Optuna study '%s' in %s: %s %s, sampler %s, pruner %s; this worker runs %d trial(s)",
            self.study_name,
            without_url_password(self.storage_spec),
            self.direction,
            self.objective,
            type(self.sampler).__name__,
            type(self.pruner).__name__,
            self.n_trials,
        )
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        mine: list[int] = []
        results = []
        job_idx = 0
        while len(mine) < self.n_trials:
            if mine:
                try:
                    self.check_study(study, space)
                except SearchError as exc:
                    self.write_results(study, mine)
                    raise SearchChanged(f"after {len(mine)} trial(s) of this worker: {exc}") from None
            batch = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - len(mine)))]
            for trial in batch:
                trial.set_user_attr("run_dir", str(self.sweep_dir / str(trial.number)))
                trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            overrides = [self.job_overrides(trial, fixed) for trial in batch]
            try:
                returns = launcher.launch(overrides, initial_job_idx=job_idx)
            except BaseException:  # the launcher itself broke (or Ctrl-C): no trial of this batch stays RUNNING
                for trial in batch:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                raise
            job_idx += len(batch)
            for trial, ret in zip(batch, returns):
                self.tell(study, trial, ret)
            mine += [t.number for t in batch]
            results += list(returns)
        self.write_results(study, mine)
        return results

    def job_overrides(self, trial: optuna.Trial, fixed: list[str]) -> list[str]:
        link = {
            "study": self.study_name,
            "storage": self.storage_spec,
            "trial": trial.number,
            "pruner": OmegaConf.to_container(self.pruner_cfg, resolve=True)
            if isinstance(self.pruner_cfg, DictConfig)
            else self.pruner_cfg,
        }
        return [
            *fixed,
            *(format_override(k, v) for k, v in trial.params.items()),
            f"hydra.sweep.subdir={trial.number}",
            f"++hydra.job.env_set.{TRIAL_ENV}={sweep.quote(json.dumps(link))}",
        ]

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret) -> None:
        from hydra.core.utils import JobStatus

        state, value, note = optuna.trial.TrialState.FAIL, None, ""
        returned = getattr(ret, "_return_value", None)
        if ret.status == JobStatus.COMPLETED:
            if isinstance(returned, (int, float)) and math.isfinite(returned):
                state, value = optuna.trial.TrialState.COMPLETE, float(returned)
            else:
                note = f"the job returned {returned!r} (its status.json says why)"
        elif isinstance(returned, optuna.TrialPruned):
            state, note = optuna.trial.TrialState.PRUNED, str(returned)
        else:
            note = f"{type(returned).__name__}: {_first_line(returned)}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.tell(trial, value if state == optuna.trial.TrialState.COMPLETE else None, state=state)
        if state == optuna.trial.TrialState.COMPLETE:
            log.info("trial %d: %s %.4f", trial.number, self.objective, value)
        elif state == optuna.trial.TrialState.PRUNED:
            log.info("trial %d: pruned (%s)", trial.number, note)
        else:
            log.warning("trial %d failed: %s", trial.number, note)

    def write_results(self, study: optuna.Study, mine: list[int]) -> None:
        """<sweep dir>/optimization_results.yaml: the study's best trial so far (every worker's) and this worker's."""
        import yaml

        from scopeml.redact import without_url_password

        trials = study.get_trials(deepcopy=False)
        states = {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
        out: dict[str, Any] = {
            "study_name": self.study_name,
            "storage": without_url_password(self.storage_spec),
            "direction": self.direction,
            "objective": self.objective,
            "trials": {k: v for k, v in states.items() if v},
            "this_worker": {t.number: t.state.name.lower() for t in trials if t.number in set(mine)},
        }
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        if complete:
            best = study.best_trial
            out.update(
                name="optuna",  # the keys hydra-optuna-sweeper wrote
                best_params=dict(best.params),
                best_value=best.value,
                best_trial={"number": best.number, "run_dir": best.user_attrs.get("run_dir")},
            )
            log.info(
                "best so far: trial %d, %s %.4f, %s",
                best.number,
                self.objective,
                best.value,
                best.user_attrs.get("run_dir", "(no run folder: a trial added outside scopeml)"),
            )
        (self.sweep_dir / RESULTS_FILE).write_text(yaml.safe_dump(out, sort_keys=False))


# --------------------------------------------------------------------------- helpers
def _objective(config: DictConfig) -> str:
    primary = OmegaConf.select(config, "scoping.primary_metric")
    return str(primary) if primary else "the value the job returns"


def _direction(direction: str | None, objective: str) -> str:
    from scopeml.metrics import METRICS

    if direction is not None and str(direction).lower() not in ("maximize", "minimize"):
        raise SearchError(f"hydra.sweeper.direction: expected maximize, minimize or null, got {direction!r}")
    natural = None
    if objective in METRICS:
        natural = "maximize" if METRICS[objective].higher_is_better else "minimize"
    if direction is None:
        if natural is None:
            raise SearchError("hydra.sweeper.direction: set maximize or minimize (no scoping.primary_metric to go by)")
        return natural
    direction = str(direction).lower()
    if natural is not None and direction != natural:
        raise SearchError(
            f"hydra.sweeper.direction: {direction} contradicts scoping.primary_metric {objective}, which trials return "
            f"and which is better {'higher' if natural == 'maximize' else 'lower'}; leave it null"
        )
    return direction


def _space_difference(there: Mapping[str, str], here: Mapping[str, str]) -> str:
    parts = []
    for key in sorted(set(there) | set(here)):
        if key not in here:
            parts.append(f"{key} only in the study")
        elif key not in there:
            parts.append(f"{key} only here")
        elif there[key] != here[key]:
            a, b = (optuna.distributions.json_to_distribution(x) for x in (there[key], here[key]))
            parts.append(f"{key}: {_describe(a)} in the study, {_describe(b)} here")
    return "; ".join(parts)


def _describe(d: optuna.distributions.BaseDistribution) -> str:
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return "choice(" + ", ".join(map(str, d.choices)) + ")"
    log_scale = getattr(d, "log", False)
    return f"{'log ' if log_scale else ''}interval({d.low}, {d.high})" + (f" step {d.step}" if d.step else "")


def _first_line(exc: Any) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]

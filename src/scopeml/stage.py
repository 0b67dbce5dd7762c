"""One shape for every scopeml command: start-up, the config check, failure marking, exit codes, the tracker.

Each command's entry point (scopeml.cli) hands its work to `run` (argparse commands) or `hydra_task`
(Hydra commands, which have a run folder), in the spirit of lightning-hydra-template's `task_wrapper`.
So the same kind of failure ends the same way in every command: the exit code of `ExitCode` (its
table is in every command's --help), a message naming the bad key or file, and, where a run folder
exists, status.json marked failed with the stage, the error and the traceback. A W&B run the work
left open is closed, marked failed when the work failed.

Light on purpose: `--help` and a bad config must answer in about a second, so nothing heavy is imported here.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

log = logging.getLogger("scopeml.stage")


class ExitCode(IntEnum):
    """What a scopeml command's exit status means: the same in every command."""

    OK = 0  #: success
    CHECK_FAILED = 1  #: the work ran and a gate or check failed
    BAD_INPUT = 2  #: bad config or bad input (the message names the key or file)
    BUG = 3  #: an unexpected error: a bug, with its traceback


MEANING = {
    ExitCode.OK: "success",
    ExitCode.CHECK_FAILED: "the work ran and a gate or check failed (a blocking data check, a monitoring alert, "
    "a missed load-test target, no run selected, ...)",
    ExitCode.BAD_INPUT: "bad config or bad input: the message names the key or file (no traceback)",
    ExitCode.BUG: "an unexpected error (a bug): the traceback is printed (and kept in status.json where the command "
    "has a run folder)",
}

# Errors that are always the user's to fix. Named as "module:Class" and looked up only among modules
# already imported (an exception cannot be an instance of a class never imported), so that deciding
# costs no imports.
BAD_INPUT_ERRORS = (
    "scopeml.config._validate:ConfigError",
    "scopeml.run_files:RunFileError",
    "hydra.errors:HydraException",
)  # a config Hydra cannot compose (an argparse command's overrides)

# What a sweep job raises to its sweeper on purpose, not a failure: scopeml's Optuna sweeper tells the study the trial
# was pruned (the job has marked status.json `pruned`).
SWEEPER_SIGNALS = ("optuna.exceptions:TrialPruned",)


INDENT = " " * 5  # under a row's text, past its code


def exit_code_table(here: dict[ExitCode, str] | None = None) -> str:
    """The exit-code table as --help shows it; `here` adds what a code means in one command, under its row."""
    rows = []
    for code in ExitCode:
        rows.append(textwrap.fill(MEANING[code], 100, initial_indent=f"  {code.value}  ", subsequent_indent=INDENT))
        if here and code in here:
            rows.append(textwrap.fill(f"here: {here[code]}", 100, initial_indent=INDENT, subsequent_indent=INDENT))
    return "Exit codes (the same in every scopeml command):\n" + "\n".join(rows)


def parser(prog: str, description: str | None, epilog: str = "", here: dict[ExitCode, str] | None = None):
    """An argparse parser for a command, its --help ending with the exit-code table (and what `here` adds)."""
    import argparse

    text = "\n\n".join(part for part in (epilog.strip("\n"), exit_code_table(here)) if part)
    return argparse.ArgumentParser(
        prog=prog, description=description, epilog=text, formatter_class=argparse.RawDescriptionHelpFormatter
    )


# --------------------------------------------------------------------------- argparse commands
def run(prog: str, work: Callable[[], ExitCode | None], bad_input: Iterable[type | str] = ()) -> int:
    """Run a command's work and return its exit code: what `work` returns (None: success), BAD_INPUT when it
    raises one of `bad_input` (classes, or "module:Class" names) or a config error, BUG for anything else."""
    ok = False
    _own_wandb_service()
    try:
        result = work()
        ok = True
    except Exception as exc:
        code = classify(exc, bad_input)
        report(prog, exc, code)
        return int(code)
    finally:
        close_tracker(failed=not ok)
    return int(result or ExitCode.OK)


# --------------------------------------------------------------------------- Hydra commands
@dataclass
class StageRun:
    """What a Hydra command's work receives once start-up is done."""

    prog: str  #: the command's name, for messages
    dir: Path  #: the run folder (Hydra's output dir), where status.json lives
    config: Any  #: the checked config (scopeml.config.Config)
    resolved: dict  #: the composed config as plain data, interpolations resolved (what components are built from)
    multirun: bool = False  #: a job of a sweep (-m)
    group: str | None = None  #: in a sweep, the sweep folder's name (the W&B group)
    public: dict = None  #: `resolved` with secrets and environment values redacted: what every written file gets


def hydra_task(prog: str, bad_input: Iterable[type | str] = ()):
    """Decorate a Hydra command's work, `work(run: StageRun)`, to sit under @hydra.main.

    Start-up marks status.json running at stage "config" and checks the config (every problem at once).
    A failure marks status.json failed with the stage it happened in; a single run then exits with its
    code, while a sweep job returns NaN so the sweep goes on (Hydra's basic sweeper would re-raise a
    job's exception after the batch and skip the sweep summary; Optuna counts NaN as a failed trial). A trial that
    its Optuna sweeper prunes (SWEEPER_SIGNALS) is not a failure: the exception goes to the sweeper.
    `work` returns an ExitCode (a single run exits with it) or a value for the sweeper (a metric).
    """
    _register_help_resolver()

    def decorate(work: Callable[[StageRun], Any]):
        @functools.wraps(work)
        def task(cfg):
            from hydra.core.hydra_config import HydraConfig

            from scopeml import run_files
            from scopeml.config import load, to_plain

            hydra_cfg = HydraConfig.get()
            run_dir = Path(hydra_cfg.runtime.output_dir)
            multirun = hydra_cfg.mode.name == "MULTIRUN"
            run_files.update_status(run_dir, "running", stage="config", started_utc=run_files.now())
            ok = False
            try:
                config = load(cfg)  # every bad key at once, before any data or model work
                group = Path(hydra_cfg.sweep.dir).name if multirun else None
                resolved = to_plain(cfg)
                run = StageRun(prog, run_dir, config, resolved, multirun, group, public=_public(cfg, resolved, config))
                _scrub_hydra_files(run_dir, Path(hydra_cfg.sweep.dir) if multirun else None, resolved, run.public)
                result = work(run)
                ok = True
            except Exception as exc:
                if multirun and _is_one_of(exc, SWEEPER_SIGNALS):
                    ok = True
                    raise
                return _failed_run(prog, run_dir, exc, classify(exc, bad_input), multirun)
            finally:
                close_tracker(failed=not ok)
            if isinstance(result, ExitCode) and not multirun:
                sys.exit(int(result))
            return result

        return task

    return decorate


def _public(cfg, resolved: dict, config) -> dict:
    """The config as written to disk, W&B and BentoML: scopeml.redact's rule, with the config's safe keys."""
    from omegaconf import OmegaConf

    from scopeml.redact import environment_keys, redact

    env = environment_keys(OmegaConf.to_container(cfg, resolve=False))
    return redact(resolved, env, config.redact.safe_keys)


def _scrub_hydra_files(run_dir: Path, sweep_dir: Path | None, resolved: dict, public: dict) -> None:
    """Hydra's own copies of the command line (.hydra/*.yaml, the sweep's multirun.yaml) lose the redacted values."""
    from scopeml.redact import REDACTED, hidden_values

    hidden = sorted((h for h in hidden_values(resolved, public) if len(h) >= 3), key=len, reverse=True)
    if not hidden:
        return
    files = list((run_dir / ".hydra").glob("*.yaml")) + ([sweep_dir / "multirun.yaml"] if sweep_dir else [])
    for path in files:
        if path.is_file():
            text = original = path.read_text()
            for value in hidden:
                text = text.replace(value, REDACTED)
            if text != original:
                path.write_text(text)


def hydra_command(main: Callable) -> Callable:
    """Wrap a @hydra.main function so that Hydra's own errors follow the table too: a config Hydra cannot
    compose (an unknown key without +, a missing group option, a bad override) exits BAD_INPUT, not 1."""

    @functools.wraps(main)
    def command(*args, **kwargs):
        _own_wandb_service()
        if {"--help", "-h", "--hydra-help"} & set(sys.argv[1:]):
            _list_groups_without_copies()
        try:
            return main(*args, **kwargs)
        except SystemExit as exc:
            # Hydra prints the error, then sys.exit(1) while handling it: the error is the exit's context.
            if exc.code == 1 and exc.__context__ is not None:
                raise SystemExit(int(_hydra_error_code(exc.__context__))) from None
            raise
        except Exception as exc:  # HYDRA_FULL_ERROR=1: Hydra re-raised, and the traceback is what was asked for
            traceback.print_exc()
            raise SystemExit(int(_hydra_error_code(exc))) from None

    return command


def _list_groups_without_copies() -> None:
    """Hydra's --help lists the config groups by asking its config loader for each group's options, and the loader
    deep-copies the whole config repository for every question: 177 groups here, 6 of --help's 7 CPU-s. Asked
    as --help asks (no primary config, no overrides), the copy adds no search path, so the answer is read from the
    repository itself: the same listing."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.object_type import ObjectType

    listing = ConfigLoaderImpl.get_group_options
    if getattr(listing, "scopeml_direct", False):
        return

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        if config_name is None and not overrides:
            return self.repository.get_group_options(group_name, results_filter)
        return listing(self, group_name, results_filter, config_name, overrides)

    get_group_options.scopeml_direct = True
    ConfigLoaderImpl.get_group_options = get_group_options


def _own_wandb_service() -> None:
    """A command starts its own W&B service. WANDB_SERVICE inherited from a parent that used W&B (a notebook, a
    test process, a sweep job) names that parent's service, which may be gone or stopped by another of its clients:
    runs started on it were never written (a Ray sweep's summary run, after a job's wandb.teardown)."""
    os.environ.pop("WANDB_SERVICE", None)


def _failed_run(prog: str, run_dir: Path, exc: Exception, code: ExitCode, multirun: bool) -> float:
    from scopeml import run_files

    stage = run_files.read_stage(run_dir)
    run_files.mark_failed(run_dir, stage, exc, exit_code=int(code))
    if multirun:
        log.error("job failed at stage %s: %s", stage, exc, exc_info=exc if code == ExitCode.BUG else None)
        return float("nan")
    report(prog, exc, code, stage, run_dir)
    sys.exit(int(code))


def _hydra_error_code(exc: BaseException) -> ExitCode:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return ExitCode.BAD_INPUT
    return classify(exc) if isinstance(exc, Exception) else ExitCode.BUG


def _register_help_resolver() -> None:
    """`${scopeml_exit_codes:}` in the conf/hydra/help templates: the table is written once, here."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("scopeml_exit_codes"):
        OmegaConf.register_new_resolver("scopeml_exit_codes", exit_code_table)


# --------------------------------------------------------------------------- shared
def classify(exc: Exception, bad_input: Iterable[type | str] = ()) -> ExitCode:
    """BAD_INPUT for a config error or one of `bad_input`, BUG for anything else."""
    return ExitCode.BAD_INPUT if _is_one_of(exc, (*BAD_INPUT_ERRORS, *bad_input)) else ExitCode.BUG


def _is_one_of(exc: Exception, specs: Iterable[type | str]) -> bool:
    """An instance of one of `specs` (classes, or "module:Class" names looked up among the modules imported)."""
    for spec in specs:
        if isinstance(spec, str):
            module, name = spec.split(":")
            spec = getattr(sys.modules.get(module), name, None)
        if spec is not None and isinstance(exc, spec):
            return True
    return False


def report(prog: str, exc: Exception, code: ExitCode, stage: str | None = None, run_dir: Path | None = None) -> None:
    """Tell the user on stderr, as argparse does ("prog: error: ..."): a bad input by its message alone, a bug
    with its traceback."""
    where = f" at stage {stage}" if stage not in (None, "config") else ""
    if code == ExitCode.BUG:
        traceback.print_exception(exc, file=sys.stderr)
        kept = f"; the traceback is also in {run_dir / 'status.json'}" if run_dir is not None else ""
        print(f"{prog}: unexpected error{where} (a bug, exit code {int(code)}){kept}", file=sys.stderr)
    else:
        print(f"{prog}: error{where}: {exc}", file=sys.stderr)


def close_tracker(failed: bool) -> None:
    """Finish a W&B run the work left open (it stopped before its own finish), marked failed if the work failed."""
    wandb = sys.modules.get("wandb")
    if wandb is None or getattr(wandb, "run", None) is None:
        return
    try:
        wandb.finish(exit_code=1 if failed else 0)
    except Exception as exc:  # closing must never hide the error that brought us here
        log.warning("could not close the W&B run: %s", exc)

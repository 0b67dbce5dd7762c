"""One shape for every command: the same kind of failure gives the same exit code everywhere (scopeml.stage)."""

from __future__ import annotations

import json
import sys
import types

import pytest
from conftest import ROOT, read_json, run_cli

from scopeml.stage import MEANING, ExitCode, exit_code_table

HYDRA_COMMANDS = {"scopeml-train": "train", "scopeml-data": "data", "scopeml-monitor": "monitor"}
ARGPARSE_COMMANDS = {
    "scopeml-select": "select",
    "scopeml-package": "package",
    "scopeml-batch": "batch",
    "scopeml-loadtest": "loadtest",
    "scopeml-export": "export",
    "scopeml-simulate": "simulate",
    "scopeml-label": "label",
    "scopeml-lifecycle": "lifecycle",
}
COMMANDS = {**HYDRA_COMMANDS, **ARGPARSE_COMMANDS}


def test_the_exit_code_table():
    assert [(c.name, int(c)) for c in ExitCode] == [("OK", 0), ("CHECK_FAILED", 1), ("BAD_INPUT", 2), ("BUG", 3)]
    assert set(MEANING) == set(ExitCode)


def test_every_console_script_is_a_cli_module_with_main():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {*COMMANDS, "scopeml-config"}
    for name, module in COMMANDS.items():
        assert scripts[name] == f"scopeml.cli.{module}:main"


# --------------------------------------------------------------------------- --help
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_help_shows_the_exit_code_table(command):
    proc = run_cli(f"scopeml.cli.{COMMANDS[command]}", "--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert command in proc.stdout
    table = exit_code_table().splitlines()
    assert table[0] in proc.stdout
    for code in ExitCode:  # each row's first line (argparse commands add their own "here:" lines under a row)
        row = next(line for line in table if line.startswith(f"  {int(code)}  "))
        assert row in proc.stdout, f"{command}: row {int(code)} missing"


def test_help_lists_the_groups_hydra_lists_without_copying_the_repository(monkeypatch):
    from hydra import initialize_config_dir
    from hydra._internal import config_repository
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.object_type import ObjectType

    from scopeml import stage

    monkeypatch.setattr(ConfigLoaderImpl, "get_group_options", ConfigLoaderImpl.get_group_options)  # undone after
    copies = []
    init = config_repository.CachingConfigRepository.__init__
    monkeypatch.setattr(
        config_repository.CachingConfigRepository, "__init__", lambda self, d: copies.append(1) or init(self, d)
    )

    def listing(loader, parent=""):  # what --help asks, group by group (the scopeml groups, not Hydra's own)
        out = {}
        for group in loader.get_group_options(parent, ObjectType.GROUP):
            name = f"{parent}/{group}" if parent else group
            if name != "hydra":
                out[name] = loader.get_group_options(name, ObjectType.CONFIG)
                out.update(listing(loader, name))
        return out

    with initialize_config_dir(config_dir=str(ROOT / "src/scopeml/conf"), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        hydras = listing(loader)
        assert len(copies) > len(hydras)  # Hydra's way: a copy of the repository for each question
        stage._list_groups_without_copies()
        copies.clear()
        ours = listing(loader)
    assert ours == hydras and copies == []
    assert ours["model"] == ["bcresnet", "cnn", "dscnn", "dscnn_ensemble", "dscnn_tta"] and "hparams/optimizer" in ours


# --------------------------------------------------------------------------- 2: bad config, named key
@pytest.mark.parametrize("command", sorted(HYDRA_COMMANDS))
def test_a_bad_config_value_exits_2_and_marks_the_run_failed_at_config(command, tmp_path):
    run = tmp_path / "run"
    module = f"scopeml.cli.{HYDRA_COMMANDS[command]}"
    proc = run_cli(module, f"hydra.run.dir={run}", "hparams.lr=fast", "tracker=none", timeout=120)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    assert proc.stderr.startswith(f"{command}: error:") and "hparams.lr" in proc.stderr
    assert "Traceback" not in proc.stderr
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and status["stage"] == "config" and status["exit_code"] == 2
    assert status["error"].startswith("ConfigError") and "hparams.lr" in status["error"]


@pytest.mark.parametrize("command", sorted(HYDRA_COMMANDS))
def test_a_key_hydra_cannot_compose_exits_2_too(command, tmp_path):
    module = f"scopeml.cli.{HYDRA_COMMANDS[command]}"
    proc = run_cli(module, f"hydra.run.dir={tmp_path / 'run'}", "hparams.lrr=0.1", timeout=120)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stderr
    assert "hparams.lrr" in proc.stderr


# --------------------------------------------------------------------------- 2: bad input, named file
@pytest.mark.parametrize(
    "command, args",
    [
        ("scopeml-select", []),
        ("scopeml-package", []),
        ("scopeml-batch", ["--out", "{tmp}/out"]),
        ("scopeml-label", []),
    ],
)
def test_a_missing_input_file_exits_2_naming_it(command, args, tmp_path):
    missing = tmp_path / "no_such_input"
    env_args = [a.format(tmp=tmp_path) for a in args]
    proc = run_cli(f"scopeml.cli.{COMMANDS[command]}", str(missing), *env_args, timeout=120)
    assert proc.returncode == ExitCode.BAD_INPUT, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"{command}: error:") and str(missing) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_data_recipe_that_cannot_be_built_exits_2_at_stage_data(tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "scopeml.cli.data",
        f"hydra.run.dir={run}",
        "experiment=fsdd_digits",
        f"data.source.root={tmp_path / 'none'}",
        "tracker=none",
        timeout=120,
    )
    assert (
        proc.returncode == ExitCode.BAD_INPUT and "data.source.root" in proc.stderr and "Traceback" not in proc.stderr
    )
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and status["stage"] == "data" and status["error"].startswith("DataError")
    assert (run / "data_app.log").exists()  # Hydra's log keeps its name (hydra.job.name in data_report.yaml)


# --------------------------------------------------------------------------- 1: the work ran, a gate failed
def test_a_failing_gate_exits_1(tmp_path):
    from test_select import write_run

    write_run(tmp_path / "sweep" / "0_big", size_mb=2.4)  # misses model_size_mb <= 1.0
    proc = run_cli("scopeml.cli.select", str(tmp_path / "sweep"), timeout=120)
    assert proc.returncode == ExitCode.CHECK_FAILED, proc.stderr
    assert json.loads((tmp_path / "sweep" / "selection.json").read_text())["selected"] is None


def test_refused_labels_exit_1_and_a_log_that_is_not_there_exits_2(tmp_path):
    from scopeml.serving.log import PredictionLog

    PredictionLog(tmp_path / "log.sqlite").close()
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nnever-logged,yes\n")
    proc = run_cli("scopeml.cli.label", str(labels), "--log", str(tmp_path / "log.sqlite"), timeout=60)
    assert proc.returncode == ExitCode.CHECK_FAILED and "never-logged" in proc.stderr
    proc = run_cli("scopeml.cli.label", str(labels), "--log", str(tmp_path / "elsewhere.sqlite"), timeout=60)
    assert proc.returncode == ExitCode.BAD_INPUT and "elsewhere.sqlite" in proc.stderr


# --------------------------------------------------------------------------- 3: a bug
BUGGY_DATA = """
import sys
from scopeml import data_app
from scopeml.training import artifacts

def report_data(config, run_dir, resolved):
    artifacts.mark(run_dir, "running", stage="checks")
    if config.seed == 0:
        raise RuntimeError("a bug in the checks")
    artifacts.mark(run_dir, "complete", stage="done")
    return True

data_app.report_data = report_data
from scopeml.cli.data import main
sys.argv = ["scopeml-data", *sys.argv[1:]]
main()
"""


def _python(code: str, *args: str):
    import os
    import subprocess

    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )


def test_a_bug_exits_3_with_its_traceback_printed_and_kept(tmp_path):
    run = tmp_path / "run"
    proc = _python(BUGGY_DATA, f"hydra.run.dir={run}", "tracker=none")
    assert proc.returncode == ExitCode.BUG, proc.stderr
    assert "Traceback" in proc.stderr and "a bug in the checks" in proc.stderr
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and status["stage"] == "checks" and status["exit_code"] == 3
    assert "RuntimeError: a bug in the checks" in status["traceback"]


def test_a_failed_sweep_job_returns_nan_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _python(BUGGY_DATA, "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "tracker=none")
    assert proc.returncode == ExitCode.OK, proc.stderr
    failed, done = read_json(sweep / "0" / "status.json"), read_json(sweep / "1" / "status.json")
    assert failed["status"] == "failed" and failed["stage"] == "checks" and failed["exit_code"] == 3
    assert done["status"] == "complete"
    assert "job failed at stage checks" in proc.stdout + proc.stderr


def test_an_argparse_command_bug_exits_3(monkeypatch, capsys, tmp_path):
    from scopeml.cli import package as cli
    from scopeml.serving import package

    def boom(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(package, "package", boom)
    assert cli.main([str(tmp_path)]) == ExitCode.BUG
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'a bug'" in err and "scopeml-package: unexpected error" in err


def test_a_tracker_left_open_is_closed_and_marked_failed(monkeypatch):
    from scopeml import stage

    finished = []
    fake = types.SimpleNamespace(run=object(), finish=lambda exit_code: finished.append(exit_code))
    monkeypatch.setitem(sys.modules, "wandb", fake)

    def fails():
        raise ValueError("bad input")

    assert stage.run("scopeml-test", fails, bad_input=(ValueError,)) == ExitCode.BAD_INPUT
    assert finished == [1]


def test_stage_and_cli_modules_import_nothing_heavy():
    proc = _python(
        "import sys, scopeml.stage, scopeml.run_files\n"
        "import scopeml.cli.select, scopeml.cli.package, scopeml.cli.batch, scopeml.cli.label\n"
        "heavy = {'torch', 'lightning', 'bentoml', 'nannyml', 'wandb', 'hydra'} & set(sys.modules)\n"
        "assert not heavy, heavy"
    )
    assert proc.returncode == 0, proc.stderr

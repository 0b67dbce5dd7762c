"""scopeml as a user installs it: a wheel, not the source checkout. Its commands find the configs
shipped inside the package (pkg://scopeml.conf) from a folder that is not the repo."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT, TINY_DATA

pytestmark = pytest.mark.slow


def run(*args, cwd: Path, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """A throw-away environment holding the wheel; the locked dependencies come from the project's own
    environment through a path entry (not downloaded twice, and not its editable scopeml)."""
    tmp = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        tmp / "dist",
        ROOT,
        cwd=tmp,
    )
    wheel = next((tmp / "dist").glob("scopeml-*.whl"))
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "locked_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    bin_dir = venv / "bin"
    # pip of the project's environment installs into the throw-away one (--python), console scripts included
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        bin_dir / "python",
        "install",
        "-q",
        "--no-deps",
        "--no-index",
        wheel,
        cwd=tmp,
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {"bin": bin_dir, "site": site, "env": env, "work": tmp_path_factory.mktemp("elsewhere")}


def test_the_wheel_ships_the_configs(installed):
    shipped = installed["site"] / "scopeml" / "conf"
    assert (shipped / "config.yaml").is_file() and (shipped / "model" / "cnn.yaml").is_file()
    assert (shipped / "hparams" / "optimizer" / "adamw.yaml").is_file()


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    proc = run(
        installed["bin"] / "python",
        "-c",
        "import scopeml; print(scopeml.__file__)",
        cwd=installed["work"],
        env=installed["env"],
    )
    assert proc.stdout.strip().startswith(str(installed["site"])), proc.stdout


def test_config_check_from_another_folder(installed):
    proc = run(installed["bin"] / "scopeml-config", "check", cwd=installed["work"], env=installed["env"])
    assert "all valid" in proc.stdout + proc.stderr


def test_one_batch_of_training_from_another_folder(installed):
    work = installed["work"]
    run(
        installed["bin"] / "scopeml-train",
        *TINY_DATA,
        "tracker=none",
        "trainer.progress_bar=none",
        "hparams.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        f"hydra.run.dir={work / 'run'}",
        cwd=work,
        env=installed["env"],
    )
    assert (work / "run" / "metrics.json").is_file()
    assert (work / "run" / "config.yaml").read_text().count("scopeml.models.cnn.SmallCnn") == 1

"""scopeml-config: `check` validates the whole config tree at once, `diff` reviews config edits by their effect."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT

CONF = ROOT / "conf"


def config_cli(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scopeml.config_cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )


def copy_conf(dest: Path) -> Path:
    shutil.copytree(CONF, dest / "conf", ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "conf"


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
                   cwd=repo, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def test_check_passes_on_the_real_config_tree():
    started = time.perf_counter()
    proc = config_cli("check", "-v")
    elapsed = time.perf_counter() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"checked \d+ configs: all valid", proc.stdout), proc.stdout
    assert "Traceback" not in proc.stderr
    assert elapsed < 60, f"check took {elapsed:.1f}s"
    # -v lists each config: data=fsdd speaks digits, so it is checked with its companion, found
    # by retrying the scoping options; data=manifest's `???` is left for the command line.
    assert re.search(r"ok\s+data=fsdd\s+\(composed with scoping=digits\)", proc.stderr), proc.stderr
    assert re.search(r"ok\s+data=manifest\s+\(needs data.manifest=\.\.\. at run time\)", proc.stderr), proc.stderr
    for target in ("config", "data_report", "monitor_report", "experiment=fsdd_digits", "data/augment=light", "simulate/noisy"):
        assert re.search(rf"ok\s+{re.escape(target)}\b", proc.stderr), target


def test_check_reports_every_problem_of_every_config_in_one_run(tmp_path):
    conf = copy_conf(tmp_path)
    (conf / "experiment" / "bad_exp.yaml").write_text(
        "# @package _global_\nhparams:\n  lr: fast\n  learning_rat: 0.1\n"  # wrong type + unknown key
    )
    dscnn = conf / "model" / "dscnn.yaml"  # a group option, not the default
    dscnn.write_text(re.sub(r"(?m)^channels: 64$", "channels: many", dscnn.read_text()))
    (conf / "tracker" / "broken.yaml").write_text("kind: none\nproject: [a, b\n")  # YAML syntax error
    (conf / "experiment" / "needs_digits.yaml").write_text("# @package _global_\ndefaults:\n  - override /data: fsdd\n")

    proc = config_cli("check", "--conf", str(conf))
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "experiment=bad_exp: hparams.lr: expected float, got str 'fast'" in out
    assert "experiment=bad_exp: hparams.learning_rat: unknown key" in out
    assert "model=dscnn: model.channels: expected int, got str 'many'" in out
    assert "experiment=dscnn_light_aug: model.channels: expected int" in out  # it selects model=dscnn
    assert re.search(r"broken\.yaml:3:\d+: YAML syntax error", out), out
    # Experiments get no companions: one that speaks digits under the keyword scoping is wrong.
    assert "experiment=needs_digits: data.labels.map.0: maps to 'zero', which is not in scoping.classes" in out
    # Companion-only options still pass, and the untouched configs are not reported.
    assert not re.search(r"(?m)^(data=fsdd|config):", out), out
    assert re.search(r"checked \d+ configs: 5 invalid", out), out


def test_a_broken_default_is_reported_once_under_config(tmp_path):
    conf = copy_conf(tmp_path)
    hparams = conf / "hparams" / "default.yaml"
    hparams.write_text(re.sub(r"(?m)^batch_size: .*$", "batch_size: lots", hparams.read_text()))
    proc = config_cli("check", "--conf", str(conf))
    assert proc.returncode == 1
    assert "config: hparams.batch_size: expected int, got str 'lots'" in proc.stdout
    assert "model=dscnn: hparams.batch_size" not in proc.stdout  # inherited, not repeated
    assert "inherit the problems listed under config" in proc.stdout


def test_diff_reports_semantic_changes_only(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    conf = copy_conf(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "configs")

    hparams = conf / "hparams" / "default.yaml"
    old_lr = json.dumps(float(re.search(r"(?m)^lr: (\S+)", hparams.read_text()).group(1)))  # as the diff prints it
    assert float(old_lr) != 0.0123
    hparams.write_text(re.sub(r"(?m)^lr: .*$", "lr: 0.0123", hparams.read_text()))
    (conf / "experiment" / "long_run.yaml").write_text("# @package _global_\nhparams:\n  max_epochs: 99\n")
    # cosmetic only: keys reversed, a comment, a quoted string that was plain
    cnn = conf / "model" / "cnn.yaml"
    lines = [ln for ln in cnn.read_text().splitlines() if ln and not ln.startswith("#")]
    top = [ln for ln in lines if not ln.startswith(" ")]
    assert "arch: cnn" in top and "features:" in top
    blocks, current = [], []
    for ln in lines:
        if not ln.startswith(" ") and current:
            blocks.append(current)
            current = []
        current.append(ln.replace("arch: cnn", 'arch: "cnn"'))
    blocks.append(current)
    cnn.write_text("# reordered, same meaning\n" + "\n".join("\n".join(b) for b in reversed(blocks)) + "\n")

    proc = config_cli("diff", "HEAD", "--conf", str(conf), cwd=repo)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"config: hparams.lr: {old_lr} -> 0.0123" in out
    assert f"experiment=fsdd_digits: hparams.lr: {old_lr} -> 0.0123" in out  # inherits hparams/default
    assert "experiment=bcresnet: hparams.lr" not in out  # sets its own lr
    assert "experiment=long_run: + new target (only in working tree)" in out
    assert "experiment=long_run:   vs config: hparams.max_epochs:" in out
    assert not re.search(r": [+-]? ?model\.", out), out  # the cosmetic edit of model/cnn.yaml shows nothing
    assert "no semantic changes" not in out

    assert config_cli("diff", "HEAD", "--conf", str(conf), "--exit-code", cwd=repo).returncode == 1

    # A config that stops composing is reported, not a crash.
    bcresnet = conf / "experiment" / "bcresnet.yaml"
    bcresnet.write_text(bcresnet.read_text().replace("override /model: bcresnet", "override /model: nosuch"))
    proc = config_cli("diff", "HEAD", "--conf", str(conf), "--only", "experiment=*", cwd=repo)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert re.search(r"experiment=bcresnet: now fails .*model/nosuch", proc.stdout), proc.stdout
    assert "experiment=fsdd_digits: hparams.lr" in proc.stdout
    assert not re.search(r"(?m)^(config|model=cnn):", proc.stdout)  # --only

    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tune")
    proc = config_cli("diff", "HEAD", "--conf", str(conf), "--exit-code", cwd=repo)
    assert proc.returncode == 0, proc.stdout
    assert "no semantic changes" in proc.stdout

    # Two revisions: the same report as before the commit.
    proc = config_cli("diff", "HEAD~1", "--against", "HEAD", "--conf", str(conf), "--only", "experiment=*", cwd=repo)
    assert f"experiment=fsdd_digits: hparams.lr: {old_lr} -> 0.0123" in proc.stdout
    assert "experiment=long_run: + new target (only in HEAD)" in proc.stdout

    assert config_cli("diff", "no-such-rev", "--conf", str(conf), cwd=repo).returncode == 2


def test_help_has_examples():
    for sub in ("check", "diff"):
        proc = config_cli(sub, "--help")
        assert proc.returncode == 0 and "examples:" in proc.stdout

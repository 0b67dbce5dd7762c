"""scopeml-config: `check` validates the whole config tree at once; `diff` reviews a config edit by its effect:
each changed key once with the configs it reaches, the lifecycle stages it re-runs, the recorded runs it outdates."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from scopeml.config.invalidation import propagate
from scopeml.config.snapshot import KeyChange, followers
from scopeml.config.targets import discover

CONF = ROOT / "conf"
HEAVY = ("torch", "lightning", "bentoml", "nannyml", "wandb")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
# Configs that hold hparams.lr but keep their own when hparams/default.yaml's changes: they set it
# (sgd_cosine, fast, the bcresnet experiment) or pick an option that does (dscnn_light_aug uses fast).
OWN_LR = {"experiment=bcresnet", "experiment=dscnn_light_aug", "hparams=fast", "hparams=sgd_cosine"}


def config_cli(*args: str, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scopeml.cli.config", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )


def copy_conf(dest: Path) -> Path:
    shutil.copytree(CONF, dest / "conf", ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "conf"


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        env={**os.environ, **GIT_ENV},
    )


def edit(path: Path, pattern: str, replacement: str) -> str:
    """Replace one line matching pattern; return what the line held after the colon (the old value as written)."""
    text = path.read_text()
    match = re.search(pattern, text, flags=re.M)
    if match is None and re.fullmatch(
        r"\^\w+: \.\*\$", pattern
    ):  # a key the file leaves to the schema's default: set it
        path.write_text(text.rstrip("\n") + "\n" + replacement + "\n")
        return ""
    assert match, f"{pattern!r} not in {path}"
    path.write_text(text[: match.start()] + replacement + text[match.end() :])
    return match.group(0).partition(":")[2].strip()


@pytest.fixture(scope="module")
def committed_conf(tmp_path_factory) -> Path:
    """A git repository holding a copy of the shipped conf/ tree, committed once for the module."""
    repo = tmp_path_factory.mktemp("config-review") / "repo"
    repo.mkdir()
    copy_conf(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "configs")
    return repo


@pytest.fixture
def repo(committed_conf, tmp_path) -> Path:
    """A fresh copy of that repository for one test to edit."""
    dest = tmp_path / "repo"
    shutil.copytree(committed_conf, dest, symlinks=True)
    return dest


def diff(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return config_cli("diff", "HEAD", "--conf", str(repo / "conf"), "--runs", str(repo / "outputs"), *args, cwd=repo)


def tree_configs(conf: Path) -> list[str]:
    """The composed configs of a tree (standalone files are not among them)."""
    return [t.label for t in discover(conf) if t.kind != "standalone"]


def key_lines(out: str) -> list[str]:
    """The changed-key lines of a text report (`key: old -> new  (N of M configs...)`)."""
    return re.findall(r"(?m)^[+-]? ?[\w.]+: .*  \(\d+ of \d+ configs.*\)$", out)


# --------------------------------------------------------------------------- check
def test_check_passes_on_the_real_config_tree():
    proc = config_cli("check", "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"checked \d+ configs: all valid", proc.stdout), proc.stdout
    assert "Traceback" not in proc.stderr
    # -v lists each config: data=fsdd speaks digits, so it is checked with its companion, found
    # by retrying the scoping options; data=manifest's `???` is left for the command line.
    assert re.search(r"ok\s+data=fsdd\s+\(composed with scoping=digits\)", proc.stderr), proc.stderr
    assert re.search(r"ok\s+data=manifest\s+\(needs data.source.manifest=\.\.\. at run time\)", proc.stderr), (
        proc.stderr
    )
    for target in (
        "config",
        "data_report",
        "monitor_report",
        "experiment=fsdd_digits",
        "data/augment=light",
        "simulate/noisy",
    ):
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
    assert (
        "model=dscnn: model.channels: expected int (as scopeml.models.dscnn.DsCnn declares it), got str 'many'" in out
    )
    assert "experiment=dscnn_light_aug: model.channels: expected int" in out  # it selects model=dscnn
    assert "experiment=fsdd_production: model.channels: expected int" in out  # so does the shipped digit recipe
    assert "model=dscnn_ensemble: model.member.channels: expected int" in out  # its member is dscnn.yaml
    assert "model=dscnn_tta: model.member.channels: expected int" in out  # so is the test-time views' member
    assert re.search(r"broken\.yaml:3:\d+: YAML syntax error", out), out
    # Experiments get no companions: one that speaks digits under the keyword scoping is wrong.
    assert "experiment=needs_digits: data.labels.map.0: maps to 'zero', which is not in scoping.classes" in out
    # Companion-only options still pass, and the untouched configs are not reported.
    assert not re.search(r"(?m)^(data=fsdd|config):", out), out
    assert re.search(r"checked \d+ configs: 8 invalid", out), out


def test_a_broken_default_is_reported_once_under_config(tmp_path):
    conf = copy_conf(tmp_path)
    hparams = conf / "hparams" / "default.yaml"
    edit(hparams, r"^batch_size: .*$", "batch_size: lots")
    proc = config_cli("check", "--conf", str(conf))
    assert proc.returncode == 1
    assert "config: hparams.batch_size: expected int, got str 'lots'" in proc.stdout
    assert "model=dscnn: hparams.batch_size" not in proc.stdout  # inherited, not repeated
    assert "inherit the problems listed under config" in proc.stdout


# --------------------------------------------------------------------------- diff: what changed
def test_one_changed_key_is_one_line_with_the_configs_it_reaches(repo):
    old = json.dumps(float(edit(repo / "conf/hparams/default.yaml", r"^lr: .*$", "lr: 0.0123")))
    proc = diff(repo)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    lines = key_lines(proc.stdout)
    # One line: not one per config that inherits the default, nor one per key that interpolates it.
    assert len(lines) == 1, proc.stdout
    match = re.fullmatch(
        rf"hparams\.lr: {re.escape(old)} -> 0\.0123  \((\d+) of (\d+) configs; not in: (.*); followed by (.*)\)",
        lines[0],
    )
    assert match, lines[0]
    every = tree_configs(repo / "conf")  # each of them holds hparams.lr
    assert int(match.group(2)) == len(every)
    assert set(match.group(3).split(", ")) == OWN_LR
    assert int(match.group(1)) == len(every) - len(OWN_LR)
    # The optimizer's lr and the schedule's max_lr are written ${hparams.lr}: they change with it, on its line.
    assert match.group(4).split(", ") == ["hparams.optimizer.lr", "hparams.scheduler.max_lr"]
    assert re.search(rf"(?m)^1 changed key in {match.group(1)} of \d+ configs", proc.stdout), proc.stdout


def test_a_key_edited_in_its_own_right_keeps_its_own_line(repo):
    conf = repo / "conf"
    old = json.dumps(float(edit(conf / "hparams/default.yaml", r"^lr: .*$", "lr: 0.0123")))
    edit(conf / "hparams/optimizer/adamw.yaml", r"^lr: .*$", "lr: 0.02")  # was ${hparams.lr}
    proc = diff(repo)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    lines = key_lines(proc.stdout)
    (lr,) = [ln for ln in lines if ln.startswith("hparams.lr:")]
    # the schedule still follows it, and so does the optimizer's lr where it is SGD's (hparams/optimizer=sgd)
    assert lr.endswith("; followed by hparams.optimizer.lr, hparams.scheduler.max_lr)"), lr
    # AdamW's lr changed as written: lines of its own, from the default lr and from the lr of configs setting theirs.
    (own,) = [ln for ln in lines if ln.startswith(f"hparams.optimizer.lr: {old} -> 0.02  (")]
    assert "hparams/optimizer=sgd" in own, own  # the configs it skips: sgd still follows hparams.lr
    assert [ln for ln in lines if ln.startswith("hparams.optimizer.lr: 0.005 -> 0.02  (")], proc.stdout
    assert not [ln for ln in lines if ln.startswith("hparams.scheduler.max_lr")], proc.stdout


def test_followers_trace_interpolations_back_to_the_key_edited():
    old = {"a": 1, "b": "${a}", "c": "${b}", "d": "x${a}", "e": 2, "f": "${e}", "m.k": 1, "n": "${m}", "p": 7}
    new = {**old, "a": 4, "f": "${a}", "m.k": 5, "p": 8}
    changes = [
        KeyChange("a", 1, 4),
        KeyChange("b", 1, 4),  # ${a}
        KeyChange("c", 1, 4),  # ${b}, which is ${a}
        KeyChange("d", "x1", "x4"),  # x${a}
        KeyChange("f", 2, 4),  # retargeted from ${e} to ${a}: a change of its own
        KeyChange("m.k", 1, 5),
        KeyChange("n.k", 1, 5),  # ${m}: the mapping, key by key
        KeyChange("p", 7, 8),
    ]
    assert followers(changes, (old, new)) == {"b": "a", "c": "a", "d": "a", "n.k": "m.k"}
    # a source that did not change is no source: the key keeps its own line
    assert followers([KeyChange("b", 1, 4)], (old, new)) == {}


def test_one_key_edit_composes_the_default_config_only(repo):
    """What keeps a one-key review fast: every other config is inferred from `config` (composed on both sides),
    interpolations into an override's region included, or not reached; none is composed."""
    edit(repo / "conf/hparams/default.yaml", r"^lr: .*$", "lr: 0.0123")
    proc = diff(repo, "-v", "--format", "markdown")
    assert proc.returncode == 0, proc.stderr
    listed = re.findall(r"(?m)^  (composed|inferred|not reached) +(\S+)", proc.stderr)
    assert [label for kind, label in listed if kind == "composed"] == ["config"], proc.stderr
    assert len(listed) == len(discover(repo / "conf"))
    assert "scopeml-config diff: 2 compositions" in proc.stdout


def test_diff_reports_semantic_changes_only(repo):
    conf = repo / "conf"
    old_lr = json.dumps(float(edit(conf / "hparams/default.yaml", r"^lr: .*$", "lr: 0.0123")))
    (conf / "experiment" / "long_run.yaml").write_text("# @package _global_\nhparams:\n  max_epochs: 99\n")
    # cosmetic only: keys reversed, a comment, a quoted string that was plain
    cnn = conf / "model" / "cnn.yaml"
    lines = [ln for ln in cnn.read_text().splitlines() if ln and not ln.startswith("#")]
    top = [ln for ln in lines if not ln.startswith(" ")]
    assert "_target_: scopeml.models.cnn.SmallCnn" in top and "dropout: 0.1" in top
    blocks, current = [], []
    for ln in lines:
        if not ln.startswith(" ") and current:
            blocks.append(current)
            current = []
        current.append(ln.replace("_target_: scopeml.models.cnn.SmallCnn", '_target_: "scopeml.models.cnn.SmallCnn"'))
    blocks.append(current)
    cnn.write_text("# reordered, same meaning\n" + "\n".join("\n".join(b) for b in reversed(blocks)) + "\n")

    proc = diff(repo)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr
    assert re.search(rf"(?m)^hparams\.lr: {re.escape(old_lr)} -> 0\.0123  \(\d+ of \d+ configs; not in: ", out), out
    assert "+ experiment=long_run: new config (only in working tree); vs config: hparams.max_epochs: 15 -> 99" in out
    assert not re.search(r"(?m)^[+-]? ?model\.", out), out  # the cosmetic edit of model/cnn.yaml shows nothing
    assert "no semantic changes" not in out
    assert diff(repo, "--exit-code").returncode == 1

    # A config that stops composing is reported, not a crash; --only narrows the configs compared.
    bcresnet = conf / "experiment" / "bcresnet.yaml"
    bcresnet.write_text(bcresnet.read_text().replace("override /model: bcresnet", "override /model: nosuch"))
    proc = diff(repo, "--only", "experiment=*")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    failing = r"(?m)^experiment=bcresnet: now fails \(composes in HEAD, not in working tree: .*model/nosuch"
    assert re.search(failing, proc.stdout), proc.stdout
    # bcresnet no longer composes, so it is not among the configs compared; dscnn_light_aug sets its own lr
    compared = len(list((conf / "experiment").glob("*.yaml"))) - 2  # not long_run (new), not bcresnet (broken)
    holding = rf"\({compared - 1} of {compared} configs"
    followed = r"followed by hparams\.optimizer\.lr, hparams\.scheduler\.max_lr"
    assert re.search(
        rf"(?m)^hparams\.lr: .* {holding}; not in: experiment=dscnn_light_aug; {followed}\)$", proc.stdout
    ), proc.stdout
    assert "model=cnn" not in proc.stdout
    every = diff(repo, "--only", "experiment=*", "--compose-all")  # the reference, as a user asks for it
    strip = lambda text: re.sub(r"\d+\.\d s\)", "s)", text)  # noqa: E731 (the timing differs)
    assert every.returncode == 0 and strip(every.stdout) == strip(proc.stdout)

    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tune")
    proc = diff(repo, "--exit-code")
    assert proc.returncode == 0, proc.stdout
    assert "no semantic changes" in proc.stdout

    # Two revisions: the same report as before the commit.
    proc = config_cli("diff", "HEAD~1", "--against", "HEAD", "--conf", str(conf), "--only", "experiment=*", cwd=repo)
    assert re.search(rf"(?m)^hparams\.lr: {re.escape(old_lr)} -> 0\.0123  {holding}", proc.stdout), proc.stdout
    assert "+ experiment=long_run: new config (only in HEAD)" in proc.stdout

    assert config_cli("diff", "no-such-rev", "--conf", str(conf), cwd=repo).returncode == 2


@pytest.mark.parametrize(
    "path, pattern, replacement",
    [
        (
            "hparams/default.yaml",
            r"^lr: .*$",
            "lr: 0.0123",
        ),  # a shared default; options setting their own lr recomposed
        (
            "deploy/realtime.yaml",
            r"^model_name: .*$",
            "model_name: kws2",
        ),  # reaches monitor.model through an interpolation
        ("hparams/optimizer/sgd.yaml", r"^momentum: .*$", "momentum: 0.8"),  # reached through `override optimizer`
        ("scoping/keywords.yaml", r"^classes: .*$", "classes: [yes, no, up]"),  # read by the data recipe's words
    ],
)
def test_composing_only_what_an_edit_reaches_gives_the_same_report(repo, path, pattern, replacement, every_at_head):
    # One edit per way a change travels (an edit of config.yaml itself is left out: it reaches every config, so the
    # quick path composes them all anyway). The reference composes every config on both sides, here in this process
    # with HEAD's side composed once for the four cases (the whole tree takes about 25 CPU-s a side).
    from scopeml.cli.config import build_review
    from scopeml.config.review_report import as_text

    edit(repo / "conf" / path, pattern, replacement)
    quick = diff(repo)
    every = build_review(repo / "conf", "HEAD", runs=repo / "outputs", compose_all=True, old_compositions=every_at_head)
    assert quick.returncode == 0, quick.stderr
    configs = len(tree_configs(repo / "conf"))  # every one composed on the edited side, HEAD's came composed
    assert configs <= every.composes < 2 * configs  # (the rest: lifecycle stage configs, on both sides)
    strip = lambda text: re.sub(r"\d+\.\d s\)", "s)", text)  # noqa: E731 (the timing differs)
    assert strip(quick.stdout) == strip(as_text(every) + "\n")
    assert "changed key" in quick.stdout


@pytest.fixture(scope="module")
def every_at_head(committed_conf) -> dict:
    """Every config of the committed tree composed once, as `diff --compose-all` composes its old side."""
    from scopeml.config.diff import DiffEngine, Side

    conf = committed_conf / "conf"
    engine = DiffEngine(Side("HEAD", conf), Side("HEAD", conf), compose_all=True)
    engine.compose_side(0, [t for t in engine.sides[0].targets.values() if t.kind != "standalone"])
    return engine.compositions(0)


def test_markdown_is_a_pull_request_comment_and_imports_no_model_code(repo):
    old = edit(repo / "conf/hparams/default.yaml", r"^lr: .*$", "lr: 0.0123")
    args = ["diff", "HEAD", "--conf", "conf", "--format", "markdown"]
    script = (
        f"import sys; from scopeml.cli.config import main; main({args!r}); "
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr  # torch & co. would cost seconds before the first line
    body = proc.stdout
    assert body.splitlines()[0] == "<!-- scopeml-config-review -->"  # how CI finds its comment again
    assert "| key | old | new | configs | exceptions | followed by |" in body
    n = len(tree_configs(repo / "conf"))
    row = re.search(
        r"(?m)^\| `hparams\.lr` \| `(.*?)` \| `0\.0123` \| (\d+) of (\d+) \| not in: (.*?) \| (.*) \|$", body
    )
    assert row, body
    assert float(row.group(1)) == float(old) and (int(row.group(2)), int(row.group(3))) == (n - len(OWN_LR), n)
    assert set(re.findall(r"`([^`]+)`", row.group(4))) == OWN_LR
    assert re.findall(r"`([^`]+)`", row.group(5)) == ["hparams.optimizer.lr", "hparams.scheduler.max_lr"]
    assert len(re.findall(r"(?m)^\| `", body.split("Lifecycle stages")[0])) == 1, body  # one key, one row
    assert "| lifecycle | first stage | re-runs | because |" in body


# --------------------------------------------------------------------------- diff: what it invalidates
def lifecycle_lines(out: str) -> dict[str, str]:
    section = out.split("lifecycle stages that would re-run:\n")[1]
    return dict(re.findall(r"(?m)^  (\w+): (.*)$", section))


def test_lifecycle_stages_an_edit_would_re_run(repo):
    conf = repo / "conf"
    # The lifecycle trains with hparams=fast, which sets its own lr: the default's lr reaches no stage.
    edit(conf / "hparams/default.yaml", r"^lr: .*$", "lr: 0.0123")
    stages = lifecycle_lines(diff(repo).stdout)
    assert stages == {"default": "nothing re-runs", "quick": "nothing re-runs"}

    # fast's lr reaches the config the data and sweep stages are keyed on: everything re-runs.
    edit(conf / "hparams/fast.yaml", r"^lr: .*$", "lr: 0.006")
    stages = lifecycle_lines(diff(repo).stdout)
    for name in ("default", "quick"):
        assert stages[name].startswith("re-runs from data (all 10 stages): its training config changes at hparams.lr")
    git(repo, "checkout", "-q", "--", ".")

    # quick sets hparams.batch_size on its training command line: the default batch size reaches `default` only.
    edit(conf / "hparams/default.yaml", r"^batch_size: .*$", "batch_size: 48")
    stages = lifecycle_lines(diff(repo).stdout)
    assert stages["default"].startswith("re-runs from data (all 10 stages): its training config changes at hparams.")
    assert stages["quick"] == "nothing re-runs"
    git(repo, "checkout", "-q", "--", ".")

    # The monitoring overrides of one lifecycle reach its monitor stage only (the service starts for it).
    edit(conf / "lifecycle/default.yaml", r"monitor\.chunk_size=150", "monitor.chunk_size=100")
    stages = lifecycle_lines(diff(repo).stdout)
    assert stages["default"] == (
        "re-runs from monitor (serve, monitor, report): its monitoring config changes at monitor.chunk_size: 150 -> 100"
    )
    assert stages["quick"] == "nothing re-runs"
    git(repo, "checkout", "-q", "--", ".")

    # monitor/default.yaml's chunk_size is pinned by both lifecycles' monitor overrides, so the monitor
    # stage's config keeps its value; but the data stage is keyed on the whole training config, which
    # holds monitor.* too (lifecycle/run.py), so the lifecycle re-runs from data all the same.
    edit(conf / "monitor/default.yaml", r"^chunk_size: .*$", "chunk_size: 100")
    stages = lifecycle_lines(diff(repo).stdout)
    assert stages["default"].startswith(
        "re-runs from data (all 10 stages): its training config changes at monitor.chunk_size"
    )


def test_downstream_stages_follow_the_stage_outputs_they_read():
    assert propagate({"monitor"}) == ["serve", "monitor", "report"]
    assert propagate({"loadtest"}) == ["serve", "loadtest", "report"]
    assert propagate({"simulate"}) == ["serve", "simulate", "label", "monitor", "report"]
    assert propagate({"sweep"}) == [
        "sweep",
        "select",
        "package",
        "serve",
        "loadtest",
        "simulate",
        "label",
        "monitor",
        "report",
    ]
    assert propagate(set()) == []


def test_recorded_runs_holding_the_old_value_are_listed(repo):
    old = float(edit(repo / "conf/hparams/default.yaml", r"^lr: .*$", "lr: 0.0123"))
    runs = repo / "outputs"

    def run(folder: str, lr: float, hydra_only: bool = False, overrides: tuple = ()) -> None:
        d = runs / folder
        config = d / ".hydra" / "config.yaml" if hydra_only else d / "config.yaml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(f"seed: 0\nhparams:\n  lr: {lr}\n  batch_size: 64\n")
        if overrides:
            (d / ".hydra").mkdir(exist_ok=True)
            (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        (d / "checkpoints").mkdir(exist_ok=True)  # never read

    run("train/2026-01-01_10-00-00", old)  # made with the default's old lr: listed
    run("train/2026-01-02_10-00-00", 0.02)  # its own lr: not listed
    run("sweeps/2026-01-03_10-00-00/0", old, overrides=(f"hparams.lr={old}",))  # lr set on its command line
    run("lifecycle/02_sweep/1", old, hydra_only=True)  # stopped before writing config.yaml: Hydra's copy is read
    proc = diff(repo)
    assert proc.returncode == 0, proc.stderr
    section = proc.stdout.split("recorded runs made with the old values: ")[1].splitlines()
    assert section[0].startswith("2 of 4 in "), proc.stdout
    assert [ln.split()[0].rpartition("outputs/")[2] for ln in section[1:3]] == [
        "lifecycle/02_sweep/1",
        "train/2026-01-01_10-00-00",
    ]
    assert all(ln.endswith("(hparams.lr)") for ln in section[1:3])
    assert not section[3].startswith("  "), "only the two runs with the old value are listed"


# --------------------------------------------------------------------------- CI
def test_ci_review_script_writes_the_pull_request_comment_locally(repo):
    conf = repo / "conf"
    old = edit(conf / "hparams/default.yaml", r"^lr: .*$", "lr: 0.0123")
    git(repo, "commit", "-q", "-am", "tune lr")  # the pull request: one commit on top of its base
    body = repo / "comment.md"
    proc = subprocess.run(
        ["bash", str(ROOT / ".github/scripts/config_review.sh"), "HEAD~1", "--conf", str(conf), "--out", str(body)],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SCOPEML_CONFIG": f"{sys.executable} -m scopeml.cli.config", "GITHUB_STEP_SUMMARY": ""},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"checked \d+ configs: all valid", proc.stdout)
    text = body.read_text()
    assert text.startswith("<!-- scopeml-config-review -->\n### Config review: `HEAD~1` → `working tree`")
    n = len(tree_configs(conf))
    assert re.search(
        rf"(?m)^\| `hparams\.lr` \| `{re.escape(str(float(old)))}` \| `0\.0123` \| "
        rf"{n - len(OWN_LR)} of {n} \| not in: ",
        text,
    ), text
    assert "scopeml-config check: checked" in text


def test_help_has_examples():
    for sub in ("check", "diff"):
        proc = config_cli(sub, "--help")
        assert proc.returncode == 0 and "examples:" in proc.stdout

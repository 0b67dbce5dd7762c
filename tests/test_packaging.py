"""Project files that other tools read are valid for those tools."""

from __future__ import annotations

import tomllib
from conftest import ROOT


def test_bentofile_parses_with_bentoml():
    from bentoml._internal.bento.build_config import BentoBuildConfig

    with open(ROOT / "bentofile.yaml") as f:
        cfg = BentoBuildConfig.from_yaml(f)
    assert cfg.service == "scopeml.serving.service:KeywordSpotting"
    assert cfg.python.requirements_txt == "./constraints.txt"


def test_pins_that_matter_are_locked():
    pins = dict(
        line.split("==")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["torch"] == "2.14.1" and pins["torchaudio"] == "2.11.0"
    assert pins["wandb"].startswith("0.29")
    assert "statsmodels" in pins and "nannyml" in pins and "espeakng-loader" in pins
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip() for d in declared}
    assert names <= {k.lower() for k in pins} | {k for k in pins}, names - set(pins)


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme.split("\n## ")[0]  # among the opening commands
    assert "exec make test" in ci

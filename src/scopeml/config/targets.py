"""Every config a user can ask for from one conf/ folder: what `scopeml-config check` and `diff` look at.

The default config, each primary config (conf/*.yaml), each option of each group
(GROUP=OPTION, nested groups such as data/augment=light included), each experiment, and each
standalone file (conf/simulate/*.yaml scenarios, conf/lifecycle/*.yaml settings).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

# Folders of conf/ holding standalone YAML files that are not Hydra groups of `config`, with the
# function (module:name, given the file's path) that validates one file. Add new ones here.
STANDALONE = {
    "simulate": "scopeml.monitoring.simulate:load_scenario",  # scopeml-simulate scenarios
    "lifecycle": "scopeml.lifecycle.config:load_lifecycle",  # scopeml-lifecycle settings
}
NOT_GROUPS = ("hydra", *STANDALONE)  # top folders of conf/ that are not option groups for `config`


@dataclass
class Target:
    """One config to compose: a primary config with optional overrides, or a standalone file."""

    label: str  # how reports name it: "config", "data_report", "experiment=fsdd_digits", "simulate/noisy"
    kind: str  # "primary" | "option" | "standalone"
    config_name: str = "config"
    overrides: list[str] = field(default_factory=list)
    group: str = ""
    path: Path | None = None  # standalone file

    @property
    def order(self) -> tuple:
        rank = {"primary": 0 if self.label == "config" else 1, "option": 2, "standalone": 3}[self.kind]
        return (rank, self.group != "experiment", self.label)


def group_options(conf: Path) -> dict[str, list[str]]:
    """{group: [option, ...]} for every YAML file below conf/ except hydra/ and the standalone folders."""
    groups: dict[str, list[str]] = {}
    for path in sorted(conf.rglob("*.yaml")):
        group = path.parent.relative_to(conf).as_posix()
        if group == "." or group.split("/")[0] in NOT_GROUPS:
            continue
        groups.setdefault(group, []).append(path.stem)
    return groups


def discover(conf: Path) -> list[Target]:
    """Every config `check` and `diff` look at, default config first."""
    targets = [Target("config", "primary")]
    targets += [
        Target(p.stem, "primary", config_name=p.stem) for p in sorted(conf.glob("*.yaml")) if p.stem != "config"
    ]
    for group, options in group_options(conf).items():
        targets += [Target(f"{group}={o}", "option", overrides=[f"{group}={o}"], group=group) for o in options]
    for folder in STANDALONE:
        targets += [
            Target(f"{folder}/{p.stem}", "standalone", group=folder, path=p)
            for p in sorted((conf / folder).glob("*.yaml"))
        ]
    if not (conf / "config.yaml").exists():  # no default config: only the other primaries and standalone files
        targets = [t for t in targets if t.kind == "standalone" or (t.kind == "primary" and t.label != "config")]
    return sorted(targets, key=lambda t: t.order)


def wanted(label: str, only: list[str] | None) -> bool:
    """Whether a target's label matches one of the --only globs (all do without --only)."""
    return not only or any(fnmatch.fnmatchcase(label, pattern) for pattern in only)

"""The lifecycle's own settings (conf/lifecycle/<name>.yaml); the stages reuse every other config group."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scopeml.config._validate import parse
from scopeml.config.paths import conf_dir

CONF = conf_dir() / "lifecycle"


@dataclass
class LoadtestSettings:
    concurrency: list[int] = field(default_factory=lambda: [1, 8, 32])
    duration: float = 5.0


@dataclass
class SimulateSettings:
    scenarios: list[str] = field(default_factory=lambda: ["in_distribution", "younger", "noisy"])
    clips: int = 300
    labelled: list[str] = field(default_factory=list)


@dataclass
class LifecycleConfig:
    out: str = "outputs/lifecycle"
    train: list[str] = field(default_factory=list)
    sweep: list[str] = field(default_factory=list)
    loadtest: LoadtestSettings = field(default_factory=LoadtestSettings)
    simulate: SimulateSettings = field(default_factory=SimulateSettings)
    monitor: list[str] = field(default_factory=list)

    def check(self):
        problems = []
        if not self.sweep:
            problems.append(("sweep", "needs at least one sweep override (e.g. model=cnn,dscnn,bcresnet)"))
        unknown = sorted(set(self.simulate.labelled) - set(self.simulate.scenarios))
        if unknown:
            problems.append(("simulate.labelled", f"{unknown} are not among simulate.scenarios"))
        return problems


def load_lifecycle(
    name_or_path: str, overrides: dict | None = None, config_dir: str | Path | None = None
) -> LifecycleConfig:
    from omegaconf import OmegaConf

    from scopeml.config import ConfigError

    folders = [Path(config_dir).expanduser() / "lifecycle"] if config_dir else []
    folders.append(CONF)  # a user's lifecycle/<name>.yaml wins over the shipped one
    if name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path)
    else:
        path = next(
            (f / f"{name_or_path}.yaml" for f in folders if (f / f"{name_or_path}.yaml").exists()),
            folders[-1] / f"{name_or_path}.yaml",
        )
    if not path.exists():
        known = sorted({p.stem for f in folders for p in f.glob("*.yaml")})
        raise ConfigError([f"lifecycle {name_or_path!r}: no {path} (known: {known})"])
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    data.update(overrides or {})
    return parse(LifecycleConfig, data, "lifecycle")

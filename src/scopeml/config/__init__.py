"""Config schemas and the check that turns a composed Hydra config into typed objects."""

from __future__ import annotations

from typing import Any

from scopeml.config._validate import ConfigError, parse
from scopeml.config.schema import (
    Config,
    DataConfig,
    HParamsConfig,
    MixtureData,
    ScopingConfig,
    SourceData,
    TrackerConfig,
    TrainerConfig,
)

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "HParamsConfig",
    "MixtureData",
    "ScopingConfig",
    "SourceData",
    "TrackerConfig",
    "TrainerConfig",
    "load",
    "to_plain",
]


def to_plain(cfg: Any) -> dict:
    """Resolve interpolations into a plain dict, turning a broken `${...}` into a ConfigError naming its key."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(cfg, DictConfig):
        return cfg
    problems: list[str] = []
    plain = OmegaConf.to_container(cfg, resolve=False)

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, f"{path}[{i}]") for i, v in enumerate(node)]
        if isinstance(node, str) and "${" in node:
            try:
                return OmegaConf.select(cfg, path, throw_on_missing=True, throw_on_resolution_failure=True)
            except OmegaConfBaseException as exc:
                problems.append(f"{path}: cannot resolve {node!r}: {str(exc).splitlines()[0]}")
                return None
        return node

    plain = walk(plain, "")
    if problems:
        raise ConfigError(problems)

    def to_builtin(node: Any) -> Any:  # OmegaConf.select returns containers for list/dict interpolations
        if isinstance(node, (DictConfig,)) or type(node).__name__ == "ListConfig":
            return OmegaConf.to_container(node, resolve=True)
        if isinstance(node, dict):
            return {k: to_builtin(v) for k, v in node.items()}
        if isinstance(node, list):
            return [to_builtin(v) for v in node]
        return node

    return to_builtin(plain)


def load(cfg: Any) -> Config:
    """Check the composed config (a DictConfig or plain dict) against the schema.

    Raise ConfigError listing every problem.
    """
    plain = to_plain(cfg)
    plain = {k: v for k, v in plain.items() if k != "hydra"}
    return parse(Config, plain)

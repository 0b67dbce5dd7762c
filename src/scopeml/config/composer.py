"""Compose many configs from one conf/ folder with one Hydra initialization, errors as one line each."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path


def display(path: str | Path) -> str:
    """A path as the user would type it: relative to the current folder when below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def yaml_detail(exc) -> str:
    """The parser's complaint, plus where the construct it was parsing started."""
    detail = exc.problem or exc.context or str(exc)
    if exc.problem and exc.context and exc.context_mark is not None:
        detail += f" ({exc.context} started at line {exc.context_mark.line + 1})"
    return detail


def describe_error(exc: BaseException) -> str:
    """One line for a composition or load error, YAML errors with their file and line."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"{display(mark.name)} line {mark.line + 1}" if mark else "a YAML file"
        return f"YAML syntax error in {where}: {yaml_detail(exc)}"
    text = str(exc).split("\nConfig search path:")[0]
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause).splitlines() and str(cause).splitlines()[0] not in text:
        text += f" ({str(cause).splitlines()[0]})"
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return text or type(exc).__name__


@dataclass
class Composed:
    main: dict | None = None  # the resolved config without its hydra node
    hydra: dict | None = None  # the hydra node, unresolved (it holds ${now:...} and the like)
    error: str | None = None  # why it could not be composed or resolved
    raw: dict | None = None  # the config without its hydra node, interpolations left as written
    choices: dict = field(default_factory=dict)  # hydra.runtime.choices: the option picked for each group


class Composer:
    """Compose many configs from one conf/ folder (one Hydra initialization for all)."""

    def __init__(self, conf: Path):
        self.conf = conf.resolve()
        self._ctx = None

    def __enter__(self) -> Composer:
        from hydra import initialize_config_dir

        self._ctx = initialize_config_dir(config_dir=str(self.conf), version_base="1.3")
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    def compose(self, config_name: str, overrides: list[str]) -> Composed:
        from hydra import compose
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf, open_dict

        from scopeml.config import ConfigError, to_plain

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
                except Exception as exc:  # a group the defaults list does not name is appended with +
                    if "Could not override" not in str(exc):
                        raise
                    plus = [o if o.startswith(("+", "~")) else "+" + o for o in overrides]
                    cfg = compose(config_name=config_name, overrides=plus, return_hydra_config=True)
        except Exception as exc:
            return Composed(error=f"cannot compose: {describe_error(exc)}")
        hydra, choices = None, {}
        if "hydra" in cfg:
            HydraConfig.instance().set_config(cfg)  # so ${hydra:...} in the user's config resolves as in a run
            hydra = OmegaConf.to_container(cfg.hydra, resolve=False)
            choices = dict(hydra.get("runtime", {}).get("choices") or {})
            with open_dict(cfg):
                del cfg["hydra"]
        raw = OmegaConf.to_container(cfg, resolve=False)
        try:
            return Composed(main=to_plain(cfg), hydra=hydra, raw=raw, choices=choices)
        except ConfigError as exc:
            return Composed(error="; ".join(exc.problems), hydra=hydra)
        except Exception as exc:
            return Composed(error=f"cannot resolve: {describe_error(exc)}", hydra=hydra)


def load_standalone_plain(path: Path) -> Composed:
    """A standalone file (a scenario, lifecycle settings) as plain values, without its own validation."""
    from omegaconf import OmegaConf

    from scopeml.config import ConfigError, to_plain

    try:
        return Composed(main=to_plain(OmegaConf.load(path)))
    except ConfigError as exc:
        return Composed(error="; ".join(exc.problems))
    except Exception as exc:
        return Composed(error=f"cannot load: {describe_error(exc)}")

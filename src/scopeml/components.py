"""Build `_target_` components, passing in the runtime objects scopeml owns.

The config check (config/components.py) already read each target's signature from source;
here the target is imported for real and built. Whatever goes wrong (an import error inside
the user's module, a constructor that rejects its arguments) becomes a ConfigError naming
the config key, raised before any data is read or any training step runs.
"""

from __future__ import annotations

import inspect
from typing import Any

from scopeml.config import ConfigError


def build(cfg: dict, key: str, complete: bool = True, **runtime: Any) -> Any:
    """Instantiate `cfg` (Hydra's `_target_`/`_partial_`/`_args_`); pass each runtime value its target takes.

    A `_partial_` component is completed with the runtime values (the optimizer gets the parameters),
    unless `complete` is false: then the partial itself is returned (a feature called once per clip).
    Runtime values the config sets itself (a scheduler's T_max, say) are left as the config says.
    """
    from hydra.utils import instantiate

    target = resolve(cfg, key)
    passed = {k: v for k, v in runtime.items() if k not in cfg and _accepts(target, k)}
    try:
        if cfg.get("_partial_"):
            partial = instantiate(cfg, _convert_="all")
            return partial(**passed) if complete else partial
        return instantiate(cfg, _convert_="all", **passed)
    except Exception as exc:  # the user's constructor: any exception is a config problem worth naming
        cause = exc.__cause__ or exc
        raise ConfigError(
            [f"{key}: building {cfg['_target_']} failed: {type(cause).__name__}: {_first_line(cause)}"]
        ) from exc


def resolve(cfg: dict, key: str) -> Any:
    """The object `cfg['_target_']` names, imported for real; a ConfigError naming `key` when it does not import."""
    import importlib

    path = str(cfg.get("_target_", ""))
    module_name, _, attr = path.rpartition(".")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as exc:  # the module is missing, or something it imports is
        raise ConfigError(
            [
                f"{key}._target_: cannot import {path!r}: importing module {module_name!r} failed: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ]
        ) from exc
    except Exception as exc:  # the module raised while being imported
        raise ConfigError(
            [f"{key}._target_: importing module {module_name!r} raised {type(exc).__name__}: {_first_line(exc)}"]
        ) from exc
    if not hasattr(obj, attr):
        raise ConfigError([f"{key}._target_: module {module_name!r} has no attribute {attr!r}"])
    return getattr(obj, attr)


def target_name(obj: Any) -> str:
    """The import path of an object's class, as a `_target_` would name it."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _accepts(target: Any, name: str) -> bool:
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

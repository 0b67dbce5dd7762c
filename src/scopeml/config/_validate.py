"""Check a composed config against the dataclass schemas, reporting every problem at once.

Hydra stops at the first bad merge; a user fixing a config wants the whole list.
So the composed config stays untyped in Hydra and is checked here, field by field,
before any data is read or model built. The same walk then builds the typed
dataclass tree that the rest of the code receives.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

MISSING_VALUE = "???"  # OmegaConf's marker for a required value nobody set


class ConfigError(ValueError):
    """A config that does not fit its schema. `problems` holds one line per bad key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the config:\n{lines}")


def variants(discriminator: str):
    """Mark a base schema whose concrete schema is chosen by the value of `discriminator`.

    e.g. the data group's schema depends on `data.recipe`; register concrete
    schemas with `@Base.register("name")`.
    """

    def wrap(cls):
        cls.__discriminator__ = discriminator
        cls.__variants__ = {}

        def register(name: str):
            def add(sub):
                cls.__variants__[name] = sub
                return sub

            return add

        cls.register = staticmethod(register)
        return cls

    return wrap


def parse(schema: type, data: Any, path: str = "") -> Any:
    """Return a `schema` instance built from plain `data`, or raise ConfigError listing every problem."""
    problems: list[str] = []
    value = _convert(schema, data, path, problems)
    if problems:
        raise ConfigError(problems)
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        (inner, *_) = get_args(tp) or (Any,)
        return f"list of {_type_name(inner)}"
    if origin is dict:
        return f"mapping of {_type_name(get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    if isinstance(value, str) and value == MISSING_VALUE:
        problems.append(f"{path}: required value is missing (set it with {path}=...)")
        return None
    if tp is Any:
        return value
    if (
        isinstance(tp, type)
        and hasattr(tp, "role")
        and callable(getattr(tp, "check", None))
        and not dataclasses.is_dataclass(tp)
    ):
        return tp.check(value, path, problems)  # a `_target_` component: checked against its constructor
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return _convert_union(tp, value, path, problems)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            problems.append(f"{path}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
            return value
        (inner, *_) = get_args(tp) or (Any,)
        return [_convert(inner, v, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
            return value
        _, inner = get_args(tp)
        return {k: _convert(inner, v, _join(path, k), problems) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _convert_dataclass(tp, value, path, problems)
    return _convert_scalar(tp, value, path, problems)


def _convert_union(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    options = get_args(tp)
    if value is None:
        if type(None) in options:
            return None
        problems.append(f"{path}: expected {_type_name(tp)}, got null")
        return None
    for option in options:
        if option is type(None):
            continue
        trial: list[str] = []
        converted = _convert(option, value, path, trial)
        if not trial:
            return converted
    non_null = [o for o in options if o is not type(None)]
    if len(non_null) == 1:  # Optional[X]: X's own message is the useful one
        return _convert(non_null[0], value, path, problems)
    problems.append(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
    return value


def _convert_scalar(tp: Any, value: Any, path: str, problems: list[str]) -> Any:
    # bool is an int in Python; a config saying `epochs: true` is a mistake, not 1.
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    problems.append(f"{path}: expected {_type_name(tp)}, got {_describe(value)}")
    return value


def _convert_dataclass(tp: type, value: Any, path: str, problems: list[str]) -> Any:
    if not isinstance(value, dict):
        problems.append(f"{path}: expected a mapping, got {_describe(value)}")
        return None
    disc = getattr(tp, "__discriminator__", None)
    if disc is not None and "__variants__" in tp.__dict__:
        choice = value.get(disc)
        known = tp.__variants__
        if choice not in known:
            problems.append(
                f"{_join(path, disc)}: expected one of {', '.join(sorted(known))}, got {choice!r}"
                + _suggest(choice, known)
            )
            return None
        tp = known[choice]

    before = len(problems)
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    hints = typing.get_type_hints(tp)
    for key in value:
        if key not in fields:
            problems.append(f"{_join(path, key)}: unknown key{_suggest(key, fields)}")
    kwargs = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], key_path, problems)
        elif f.default == MISSING_VALUE or (
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ):
            problems.append(f"{key_path}: required value is missing (set it with {key_path}=...)")
    if len(problems) > before:
        return None
    obj = tp(**kwargs)
    # Cross-field rules run on every well-typed node, so they are reported with the type errors.
    check = getattr(obj, "check", None)
    if callable(check):
        problems.extend(f"{_join(path, key)}: {msg}" if key else f"{path or '<root>'}: {msg}" for key, msg in check())
    return obj


def _suggest(word: Any, options) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

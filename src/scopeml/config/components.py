"""Components named by import path (`_target_`), checked against their own constructor.

A component config is Hydra's convention: `_target_` (an import path), optional `_partial_`
(build a partial that scopeml completes with runtime objects) and `_args_` (positional
arguments), and keyword arguments. The schema of a component is its constructor: keys are
checked against its signature, all problems at once, before anything is imported for real
(see signatures.py). Each role says which arguments scopeml passes in at build time, so a
YAML file never holds them (the class count comes from scoping.classes, not from a model file).
"""

from __future__ import annotations

import ast
import difflib
from typing import Any, ClassVar

HYDRA_KEYS = ("_target_", "_partial_", "_args_", "_recursive_", "_convert_")


class Component:
    """Schema marker: a `_target_` mapping for one role. The checked value stays a plain dict."""

    role: ClassVar[str] = "component"
    #: passed by scopeml when it builds the component; a config may not set them
    runtime: ClassVar[dict[str, str]] = {}
    #: passed by scopeml only when the constructor takes them and the config leaves them out
    filled: ClassVar[dict[str, str]] = {}
    #: scopeml completes a partial (optimizer, scheduler): the config must say `_partial_: true`
    partial: ClassVar[bool] = False

    @classmethod
    def check(cls, value: Any, path: str, problems: list[str]) -> Any:
        if isinstance(value, str) and value.startswith("<") and value.endswith(">"):
            return value  # a placeholder for a value left to the command line (scopeml-config check)
        if not isinstance(value, dict) or not isinstance(value.get("_target_"), str):
            problems.append(
                f"{path}: expected a mapping with `_target_: package.module.Name` ({cls.role}), got {_short(value)}"
            )
            return value
        target = value["_target_"]
        if cls.partial and value.get("_partial_") is not True:
            problems.append(
                f"{path}._partial_: must be true: scopeml passes {', '.join(cls.runtime) or 'runtime objects'} "
                f"when it builds the {cls.role}"
            )
        for key in ("_partial_", "_recursive_"):
            if key in value and not isinstance(value[key], bool):
                problems.append(f"{path}.{key}: expected bool, got {_short(value[key])}")
        args = value.get("_args_", [])
        if not isinstance(args, list):
            problems.append(f"{path}._args_: expected a list of positional arguments, got {_short(args)}")
            args = []
        kwargs = {k: v for k, v in value.items() if k not in HYDRA_KEYS}
        for key in kwargs.keys() & cls.runtime.keys():
            problems.append(
                f"{path}.{key}: set by scopeml at build time ({cls.runtime[key]}); remove it from the config"
            )
        kwargs = {k: v for k, v in kwargs.items() if k not in cls.runtime}
        _check_signature(cls, target, args, kwargs, value.get("_partial_") is True, path, problems)
        return value


def _check_signature(cls, target: str, args: list, kwargs: dict, partial: bool, path: str, problems: list[str]) -> None:
    from scopeml.config.signatures import TargetNotFound, read_signature

    try:
        sig = read_signature(target)
    except TargetNotFound as exc:
        hint = " (is the package installed, or its folder on PYTHONPATH?)" if "no module named" in str(exc) else ""
        problems.append(f"{path}._target_: {exc}{hint}")
        return
    if sig is None:
        return  # not readable from source: checked when it is built, before any data is read
    names = sig.names
    runtime = {n for n in cls.runtime if n in names or sig.accepts_any_keyword}
    for key in kwargs:
        if key not in names and not sig.accepts_any_keyword:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{path}.{key}: unknown keyword for {sig.describe()}{hint}")
    required_runtime = [n for n in cls.runtime if cls.runtime[n].startswith("required")]
    for name in required_runtime:
        if name not in names and not sig.accepts_any_keyword:
            problems.append(f"{path}._target_: {target} must take a `{name}` argument ({cls.runtime[name]})")
    positional = [p for p in sig.params if p.kind == "positional"]
    filled_by_args = {p.name for p in positional[: len(args)]}
    if not partial:
        for p in sig.params:
            if (
                p.required
                and p.kind in ("positional", "keyword")
                and p.name not in kwargs
                and p.name not in filled_by_args
                and p.name not in runtime
                and p.name not in cls.filled
            ):
                problems.append(
                    f"{path}.{p.name}: required argument of {target} is missing (set it with {path}.{p.name}=...)"
                )
    annotations = {p.name: p.annotation for p in sig.params if p.annotation}
    for key, val in kwargs.items():
        if _names_a_network(annotations.get(key)):  # e.g. an ensemble's member: checked as the network it is
            NetworkComponent.check(val, f"{path}.{key}", problems)
            continue
        for where, expected, got in _type_mismatches(annotations.get(key), val, f"{path}.{key}"):
            problems.append(f"{where}: expected {expected} (as {target} declares it), got {_short(got)}")


def _names_a_network(annotation: str | None) -> bool:
    """An argument annotated `NetworkConfig` (scopeml.models) is a network's `_target_` mapping that the
    component builds itself, passing the runtime values (models.ensemble.Ensemble's `member`)."""
    return annotation is not None and annotation.strip("'\"").rpartition(".")[2] == "NetworkConfig"


# --------------------------------------------------------------------------- annotations
def _type_mismatches(annotation: str | None, value: Any, path: str) -> list[tuple[str, str, Any]]:
    """(path, expected, value) where `value` plainly does not fit `annotation`.

    Nothing when it fits or cannot be told.
    """
    if annotation is None:
        return []
    try:
        node = ast.parse(annotation.strip("'\""), mode="eval").body
    except SyntaxError:
        return []
    return _mismatches(node, value, path)


def _mismatches(node: ast.expr, value: Any, path: str) -> list[tuple[str, str, Any]]:
    if isinstance(value, str) and "${" in value:
        return []  # an interpolation: checked once resolved
    accepted = _accepted(node)
    if accepted is None:
        return []
    if not any(_fits(kind, value) for kind in accepted):
        return [(path, " or ".join(sorted(set(accepted))), value)]
    element = _element(node)
    if element is not None and isinstance(value, (list, tuple)):  # list[int]: every element too
        return [m for i, v in enumerate(value) for m in _mismatches(element, v, f"{path}[{i}]")]
    return []


def _element(node: ast.expr) -> ast.expr | None:
    """X of list[X] / Sequence[X] / Optional[list[X]]; None when there is no single element type."""
    if isinstance(node, ast.BinOp):
        parts = [p for p in (node.left, node.right) if not (isinstance(p, ast.Constant) and p.value is None)]
        return _element(parts[0]) if len(parts) == 1 else None
    if not isinstance(node, ast.Subscript):
        return None
    name = ast.unparse(node.value).rpartition(".")[2]
    inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if name == "Optional":
        return _element(inner[0])
    if name in ("list", "List", "Sequence"):
        return inner[0]
    if name in ("tuple", "Tuple") and (
        len(inner) == 2 and isinstance(inner[1], ast.Constant) and inner[1].value is Ellipsis
    ):
        return inner[0]
    return None


def _accepted(node: ast.expr) -> list[str] | None:
    """Plain kinds a simple annotation accepts; None for anything richer (then nothing is checked)."""
    if isinstance(node, ast.Constant) and node.value is None:
        return ["null"]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        left, right = _accepted(node.left), _accepted(node.right)
        return None if left is None or right is None else left + right
    name = ast.unparse(node.value if isinstance(node, ast.Subscript) else node).rpartition(".")[2]
    if isinstance(node, ast.Subscript):
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if name == "Optional":
            rest = _accepted(inner[0])
            return None if rest is None else rest + ["null"]
        if name == "Union":
            kinds = [_accepted(i) for i in inner]
            return None if any(k is None for k in kinds) else [k for ks in kinds for k in ks]
        return ["list"] if name in ("list", "List", "tuple", "Tuple", "Sequence") else None
    return {
        "int": ["int"],
        "float": ["float"],
        "str": ["str"],
        "bool": ["bool"],
        "list": ["list"],
        "tuple": ["list"],
        "None": ["null"],
    }.get(name)


def _fits(kind: str, value: Any) -> bool:
    if kind == "null":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    return isinstance(value, (list, tuple))


def _short(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 60 else text[:57] + '...'}"


# --------------------------------------------------------------------------- the roles
class NetworkComponent(Component):
    """The network after the front end: (batch, *input_shape) features in, (batch, n_classes) logits out."""

    role = "network"
    runtime = {
        "n_classes": "required: the number of scoping.classes",
        "input_shape": "the front end's output shape for one clip, e.g. (1, n_mels, frames)",
        "sample_rate": "data.preprocess.sample_rate",
        "feature_bin_hz": "each feature row's centre frequency in Hz, from the front end's bin_frequencies()",
    }


class FrontendComponent(Component):
    """Waveforms (batch, samples) in, features out; part of the shipped model."""

    role = "front end"
    runtime = {"sample_rate": "data.preprocess.sample_rate"}


class OptimizerComponent(Component):
    role = "optimizer"
    runtime = {"params": "the model's parameters"}
    partial = True


class SchedulerComponent(Component):
    role = "learning-rate scheduler"
    runtime = {"optimizer": "the optimizer scopeml built"}
    filled = {
        "total_steps": "the run's optimizer steps",
        "T_max": "steps or epochs, as hparams.scheduler_interval says",
    }
    partial = True


class LossComponent(Component):
    """(logits, labels) -> scalar loss, e.g. torch.nn.CrossEntropyLoss."""

    role = "loss"


class CallbackComponent(Component):
    """An extra Lightning callback, added to the ones scopeml always runs (checkpoints, progress)."""

    role = "callback"


class SourceComponent(Component):
    """A data source: lists clips (a path or samples, a label, a speaker) for scopeml to prepare."""

    role = "data source"


class FeatureComponent(Component):
    """A monitoring feature: a function (clip, sample_rate) -> float, computed on every prepared clip."""

    role = "monitoring feature"
    partial = True
    runtime = {"x": "the prepared clip", "sr": "its sample rate"}


class VADComponent(Component):
    """A voice activity detector: `segments(samples, sr)` -> [(start, end)] sample ranges of speech (serving.vad)."""

    role = "voice activity detector"

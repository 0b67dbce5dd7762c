"""The shipped model: the front end (waveform -> features) and the network (features -> logits).

Both are `_target_` components (conf/frontend/, conf/model/, or a user's own files); the
built-in networks (cnn.SmallCnn, dscnn.DsCnn, bcresnet.BcResNet) are examples of the same
extension point a user's class fills.
"""

from __future__ import annotations

import io

import torch
from torch import nn

#: The annotation of a network's argument that is itself a network config (`_target_` and arguments), which
#: the network builds with build_network and the runtime values it was given (models.ensemble).
#: scopeml-config check checks such an argument as a network, at its own key (model.member.channels).
NetworkConfig = dict


def build_classifier(frontend: dict, network: dict, n_classes: int, sample_rate: int, clip_seconds: float) -> nn.Module:
    """Waveform in, logits out: front end and network in one module, as deployed.

    The network gets the runtime values it asks for by name: n_classes, input_shape (the front
    end's output for one clip), sample_rate and feature_bin_hz (each feature row's centre in Hz, from the
    front end's bin_frequencies(); None for a front end without one). Its output is checked on a dummy batch, so a
    network that does not give one logit per class fails here, before any data is read.
    """
    from scopeml.components import build
    from scopeml.config import ConfigError

    front = build(frontend, "frontend", sample_rate=sample_rate)
    clip = torch.zeros(2, max(int(round(clip_seconds * sample_rate)), 1))
    with torch.no_grad():
        features = front.eval()(clip)
    bin_hz = front.bin_frequencies() if callable(getattr(front, "bin_frequencies", None)) else None
    net = build_network(network, "model", n_classes, tuple(features.shape[1:]), sample_rate, bin_hz)
    classifier = nn.Sequential(front, net)
    with torch.no_grad():
        try:
            logits = net.eval()(features)
        except Exception as exc:
            raise ConfigError(
                [
                    f"model: {network['_target_']} fails on the front end's output of shape "
                    f"{tuple(features.shape)}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ]
            ) from exc
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, n_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(
            [
                f"model: {network['_target_']} returns {shape} for a batch of 2 clips; expected (2, {n_classes}): "
                f"one logit per scoping class"
            ]
        )
    return classifier.train()


def build_network(
    network: NetworkConfig,
    key: str,
    n_classes: int,
    input_shape: tuple,
    sample_rate: int,
    feature_bin_hz: torch.Tensor | None = None,
) -> nn.Module:
    """A network from its config (`key` names it in errors), given every runtime value scopeml passes networks;
    each reaches the constructor only if it takes it. build_classifier builds the model's network with it, and a
    network built from networks (models.ensemble, models.test_time) its inner ones, so they get the same values."""
    from scopeml.components import build

    runtime = {"n_classes": n_classes, "input_shape": tuple(input_shape), "sample_rate": sample_rate}
    return build(dict(network), key, **runtime, feature_bin_hz=feature_bin_hz)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def size_mb(model: nn.Module) -> float:
    """Serialized state_dict size: what a deployment actually ships."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6

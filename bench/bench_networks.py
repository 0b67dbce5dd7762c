"""Inference cost of the built-in networks, side by side: one clip through the whole model (front end + network).

Each `model=` option is built as `scopeml-train` builds it (untrained: the cost does not depend on the weights) and
timed in eval mode under torch.no_grad on one thread, one clip of the data config's length (1 s) at a time, the
way one request reaches a served model. The options alternate round by round so drift on the machine falls on all
of them alike; each
reports the median and p95 over all rounds and its ratio to the DS-CNN alone, which the ensemble and the
test-time views are built from.

    python bench/bench_networks.py [--rounds 30] [--calls 20] [--models dscnn,dscnn_ensemble,dscnn_tta,cnn,bcresnet]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from scopeml.config import load, to_plain
from scopeml.config.paths import compose
from scopeml.models import build_classifier, count_parameters

BASE = "dscnn"


def build(option: str) -> tuple[torch.nn.Module, int]:
    """The option's whole model in eval mode, and the samples in one of its clips."""
    resolved = to_plain(compose("config", [f"model={option}"]))
    resolved.pop("hydra", None)
    cfg = load(resolved)
    net = build_classifier(
        resolved["frontend"],
        resolved["model"],
        len(cfg.scoping.classes),
        cfg.data.preprocess.sample_rate,
        cfg.data.preprocess.clip_seconds,
    )
    return net.eval(), int(round(cfg.data.preprocess.sample_rate * cfg.data.preprocess.clip_seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per option per round")
    parser.add_argument("--models", default="dscnn,dscnn_ensemble,dscnn_tta,cnn,bcresnet")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    options = args.models.split(",")
    if BASE not in options:
        options.insert(0, BASE)
    built = {o: build(o) for o in options}
    nets = {o: net for o, (net, _) in built.items()}
    samples = built[BASE][1]  # the options share the data config, so their clips are alike
    clip = torch.from_numpy(np.random.default_rng(0).normal(0, 0.1, (1, samples)).astype(np.float32))
    times: dict[str, list[float]] = {o: [] for o in options}
    with torch.no_grad():
        for net in nets.values():  # warm-up: first calls allocate
            for _ in range(5):
                net(clip)
        for _ in range(args.rounds):
            for o, net in nets.items():
                for _ in range(args.calls):
                    start = time.perf_counter()
                    net(clip)
                    times[o].append((time.perf_counter() - start) * 1000)
    base = float(np.median(times[BASE]))
    rows = []
    print(f"one {samples}-sample clip per call, eval, one thread; {args.rounds} rounds x {args.calls} calls per option")
    print(f"{'model':<16} {'params':>8} {'p50 ms':>8} {'p95 ms':>8} {'p50 / dscnn':>12}")
    for o in options:
        p50, p95 = float(np.median(times[o])), float(np.percentile(times[o], 95))
        params = count_parameters(nets[o])
        rows.append({"model": o, "parameters": params, "p50_ms": p50, "p95_ms": p95, "ratio_to_dscnn": p50 / base})
        print(f"{o:<16} {params:>8} {p50:>8.2f} {p95:>8.2f} {p50 / base:>11.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()

"""Data pipeline speed: preprocessing throughput cold vs warm cache, and how long training waits for data.

    python bench/bench_data.py [--fsdd ../shared/datasets/fsdd] [--steps 60]

1. Build the FSDD recipe (2,000 real 8 kHz WAVs; trim, loudness normalization, resample to
   16 kHz, fix length) into an empty cache (cold), then again from the cache (warm): clips/s.
   Without FSDD it uses 40 synthesized voices instead.
2. Train the default CNN for --steps steps from the warm data and split each step into waiting
   for the next batch (the DataLoader), augmenting it, and compute (forward, backward, optimizer):
   the share of a step spent on data (target <= 10% warm), for no augmentation, data/augment=light,
   light with room simulation (experiment=fsdd_production's augmentation) and heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch

from scopeml.config import load
from scopeml.config.paths import compose
from scopeml.data import build_dataset

ROOT = Path(__file__).resolve().parents[1]


def config(overrides: list[str]):
    return load(compose("config", overrides))


def build_timed(cfg) -> tuple[float, object]:
    started = time.perf_counter()
    data = build_dataset(cfg.data, cfg.scoping.classes, progress=False)
    return time.perf_counter() - started, data


AUGMENTATIONS = {  # row name: overrides whose composed data.augment the row trains with
    "none": ["data/augment=none"],
    "light": ["data/augment=light"],
    "light+room": ["experiment=fsdd_production"],  # the shipped recipe's augmentation, whatever it is now
    "heavy": ["data/augment=heavy"],
}


def step_profile(cfg, data, steps: int, augment: str) -> dict:
    from scopeml.training.module import KeywordSpotter

    aug = dataclasses.asdict(config(AUGMENTATIONS[augment]).data.augment)
    torch.manual_seed(0)
    module = KeywordSpotter(
        cfg.model,
        cfg.frontend,
        dataclasses.asdict(cfg.hparams),
        cfg.scoping.classes,
        data.sample_rate,
        clip_seconds=cfg.data.preprocess.clip_seconds,
        augment=aug,
    )
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    loader = data.loader("train", cfg.hparams.batch_size, shuffle=True)
    wait = aug_t = compute = 0.0
    done, epoch = 0, 0
    while done < steps + 5:
        it = iter(loader)
        while done < steps + 5:
            t0 = time.perf_counter()
            try:
                waves, labels, index = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            if module.wave_augment is not None:
                waves, _ = module.wave_augment(waves, (epoch, done))
            t2 = time.perf_counter()
            logits = (
                module.net(waves)
                if module.spec_augment is None
                else module.net[1](module.spec_augment(module.net[0](waves)))
            )
            loss = torch.nn.functional.cross_entropy(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t3 = time.perf_counter()
            if done >= 5:  # the first steps warm up allocators and kernels
                wait, aug_t, compute = wait + t1 - t0, aug_t + t2 - t1, compute + t3 - t2
            done += 1
        epoch += 1
    total = wait + aug_t + compute
    return {
        "augment": augment,
        "ms_per_step": 1000 * total / steps,
        "wait_share": wait / total,
        "augment_share": aug_t / total,
        "data_share": (wait + aug_t) / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsdd", type=Path, default=ROOT.parent / "shared" / "datasets" / "fsdd")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    cache = Path(tempfile.mkdtemp(prefix="scopeml-bench-data-"))
    try:
        if (args.fsdd / "recordings").is_dir():
            overrides = ["experiment=fsdd_digits", f"data.source.root={args.fsdd}", f"data.cache_dir={cache}"]
            what = "FSDD, 2,000 real WAVs (trim + loudness + resample 8->16 kHz)"
        else:
            overrides = [
                f"data.cache_dir={cache}",
                "++data.source.voices=[" + ",".join(f"en+m{i}" for i in range(1, 8)) + "]",
            ]
            what = "synthesized keywords (FSDD not found)"
        cfg = config(overrides)
        cold, data = build_timed(cfg)
        warm, data = build_timed(cfg)
        n = len(data.manifest)
        print(f"data: {what}; {n} clips")
        print(f"{'':<22}{'seconds':>9}{'clips/s':>10}")
        print(f"{'cold (decode+prep)':<22}{cold:>9.2f}{n / cold:>10.0f}")
        print(f"{'warm (cache hit)':<22}{warm:>9.2f}{n / warm:>10.0f}")
        print(f"warm/cold speed-up: {cold / warm:.0f}x")
        print(
            f"\ntraining step split, default CNN, batch {cfg.hparams.batch_size}, {args.steps} steps, "
            f"{torch.get_num_threads()} threads:"
        )
        print(f"{'augment':<12}{'ms/step':>9}{'loader wait':>13}{'augment':>9}{'data total':>12}{'vs none':>9}")
        plain = None
        for augment in AUGMENTATIONS:
            r = step_profile(cfg, data, args.steps, augment)
            plain = plain or r["ms_per_step"]
            print(
                f"{augment:<12}{r['ms_per_step']:>9.1f}{r['wait_share']:>13.1%}{r['augment_share']:>9.1%}"
                f"{r['data_share']:>12.1%}{r['ms_per_step'] / plain:>8.2f}x"
            )
        print("target: data total <= 10% of a step with a warm cache")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()

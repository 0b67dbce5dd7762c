"""Training overhead: scopeml's Lightning fit against a hand-written PyTorch loop, side by side.

Same data (the default synthesized keywords, cached), same model, optimizer,
one-cycle schedule, batch size, epochs and shuffling order; both validate once
per epoch. Each side gets a warm-up epoch, then the timed fits alternate
(torch, lightning, torch, lightning, ...) and the fastest of each is kept.

    python bench/bench_train.py [--epochs 3] [--repeats 2] [--voices 40]

Prints the wall-time ratio (target <= 1.10 after warm-up) and the loss parity.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from scopeml.config import load, to_plain
from scopeml.config.paths import compose
from scopeml.data import build_dataset
from scopeml.models import build_classifier
from scopeml.training.module import KeywordSpotter
from scopeml.training.trainer import build_trainer

ROOT = Path(__file__).resolve().parents[1]


def torch_fit(cfg, resolved, data, epochs: int) -> dict:
    torch.manual_seed(cfg.seed)
    net = build_classifier(
        resolved["frontend"], resolved["model"], len(data.classes), data.sample_rate, cfg.data.preprocess.clip_seconds
    )
    h = cfg.hparams
    opt = torch.optim.AdamW(net.parameters(), lr=h.lr, weight_decay=h.optimizer["weight_decay"])
    train = data.loader("train", h.batch_size, shuffle=True, seed=cfg.seed)
    val = data.loader("val", h.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=h.lr, total_steps=epochs * len(train))
    started = time.perf_counter()
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)  # what Lightning does for us
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, epoch]).generate_state(1)[0]))  # as scopeml's EpochSeed
        net.train()
        losses = []
        for waves, labels, _ in train:
            loss = F.cross_entropy(net(waves), labels, label_smoothing=h.loss["label_smoothing"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        net.eval()
        with torch.no_grad():
            correct = sum((net(w).argmax(-1) == y).sum().item() for w, y, _ in val)
    return {
        "seconds": time.perf_counter() - started,
        "train_loss": float(np.mean(losses)),
        "val_acc": correct / len(val.dataset),
    }


def lightning_fit(cfg, resolved, data, epochs: int, run_dir: Path) -> dict:
    torch.manual_seed(cfg.seed)
    module = KeywordSpotter(
        resolved["model"],
        resolved["frontend"],
        {**resolved["hparams"], "max_epochs": epochs},
        data.classes,
        data.sample_rate,
        clip_seconds=cfg.data.preprocess.clip_seconds,
    )
    cfg.hparams.max_epochs = epochs
    trainer = build_trainer(cfg.trainer, cfg.hparams, run_dir, logger=None, seed=cfg.seed)
    train = data.loader("train", cfg.hparams.batch_size, shuffle=True, seed=cfg.seed)
    val = data.loader("val", cfg.hparams.batch_size)
    started = time.perf_counter()
    trainer.fit(module, train, val)
    seconds = time.perf_counter() - started
    m = trainer.callback_metrics
    return {"seconds": seconds, "train_loss": float(m["train/loss"]), "val_acc": float(m["val/acc"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--voices", type=int, default=40, help="eSpeak voices in the data (105 = the full default)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(os.cpu_count() or 1)
    raw = compose("config", ["tracker=none", "trainer.progress_bar=none"])
    resolved = to_plain(raw)
    cfg = load(resolved)
    from scopeml.data import espeak

    cfg.data.source["voices"] = espeak.list_voices("en")[: args.voices]
    data = build_dataset(cfg.data, cfg.scoping.classes)
    print(
        f"data: {len(data.indices('train'))} train / {len(data.indices('val'))} val clips, "
        f"batch {cfg.hparams.batch_size}, {args.epochs} epochs, {torch.get_num_threads()} threads"
    )

    run_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "scopeml-bench-train"
    torch_fit(cfg, resolved, data, 1)  # warm-up: allocator, kernels, page cache
    lightning_fit(cfg, resolved, data, 1, run_dir)
    results = {"torch": [], "lightning": []}
    for _ in range(args.repeats):
        results["torch"].append(torch_fit(cfg, resolved, data, args.epochs))
        results["lightning"].append(lightning_fit(cfg, resolved, data, args.epochs, run_dir))
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in results.items()}
    ratio = best["lightning"]["seconds"] / best["torch"]["seconds"]

    print(f"{'':<22}{'fit s':>8}{'s/epoch':>9}{'train loss':>12}{'val acc':>9}")
    for name, label in (("torch", "plain PyTorch loop"), ("lightning", "scopeml (Lightning)")):
        r = best[name]
        print(
            f"{label:<22}{r['seconds']:>8.2f}{r['seconds'] / args.epochs:>9.2f}"
            f"{r['train_loss']:>12.4f}{r['val_acc']:>9.3f}"
        )
    loss_gap = abs(best["lightning"]["train_loss"] - best["torch"]["train_loss"])
    print(
        f"wall-time ratio scopeml/torch: {ratio:.3f} (target <= 1.10)  |  train-loss gap: {loss_gap:.4f}  |  "
        f"val-acc gap: {abs(best['lightning']['val_acc'] - best['torch']['val_acc']):.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps({"ratio": ratio, "best": best, "all": results}, indent=2))


if __name__ == "__main__":
    main()

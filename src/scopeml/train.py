"""The training stage of scopeml-train: build data and model, train, test, and score against the scoping targets.

The command itself (start-up, config check, failures, exit codes) is scopeml.cli.train.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from scopeml import run_files
from scopeml.config import Config
from scopeml.training import artifacts

log = logging.getLogger("scopeml.train")


def _quiet_libraries() -> None:
    """Hydra already logs to the console and train.log; Lightning's own handler would print every line twice."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
        lib.addFilter(lambda record: "litlogger" not in record.getMessage())  # an advert, not information


def train(config: Config, run_dir: Path, resolved: dict, public: dict | None = None, group: str | None = None) -> float:
    """The training stage, top to bottom. Returns the primary metric on the validation split, or its
    cross-validation mean (what sweepers optimize); the test split is scored once and never returned."""
    from scopeml.training.allocator import keep_freed_memory
    from scopeml.training.checkpoints import clear_stale_checkpoints, resume_checkpoint

    ckpt_path = resume_checkpoint(config.resume, run_dir)  # a bad resume= fails before the heavy imports
    keep_freed_memory()  # before the first tensor: steps reuse freed memory instead of faulting in fresh pages
    import lightning as L

    _quiet_libraries()
    from scopeml import provenance
    from scopeml.data import build_dataset
    from scopeml.data.report import build_report
    from scopeml.redact import hidden_values
    from scopeml.training import cross_validation, evaluate, pruning, report, tracking
    from scopeml.training.module import KeywordSpotter
    from scopeml.training.trainer import build_trainer

    started = time.perf_counter()
    run_name = config.run_name or run_dir.name
    public = resolved if public is None else public  # what is written: secrets and environment values redacted
    artifacts.save_config(run_dir, public)
    artifacts.write_json(run_dir / "provenance.json", provenance.collect(hidden=hidden_values(resolved, public)))
    if removed := clear_stale_checkpoints(run_dir, ckpt_path):
        log.warning(
            "%s already held checkpoints of an earlier run; removed %s so this run's weights are the ones kept",
            run_dir,
            ", ".join(removed),
        )
    L.seed_everything(config.seed, workers=True, verbose=False)
    _warn_over_budget(config)

    # Components are built before any data is read: a bad network, loss or callback fails in seconds.
    artifacts.mark(run_dir, "running", stage="build")
    preprocess = config.data.preprocess

    def build_module() -> KeywordSpotter:
        return KeywordSpotter(
            resolved["model"],
            resolved["frontend"],
            resolved["hparams"],
            config.scoping.classes,
            preprocess.sample_rate,
            clip_seconds=preprocess.clip_seconds,
            augment=resolved["data"]["augment"],
            seed=config.seed,
        )

    module = build_module()
    trainer_callbacks = resolved.get("callbacks") or {}

    artifacts.mark(run_dir, "running", stage="data")
    data = build_dataset(config.data, config.scoping.classes)
    data_report = build_report(data, config.data, config.seed)
    artifacts.write_json(run_dir / "data_fingerprint.json", data.fingerprint)
    artifacts.write_json(run_dir / "data_report.json", data_report)
    if not data_report["passed"]:
        log.warning("data checks failed: %s (see data_report.json)", ", ".join(data_report["blocking_failures"]))

    artifacts.mark(run_dir, "running", stage="fit")
    logger = tracking.build_logger(config.tracker, run_dir, run_name, group, public)
    tracking.log_data_version(logger, data.fingerprint, run_dir)
    hp = config.hparams
    cv, cv_seconds = None, 0.0
    if data.folds:
        artifacts.mark(run_dir, "running", stage="cross-validation")
        cv_started = time.perf_counter()
        cv = cross_validation.run_folds(
            config,
            data,
            build_module,
            # the config's callbacks train every fold too: the CV figure is the recipe's that ships (SWA, EMA, ...)
            lambda k: build_trainer(
                config.trainer,
                hp,
                run_dir / "folds" / str(k),
                None,
                config.seed,
                extra_callbacks=trainer_callbacks,
                keep="none",
            ),
        )
        cv_seconds = time.perf_counter() - cv_started
        artifacts.mark(run_dir, "running", stage="fit")
        L.seed_everything(config.seed, workers=True, verbose=False)
        module = build_module()  # the model to ship: trained on every fold, with the folds' recipe
    # A trial of scopeml's Optuna sweeper reports the validation primary metric per epoch and may be pruned
    # (not a cross-validated run: no validation split per epoch; not a DDP one: its ranks would each report).
    trial = None if cv else pruning.TrialLink.from_environment()
    if trial is not None:
        trial.record(run_dir)
        if pruning.distributed(config.trainer):
            log.warning("this trial trains on several processes (DDP): it is not pruned, only scored at the end")
            trial = None
    trainer = build_trainer(
        config.trainer,
        hp,
        run_dir,
        logger,
        seed=config.seed,
        extra_callbacks=trainer_callbacks,
        keep="last" if cv else "best",
        callbacks=trial.callbacks(config.scoping.primary_metric, config.scoping.classes) if trial else (),
    )
    try:
        trainer.fit(
            module,
            data.loader("train", hp.batch_size, shuffle=True, seed=config.seed),
            None if cv else data.loader("val", hp.batch_size),
            ckpt_path=ckpt_path,
        )
    except Exception as exc:
        if trial is not None and trial.is_pruned(exc):
            trial.mark_pruned(run_dir, exc, config.scoping.primary_metric)
        raise
    if trainer.global_rank != 0:
        return float("nan")  # DDP workers stop here: rank 0 evaluates and writes the run folder
    report.save_augment_log(run_dir, module, data)

    artifacts.mark(run_dir, "running", stage="test")
    best = report.load_best(trainer, module)
    selection_split = "cv" if cv else "val"
    rows = report.held_out_rows(data, cv)
    logits = {split: cv.logits if split == "cv" else evaluate.predict_logits(best, data, split) for split in rows}
    calibration, probs = report.calibrate_held_out(data, rows, logits, run_dir, fit_split=selection_split)
    report.save_predictions(run_dir, data, rows, probs, cv)
    scores = {split: evaluate.score_rows(data, rows[split], probs[split]) for split in rows}
    errors = report.analyze_errors(config, run_dir, logger, data, split="test" if "test" in rows else selection_split)
    metrics = report.build_metrics(
        config,
        best,
        scores,
        selection_split,
        cv.summary(scores["cv"], minutes=cv_seconds / 60) if cv else None,
        # train_minutes is what training the shipped model costs; the folds' time is the estimate's, in cv.minutes
        minutes=(time.perf_counter() - started - cv_seconds) / 60,
        run_name=run_name,
        fingerprint=data.fingerprint,
        baseline=report.baselines_on(data_report["baseline"], cv and cross_validation.baselines(data, config.seed)),
    )
    metrics.update(calibration=calibration, error_analysis=errors, latency_ms=evaluate.latency_ms(best, data))
    objective = report.objective(config, metrics)

    tracking.log_summary(logger, report.flat_summary(metrics, data.fingerprint, provenance.git_state()))
    run_files.write_metrics(run_dir, metrics)
    artifacts.mark(run_dir, "complete", stage="done", finished_utc=artifacts.now())
    tracking.finish(logger)
    report.print_scorecard(metrics)
    return objective


def _warn_over_budget(config: Config) -> None:
    """scoping.budget.gpus is what the project may use; a run beyond it is allowed but said."""
    gpu = config.trainer.accelerator in ("gpu", "cuda")
    devices = config.trainer.devices if isinstance(config.trainer.devices, int) and config.trainer.devices > 0 else None
    if gpu and (
        config.scoping.budget.gpus < 1 or (devices and devices * config.trainer.num_nodes > config.scoping.budget.gpus)
    ):
        log.warning(
            "trainer uses GPUs (%s x %s) beyond scoping.budget.gpus=%d",
            config.trainer.devices,
            config.trainer.num_nodes,
            config.scoping.budget.gpus,
        )

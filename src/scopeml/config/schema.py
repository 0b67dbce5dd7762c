"""Typed schemas for every config group.

Each dataclass is one group's contract: field types are enforced, unknown keys
rejected, and `check()` returns cross-field problems as (key, message) pairs so
they are reported together with the type errors.

One place for each default: a field's default lives here and reaches Hydra through
`defaults_node()` (conf/config.yaml composes it first, the group files override it), so
a shipped YAML states only what differs. A field set to REQUIRED has no default here:
each option file of its group holds the value. Components (model, front end, optimizer,
scheduler, loss, callbacks, data sources) are `_target_` mappings whose schema is the
target's own constructor (config/components.py).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Literal, Optional, Union

from scopeml.config._validate import MISSING_VALUE, variants
from scopeml.config.components import (
    CallbackComponent,
    FeatureComponent,
    FrontendComponent,
    LossComponent,
    NetworkComponent,
    OptimizerComponent,
    SchedulerComponent,
    SourceComponent,
    VADComponent,
)
from scopeml.metrics import CATEGORY_METRICS, METRICS, category_indices

Problems = list[tuple[str, str]]
REQUIRED: Any = MISSING_VALUE  # no default here: every option file of the group sets it


# --------------------------------------------------------------------------- scoping
@dataclass
class Target:
    """A bound on one metric: exactly one of `min` (at least) or `max` (at most)."""

    min: Optional[float] = None
    max: Optional[float] = None


@dataclass
class Budget:
    """Hardware the project may use; training time is a target (targets.train_minutes).

    Serving workers beyond cpu_cores are a config error (they only fight over the cores);
    a training run on more GPUs than `gpus` is warned about and recorded in its log.
    """

    cpu_cores: int = 2
    gpus: int = 0


@dataclass
class ScopingConfig:
    name: str = REQUIRED
    task: Literal["keyword_spotting"] = "keyword_spotting"
    description: str = ""
    classes: list[str] = field(default_factory=list)
    primary_metric: str = REQUIRED
    targets: dict[str, Target] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)

    def check(self) -> Problems:
        problems: Problems = []
        if len(self.classes) < 2:
            problems.append(("classes", "needs at least two classes"))
        dupes = sorted({c for c in self.classes if self.classes.count(c) > 1})
        if dupes:
            problems.append(("classes", f"duplicate class names {dupes}"))
        if self.primary_metric not in METRICS:
            problems.append(("primary_metric", f"unknown metric {self.primary_metric!r}; known: {sorted(METRICS)}"))
        elif METRICS[self.primary_metric].phase != "offline":
            offline = sorted(m.name for m in METRICS.values() if m.phase == "offline")
            problems.append(
                (
                    "primary_metric",
                    f"{self.primary_metric} is measured in the {METRICS[self.primary_metric].phase} phase, after "
                    f"training: sweeps and selection cannot read it; use an offline metric {offline}",
                )
            )
        for name, t in self.targets.items():
            metric = METRICS.get(name)
            if metric is None:
                problems.append((f"targets.{name}", f"unknown metric; known: {sorted(METRICS)}"))
                continue
            if name in CATEGORY_METRICS and not category_indices(self.classes):
                problems.append(
                    (
                        f"targets.{name}",
                        "needs a class that is not a keyword in scoping.classes (unknown, silence, ...): "
                        "without one every clip is answered with a keyword",
                    )
                )
            if (t.min is None) == (t.max is None):
                problems.append((f"targets.{name}", "set exactly one of min or max"))
            elif (t.min is not None) != metric.higher_is_better:
                want = "min" if metric.higher_is_better else "max"
                problems.append(
                    (
                        f"targets.{name}",
                        f"{name} is {'higher' if metric.higher_is_better else 'lower'}-is-better: use {want}",
                    )
                )
        return problems


# --------------------------------------------------------------------------- data
@dataclass
class SplitConfig:
    """Splits are always by speaker, never by clip, so test voices are unseen in training."""

    val_fraction: float = 0.15
    test_fraction: float = 0.15
    val_speakers: list[str] = field(default_factory=list)  # explicit lists win over fractions
    test_speakers: list[str] = field(default_factory=list)
    seed: int = 0
    # Speaker-grouped k-fold cross-validation: 0 is off (one train/val/test split). With folds >= 2 the
    # speakers not in test_speakers are dealt into that many folds (folds == speakers: leave-one-speaker-out);
    # each fold is held out once, and the final model trains on every fold. Fractions and val_speakers are unused.
    folds: int = 0

    def check(self) -> Problems:
        problems: Problems = []
        if self.folds == 1 or self.folds < 0:
            problems.append(("folds", f"{self.folds}: 0 (no cross-validation) or at least 2 folds"))
        if self.folds and self.val_speakers:
            problems.append(("val_speakers", "not used with folds: every non-test speaker is held out in its fold"))
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, key) < 1.0:
                problems.append((key, "must be between 0 and 1 (exclusive)"))
        if self.val_fraction + self.test_fraction >= 1.0:
            problems.append(("test_fraction", "val_fraction + test_fraction must leave speakers for training"))
        overlap = set(self.val_speakers) & set(self.test_speakers)
        if overlap:
            problems.append(("test_speakers", f"also listed in val_speakers: {sorted(overlap)}"))
        return problems


@dataclass
class TrimConfig:
    """Leading/trailing silence removal before the clip length is fixed."""

    method: Literal["none", "energy", "vad"] = "none"
    threshold_db: float = -35.0  # energy: frames quieter than this, relative to the clip's loudest frame, are silence
    frame_ms: float = 10.0
    pad_ms: float = 30.0  # silence kept on each side of the speech

    def check(self) -> Problems:
        problems: Problems = []
        if self.threshold_db >= 0:
            problems.append(("threshold_db", "must be negative (dB below the loudest frame)"))
        if not 1.0 <= self.frame_ms <= 100.0:
            problems.append(("frame_ms", "must be between 1 and 100 ms"))
        if self.pad_ms < 0:
            problems.append(("pad_ms", "must be >= 0"))
        return problems


@dataclass
class NormalizeConfig:
    """Volume normalization: peak or RMS level in dBFS, or loudness in LUFS (ITU-R BS.1770)."""

    method: Literal["none", "peak", "rms", "loudness"] = "none"
    target_db: float = -20.0
    max_gain_db: float = 30.0  # never amplify near-silence into loud noise

    def check(self) -> Problems:
        return [] if -70.0 <= self.target_db <= 0.0 else [("target_db", "must be between -70 and 0")]


@dataclass
class PreprocessConfig:
    """How every clip becomes model input: downmix, resample, trim, normalize, fix length.

    Serving applies this same definition (it is packaged with the model).
    """

    sample_rate: int = 16000
    clip_seconds: float = 1.0
    trim: TrimConfig = field(default_factory=TrimConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    pad: Literal["center", "start", "end"] = "center"  # where the speech sits when padding to clip_seconds

    def check(self) -> Problems:
        problems: Problems = []
        if not 4000 <= self.sample_rate <= 48000:
            problems.append(("sample_rate", "must be between 4000 and 48000 Hz"))
        if not 0.1 <= self.clip_seconds <= 10.0:
            problems.append(("clip_seconds", "must be between 0.1 and 10 s"))
        return problems


@dataclass
class AugmentConfig:
    """Training-split augmentation, drawn from the run's seed; every draw is logged for error analysis."""

    prob: float = 0.0  # chance that a training clip is augmented at all
    time_shift_ms: float = 0.0  # uniform shift in [-x, x], zero-filled
    gain_db: list[float] = field(default_factory=lambda: [0.0, 0.0])
    noise_prob: float = 0.0
    noise_snr_db: list[float] = field(default_factory=lambda: [20.0, 40.0])
    speed: list[float] = field(default_factory=lambda: [1.0, 1.0])  # tempo and pitch together, per batch
    # First-order tilt filter y[n] = x[n] - a*x[n-1], a per clip in [low, high]: a > 0 brightens (cuts lows),
    # a < 0 darkens, the way microphones and rooms differ; [0, 0] is off. +-0.5 spans about +-9.5 dB at 8 kHz.
    tilt: list[float] = field(default_factory=lambda: [0.0, 0.0])
    # Room simulation: the chance that an augmented clip is played in a simulated room, whose impulse response is a
    # direct path plus exponentially decaying noise with the reverberation time (RT60, seconds) and the
    # direct-to-reverberant energy ratio (dB) drawn per clip from these ranges; 0 is off.
    reverb_prob: float = 0.0
    reverb_rt60_s: list[float] = field(default_factory=lambda: [0.2, 0.7])
    reverb_drr_db: list[float] = field(default_factory=lambda: [0.0, 15.0])
    spec_time_masks: int = 0
    spec_time_mask_frames: int = 10
    spec_freq_masks: int = 0
    spec_freq_mask_bins: int = 5
    # Vocal-tract-length perturbation (Jaitly & Hinton 2013): the feature bins' frequency axis warped by a factor
    # per clip in [low, high] (> 1 moves formants up, as a shorter vocal tract does), tempo and pitch untouched;
    # [1, 1] is off. Needs a front end that says where its bins lie (bin_frequencies(), as LogMel does).
    vtlp: list[float] = field(default_factory=lambda: [1.0, 1.0])

    def check(self) -> Problems:
        problems: Problems = []
        for key in ("prob", "noise_prob", "reverb_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                problems.append((key, "must be in [0, 1]"))
        for key in ("gain_db", "noise_snr_db", "speed", "tilt", "vtlp", "reverb_rt60_s", "reverb_drr_db"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                problems.append((key, "must be [low, high] with low <= high"))
        if self.speed and len(self.speed) == 2 and not (0.5 <= self.speed[0] and self.speed[1] <= 2.0):
            problems.append(("speed", "factors must lie in [0.5, 2.0]"))
        if self.tilt and len(self.tilt) == 2 and not (-0.95 <= self.tilt[0] and self.tilt[1] <= 0.95):
            problems.append(("tilt", "coefficients must lie in [-0.95, 0.95] (1 would remove all of DC or Nyquist)"))
        if self.vtlp and len(self.vtlp) == 2 and not (0.7 <= self.vtlp[0] and self.vtlp[1] <= 1.4):
            problems.append(("vtlp", "warp factors must lie in [0.7, 1.4] (adult vocal tracts differ by about 20%)"))
        rt60 = self.reverb_rt60_s
        if rt60 and len(rt60) == 2 and not (0.05 <= rt60[0] and rt60[1] <= 2.0):
            problems.append(("reverb_rt60_s", "reverberation times must lie in [0.05, 2.0] s (rooms, not halls)"))
        if self.time_shift_ms < 0:
            problems.append(("time_shift_ms", "must be >= 0"))
        return problems

    @property
    def warps(self) -> bool:
        return list(self.vtlp) != [1.0, 1.0]

    @property
    def enabled(self) -> bool:
        return self.prob > 0 or self.spec_time_masks > 0 or self.spec_freq_masks > 0 or self.warps


@dataclass
class LabelsConfig:
    """Raw labels to scoping classes: case and spacing, aliases, fillers, and labels outside the classes."""

    map: dict[str, str] = field(default_factory=dict)  # alias -> class, applied after lowercase/strip
    lowercase: bool = True
    fillers: list[str] = field(default_factory=list)  # e.g. [um, uh]: treated as `unknown`
    unknown: Optional[str] = None  # class for labels outside the classes; null: see `others`
    others: Literal["error", "drop", "unknown"] = "error"  # what to do with a label that maps to no class


@dataclass
class ChecksConfig:
    """Data validation (scopeml-data). Checks listed in `blocking` make the command exit non-zero."""

    min_clips_per_label: int = 5  # per split
    min_clips_per_speaker: int = 1
    near_duplicate_similarity: float = 0.995  # cosine similarity of mel magnitude fingerprints (checks.fingerprints)
    clipping_fraction: float = 0.01  # a clip with more samples at full scale than this is flagged
    blocking: list[Literal["leakage", "conflicting_labels", "too_few_examples", "unreadable", "duplicates"]] = field(
        default_factory=lambda: ["leakage", "conflicting_labels", "too_few_examples"]
    )


@dataclass
class BaselineConfig:
    """Optional data-phase baselines beside the majority class and logistic regression on MFCC statistics."""

    pocketsphinx: bool = False  # off-the-shelf en-US recognizer restricted to the class words (scopeml.data.recognizer)


@variants("recipe")
@dataclass
class DataConfig:
    recipe: str = REQUIRED
    cache_dir: str = ".cache/scopeml"
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    on_bad_file: Literal["error", "skip"] = "error"


@DataConfig.register("source")
@dataclass
class SourceData(DataConfig):
    """A data source: a `_target_` class that lists clips; scopeml prepares, checks, caches, splits and augments them.

    Every built-in data set is one (conf/data/fsdd.yaml names scopeml.data.fsdd.FSDD, ...), and a
    user's class is named the same way. The built object has `clips()`, yielding mappings with
    `label` and either `path` (an audio file) or `samples` + `sample_rate`, and optionally
    `speaker`, `clip_id`, `problem` and metadata fields. An optional `fingerprint()` returning a
    string says when the data changed (default: the listing's paths, sizes and modification times,
    or the samples). See scopeml.data.source.
    """

    source: SourceComponent = REQUIRED


@DataConfig.register("mixture")
@dataclass
class MixtureData(DataConfig):
    """Several recipes mixed for training; validation and test come only from `eval_component`.

    `weights` scale how many of a component's training clips are used (1.0 = all, 0.5 = half).
    """

    components: dict[str, DataConfig] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    eval_component: str = REQUIRED

    def check(self) -> Problems:
        problems: Problems = []
        if self.eval_component not in self.components:
            problems.append(
                ("eval_component", f"{self.eval_component!r} is not one of components {sorted(self.components)}")
            )
        for name, weight in self.weights.items():
            if name not in self.components:
                problems.append((f"weights.{name}", "names no component"))
            elif not 0.0 < weight <= 10.0:
                problems.append((f"weights.{name}", "must be in (0, 10]"))
        for name, comp in self.components.items():
            if isinstance(comp, MixtureData):
                problems.append((f"components.{name}", "a mixture cannot contain a mixture"))
            elif comp.preprocess != self.preprocess:
                problems.append(
                    (f"components.{name}.preprocess", "must equal data.preprocess (interpolate it: ${data.preprocess})")
                )
        return problems


# --------------------------------------------------------------------------- hparams
@dataclass
class HParamsConfig:
    """The training recipe. Optimizer, schedule and loss are `_target_` components; `lr` is the one
    learning rate they interpolate (${hparams.lr}), so sweeps and Optuna search a single key."""

    lr: float = REQUIRED
    batch_size: int = 64
    max_epochs: int = 15
    optimizer: OptimizerComponent = REQUIRED  # _partial_: scopeml passes the parameters
    scheduler: Optional[SchedulerComponent] = None  # _partial_: scopeml passes the optimizer (and total_steps / T_max)
    scheduler_interval: Literal["step", "epoch"] = "step"
    loss: LossComponent = REQUIRED  # called as loss(logits, labels)
    gradient_clip_val: Optional[float] = None

    def check(self) -> Problems:
        problems: Problems = []
        if not 0.0 < self.lr < 10.0:
            problems.append(("lr", "must be in (0, 10)"))
        if self.batch_size < 1:
            problems.append(("batch_size", "must be >= 1"))
        if self.max_epochs < 1:
            problems.append(("max_epochs", "must be >= 1"))
        return problems


# --------------------------------------------------------------------------- trainer
@dataclass
class TrainerConfig:
    """Arguments for lightning.Trainer, plus the CPU thread count."""

    accelerator: Literal["cpu", "gpu", "cuda", "mps", "auto"] = "cpu"
    devices: Union[int, str] = 1
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    deterministic: bool = True
    num_threads: Optional[int] = None  # torch intra-op threads; None keeps torch's default
    limit_train_batches: Union[int, float] = 1.0
    limit_val_batches: Union[int, float] = 1.0
    log_every_n_steps: int = 10
    progress_bar: Literal["rich", "tqdm", "none"] = "rich"
    early_stopping_patience: Optional[int] = None

    def check(self) -> Problems:
        problems: Problems = []
        for key in ("limit_train_batches", "limit_val_batches"):
            v = getattr(self, key)
            if (isinstance(v, float) and not 0.0 < v <= 1.0) or (isinstance(v, int) and v < 1):
                problems.append((key, "a fraction in (0, 1] or a batch count >= 1"))
        if self.num_threads is not None and self.num_threads < 1:
            problems.append(("num_threads", "must be >= 1"))
        return problems


# --------------------------------------------------------------------------- redaction
@dataclass
class RedactConfig:
    """What may be written although it came from an environment variable (scopeml.redact has the rule).

    Secret-named keys (`*token*`, `*secret*`, `*password*`, `*api_key*`) are redacted whatever this says.
    """

    # glob patterns of dotted keys: paths a run needs to be reproduced, not secrets
    safe_keys: list[str] = field(
        default_factory=lambda: [
            "data.cache_dir",
            "data.source.root",
            "data.components.*.cache_dir",
            "data.components.*.source.root",
            "deploy.prediction_log",
            "monitor.log",
        ]
    )


# --------------------------------------------------------------------------- tracker
@dataclass
class TrackerConfig:
    """Experiment tracking. `wandb` with mode=offline needs no account and no network."""

    kind: Literal["wandb", "none"] = "wandb"
    mode: Literal["offline", "online"] = "offline"
    project: str = "scopeml"
    entity: Optional[str] = None
    group: Optional[str] = None  # defaults to the sweep's folder in a multirun
    tags: list[str] = field(default_factory=list)
    notes: Optional[str] = None


# --------------------------------------------------------------------------- deploy
@dataclass
class BatchingConfig:
    """BentoML adaptive batching of model calls; off, every request runs the model in the API worker."""

    enabled: bool = False
    max_batch_size: int = 32
    max_latency_ms: int = 1000  # BentoML sheds load (503) when it cannot meet this; set from measurements


@dataclass
class DeployConfig:
    """How the selected model is packaged and served (realtime), run over files (batch), or exported (edge)."""

    model_name: str = "scopeml-kws"  # name in the BentoML model store; the service loads <name>:latest
    workers: int = 2  # API worker processes; each gets cores // workers torch threads (see torch_threads)
    torch_threads: Optional[int] = None  # per worker; None: CPU cores // workers (at least 1)
    device: Literal["cpu", "cuda", "auto"] = "cpu"  # where the served model runs; auto: cuda when one is visible
    max_body_mb: float = 5.0  # larger request bodies get 413 before they are read
    max_clip_seconds: float = 10.0  # longer audio gets 422 on /classify (use /segments for long audio)
    max_long_audio_seconds: float = 120.0
    max_clips_per_request: int = 64
    max_concurrency: int = 64  # in-flight requests beyond this get 429 with Retry-After
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    prediction_log: str = "outputs/serving/predictions.sqlite"
    batch_size: int = 64  # clips per model call in scopeml-batch
    # the VAD in front of /segments and the edge runner (conf/deploy/vad/: silero, or energy as the fallback);
    # its settings are its constructor's (threshold, min_speech_ms, min_silence_ms, pad_ms)
    vad: VADComponent = field(default_factory=lambda: {"_target_": "scopeml.serving.vad.SileroVAD"})
    # edge export
    quantize: bool = True
    parity_tolerance: float = 1e-4  # max |probability difference| of float exports vs the model
    quantized_tolerance: float = 0.05

    def check(self) -> Problems:
        problems: Problems = []
        for key in ("max_body_mb", "max_clip_seconds", "max_long_audio_seconds"):
            if getattr(self, key) <= 0:
                problems.append((key, "must be > 0"))
        for key in ("workers", "max_clips_per_request", "max_concurrency", "batch_size"):
            if getattr(self, key) < 1:
                problems.append((key, "must be >= 1"))
        if self.torch_threads is not None and self.torch_threads < 1:
            problems.append(("torch_threads", "must be >= 1, or null for CPU cores // workers"))
        if self.batching.max_batch_size < 1 or self.batching.max_latency_ms < 1:
            problems.append(("batching", "max_batch_size and max_latency_ms must be >= 1"))
        from scopeml.serving.vad import problems as vad_problems  # numpy only: silero loads when used

        problems += vad_problems(self.vad)
        problems += _log_url_problems("prediction_log", self.prediction_log)
        return problems


def _log_url_problems(key: str, url: str) -> Problems:
    """The prediction log's URL form (a path, sqlite:///, postgresql://), checked before any training; whether its
    server answers is checked when the service, scopeml-batch, scopeml-label or scopeml-monitor opens it."""
    from scopeml.serving.log import scheme_problem  # light: numpy at most, no connection made

    problem = scheme_problem(str(url))
    return [(key, problem)] if problem else []


# --------------------------------------------------------------------------- monitor
@dataclass
class MonitorConfig:
    """scopeml-monitor: NannyML performance estimation (CBPE) and drift on the prediction log."""

    log: str = DeployConfig.prediction_log
    model: str = "scopeml-kws:latest"  # the packaged model whose reference data the log is compared with
    chunk_size: Optional[int] = 200  # rows per chunk; or set chunk_period instead
    chunk_period: Optional[str] = None  # pandas offset alias, e.g. "h" or "D"
    metrics: list[Literal["accuracy", "f1"]] = field(default_factory=lambda: ["accuracy", "f1"])  # f1 is macro-averaged
    features: list[str] = field(
        default_factory=lambda: ["duration_s", "rms_dbfs", "silence_ratio", "spectral_centroid_hz", "snr_db"]
    )
    drift_method: Literal["jensen_shannon", "kolmogorov_smirnov", "wasserstein", "hellinger"] = "jensen_shannon"
    multivariate: bool = False  # NannyML's PCA reconstruction-error drift over all features
    min_drifted_chunks: int = 2  # a feature counts as drifted when this many chunks alert (one happens on clean data)
    fail_on: list[Literal["performance", "drift", "realized"]] = field(
        default_factory=lambda: ["performance", "realized"]
    )
    # Your own features, computed on every prepared clip by the service, the batch job and the packaged
    # reference: name -> a `_partial_` function fn(clip, sample_rate) -> float. List a name in `features` to watch it.
    custom_features: dict[str, FeatureComponent] = field(default_factory=dict)

    def check(self) -> Problems:
        problems: Problems = []
        if (self.chunk_size is None) == (self.chunk_period is None):
            problems.append(("chunk_size", "set exactly one of chunk_size or chunk_period"))
        if self.chunk_size is not None and self.chunk_size < 20:
            problems.append(("chunk_size", "must be >= 20 (CBPE needs enough rows per chunk)"))
        problems += _log_url_problems("log", self.log)
        from scopeml.features import FEATURES

        known = [*FEATURES, *self.custom_features]
        unknown = sorted(set(self.features) - set(known))
        if unknown:
            problems.append(
                (
                    "features",
                    f"unknown monitoring feature(s) {unknown}; known: {known} (add yours under custom_features)",
                )
            )
        clash = sorted(set(self.custom_features) & set(FEATURES))
        if clash:
            problems.append(("custom_features", f"{clash} would replace built-in features; choose other names"))
        return problems


# --------------------------------------------------------------------------- simulate
@dataclass
class ScenarioConfig:
    """A production scenario for scopeml-simulate (conf/simulate/<name>.yaml). Unset audio settings
    take the model's own training-data values, so each file states only what changes."""

    name: str = REQUIRED
    description: str = ""
    clips: int = 400
    source: Literal["synth", "fsdd"] = "synth"
    voices: list[str] = field(
        default_factory=list
    )  # synth; empty: the model's validation-split voices (never trained on)
    pitches: list[int] = field(default_factory=list)
    rates: list[int] = field(default_factory=list)
    lead_silence_ms: Optional[list[float]] = None
    noise_snr_db: Optional[list[float]] = None
    gain_db: Optional[list[float]] = None
    fsdd_root: Optional[str] = None
    fsdd_speakers: list[str] = field(default_factory=list)
    label_swap: dict[str, str] = field(default_factory=dict)  # concept drift: the truth changes, the audio does not
    words: list[str] = field(default_factory=list)  # synth: words to say instead of the model's classes
    true_label: Optional[str] = None  # every clip's true class (out-of-vocabulary words: unknown)
    seed: int = 0

    def check(self) -> Problems:
        problems: Problems = []
        if self.clips < 1:
            problems.append(("clips", "must be >= 1"))
        if self.words and self.source != "synth":
            problems.append(("words", "only a synthesized scenario says words of its own"))
        if self.source == "fsdd" and not (self.fsdd_root and self.fsdd_speakers):
            problems.append(("fsdd_root", "an fsdd scenario needs fsdd_root and fsdd_speakers"))
        return problems


# --------------------------------------------------------------------------- root
@dataclass
class Config:
    scoping: ScopingConfig
    data: DataConfig
    model: NetworkComponent  # the network after the front end: conf/model/<name>.yaml
    frontend: FrontendComponent  # waveform -> features, shipped with the model: conf/frontend/<name>.yaml
    hparams: HParamsConfig
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    deploy: DeployConfig = field(default_factory=DeployConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    callbacks: dict[str, CallbackComponent] = field(default_factory=dict)  # extra Lightning callbacks by name
    redact: RedactConfig = field(default_factory=RedactConfig)  # what written files may keep from the environment
    seed: int = 0
    run_name: Optional[str] = None  # defaults to the run folder's name
    resume: Union[bool, str] = (
        False  # true: continue this run folder's last checkpoint; or a checkpoint / run folder path
    )

    def check(self) -> Problems:
        problems: Problems = []
        classes = set(self.scoping.classes)
        if self.scoping.primary_metric not in self.scoping.targets:
            problems.append(
                ("scoping.primary_metric", f"{self.scoping.primary_metric!r} has no entry in scoping.targets")
            )
        if self.deploy.workers > self.scoping.budget.cpu_cores:
            problems.append(
                (
                    "deploy.workers",
                    f"{self.deploy.workers} workers exceed scoping.budget.cpu_cores "
                    f"({self.scoping.budget.cpu_cores}); they would only fight over the cores",
                )
            )
        for name, data in _data_parts(self.data):
            prefix = f"data.components.{name}" if name else "data"
            for raw, mapped in data.labels.map.items():
                if mapped not in classes:
                    problems.append(
                        (f"{prefix}.labels.map.{raw}", f"maps to {mapped!r}, which is not in scoping.classes")
                    )
            if data.labels.others == "unknown" and data.labels.unknown not in classes:
                problems.append(
                    (
                        f"{prefix}.labels.unknown",
                        f"{data.labels.unknown!r} must be one of scoping.classes when others=unknown",
                    )
                )
            words = data.source.get("words") if isinstance(data, SourceData) and isinstance(data.source, dict) else None
            if isinstance(words, list):  # a source that declares the vocabulary it produces (synthesized speech)
                for word in words:
                    label = data.labels.map.get(word.lower() if data.labels.lowercase else word, word)
                    if label not in classes and data.labels.others == "error":
                        problems.append(
                            (f"{prefix}.source.words", f"word {word!r} gives label {label!r}, not in scoping.classes")
                        )
        problems += self._cross_validation_problems()
        return problems

    def _cross_validation_problems(self) -> Problems:
        """Cross-validation trains fixed epochs and keeps the last weights: nothing may look at held-out speakers."""
        if not self.data.split.folds:
            return []
        problems: Problems = []
        why = "needs a validation split, and with data.split.folds the held-out speakers are only for the estimate"
        if self.trainer.early_stopping_patience:
            problems.append(("trainer.early_stopping_patience", why))
        if self.resume is not False:
            problems.append(("resume", "a cross-validated run cannot resume (its folds run in one process)"))
        return problems


def _data_parts(data: DataConfig) -> list[tuple[str, DataConfig]]:
    if isinstance(data, MixtureData):
        return [(name, comp) for name, comp in data.components.items()]
    return [("", data)]


# --------------------------------------------------------------------------- defaults for Hydra
def defaults_node() -> dict:
    """Every default of the schema as a plain mapping (components and REQUIRED fields left out).

    conf/config.yaml composes it before the groups (as `scopeml_defaults`), so a group file
    states only what differs and every key can still be overridden from the command line.
    """
    return _defaults_of(Config)


def variant_defaults() -> dict[str, dict]:
    """{"data_<recipe>": defaults of that recipe's own fields}: each recipe file composes its node first."""
    base = {f.name for f in fields(DataConfig)}
    return {
        f"data_{name}": {k: v for k, v in _defaults_of(variant).items() if k not in base}
        for name, variant in DataConfig.__variants__.items()
    }


def _defaults_of(tp: type) -> dict:
    out: dict = {}
    for f in fields(tp):
        nested = globals().get(f.type) if isinstance(f.type, str) else None
        if is_dataclass(nested):
            value = _defaults_of(nested)  # a group: its own defaults (every group's default_factory is its bare class)
        elif f.default is not MISSING:
            value = f.default
        elif f.default_factory is not MISSING:
            value = f.default_factory()
        else:
            continue
        if isinstance(value, str) and value == MISSING_VALUE:
            continue
        out[f.name] = value
    return out

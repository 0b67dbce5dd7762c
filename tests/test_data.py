"""Data recipes on real audio: synthesized keywords and FSDD, and clear errors for bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FSDD_ROOT, needs_fsdd, read_json, train, write_wav

from scopeml.config.schema import LabelsConfig, PreprocessConfig, SourceData, SplitConfig
from scopeml.data import DataError, build_dataset
from scopeml.data.audio import AudioError, fix_length, read_audio
from scopeml.data.preprocess import apply as prepare_clip
from scopeml.data.splits import assign_speakers

DIGITS = "zero one two three four five six seven eight nine".split()
DIGIT_MAP = {str(i): w for i, w in enumerate(DIGITS)}


DATA_KEYS = {f.name for f in dataclasses.fields(SourceData)}


def source_cfg(target: str, source: dict, tmp_path: Path, kw: dict) -> SourceData:
    """A data config for a built-in source; keyword arguments go to the source unless they are data keys."""
    data = {k: v for k, v in kw.items() if k in DATA_KEYS}
    args = {k: v for k, v in kw.items() if k not in DATA_KEYS}
    return SourceData(
        **{"recipe": "source", "cache_dir": str(tmp_path / "cache"), **data},
        source={"_target_": target, **source, **args},
    )


def synth_cfg(tmp_path: Path, **kw) -> SourceData:
    base = dict(words=["yes", "no", "stop"], voices=["en+m1", "en+f1", "en+m3", "en+f4"], pitches=[50], rates=[175])
    return source_cfg("scopeml.data.synth.SynthKeywords", base, tmp_path, kw)


def fsdd_cfg(root: Path, tmp_path: Path, **kw) -> SourceData:
    return source_cfg(
        "scopeml.data.fsdd.FSDD", {"root": str(root)}, tmp_path, {"labels": LabelsConfig(map=DIGIT_MAP), **kw}
    )


# ---------------------------------------------------------------- synthesized keywords
def test_synthesized_keywords_are_deterministic_and_shaped(tmp_path):
    a = build_dataset(synth_cfg(tmp_path / "a"), ["yes", "no", "stop"], progress=False)
    b = build_dataset(synth_cfg(tmp_path / "b"), ["yes", "no", "stop"], progress=False)
    assert a.waves.shape == (12, 16000) and a.waves.dtype == np.float32
    np.testing.assert_array_equal(a.waves, b.waves)  # same seed, fresh caches: identical audio
    assert a.fingerprint["content_sha256"] == b.fingerprint["content_sha256"]
    assert np.abs(a.waves).max() <= 1.0 and (np.sqrt((a.waves**2).mean(axis=1)) > 1e-3).all()


def test_measured_silence_matches_the_planted_silence(tmp_path):
    data = build_dataset(synth_cfg(tmp_path, noise_snr_db=[60.0, 60.0]), ["yes", "no", "stop"], progress=False)
    m = data.manifest
    assert (m["lead_ms"] - m["planted_lead_ms"]).abs().max() < 15
    # Soft endings (a final /p/ or /s/) sit below the -35 dB threshold, so trailing silence can read long on a
    # few words; exact planted-silence checks on tones are in test_preprocess.py.
    assert (m["trail_ms"] - m["planted_trail_ms"]).abs().median() < 15


def test_a_different_seed_or_voice_list_changes_the_audio_and_fingerprint(tmp_path):
    a = build_dataset(synth_cfg(tmp_path), ["yes", "no", "stop"], progress=False)
    b = build_dataset(synth_cfg(tmp_path, seed=99), ["yes", "no", "stop"], progress=False)
    assert a.fingerprint["fingerprint"] != b.fingerprint["fingerprint"]
    assert not np.array_equal(a.waves, b.waves)


def test_cached_build_is_reused(tmp_path):
    cfg = synth_cfg(tmp_path)
    first = build_dataset(cfg, ["yes", "no", "stop"], progress=False)
    cache = Path(first.fingerprint["cache"])
    stamp = (cache / "waves.npy").stat().st_mtime_ns
    second = build_dataset(cfg, ["yes", "no", "stop"], progress=False)
    assert (cache / "waves.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(first.waves, second.waves)


def test_two_jobs_storing_one_cache_at_once_both_succeed(tmp_path, monkeypatch):
    """A parallel sweep's jobs may build the same cold cache together; the one that lands second keeps the first's
    copy (same key, same content) instead of failing on the folder that now exists."""
    import os

    from scopeml.data import cache

    manifest, waves = pd.DataFrame({"path": ["a.wav", "b.wav"]}), np.zeros((2, 8), np.float32)
    path = tmp_path / "source-0123"
    real_replace = os.replace

    def the_other_job_lands_first(src, dst):
        if Path(dst) == path and not path.exists():
            monkeypatch.setattr(os, "replace", real_replace)
            cache.store(path, manifest, waves, {"by": "the other job"})
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", the_other_job_lands_first)
    cache.store(path, manifest, waves, {"by": "this job"})
    _, stored, info = cache.load(path)
    assert info == {"by": "the other job"} and stored.shape == (2, 8)
    assert [p.name for p in tmp_path.iterdir()] == ["source-0123"]  # no temporary folder left behind


def test_word_outside_the_classes_is_named(tmp_path):
    with pytest.raises(DataError, match=r"data.labels.map.*label 'stop'"):
        build_dataset(synth_cfg(tmp_path), ["yes", "no"], progress=False)


# ---------------------------------------------------------------- splits
def test_splits_are_disjoint_by_speaker_and_honour_explicit_lists():
    speakers = [f"s{i}" for i in range(10)]
    plan = assign_speakers(speakers, SplitConfig(val_fraction=0.2, test_fraction=0.2))
    assert sorted(plan) == speakers
    assert [list(plan.values()).count(s) for s in ("train", "val", "test")] == [6, 2, 2]
    plan = assign_speakers(speakers, SplitConfig(test_speakers=["s3"], val_speakers=["s4", "s5"]))
    assert plan["s3"] == "test" and plan["s4"] == plan["s5"] == "val"


def test_splits_reject_unknown_or_too_few_speakers():
    with pytest.raises(ValueError, match="data.split.test_speakers.*nobody"):
        assign_speakers(["a", "b", "c"], SplitConfig(test_speakers=["nobody"]))
    with pytest.raises(ValueError, match="at least 3 speakers"):
        assign_speakers(["a", "b"], SplitConfig())


# ---------------------------------------------------------------- audio shaping
def test_prepare_downmixes_resamples_and_fixes_length(tmp_path):
    path = write_wav(tmp_path / "stereo.wav", seconds=0.5, sr=8000, channels=2)
    samples, sr = read_audio(path)
    assert samples.shape == (2, 4000) and sr == 8000
    out = prepare_clip(samples, sr, PreprocessConfig(sample_rate=16000, clip_seconds=1.0))
    assert out.shape == (16000,)
    assert np.abs(out[:3000]).max() == 0 and np.abs(out[6000:10000]).max() > 0.1  # centred
    assert fix_length(np.ones(20000, np.float32), 16000).shape == (16000,)


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"", "empty (zero-length) file"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "not readable audio"),
        (b"hello world" * 10, "not readable audio"),
    ],
    ids=["zero-length", "corrupt-header", "not-audio"],
)
def test_unreadable_audio_names_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError) as info:
        read_audio(path)
    assert str(path) in str(info.value) and problem in str(info.value)


def test_nan_samples_are_refused(tmp_path):
    import soundfile as sf

    path = tmp_path / "nan.wav"
    sf.write(path, np.array([0.1, np.nan, 0.2] * 100, dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        read_audio(path)


# ---------------------------------------------------------------- FSDD layout and errors
def test_fsdd_layout_builds_with_speaker_splits(fsdd_layout, tmp_path):
    data = build_dataset(
        fsdd_cfg(fsdd_layout, tmp_path, split=SplitConfig(test_speakers=["cyd"], val_speakers=["bob"])),
        DIGITS,
        progress=False,
    )
    assert len(data.manifest) == 12 and set(data.manifest["label"]) == {"zero", "one"}
    assert set(data.manifest.loc[data.manifest["split"] == "test", "speaker"]) == {"cyd"}


def test_missing_root_names_the_key(tmp_path):
    with pytest.raises(DataError, match=r"data.source.root: folder '.*nowhere' does not exist"):
        build_dataset(fsdd_cfg(tmp_path / "nowhere", tmp_path), DIGITS, progress=False)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty" / "recordings").mkdir(parents=True)
    with pytest.raises(DataError, match="no .wav files"):
        build_dataset(fsdd_cfg(tmp_path / "empty", tmp_path), DIGITS, progress=False)


def test_bad_files_are_all_named_or_skipped_as_configured(fsdd_layout, tmp_path):
    rec = fsdd_layout / "recordings"
    (rec / "1_ann_9.wav").write_bytes(b"")
    (rec / "0_bob_9.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(DataError) as info:
        build_dataset(fsdd_cfg(fsdd_layout, tmp_path), DIGITS, progress=False)
    assert "1_ann_9.wav" in str(info.value) and "0_bob_9.wav" in str(info.value) and "2 unusable" in str(info.value)
    data = build_dataset(fsdd_cfg(fsdd_layout, tmp_path, on_bad_file="skip"), DIGITS, progress=False)
    assert len(data.manifest) == 12


def test_label_outside_scoping_classes_names_the_file(fsdd_layout, tmp_path):
    write_wav(fsdd_layout / "recordings" / "7_ann_0.wav")
    with pytest.raises(DataError, match=r"7_ann_0.wav has label '7'"):
        build_dataset(
            fsdd_cfg(fsdd_layout, tmp_path, labels=LabelsConfig(map={"0": "zero", "1": "one"})), DIGITS, progress=False
        )


@pytest.mark.slow
def test_cli_data_error_fails_cleanly_and_never_looks_finished(tmp_path):
    run = tmp_path / "run"
    proc = train(run, "experiment=fsdd_digits", f"data.source.root={tmp_path / 'nowhere'}", "tracker=none")
    assert proc.returncode == 2  # bad input: the exit code of every command (scopeml.stage.ExitCode)
    assert "data.source.root" in proc.stderr and "Traceback" not in proc.stderr
    status = read_json(run / "status.json")
    assert status["status"] == "failed" and status["stage"] == "data"
    assert not (run / "metrics.json").exists()


# ---------------------------------------------------------------- the real recordings
@needs_fsdd
def test_fsdd_real_recordings_build_speaker_disjoint(tmp_path):
    cfg = fsdd_cfg(FSDD_ROOT, tmp_path, split=SplitConfig(val_speakers=["lucas"], test_speakers=["theo"]))
    data = build_dataset(cfg, DIGITS, progress=False)
    assert len(data.manifest) == 2000 and data.waves.shape == (2000, 16000)
    summary = data.summary()
    assert summary["test"]["speakers"] == ["theo"] and summary["val"]["speakers"] == ["lucas"]
    assert summary["train"]["speakers"] == ["george", "jackson"]
    assert all(n == 50 for n in summary["test"]["per_class"].values())
    assert (data.manifest["orig_sample_rate"] == 8000).all()
    from scopeml.data.fingerprint import hash_files
    from scopeml.data.fsdd import PINNED_SHA256, PINNED_SPEAKERS

    files = [p for p in (FSDD_ROOT / "recordings").glob("*.wav") if p.name.split("_")[1] in PINNED_SPEAKERS]
    assert hash_files(files, FSDD_ROOT) == PINNED_SHA256  # the download check would accept this copy


# ---------------------------------------------------------------- data sources: built-in and a user's alike
def test_a_built_in_data_set_is_an_ordinary_target_a_user_can_wrap(fsdd_layout, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    full = build_dataset(fsdd_cfg(fsdd_layout, tmp_path), DIGITS, progress=False)
    first = build_dataset(
        source_cfg(
            "tiny_source.FirstTakes", {"root": str(fsdd_layout)}, tmp_path, {"labels": LabelsConfig(map=DIGIT_MAP)}
        ),
        DIGITS,
        progress=False,
    )
    assert full.fingerprint["recipe"] == "fsdd" and first.fingerprint["recipe"] == "first_takes"
    assert len(full.manifest) == 12 and len(first.manifest) == 6
    assert set(first.manifest["take"]) == {0} and first.manifest["tag_first"].all()
    assert first.fingerprint["content_sha256"] != full.fingerprint["content_sha256"]  # over the files it read


def test_a_clip_the_source_marks_unusable_is_a_bad_file_and_reserved_fields_are_refused(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    cfg = source_cfg("tiny_source.Flawed", {}, tmp_path, {})
    with pytest.raises(DataError, match=r"(?s)1 unusable audio file.*c-broken: mic cut out"):
        build_dataset(cfg, ["yes", "no"], progress=False)
    kept = build_dataset(
        source_cfg("tiny_source.Flawed", {}, tmp_path, {"on_bad_file": "skip"}), ["yes", "no"], progress=False
    )
    assert len(kept.manifest) == 8 and "c-broken" not in set(kept.manifest["clip_id"])
    with pytest.raises(DataError, match=r"c3: metadata field\(s\) \['split'\] are columns scopeml writes itself"):
        build_dataset(source_cfg("tiny_source.Flawed", {"clash": True}, tmp_path, {}), ["yes", "no"], progress=False)


def test_a_built_in_sources_arguments_are_checked_when_built_naming_the_key(tmp_path):
    from scopeml.config import ConfigError

    with pytest.raises(
        ConfigError,
        match=r"data.source: building scopeml.data.synth.SynthKeywords failed: .*pitches: eSpeak pitch is 0..99",
    ):
        build_dataset(synth_cfg(tmp_path, pitches=[120]), ["yes", "no", "stop"], progress=False)

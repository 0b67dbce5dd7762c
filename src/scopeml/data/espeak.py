"""Word-level speech synthesis through the eSpeak NG C library shipped by ``espeakng-loader``.

eSpeak NG keeps synthesis state in C statics (pitch-flutter phase, automatic gain control,
echo buffer, cycle counters) that no public call resets, so a second identical call in the
same process returns different samples. To make ``synthesize`` a pure function we load a
fresh, private copy of the library for every call and unload it afterwards (~1 ms/word).
"""

from __future__ import annotations

import _ctypes  # ctypes has no public way to unload a library
import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["EspeakError", "sample_rate", "list_voices", "synthesize"]


class EspeakError(RuntimeError):
    """The eSpeak NG library is missing, failed to initialize, or rejected a request."""


# Constants from espeak-ng/speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit() inside the library
_POS_CHARACTER = 1
_CHARS_AUTO = 0  # UTF-8 when valid, 8-bit otherwise
_ENDPAUSE = 0x1000
_RATE, _PITCH, _RANGE = 1, 3, 4
_RATE_MIN, _RATE_MAX = 80, 450

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

_lock = threading.Lock()  # the library is not thread-safe, and _chunks is shared
_chunks: list[np.ndarray] = []
_pid: int | None = None  # process that owns _lib_path/_memfd; a fork/spawn child builds its own
_lib_path = ""
_data_path = ""
_memfd: int | None = None
_sample_rate: int | None = None
_voices: dict[str, list[str]] = {}
_lang_files: dict[str, str] = {}  # language name -> path under espeak-ng-data/lang


def _on_chunk(wav, numsamples, _events) -> int:
    if numsamples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())  # buffer is reused
    return 0  # 0 = keep synthesizing


_callback = _CALLBACK(_on_chunk)  # module-level so ctypes never frees the trampoline


def _reset_after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # a lock held by another thread at fork time would never be released


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _prepare() -> None:
    """Locate library and data once per process (caller holds _lock)."""
    global _pid, _lib_path, _data_path, _memfd, _sample_rate, _voices, _lang_files
    if _pid == os.getpid():
        return
    try:
        import espeakng_loader
    except ImportError as exc:
        raise EspeakError(
            "espeakng_loader is not importable; `pip install espeakng-loader` provides libespeak-ng and its voice data"
        ) from exc
    src = espeakng_loader.get_library_path()
    try:
        _data_path = espeakng_loader.get_data_path()
        lib_bytes = Path(src).read_bytes()
    except (OSError, RuntimeError) as exc:
        raise EspeakError(
            f"cannot read eSpeak NG library/data at {src}: {exc}; `pip install espeakng-loader` provides them"
        ) from exc
    _lib_path = src
    if sys.platform.startswith("linux") and hasattr(os, "memfd_create"):
        # A private in-memory copy has its own inode, so dlopen gives us our own instance even if
        # another package (e.g. a phonemizer) keeps the original .so loaded; that one we could not
        # unload, and its state would leak into ours.
        if _memfd is not None:
            os.close(_memfd)  # the parent's copy, inherited through fork
        _memfd = os.memfd_create("libespeak-ng.so", 0)
        view = memoryview(lib_bytes)
        while view:  # os.write may write less than asked
            view = view[os.write(_memfd, view) :]
        _lib_path = f"/proc/self/fd/{_memfd}"
    lang_dir = Path(_data_path) / "lang"
    _lang_files = {f.name: f.relative_to(lang_dir).as_posix() for f in lang_dir.rglob("*") if f.is_file()}
    _pid, _sample_rate, _voices = os.getpid(), None, {}


@contextlib.contextmanager
def _engine() -> Iterator[tuple[ctypes.CDLL, int]]:
    """A freshly loaded, initialized library, unloaded afterwards so the next call starts clean."""
    global _sample_rate
    _prepare()
    try:
        lib = ctypes.CDLL(_lib_path)
    except OSError as exc:
        raise EspeakError(
            f"cannot load eSpeak NG library from {_lib_path}: {exc}; `pip install espeakng-loader` provides it"
        ) from exc
    try:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, _data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}) with data path {_data_path}")
        _sample_rate = rate
        lib.espeak_SetSynthCallback(_callback)
        try:
            yield lib, rate
        finally:
            lib.espeak_Terminate()  # frees the phoneme data and dictionaries it malloc'ed
    finally:
        handle = lib._handle
        del lib
        # Really unmaps, since nothing else references this private copy.
        (_ctypes.FreeLibrary if sys.platform == "win32" else _ctypes.dlclose)(handle)


def sample_rate() -> int:
    """Output sample rate of the synthesizer (22050 normally); initializes the library on first call."""
    with _lock:
        if _sample_rate is None or _pid != os.getpid():
            with _engine():
                pass
        assert _sample_rate is not None
        return _sample_rate


def _variant_dir() -> Path:
    return Path(_data_path) / "voices" / "!v"


def list_voices(language: str = "en") -> list[str]:
    """Names usable with synthesize(): the base voice for `language` plus its variants.

    E.g. ["en", "en+Alex", ..., "en+f1", ..., "en+m7", ...], sorted, deterministic; [] for an
    unknown language. Variants come from espeak-ng-data/voices/!v and must load.
    """
    with _lock:
        _prepare()
        if language not in _voices:
            candidates = [language] + [f"{language}+{f.name}" for f in _variant_dir().iterdir() if f.is_file()]
            with _engine() as (lib, _):
                _voices[language] = sorted(v for v in candidates if lib.espeak_SetVoiceByName(v.encode()) == 0)
        return list(_voices[language])


def synthesize(
    text: str, voice: str = "en", pitch: int = 50, rate: int = 175, *, pitch_range: int | None = None
) -> np.ndarray:
    """Speak `text`; return mono float32 samples in [-1, 1] at sample_rate().

    pitch 0-100 (espeakPITCH), rate 80-450 words per minute (espeakRATE), pitch_range 0-100
    (espeakRANGE, eSpeak's default 50 when None). Same arguments give an identical array.
    """
    if not isinstance(voice, str):
        raise EspeakError(f"cannot set eSpeak voice {voice!r}: not a string")
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise ValueError(f"text must be a non-empty string without NUL characters, got {text!r}")
    for name, value, lo, hi in (
        ("pitch", pitch, 0, 100),
        ("rate", rate, _RATE_MIN, _RATE_MAX),
        ("pitch_range", 50 if pitch_range is None else pitch_range, 0, 100),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    encoded = text.encode("utf-8")
    with _lock:
        _prepare()
        base, _, variant = voice.partition("+")
        # eSpeak silently falls back to the base voice for an unknown variant; a typo should fail loudly.
        if variant and not (_variant_dir() / variant).is_file():
            raise EspeakError(f"cannot set eSpeak voice {voice!r}: no variant {variant!r} in {_variant_dir()}")
        with _engine() as (lib, _):
            # A bare name ("en") makes eSpeak scan all voices into a static list it never frees, which
            # leaks ~2 KB per fresh instance; the file path ("gmw/en") selects the same voice directly.
            name = _lang_files.get(base, base) + (f"+{variant}" if variant else "")
            if not base or lib.espeak_SetVoiceByName(name.encode()) != 0:
                raise EspeakError(f"cannot set eSpeak voice {voice!r}")
            # Explicit even though the engine is fresh: a voice file may carry its own defaults.
            lib.espeak_SetParameter(_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            lib.espeak_SetParameter(_RANGE, 50 if pitch_range is None else int(pitch_range), 0)
            _chunks.clear()
            try:
                status = lib.espeak_Synth(
                    encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_AUTO | _ENDPAUSE, None, None
                )
                if status != 0:
                    raise EspeakError(f"espeak_Synth failed with status {status} for voice {voice!r}")
                pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
            finally:
                _chunks.clear()
    return pcm.astype(np.float32) / np.float32(32768.0)

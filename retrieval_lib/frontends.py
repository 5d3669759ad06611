"""Audio front ends by name: the registry the pipeline, AudioCaps and the folder indexer use.

An audio front end (core.AudioFrontend) turns waveforms into fixed-size vectors and describes
itself for provenance: name, sample rate, output size, class names when it has them, and which
weights exactly. Registered here:

    passt-10s    the paper's PaSST-S (527 AudioSet logits; 10 s windows, 2.5 s hop)
    passt-20s    PaSST trained on 20 s inputs
    passt-30s    PaSST trained on 30 s inputs
    logmel-stats a small front end without learned weights: the mean and standard deviation of
                 64 log-mel bands (128 numbers per clip). It has no class names, so corpora
                 built with it have no tag branch (eq. 3-6). It exists to show what plugging in
                 another audio model takes, and as a fast stand-in in tests.

Plugging in another model (BEATs, EAT, a CLAP audio tower) is a subclass of core.AudioFrontend
that sets name / sample_rate / output_dim / class_names / pretrained and implements `embed`
(and `weights_id`), registered with `register_frontend("my-model", MyFrontend)`; then
`build_corpus(..., frontend="my-model")`, `index_folder(..., frontend=...)` and every check of
provenance work with it unchanged.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .audio import VARIANTS, make_passt, passt_settings
from .core import DEFAULT_AUDIO_FRONTEND, AudioFrontend, normalize_provenance, resolve_device

_REGISTRY: dict[str, Callable[..., AudioFrontend]] = {}
_SETTINGS: dict[str, Callable[..., dict]] = {}


def register_frontend(name: str, factory: Callable[..., AudioFrontend], *, replace: bool = False,
                      settings: Callable[..., dict] | None = None) -> None:
    """Make `make_frontend(name, ...)` call factory(pretrained=, device=, batch_size=,
    autocast=, seed=, progress=) (a factory may ignore the arguments it has no use for, but must
    accept them as keywords). settings(pretrained=, seed=), optional: what the front end's
    vectors depend on, computed without building it (see frontend_settings)."""
    if not isinstance(name, str) or not name.strip() or any(ch.isspace() for ch in name):
        raise ValueError(f"a front-end name is a non-empty word such as 'passt-10s', got {name!r}")
    if not callable(factory):
        raise ValueError(f"the factory of front end {name!r} must be callable, got {factory!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"front end {name!r} is already registered (pass replace=True to replace it)")
    _REGISTRY[name] = factory
    if settings is not None:
        _SETTINGS[name] = settings
    else:
        _SETTINGS.pop(name, None)


def frontend_settings(name: str, *, pretrained: bool = True, seed: int | None = None) -> dict | None:
    """What the vectors of front end `name` depend on, without building it (None when the
    front end cannot say without being built): lets a resumable job skip the build when every
    item is already done."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown audio front end {name!r}; registered: {', '.join(frontend_names())}")
    fn = _SETTINGS.get(name)
    return fn(pretrained=pretrained, seed=seed) if fn is not None else None


def frontend_names() -> list[str]:
    """The registered front-end names."""
    return sorted(_REGISTRY)


def make_frontend(name: str = DEFAULT_AUDIO_FRONTEND, *, pretrained: bool = True, device: Any = None,
                  batch_size: int | None = None, autocast: Any = None, seed: int | None = None,
                  progress: bool = False) -> AudioFrontend:
    """The front end registered as `name`, built on `device` (None: a GPU when there is one).

    pretrained=False builds it with random weights (seeded by `seed`; plumbing tests only).
    batch_size and autocast are the PaSST knobs (windows per forward pass; "fp16", "bf16",
    "fp32"). An unknown name is refused with the list of known ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown audio front end {name!r}; registered: {', '.join(frontend_names())}")
    frontend = _REGISTRY[name](pretrained=pretrained, device=device, batch_size=batch_size,
                               autocast=autocast, seed=seed, progress=progress)
    if not isinstance(frontend, AudioFrontend):
        raise TypeError(f"the factory of front end {name!r} returned a {type(frontend).__name__}, "
                        "not a core.AudioFrontend")
    return frontend


def frontend_of(record: dict, default: str | None = None) -> str | None:
    """The front-end name a provenance record (of any format) names, else `default`."""
    return normalize_provenance(record).get("audio_frontend") or default


def _passt_factory(variant: str) -> Callable[..., AudioFrontend]:
    def factory(*, pretrained=True, device=None, batch_size=None, autocast=None, seed=None,
                progress=False):
        return make_passt(variant, pretrained=pretrained, device=device, batch_size=batch_size,
                          autocast=autocast, seed=seed if not pretrained else None, progress=progress)
    return factory


def _passt_settings(variant: str) -> Callable[..., dict]:
    return lambda *, pretrained=True, seed=None: passt_settings(variant, pretrained, seed)


for _variant in VARIANTS:
    register_frontend(f"passt-{_variant}", _passt_factory(_variant), settings=_passt_settings(_variant))


class LogMelStats(AudioFrontend):
    """Mean and standard deviation over time of 64 log-mel bands (25 ms windows, 10 ms hop):
    128 numbers per clip, no learned weights, no class names. Small and fast; a baseline a
    student can beat, and a template for wrapping another audio model."""

    name = "logmel-stats"
    sample_rate = 32000
    n_mels = 64
    output_dim = 2 * n_mels
    class_names = None
    pretrained = False

    def __init__(self, device: Any = None):
        import torchaudio

        self.device = resolve_device(device)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=self.sample_rate, n_fft=1024, win_length=800, hop_length=320,
            n_mels=self.n_mels).to(self.device)

    def embed(self, waveforms) -> np.ndarray:
        import torch

        out = np.zeros((len(waveforms), self.output_dim), dtype=np.float32)
        with torch.inference_mode():
            for i, w in enumerate(waveforms):
                x = torch.as_tensor(np.ascontiguousarray(w, dtype=np.float32), device=self.device)
                if x.ndim != 1 or x.numel() < 1024:
                    raise ValueError(f"clip {i}: expected a 1-d waveform of at least 1024 samples, "
                                     f"got shape {tuple(x.shape)}")
                logmel = torch.log(self.mel(x) + 1e-6)                   # (n_mels, frames)
                out[i] = torch.cat([logmel.mean(1), logmel.std(1)]).cpu().numpy()
        return out

    def weights_id(self) -> str:
        return "none:logmel-stats-v1"

    def details(self) -> dict:
        return {"n_mels": self.n_mels, "window_ms": 25, "hop_ms": 10,
                "aggregation": "mean and standard deviation over time of the log-mel bands"}


register_frontend("logmel-stats", lambda **kw: LogMelStats(device=kw.get("device")))


__all__ = ["register_frontend", "make_frontend", "frontend_names", "frontend_of", "frontend_settings",
           "LogMelStats"]

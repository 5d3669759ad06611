"""Audio encoder: PaSST logits (the 527-d e_l of the paper, section 2.2).

Three pieces:

* `load_audio` reads a WAV file into a mono float32 array at PaSST's 32 kHz (Clotho is 44.1 kHz).
* `build_passt` builds hear21passt's PaSST network wrapped for logit output, silently (hear21passt
  prints the whole model when it builds one).
* `PasstLogitExtractor` turns many clips into an (n, 527) array of pre-sigmoid logits with the
  windowing the paper used (hear21passt's scene embedding): a clip no longer than the model
  window is forwarded whole; a longer clip is reflect-padded by half a window on each side, cut
  into windows with a fixed hop, and its logits are the mean of the windows' logits. Unlike
  hear21passt, which runs the windows of one clip one forward pass at a time, the extractor packs
  windows of many clips into forward passes of `batch_size` windows, which is what makes
  extraction fast on a GPU. The numbers are those of hear21passt's `get_scene_embeddings`
  applied to each clip on its own (tests/test_audio.py checks it).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import numbers
import os
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .core import AudioError, AudioFrontend, resolve_device, sha256_file
from .tags import AUDIOSET_LABELS, N_TAGS

PASST_SR = 32000

# variant -> hear21passt architecture, input frames, model window and scene hop (ms).
# "10s" is the paper's model and windowing (10 s windows, 2.5 s hop). "20s" / "30s" are the
# PaSST models trained on 20 s / 30 s inputs; their hops are those hear21passt's base20sec /
# base30sec use. A 20s model sees a Clotho clip of 15-20 s in one pass and windows longer ones.
# weights_file: the release file hear21passt downloads for the variant; torch.hub keeps it as
# $TORCH_HOME/hub/checkpoints/<weights_file>, and its sha256 is recorded as the weights' identity.
VARIANTS = {
    "10s": {"arch": "passt_s_swa_p16_128_ap476", "input_tdim": 998, "window_ms": 10000, "hop_ms": 2500,
            "weights_file": "passt-s-f128-p16-s10-ap.476-swa.pt"},
    "20s": {"arch": "passt_20sec", "input_tdim": 2000, "window_ms": 20000, "hop_ms": 5000,
            "weights_file": "passt-s-f128-20sec-p16-s10-ap.474-swa.pt"},
    "30s": {"arch": "passt_30sec", "input_tdim": 3000, "window_ms": 30000, "hop_ms": 10000,
            "weights_file": "passt-s-f128-30sec-p16-s10-ap.473-swa.pt"},
}
# A float waveform whose peak exceeds this is not audio in [-1, 1] (integer PCM stored as float,
# or a wrong gain): refused instead of being sent to PaSST, whose mel front end expects [-1, 1].
MAX_FLOAT_PEAK = 16.0   # 24 dB over full scale

# PaSST's mel front end hops 320 samples and patches 16 frames: shorter input cannot form a patch.
MIN_SAMPLES = 16 * 320


# ---------------------------------------------------------------------------------------------
# Reading audio
# ---------------------------------------------------------------------------------------------

def wav_truncation(path: "str | os.PathLike") -> str | None:
    """None for a complete file; for a WAV whose data chunk is shorter than its header says
    (an interrupted copy or download), a sentence saying how much is missing.

    libsndfile reads such a file silently as a shorter clip; only the header tells. Files
    that are not RIFF/WAVE are not judged here (None).
    """
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos, block_align, rate = 12, None, None
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"fmt " and chunk_size >= 16:
                _, _, rate, _, block_align = struct.unpack("<HHIIH", f.read(14))
            if chunk_id == b"data":
                available = size - (pos + 8)
                if chunk_size in (0, 0xFFFFFFFF) or chunk_size <= available:
                    return None         # complete, or a streamed header with no size
                if block_align and rate:
                    declared = chunk_size / block_align / rate
                    held = available / block_align / rate
                    return (f"the WAV header declares {declared:.2f} s of audio but the file holds "
                            f"only {held:.2f} s (truncated copy or download?)")
                return (f"the WAV header declares {chunk_size} bytes of audio but the file holds "
                        f"only {available} (truncated copy or download?)")
            pos += 8 + chunk_size + (chunk_size & 1)
    return None


def load_audio(path: "str | os.PathLike", target_sr: int = PASST_SR, resample: bool = True) -> np.ndarray:
    """Read an audio file as a 1-d float32 array at `target_sr`.

    Multichannel files are averaged to mono (PaSST takes one channel; Clotho is mono anyway).
    A file at another rate is resampled with torchaudio.functional.resample (bandlimited sinc),
    or refused when resample=False. Missing, unreadable, truncated (a WAV holding less audio
    than its header declares), empty or NaN-containing files raise AudioError naming the file,
    so a bad clip is never silently turned into zeros or a shorter clip.
    """
    import soundfile as sf

    if not isinstance(path, (str, os.PathLike)):
        raise AudioError(f"load_audio takes a file path, got {type(path).__name__}")
    if isinstance(target_sr, bool) or not isinstance(target_sr, numbers.Integral) or target_sr < 1000:
        raise ValueError(f"target_sr must be a sample rate in Hz (an integer >= 1000, PaSST: "
                         f"{PASST_SR}), got {target_sr!r}")
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        truncated = wav_truncation(path)
    except (OSError, struct.error) as err:
        raise AudioError(f"{path}: cannot read the WAV header ({err})") from err
    if truncated:
        raise AudioError(f"{path}: {truncated}")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)   # (frames, channels)
    except Exception as err:  # libsndfile raises its own error types for corrupt files
        raise AudioError(f"{path}: cannot read audio ({type(err).__name__}: {err})") from err
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no audio samples")
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: the audio contains NaN or inf samples")
    peak = float(np.abs(wave).max())
    if peak > MAX_FLOAT_PEAK:
        raise AudioError(f"{path}: samples reach {peak:g}, far above full scale (1.0): a float file "
                         f"holding integer-scaled PCM or a wrong gain; rescale it to [-1, 1] "
                         f"(e.g. divide by 32768 for 16-bit values)")
    if sr != target_sr:
        if not resample:
            raise ValueError(f"{path}: sample rate is {sr} Hz but {target_sr} Hz is required "
                             f"(pass resample=True to convert it)")
        import torchaudio.functional as AF
        wave = AF.resample(torch.from_numpy(np.ascontiguousarray(wave)), int(sr), int(target_sr)).numpy()
    return np.ascontiguousarray(wave, dtype=np.float32)


def load_clip(path: "str | os.PathLike", sample_rate: int = PASST_SR, min_samples: int = 1) -> np.ndarray:
    """load_audio, refusing (AudioError naming the file) a clip shorter than `min_samples` at
    `sample_rate` (an audio front end's minimum: PaSST needs 0.16 s): what the extractions read."""
    wave = load_audio(path, sample_rate, resample=True)
    if wave.size < min_samples:
        raise AudioError(f"{path}: {wave.size / sample_rate:.3f} s is too short for the audio front "
                         f"end (at least {min_samples / sample_rate:.2f} s)")
    return wave


# ---------------------------------------------------------------------------------------------
# Building PaSST
# ---------------------------------------------------------------------------------------------

def default_device() -> str:
    """"cuda" when a GPU is available, else "cpu" (core.resolve_device(None) as a string)."""
    return str(resolve_device(None))


def weights_path(variant: str = "10s") -> Path:
    """Where torch.hub keeps (or will keep) the pretrained weights file of a PaSST variant."""
    spec = VARIANTS[_check_variant(variant)]
    return Path(torch.hub.get_dir()) / "checkpoints" / spec["weights_file"]


def _check_variant(variant) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown PaSST variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return variant


def build_passt(variant: str = "10s", pretrained: bool = True, device: "str | torch.device | None" = None,
                seed: int | None = None) -> torch.nn.Module:
    """PaSST wrapped by hear21passt's PasstBasicWrapper in "logits" mode, in eval mode.

    pretrained=True downloads the AudioSet weights from GitHub (cached by torch.hub);
    pretrained=False gives the same network with random weights (same cost, same code path),
    which is what offline tests use. `seed` makes the random initialisation reproducible
    without touching the global random state.
    """
    _check_variant(variant)
    device = resolve_device(device)
    # imported here: importing the library must stay cheap and side-effect free
    from hear21passt.models import passt as passt_models
    from hear21passt.models.preprocess import AugmentMelSTFT
    from hear21passt.wrapper import PasstBasicWrapper

    spec = VARIANTS[variant]
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng, contextlib.redirect_stdout(io.StringIO()):   # get_model prints the whole network
        if seed is not None:
            torch.manual_seed(seed)
        try:
            net = passt_models.get_model(arch=spec["arch"], pretrained=pretrained,
                                         input_tdim=spec["input_tdim"])
        except OSError as err:  # urllib's URLError and HTTPError are OSErrors
            raise RuntimeError(
                f"could not download the pretrained PaSST weights for variant {variant!r} "
                f"({spec['arch']}): {err}. Real extraction needs internet access once (the weights "
                f"are then cached by torch.hub); for offline tests use pretrained=False") from err
        # the mel front end of hear21passt.base.get_basic_model (augmentation is off in eval mode)
        mel = AugmentMelSTFT(n_mels=128, sr=PASST_SR, win_length=800, hopsize=320, n_fft=1024,
                             freqm=48, timem=192, htk=False, fmin=0.0, fmax=None, norm=1,
                             fmin_aug_range=10, fmax_aug_range=2000)
    # hear21passt prints tensor shapes during its first forward pass, guarded by this flag
    passt_models.first_RUN = False
    model = PasstBasicWrapper(mel=mel, net=net, mode="logits", max_model_window=spec["window_ms"],
                              scene_hop=spec["hop_ms"])
    return model.to(device).eval()


@contextlib.contextmanager
def _quiet_hear21passt():
    """Hide hear21passt's warnings that are expected here and not actionable by a user: inputs
    shorter than the nominal 10 s, and deprecated torch spellings (autocast, real-valued stft)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Input image size")
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*autocast.*")
        warnings.filterwarnings("ignore", message="stft with return_complex=False")
        yield


def mel_spectrogram(waveform: "np.ndarray | torch.Tensor",
                    model: "torch.nn.Module | PasstLogitExtractor") -> np.ndarray:
    """The log-mel spectrogram PaSST sees, (128, n_frames), for a 1-d waveform at 32 kHz.

    `model` is a wrapper from build_passt or a PasstLogitExtractor. The pre-emphasis filter
    drops one sample, so n samples give (n - 1) // 320 + 1 frames.
    """
    model = getattr(model, "model", model)
    x = _as_clip(waveform, "waveform")
    device = next(model.parameters()).device
    with torch.inference_mode(), _quiet_hear21passt():
        return model.mel(x.unsqueeze(0).to(device))[0].float().cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------

def _as_float_wave(waveform, what: str) -> np.ndarray:
    """A waveform as float32 in [-1, 1]: float input unchanged, integer PCM scaled by its
    dtype's range (int16 / 32768, int32 / 2**31, uint8: (x - 128) / 128). Paths, strings and
    other objects are refused with a message saying what was expected."""
    if isinstance(waveform, (str, bytes, os.PathLike)):
        raise ValueError(f"{what}: got a file path ({str(waveform)!r}), expected a waveform array; "
                         "read the file first with load_audio(path)")
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().cpu().numpy()
    arr = np.asarray(waveform)
    if arr.dtype.kind in "US" or arr.dtype == object:
        raise ValueError(f"{what}: expected a waveform of numbers, got an array of "
                         f"{'strings (file paths?)' if arr.dtype.kind in 'US' else 'objects'}; "
                         "read files with load_audio(path)")
    if arr.dtype == bool:
        raise ValueError(f"{what}: expected a waveform of numbers, got booleans")
    if arr.dtype.kind == "i":
        scale = float(2 ** (8 * arr.dtype.itemsize - 1))
        return (arr.astype(np.float64) / scale).astype(np.float32)
    if arr.dtype == np.uint8:
        return ((arr.astype(np.float64) - 128.0) / 128.0).astype(np.float32)
    if arr.dtype.kind == "u":
        raise ValueError(f"{what}: unsigned {arr.dtype} audio has no standard scale; convert it "
                         "to float in [-1, 1]")
    if arr.dtype.kind == "c":
        raise ValueError(f"{what}: expected a real waveform, got complex numbers")
    if arr.dtype.kind != "f":
        raise ValueError(f"{what}: expected a waveform of numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)    # also a reversed (negative-stride) view
    peak = float(np.abs(arr).max()) if arr.size and np.isfinite(arr).all() else 0.0
    if peak > MAX_FLOAT_PEAK:
        raise ValueError(f"{what}: samples reach {peak:g}, far above full scale (1.0): PaSST expects "
                         "float audio in [-1, 1]; rescale it (integer PCM: pass the integer array, "
                         "it is scaled by its type's range)")
    return arr


def _as_clip(waveform, what) -> torch.Tensor:
    x = torch.as_tensor(_as_float_wave(waveform, what))
    if x.ndim != 1:
        raise ValueError(f"{what}: expected a 1-d mono waveform, got shape {tuple(x.shape)}")
    if x.numel() < MIN_SAMPLES:
        raise ValueError(f"{what}: {x.numel()} samples is too short for PaSST "
                         f"(at least {MIN_SAMPLES} samples = {MIN_SAMPLES / PASST_SR:.2f} s at 32 kHz)")
    if not torch.isfinite(x).all():
        raise ValueError(f"{what}: waveform contains NaN or inf")
    return x


class PasstLogitExtractor(AudioFrontend):
    """Batched PaSST logit extraction with the paper's long-clip windowing: the audio front end
    "passt-10s" (and "passt-20s", "passt-30s"), 527 AudioSet logits per clip at 32 kHz.

    >>> ex = PasstLogitExtractor("10s", pretrained=False)        # doctest: +SKIP
    >>> ex.logits([np.zeros(32000 * 17, np.float32)]).shape    # doctest: +SKIP
    (1, 527)

    How clips are batched (and why the result equals the per-clip one):
    * clips longer than the model window are cut into windows that all have exactly the window
      length; windows of many clips are stacked into batches of `batch_size`, and each clip's
      logits are the mean of its windows' logits, as in hear21passt;
    * clips no longer than the window are forwarded whole, batched only with clips of the *same*
      length. Zero-padding a short clip to a longer one would change its logits (PaSST sees the
      padding as silence), so clips of different lengths never share a forward pass.
    PaSST has no batch-coupled layer in eval mode, so batching changes nothing but float rounding.

    amp: autocast the forward passes (float16 on CUDA, bfloat16 on CPU); default on for CUDA,
    off for CPU. Logits are returned as float32 either way.

    Identity (recorded in every cache, archive, index and checkpoint made from its logits): a
    pretrained network is identified by the sha256 of the weights file torch.hub loaded
    (`weights_path`), a random one by its seed and a fingerprint of its parameters.
    """

    sample_rate = PASST_SR
    output_dim = N_TAGS
    class_names = AUDIOSET_LABELS
    min_samples = MIN_SAMPLES

    def __init__(self, variant: str = "10s", pretrained: bool = True, device=None,
                 batch_size: int = 8, amp: bool | None = None, model=None, progress: bool = False,
                 seed: int | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.variant, self.pretrained = _check_variant(variant), bool(pretrained)
        self.name = f"passt-{variant}"
        self.seed = seed
        self.custom_model = model is not None
        if model is None:
            model = build_passt(variant, pretrained=pretrained, device=device, seed=seed)
        elif device is not None:
            model = model.to(resolve_device(device))
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.batch_size = int(batch_size)
        self.amp = (self.device.type == "cuda") if amp is None else bool(amp)
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        self.progress = progress
        # window and hop in samples, read from the wrapper so a hand-built model is honoured
        self.window = int(model.max_model_window)
        self.hop = int(model.scene_hop)

    def embed(self, waveforms) -> np.ndarray:
        """The front-end interface: (n, 527) logits of n waveforms at 32 kHz."""
        return self.logits(waveforms)

    def weights_file(self) -> Path | None:
        """The weights file a pretrained network was loaded from (None for a random or a
        hand-built network, or when the file is not where torch.hub keeps it)."""
        if not self.pretrained or self.custom_model:
            return None
        path = weights_path(self.variant)
        return path if path.is_file() else None

    def weights_id(self) -> str:
        """"sha256:<hex>" of the weights file loaded; for a random network
        "random:seed=<seed>:sha1=<fingerprint>"; for a hand-built one "params:sha1=<fingerprint>"."""
        if getattr(self, "_weights_id", None) is None:
            path = self.weights_file()
            if path is not None:
                self._weights_id = "sha256:" + sha256_file(path)
            elif not self.pretrained:
                self._weights_id = f"random:seed={self.seed}:sha1={self.weights_fingerprint()}"
            else:
                self._weights_id = f"params:sha1={self.weights_fingerprint()}"
        return self._weights_id

    def details(self) -> dict:
        out = {"variant": self.variant, "arch": VARIANTS[self.variant]["arch"],
               "windowing": {"window_s": self.window / PASST_SR, "hop_s": self.hop / PASST_SR,
                             "pad": "reflect, half a window each side, clips longer than the window",
                             "aggregation": "mean of pre-sigmoid window logits"},
               "amp": self.amp and str(self.amp_dtype).replace("torch.", "")}
        path = self.weights_file()
        if path is not None:
            out["weights_file"] = path.name
        return out

    def weights_fingerprint(self) -> str:
        """sha1 of the model's parameters (a short id of the exact weights)."""
        if getattr(self, "_fingerprint", None) is None:
            h = hashlib.sha1()
            with torch.no_grad():
                for name, p in self.model.state_dict().items():
                    h.update(name.encode())
                    h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def n_windows(self, n_samples: int) -> int:
        """Forward passes a clip of n_samples costs (1 if it fits the model window)."""
        if n_samples <= self.window:
            return 1
        pad = self.window // 2
        return (n_samples + 2 * pad - self.window) // self.hop + 1

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """(b, n_samples) waveforms -> (b, 527) float32 logits on the CPU."""
        batch = batch.to(self.device, non_blocking=True)
        with torch.inference_mode(), _quiet_hear21passt():
            if self.amp:
                with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                    out = self.model(batch)
            else:
                out = self.model(batch)
        return out.float().cpu()

    def _windows(self, clip: torch.Tensor):
        """The (n_windows, window) windows of a long clip, as hear21passt cuts them."""
        pad = self.window // 2
        padded = F.pad(clip.view(1, 1, -1), (pad, pad), mode="reflect").view(-1)
        return padded.unfold(0, self.window, self.hop)   # a view: no copy of the clip

    def logits(self, waveforms: "list[np.ndarray | torch.Tensor]", progress: bool | None = None) -> np.ndarray:
        """(n, 527) float32 pre-sigmoid logits of 1-d waveforms at 32 kHz.

        Float waveforms are used as they are (PaSST expects [-1, 1]); integer PCM (int16, ...)
        is scaled by its dtype's range. Paths are refused: read files with load_audio.
        """
        if isinstance(waveforms, (str, bytes, os.PathLike)):
            raise ValueError(f"logits() takes a list of waveforms, got a path ({str(waveforms)!r}); "
                             "read files with load_audio(path)")
        if isinstance(waveforms, (np.ndarray, torch.Tensor)) and waveforms.ndim == 1:
            raise ValueError("logits() takes a list of waveforms, not a single waveform")
        clips = [_as_clip(w, f"clip {i}") for i, w in enumerate(waveforms)]
        n = len(clips)
        out = np.zeros((n, N_TAGS), dtype=np.float32)
        if n == 0:
            return out
        show = self.progress if progress is None else progress
        bar = None
        if show:
            from tqdm.auto import tqdm
            bar = tqdm(total=sum(self.n_windows(c.numel()) for c in clips), desc="PaSST",
                       unit="window")

        # short clips: one forward pass each, batched by equal length
        by_len: dict = {}
        for i, c in enumerate(clips):
            if c.numel() <= self.window:
                by_len.setdefault(c.numel(), []).append(i)
        for idx in by_len.values():
            for s in range(0, len(idx), self.batch_size):
                chunk = idx[s:s + self.batch_size]
                out[chunk] = self._forward(torch.stack([clips[i] for i in chunk])).numpy()
                if bar is not None:
                    bar.update(len(chunk))

        # long clips: stream windows into full batches; keep each clip's window logits
        long_idx = [i for i, c in enumerate(clips) if c.numel() > self.window]
        per_clip = {i: [] for i in long_idx}
        pending, owners = [], []

        def flush():
            res = self._forward(torch.stack(pending))
            for owner, row in zip(owners, res):
                per_clip[owner].append(row)
            if bar is not None:
                bar.update(len(pending))
            pending.clear()
            owners.clear()

        for i in long_idx:
            for w in self._windows(clips[i]):
                pending.append(w)
                owners.append(i)
                if len(pending) == self.batch_size:
                    flush()
        if pending:
            flush()
        for i in long_idx:
            # stack-then-mean, the same reduction hear21passt applies to its window logits
            out[i] = torch.stack(per_clip[i]).mean(0).numpy()
        if bar is not None:
            bar.close()
        if not np.isfinite(out).all():
            bad = np.flatnonzero(~np.isfinite(out).all(axis=1)).tolist()
            raise FloatingPointError(f"PaSST produced NaN/inf logits for clips {bad[:10]}"
                                     + (" (try amp=False)" if self.amp else ""))
        return out


def windows_per_clip(seconds: float, variant: str = "10s") -> int:
    """How many forward passes a clip of `seconds` costs with a variant (for planning)."""
    spec = VARIANTS[variant]
    n = int(round(seconds * PASST_SR))
    window = spec["window_ms"] * PASST_SR // 1000
    hop = spec["hop_ms"] * PASST_SR // 1000
    return 1 if n <= window else (n + 2 * (window // 2) - window) // hop + 1


def passt_settings(variant: str = "10s", pretrained: bool = True, seed: int | None = None) -> dict:
    """What PaSST vectors depend on, computed without building the network (a resumable folder
    index checks it before deciding whether PaSST is needed at all): the front end's neutral
    provenance, with the weights identified by the sha256 of the weights file (pretrained) or by
    the seed (random)."""
    spec = VARIANTS[_check_variant(variant)]
    path = weights_path(variant)
    if pretrained:
        weights = "sha256:" + sha256_file(path) if path.is_file() else None
    else:
        weights = f"random:seed={seed}"
    window, hop = spec["window_ms"] / 1000, spec["hop_ms"] / 1000
    return {"audio_frontend": f"passt-{variant}", "audio_pretrained": bool(pretrained),
            "audio_weights": weights, "audio_dim": N_TAGS, "audio_sample_rate": PASST_SR,
            "audio_classes": N_TAGS, "audio_min_samples": MIN_SAMPLES,
            "audio": {"variant": variant, "arch": spec["arch"],
                      "windowing": {"window_s": window, "hop_s": hop}}}


AUTOCAST = {"fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16"}


def autocast_dtype(autocast, device_type: str):
    """None -> the default (float16 on CUDA, off on CPU); False / "fp32" / "off" -> off;
    True -> float16 on CUDA, bfloat16 on CPU; "fp16" / "bf16" -> that dtype. Returns a torch
    dtype or None (full float32)."""
    if autocast is None:
        return torch.float16 if device_type == "cuda" else None
    if autocast is False or (isinstance(autocast, str) and autocast.lower() in ("fp32", "float32", "off", "none")):
        return None
    if autocast is True:
        return torch.float16 if device_type == "cuda" else torch.bfloat16
    key = str(autocast).lower()
    if key not in AUTOCAST:
        raise ValueError(f"autocast must be None, True, False, 'fp32', 'fp16' or 'bf16', got {autocast!r}")
    return getattr(torch, AUTOCAST[key])


def make_passt(variant: str = "10s", pretrained: bool = True, device=None,
               batch_size: int | None = None, autocast=None, seed: int | None = None,
               progress: bool = False) -> PasstLogitExtractor:
    """A PasstLogitExtractor with the chapters' knobs: device (None = cuda when available),
    batch_size (windows per forward pass; None = 32 on CUDA, 8 on CPU) and autocast (see
    autocast_dtype). The logits come back as float32 whatever the autocast dtype."""
    _check_variant(variant)
    dev = resolve_device(device)
    if batch_size is None:
        batch_size = 32 if dev.type == "cuda" else 8
    dtype = autocast_dtype(autocast, dev.type)       # checked before PaSST is built
    extractor = PasstLogitExtractor(variant, pretrained=pretrained, device=dev,
                                    batch_size=batch_size, amp=dtype is not None, seed=seed,
                                    progress=progress)
    if dtype is not None:
        extractor.amp_dtype = dtype
    return extractor


__all__ = ["AudioError", "PASST_SR", "VARIANTS", "build_passt", "load_audio", "mel_spectrogram",
           "PasstLogitExtractor", "windows_per_clip", "default_device", "wav_truncation",
           "weights_path", "make_passt", "autocast_dtype", "MAX_FLOAT_PEAK", "passt_settings", "load_clip"]

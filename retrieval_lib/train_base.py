"""What both trainers share: configuration, results and checkpoints, and the training rules.

`train.train_naive` (the reference loop) and `fast_train.train_models` (many models at once)
both stand on this module and on nothing of each other:

* `TrainConfig`: one training run's settings, validated when built (the loss is a setting:
  `loss="triplet"` is eq. 7, `loss="infonce"` the symmetric InfoNCE, see retrieval_lib.loss);
* `TrainResult`: the weights of the selected epoch, the per-epoch history and what they
  belong to (architecture, corpus provenance in model-neutral keys); `save` / `load` write and
  read strict checkpoints that refuse a mismatch instead of evaluating garbage;
* the rules every trainer follows: `check_inputs` (what no trainer can use), `batches` (the
  minibatch boundaries), `stream_seed` (a model's random stream), `VAL_IMPOSTOR_SEED` (the
  validation loss's fixed draws), `EpochSelector` (which epoch's weights are kept).

Model selection (`TrainConfig.select`): "val_map" keeps the epoch with the best validation
mAP@10 (what this book recommends), "val_loss" the lowest validation loss, "last" the final
epoch, and "test_map" the best epoch *on the test split*. That last rule is what the paper's
numbers appear to come from: in the author's code (topel/IRIT-audio-retrieval-system-dcase2022),
`my_main.py` evaluates on the test split every epoch and the checkpoint names in
`my_main_test.py` carry test mAP values equal to the paper's; this is an inference from those
files, not a statement of the paper. Chapter 8 measures what the rule does to the numbers.

Checkpoint format 3 (this library) adds the loss to the config and records provenance in
model-neutral keys (text_model, text_dim, audio_frontend, audio_pretrained, audio_weights,
audio_dim, audio_classes). Formats 1 (no architecture, no provenance) and 2 (PaSST-specific
keys passt_variant, passt_pretrained, n_tags; no loss, which then means "triplet") still load
and are compared in the same keys.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .core import atomic_write, check_provenance, normalize_provenance, resolve_device
from .data import Corpus, RetrievalSplit
from .loss import get_loss, loss_names
from .metrics import retrieval_metrics, score
from .model import NORMS, AudioEncoder, load_state_checked

SELECT = ("val_map", "val_loss", "last", "test_map")
CHECKPOINT_FORMAT = 3
HISTORY_KEYS = ("train_loss", "val_loss", "val_map", "test_map", "lr")

# ---------------------------------------------------------------------------------------------
# Checked numbers
# ---------------------------------------------------------------------------------------------


def check_real(name: str, value: Any, low: float | None = None, high: float | None = None,
               low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within bounds, as a Python float; else ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    bounds = f"{lo}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{hi}"
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"{name} must be a finite number in {bounds}, got {value!r}")
    return value


def check_integer(name: str, value: Any, low: int) -> int:
    """An integer >= low as a Python int (numpy integers accepted; bools, floats such as 2.5
    or 2.0, and strings refused); else ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainConfig:
    """Settings of one training run; every field is checked when the config is built.

    norm and lam describe the paper's model (sections 4.1, 4.3); with a custom model
    (`train_naive(model=...)`) they are not used (they are still recorded). What the loss
    reads: "triplet" (eq. 7) reads `margin`; "infonce" reads `temperature` and
    `learn_temperature`. A field the chosen loss does not read keeps its value and is
    recorded, but changes nothing.
    """
    norm: str = "layer"           # "layer" (paper) | "batch" | "none"      (section 4.1)
    lam: float = 0.8              # audio weight in eq. 5; 1.0 = PaSST-MPnet without tags
    margin: float = 0.4           # eta in eq. 7                           (section 4.2)
    batch_size: int = 128
    epochs: int = 50
    lr: float = 1e-3              # Adam
    scheduler: bool = True        # ReduceLROnPlateau on validation loss; off for pretraining
    plateau_factor: float = 0.5   # in (0, 1): the lr is multiplied by it on a plateau
    plateau_patience: int = 5
    select: str = "val_map"       # which epoch to keep, see the module docstring
    seed: int = 0                 # >= 0: initial weights, batch order and impostors
    loss: str = "triplet"         # a registered loss: "triplet" (eq. 7) | "infonce"
    temperature: float = 0.05     # InfoNCE's temperature (its start when learned)
    learn_temperature: bool = False   # learn log(temperature) with the model (Adam, same lr)

    def __post_init__(self) -> None:
        if not isinstance(self.norm, str) or self.norm not in NORMS:
            raise ValueError(f"TrainConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if not isinstance(self.select, str) or self.select not in SELECT:
            raise ValueError(f"TrainConfig.select must be one of {SELECT}, got {self.select!r}")
        if not isinstance(self.loss, str) or self.loss not in loss_names():
            raise ValueError(f"TrainConfig.loss must be a registered loss, one of {loss_names()}, "
                             f"got {self.loss!r} (register another with retrieval_lib.loss.register_loss)")
        self.lam = check_real("TrainConfig.lam", self.lam, 0.0, 1.0)
        self.margin = check_real("TrainConfig.margin", self.margin, 0.0)
        self.lr = check_real("TrainConfig.lr", self.lr, 0.0, low_open=True)
        self.plateau_factor = check_real("TrainConfig.plateau_factor", self.plateau_factor, 0.0, 1.0,
                                         low_open=True, high_open=True)
        self.temperature = check_real("TrainConfig.temperature", self.temperature, 0.0, low_open=True)
        self.batch_size = check_integer("TrainConfig.batch_size", self.batch_size, 2)
        self.epochs = check_integer("TrainConfig.epochs", self.epochs, 1)
        self.plateau_patience = check_integer("TrainConfig.plateau_patience", self.plateau_patience, 0)
        self.seed = check_integer("TrainConfig.seed", self.seed, 0)
        if self.seed >= 2 ** 63:
            raise ValueError(f"TrainConfig.seed must be < 2**63, got {self.seed}")
        for name in ("scheduler", "learn_temperature"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"TrainConfig.{name} must be True or False, got {value!r}")
            setattr(self, name, bool(value))
        if self.learn_temperature and "temperature" not in self.reads:
            raise ValueError(f"TrainConfig.learn_temperature=True needs a loss that reads a temperature "
                             f"(e.g. 'infonce'); loss {self.loss!r} reads {list(self.reads)}")

    @property
    def reads(self) -> tuple:
        """The config fields the loss reads (beyond the model's and the optimiser's)."""
        return get_loss(self.loss).reads

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (validated like a new config)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {sorted(unknown)}")
        return TrainConfig(**{**asdict(self), **changes})

    def label(self) -> str:
        """A short human-readable description (for legends and progress bars)."""
        parts = [f"norm={self.norm}", f"lam={self.lam:g}"]
        if self.loss != "triplet":
            parts.insert(0, f"loss={self.loss}")
        if "margin" in self.reads:
            parts.append(f"margin={self.margin:g}")
        if "temperature" in self.reads:
            parts.append(f"tau={self.temperature:g}{' learned' if self.learn_temperature else ''}")
        return " ".join(parts + [f"seed={self.seed}"])


# ---------------------------------------------------------------------------------------------
# What a checkpoint belongs to
# ---------------------------------------------------------------------------------------------

# fields that must agree between a checkpoint and the corpus it is evaluated on; a field that
# one side does not record (None) is not compared
EMBEDDING_FIELDS = ("text_model", "text_dim", "audio_frontend", "audio_pretrained", "audio_weights",
                    "audio_dim", "audio_classes")
CORPUS_FIELDS = EMBEDDING_FIELDS + ("synthetic",)


def trained_provenance(record: Any) -> dict:
    """A checkpoint's provenance in model-neutral keys, whatever format wrote it: the keys of
    core.normalize_provenance, plus format 2's "n_tags" read as audio_classes."""
    p = normalize_provenance(record)
    if p.get("audio_classes") is None and p.get("n_tags") is not None:
        p["audio_classes"] = p["n_tags"]
    return p


def corpus_provenance(corpus: Corpus) -> dict:
    """What a model trained on `corpus` depends on, in model-neutral keys: the corpus' name and
    source, synthetic or real, the text model and its size, the audio front end, its weights
    and output size, and the number of class names (rows of W_t; 0 without a tag branch)."""
    p = normalize_provenance(corpus.provenance or {})
    return {"corpus": p.get("name") or p.get("dataset") or p.get("source"),
            "source": p.get("source"),
            "synthetic": bool(corpus.is_synthetic),
            "text_model": p.get("text_model"),
            "text_dim": int(corpus.dim),
            "audio_frontend": p.get("audio_frontend"),
            "audio_pretrained": p.get("audio_pretrained"),
            "audio_weights": p.get("audio_weights"),
            "audio_dim": int(corpus.audio_dim),
            "audio_classes": int(corpus.tag_emb.shape[0]) if corpus.has_tags else 0}


def check_trained_for(trained: dict, corpus: Corpus, fields_: Sequence[str] = CORPUS_FIELDS,
                      what: str = "checkpoint") -> None:
    """Raise core.ProvenanceMismatch (a ValueError) when a model trained on `trained` (a
    provenance record, any format) does not fit `corpus`; the message names both sides."""
    check_provenance(trained_provenance(trained), corpus_provenance(corpus), where=f"the {what}",
                     fields=fields_, have_label=f"{what} has", want_label="corpus has",
                     skip_missing=True,
                     hint=f"The {what} was trained on other embeddings than this corpus holds: use "
                          "the corpus it was trained on, or train a model on this one.")


def encoder_architecture(in_dim: int, out_dim: int, norm: str, state: dict) -> dict:
    """The architecture record of the paper's AudioEncoder with these sizes and norm."""
    return {"class": "AudioEncoder", "module": AudioEncoder.__module__, "in_dim": int(in_dim),
            "out_dim": int(out_dim), "norm": norm,
            "state": {k: list(torch.as_tensor(v).shape) for k, v in state.items()}}


def model_state(model: nn.Module) -> dict:
    """The state to save: on the CPU, without AudioEncoder's W_t (it comes from the corpus)."""
    skip = {"tag_emb"} if isinstance(model, AudioEncoder) else set()
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k not in skip}


def model_architecture(model: nn.Module, state: dict | None = None) -> dict:
    """How to rebuild `model`: its class, (for AudioEncoder) its sizes and norm, and the
    name and shape of every tensor of its state dict."""
    state = model_state(model) if state is None else state
    if isinstance(model, AudioEncoder):
        return encoder_architecture(model.in_dim, model.out_dim, model.norm_kind, state)
    return {"class": type(model).__qualname__, "module": type(model).__module__,
            "state": {k: list(v.shape) for k, v in state.items()}}


# ---------------------------------------------------------------------------------------------
# Results and checkpoints
# ---------------------------------------------------------------------------------------------

def _check_state(state: Any) -> dict:
    if not isinstance(state, dict) or not state:
        raise ValueError(f"field 'state_dict' must be a non-empty dict of tensors, got "
                         f"{type(state).__name__}{' (empty)' if isinstance(state, dict) else ''}")
    out = {}
    for k, v in state.items():
        if not isinstance(k, str):
            raise ValueError(f"field 'state_dict': tensor names must be strings, got {k!r}")
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            raise ValueError(f"field 'state_dict': {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v
    return out


def _check_history(history: Any) -> dict:
    if not isinstance(history, dict):
        raise ValueError(f"field 'history' must be a dict of per-epoch lists, got {type(history).__name__}")
    lengths = set()
    for k, v in history.items():
        if not isinstance(k, str) or not isinstance(v, (list, tuple)) or \
                not all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in v):
            raise ValueError(f"field 'history': {k!r} must be a list of numbers (one per epoch), "
                             f"got {type(v).__name__}")
        lengths.add(len(v))
    if len(lengths) > 1:
        raise ValueError(f"field 'history': the per-epoch lists differ in length {sorted(lengths)}")
    return {k: [float(x) for x in v] for k, v in history.items()}


@dataclass
class TrainResult:
    """A trained model: weights of the selected epoch, history, and what it belongs to.

    architecture: how to rebuild the model (see `model_architecture`); inferred for the
    paper's AudioEncoder when empty. provenance: the corpus it was trained on (see
    `corpus_provenance`); checked against a corpus by `check_corpus` and `load(corpus=...)`.
    history: per-epoch lists "train_loss", "val_loss", "val_map", "test_map" (NaN when not
    tracked), "lr", and "temperature" for a loss that reads one (its value after each
    epoch; a learned temperature moves).
    """
    config: TrainConfig
    state_dict: dict              # weights of the selected epoch (AudioEncoder: without W_t)
    history: dict = field(default_factory=dict)   # per-epoch lists
    best_epoch: int = -1          # 0-based index into history lists (-1: no history)
    architecture: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"field 'config' must be a TrainConfig, got {type(self.config).__name__}")
        self.state_dict = _check_state(self.state_dict)
        self.history = _check_history(self.history)
        n_epochs = len(next(iter(self.history.values()))) if self.history else 0
        if isinstance(self.best_epoch, (bool, np.bool_)) or not isinstance(self.best_epoch, numbers.Integral):
            raise ValueError(f"field 'best_epoch' must be an integer, got {self.best_epoch!r} "
                             f"({type(self.best_epoch).__name__})")
        self.best_epoch = int(self.best_epoch)
        if n_epochs and not 0 <= self.best_epoch < n_epochs:
            raise ValueError(f"field 'best_epoch' is {self.best_epoch}, outside the {n_epochs} "
                             f"epochs of the history (0 to {n_epochs - 1})")
        if not n_epochs and self.best_epoch < -1:
            raise ValueError(f"field 'best_epoch' must be >= -1, got {self.best_epoch}")
        for name in ("architecture", "provenance"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"field {name!r} must be a dict, got {type(getattr(self, name)).__name__}")
        if not self.architecture:
            w = self.state_dict.get("linear.weight")
            if w is None:
                raise ValueError("a state without 'linear.weight' is not an AudioEncoder: pass "
                                 "architecture= (train_naive records it)")
            self.architecture = encoder_architecture(w.shape[1], w.shape[0], self.config.norm,
                                                     self.state_dict)
        shapes = {k: list(v.shape) for k, v in self.state_dict.items()}
        recorded = self.architecture.get("state")
        if recorded is not None and recorded != shapes:
            raise ValueError(f"state_dict does not match the recorded architecture: state "
                             f"{shapes} vs architecture {recorded}")
        if self.architecture.get("class") == "AudioEncoder" and \
                self.architecture.get("norm") != self.config.norm:
            raise ValueError(f"architecture norm {self.architecture.get('norm')!r} vs config "
                             f"norm {self.config.norm!r}")

    @property
    def is_audio_encoder(self) -> bool:
        """True when the weights are those of the paper's AudioEncoder."""
        return self.architecture.get("class") == "AudioEncoder"

    @property
    def temperature(self) -> float | None:
        """The loss's temperature at the selected epoch (learned or fixed), None for a loss
        without one (or a result without history)."""
        values = self.history.get("temperature")
        if not values or self.best_epoch < 0:
            return None
        return float(values[self.best_epoch])

    def build_model(self, tag_emb: "np.ndarray | torch.Tensor | None" = None, in_dim: int | None = None,
                    model: nn.Module | None = None) -> nn.Module:
        """The trained model in eval mode, its weights loaded strictly.

        For the paper's AudioEncoder pass W_t (`tag_emb`, (n_classes, d)); it may be None
        only for a model without the tag branch (lam = 1). For a custom model pass an
        instance of its class (`model=`), whose state must match the checkpoint exactly.
        Raises ValueError (naming both sides) on any mismatch of class, names or shapes.
        """
        arch = self.architecture
        if model is None:
            if not self.is_audio_encoder:
                raise ValueError(f"this result holds a {arch.get('class')} model, not an "
                                 f"AudioEncoder: pass model={arch.get('class')}(...) to rebuild it")
            if in_dim is not None and in_dim != arch["in_dim"]:
                raise ValueError(f"in_dim {in_dim} vs the checkpoint's {arch['in_dim']}")
            if tag_emb is None:
                if self.config.lam != 1.0:
                    raise ValueError(f"build_model needs tag_emb (W_t, e.g. corpus.tag_emb): this model "
                                     f"fuses tag embeddings (lam={self.config.lam:g})")
            else:
                tag_emb = np.asarray(tag_emb, dtype=np.float32)
                want = (arch["in_dim"], arch["out_dim"])
                if tag_emb.shape != want:
                    raise ValueError(f"tag_emb is {tag_emb.shape} but the checkpoint's model needs "
                                     f"{want} (tags x text size it was trained with)")
            model = AudioEncoder(in_dim=arch["in_dim"], out_dim=arch["out_dim"], norm=arch["norm"],
                                 tag_emb=tag_emb, lam=self.config.lam)
        elif not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        elif type(model).__qualname__ != arch.get("class"):
            raise ValueError(f"the checkpoint holds a {arch.get('class')} model but model= is a "
                             f"{type(model).__qualname__}")
        load_state_checked(model, self.state_dict, ignore=("tag_emb",) if
                           isinstance(model, AudioEncoder) else ())
        return model.eval()

    @torch.no_grad()
    def embed_audio(self, split: RetrievalSplit, tag_emb: "np.ndarray | torch.Tensor | None" = None,
                    model: nn.Module | None = None,
                    device: "str | torch.device | None" = None) -> torch.Tensor:
        """Audio embeddings (n_clips, d) of a split's clips, on the CPU."""
        dev = resolve_device(device if device is not None else "cpu")
        net = self.build_model(tag_emb, model=model).to(dev)
        return net(torch.from_numpy(split.logits).to(dev)).float().cpu()

    def scores(self, split: RetrievalSplit, tag_emb: "np.ndarray | torch.Tensor | None" = None,
               model: nn.Module | None = None,
               device: "str | torch.device | None" = None) -> torch.Tensor:
        """(n_captions, n_clips) scores: `metrics.score` of the captions and the clips."""
        return score(split.text_emb, self.embed_audio(split, tag_emb, model, device))

    def evaluate(self, split: RetrievalSplit, tag_emb: "np.ndarray | torch.Tensor | None" = None,
                 model: nn.Module | None = None,
                 device: "str | torch.device | None" = None) -> dict:
        """metrics.retrieval_metrics on a split (mAP@10, R@1, R@5, R@10, ...), one relevant
        clip per caption."""
        return retrieval_metrics(self.scores(split, tag_emb, model, device), split.caption_clip)

    def check_corpus(self, corpus: Corpus) -> None:
        """Refuse (ValueError naming both sides) a corpus this model was not trained for."""
        check_trained_for(self.provenance, corpus)

    def save(self, path: "str | os.PathLike") -> Path:
        """Write a checkpoint atomically (core.atomic_write: complete or not at all; a folder
        at `path` is refused before anything is written): weights, config, history,
        architecture, provenance."""
        blob = {"format": CHECKPOINT_FORMAT, "config": asdict(self.config),
                "state_dict": {k: v.detach().cpu() for k, v in self.state_dict.items()},
                "history": self.history, "best_epoch": int(self.best_epoch),
                "architecture": self.architecture, "provenance": self.provenance}
        return atomic_write(path, lambda f: torch.save(blob, f))

    @classmethod
    def load(cls, path: "str | os.PathLike", corpus: Corpus | None = None) -> "TrainResult":
        """Read a checkpoint (format 1, 2 or 3) strictly; with `corpus`, also refuse one
        trained on other embeddings (text model, audio front end and weights, sizes,
        synthetic vs real). Malformed metadata raises ValueError naming the file and field."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:   # truncated or foreign files raise many error types
            raise ValueError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from err
        if not isinstance(blob, dict) or "state_dict" not in blob or "config" not in blob:
            raise ValueError(f"{path}: not a retrieval_lib checkpoint (no config / state_dict)")
        fmt = blob.get("format", 1)
        if isinstance(fmt, (bool, np.bool_)) or not isinstance(fmt, numbers.Integral) or fmt < 1:
            raise ValueError(f"{path}: field 'format' must be an integer >= 1, got {fmt!r} "
                             f"({type(fmt).__name__})")
        if fmt > CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: checkpoint format {fmt} is newer than this library's "
                             f"{CHECKPOINT_FORMAT}: update retrieval_lib to read it")
        config = blob["config"]
        if not isinstance(config, dict):
            raise ValueError(f"{path}: field 'config' must be a dict of TrainConfig fields, got "
                             f"{config!r} ({type(config).__name__})")
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"{path}: unknown config field(s) {sorted(map(str, unknown))}")
        try:
            result = cls(TrainConfig(**config), blob["state_dict"], blob.get("history", {}),
                         blob.get("best_epoch", -1), blob.get("architecture", {}),
                         blob.get("provenance", {}))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        result.provenance = trained_provenance(result.provenance) if result.provenance else {}
        if corpus is not None:
            try:
                result.check_corpus(corpus)
            except ValueError as err:
                raise type(err)(f"{path}: {err}") from err
        return result


# ---------------------------------------------------------------------------------------------
# The rules both trainers follow
# ---------------------------------------------------------------------------------------------

def stream_seed(seeds: "Iterable[int]") -> int:
    """Seed of a model's data stream (batch order, impostors), derived from its config seed."""
    seeds = [int(s) for s in seeds]
    return int(np.random.SeedSequence([len(seeds), *seeds]).generate_state(1)[0])


# The validation loss uses the same draws (impostors) for every model and every epoch: they
# are part of the validation set's definition, not of a model, so models stay comparable.
VAL_IMPOSTOR_SEED = 20220901


def _n_caption_clips(split: RetrievalSplit) -> int:
    return int(np.unique(split.caption_clip).size)


def check_inputs(corpus: Corpus, configs: "Sequence[TrainConfig]", track_test: bool = False) -> None:
    """Refuse a corpus / config list no trainer can use, naming the problem: empty splits, a
    split whose captions all belong to one clip (no impostor, no negative, and a validation
    mAP@10 of 1.0 at every epoch), a test split of one clip when it is tracked, lam < 1 on
    a corpus without tag embeddings."""
    if not isinstance(corpus, Corpus):
        raise ValueError(f"corpus must be a data.Corpus, got {type(corpus).__name__}")
    configs = list(configs)
    if not configs:
        raise ValueError("no configuration to train")
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise ValueError(f"configs must be TrainConfig objects, got {type(c).__name__}")
    with_test = track_test or any(c.select == "test_map" for c in configs)
    for split in corpus.splits():
        if split.n_captions == 0:
            raise ValueError(f"split {split.name!r} has no caption")
    for split, why in ((corpus.train, "impostors and negatives come from other clips"),
                       (corpus.val, "its mAP@10 would be 1.0 at every epoch and its loss has no "
                                    "negative, so it cannot select an epoch")):
        if _n_caption_clips(split) < 2:
            raise ValueError(f"split {split.name!r}: its captions all belong to one clip ({why}); it "
                             f"needs captions of at least two clips")
    if with_test and _n_caption_clips(corpus.test) < 2:
        raise ValueError(f"split {corpus.test.name!r} (tracked as the test split): its captions all "
                         "belong to one clip, so its mAP@10 would be 1.0 at every epoch; it needs "
                         "captions of at least two clips")
    if not corpus.has_tags:
        bad = [c.label() for c in configs if c.lam != 1.0]
        if bad:
            raise ValueError("this corpus has no tag embeddings (tag_emb is None: its audio front end "
                             "has no class names), so only lam = 1.0 can be trained (eq. 5 has no e_t); "
                             f"got {bad[:3]}{' ...' if len(bad) > 3 else ''}")


def batches(n: int, batch_size: int) -> list:
    """Batch boundaries [(start, end)]; a final batch of one pair is dropped (BatchNorm cannot
    use it, and eq. 7 needs an impostor)."""
    starts = range(0, n, batch_size)
    return [(s, min(s + batch_size, n)) for s in starts if min(s + batch_size, n) - s >= 2]


def epoch_criterion(select: str, epoch: int, val_loss: float, val_map: float, test_map: float) -> float:
    """The number `select` minimises over epochs (see the module docstring)."""
    return {"val_map": -val_map, "val_loss": val_loss, "last": -epoch, "test_map": -test_map}[select]


class EpochSelector:
    """Which epoch's weights one model keeps: the first epoch with the lowest criterion."""

    def __init__(self, select: str):
        if select not in SELECT:
            raise ValueError(f"select must be one of {SELECT}, got {select!r}")
        self.select, self.best, self.best_epoch = select, math.inf, -1

    def update(self, epoch: int, val_loss: float, val_map: float, test_map: float) -> bool:
        """Record an epoch's numbers; True when it is the best so far (keep its weights)."""
        crit = epoch_criterion(self.select, epoch, float(val_loss), float(val_map), float(test_map))
        if self.best_epoch < 0 or crit < self.best:
            self.best, self.best_epoch = crit, epoch
            return True
        return False


def new_history(config: TrainConfig) -> dict:
    """The empty per-epoch history of a run with `config`."""
    keys = HISTORY_KEYS + (("temperature",) if "temperature" in config.reads else ())
    return {k: [] for k in keys}


__all__ = ["TrainConfig", "TrainResult", "SELECT", "CHECKPOINT_FORMAT", "HISTORY_KEYS", "EMBEDDING_FIELDS",
           "CORPUS_FIELDS", "trained_provenance", "corpus_provenance", "check_trained_for",
           "encoder_architecture", "model_architecture", "model_state", "stream_seed", "VAL_IMPOSTOR_SEED",
           "check_inputs", "batches", "epoch_criterion", "EpochSelector", "new_history", "check_real",
           "check_integer", "resolve_device"]

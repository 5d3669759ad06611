"""Training the audio projection (paper section 3.2) and evaluating it.

This module holds what every trainer shares, and the reference loop:

* `TrainConfig`: one training run's settings, validated when it is built;
* `TrainResult`: the weights of the selected epoch, the per-epoch history, and what they
  belong to (architecture, corpus provenance and text model); `save` / `load` write and read
  strict checkpoints that refuse a mismatch instead of evaluating garbage;
* `train_naive`: the straightforward PyTorch loop a student would write, and the readable
  reference. It takes any model (`model=`, an nn.Module mapping PaSST logits (B, 527) to
  embeddings (B, d)) and any loss with the triplet loss's signature (`loss_fn=`), so a
  homework variant (a two-layer projection, an InfoNCE loss) is a few lines, not a new loop.

The fast trainer, `train_models` (many configurations of the paper's model at once), lives in
`retrieval_lib.fast_train` and is re-exported here, so `from retrieval_lib.train import
train_models` keeps working. It trains only the paper's model and loss; anything else goes
through `train_naive`.

Both trainers run on CUDA when it is available (`device=None`), or where `device` says. Their
random streams (initial weights, batch order, impostors) are drawn from CPU generators and
then moved to the device, so a CUDA run sees exactly the batches and impostors of a CPU run;
only float rounding differs.

Model selection: `select="val_map"` keeps the epoch with the best validation mAP@10 (what this
book recommends), "val_loss" the lowest validation loss, "last" the final epoch, and
"test_map" the best epoch *on the test split*, as the paper's original code did (chapter 8
measures how much that flatters the numbers).
"""
from __future__ import annotations

import copy
import inspect
import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .data import Corpus, RetrievalSplit
from .loss import triplet_loss
from .metrics import retrieval_metrics, score
from .model import NORMS, AudioEncoder, load_state_checked
from .core import canonical_text_model
from .text import query_embedding

SELECT = ("val_map", "val_loss", "last", "test_map")
CHECKPOINT_FORMAT = 2
_FAST_NAMES = ("train_models", "train_model", "plateau_update")


def __getattr__(name: str):
    """Re-export the fast trainer (imported lazily: fast_train itself imports this module)."""
    if name in _FAST_NAMES:
        from . import fast_train
        return getattr(fast_train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------

def _real(name: str, value, low: float | None = None, high: float | None = None,
          low_open: bool = False, high_open: bool = False) -> float:
    """A finite real number within bounds, as a Python float; else ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"TrainConfig.{name} must be a number, got {value!r}")
    value = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    bounds = f"{lo}{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}{hi}"
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ValueError(f"TrainConfig.{name} must be a finite number in {bounds}, got {value!r}")
    return value


def _integer(name: str, value, low: int) -> int:
    """An integer >= low (numpy integers accepted, floats such as 2.5 or 2.0 refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"TrainConfig.{name} must be an integer, got {value!r} "
                         f"({type(value).__name__})")
    if value < low:
        raise ValueError(f"TrainConfig.{name} must be >= {low}, got {value}")
    return int(value)


@dataclass
class TrainConfig:
    """Settings of one training run; every field is checked when the config is built.

    norm, lam and margin describe the paper's model (sections 4.1-4.3). With a custom model
    (`train_naive(model=...)`) norm and lam are not used (they are still recorded).
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

    def __post_init__(self) -> None:
        if not isinstance(self.norm, str) or self.norm not in NORMS:
            raise ValueError(f"TrainConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if not isinstance(self.select, str) or self.select not in SELECT:
            raise ValueError(f"TrainConfig.select must be one of {SELECT}, got {self.select!r}")
        self.lam = _real("lam", self.lam, 0.0, 1.0)
        self.margin = _real("margin", self.margin, 0.0)
        self.lr = _real("lr", self.lr, 0.0, low_open=True)
        self.plateau_factor = _real("plateau_factor", self.plateau_factor, 0.0, 1.0,
                                    low_open=True, high_open=True)
        self.batch_size = _integer("batch_size", self.batch_size, 2)
        self.epochs = _integer("epochs", self.epochs, 1)
        self.plateau_patience = _integer("plateau_patience", self.plateau_patience, 0)
        self.seed = _integer("seed", self.seed, 0)
        if self.seed >= 2 ** 63:
            raise ValueError(f"TrainConfig.seed must be < 2**63, got {self.seed}")
        if not isinstance(self.scheduler, (bool, np.bool_)):
            raise ValueError(f"TrainConfig.scheduler must be True or False, got {self.scheduler!r}")
        self.scheduler = bool(self.scheduler)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (validated like a new config)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"TrainConfig has no field(s) {sorted(unknown)}")
        return TrainConfig(**{**asdict(self), **changes})

    def label(self) -> str:
        """A short human-readable description (for legends and progress bars)."""
        return f"norm={self.norm} lam={self.lam:g} margin={self.margin:g} seed={self.seed}"


# ---------------------------------------------------------------------------------------------
# What a checkpoint belongs to
# ---------------------------------------------------------------------------------------------

def resolve_device(device: "str | torch.device | None" = None) -> torch.device:
    """None -> "cuda" when available, else "cpu"; a named CUDA device must exist."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"not a torch device: {device!r} ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but torch.cuda.is_available() "
                         "is False (use device='cpu' or None)")
    return device


def _text_model_name(name):
    return canonical_text_model(name)


def corpus_provenance(corpus: Corpus) -> dict:
    """What a model trained on `corpus` depends on: text model and size, PaSST variant and
    weights, number of tags, synthetic or real, and the corpus' name."""
    p = corpus.provenance or {}
    return {"corpus": p.get("name") or p.get("dataset") or p.get("source"),
            "source": p.get("source"),
            "synthetic": bool(corpus.is_synthetic),
            "text_model": _text_model_name(p.get("text_model")),
            "text_dim": int(corpus.dim),
            "n_tags": int(corpus.tag_emb.shape[0]),
            "passt_variant": p.get("passt_variant"),
            "passt_pretrained": p.get("passt_pretrained")}


# fields that must agree between a checkpoint and the corpus it is evaluated on; a field that
# one side does not record (None) is not compared
EMBEDDING_FIELDS = ("text_model", "text_dim", "n_tags", "passt_variant", "passt_pretrained")
CORPUS_FIELDS = EMBEDDING_FIELDS + ("synthetic",)


def check_provenance(trained: dict, corpus: Corpus, fields_: tuple = CORPUS_FIELDS,
                     what: str = "checkpoint") -> None:
    """Raise ValueError when a model trained on `trained` (a provenance dict) does not fit
    `corpus`; the message names both sides of every mismatch."""
    here = corpus_provenance(corpus)
    trained = {**trained, "text_model": canonical_text_model(trained.get("text_model"))}
    bad = [f"{k}: {what} {trained.get(k)!r} vs corpus {here.get(k)!r}"
           for k in fields_ if trained.get(k) is not None and here.get(k) is not None
           and trained.get(k) != here.get(k)]
    if bad:
        raise ValueError(f"the {what} was trained on other embeddings than this corpus holds ("
                         + "; ".join(bad) + ")")


def model_architecture(model: nn.Module, state: dict | None = None) -> dict:
    """How to rebuild `model`: its class, (for AudioEncoder) its sizes and norm, and the
    name and shape of every tensor of its state dict."""
    state = _model_state(model) if state is None else state
    arch = {"class": type(model).__qualname__, "module": type(model).__module__}
    if isinstance(model, AudioEncoder):
        arch.update(in_dim=int(model.in_dim), out_dim=int(model.out_dim), norm=model.norm_kind)
    arch["state"] = {k: list(v.shape) for k, v in state.items()}
    return arch


def _encoder_architecture(in_dim: int, out_dim: int, norm: str, state: dict) -> dict:
    return {"class": "AudioEncoder", "module": AudioEncoder.__module__, "in_dim": int(in_dim),
            "out_dim": int(out_dim), "norm": norm,
            "state": {k: list(torch.as_tensor(v).shape) for k, v in state.items()}}


def _model_state(model: nn.Module) -> dict:
    """The state to save: on the CPU, without AudioEncoder's W_t (it comes from the corpus)."""
    skip = {"tag_emb"} if isinstance(model, AudioEncoder) else set()
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k not in skip}


# ---------------------------------------------------------------------------------------------
# Results and checkpoints
# ---------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """A trained model: weights of the selected epoch, history, and what it belongs to.

    architecture: how to rebuild the model (see `model_architecture`); inferred for the
    paper's AudioEncoder when empty. provenance: the corpus it was trained on (see
    `corpus_provenance`); checked against a corpus by `check_corpus` and `load(corpus=...)`.
    """
    config: TrainConfig
    state_dict: dict              # weights of the selected epoch (AudioEncoder: without W_t)
    history: dict = field(default_factory=dict)   # per-epoch lists
    best_epoch: int = -1          # 0-based index into history lists
    architecture: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(self.config).__name__}")
        if not isinstance(self.state_dict, dict) or not self.state_dict:
            raise ValueError("state_dict must be a non-empty dict of tensors")
        if not self.architecture:
            w = self.state_dict.get("linear.weight")
            if w is None:
                raise ValueError("a state without 'linear.weight' is not an AudioEncoder: pass "
                                 "architecture= (train_naive records it)")
            w = torch.as_tensor(w)
            self.architecture = _encoder_architecture(w.shape[1], w.shape[0], self.config.norm,
                                                      self.state_dict)
        shapes = {k: list(torch.as_tensor(v).shape) for k, v in self.state_dict.items()}
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

    def build_model(self, tag_emb: "np.ndarray | torch.Tensor | None" = None, in_dim: int | None = None,
                    model: nn.Module | None = None) -> nn.Module:
        """The trained model in eval mode, its weights loaded strictly.

        For the paper's AudioEncoder pass W_t (`tag_emb`, (527, d)); for a custom model pass an
        instance of its class (`model=`), whose state must match the checkpoint exactly.
        Raises ValueError (naming both sides) on any mismatch of class, names or shapes.
        """
        arch = self.architecture
        if model is None:
            if not self.is_audio_encoder:
                raise ValueError(f"this result holds a {arch.get('class')} model, not an "
                                 f"AudioEncoder: pass model={arch.get('class')}(...) to rebuild it")
            if tag_emb is None:
                raise ValueError("build_model needs tag_emb (W_t, e.g. corpus.tag_emb)")
            tag_emb = np.asarray(tag_emb, dtype=np.float32)
            if in_dim is not None and in_dim != arch["in_dim"]:
                raise ValueError(f"in_dim {in_dim} vs the checkpoint's {arch['in_dim']}")
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
        """{"mAP@10", "R@1", "R@5", "R@10"} on a split."""
        return retrieval_metrics(self.scores(split, tag_emb, model, device), split.caption_clip)

    def check_corpus(self, corpus: Corpus) -> None:
        """Refuse (ValueError naming both sides) a corpus this model was not trained for."""
        check_provenance(self.provenance, corpus)

    def save(self, path: "str | os.PathLike") -> Path:
        """Write a checkpoint (atomically): weights, config, history, architecture, provenance."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        blob = {"format": CHECKPOINT_FORMAT, "config": asdict(self.config),
                "state_dict": {k: torch.as_tensor(v).detach().cpu() for k, v in self.state_dict.items()},
                "history": self.history, "best_epoch": int(self.best_epoch),
                "architecture": self.architecture, "provenance": self.provenance}
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: "str | os.PathLike", corpus: Corpus | None = None) -> "TrainResult":
        """Read a checkpoint strictly; with `corpus`, also refuse one trained on other
        embeddings (text model, PaSST variant, sizes, synthetic vs real)."""
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
        if fmt > CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: checkpoint format {fmt} is newer than this library's "
                             f"{CHECKPOINT_FORMAT}")
        known = {f.name for f in fields(TrainConfig)}
        unknown = set(blob["config"]) - known
        if unknown:
            raise ValueError(f"{path}: unknown config field(s) {sorted(unknown)}")
        try:
            result = cls(TrainConfig(**blob["config"]), blob["state_dict"], blob.get("history", {}),
                         int(blob.get("best_epoch", -1)), blob.get("architecture", {}),
                         blob.get("provenance", {}))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        if corpus is not None:
            try:
                result.check_corpus(corpus)
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from err
        return result


def ensemble_scores(score_list: "Sequence[torch.Tensor | np.ndarray]") -> torch.Tensor:
    """Score-level ensemble (paper section 3.3): the mean of the models' score matrices."""
    score_list = [torch.as_tensor(s) for s in score_list]
    if not score_list:
        raise ValueError("ensemble_scores needs at least one score matrix")
    if len({tuple(s.shape) for s in score_list}) != 1:
        raise ValueError("all score matrices of an ensemble must have the same shape")
    return torch.stack(score_list).mean(0)


def stream_seed(seeds: "Iterable[int]") -> int:
    """Seed of a model's data stream (batch order, impostors), derived from its config seed."""
    seeds = [int(s) for s in seeds]
    return int(np.random.SeedSequence([len(seeds), *seeds]).generate_state(1)[0])


# The validation loss uses the same impostors for every model and every epoch: they are part
# of the validation set's definition, not of a model, so models stay comparable.
VAL_IMPOSTOR_SEED = 20220901


def check_inputs(corpus: Corpus, configs: "Sequence[TrainConfig]") -> None:
    """Refuse a corpus / config list no trainer can use (empty splits, one clip, ...)."""
    if not isinstance(corpus, Corpus):
        raise ValueError(f"corpus must be a data.Corpus, got {type(corpus).__name__}")
    if not configs:
        raise ValueError("no configuration to train")
    for c in configs:
        if not isinstance(c, TrainConfig):
            raise ValueError(f"configs must be TrainConfig objects, got {type(c).__name__}")
    for split in corpus.splits():
        if split.n_captions == 0:
            raise ValueError(f"split {split.name!r} has no caption")
    if corpus.train.n_clips < 2:
        raise ValueError("the training split needs at least two clips (impostors come from other clips)")
    if any(c.select == "test_map" for c in configs) and corpus.test.n_captions == 0:
        raise ValueError("select='test_map' needs a test split")


_check_inputs = check_inputs   # the former private name


def batches(n: int, batch_size: int) -> list:
    """Batch boundaries [(start, end)]; a final batch of one pair is dropped (BatchNorm cannot
    use it, and eq. 7 needs an impostor)."""
    starts = range(0, n, batch_size)
    return [(s, min(s + batch_size, n)) for s in starts if min(s + batch_size, n) - s >= 2]


_batches = batches


# ---------------------------------------------------------------------------------------------
# The reference loop
# ---------------------------------------------------------------------------------------------

def _check_loss_fn(loss_fn: Callable) -> None:
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    try:
        sig = inspect.signature(loss_fn)
    except (TypeError, ValueError):
        return      # builtins without a signature: trust the caller
    try:
        sig.bind(None, None, None, margin=0.4, generator=None)
    except TypeError as err:
        raise ValueError("loss_fn must accept (audio_emb, text_emb, clip_ids, margin=..., "
                         f"generator=...) like loss.triplet_loss: {err}") from None


def _init_state(init_state, model: nn.Module, corpus: Corpus) -> dict:
    """The state dict to start from, checked like the fast trainer checks it."""
    if isinstance(init_state, TrainResult):
        want = model_architecture(model)
        got = init_state.architecture
        if got.get("class") != want["class"]:
            raise ValueError(f"init_state holds a {got.get('class')} model but the model to "
                             f"train is a {want['class']}")
        check_provenance(init_state.provenance, corpus, EMBEDDING_FIELDS, what="init_state")
        init_state = init_state.state_dict
    if not isinstance(init_state, dict):
        raise ValueError(f"init_state must be a state dict or a TrainResult, got "
                         f"{type(init_state).__name__}")
    return init_state


def _probe(model: nn.Module, logits: torch.Tensor, d: int) -> None:
    """Check once, before training, that the model maps (B, n_tags) logits to (B, d)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(logits[:2])
    model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, d):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must map logits (B, {logits.shape[1]}) to embeddings (B, {d}) "
                         f"(the captions' size); it gave {shape} for B = 2")


def train_naive(config: TrainConfig, corpus: Corpus, init_state: dict | TrainResult | None = None,
                track_test: bool = False, progress: bool = False, *,
                model: nn.Module | None = None, loss_fn: Callable | None = None,
                device: "str | torch.device | None" = None) -> TrainResult:
    """Train one model with a plain PyTorch loop (the readable reference).

    config: batch size, epochs, Adam's lr, the plateau scheduler, selection, seed, margin
    (and norm / lam of the default model). corpus: the embedding corpus (train / val / test).
    init_state: weights to start from (a state dict or a TrainResult), checked strictly.
    model: any nn.Module mapping PaSST logits (B, n_tags) to embeddings (B, d) (d = the
    captions' size); it should return unit-norm rows, since scores are dot products with the
    unit-norm query embeddings. It is trained in place (and moved to `device`); seed its
    initialisation yourself (e.g. torch.manual_seed before building it, on the CPU, so a CUDA
    run starts from the same weights). Default: the paper's AudioEncoder (config.norm,
    config.lam, W_t from the corpus, initial weights drawn from config.seed on a CPU generator).
    loss_fn: loss_fn(audio_emb, text_emb, clip_ids, margin=..., generator=...) -> scalar, the
    signature of loss.triplet_loss (the default, eq. 7); also used for the validation loss.
    device: "cpu", "cuda", ... (default: cuda when available). The batch order and the
    impostors come from a CPU generator seeded by config.seed on every device.

    Every epoch: shuffled minibatches, Adam steps, then the validation loss (impostors from
    a fixed seed) drives ReduceLROnPlateau and the validation mAP@10 (or config.select)
    decides which epoch's weights are kept. Returns a TrainResult (history, architecture and
    corpus provenance included; `.save(path)` writes a checkpoint).
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    check_inputs(corpus, [config])
    dev = resolve_device(device)
    loss_fn = triplet_loss if loss_fn is None else loss_fn
    _check_loss_fn(loss_fn)
    train, val = corpus.train, corpus.val
    if model is None:
        model = AudioEncoder(train.logits.shape[1], corpus.dim, config.norm, corpus.tag_emb,
                             config.lam, seed=config.seed)
    elif not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if init_state is not None:
        load_state_checked(model, _init_state(init_state, model, corpus),
                           ignore=("tag_emb",) if isinstance(model, AudioEncoder) else (),
                           what="init state")
    model = model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameter")
    logits = torch.from_numpy(train.logits).to(dev)
    _probe(model, logits, corpus.dim)
    opt = torch.optim.Adam(params, lr=config.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=config.plateau_factor, patience=config.plateau_patience)
    gen = torch.Generator().manual_seed(stream_seed([config.seed]))   # CPU: same on any device
    query = query_embedding(torch.from_numpy(train.text_emb).to(dev))
    clip_of = torch.from_numpy(train.caption_clip)
    val_logits = torch.from_numpy(val.logits).to(dev)
    history = {k: [] for k in ("train_loss", "val_loss", "val_map", "test_map", "lr")}
    best, best_state, best_epoch = None, None, -1
    with_test = track_test or config.select == "test_map"
    epochs = range(config.epochs)
    if progress:
        from tqdm.auto import tqdm
        epochs = tqdm(epochs, desc="train (naive)")
    for epoch in epochs:
        model.train()
        perm = torch.randperm(train.n_captions, generator=gen)
        total = 0.0
        for s, e in batches(train.n_captions, config.batch_size):
            idx = perm[s:e]
            clips = clip_of[idx]
            audio_emb = model(logits[clips.to(dev)])
            loss = loss_fn(audio_emb, query[idx.to(dev)], clips.to(dev), margin=config.margin,
                           generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"the training loss is {value} at epoch {epoch}, batch "
                                         f"{s // config.batch_size} (lr {config.lr:g} too large?)")
            total += value * (e - s)
        history["train_loss"].append(total / train.n_captions)
        model.eval()
        with torch.no_grad():
            val_loss = _naive_val_loss(model, val, config, loss_fn, dev)
            val_map = retrieval_metrics(score(torch.from_numpy(val.text_emb).to(dev), model(val_logits)),
                                        val.caption_clip)["mAP@10"]
            test_map = float("nan")
            if with_test:
                test = corpus.test
                test_scores = score(torch.from_numpy(test.text_emb).to(dev),
                                    model(torch.from_numpy(test.logits).to(dev)))
                test_map = retrieval_metrics(test_scores, test.caption_clip)["mAP@10"]
        history["val_loss"].append(val_loss)
        history["val_map"].append(val_map)
        history["test_map"].append(test_map)
        history["lr"].append(opt.param_groups[0]["lr"])
        if config.scheduler:
            sched.step(val_loss)
        crit = {"val_map": -val_map, "val_loss": val_loss, "last": -epoch,
                "test_map": -test_map}[config.select]
        if best is None or crit < best:
            best, best_epoch = crit, epoch
            best_state = _model_state(model)
    return TrainResult(config, best_state, history, best_epoch, model_architecture(model, best_state),
                       corpus_provenance(corpus))


def _naive_val_loss(model: nn.Module, val: RetrievalSplit, config: TrainConfig,
                    loss_fn: Callable = triplet_loss, device=None) -> float:
    """Validation loss with impostors drawn from a fixed seed, identical at every epoch."""
    dev = torch.device("cpu") if device is None else device
    gen = torch.Generator().manual_seed(VAL_IMPOSTOR_SEED)
    query = query_embedding(torch.from_numpy(val.text_emb).to(dev))
    clip_of = torch.from_numpy(val.caption_clip)
    audio = model(torch.from_numpy(val.logits).to(dev))
    total = 0.0
    for s, e in batches(val.n_captions, config.batch_size):
        clips = clip_of[s:e].to(dev)
        total += float(loss_fn(audio[clips], query[s:e], clips, margin=config.margin,
                               generator=gen)) * (e - s)
    value = total / val.n_captions
    if not math.isfinite(value):
        raise FloatingPointError(f"the validation loss is {value}")
    return value


# ---------------------------------------------------------------------------------------------
# Grids, tables, saving
# ---------------------------------------------------------------------------------------------

def paper_ablation_configs(seeds: "Iterable[int]" = range(5), base: TrainConfig | None = None,
                           lams: "Iterable[float] | None" = None,
                           margins: "Iterable[float] | None" = None,
                           norms: "Iterable[str]" = NORMS) -> list[TrainConfig]:
    """The paper's ablation grid (sections 4.1-4.3), every point with each seed.

    lambda in 0, 0.1, ..., 1 (Fig. 3), margin eta in 0.1, ..., 1.0 (section 4.2) and the three
    norms (section 4.1), each varied alone around `base` (the paper's model: LayerNorm,
    lam 0.8, eta 0.4). The base config appears once per seed (duplicates are removed).
    """
    base = base or TrainConfig()
    lams = [round(0.1 * i, 1) for i in range(11)] if lams is None else list(lams)
    margins = [round(0.1 * i, 1) for i in range(1, 11)] if margins is None else list(margins)
    out, seen = [], set()
    for seed in seeds:
        variants = ([{"lam": v} for v in lams] + [{"margin": v} for v in margins] +
                    [{"norm": v} for v in norms])
        for change in variants:
            c = base.replace(seed=int(seed), **change)
            key = tuple(asdict(c).items())
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


def results_table(results: "Iterable[TrainResult]", corpus: Corpus, split: str = "test") -> "list[dict]":
    """One row per result: its config and its metrics on `split` (for pandas.DataFrame).

    Each result is first checked against the corpus (`TrainResult.check_corpus`)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    target = getattr(corpus, split)
    rows = []
    for r in results:
        r.check_corpus(corpus)
        rows.append({**asdict(r.config), "best_epoch": r.best_epoch,
                     **r.evaluate(target, corpus.tag_emb)})
    return rows


def save_results(results: "Iterable[TrainResult]", directory: "str | os.PathLike") -> Path:
    """Save several results as checkpoints plus an index.json (for the pipeline)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, r in enumerate(results):
        name = f"model_{i:03d}.pt"
        r.save(directory / name)
        names.append({"file": name, "config": asdict(r.config)})
    (directory / "index.json").write_text(json.dumps(names, indent=2))
    return directory


__all__ = ["TrainConfig", "TrainResult", "train_naive", "train_models", "train_model",
           "ensemble_scores", "paper_ablation_configs", "results_table", "save_results",
           "plateau_update", "corpus_provenance", "check_provenance", "model_architecture",
           "resolve_device", "stream_seed", "batches", "check_inputs", "SELECT", "VAL_IMPOSTOR_SEED"]

"""Training the audio projection (paper section 3.2): the reference loop, grids and tables.

* `train_naive(config, corpus)`: the straightforward PyTorch loop a student would write, and
  the readable reference. It trains the paper's AudioEncoder, or any model (`model=`, an
  nn.Module mapping audio vectors (B, n) to embeddings (B, d)), with the loss the config
  names (`TrainConfig(loss="triplet")`, eq. 7, the default; `loss="infonce"`, the symmetric
  InfoNCE, its temperature fixed or learned; any loss registered in retrieval_lib.loss), or
  with a function of the triplet loss's signature (`loss_fn=`), so a homework variant is a
  few lines, not a new loop.
* `train_models(configs, corpus)` (from retrieval_lib.fast_train, importable from here): many
  configurations of the paper's AudioEncoder at once, with every registered loss; a model gives
  the same weights (to float rounding) as train_naive with the same config.
* `paper_ablation_configs`, `results_table`, `save_results`, `ensemble_scores`.

Configurations, results, checkpoints and the rules both trainers follow (batches, random
streams, input checks, epoch selection) live in retrieval_lib.train_base and are importable
from here too (`TrainConfig`, `TrainResult`, `stream_seed`, ...).

Both trainers run on CUDA when it is available (`device=None`), or where `device` says
(core.resolve_device: a device that does not exist is refused before any work). Their random
streams (initial weights, batch order, impostors) are drawn from CPU generators and then
moved to the device, so a CUDA run sees exactly the batches and impostors of a CPU run; only
float rounding differs.

Model selection: `TrainConfig.select` ("val_map", "val_loss", "last", "test_map"), see
retrieval_lib.train_base.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .core import atomic_write_json, ensure_dir, refuse_symlink, remove_file, resolve_device
from .data import Corpus, RetrievalSplit
from .fast_train import plateau_update, train_model, train_models
from .loss import batch_scores, compute_loss, get_loss
from .metrics import retrieval_metrics, score
from .model import NORMS, AudioEncoder, load_state_checked
from .text import query_embedding
from .train_base import (CHECKPOINT_FORMAT, CORPUS_FIELDS, EMBEDDING_FIELDS, SELECT, VAL_IMPOSTOR_SEED,
                         EpochSelector, TrainConfig, TrainResult, batches, check_inputs,
                         check_trained_for, corpus_provenance, model_architecture, model_state,
                         new_history, stream_seed)


# ---------------------------------------------------------------------------------------------
# The reference loop
# ---------------------------------------------------------------------------------------------

def _check_loss_fn(loss_fn: Callable, config: TrainConfig) -> None:
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if config.loss != "triplet" or config.learn_temperature:
        raise ValueError(f"pass either loss_fn= or TrainConfig(loss=...), not both: the config names "
                         f"loss {config.loss!r}{' with a learned temperature' if config.learn_temperature else ''}")
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
        check_trained_for(init_state.provenance, corpus, EMBEDDING_FIELDS, what="init_state")
        init_state = init_state.state_dict
    if not isinstance(init_state, dict):
        raise ValueError(f"init_state must be a state dict or a TrainResult, got "
                         f"{type(init_state).__name__}")
    return init_state


def _probe(model: nn.Module, logits: torch.Tensor, d: int) -> None:
    """Check once, before training, that the model maps (B, n) audio vectors to (B, d)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(logits[:2])
    model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, d):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"model must map logits (B, {logits.shape[1]}) to embeddings (B, {d}) "
                         f"(the captions' size); it gave {shape} for B = 2")


class _BatchLoss:
    """The loss of one batch as train_naive computes it: the config's registered loss on the
    batch's score matrix, or a user's loss_fn on the embeddings."""

    def __init__(self, config: TrainConfig, loss_fn: Callable | None, device: torch.device):
        self.config, self.loss_fn, self.device = config, loss_fn, device
        self.spec = get_loss(config.loss)
        self.log_tau = None
        if config.learn_temperature:        # learned in log space, from the config's temperature
            self.log_tau = nn.Parameter(torch.tensor(math.log(config.temperature), device=device))

    def temperature(self) -> torch.Tensor:
        if self.log_tau is not None:
            return self.log_tau.exp()
        return torch.tensor(self.config.temperature, device=self.device)

    def __call__(self, audio_emb: torch.Tensor, text_emb: torch.Tensor, clips: torch.Tensor,
                 generator: torch.Generator) -> torch.Tensor:
        if self.loss_fn is not None:
            return self.loss_fn(audio_emb, text_emb, clips.to(self.device), margin=self.config.margin,
                                generator=generator)
        return compute_loss(self.spec, batch_scores(audio_emb, text_emb), clips, margin=self.config.margin,
                            temperature=self.temperature(), generator=generator)


def train_naive(config: TrainConfig, corpus: Corpus, init_state: dict | TrainResult | None = None,
                track_test: bool = False, progress: bool = False, *,
                model: nn.Module | None = None, loss_fn: Callable | None = None,
                device: "str | torch.device | None" = None) -> TrainResult:
    """Train one model with a plain PyTorch loop (the readable reference).

    config: batch size, epochs, Adam's lr, the plateau scheduler, selection, seed, the loss
    (`config.loss` with what it reads: margin, temperature, learn_temperature) and norm / lam
    of the default model. corpus: the embedding corpus (train / val / test); without tag
    embeddings (corpus.tag_emb None) only lam = 1.0 can be trained.
    init_state: weights to start from (a state dict or a TrainResult), checked strictly.
    model: any nn.Module mapping audio vectors (B, n) to embeddings (B, d) (d = the captions'
    size); it should return unit-norm rows, since scores are dot products with the unit-norm
    query embeddings. It is trained in place (and moved to `device`); seed its
    initialisation yourself (e.g. torch.manual_seed before building it, on the CPU, so a CUDA
    run starts from the same weights). Default: the paper's AudioEncoder (config.norm,
    config.lam, W_t from the corpus, initial weights drawn from config.seed on a CPU generator).
    loss_fn: instead of config.loss, a function loss_fn(audio_emb, text_emb, clip_ids,
    margin=..., generator=...) -> scalar with the signature of loss.triplet_loss; also used for
    the validation loss (the config must then keep its default loss).
    device: "cpu", "cuda", ... (default: cuda when available). The batch order and the
    impostors come from a CPU generator seeded by config.seed on every device.

    Every epoch: shuffled minibatches, Adam steps (a learned temperature is one more
    parameter, log(temperature), with the same lr), then the validation loss (impostors from a
    fixed seed) drives ReduceLROnPlateau and the validation mAP@10 (or config.select) decides
    which epoch's weights are kept. Returns a TrainResult (history, architecture and corpus
    provenance included; `.save(path)` writes a checkpoint).
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    dev = resolve_device(device)
    check_inputs(corpus, [config], track_test)
    if loss_fn is not None:
        _check_loss_fn(loss_fn, config)
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
    batch_loss = _BatchLoss(config, loss_fn, dev)
    opt = torch.optim.Adam(params + ([batch_loss.log_tau] if batch_loss.log_tau is not None else []),
                           lr=config.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, factor=config.plateau_factor, patience=config.plateau_patience)
    gen = torch.Generator().manual_seed(stream_seed([config.seed]))   # CPU: same on any device
    query = query_embedding(torch.from_numpy(train.text_emb).to(dev))
    clip_of = torch.from_numpy(train.caption_clip)
    val_logits = torch.from_numpy(val.logits).to(dev)
    history = new_history(config)
    selector, best_state = EpochSelector(config.select), None
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
            loss = batch_loss(audio_emb, query[idx.to(dev)], clips, gen)
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
            val_loss = _naive_val_loss(model, val, config, batch_loss, dev)
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
        if "temperature" in history:
            history["temperature"].append(float(batch_loss.temperature().detach()))
        if config.scheduler:
            sched.step(val_loss)
        if selector.update(epoch, val_loss, val_map, test_map):
            best_state = model_state(model)
    return TrainResult(config, best_state, history, selector.best_epoch, model_architecture(model, best_state),
                       corpus_provenance(corpus))


def _naive_val_loss(model: nn.Module, val: RetrievalSplit, config: TrainConfig,
                    batch_loss: Callable, device: torch.device) -> float:
    """Validation loss with draws (impostors) from a fixed seed, identical at every epoch."""
    gen = torch.Generator().manual_seed(VAL_IMPOSTOR_SEED)
    query = query_embedding(torch.from_numpy(val.text_emb).to(device))
    clip_of = torch.from_numpy(val.caption_clip)
    audio = model(torch.from_numpy(val.logits).to(device))
    total = 0.0
    for s, e in batches(val.n_captions, config.batch_size):
        clips = clip_of[s:e]
        total += float(batch_loss(audio[clips.to(device)], query[s:e], clips, gen)) * (e - s)
    value = total / val.n_captions
    if not math.isfinite(value):
        raise FloatingPointError(f"the validation loss is {value}")
    return value


def ensemble_scores(score_list: "Sequence[torch.Tensor | np.ndarray]") -> torch.Tensor:
    """Score-level ensemble (paper section 3.3): the mean of the models' score matrices."""
    score_list = [torch.as_tensor(s) for s in score_list]
    if not score_list:
        raise ValueError("ensemble_scores needs at least one score matrix")
    if len({tuple(s.shape) for s in score_list}) != 1:
        raise ValueError("all score matrices of an ensemble must have the same shape")
    return torch.stack(score_list).mean(0)


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
    """Save several results as checkpoints plus an index.json (for the pipeline), each file
    written atomically; index.json, which lists the checkpoints, is removed first and written
    last, so an interrupted re-save never lists checkpoints of two saves as one set."""
    directory = ensure_dir(directory, "results folder")
    remove_file(refuse_symlink(directory / "index.json", "checkpoint list"))
    names = []
    for i, r in enumerate(results):
        name = f"model_{i:03d}.pt"
        r.save(directory / name)
        names.append({"file": name, "config": asdict(r.config)})
    atomic_write_json(directory / "index.json", names)
    return directory


__all__ = ["TrainConfig", "TrainResult", "train_naive", "train_models", "train_model",
           "ensemble_scores", "paper_ablation_configs", "results_table", "save_results",
           "plateau_update", "corpus_provenance", "check_trained_for", "model_architecture",
           "resolve_device", "stream_seed", "batches", "check_inputs", "SELECT", "VAL_IMPOSTOR_SEED",
           "CHECKPOINT_FORMAT", "EMBEDDING_FIELDS", "CORPUS_FIELDS"]

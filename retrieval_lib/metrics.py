"""Retrieval metrics: one or many relevant items per query, text -> audio and audio -> text,
binary or graded relevance.

A query (a caption; a clip for audio -> text) scores n_items items; items are ranked by
decreasing score. **Ties count against the relevant items** (pessimistic): among items with
equal scores the non-relevant ones come first (for graded gains, the lower gains first), so a
model that scores every item alike gets no credit. For a query with n relevant items, let
v_1 >= v_2 >= ... >= v_n be their scores; the j-th relevant item's 1-based rank is

    r_j = j + #{non-relevant items with score >= v_j}          (r_1 < r_2 < ... < r_n)

Per query, then averaged over queries:

    AP@k      = (1/n) * sum_{j : r_j <= k} j / r_j    (precision at each relevant item in the
                top k; the denominator is n, not min(n, k), as in the DCASE 2025 task 6 code,
                CPJKU/dcase2025_task6_baseline d25_t6/retrieval_module.py,
                `average_precision_at_k`; a query with n > k relevant items cannot reach 1)
    mAP@k     = mean over queries of AP@k             (mAP@10: DCASE 2022-2024; mAP@16: 2025)
    R@k       = mean over queries of [r_1 <= k]       (a hit if ANY relevant item is in the top k)
    median rank = median over queries of r_1          (each query's best-ranked relevant item;
                numpy's median: the mean of the two middle values for an even count)

With one relevant item (the paper's setting: integer targets, DCASE 2022 task 6b) these are
AP@k = [r <= k] / r and R@k = [r <= k], with r = #{items with score >= the relevant one's}.

Two details of the DCASE 2025 code as read (d25_t6/retrieval_module.py, on_validation_epoch_end):
its ranks come from a double argsort of the negated scores, so tied scores are ordered by the
sort (not counted against the query as here: the two agree whenever no scores tie), and it
computes the multi-positive AP with k = 10 (`average_precision_at_k(ranks, 10)`, logged as
"test_multiple_positives/mAP@10") while its README reports mAP@16; both are given here.

Graded relevance (gains g >= 0, e.g. the TAU crowdsourced ratings 0-100), the standard
log2 discount (Jarvelin & Kekalainen 2002, with the discount 1/log2(p + 1) from rank 1 of
Burges et al. 2005) and linear gains:

    DCG@k  = sum_{p=1}^{k} g_(p) / log2(p + 1)        (g_(p): gain of the item at rank p)
    nDCG@k = DCG@k / IDCG@k                            (IDCG@k: DCG@k of the gains sorted
                                                        in decreasing order)

Linear gains, not 2^g - 1: the exponential gain (Burges et al.) is meant for a few integer
grades (0-4); on a 0-100 rating a clip rated 100 would count twice as much as one rated 99
and 2^50 times as much as one rated 50, so nDCG would see only the top ratings. nDCG is unchanged by rescaling the gains (ratings or ratings / 100 give the same
value). Pass 2 ** grades - 1 as gains for the exponential variant. scikit-learn's
`ndcg_score` uses the same gains and discount (it averages over ties instead of counting
them against the query).
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .core import as_tensor, check_k
from .text import query_embedding

KS = (1, 5, 10)        # R@k
MAP_KS = (10, 16)      # mAP@k: 10 for DCASE 2022-2024 (the paper), 16 for DCASE 2025
METRIC_NAMES = ("mAP@10", "mAP@16", "R@1", "R@5", "R@10", "median rank")

# comparisons held in memory at once by the many-relevant path (rows are processed in blocks)
_BLOCK_ELEMENTS = 1 << 24


def real_tensor(x, what: str) -> torch.Tensor:
    """x (tensor, array or nested list) as a detached CPU tensor of real numbers or booleans:
    `core.as_tensor` (text, objects and complex values refused naming `what`; reversed views
    copied), with booleans let through for relevance matrices and masks (each caller decides
    what booleans mean), ragged lists refused by name, and read-only arrays (pandas'
    copy-on-write .to_numpy(), np.broadcast_to) copied, since torch cannot wrap them safely."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu() if x.dtype == torch.bool else as_tensor(x, what).detach().cpu()
    try:
        arr = np.asarray(x)
    except ValueError as err:   # ragged nested lists
        raise ValueError(f"{what} must be a rectangular array of numbers: {err}") from None
    if not arr.flags.writeable:
        arr = arr.copy()
    if arr.dtype == bool:
        return torch.from_numpy(np.ascontiguousarray(arr))
    return as_tensor(arr, what)


def _score_matrix(scores) -> torch.Tensor:
    """Scores (n_queries, n_items) as a real tensor, float64 unless already floating point.

    Float64 stays float64: a cast to float32 would turn close scores into ties, which count
    against the relevant item."""
    s = real_tensor(scores, "scores")
    if s.dtype == torch.bool:
        raise ValueError("scores are booleans: pass the similarity scores first and the "
                         "relevance (targets or boolean matrix) second")
    if not s.is_floating_point():
        s = s.to(torch.float64)
    if s.ndim != 2:
        raise ValueError(f"scores must be (n_queries, n_items), got shape {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        bad = (~torch.isfinite(s)).any(dim=1).nonzero().flatten().tolist()
        raise ValueError(f"scores contain NaN or inf (query rows {bad[:10]}"
                         f"{'...' if len(bad) > 10 else ''})")
    return s


def _as_index(target) -> torch.Tensor:
    """Item indices as int64; float indices must be whole numbers (1.7 is refused, not cut)."""
    t = real_tensor(target, "target")
    if t.dtype == torch.bool:
        raise ValueError("target must hold integer clip indices, got booleans (a relevance "
                         "matrix is 2-d: (n_queries, n_items))")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or not torch.equal(t, t.round()):
            bad = t[~torch.isfinite(t) | (t != t.round())][:5].tolist()
            raise ValueError(f"target must hold integer clip indices, got non-integer values {bad}")
    return t.to(torch.long)


def ranks(scores: "torch.Tensor | np.ndarray", target: "torch.Tensor | np.ndarray | list") -> torch.Tensor:
    """1-based rank of each caption's relevant clip; scores (n_captions, n_clips).

    target: the relevant clip of each caption (integers; whole-number floats accepted).
    Ties count against the relevant clip: rank = #{clips scoring >= the relevant one}.
    Raises ValueError for bad shapes, indices out of range, non-integer indices, and NaN,
    inf or complex scores.
    """
    scores = _score_matrix(scores)
    target = _as_index(target)
    if target.shape != (scores.shape[0],):
        raise ValueError(f"target must hold one clip index per caption ({scores.shape[0]}), "
                         f"got shape {tuple(target.shape)}")
    if len(target) and (target.min() < 0 or target.max() >= scores.shape[1]):
        raise ValueError(f"target indices must lie in [0, {scores.shape[1] - 1}], got range "
                         f"[{int(target.min())}, {int(target.max())}]")
    positive = scores.gather(1, target[:, None])  # (n, 1)
    # ties with other clips count against the relevant clip: ">=" includes the clip itself
    return (scores >= positive).sum(dim=1)


def ap_at_k_one_relevant(rank: torch.Tensor, k: int = 10) -> torch.Tensor:
    """AP@k of queries with one relevant item from its 1-based rank: 1/rank if rank <= k, else
    0. Works on any shape (a batch of models' ranks, (K, n), in the fast trainer); the mean
    over the last dimension is mAP@k."""
    k = check_k(k)
    rank = torch.as_tensor(rank).float()
    return torch.where(rank <= k, 1.0 / rank, torch.zeros_like(rank))


def metrics_from_ranks(rank: torch.Tensor) -> dict:
    """{"mAP@10", "mAP@16", "R@1", "R@5", "R@10", "median rank"} from 1-based ranks (one
    relevant item per query, at least one query)."""
    rank = torch.as_tensor(rank)
    if rank.numel() == 0:
        raise ValueError("no caption to score: the metrics of an empty set are undefined")
    if rank.ndim != 1 or (rank < 1).any():
        raise ValueError("ranks must be a 1-d tensor of 1-based ranks")
    rank = rank.float()
    out = {f"mAP@{k}": float(ap_at_k_one_relevant(rank, k).mean()) for k in MAP_KS}
    for k in KS:
        out[f"R@{k}"] = float((rank <= k).float().mean())
    out["median rank"] = float(np.median(rank.detach().cpu().numpy()))   # ranks may be on a GPU
    return out


# ---------------------------------------------------------------------------------------------
# Many relevant items, graded gains
# ---------------------------------------------------------------------------------------------

def _matrix_like(values, what: str) -> np.ndarray:
    """A 2-d relevance / gain / mask input as a numpy array (torch and lists accepted)."""
    t = real_tensor(values, what)
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()     # numpy has no bfloat16


def _relevance_matrix(relevance, shape: tuple) -> np.ndarray:
    """A boolean relevance matrix of `shape` (ints 0 / 1 accepted); every row needs a True."""
    rel = _matrix_like(relevance, "relevance")
    if rel.ndim != 2:
        raise ValueError(f"relevance must be integer targets (n_queries,) or a boolean matrix "
                         f"(n_queries, n_items), got shape {rel.shape}")
    if rel.shape != tuple(shape):
        raise ValueError(f"relevance matrix has shape {rel.shape} but scores have shape "
                         f"{tuple(shape)} (queries x items): they must match")
    if rel.dtype.kind == "f":
        what = "NaN" if np.isnan(rel).any() else rel.dtype
        raise ValueError(f"relevance must be boolean (or integers 0 / 1), got floating point "
                         f"values ({what}); graded gains go to ndcg_at_k, and a threshold "
                         "makes them boolean: `gains >= t`")
    if rel.dtype.kind in "iu":
        other = np.setdiff1d(np.unique(rel), [0, 1])
        if other.size:
            raise ValueError(f"an integer relevance matrix must hold only 0 and 1, got "
                             f"{other[:5].tolist()}; graded gains go to ndcg_at_k")
    rel = rel.astype(bool)
    empty = np.flatnonzero(~rel.any(axis=1))
    if empty.size:
        raise ValueError(f"{empty.size} of {rel.shape[0]} queries have no relevant item (rows "
                         f"{empty[:10].tolist()}{'...' if empty.size > 10 else ''}): AP is "
                         "undefined for them; leave those queries out")
    return rel


def _positive_positions(scores: np.ndarray, gains: np.ndarray, others: np.ndarray):
    """1-based pessimistic ranks of every item with a positive gain, per query.

    scores, gains (n_q, n) float64; others (n_q, n) bool: the zero-gain items that are ranked
    (every zero-gain item, or only the judged ones). Returns (positions, gains, valid), each
    (n_q, m) with m the largest number of positive items of a query: row q holds its positive
    items in rank order (score decreasing, then gain increasing: ties against the query),
    padded where valid is False. The j-th item's rank is j + #{others scoring >= it}.
    """
    n_q, n = scores.shape
    positive = gains > 0
    rows, cols = np.nonzero(positive)
    counts = positive.sum(axis=1)
    m = int(counts.max()) if n_q else 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n_q else np.zeros(0, int)
    slot = np.arange(rows.size) - starts[rows]
    pos_scores = np.full((n_q, m), -np.inf)
    pos_gains = np.zeros((n_q, m))
    pos_scores[rows, slot] = scores[rows, cols]
    pos_gains[rows, slot] = gains[rows, cols]
    order = np.lexsort((pos_gains, -pos_scores), axis=1)          # padding (-inf) goes last
    pos_scores = np.take_along_axis(pos_scores, order, axis=1)
    pos_gains = np.take_along_axis(pos_gains, order, axis=1)
    valid = np.arange(m)[None, :] < counts[:, None]
    other_scores = np.where(others, scores, -np.inf)
    ahead = np.empty((n_q, m), dtype=np.int64)
    block = max(1, _BLOCK_ELEMENTS // max(1, m * n))
    for s in range(0, n_q, block):   # blocks of rows, to bound memory (not a loop per query)
        ahead[s:s + block] = (other_scores[s:s + block, None, :]
                              >= pos_scores[s:s + block, :, None]).sum(axis=2)
    positions = ahead + np.arange(1, m + 1)[None, :]
    return positions, pos_gains, valid


def _is_relevance_object(x) -> bool:
    """A `relevance.Relevance` (recognised by its interface: metrics sits below relevance in
    the import graph): values, graded, judged, source and query_scores(scores)."""
    return callable(getattr(x, "query_scores", None)) and hasattr(x, "values")


def _queries_and_relevance(scores, relevance):
    """(scores tensor, targets (n_q,) or None, boolean matrix or None) for the metric paths."""
    if _is_relevance_object(relevance):
        if relevance.graded:
            raise ValueError(f"{relevance.source}: graded relevance has no single set of relevant "
                             "clips; use ndcg_at_k, or relevance.binarize(threshold)")
        scores, relevance = relevance.query_scores(scores), relevance.values
    s = _score_matrix(scores)
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"cannot score an empty matrix: scores has shape {tuple(s.shape)} "
                         "(queries x items)")
    if not isinstance(relevance, (np.ndarray, torch.Tensor)):
        relevance = real_tensor(relevance, "relevance")      # lists; ragged ones refused
    if relevance.ndim == 1:
        return s, relevance, None
    rel = _relevance_matrix(relevance, s.shape)
    if (rel.sum(axis=1) == 1).all():
        # one relevant item per query: the targets path, so the numbers are exactly the
        # one-relevant ones
        return s, torch.from_numpy(rel.argmax(axis=1)), None
    return s, None, rel


def _many_relevant_positions(s: torch.Tensor, rel: np.ndarray):
    positions, _, valid = _positive_positions(s.to(torch.float64).numpy(), rel.astype(np.float64), ~rel)
    return positions, valid


def average_precision(scores, relevance, k: int = 10) -> np.ndarray:
    """AP@k = (1/n) sum_{j : r_j <= k} j / r_j of each query (n_queries,) float64, with its n
    relevant items at pessimistic ranks r_1 < ... < r_n (module docstring).

    relevance: integer targets (n_queries,), a boolean matrix (n_queries, n_items), or a
    binary `relevance.Relevance` (scores are then the split's full (n_captions, n_clips)
    matrix; its queries' rows are taken)."""
    k = check_k(k)
    s, target, rel = _queries_and_relevance(scores, relevance)
    if rel is None:
        r = ranks(s, target).numpy().astype(np.float64)
        return np.where(r <= k, 1.0 / r, 0.0)
    positions, valid = _many_relevant_positions(s, rel)
    j = np.arange(1, positions.shape[1] + 1)[None, :]
    hit = valid & (positions <= k)
    return (np.where(hit, j / positions, 0.0)).sum(axis=1) / valid.sum(axis=1)


def best_rank(scores, relevance) -> np.ndarray:
    """1-based rank of each query's best-ranked relevant item (n_queries,) int64 (ties
    against the query); with integer targets, the same as `ranks`."""
    s, target, rel = _queries_and_relevance(scores, relevance)
    if rel is None:
        return ranks(s, target).numpy().astype(np.int64)
    positions, _ = _many_relevant_positions(s, rel)
    return positions[:, 0].astype(np.int64)


def retrieval_metrics(scores: "torch.Tensor | np.ndarray", relevance) -> dict:
    """{"mAP@10", "mAP@16", "R@1", "R@5", "R@10", "median rank"} for scores (n_queries, n_items).

    For query i with n_i relevant items at pessimistic 1-based ranks r_i1 < r_i2 < ...:
        mAP@k       = mean_i (1/n_i) sum_{j : r_ij <= k} j / r_ij      (k = 10, 16)
        R@k         = mean_i [r_i1 <= k]                               (k = 1, 5, 10)
        median rank = median_i r_i1

    relevance is one of
      * integer targets (n_queries,): the one relevant item of each query (the paper's
        setting; fast path);
      * a boolean matrix (n_queries, n_items), True where the item is relevant (integers 0 / 1
        accepted; floats refused: graded gains go to `ndcg_at_k`); every query needs at least
        one relevant item;
      * a binary `relevance.Relevance` (DCASE 2025 file, synthetic ground truth), with scores
        the split's full (n_captions, n_clips) matrix.
    Definitions (equations) in the module docstring. With one relevant item per query (targets,
    or a matrix with one True per row) the numbers are exactly the one-relevant ones.
    Audio -> text: `retrieval_metrics(scores.T, rel.T)` with rel = caption_clip_relevance(...),
    or `audio_to_text_metrics`. Raises ValueError for an empty score matrix (its metrics are
    undefined, not NaN), and for every malformed relevance (shape, dtype, empty query).
    """
    s, target, rel = _queries_and_relevance(scores, relevance)
    if rel is None:
        return metrics_from_ranks(ranks(s, target))
    positions, valid = _many_relevant_positions(s, rel)
    j = np.arange(1, positions.shape[1] + 1)[None, :]
    n_rel = valid.sum(axis=1)
    out = {}
    for k in MAP_KS:
        hit = valid & (positions <= k)
        out[f"mAP@{k}"] = float((np.where(hit, j / positions, 0.0).sum(axis=1) / n_rel).mean())
    best = positions[:, 0]
    for k in KS:
        out[f"R@{k}"] = float((best <= k).mean())
    out["median rank"] = float(np.median(best))
    return out


def caption_clip_relevance(caption_clip, n_clips: int | None = None) -> np.ndarray:
    """Boolean (n_captions, n_clips): True where the caption was written for the clip.

    Its transpose is the audio -> text relevance: each clip's captions are relevant to it.
    n_clips defaults to the largest index + 1."""
    target = _as_index(caption_clip)
    if target.ndim != 1:
        raise ValueError(f"caption_clip must be 1-d (one clip per caption), got shape {tuple(target.shape)}")
    if len(target) and target.min() < 0:
        raise ValueError(f"caption_clip holds negative clip indices ({int(target.min())})")
    needed = int(target.max()) + 1 if len(target) else 0
    n = needed if n_clips is None else check_k(n_clips, "n_clips")
    if n < needed:
        raise ValueError(f"caption_clip names clip {needed - 1} but n_clips is {n}")
    rel = np.zeros((len(target), n), dtype=bool)
    rel[np.arange(len(target)), target.numpy()] = True
    return rel


def audio_to_text_metrics(scores, caption_clip) -> dict:
    """Audio -> text retrieval metrics from the text -> audio scores (n_captions, n_clips):
    each clip is a query, its captions are its relevant items, so with its captions at ranks
    r_1 < ... < r_n among all captions, R@k = [r_1 <= k] and AP@k = (1/n) sum_{r_j <= k} j / r_j.
    This is LAION-CLAP's Clotho evaluation as its docstring describes it
    (src/laion_clap/training/train.py, evaluate_clotho_audiocaps: best of the 5 captions for
    R@k, sorted ranks for mAP@10). Its code, as read, takes the captions' positions in caption
    order instead of sorted order before pairing them with j = 1..5, which can give an AP
    above 1; the definition above sorts them. A clip without a caption is refused (it has no
    relevant item)."""
    s = _score_matrix(scores)
    rel = caption_clip_relevance(caption_clip, s.shape[1])
    if rel.shape[0] != s.shape[0]:
        raise ValueError(f"caption_clip has {rel.shape[0]} captions but scores have {s.shape[0]} rows")
    return retrieval_metrics(s.T, rel.T)


def _gain_matrix(gains, shape: tuple) -> np.ndarray:
    g = _matrix_like(gains, "gains")
    if g.shape != tuple(shape):
        raise ValueError(f"gains have shape {g.shape} but scores have shape {tuple(shape)} "
                         "(queries x items): they must match")
    g = g.astype(np.float64)
    if not np.isfinite(g).all():
        raise ValueError("gains contain NaN or inf; an unrated pair is gain 0 (mark rated pairs "
                         "with judged=)")
    if (g < 0).any():
        raise ValueError(f"gains must be >= 0, got {g.min()}")
    return g


def ndcg_per_query(scores, gains, k: int = 10, judged=None) -> np.ndarray:
    """nDCG@k of each query (n_queries,) float64:
        DCG@k = sum_{p=1}^{k} g_(p) / log2(p + 1),  nDCG@k = DCG@k / IDCG@k
    with g_(p) the gain of the item ranked p (ties: lower gains first) and IDCG@k the DCG@k of
    the gains sorted in decreasing order (module docstring: why linear gains).

    gains: (n_queries, n_items) numbers >= 0 (ratings as they are: linear gains; booleans
    are gains 0 / 1), or a `relevance.Relevance` (graded or binary; scores are then the
    split's full matrix and its `judged` mask is used).
    judged: optional boolean mask of the rated pairs. When given, only judged items are
    ranked (a condensed list, Sakai, "Alternatives to Bpref", SIGIR 2007): an unrated clip
    neither helps nor hurts. Without it every item is ranked and unrated ones count as gain 0.
    Every query needs a positive gain.
    """
    k = check_k(k)
    if _is_relevance_object(gains):
        scores, judged_default, gains = gains.query_scores(scores), gains.judged, gains.values
        judged = judged_default if judged is None else judged
    s = _score_matrix(scores)
    if s.shape[0] == 0 or s.shape[1] == 0:
        raise ValueError(f"cannot score an empty matrix: scores has shape {tuple(s.shape)}")
    g = _gain_matrix(gains, s.shape)
    if judged is None:
        ranked = np.ones(g.shape, dtype=bool)
    else:
        ranked = _matrix_like(judged, "judged")
        if ranked.shape != g.shape or ranked.dtype != bool:
            raise ValueError(f"judged must be a boolean matrix of shape {g.shape}, got "
                             f"{ranked.dtype} of shape {ranked.shape}")
        if (g[~ranked] != 0).any():
            raise ValueError("gains are positive for pairs marked as not judged")
    empty = np.flatnonzero(~(g > 0).any(axis=1))
    if empty.size:
        raise ValueError(f"{empty.size} of {g.shape[0]} queries have no item with a positive "
                         f"gain (rows {empty[:10].tolist()}{'...' if empty.size > 10 else ''}): "
                         "their ideal DCG is 0 and nDCG is undefined; leave them out")
    positions, pos_gains, valid = _positive_positions(s.to(torch.float64).numpy(), g,
                                                      ranked & (g == 0))
    dcg = np.where(valid & (positions <= k), pos_gains / np.log2(positions + 1.0), 0.0).sum(axis=1)
    ideal = -np.sort(-pos_gains, axis=1)[:, :k]                   # padding gains are 0
    idcg = (ideal / np.log2(np.arange(2, ideal.shape[1] + 2))[None, :]).sum(axis=1)
    return dcg / idcg


def ndcg_at_k(scores, gains, k: int = 10, judged=None) -> float:
    """Mean nDCG@k over queries (`ndcg_per_query`)."""
    return float(ndcg_per_query(scores, gains, k, judged).mean())


def chance_metrics(n_clips: int) -> dict:
    """Metrics of a random ranking of n_clips clips (one relevant clip), n_clips >= 1: the
    relevant clip's rank r is uniform on 1..n, so E[AP@k] = (sum_{r <= min(k, n)} 1/r) / n,
    E[R@k] = min(k, n) / n, and the median rank is (n + 1) / 2 (the middle of 1..n)."""
    if isinstance(n_clips, bool) or not isinstance(n_clips, numbers.Integral) or n_clips < 1:
        raise ValueError(f"n_clips must be an integer >= 1, got {n_clips!r}")
    n_clips = int(n_clips)
    out = {f"mAP@{k}": sum(1.0 / r for r in range(1, min(k, n_clips) + 1)) / n_clips for k in MAP_KS}
    for k in KS:
        out[f"R@{k}"] = min(k, n_clips) / n_clips
    out["median rank"] = (n_clips + 1) / 2
    return out


def _warn_degenerate(rows: torch.Tensor, what: str, n: int, why: str) -> None:
    bad = rows.nonzero().flatten().tolist()
    if bad:
        warnings.warn(f"{len(bad)} of {n} {what} {why} (rows {bad[:10]}"
                      f"{'...' if len(bad) > 10 else ''})", stacklevel=3)


def score(text_emb: "torch.Tensor | np.ndarray", audio_emb: "torch.Tensor | np.ndarray",
          query: bool = True) -> torch.Tensor:
    """Retrieval scores (n_text, n_audio): cosine similarity of every caption with every clip.

    text_emb: (n_text, d) sentence embeddings e_s (TextEncoder.encode); eq. 1's query
    embedding e_q = l2-norm(LayerNorm(e_s)) is applied first, as in training (query=False:
    text_emb are already query embeddings, only l2-normalised). audio_emb: (n_audio, d)
    audio embeddings (TrainResult.embed_audio, or any model's output), l2-normalised here.
    Rank clips for caption i with `scores[i].argsort(descending=True)`.

    Refused (ValueError): complex or non-numeric values, NaN / inf, sizes that differ. Warned:
    text rows that score 0 with every clip (all-zero rows; with query=True also constant rows,
    which LayerNorm maps to zero) and all-zero audio rows (0 with every caption).
    """
    t = text_emb if isinstance(text_emb, torch.Tensor) else real_tensor(text_emb, "text_emb")
    a = audio_emb if isinstance(audio_emb, torch.Tensor) else real_tensor(audio_emb, "audio_emb")
    for x, what in ((t, "text_emb"), (a, "audio_emb")):
        if x.is_complex():
            raise ValueError(f"{what} must be real numbers, got {x.dtype}: the imaginary part "
                             "would be dropped")
        if x.ndim != 2:
            raise ValueError(f"{what} must be 2-d (n, d), got shape {tuple(x.shape)}")
        if x.shape[1] == 0:
            raise ValueError(f"{what} has no dimension (shape {tuple(x.shape)})")
    if t.shape[1] != a.shape[1]:
        raise ValueError(f"text and audio embeddings differ in size: text_emb is {t.shape[1]}-d, "
                         f"audio_emb is {a.shape[1]}-d")
    dtype = torch.float64 if torch.float64 in (t.dtype, a.dtype) else torch.float32
    t, a = t.to(dtype), a.to(device=t.device, dtype=dtype)
    for x, what in ((t, "text_emb"), (a, "audio_emb")):
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).any(dim=1).nonzero().flatten().tolist()
            raise ValueError(f"{what} contains NaN or inf (rows {bad[:10]}"
                             f"{'...' if len(bad) > 10 else ''})")
    if query:
        _warn_degenerate(t.amax(dim=1) == t.amin(dim=1), "text embeddings", t.shape[0],
                         "are constant (all-zero included): eq. 1's LayerNorm maps them to the "
                         "zero vector, so they score 0 with every clip")
    else:
        _warn_degenerate((t == 0).all(dim=1), "text embeddings", t.shape[0],
                         "are all zero: they score 0 with every clip")
    _warn_degenerate((a == 0).all(dim=1), "audio embeddings", a.shape[0],
                     "are all zero: they score 0 with every caption")
    t = query_embedding(t) if query else F.normalize(t, dim=-1)
    return t @ F.normalize(a, dim=-1).T

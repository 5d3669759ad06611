"""The paper's reported numbers (Pellegrini, DCASE 2022), one place for every chapter to cite,
and the published Clotho numbers since 2022 that chapter 9 sets beside them.

All on Clotho v2; "dev-test" is the Clotho evaluation split (1045 clips x 5 captions).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

# Table 1, development-testing split
TABLE1_DEVTEST = {
    "Challenge baseline":  {"mAP@10": 0.068, "R@1": 0.032, "R@5": 0.109, "R@10": 0.188},
    "CNN-transformer [5]": {"mAP@10": 0.260, "R@1": 0.150, "R@5": 0.400, "R@10": 0.530},
    "PaSST-MPnet":         {"mAP@10": 0.229, "R@1": 0.134, "R@5": 0.355, "R@10": 0.482},
    "PaSST-MPnet-tags":    {"mAP@10": 0.234, "R@1": 0.138, "R@5": 0.364, "R@10": 0.485},
    "PaSST-MPnet-tags-AC": {"mAP@10": 0.240, "R@1": 0.145, "R@5": 0.365, "R@10": 0.500},
    "Ensemble (2 models)": {"mAP@10": 0.243, "R@1": 0.148, "R@5": 0.369, "R@10": 0.498},
}

# Table 1, DCASE 2022 evaluation set (no public ground truth: nobody can re-score it)
TABLE1_EVAL = {
    "Challenge baseline":  {"mAP@10": 0.061, "R@1": 0.026, "R@5": 0.102, "R@10": 0.176},
    "CNN-transformer [5]": {"mAP@10": 0.251, "R@1": 0.153, "R@5": 0.387, "R@10": 0.504},
    "PaSST-MPnet":         {"mAP@10": 0.212, "R@1": 0.124, "R@5": 0.319, "R@10": 0.448},
    "PaSST-MPnet-tags":    {"mAP@10": 0.214, "R@1": 0.128, "R@5": 0.332, "R@10": 0.445},
    "PaSST-MPnet-tags-AC": {"mAP@10": 0.213, "R@1": 0.125, "R@5": 0.322, "R@10": 0.454},
    "Ensemble (2 models)": {"mAP@10": 0.216, "R@1": 0.127, "R@5": 0.321, "R@10": 0.463},
}

# Section 4 ablations (dev-test mAP@10, PaSST-MPnet-tags models)
NORM_MAP10 = {"layer": 0.234, "batch": 0.229, "none": 0.217}
MARGIN_MAP10 = {0.4: 0.234, 1.0: 0.225}
# Fig. 3: only these points are given as numbers in the text
LAMBDA_MAP10 = {0.0: 0.105, 0.8: 0.234, 1.0: 0.229}
AUDIOCAPS_ONLY_MAP10 = 0.18   # "about 0.18" on dev-test after AudioCaps pretraining alone
N_PARAMS = 406_558            # the paper's "407k" learnable parameters


# ---------------------------------------------------------------------------------------------
# Published Clotho numbers since 2022, beside the paper's (chapter 9)
# ---------------------------------------------------------------------------------------------
# Each number is copied from the source named with it, where it is printed as a percentage
# (28.20); it is stored here as a fraction (0.2820), like the paper's. Nothing is recomputed.
# Two ground truths exist for the same Clotho evaluation split (the paper's "dev-test",
# 1,045 clips x 5 captions):
#   ONE_CLIP:   each caption's own clip is its only relevant clip (DCASE 2022-2024, the paper);
#   MANY_CLIPS: the DCASE 2025 multi-positive annotations (CPJKU/dcase2025_task6_baseline,
#               resources/metadata_eval.csv: 1,037 of the 5,225 captions as queries, several
#               relevant clips each), scored with mAP@16.
# A number is comparable with the paper's only when it is measured on the same split with the
# same ground truth and metric (`comparable_with_paper`); training data, model size and
# fine-tuning still differ, and each entry says how.

DEVTEST = "Clotho evaluation split (the paper's dev-test)"
ONE_CLIP = "one relevant clip per caption"
MANY_CLIPS = "DCASE 2025 multi-positive annotations"
ONE_CLIP_METRICS = ("mAP@10", "R@1", "R@5", "R@10")
MANY_CLIPS_METRICS = ("mAP@16",)


@dataclass(frozen=True)
class Published:
    """One published result on the Clotho evaluation split, with where it is printed.

    one_clip: metrics measured with one relevant clip per caption (ONE_CLIP_METRICS, the
    paper's setting); many_clips: metrics measured with the DCASE 2025 multi-positive
    annotations (MANY_CLIPS_METRICS). Values are fractions: the source's percentages / 100.
    url: the source's address ("" for the paper itself, which the book cites by its
    bibliography entry). extra_data: whether training used data beyond Clotho (None: the
    source does not say).
    """
    system: str
    year: int
    model: str                  # encoders and loss, and whether the encoders were trained
    training_data: str
    source: str                 # where the numbers are printed
    url: str = ""
    one_clip: dict = field(default_factory=dict)
    many_clips: dict = field(default_factory=dict)
    note: str = ""
    extra_data: "bool | None" = None
    split: str = DEVTEST

    def __post_init__(self):
        for name, table, allowed in (("one_clip", self.one_clip, ONE_CLIP_METRICS),
                                     ("many_clips", self.many_clips, MANY_CLIPS_METRICS)):
            unknown = sorted(set(table) - set(allowed))
            if unknown:
                raise ValueError(f"{self.system}: {name} metrics must be among {allowed}, got "
                                 f"{unknown}")
            bad = {k: v for k, v in table.items()
                   if isinstance(v, bool) or not isinstance(v, float) or not 0.0 < v <= 1.0}
            if bad:
                raise ValueError(f"{self.system}: {name} values are fractions in (0, 1] (a "
                                 f"percentage / 100), got {bad}")
            object.__setattr__(self, name, MappingProxyType(dict(table)))   # read-only
        if not (self.one_clip or self.many_clips):
            raise ValueError(f"{self.system}: a published result needs at least one number")
        if self.extra_data is not None and not isinstance(self.extra_data, bool):
            raise ValueError(f"{self.system}: extra_data must be True, False or None, got "
                             f"{self.extra_data!r}")
        if not self.source or not (self.url == "" or self.url.startswith("https://")):
            raise ValueError(f"{self.system}: a published number needs its source (and an "
                             f"https:// address or none), got {self.source!r}, {self.url!r}")

    def value(self, metric: str, ground_truth: str = ONE_CLIP) -> "float | None":
        """The number for `metric` with that ground truth, None when the source gives none."""
        if ground_truth not in (ONE_CLIP, MANY_CLIPS):
            raise ValueError(f"ground_truth must be ONE_CLIP or MANY_CLIPS, got {ground_truth!r}")
        return (self.one_clip if ground_truth == ONE_CLIP else self.many_clips).get(metric)


def comparable_with_paper(result: Published, metric: str, ground_truth: str = ONE_CLIP) -> bool:
    """Whether `metric` of `result` is measured as the paper's Table 1 numbers are: on the
    Clotho evaluation split, with one relevant clip per caption, with a metric of Table 1,
    and given by the source. (Comparable as a measurement: training data, model size and
    fine-tuning may still differ.)"""
    return (result.split == DEVTEST and ground_truth == ONE_CLIP and metric in ONE_CLIP_METRICS
            and result.value(metric, ground_truth) is not None)


def _paper_row(system: str, training_data: str, extra_data: bool) -> Published:
    row = TABLE1_DEVTEST[system]
    return Published(system=f"{system} (the paper)", year=2022,
                     model="frozen PaSST logits and MPNet, one learned linear layer, eq. 7",
                     training_data=training_data,
                     source="the paper, Table 1, development-testing split",
                     one_clip={k: row[k] for k in ONE_CLIP_METRICS}, extra_data=extra_data)


_SALSA = ("OptimusPrimus/salsa, README.md (Primus, Schmid and Widmer, DCASE 2024 workshop; "
          "1st in DCASE 2024 task 8)")
_SALSA_URL = "https://github.com/OptimusPrimus/salsa"
_SALSA_MODEL = ("PaSST and RoBERTa-large, both fine-tuned, symmetric InfoNCE "
                "(experiments/ex_dcase24.py)")
_D25 = "CPJKU/dcase2025_task6_baseline, README.md, Baseline Results"
_D25_URL = "https://github.com/CPJKU/dcase2025_task6_baseline"
_D25_MODEL = ("PaSST and RoBERTa-large, both fine-tuned, symmetric InfoNCE "
              "(d25_t6/retrieval_module.py)")
_D25_NOTE = ("mAP@10 and R@k read as one-clip numbers: the table marks only mAP@16 as computed "
             "with the new annotations")
_AISTAT = ("Kim, Choi and Lim, AISTAT lab system for DCASE2025 Task6, arXiv 2509.16649, "
           "abstract")
_AISTAT_URL = "https://arxiv.org/abs/2509.16649"
_AISTAT_MODEL = "dual encoder, contrastive loss, distillation, LLM caption augmentation"

SINCE_2022 = (
    _paper_row("PaSST-MPnet", "Clotho v2 development", extra_data=False),
    _paper_row("PaSST-MPnet-tags", "Clotho v2 development", extra_data=False),
    _paper_row("PaSST-MPnet-tags-AC", "AudioCaps, then Clotho v2 development", extra_data=True),
    Published("SALSA, stage 1", 2024, _SALSA_MODEL, "Clotho v2", _SALSA + ", Stage 1 training",
              _SALSA_URL,
              one_clip={"mAP@10": 0.2820, "R@1": 0.1724, "R@5": 0.4231, "R@10": 0.5647},
              extra_data=False),
    Published("SALSA, stage 2 (self-distillation)", 2024, _SALSA_MODEL, "Clotho v2",
              _SALSA + ", Stage 2 training", _SALSA_URL,
              one_clip={"mAP@10": 0.2994, "R@1": 0.1848, "R@5": 0.4558, "R@10": 0.6040},
              extra_data=False),
    Published("SALSA, released checkpoint", 2024, _SALSA_MODEL,
              "Clotho, AudioCaps, WavCaps (inferred)", _SALSA + ", Test our pre-trained model",
              _SALSA_URL,
              one_clip={"mAP@10": 0.4011, "R@1": 0.2769, "R@5": 0.5705, "R@10": 0.7050},
              note="training data inferred: the README gives Clotho + AudioCaps + WavCaps as "
                   "the recipe for its best results and does not state the checkpoint's data",
              extra_data=True),
    Published("DCASE 2025 baseline, A40 run", 2025, _D25_MODEL, "Clotho v2.1", _D25, _D25_URL,
              one_clip={"mAP@10": 0.2783, "R@1": 0.1695, "R@5": 0.4246, "R@10": 0.5580},
              many_clips={"mAP@16": 0.3282}, note=_D25_NOTE, extra_data=False),
    Published("DCASE 2025 baseline, 2080 Ti run", 2025, _D25_MODEL, "Clotho v2.1", _D25,
              _D25_URL,
              one_clip={"mAP@10": 0.2876, "R@1": 0.1605, "R@5": 0.4273, "R@10": 0.5804},
              many_clips={"mAP@16": 0.3459},
              note=_D25_NOTE + "; the README's command for this GPU sets batch size 4 and "
                               "max_lr 5e-6",
              extra_data=False),
    Published("DCASE 2025 baseline + AudioCaps", 2025, _D25_MODEL, "Clotho v2.1, AudioCaps",
              _D25, _D25_URL,
              one_clip={"mAP@10": 0.3097, "R@1": 0.1956, "R@5": 0.4645, "R@10": 0.5948},
              many_clips={"mAP@16": 0.3521}, note=_D25_NOTE, extra_data=True),
    Published("DCASE 2025 baseline + AudioCaps + WavCaps", 2025, _D25_MODEL,
              "Clotho v2.1, AudioCaps, WavCaps", _D25, _D25_URL,
              one_clip={"mAP@10": 0.3523, "R@1": 0.2329, "R@5": 0.5217, "R@10": 0.6478},
              many_clips={"mAP@16": 0.4059}, note=_D25_NOTE, extra_data=True),
    Published("AISTAT 2025, best single system", 2025, _AISTAT_MODEL,
              "not stated in the abstract", _AISTAT, _AISTAT_URL,
              many_clips={"mAP@16": 0.4662}),
    Published("AISTAT 2025, ensemble of 4", 2025, _AISTAT_MODEL, "not stated in the abstract",
              _AISTAT, _AISTAT_URL, many_clips={"mAP@16": 0.4883}),
)

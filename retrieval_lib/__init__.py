"""retrieval_lib: language-based audio retrieval with textual embeddings of tag names.

A small library reproducing Pellegrini (DCASE 2022). Importing it has no side effects: heavy
models (PaSST, sentence transformers) are only built when a function asks for them.

Modules, in the order the paper introduces them:
    text      caption cleaning, sentence embeddings, eq. 1
    audio     PaSST logits (527-d) with the paper's long-clip windowing
    tags      the 527 AudioSet names, eq. 3-4 (tag embedding) and eq. 5-6 (fusion)
    model     the learnable audio projection, eq. 2 (+ eq. 5-6 when tags are given)
    loss      the sampling-based triplet loss, eq. 7
    metrics   mAP@10 and R@k with one relevant clip per caption
    data      the embedding corpus (train / val / test splits) and its on-disk format
    synthetic a clearly-labelled synthetic Clotho-like corpus for CPU runs and tests
    train     training (a reference loop and a fast many-models-at-once trainer)
"""

__version__ = "0.1.0"

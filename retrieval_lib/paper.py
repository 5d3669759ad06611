"""The paper's reported numbers (Pellegrini, DCASE 2022), one place for every chapter to cite.

All on Clotho v2; "dev-test" is the Clotho evaluation split (1045 clips x 5 captions).
"""

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

"""retrieval_lib.diagram: the system figure draws, its SVG carries the labels, and every number on
it comes from the library (change a default, the figure changes).

Parameter counts are worked out by hand: LayerNorm or BatchNorm 2 x n_tags, Linear n_tags x d + d.
"""
import dataclasses
import xml.etree.ElementTree as ET

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from retrieval_lib import diagram  # noqa: E402
from retrieval_lib.diagram import diagram_numbers, save_system_diagram, system_diagram  # noqa: E402
from retrieval_lib.train import TrainConfig  # noqa: E402


def _texts(fig):
    return " | ".join(t.get_text() for t in fig.findobj(matplotlib.text.Text) if t.get_text())


@pytest.fixture
def drawn():
    figs = []

    def draw(**kwargs):
        fig = system_diagram(**kwargs)
        figs.append(fig)
        return _texts(fig)
    yield draw
    for fig in figs:
        plt.close(fig)


def test_the_paper_numbers_by_default(drawn):
    text = drawn()
    assert f"{2 * 527 + 527 * 768 + 768:,}" == "406,558" and "406,558 parameters for d = 768" in text
    assert "λ = 0.8" in text and "η = 0.4" in text
    assert "Linear 527 → 768" in text and "the 527 AudioSet" in text and "LayerNorm (gain γ, bias β)" in text
    for eq in ("(eq. 1)", "(eq. 2)", "(eq. 3)", "(eq. 4)", "(eq. 5-6)", "(eq. 7)"):
        assert eq in text, eq


def test_every_branch_of_fig_1_is_drawn(drawn):
    text = drawn()
    for label in (r"$\vec{e}_s$", r"$\vec{e}_q$", r"$\vec{e}_l$", r"$\vec{e}_a$", r"$\vec{e}_t$",
                  r"$\vec{e}_{at}$", "$W_t$", "sigmoid", "PaSST", "sentence model", "dot product"):
        assert label in text, label


def test_the_text_dimension_changes_the_figure(drawn):
    text = drawn(text_dim=384)                               # MiniLM
    assert f"{2 * 527 + 527 * 384 + 384:,}" == "203,806" and "203,806 parameters for d = 384" in text
    assert "Linear 527 → 384" in text and "(527 × 384)" in text and "406,558" not in text


def test_the_training_config_changes_the_figure(drawn):
    text = drawn(config=TrainConfig(lam=0.5, margin=0.3, norm="batch"))
    assert "λ = 0.5" in text and "η = 0.3" in text and "BatchNorm" in text and "λ = 0.8" not in text
    assert "406,558" in text                                  # BatchNorm: as many parameters as LN
    text = drawn(config=TrainConfig(norm="none"))
    assert "no normalisation" in text and f"{527 * 768 + 768:,} parameters" in text


def test_a_changed_library_default_changes_the_figure(drawn, monkeypatch):
    @dataclasses.dataclass
    class OtherDefaults(TrainConfig):
        lam: float = 0.6
        margin: float = 0.25

    monkeypatch.setattr(diagram, "TrainConfig", OtherDefaults)
    monkeypatch.setattr(diagram, "N_TAGS", 10)
    text = drawn()
    assert "λ = 0.6" in text and "η = 0.25" in text
    assert "the 10 AudioSet" in text and f"{2 * 10 + 10 * 768 + 768:,} parameters" in text   # 8,468


def test_diagram_numbers_agree_with_the_figure():
    assert diagram_numbers() == {"n_tags": 527, "d": 768, "n_parameters": 406_558, "norm": "layer",
                                 "lam": 0.8, "margin": 0.4}


def test_the_highlighted_branch_is_drawn_in_blue():
    def blue_boxes(highlight):
        fig = system_diagram(highlight=highlight)
        n = sum(1 for p in fig.axes[0].patches if isinstance(p, FancyBboxPatch)
                and matplotlib.colors.to_hex(p.get_edgecolor()) == diagram.HIGHLIGHT_EDGE)
        plt.close(fig)
        return n
    assert blue_boxes(None) == 0
    assert blue_boxes("tags") >= 4 and blue_boxes("audio") >= 4 and blue_boxes("text") >= 3


def test_the_svg_carries_the_labels_and_is_reproducible(tmp_path):
    path = save_system_diagram(tmp_path / "system.svg", text_dim=384)
    svg = path.read_text(encoding="utf-8")
    ET.fromstring(svg)                                       # well-formed XML
    for label in ("203,806 parameters for d = 384", "λ = 0.8", "η = 0.4", "(eq. 5-6)", "W_t", "PaSST"):
        assert label in svg, label
    again = save_system_diagram(tmp_path / "again.svg", text_dim=384).read_bytes()
    assert again == path.read_bytes()


@pytest.mark.parametrize("kwargs, words", [
    ({"text_dim": 0}, "text_dim must be a positive integer"), ({"text_dim": -3}, "text_dim"),
    ({"text_dim": 2.5}, "text_dim"), ({"text_dim": "768"}, "text_dim"), ({"text_dim": True}, "text_dim"),
    ({"config": {"lam": 0.8}}, "config must be a TrainConfig"), ({"config": 0.8}, "TrainConfig"),
    ({"highlight": "audi"}, r"highlight must be one of \('audio', 'tags', 'text'\)"), ({"highlight": 1}, "highlight"),
])
def test_bad_arguments_are_refused_by_name(kwargs, words):
    with pytest.raises(ValueError, match=words):
        system_diagram(**kwargs)


def test_save_refuses_a_path_that_is_not_an_svg_file(tmp_path):
    with pytest.raises(ValueError, match="ending in .svg"):
        save_system_diagram(tmp_path / "d.png")
    (tmp_path / "folder.svg").mkdir()
    with pytest.raises(ValueError, match="is a folder"):
        save_system_diagram(tmp_path / "folder.svg")

"""retrieval_lib.chapter: the one setup call of every chapter, and the display helpers.

Expected values are worked out by hand in the tests (a mean and a sample standard deviation of
two numbers, thousands separators), not taken from the code under test.
"""
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from retrieval_lib import chapter  # noqa: E402
from retrieval_lib.chapter import (by_data, cache_is_built, fmt_number, mean_std, seed_list,  # noqa: E402
                                   setup_chapter, table)
from tiny_corpus import tiny_corpus as _corpus, tiny_split as _split  # noqa: E402




# ---------------------------------------------------------------------------------------------
# setup_chapter
# ---------------------------------------------------------------------------------------------

def test_setup_chapter_returns_the_folders_and_the_device(tmp_path):
    clotho_dir, cache_dir, device = setup_chapter("synthetic", tmp_path / "raw", tmp_path / "cache",
                                                  False, "cpu", display=False)
    assert (clotho_dir, cache_dir, device) == (tmp_path / "raw", tmp_path / "cache", "cpu")


def test_setup_chapter_defaults_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RETRIEVAL_LIB_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("RETRIEVAL_LIB_CLOTHO", str(tmp_path / "env-raw"))
    out = setup_chapter("synthetic", None, None, False, None, display=False)
    assert out.cache_dir == tmp_path / "env-cache" and out.clotho_dir == tmp_path / "env-raw"
    assert out.device == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("data", ["Clotho", "", "audiocaps", None, 3, ["clotho"]])
def test_setup_chapter_refuses_an_unknown_data_source(data, tmp_path):
    with pytest.raises(ValueError, match=r"DATA must be one of \('synthetic', 'clotho'\)"):
        setup_chapter(data, tmp_path, tmp_path, False, "cpu", display=False)


@pytest.mark.parametrize("use_drive", ["yes", 1, None, "False"])
def test_setup_chapter_refuses_a_use_drive_that_is_not_a_bool(use_drive, tmp_path):
    with pytest.raises(ValueError, match="USE_DRIVE must be True or False"):
        setup_chapter("synthetic", tmp_path, tmp_path, use_drive, "cpu", display=False)


@pytest.mark.parametrize("device, words", [("tpu", "tpu"), ("gpu", "gpu"), (7, "device must be a string"),
                                           ("cuda:99" if torch.cuda.is_available() else "cuda", "cuda")])
def test_setup_chapter_refuses_a_device_that_does_not_exist(device, words, tmp_path):
    with pytest.raises(ValueError, match=words):
        setup_chapter("synthetic", tmp_path, tmp_path, False, device, display=False)


def test_the_note_is_printed_only_when_a_real_cache_must_be_built(tmp_path, capsys):
    setup_chapter("synthetic", tmp_path, tmp_path / "cache", False, "cpu", display=False)
    assert capsys.readouterr().out == ""                      # synthetic data: nothing to say
    setup_chapter("clotho", tmp_path, tmp_path / "cache", False, "cpu", display=False)
    out = capsys.readouterr().out
    assert "not built yet" in out and "no GPU" in out
    assert "'Batches'" in out and "train, val, test" in out   # the bars a first run shows, named
    (tmp_path / "cache" / "clotho").mkdir(parents=True)
    (tmp_path / "cache" / "clotho" / "corpus.json").write_text("{}")
    assert cache_is_built(tmp_path / "cache")
    setup_chapter("clotho", tmp_path, tmp_path / "cache", False, "cpu", display=False)
    assert capsys.readouterr().out == ""                      # the cache is there: no note


def test_the_build_note_speaks_of_a_gpu_only_without_one():
    assert "no GPU" in chapter.build_note(on_gpu=False)
    assert "GPU" not in chapter.build_note(on_gpu=True)


def test_setup_chapter_sets_readable_figures(tmp_path):
    with matplotlib.rc_context():
        matplotlib.rcParams.update({"font.size": 6, "figure.figsize": (12, 3)})
        setup_chapter("synthetic", tmp_path, tmp_path, False, "cpu", display=True)
        assert tuple(matplotlib.rcParams["figure.figsize"])[0] == chapter.FIGURE_WIDTH
        fig, ax = plt.subplots()
        ax.plot([0, 1], [0, 1], label="a line")
        ax.set_title("title")
        ax.set_xlabel("x")
        ax.legend()
        fig.canvas.draw()
        sizes = {t.get_text(): t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text()}
        plt.close(fig)
    assert sizes and min(sizes.values()) >= 9, sizes
    assert fig.get_size_inches()[0] <= 8
    assert pd.get_option("display.precision") == 3


def test_every_font_size_of_the_style_is_at_least_the_minimum():
    style = chapter.figure_style()
    sizes = {k: v for k, v in style.items() if k.endswith("size") and k != "figure.figsize"}
    assert sizes and all(v >= chapter.MIN_FONT_SIZE >= 9 for v in sizes.values()), sizes
    style["font.size"] = 1                              # a copy: the book's style is unchanged
    assert chapter.FIGURE_STYLE["font.size"] >= 9


# ---------------------------------------------------------------------------------------------
# seed_list
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seeds, expected", [(3, [0, 1, 2]), (1, [0]), ([4, 2], [4, 2]), ((0,), [0]),
                                             (np.int64(2), [0, 1]), (range(2), [0, 1])])
def test_seed_list_accepts_a_list_or_a_count(seeds, expected):
    assert seed_list(seeds) == expected


@pytest.mark.parametrize("seeds, words", [(0, ">= 1"), (-2, ">= 1"), ([], "at least one"), ([0, -1], ">= 0"),
                                          ([0.5], "integers"), ("012", "list of seeds"), (2.0, "list of seeds"),
                                          ([1, 1], "repeats"), (True, "list of seeds"), ([True], "integers")])
def test_seed_list_refuses_bad_seeds_and_names_the_parameter(seeds, words):
    with pytest.raises(ValueError, match=words) as err:
        seed_list(seeds, name="MY_SEEDS")
    assert "MY_SEEDS" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Numbers and tables for reading
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, kwargs, expected", [
    (17778, {}, "17,778"), (np.int64(5225), {}, "5,225"), (17778.0, {"count": True}, "17,778"),
    (0.53456, {}, "0.535"), (0.53456, {"decimals": 1}, "0.5"), (1.0, {}, "1.000"), (np.float32(0.25), {}, "0.250"),
    (float("nan"), {}, "–"), (None, {}, "–"), (float("inf"), {}, "∞"), (torch.tensor(0.125), {}, "0.125"),
    (-0.00001, {}, "0.000"), (-0.0004, {"decimals": 4}, "-0.0004"), (-3, {}, "-3"),
])
def test_fmt_number(value, kwargs, expected):
    assert fmt_number(value, **kwargs) == expected


@pytest.mark.parametrize("value, kwargs, words", [
    (2.5, {"count": True}, "whole number"), ("0.5", {}, "real number"), (True, {}, "real number"),
    (1 + 2j, {}, "real number"), (np.array([1.0, 2.0]), {}, "real number"),
    (0.5, {"decimals": -1}, "decimals"), (0.5, {"decimals": 2.5}, "decimals"), (0.5, {"decimals": True}, "decimals"),
])
def test_fmt_number_refuses_what_is_not_a_number(value, kwargs, words):
    with pytest.raises(ValueError, match=words):
        fmt_number(value, **kwargs)


def test_mean_std_is_mean_plus_minus_sample_std():
    # mean of 0.530 and 0.540 is 0.535; sample std = |0.540 - 0.530| / sqrt(2) = 0.00707...
    assert mean_std([0.530, 0.540]) == "0.535 ± 0.007"
    # 1, 2, 3, 4: mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, std 1.291
    assert mean_std(np.array([1, 2, 3, 4]), decimals=2) == "2.50 ± 1.29"
    assert mean_std(x for x in (0.1, 0.1)) == "0.100 ± 0.000"
    assert mean_std([torch.tensor(0.2), torch.tensor(0.4)]) == f"0.300 ± {math.sqrt(0.02):.3f}"


def test_mean_std_of_one_seed_shows_no_spread():
    assert mean_std([0.5346]) == "0.535"
    assert "nan" not in mean_std([0.5]).lower()


@pytest.mark.parametrize("values, words", [([], "no value"), ([0.5, float("nan")], "NaN"), ([float("inf")], "NaN"),
                                           (0.5, "list"), ("0.5", "list"), ([0.5, "x"], "real number"),
                                           ([0.5, None], "real number")])
def test_mean_std_refuses_missing_or_bad_values(values, words):
    with pytest.raises(ValueError, match=words):
        mean_std(values)


def _html(styler):
    return styler.to_html()


def test_table_has_no_empty_index_header_row_and_keeps_the_index_as_a_column():
    df = pd.DataFrame({"clips": [3839, 1045], "mAP@10": [0.23456, 0.2]},
                      index=pd.Index(["train", "test"], name="split"))
    html = _html(table(df))
    header = html.split("<thead>")[1].split("</thead>")[0]
    assert header.count("<tr") == 1                       # one header row, not a second index row
    assert ">split<" in header and ">clips<" in header
    body = html.split("<tbody>")[1]
    assert ">train<" in body and ">3,839<" in body and ">0.235<" in body and ">0.200<" in body


def test_table_prints_counts_without_dot_zero_and_missing_values_as_a_dash():
    df = pd.DataFrame({"captions": [17778.0, 5225.0], "R@1": [0.1, np.nan], "note": ["a", None]})
    html = _html(table(df, counts=["captions"]))
    assert ">17,778<" in html and ">5,225<" in html and "17778.0" not in html
    assert ">–<" in html and ">0.100<" in html and ">a<" in html
    assert "<th class=\"blank" not in html and ">0<" not in html     # the default index is dropped


def test_table_keeps_a_multiindex_as_columns_and_strings_as_they_are():
    df = pd.DataFrame({"value": ["0.535 ± 0.007", "0.385 ± 0.007"]},
                      index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["system", "seed"]))
    html = _html(table(df))
    assert ">system<" in html and ">seed<" in html and ">0.535 ± 0.007<" in html and ">0.385 ± 0.007<" in html
    assert 'class="book-table"' in html


def test_table_with_index_false_drops_the_index():
    df = pd.DataFrame({"x": [1]}, index=pd.Index(["row"], name="name"))
    assert ">row<" not in _html(table(df, index=False))


@pytest.mark.parametrize("call, words", [
    (lambda: table([[1, 2]]), "DataFrame"),
    (lambda: table(pd.DataFrame({"a": [1]}), counts=["b"]), "counts names columns the table does not have: \\['b'\\]"),
    (lambda: table(pd.DataFrame([[1, 2]], columns=["a", "a"])), "duplicate column names"),
    (lambda: table(pd.DataFrame({"a": [1]}), decimals=-2), "decimals"),
    (lambda: table(pd.DataFrame({"a": [1]}, index=pd.Index([5], name="a"))), "index name is also a column"),
    (lambda: _html(table(pd.DataFrame({"n": [2.5]}), counts="n")), "whole number"),
])
def test_table_refuses_bad_input_by_name(call, words):
    with pytest.raises(ValueError, match=words):
        call()


# ---------------------------------------------------------------------------------------------
# by_data: the sentence that is true of the data in use
# ---------------------------------------------------------------------------------------------

def test_by_data_picks_the_sentence_of_the_data_in_use():
    s = "On {label} ({n_test} test clips), $\\vec{e}_t$ helps."
    r = "On {label}: the paper's setting, {n_test} clips."
    assert by_data(_corpus("synthetic"), s, r, display=False) == \
        "On the synthetic corpus (3 test clips), $\\vec{e}_t$ helps."
    assert by_data(_corpus("clotho"), s, r, display=False) == "On Clotho: the paper's setting, 3 clips."


@pytest.mark.parametrize("args, words", [(("", "real"), "synthetic= sentence"), (("syn", None), "real= sentence"),
                                         (("syn", "   "), "real= sentence")])
def test_by_data_needs_both_sentences(args, words):
    with pytest.raises(ValueError, match=words):
        by_data(_corpus(), *args, display=False)


@pytest.mark.parametrize("thing", [None, "synthetic", {"is_synthetic": True}])
def test_by_data_needs_a_corpus(thing):
    with pytest.raises(ValueError, match="takes a Corpus"):
        by_data(thing, "a", "b", display=False)


# ---------------------------------------------------------------------------------------------
# The plotting helpers draw text a reader can read at the column's width
# ---------------------------------------------------------------------------------------------

def test_plot_helpers_draw_text_of_at_least_9_points():
    from retrieval_lib import plots

    rng = np.random.default_rng(0)
    history = {"train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9], "val_map": [0.1, 0.2],
               "test_map": [0.1, 0.15]}
    draws = [
        lambda ax: plots.plot_training_curves(history, ax=ax, synthetic=True, title="t"),
        lambda ax: plots.plot_score_distributions(
            {k: rng.uniform(-1, 1, 50) for k in ("pos", "audio_imp", "caption_imp")}, ax=ax, synthetic=True),
        lambda ax: plots.plot_metric_spread({"a": [0.1, 0.2], "b": [0.3]}, ax=ax, synthetic=True,
                                            paper={"a": 0.2, "b": 0.25}),
        lambda ax: plots.plot_lambda_curve([0, 0.5, 1], rng.uniform(0, 1, (3, 2)), ax=ax, synthetic=True,
                                           paper={0.0: 0.1, 1.0: 0.2}),
        lambda ax: plots.plot_rank_histogram(rng.integers(1, 80, 200), ax=ax, synthetic=True, label="ranks"),
    ]
    for draw in draws:
        fig, ax = plt.subplots()
        draw(ax)
        fig.canvas.draw()
        small = {t.get_text(): t.get_fontsize() for t in fig.findobj(matplotlib.text.Text)
                 if t.get_text() and t.get_visible() and t.get_fontsize() < 9}
        plt.close(fig)
        assert not small, small

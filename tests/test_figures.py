"""The report's matplotlib pictures: what each one shows, checked on its artists."""

import numpy as np
import pytest
from PIL import Image

from amad.report.figures import alignment_figure, attention_figure, pareto_front, patch_grid, save, tradeoff_figure


def test_pareto_front_keeps_the_points_nothing_beats_on_both_axes():
    points = [(3.0, 0.90), (1.0, 0.80), (1.5, 0.70), (0.5, 0.60), (1.0, 0.85), (2.0, 0.85)]
    assert pareto_front(points) == [3, 4, 0]  # by latency; (1.0, 0.80), (1.5, 0.70), (2.0, 0.85) are beaten
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]  # equal points do not beat each other


def test_patch_grid_finds_the_square_with_or_without_a_class_token():
    assert patch_grid(17) == (4, True)
    assert patch_grid(16) == (4, False)
    assert patch_grid(21) is None  # caption tokens


def test_alignment_figure_writes_every_weight_with_a_colour_bar_per_layer(tmp_path):
    layers = {"blocks.0.attn": np.full((4, 2), 0.5), "blocks.1.attn": np.eye(3)[:, :2] * 0.9 + 0.05}
    figure = alignment_figure("h2-amad", layers)
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["h2-amad · blocks.0.attn", "h2-amad · blocks.1.attn"]
    assert [len(ax.texts) for ax in panels] == [8, 6]
    assert panels[1].texts[0].get_text() == "0.95"
    assert len(figure.axes) == 4  # two panels, two colour bars
    assert panels[0].get_xlabel() == "student head" and panels[0].get_ylabel() == "teacher head"
    save(figure, tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").size[0] > 300


@pytest.mark.parametrize("vision", [True, False])
def test_attention_figure_draws_teacher_and_student_rows_per_sample(tmp_path, vision):
    rng = np.random.default_rng(0)
    keys = 17 if vision else 9

    def maps(heads):
        values = rng.random((heads, keys, keys))
        return values / values.sum(-1, keepdims=True)

    samples = [(f"sample {i}", rng.random((32, 32, 3)), maps(4), maps(2)) for i in range(2)]
    figure = attention_figure("h2-amad", "t.blocks.1", "s.blocks.0", samples, vision=vision)
    titled = [ax.get_title() for ax in figure.axes if ax.get_title()]
    teacher_row = ["sample 1 · teacher head 0", "teacher head 1", "teacher head 2", "teacher head 3"]
    assert titled[:5] == [*teacher_row, "sample 1 · student head 0"]
    assert len(titled) == 2 * (4 + 2)
    overlaid = [len(ax.images) for ax in figure.axes if ax.get_title()]
    assert set(overlaid) == ({2} if vision else {1})  # the input image under the map, or the map alone
    assert "t.blocks.1 (teacher) vs s.blocks.0 (student)" in figure._suptitle.get_text()
    save(figure, tmp_path / "b.png")


def test_tradeoff_figure_marks_the_front_in_red(tmp_path):
    rows = [
        {"model": "teacher", "accuracy": 0.9, "latency_ms": 3.0},
        {"model": "h4-amad", "accuracy": 0.8, "latency_ms": 1.0},
        {"model": "h2-none", "accuracy": 0.7, "latency_ms": 1.5},
    ]
    figure = tradeoff_figure(rows, "accuracy", "test cpu")
    ax = figure.axes[0]
    colours = [tuple(c.get_facecolor()[0][:3]) for c in ax.collections]
    assert colours[2] != colours[0] == colours[1]  # h2-none is beaten by h4-amad: grey
    assert [t.get_text() for t in ax.texts] == ["teacher", "h4-amad", "h2-none"]
    assert list(ax.lines[0].get_xdata()) == [1.0, 3.0]
    save(figure, tmp_path / "c.png")


def test_alignment_colour_bar_marks_uniform_weights():
    figure = alignment_figure("h4-amad", {"blocks.0.attn": np.full((8, 4), 0.25)})
    bar = next(ax for ax in figure.axes if not ax.get_title())
    assert [t.get_text() for t in bar.get_yticklabels()] == ["0", "uniform 1/4", "1"]
    assert "white: uniform" in figure._suptitle.get_text()


def test_attention_rows_share_one_scale_and_text_axes_name_the_tokens():
    teacher, student = np.full((2, 3, 3), 1 / 3), np.zeros((1, 3, 3))
    student[0, :, 0] = 1.0  # the student's maps peak far above the teacher's
    words = ["<s>", "red", "</s>"]
    figure = attention_figure("h2", "t", "s", [("q", None, teacher, student, words, words)], vision=False)
    panels = [ax for ax in figure.axes if ax.get_title()]
    assert {ax.images[0].get_clim() for ax in panels} == {(0.0, 1.0)}, "teacher and student: one colour scale"
    assert [t.get_text() for t in panels[0].get_xticklabels()] == words
    assert [t.get_text() for t in panels[0].get_yticklabels()] == words
    cross = attention_figure(
        "h2", "t", "s", [("q", None, teacher[:, :, :2], student[:, :, :2], words, None)], vision=False
    )
    ticks = next(ax for ax in cross.axes if ax.get_title()).get_xticks()
    assert all(float(t).is_integer() for t in ticks), "image keys: whole-token ticks"


def test_tradeoff_figure_rings_the_deployed_model():
    rows = [
        {"model": "teacher", "accuracy": 0.9, "latency_ms": 3.0},
        {"model": "h4", "accuracy": 0.8, "latency_ms": 1.0},
    ]
    ax = tradeoff_figure(rows, "accuracy", "cpu", deployed="h4").axes[0]
    assert "deployed: h4" in [t.get_text() for t in ax.get_legend().get_texts()]

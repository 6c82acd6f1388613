"""Tests of pricer.report.charts: scatter, grid and running-error charts, written atomically and reproducibly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pricer.errors import OptionError
from pricer.report import charts
from pricer.report.charts import chart_format, running_error_chart, running_mean_band, scatter_chart, scatter_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TRUTHS = [10.0, 50.0, 120.0, 300.0, 800.0]
GUESSES = [12.0, 90.0, 100.0, 500.0, 780.0]
COLORS = ["green", "orange", "green", "red", "green"]


def _scatter(path, **overrides) -> None:
    options = dict(truths=TRUTHS, guesses=GUESSES, colors=COLORS, title="forest Error=$97.11 RMSLE=0.88 Hits=34.0%")
    scatter_chart(path, **{**options, **overrides})


@pytest.fixture
def drawn(monkeypatch):
    """The figures handed to the writer, so a test can look at what was drawn."""
    figures = []
    save = charts._save

    def keep(figure, path, fmt):
        figures.append(figure)
        save(figure, path, fmt)

    monkeypatch.setattr(charts, "_save", keep)
    return figures


def test_scatter_chart_writes_png_atomically(tmp_path):
    path = tmp_path / "scatter.png"
    _scatter(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > 10_000  # axes, labels and points; an empty canvas compresses to about 2 kB
    assert [p.name for p in tmp_path.iterdir()] == ["scatter.png"]  # no temporary file left behind


def test_failed_render_leaves_the_existing_chart_intact(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "scatter.png"
    _scatter(path)
    before = path.read_bytes()

    def half_then_fail(self, target, **kwargs):
        target.write(PNG_MAGIC + b"half a chart")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(Figure, "savefig", half_then_fail)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        _scatter(path, title="a newer chart")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["scatter.png"]


def test_chart_with_unknown_suffix_names_the_path(tmp_path):
    path = tmp_path / "scatter.jpg"
    with pytest.raises(OptionError) as caught:
        _scatter(path)
    assert str(path) in str(caught.value)
    assert ".png" in str(caught.value)  # and says what would work
    assert not path.exists()


@pytest.mark.parametrize(
    ("name", "start"),
    [("chart.png", PNG_MAGIC), ("chart", PNG_MAGIC), ("chart.svg", b"<?xml"), ("chart.PDF", b"%PDF")],
)
def test_chart_format_follows_the_suffix(tmp_path, name, start):
    _scatter(tmp_path / name)
    assert (tmp_path / name).read_bytes().startswith(start)


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_rerendering_a_chart_gives_identical_bytes(tmp_path, suffix):
    _scatter(tmp_path / f"first{suffix}")
    _scatter(tmp_path / f"second{suffix}")
    assert (tmp_path / f"first{suffix}").read_bytes() == (tmp_path / f"second{suffix}").read_bytes()


def test_png_does_not_record_the_matplotlib_version(tmp_path):
    _scatter(tmp_path / "scatter.png")
    assert b"Matplotlib" not in (tmp_path / "scatter.png").read_bytes()


def test_missing_parent_folders_are_created(tmp_path):
    path = tmp_path / "reports" / "2025" / "scatter.png"
    _scatter(path)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_scatter_chart_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(OptionError, match="5 truths, 4 guesses and 5 colors"):
        _scatter(tmp_path / "scatter.png", guesses=GUESSES[:4])


def test_scatter_chart_draws_the_course_layout(tmp_path, drawn):
    _scatter(tmp_path / "scatter.png")
    (axes,) = drawn[0].axes
    assert axes.get_title() == "forest Error=$97.11 RMSLE=0.88 Hits=34.0%"
    assert axes.get_xlim() == (0, 840.0) and axes.get_ylim() == (0, 840.0)  # 5% past the largest value
    (line,) = axes.get_lines()
    assert line.get_color() == "deepskyblue" and list(line.get_xdata()) == [0, 840.0]
    assert len(axes.collections[0].get_offsets()) == len(TRUTHS)
    assert (axes.get_xscale(), axes.get_yscale()) == ("linear", "linear")  # $10-$800: under two decades


def test_scatter_of_prices_spanning_decades_is_logarithmic_with_nothing_on_the_frame(tmp_path, drawn):
    _scatter(tmp_path / "scatter.png", guesses=[0.0, 90.0, 100.0, 1200.0, 780.0])
    (axes,) = drawn[0].axes
    assert (axes.get_xscale(), axes.get_yscale()) == ("symlog", "symlog")  # a $0 guess stays on the chart
    assert axes.get_ylim() == (0, 1800.0)  # the $1,200 answer sits inside the frame
    assert not axes.collections[0].get_clip_on()


def test_scatter_legend_says_what_each_colour_means(tmp_path, drawn):
    _scatter(tmp_path / "scatter.png")
    (axes,) = drawn[0].axes
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels == ["hit: within $40 or 20%", "within $80 or 40%", "farther"]


def test_dollar_signs_in_titles_are_printed_not_parsed_as_math(tmp_path):
    # As mathtext, "$x^$" is a syntax error and savefig raises ValueError.
    _scatter(tmp_path / "scatter.png", title="price $x^$ guess")
    assert (tmp_path / "scatter.png").read_bytes().startswith(PNG_MAGIC)


def test_scatter_grid_draws_one_panel_per_entry_on_shared_axes(tmp_path, drawn):
    panels = [(f"{bits}bit", TRUTHS, [g * bits / 8 for g in GUESSES], COLORS) for bits in (4, 8, 16, 32)]
    scatter_grid(tmp_path / "grid.png", panels=panels)
    figure = drawn[0]
    assert [axes.get_title() for axes in figure.axes] == ["4bit", "8bit", "16bit", "32bit"]
    assert {axes.get_xlim() for axes in figure.axes} == {(0, 4680.0)}  # past the largest value of any panel
    assert {axes.get_xscale() for axes in figure.axes} == {"symlog"}  # $5-$3,120: one scale for every panel
    assert [axes.get_legend() is not None for axes in figure.axes] == [True, False, False, False]
    assert (tmp_path / "grid.png").read_bytes().startswith(PNG_MAGIC)


def test_scatter_grid_titles_put_the_metrics_on_a_line_of_their_own(tmp_path, drawn):
    title = "smollm2 16bit Error=$896.65 RMSLE=2.22 Hits=20.8%"
    scatter_grid(tmp_path / "grid.png", panels=[(title, TRUTHS, GUESSES, COLORS)] * 2)
    assert {axes.get_title() for axes in drawn[0].axes} == {"smollm2 16bit\nError=$896.65 RMSLE=2.22 Hits=20.8%"}


def test_scatter_grid_without_panels_is_rejected(tmp_path):
    with pytest.raises(OptionError, match="at least one panel"):
        scatter_grid(tmp_path / "grid.png", panels=[])


def test_running_error_band_is_the_t_interval_of_the_mean_so_far():
    from scipy import stats

    errors = [10.0, 20.0, 30.0, 70.0]
    means, half_widths = running_mean_band(errors)
    assert list(means) == pytest.approx([10.0, 15.0, 20.0, 32.5])
    assert half_widths[0] == 0.0  # one item has no spread to measure
    for k in range(2, len(errors) + 1):
        low, high = stats.t.interval(0.95, k - 1, loc=means[k - 1], scale=stats.sem(errors[:k]))
        assert half_widths[k - 1] == pytest.approx((high - low) / 2)


def test_running_error_chart_title_gives_final_error_and_interval(tmp_path, drawn):
    path = tmp_path / "running.png"
    running_error_chart(path, errors=[10.0, 20.0, 30.0], title="forest")
    (axes,) = drawn[0].axes
    # sd 10 over 3 items: t(0.975, 2) = 4.303, times 10 / sqrt(3)
    assert axes.get_title() == "forest Error=$20.00 ± $24.84"
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_running_error_chart_says_error_once_when_the_title_holds_the_metrics(tmp_path, drawn):
    running_error_chart(tmp_path / "running.png", errors=[10.0, 20.0, 30.0],
                        title="forest Error=$20.00 RMSLE=0.88 Hits=34.0%")
    (axes,) = drawn[0].axes
    assert axes.get_title() == "forest Error=$20.00 ± $24.84 RMSLE=0.88 Hits=34.0%"


def test_running_error_chart_without_errors_is_rejected(tmp_path):
    with pytest.raises(OptionError, match="at least one error"):
        running_error_chart(tmp_path / "running.png", errors=[], title="forest")


def test_chart_format_is_checked_before_drawing(tmp_path):
    assert chart_format(tmp_path / "a.svg") == "svg"
    with pytest.raises(OptionError, match="'.gif'"):
        running_error_chart(tmp_path / "running.gif", errors=[1.0], title="forest")


def test_importing_the_module_does_not_load_matplotlib():
    # The pytest plugin imports pricer modules in every run; matplotlib is slow to import.
    code = "import sys, pricer.report.charts; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_moved_chart_marks_items_now_farther_from_their_truth_and_labels_the_given_ones(tmp_path, drawn):
    from pricer.report.charts import moved_chart
    from pricer.store.baselines import BaselineItem

    items = [BaselineItem(index=i, title=f"item {i}", truth=truth, guess=guess, completion=None, parsed=True)
             for i, truth, guess in ((1, 100.0, 90.0), (2, 50.0, 60.0), (3, 10.0, 30.0))]
    path = tmp_path / "moved.png"

    # item 1 unchanged; item 2 lost its price (a guess of $0 stays on the symlog axes); item 3 came closer
    moved_chart(path, items=items, guesses=[90.0, 0.0, 12.0], labelled=[2], title="4bit")

    axes = drawn[0].axes[0]
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert (axes.get_xscale(), axes.get_yscale()) == ("symlog", "symlog")
    assert axes.get_title() == "4bit: 1 of 3 items farther from the truth, 1 closer"
    legend = [text.get_text() for text in axes.get_legend().get_texts()]
    assert {"unchanged (1)", "closer to the truth (1)", "farther from the truth (1)"} <= set(legend)
    assert [text.get_text() for text in axes.texts] == ["#2"]


def test_moved_chart_needs_one_new_guess_per_baseline_item(tmp_path):
    from pricer.report.charts import moved_chart
    from pricer.store.baselines import BaselineItem

    item = BaselineItem(index=1, title="t", truth=1.0, guess=1.0, completion=None, parsed=True)
    with pytest.raises(OptionError, match=r"one new guess per baseline item \(1 items, 2 guesses\)"):
        moved_chart(tmp_path / "moved.png", items=[item], guesses=[1.0, 2.0], labelled=[], title="4bit")

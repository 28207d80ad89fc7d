import argparse
import doctest
import itertools
import runpy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from figure_checks import assert_png_drawn
from matplotlib import colors as mpl_colors
from matplotlib.text import Text

import mftma.plotting.curves
import mftma.plotting.embedding
import mftma.plotting.heatmaps
import mftma.plotting.profiles
import mftma.plotting.rollback
import mftma.plotting.style
from mftma.cache.writer import cache_activations
from mftma.cli import plot as plot_cli
from mftma.errors import InputError
from mftma.experiments.config import load_config
from mftma.experiments.training import train
from mftma.results.table import save_results
from mftma.pipeline.rollback import load_rollback, rollback
from mftma.plotting import (
    difference_maps,
    layer_profiles,
    metric_heatmaps,
    rollback_heatmaps,
    save_figure,
    training_curves,
)
from mftma.pipeline.embedding import cached_views
from mftma.plotting.embedding import (
    default_embedding_epochs,
    embedding_panels,
    neighbour_agreement,
    project_2d,
)
from mftma.pipeline.figures import analysed_best_epoch, check_metrics, plot_run
from mftma.plotting.heatmaps import OUTSIDE_LABEL
from mftma.plotting.labels import annotate_apart

LAYERS = ["input", "fc1", "fc2", "logits"]
SUBSETS = ["unpermuted", "permuted", "restored", "test"]
EPOCHS = [0, 1, 2, 4]
METRICS = ["capacity", "radius", "dimension", "probe_accuracy"]


def value(epoch, layer_index, subset, metric):
    """A distinct, decodable number for every cell."""
    return 1000 * EPOCHS.index(epoch) + 100 * layer_index + 10 * SUBSETS.index(subset) + METRICS.index(metric)


def synthetic_results(epochs=EPOCHS, run="run"):
    rows = [dict(run=run, epoch=e, layer=layer, layer_index=i, subset=s, metric=m, value=value(e, i, s, m))
            for e, (i, layer), s, m in itertools.product(epochs, enumerate(LAYERS), SUBSETS, METRICS)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter


def assert_paper_ready(fig):
    assert fig.get_figwidth() == pytest.approx(7.0)
    for ax in fig.axes:
        assert ax.images or ax.lines or ax.collections, f"empty axes {ax.get_title()!r}"
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert texts and min(t.get_fontsize() for t in texts) >= 8


def test_heatmaps_show_every_subset_with_epochs_up_and_layers_in_order():
    fig = metric_heatmaps(synthetic_results(), "radius", best_epoch=2)
    assert_paper_ready(fig)
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert [ax.get_title() for ax in panels] == SUBSETS
    image = panels[1].images[0].get_array()
    expected = [[value(e, i, "permuted", "radius") for i in range(len(LAYERS))] for e in EPOCHS]
    np.testing.assert_array_equal(image, expected)
    assert [t.get_text() for t in panels[1].get_xticklabels()] == LAYERS
    assert fig.axes[-1].get_ylabel() == "radius $R_M$"  # the colorbar names the metric
    plt.close(fig)


def test_difference_maps_subtract_the_reference_on_a_scale_centred_at_zero():
    fig = difference_maps(synthetic_results(), "capacity")
    assert_paper_ready(fig)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["permuted $-$ unpermuted", "restored $-$ unpermuted"]
    for panel, subset in zip(panels, ["permuted", "restored"]):
        image = panel.images[0]
        np.testing.assert_array_equal(image.get_array(), 10 * SUBSETS.index(subset))
        assert image.norm.vmin == -image.norm.vmax
    plt.close(fig)


def test_layer_profiles_have_metric_rows_and_epoch_columns_with_all_subsets():
    fig = layer_profiles(synthetic_results(), {"best epoch": 2, "last epoch": 4})
    assert_paper_ready(fig)
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_title() for ax in axes[0]] == ["best epoch = 2", "last epoch = 4"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["capacity $\\alpha_M$", "radius $R_M$", "dimension $D_M$"]
    assert all(len(ax.lines) == len(SUBSETS) for ax in axes.ravel())
    np.testing.assert_array_equal(axes[2, 1].lines[2].get_ydata(),
                                  [value(4, i, "restored", "dimension") for i in range(len(LAYERS))])
    plt.close(fig)


def test_training_curves_plot_loss_and_accuracy_per_subset():
    metrics = pd.DataFrame({"epoch": [0, 1, 2], "lr": 0.1, "loss": [2.3, 1.2, 0.4], "loss_test": [2.3, 1.5, 1.7],
                            "acc_unpermuted": [0.1, 0.6, 0.9], "acc_permuted": [0.1, 0.1, 0.5],
                            "acc_permuted_true": [0.1, 0.5, 0.3], "acc_test": [0.1, 0.6, 0.55]})
    fig = training_curves(metrics, best_epoch=1)
    assert_paper_ready(fig)
    loss, accuracy = fig.axes
    assert [line.get_label() for line in accuracy.lines] == ["unpermuted", "permuted", "restored", "test",
                                                            "best epoch (1)"]
    assert [line.get_label() for line in loss.lines][:2] == ["train", "test"]
    columns = ["acc_unpermuted", "acc_permuted", "acc_permuted_true", "acc_test"]
    for line, column in zip(accuracy.lines, columns):
        np.testing.assert_array_equal(line.get_xdata(), metrics["epoch"])
        np.testing.assert_array_equal(line.get_ydata(), metrics[column], err_msg=column)
    np.testing.assert_array_equal(loss.lines[1].get_ydata(), metrics["loss_test"])
    assert list(accuracy.lines[-1].get_xdata()) == [1, 1]  # the best-epoch marker
    plt.close(fig)


def test_rollback_heatmaps_show_gains_against_the_final_network():
    rows = [dict(direction=d, k=k, epoch=e, subset=s, metric="accuracy", value=0.5 + 0.1 * k * (d == "last"))
            for d, k, e, s in itertools.product(["last", "first"], range(3), [0, 5], ["test", "permuted"])]
    fig = rollback_heatmaps(pd.DataFrame(rows))
    assert_paper_ready(fig)
    panels = [ax for ax in fig.axes if ax.images and ax.get_xlabel().startswith("k")]
    assert len(panels) == 4
    np.testing.assert_allclose(panels[0].images[0].get_array(), [[10, 20], [10, 20]])  # k = 1, 2 against k = 0
    plt.close(fig)


def test_bad_tables_raise_input_errors():
    results = synthetic_results()
    with pytest.raises(InputError, match="'center_correlation' is not in the results"):
        metric_heatmaps(results, "center_correlation")
    with pytest.raises(InputError, match="several runs"):
        metric_heatmaps(pd.concat([results, synthetic_results(run="other")]), "capacity")
    with pytest.raises(InputError, match="no subset pair"):
        difference_maps(results[results["subset"] == "test"], "capacity")
    with pytest.raises(InputError, match="epoch 3 was not analysed"):
        layer_profiles(results, {"best": 3})
    with pytest.raises(InputError, match="acc_"):
        training_curves(pd.DataFrame({"epoch": [0], "loss": [1.0]}))
    with pytest.raises(InputError, match="lacks the column"):
        rollback_heatmaps(pd.DataFrame({"k": [0]}))


def test_save_figure_writes_png_and_pdf_atomically(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.imshow([[0.0, 1.0]], cmap="gray", aspect="auto")  # left half black, right half white
    ax.set_axis_off()
    paths = save_figure(fig, tmp_path / "sub" / "line", dpi=50)
    plt.close(fig)
    assert [p.name for p in paths] == ["line.png", "line.pdf"]
    assert paths[1].read_bytes()[:4] == b"%PDF"
    pixels = plt.imread(paths[0])[..., :3]
    middle = pixels[pixels.shape[0] // 2]
    np.testing.assert_array_equal(middle[len(middle) // 4], [0, 0, 0])
    np.testing.assert_array_equal(middle[3 * len(middle) // 4], [1, 1, 1])
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["line.pdf", "line.png"]


@pytest.mark.parametrize("module", [mftma.plotting.curves, mftma.plotting.embedding, mftma.plotting.heatmaps,
                                    mftma.plotting.profiles, mftma.plotting.rollback, mftma.plotting.style])
def test_docstring_examples_run(module):
    assert doctest.testmod(module, raise_on_error=True).attempted > 0
    plt.close("all")


@pytest.fixture(scope="module")
def analysed_run(tmp_path_factory):
    """The tiny run with a synthetic results table over its checkpoints and a rollback table."""
    run = train(load_config("tiny"), tmp_path_factory.mktemp("plot") / "run", progress=False)
    results = synthetic_results(epochs=EPOCHS)
    save_results(run.path, results.assign(run=run.path.name))
    rollback(run, ks=[1, 3], epochs=[0, 2])
    cache_activations(run, progress=False)
    return run


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure given to save_figure (by plot_run or the analysis scripts), by the name it was saved as."""
    saved = {}

    def recording(fig, path_stem, *args, **kwargs):
        saved[Path(path_stem).name] = fig
        return save_figure(fig, path_stem, *args, **kwargs)

    monkeypatch.setattr("mftma.pipeline.figures.save_figure", recording)
    monkeypatch.setattr("mftma.plotting.save_figure", recording)
    return saved


def assert_shows_the_run(name, fig, run):
    """The figure ``name`` of ``run`` (synthetic results, rollback over k = 1, 3 and epochs 0, 2) shows its tables."""
    metrics = run.metrics().set_index("epoch")
    best = metrics.loc[EPOCHS, "acc_test"].idxmax()
    kind, _, metric = name.partition("_")
    if kind == "heatmap":
        panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
        assert [ax.get_title() for ax in panels] == SUBSETS
        for ax, subset in zip(panels, SUBSETS):
            expected = [[value(e, i, subset, metric) for i in range(len(LAYERS))] for e in EPOCHS]
            np.testing.assert_array_equal(ax.images[0].get_array(), expected, err_msg=f"{name} {subset}")
    elif kind == "difference":
        for ax, subset in zip([ax for ax in fig.axes if ax.get_title()], ["permuted", "restored"]):
            np.testing.assert_array_equal(ax.images[0].get_array(), 10 * SUBSETS.index(subset), err_msg=name)
    elif name == "layer_profiles":
        assert [ax.get_title() for ax in fig.axes[:2]] == [f"best epoch = {best}", f"last epoch = {EPOCHS[-1]}"]
        np.testing.assert_array_equal(fig.axes[1].lines[0].get_ydata(),
                                      [value(EPOCHS[-1], i, SUBSETS[0], "capacity") for i in range(len(LAYERS))])
    elif name == "training_curves":
        test = [line for line in fig.axes[-1].lines if line.get_label() == "test"]
        np.testing.assert_array_equal(test[0].get_ydata(), metrics["acc_test"])
    elif name == "rollback":
        table = load_rollback(run.path)
        panels = [ax for ax in fig.axes if ax.images]
        titles = [ax.get_title() for ax in panels if ax.get_title()]
        for index, ax in enumerate(panels):
            direction, subset = ["last", "first"][index // len(titles)], titles[index % len(titles)]
            rows = table[(table["direction"] == direction) & (table["subset"] == subset)]
            grid = rows.pivot(index="epoch", columns="k", values="value")
            expected = 100 * (grid[[1, 3]].to_numpy() - grid[[0]].to_numpy())
            np.testing.assert_allclose(ax.images[0].get_array(), expected, err_msg=f"{direction} {subset}")
    elif kind == "embedding":
        axes = np.array(fig.axes).reshape(3, -1)
        epochs = [int(ax.get_title().split()[1]) for ax in axes[0]]
        assert epochs[0] == 0 and epochs[-1] == EPOCHS[-1]
        for col, view in enumerate(cached_views(run.path, metric, epochs).values()):
            for row, subset in enumerate(["unpermuted", "permuted", "restored"]):
                labels = view[subset][1]
                counts = {name: len(points) for name, points in points_by_label(axes[row, col]).items()}
                assert counts == {f"class {c}": int(np.sum(labels == c)) for c in np.unique(labels)}, name
    else:
        raise AssertionError(f"unexpected figure {name}")


def test_cli_writes_every_figure_of_a_run(analysed_run, saved_figures, capsys):
    parser = argparse.ArgumentParser(prog="mftma")
    plot_cli.register(parser.add_subparsers())
    args = parser.parse_args(["plot", str(analysed_run.path), "--formats", "png"])
    assert args.func(args) == 0
    figures = analysed_run.path / "results" / "figures"
    names = {path.stem for path in figures.glob("*.png")}
    expected = {"training_curves", "layer_profiles", "rollback", "embedding_fc2", *(f"heatmap_{m}" for m in METRICS),
                *(f"difference_{m}" for m in METRICS)}
    assert names == expected == set(saved_figures)
    for name, fig in saved_figures.items():
        assert_shows_the_run(name, fig, analysed_run)
        assert_png_drawn(figures / f"{name}.png")
    assert f"{len(expected)} files written" in capsys.readouterr().out


def test_best_epoch_is_chosen_among_analysed_epochs():
    metrics = pd.DataFrame({"epoch": [0, 1, 2, 3], "acc_test": [0.1, 0.5, 0.9, 0.7]})
    assert analysed_best_epoch(metrics, synthetic_results(epochs=[0, 1, 2])) == 2
    assert analysed_best_epoch(metrics, synthetic_results(epochs=[0, 1])) == 1


ANALYSIS_DIR = Path(__file__).resolve().parents[1] / "analysis"


@pytest.mark.parametrize("script, outputs", [
    ("fig_heatmaps.py", ["heatmap_capacity.png", "difference_capacity.png"]),
    ("fig_layer_profiles.py", ["layer_profiles.png"]),
    ("fig_training_curves.py", ["training_curves.png"]),
    ("fig_rollback.py", ["rollback.png"]),
    ("fig_embedding.py", ["embedding_fc1.png"]),
    ("table_summary.py", ["summary_capacity.csv"]),
])
def test_analysis_scripts_regenerate_their_outputs(analysed_run, saved_figures, tmp_path, monkeypatch, capsys,
                                                   script, outputs):
    monkeypatch.syspath_prepend(str(ANALYSIS_DIR))
    extra = {"fig_heatmaps.py": ["--metrics", "capacity"], "fig_embedding.py": ["--layer", "fc1", "--epochs", "0", "4"],
             }.get(script, [])
    formats = [] if script == "table_summary.py" else ["--formats", "png"]
    monkeypatch.setattr("sys.argv", [script, str(analysed_run.path), "--out", str(tmp_path), *formats, *extra])
    runpy.run_path(str(ANALYSIS_DIR / script), run_name="__main__")
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(outputs)
    assert all(str(tmp_path / name) in capsys.readouterr().out for name in outputs[:1])
    assert sorted(saved_figures) == sorted(name[:-4] for name in outputs if name.endswith(".png"))
    for name, fig in saved_figures.items():
        assert_shows_the_run(name, fig, analysed_run)
        assert_png_drawn(tmp_path / f"{name}.png")


def test_summary_table_holds_the_capacity_at_the_best_and_last_epoch(analysed_run, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ANALYSIS_DIR))
    monkeypatch.setattr("sys.argv", ["table_summary.py", str(analysed_run.path), "--out", str(tmp_path)])
    runpy.run_path(str(ANALYSIS_DIR / "table_summary.py"), run_name="__main__")
    table = pd.read_csv(tmp_path / "summary_capacity.csv", index_col=["layer_index", "layer"])
    best = analysed_run.metrics().set_index("epoch").loc[EPOCHS, "acc_test"].idxmax()
    epochs = {"best": best, "last": EPOCHS[-1]} if best != EPOCHS[-1] else {"best": best}  # one column set if equal
    assert list(table.index.get_level_values("layer")) == LAYERS
    assert list(table.columns) == [f"{name} {subset}" for name in epochs for subset in SUBSETS]
    for name, epoch in epochs.items():
        for subset in SUBSETS:
            expected = [value(epoch, i, subset, "capacity") for i in range(len(LAYERS))]
            np.testing.assert_array_equal(table[f"{name} {subset}"], expected, err_msg=f"{name} {subset}")


# ---- robust heatmap colours, best-epoch line, legends -------------------------------------------------------

def with_outlier(results, metric="radius", factor=1e3):
    """``results`` with one (epoch 1, fc1, permuted) cell of ``metric`` multiplied by ``factor``."""
    results = results.copy()
    cell = ((results["metric"] == metric) & (results["epoch"] == 1) & (results["layer"] == "fc1")
            & (results["subset"] == "permuted"))
    results.loc[cell, "value"] *= factor
    return results


def hatched_cells(ax):
    return sorted((round(p.get_x() + 0.5), round(p.get_y() + 0.5)) for p in ax.patches
                  if p.get_label() == OUTSIDE_LABEL)


def test_heatmap_colour_scale_is_robust_and_cells_outside_it_are_hatched():
    results = with_outlier(synthetic_results())
    fig = metric_heatmaps(results, "radius", best_epoch=2)
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    values = results.loc[results["metric"] == "radius", "value"].to_numpy()
    q1, q3 = np.percentile(values, [25, 75])
    inliers = values[(values >= q1 - 3 * (q3 - q1)) & (values <= q3 + 3 * (q3 - q1))]
    low, high = inliers.min(), inliers.max()
    assert len(inliers) == len(values) - 1  # only the planted outlier is left out
    norm = panels[0].images[0].norm
    assert (norm.vmin, norm.vmax) == pytest.approx((low, high))
    assert high < values.max() / 100  # the outlier no longer sets the scale
    outlier = panels[1].images[0].get_array()
    assert outlier[EPOCHS.index(1), LAYERS.index("fc1")] == values.max()  # the image keeps the exact value
    for ax in panels:
        image = ax.images[0].get_array()
        expected = sorted((int(c), int(r)) for r, c in zip(*np.nonzero((image < low) | (image > high))))
        assert hatched_cells(ax) == expected
    assert (LAYERS.index("fc1"), EPOCHS.index(1)) in hatched_cells(panels[1])
    assert sum(len(hatched_cells(ax)) for ax in panels) == 1
    legend_texts = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
    assert legend_texts == ["best epoch (2)", OUTSIDE_LABEL]
    assert fig.axes[-1].get_ylabel() == "radius $R_M$"
    plt.close(fig)


def test_heatmap_without_outliers_spans_all_values_and_hatches_nothing():
    fig = metric_heatmaps(synthetic_results(), "radius")
    values = synthetic_results().query("metric == 'radius'")["value"]
    panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
    assert (panels[0].images[0].norm.vmin, panels[0].images[0].norm.vmax) == (values.min(), values.max())
    assert not any(hatched_cells(ax) for ax in panels) and not fig.legends
    plt.close(fig)


def test_difference_maps_use_the_robust_absolute_limit():
    results = with_outlier(synthetic_results(), "capacity")
    fig = difference_maps(results, "capacity", best_epoch=2)
    panels = [ax for ax in fig.axes if ax.get_title()]
    grids = [panel.images[0].get_array().compressed() for panel in panels]
    absolute = np.sort(np.abs(np.concatenate(grids)))
    limit = absolute[-2]  # the largest difference but the planted outlier's
    assert panels[0].images[0].norm.vmax == pytest.approx(limit) == -panels[0].images[0].norm.vmin
    assert hatched_cells(panels[0]) == [(LAYERS.index("fc1"), EPOCHS.index(1))]
    plt.close(fig)


def luminance(color):
    red, green, blue = mpl_colors.to_rgb(color)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_best_epoch_line_is_labelled_and_contrasts_with_sequential_and_diverging_maps():
    results = synthetic_results()
    for fig, cmap in ((metric_heatmaps(results, "capacity", best_epoch=2), "viridis"),
                      (difference_maps(results, "capacity", best_epoch=2), "RdBu_r")):
        panels = [ax for ax in fig.axes if ax.images and ax.get_title()]
        for ax in panels:
            (line,) = [line for line in ax.lines if line.get_label() == "best epoch (2)"]
            assert line.get_ydata()[0] == EPOCHS.index(2)
            strokes = [effect._gc["foreground"] for effect in line.get_path_effects() if hasattr(effect, "_gc")]
            shades = [luminance(line.get_color()), *map(luminance, strokes)]
            for background in plt.get_cmap(cmap)(np.linspace(0, 1, 11)):
                assert max(abs(shade - luminance(background)) for shade in shades) > 0.5
        plt.close(fig)


def test_training_curves_legend_sits_below_and_covers_no_curve():
    metrics = pd.DataFrame({"epoch": np.arange(30), "loss": np.linspace(2, 0.1, 30),
                            "acc_unpermuted": np.linspace(0.1, 1, 30), "acc_permuted": np.linspace(0, 1, 30),
                            "acc_test": np.linspace(0.1, 0.8, 30)})
    fig = training_curves(metrics, best_epoch=12)
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    assert [text.get_text() for text in legend.get_texts()] == ["train", "best epoch (12)", "unpermuted",
                                                                 "permuted", "test"]
    fig.canvas.draw()
    box = legend.get_window_extent()
    assert not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)
    plt.close(fig)


def test_annotate_apart_places_crowded_labels_without_overlap():
    fig, ax = plt.subplots(figsize=(3.3, 3.3))
    points = np.column_stack([np.linspace(0.45, 0.55, 12), np.linspace(0.45, 0.55, 12)])
    ax.plot(*points.T, "o")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    labels = annotate_apart(ax, points, [f"layer{i} e60" for i in range(12)], ["C0"] * 12)
    fig.canvas.draw()
    boxes = [Text.get_window_extent(label) for label in labels]
    assert [label.get_text() for label in labels] == [f"layer{i} e60" for i in range(12)]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    frame = ax.get_window_extent()
    assert all(frame.contains(box.x0, box.y0) and frame.contains(box.x1, box.y1) for box in boxes)
    plt.close(fig)


# ---- --metrics -------------------------------------------------------------------------------------------------

def test_check_metrics_keeps_the_chosen_metrics_and_names_the_missing_ones():
    results = synthetic_results()
    assert check_metrics(results, None) == list(dict.fromkeys(results["metric"]))
    assert check_metrics(results, ["radius", "capacity"]) == ["radius", "capacity"]
    with pytest.raises(InputError, match=r"\['center_correlation'\] are not in the run's results; analysed"):
        check_metrics(results, ["capacity", "center_correlation"])
    with pytest.raises(InputError, match=r"\['capcity'\] not a metric of mftma"):
        check_metrics(results, ["capcity"])


def test_plot_metrics_option_draws_only_the_chosen_metrics(analysed_run, tmp_path):
    written = plot_run(analysed_run.path, tmp_path, formats=["png"], metrics=["radius"])
    assert {path.stem for path in written} == {"training_curves", "heatmap_radius", "difference_radius",
                                               "layer_profiles", "rollback", "embedding_fc2"}
    with pytest.raises(InputError, match="not in the run's results"):
        plot_run(analysed_run.path, tmp_path / "none", metrics=["center_correlation"])
    assert not (tmp_path / "none").exists()  # refused before drawing anything


# ---- embedding (the blog's Figure 1) -------------------------------------------------------------------------

def synthetic_views(epochs=(0, 5), n=30, seed=0):
    """Unpermuted examples 0..n-1 and permuted examples n..2n-1; restored = the permuted ones reordered."""
    rng = np.random.default_rng(seed)
    views = {}
    for epoch in epochs:
        X = rng.normal(size=(2 * n, 8))
        true = rng.integers(0, 3, 2 * n)
        training = rng.integers(0, 3, n)
        order = rng.permutation(n)
        views[epoch] = {"unpermuted": (X[:n], true[:n], np.arange(n)),
                        "permuted": (X[n:], training, np.arange(n, 2 * n)),
                        "restored": (X[n:][order], true[n:][order], np.arange(n, 2 * n)[order])}
    return views


def points_by_label(ax):
    return {collection.get_label(): collection.get_offsets() for collection in ax.collections}


def test_embedding_panels_show_every_example_once_per_row_on_axes_shared_within_a_column():
    views = synthetic_views()
    fig = embedding_panels(views, "fc1", titles={0: "epoch 0 (init)"})
    axes = np.array([ax for ax in fig.axes]).reshape(3, 2)
    assert [ax.get_title() for ax in axes[0]] == ["epoch 0 (init)", "epoch 5"]
    for col, view in enumerate(views.values()):
        for row, subset in enumerate(["unpermuted", "permuted", "restored"]):
            _, labels, _ = view[subset]
            counts = {name: len(points) for name, points in points_by_label(axes[row, col]).items()}
            assert counts == {f"class {label}": int(np.sum(labels == label)) for label in np.unique(labels)}
        assert axes[0, col].get_xlim() == axes[2, col].get_xlim()
        # restored points sit where the same permuted examples sit
        permuted = np.concatenate(list(points_by_label(axes[1, col]).values()))
        restored = np.concatenate(list(points_by_label(axes[2, col]).values()))
        np.testing.assert_allclose(np.sort(permuted, axis=0), np.sort(restored, axis=0))
    # the projection of a column is the PCA of the union of its 2n distinct examples
    union = np.concatenate([views[5]["unpermuted"][0], views[5]["permuted"][0]])
    expected, _ = project_2d(union)
    shown = np.concatenate([np.concatenate(list(points_by_label(axes[r, 1]).values())) for r in range(2)])
    np.testing.assert_allclose(np.sort(shown, axis=0), np.sort(expected, axis=0), atol=1e-9)
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    assert legend == ["class 0", "class 1", "class 2"]
    X, labels, _ = views[5]["permuted"]
    assert [text.get_text() for text in axes[1, 1].texts] == [f"5-NN {neighbour_agreement(X, labels):.2f}"]
    plt.close(fig)


def test_neighbour_agreement_is_one_for_clusters_and_near_chance_for_random_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    clustered = rng.normal(size=(200, 10)) + 20 * np.eye(10)[labels]
    assert neighbour_agreement(clustered, labels) == 1.0
    assert neighbour_agreement(clustered, rng.permutation(labels)) < 0.4
    assert neighbour_agreement(clustered[::-1], labels[::-1], k=1) == 1.0
    with pytest.raises(InputError, match="more than k examples"):
        neighbour_agreement(clustered[:3], labels[:3], k=5)


def test_project_2d_is_the_pca_of_the_rows():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(1).normal(size=(40, 6)) * [5, 3, 1, 1, 1, 1]
    coords, labels = project_2d(X)
    pca = PCA(2).fit(X)
    np.testing.assert_allclose(np.abs(coords), np.abs(pca.transform(X)), atol=1e-9)
    assert labels == tuple(f"PC{i + 1} ({share:.0%})" for i, share in enumerate(pca.explained_variance_ratio_))
    with pytest.raises(InputError, match="unknown projection 'tsne'"):
        project_2d(X, "tsne")
    with pytest.raises(InputError, match="n >= 3"):
        project_2d(X[:2])


def test_umap_projection_is_optional():
    try:
        import umap  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="umap-learn"):
            project_2d(np.eye(5), "umap")
    else:
        assert project_2d(np.random.default_rng(0).normal(size=(30, 4)), "umap")[0].shape == (30, 2)


def test_default_embedding_epochs_take_first_best_between_and_last():
    assert default_embedding_epochs([0, 1, 2, 4, 8, 16, 32, 60], best=4) == {
        0: "epoch 0 (init)", 4: "epoch 4 (best)", 16: "epoch 16", 60: "epoch 60 (last)"}
    assert default_embedding_epochs([0, 1, 2], best=2) == {0: "epoch 0 (init)", 2: "epoch 2 (best, last)"}
    assert default_embedding_epochs([3, 5], best=None) == {3: "epoch 3 (first, best)", 5: "epoch 5 (last)"}
    with pytest.raises(InputError, match="best epoch 7 is not cached"):
        default_embedding_epochs([0, 1, 2], best=7)


def test_cached_views_read_the_permuted_examples_twice_with_their_two_labellings(analysed_run):
    views = cached_views(analysed_run.path, "fc1", [0, 4])
    assert list(views) == [0, 4]
    permuted, restored = views[4]["permuted"], views[4]["restored"]
    assert set(permuted[2]) == set(restored[2])
    assert not set(permuted[2]) & set(views[4]["unpermuted"][2])
    by_index = dict(zip(permuted[2], permuted[0]))
    np.testing.assert_array_equal(np.stack([by_index[i] for i in restored[2]]), restored[0])


def test_plotting_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, mftma.plotting, mftma.plotting.embedding, "
            "mftma.plotting.labels; print('torch' in sys.modules)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"

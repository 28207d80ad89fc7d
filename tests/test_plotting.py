import argparse
import doctest
import itertools
import runpy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text

import mftma.plotting.curves
import mftma.plotting.heatmaps
import mftma.plotting.profiles
import mftma.plotting.rollback
import mftma.plotting.style
from mftma.cli import plot as plot_cli
from mftma.errors import InputError
from mftma.experiments.config import load_config
from mftma.experiments.training import train
from mftma.pipeline.results import save_results
from mftma.pipeline.rollback import load_rollback, rollback
from mftma.plotting import (
    difference_maps,
    layer_profiles,
    metric_heatmaps,
    rollback_heatmaps,
    save_figure,
    training_curves,
)
from mftma.plotting.figures import analysed_best_epoch

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


@pytest.mark.parametrize("module", [mftma.plotting.curves, mftma.plotting.heatmaps, mftma.plotting.profiles,
                                    mftma.plotting.rollback, mftma.plotting.style])
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
    return run


@pytest.fixture
def saved_figures(monkeypatch):
    """Every figure given to save_figure (by plot_run or the analysis scripts), by the name it was saved as."""
    saved = {}

    def recording(fig, path_stem, *args, **kwargs):
        saved[Path(path_stem).name] = fig
        return save_figure(fig, path_stem, *args, **kwargs)

    monkeypatch.setattr("mftma.plotting.figures.save_figure", recording)
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
    else:
        raise AssertionError(f"unexpected figure {name}")


def assert_png_drawn(path):
    pixels = plt.imread(path)
    assert pixels.shape[1] > 1000, path  # 7 in at 200 dpi, trimmed to the drawing
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20, f"{path} is nearly blank"


def test_cli_writes_every_figure_of_a_run(analysed_run, saved_figures, capsys):
    parser = argparse.ArgumentParser(prog="mftma")
    plot_cli.register(parser.add_subparsers())
    args = parser.parse_args(["plot", str(analysed_run.path), "--formats", "png"])
    assert args.func(args) == 0
    figures = analysed_run.path / "results" / "figures"
    names = {path.stem for path in figures.glob("*.png")}
    expected = {"training_curves", "layer_profiles", "rollback", *(f"heatmap_{m}" for m in METRICS),
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
    ("table_summary.py", ["summary_capacity.csv"]),
])
def test_analysis_scripts_regenerate_their_outputs(analysed_run, saved_figures, tmp_path, monkeypatch, capsys,
                                                   script, outputs):
    monkeypatch.syspath_prepend(str(ANALYSIS_DIR))
    extra = {"fig_heatmaps.py": ["--metrics", "capacity"], "table_summary.py": []}.get(script, [])
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

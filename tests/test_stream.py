"""Streaming analysis (`mftma analyze --stream`): cache, analyse and drop one checkpoint at a time."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from mftma.cache.reader import CACHE_FILE, ActivationCache
from mftma.cache.writer import cache_activations, drop_features
from mftma.errors import DataFileError
from mftma.experiments.run import Run
from mftma.pipeline.analyze import analyze_run
from mftma.pipeline.stream import stream_run

#: The tiny fixture's cached epochs and layers; the analysis settings of every call here.
SELECTION = {"epochs": [0, 4], "layers": ["input", "logits"]}
OPTIONS = {"n_t": 20, "n_reps": 2, "processes": False, "n_workers": 1, "progress": False}
KEY = ["epoch", "layer", "subset", "metric"]


def _uncached_copy(source, destination):
    """A copy of the run without its activation cache and results."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(CACHE_FILE, "results"))
    return destination


def _comparable(table):
    return table.drop(columns="run").sort_values(KEY).reset_index(drop=True)


@pytest.fixture(scope="module")
def normal(tiny_cached_run, tmp_path_factory):
    """Cache-then-analyse: the tiny run's cache analysed as it is, and its table."""
    run_dir = tmp_path_factory.mktemp("normal") / "run"
    shutil.copytree(tiny_cached_run, run_dir)
    return run_dir, analyze_run(run_dir, **SELECTION, **OPTIONS)


@pytest.fixture(scope="module")
def streamed(tiny_cached_run, tmp_path_factory):
    """The same run streamed, keeping the logits layer; copy it before writing into it."""
    run_dir = _uncached_copy(tiny_cached_run, tmp_path_factory.mktemp("streamed") / "run")
    return run_dir, stream_run(run_dir, **SELECTION, keep_layers=["logits"], **OPTIONS)


def test_stream_gives_the_table_of_cache_then_analyze(normal, streamed):
    assert len(streamed[1]) == len(normal[1]) > 0
    assert _comparable(streamed[1]).equals(_comparable(normal[1]))
    assert streamed[1].attrs["settings"] == normal[1].attrs["settings"]


def test_kept_features_are_identical_and_dropped_ones_name_the_repair(normal, streamed):
    with ActivationCache(normal[0]) as full, ActivationCache(streamed[0]) as cache:
        entries = cache.entries()
        assert entries["complete"].all()
        assert set(entries.loc[entries["dropped"], "layer"]) == {"input"}
        assert set(entries.loc[~entries["dropped"], "layer"]) == {"logits"}
        for epoch in SELECTION["epochs"]:
            for subset in cache.subsets:
                kept, labels = cache.features(epoch, "logits", subset)
                reference, reference_labels = full.features(epoch, "logits", subset)
                np.testing.assert_array_equal(kept, reference)
                np.testing.assert_array_equal(labels, reference_labels)
                assert cache.entry_identity(epoch, "input", subset) == full.entry_identity(epoch, "input", subset)
        with pytest.raises(DataFileError, match=r"dropped.*mftma cache .*run --epochs 4 --layers input"):
            cache.manifolds(4, "input", "permuted")


def test_dropped_space_is_reused(tiny_cached_run, tmp_path):
    """Caching epoch by epoch and dropping each one's features (what the stream does between its analyses)
    leaves a file much smaller than the full cache: the space of dropped entries is reused."""
    full = Run(_uncached_copy(tiny_cached_run, tmp_path / "full"))
    cache_activations(full, progress=False)
    streamed = Run(_uncached_copy(tiny_cached_run, tmp_path / "streamed"))
    for epoch in full.checkpoint_epochs():
        path = cache_activations(streamed, epochs=[epoch], progress=False)
        drop_features(path, epoch, ["input", "fc1", "fc2"])
    with ActivationCache(path) as cache:
        assert cache.entries().groupby("layer")["dropped"].all().to_dict() == {
            "input": True, "fc1": True, "fc2": True, "logits": False}
    assert path.stat().st_size < 0.75 * (full.path / CACHE_FILE).stat().st_size


def test_later_analysis_reuses_every_streamed_cell(normal, streamed):
    computed = []
    table = analyze_run(streamed[0], **SELECTION, **OPTIONS, on_cell_done=computed.append)
    assert computed == []
    assert _comparable(table).equals(_comparable(normal[1]))
    with pytest.raises(DataFileError, match=r"dropped after a streaming analysis.*--stream.*--epochs 0 4 --layers input"):
        analyze_run(streamed[0], layers=["input"], **{**OPTIONS, "n_t": 21}, on_cell_done=computed.append)
    assert computed == []


def test_recaching_restores_dropped_features(normal, streamed, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(streamed[0], run_dir)
    cache_activations(Run(run_dir), epochs=[0], layers=["input"], progress=False)
    with ActivationCache(normal[0]) as full, ActivationCache(run_dir) as cache:
        np.testing.assert_array_equal(cache.features(0, "input", "test")[0], full.features(0, "input", "test")[0])
        assert cache.entry_identity(0, "input", "test") == full.entry_identity(0, "input", "test")
        with pytest.raises(DataFileError, match="dropped"):
            cache.features(4, "input", "test")


class _Interrupt(Exception):
    pass


def test_interrupted_stream_resumes_where_it_stopped(tiny_cached_run, normal, tmp_path):
    run_dir = _uncached_copy(tiny_cached_run, tmp_path / "run")

    def stop_in_the_second_epoch(record):
        if record["cell"]["epoch"] == 4:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        stream_run(run_dir, **SELECTION, **OPTIONS, on_cell_done=stop_in_the_second_epoch)
    with ActivationCache(run_dir) as cache:
        entries = cache.entries().set_index(["epoch", "layer", "subset"])
    assert entries.loc[0, "dropped"].all() and not entries.loc[4, "dropped"].any()  # epoch 0 finished
    computed = []
    table = stream_run(run_dir, **SELECTION, **OPTIONS, on_cell_done=computed.append)
    assert {record["cell"]["epoch"] for record in computed} == {4}
    assert len(computed) == len(normal[1].query("epoch == 4")[["layer", "subset"]].drop_duplicates()) - 1
    assert _comparable(table).equals(_comparable(normal[1]))

"""Intentionally flawed models and data (docs/method.md §3.3, §4; issue 6).

Each experiment reads a *flawed config* (:func:`~mftma.pipeline.flawed.experiment.load_experiment`):
a run config (sections ``data``, ``corruption``, ``model``, ``training``, ``cache``) plus a ``flawed``
section of the experiment's own settings. It trains its runs with :func:`mftma.experiments.training.train`
into ``OUT/runs/<name>`` (resumable), measures, and writes tidy CSV tables into ``OUT``:

=================  ================================================================================
experiment         module and tables
=================  ================================================================================
``concepts``       :func:`.sweeps.concept_experiment`: ``concepts.csv``
``randomize``      :func:`.randomization.randomization_experiment`: ``randomization.csv``,
                   ``randomization_accuracy.csv``
``corruptions``    :func:`.sweeps.corruption_experiment`: ``corruption_curves.csv``,
                   ``corruption_geometry.csv``
``gradients``      :func:`.gradients.gradient_experiment`: ``gradients.csv``
``sizesweep``      :func:`.sweeps.size_sweep`: ``size_accuracy.csv``, ``size_geometry.csv``
=================  ================================================================================

The figures are drawn from these tables by ``analysis/fig_*.py``.
"""

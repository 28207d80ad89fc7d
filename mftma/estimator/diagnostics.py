"""Bias diagnostics: how the mean-field geometry of one layer moves with M, n_t and the projection dimension.

Three sweeps answer "are my settings enough for my data?":

``M``
    subsample every manifold to fewer examples (finite M inflates capacity; docs/method.md §2.8);
``n_t``
    redraw the t vectors with the center structure held fixed: the spread is the sampling error of the
    t average at that n_t;
``projection``
    project the features with a random Gaussian matrix to fewer dimensions (as the activation cache does).

Each setting is repeated over seeds; the table gives the mean, standard deviation and a 95 % confidence
interval of the mean of capacity, radius and dimension, and a short verdict per sweep.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from mftma.errors import InputError
from mftma.estimator import DEFAULT_KAPPA, DEFAULT_N_REPS, DEFAULT_N_T
from mftma.estimator.analysis import analyze_manifolds
from mftma.estimator.validation import check_count, check_manifolds

METRICS = ("capacity", "radius", "dimension")
FACTORS = ("M", "n_t", "projection")
#: A relative change of a mean (or a relative sampling error) above this calls for more of the factor.
CHANGE_THRESHOLD = 0.05
SAMPLING_THRESHOLD = 0.02


@dataclass(frozen=True)
class Diagnosis:
    """Result of :func:`diagnose`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per (factor, setting, metric): ``mean``, ``std`` (the spread of one estimate over seeds),
        ``ci_low``, ``ci_high`` (95 % Student-t interval of the mean) and ``n_seeds``.
    runs : pandas.DataFrame
        Every analysis: ``factor``, ``setting`` (M, n_t or features), ``seed`` and the three metrics.
    verdicts : list of str
        One plain-language sentence per sweep.
    settings : dict
        The arguments of the sweeps.
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    verdicts: list[str]
    settings: dict = field(default_factory=dict)

    def readable(self) -> pd.DataFrame:
        """The table as one row per (factor, setting) with ``mean +- std`` strings per metric, for printing."""
        cells = self.table.assign(
            text=[f"{mean:.4g} +- {std:.2g}" for mean, std in zip(self.table["mean"], self.table["std"])]
        )
        wide = cells.pivot(index=["factor", "setting"], columns="metric", values="text")[list(METRICS)]
        order = wide.index.get_level_values("factor").map(FACTORS.index)
        ordered = wide.iloc[np.lexsort((wide.index.get_level_values("setting"), order))]
        return ordered.rename_axis(columns=None).reset_index()

    def to_dict(self) -> dict:
        """A JSON-ready summary: settings, verdicts and the table as records."""
        return {"settings": self.settings, "verdicts": self.verdicts, "table": self.table.to_dict(orient="records")}

    def save(self, path) -> Path:
        """Write the table as CSV or the whole diagnosis as JSON (by suffix), atomically; returns the path."""
        from mftma.atomic import atomic_path

        path = check_output_path(path)
        with atomic_path(path) as temporary:
            if path.suffix == ".csv":
                self.table.to_csv(temporary, index=False)
            else:
                temporary.write_text(json.dumps(self.to_dict(), indent=2))
        return path


def check_output_path(path) -> Path | None:
    """The output path of :meth:`Diagnosis.save` (None stays None); checked before any work is done.

    Raises
    ------
    InputError
        The name does not end in .csv or .json.
    """
    if path is None:
        return None
    path = Path(path)
    if path.suffix not in (".csv", ".json"):
        raise InputError(f"output must end in .csv or .json, got {path}")
    return path


def diagnose(
    manifolds,
    *,
    sample_counts=None,
    n_t_values=(50, 100, 200, 400),
    projection_dims=None,
    n_t: int = DEFAULT_N_T,
    n_seeds: int = 5,
    kappa: float = DEFAULT_KAPPA,
    n_reps: int = DEFAULT_N_REPS,
    seed: int = 0,
    layer_width: int | None = None,
    progress: bool = False,
) -> Diagnosis:
    """Sweep M, n_t and the projection dimension on one layer's manifolds and judge each.

    Parameters
    ----------
    manifolds : list of P array_like (N, M_p), or array_like (P, N, M)
        One layer's class manifolds, features x samples.
    sample_counts : sequence of int, optional
        Samples per manifold to subsample to, between 2 and the smallest M (others are dropped); default
        M/4, M/2 and M of the smallest manifold.
    n_t_values : sequence of int
        Numbers of t vectors to compare.
    projection_dims : sequence of int, optional
        Feature counts to project to, between 2 and N (others are dropped; N means no projection);
        default N/8, N/4, N/2 and N.
    n_t : int
        t vectors of the M and projection sweeps (the setting being checked).
    n_seeds : int
        Repeats per setting (>= 2 for a spread).
    kappa, n_reps
        As in :func:`~mftma.estimator.analysis.analyze_manifolds`.
    seed : int
        The diagnosis is deterministic given it.
    layer_width : int, optional
        The layer's feature count before any random projection, when known. If it is N (the manifolds
        hold every feature of the layer), the projection verdict does not advise a larger projection,
        which cannot exist; it says that the layer's width limits the estimate.
    progress : bool
        Show a progress bar over the analyses.

    Returns
    -------
    Diagnosis

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> report = diagnose(rng.standard_normal((4, 30, 12)), n_t_values=(20, 40), n_t=40, n_seeds=2, n_reps=1)
    >>> sorted(report.table["factor"].unique())
    ['M', 'n_t', 'projection']
    """
    from mftma.progress import progress_bar

    checked = check_manifolds(manifolds)
    n_seeds = check_count(n_seeds, "n_seeds")
    if n_seeds < 2:
        raise InputError(f"n_seeds must be >= 2 to measure a spread, got {n_seeds}")
    smallest, features = min(m.shape[1] for m in checked), checked[0].shape[0]
    sample_counts = _counts(sample_counts, (smallest // 4, smallest // 2, smallest), "sample_counts", 2,
                            smallest)
    projection_dims = _counts(projection_dims, (features // 8, features // 4, features // 2, features),
                              "projection_dims", 2, features)
    n_t_values = _counts(n_t_values, (), "n_t_values", 1)
    plan = [("M", value) for value in sample_counts] + [("n_t", value) for value in n_t_values]
    plan += [("projection", value) for value in projection_dims]
    options = {"kappa": kappa, "n_reps": n_reps}
    rows = []
    with progress_bar(total=len(plan) * n_seeds, desc="diagnose", enabled=progress) as bar:
        for factor, value in plan:
            for repeat in range(n_seeds):
                rng = np.random.default_rng([seed, FACTORS.index(factor), value, repeat])
                result = _variant(checked, factor, value, n_t, rng, seed, options)
                rows.append({"factor": factor, "setting": value, "seed": repeat, "capacity": result.capacity_avg,
                             "radius": result.radius_avg, "dimension": result.dimension_avg})
                bar.update()
    runs = pd.DataFrame(rows)
    table = _summary(runs)
    settings = {"P": len(checked), "N": features, "M": smallest, "n_t": n_t, "n_seeds": n_seeds, "kappa": kappa,
                "n_reps": n_reps, "seed": seed}
    more_features = layer_width is None or layer_width > features
    return Diagnosis(table, runs, _verdicts(table, n_t, more_features), settings)


def _counts(values, defaults, name, minimum, maximum=None) -> list[int]:
    """The distinct values in [minimum, maximum], sorted; an InputError if none is left."""
    chosen = defaults if values is None else values
    counts = sorted({int(value) for value in chosen if minimum <= int(value) <= (maximum or int(value))})
    if not counts:
        bounds = f"between {minimum} and {maximum}" if maximum else f">= {minimum}"
        raise InputError(f"{name} needs at least one value {bounds}, got {list(chosen)}")
    return counts


def _variant(manifolds, factor, value, n_t, rng, seed, options):
    """Analyse one perturbed copy of the manifolds."""
    if factor == "M":
        manifolds = [m[:, rng.choice(m.shape[1], min(value, m.shape[1]), replace=False)] for m in manifolds]
        return analyze_manifolds(manifolds, n_t=n_t, seed=int(rng.integers(2**31)), **options)
    if factor == "projection":
        features = manifolds[0].shape[0]
        if value < features:
            projection = rng.standard_normal((value, features)) / np.sqrt(value)
            manifolds = [projection @ m for m in manifolds]
        return analyze_manifolds(manifolds, n_t=n_t, seed=int(rng.integers(2**31)), **options)
    # n_t: fresh t vectors, the center-structure search seeded as always
    t_vecs = [rng.standard_normal((min(m.shape) + 1, value)) for m in manifolds]
    return analyze_manifolds(manifolds, n_t=value, t_vecs=t_vecs, seed=seed, **options)


def _summary(runs: pd.DataFrame) -> pd.DataFrame:
    long = runs.melt(id_vars=["factor", "setting", "seed"], value_vars=list(METRICS), var_name="metric")
    summary = long.groupby(["factor", "setting", "metric"], sort=False)["value"].agg(["mean", "std", "count"])
    half_width = stats.t.ppf(0.975, summary["count"] - 1) * summary["std"] / np.sqrt(summary["count"])
    summary = summary.assign(ci_low=summary["mean"] - half_width, ci_high=summary["mean"] + half_width)
    summary = summary.rename(columns={"count": "n_seeds"}).reset_index()
    return summary[["factor", "setting", "metric", "mean", "std", "ci_low", "ci_high", "n_seeds"]].sort_values(
        ["factor", "setting", "metric"], key=_display_order, ignore_index=True
    )


def _display_order(column: pd.Series) -> pd.Series:
    order = {"factor": FACTORS, "metric": METRICS}.get(column.name)
    return column.map(order.index) if order else column


def _verdicts(table: pd.DataFrame, n_t: int, more_features: bool) -> list[str]:
    projection = "more features (a larger projection)" if more_features else None
    return [_change_verdict(table, "M", "M", "more samples per manifold"),
            _sampling_verdict(table, n_t),
            _change_verdict(table, "projection", "N", projection)]


def _means(table, factor) -> pd.DataFrame:
    return table[table["factor"] == factor].pivot(index="setting", columns="metric", values="mean")


def _change_verdict(table, factor, symbol, remedy) -> str:
    """The trend from the second-largest to the largest setting; ``remedy`` None: nothing larger exists."""
    means = _means(table, factor)
    if len(means) < 2:
        return f"{factor}: only {symbol}={means.index[0]} was tried, no trend to judge"
    previous, last = means.index[-2], means.index[-1]
    change = means.loc[last] / means.loc[previous] - 1
    parts = ", ".join(f"{metric} by {change[metric]:+.0%}" for metric in METRICS)
    if remedy is None and (change.abs() > CHANGE_THRESHOLD).any():
        advice = (f"{symbol}={last} is every feature of the layer, so no larger {factor} exists: "
                  "the estimate at this layer is limited by its width")
    elif abs(change["capacity"]) > CHANGE_THRESHOLD:
        advice = f"{remedy} would change the answer"
    elif (change.abs() > CHANGE_THRESHOLD).any():
        advice = f"capacity is settled, but {remedy} would still move radius or dimension"
    else:
        advice = f"{symbol}={last} is enough"
    return f"from {symbol}={previous} to {symbol}={last}, {parts}: {advice}."


def _sampling_verdict(table, n_t) -> str:
    rows = table[table["factor"] == "n_t"]
    tried = sorted(rows["setting"].unique())
    at = min(tried, key=lambda value: abs(value - n_t))
    chosen = rows[rows["setting"] == at].set_index("metric")
    error = chosen["std"] / chosen["mean"].abs()
    parts = ", ".join(f"{metric} {error[metric]:.1%}" for metric in METRICS)
    advice = "more t vectors would reduce it" if error.max() > SAMPLING_THRESHOLD else f"n_t={at} is enough"
    return f"at n_t={at} the sampling error of the t average (1 s.d.) is {parts}: {advice}."

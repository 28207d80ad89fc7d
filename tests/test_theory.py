"""Ball approximation alpha_B(kappa, R, D): limits, an independent double integral, shapes and errors."""
import doctest
import math

import numpy as np
import pytest
from scipy import integrate, stats

from mftma.errors import InputError
from mftma.estimator import theory
from mftma.estimator.theory import ball_capacity, ball_capacity_large_d, gardner_capacity


def _double_integral_capacity(kappa, radius, dimension):
    """alpha_B of docs/method.md §2.10 by nested adaptive quadrature of the piecewise A(t, r) (no closed forms)."""

    def gauss(t):
        return math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)

    def chi_density(r):
        log_density = (dimension - 1) * math.log(r) - 0.5 * r * r - (0.5 * dimension - 1) * math.log(2)
        return math.exp(log_density - math.lgamma(0.5 * dimension))

    def inner(r):
        lower, upper = kappa - r / radius, kappa + radius * r
        embedded = integrate.quad(lambda t: gauss(t) * ((t - kappa) ** 2 + r**2), -np.inf, lower)[0]
        touching = integrate.quad(lambda t: gauss(t) * (radius * r - t + kappa) ** 2 / (radius**2 + 1), lower, upper)[0]
        return embedded + touching

    top = math.sqrt(dimension) + 12
    return 1.0 / integrate.quad(lambda r: chi_density(r) * inner(r), 0, top, limit=200)[0]


@pytest.mark.parametrize(
    "kappa, radius, dimension", [(0.0, 1.0, 2.0), (0.5, 0.3, 5.0), (-1.0, 2.0, 0.5), (1.0, 0.05, 20.0)]
)
def test_matches_independent_double_integral(kappa, radius, dimension):
    expected = _double_integral_capacity(kappa, radius, dimension)
    assert ball_capacity(kappa, radius, dimension) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("kappa", [-1.0, 0.0, 0.5, 2.0])
def test_small_radius_gives_gardner_capacity_of_points(kappa):
    assert ball_capacity(kappa, 0.0, 3.0) == pytest.approx(gardner_capacity(kappa), rel=1e-12)
    assert ball_capacity(kappa, 1e-5, 3.0) == pytest.approx(gardner_capacity(kappa), rel=1e-4)


def test_gardner_capacity_known_values():
    assert gardner_capacity(0.0) == pytest.approx(2.0)
    # int_{-1}^inf Dt (t + 1)^2 = 2 Phi(1) + phi(1)
    assert gardner_capacity(1.0) == pytest.approx(1 / (2 * stats.norm.cdf(1) + stats.norm.pdf(1)))


def test_large_dimension_converges_to_limit():
    dimensions = np.array([10.0, 100.0, 1000.0, 10000.0])
    for radius in (0.5, 1.0, 3.0):
        ratio = ball_capacity(0.0, radius, dimensions) / ball_capacity_large_d(radius, dimensions)
        deviation = np.abs(ratio - 1)
        assert np.all(np.diff(deviation) < 0)
        assert deviation[-1] < 0.01


def test_capacity_decreases_with_margin_radius_and_dimension():
    grid = np.linspace(0.0, 3.0, 13)
    assert np.all(np.diff(ball_capacity(grid, 1.0, 10.0)) < 0)
    assert np.all(np.diff(ball_capacity(0.0, grid, 10.0)) < 0)
    assert np.all(np.diff(ball_capacity(0.0, 1.0, 1.0 + 10 * grid)) < 0)


def test_broadcasts_and_matches_elementwise_values():
    kappa = np.array([[0.0], [0.5]])
    radius = np.array([0.5, 1.0, 2.0])
    table = ball_capacity(kappa, radius, 7.0)
    assert table.shape == (2, 3)
    assert table[1, 2] == pytest.approx(float(ball_capacity(0.5, 2.0, 7.0)), rel=1e-12)


@pytest.mark.parametrize(
    "arguments, message",
    [((0.0, -1.0, 2.0), "radius"), ((0.0, 1.0, 0.0), "dimension"), ((np.nan, 1.0, 2.0), "kappa")],
)
def test_bad_arguments_raise_input_error(arguments, message):
    with pytest.raises(InputError, match=message):
        ball_capacity(*arguments)


def test_large_d_limit_rejects_zero_radius():
    with pytest.raises(InputError, match="radius"):
        ball_capacity_large_d(0.0, 10.0)


def test_docstring_examples_run():
    assert doctest.testmod(theory).failed == 0

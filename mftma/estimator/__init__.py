"""The MFTMA estimator (docs/method.md §2): see :mod:`mftma.estimator.analysis` for the entry point."""

#: Revision of what a seed produces: bumped whenever a change alters seeded results (the random draws, the
#: coordinates they are drawn in), so that stored results of another revision are not reused as if equal.
#: 2: t vectors per manifold from child seeds, in Cholesky coordinates (this revision's numbers differ from
#: revision 1's by sampling noise).
#: 3: the center-structure search adds uniformly random restarts to the warm ones (another optimum on
#: cells whose search had several).
#: 4: restarts are screened at a looser gradient norm and only the kept one refined (the same optima; the
#: numbers differ from revision 3's within the optimiser's tolerance).
SEEDED_RESULTS_REVISION = 4

#: Default margin kappa of the anchor-point analysis (docs/method.md §2).
DEFAULT_KAPPA = 0.0
#: Default number of Gaussian t vectors per manifold (docs/method.md §2).
DEFAULT_N_T = 200
#: Default number of random draws of the center-structure search per rank (docs/method.md §2).
DEFAULT_N_REPS = 10

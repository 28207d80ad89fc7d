"""The MFTMA estimator (docs/method.md §2): see :mod:`mftma.estimator.analysis` for the entry point."""

#: Revision of what a seed produces: bumped whenever a change alters seeded results (the random draws, the
#: coordinates they are drawn in), so that stored results of another revision are not reused as if equal.
#: 2: t vectors per manifold from child seeds, in Cholesky coordinates (this revision's numbers differ from
#: revision 1's by sampling noise).
SEEDED_RESULTS_REVISION = 2

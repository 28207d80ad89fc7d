"""Names shared by every floor of mftma (docs/ARCHITECTURE.md): the subsets of examples.

This module imports nothing, so the estimator, the experiments, the results tables, the cache
reader and the figures may all read it without pulling in torch or pandas.
"""

#: The subsets of examples a run is analysed on, in the order tables and figures list them
#: (docs/method.md §1): training examples whose label was kept (``unpermuted``) or randomized
#: (``permuted``, grouped by the training label), the same permuted examples under their true label
#: (``restored``), the same permuted examples under a fresh random labelling that training never saw
#: (``shuffled``, the null baseline), and held-out examples (``test``).
SUBSETS = ("unpermuted", "permuted", "restored", "shuffled", "test")

#: The per-example training signals that ``mftma detect-noise`` scores (docs/method.md), in the order
#: of its table and of the figure's legend.
NOISE_SIGNALS = ("loss", "logit_grad_norm", "negative_margin", "cumulative_loss", "first_fitted_epoch",
                 "forgetting_events")

"""Import path of the original package: ``from mftma.manifold_analysis_correlation import ...``."""
from mftma.estimator.compat import each_manifold_analysis_D1, manifold_analysis_corr

__all__ = ["manifold_analysis_corr", "each_manifold_analysis_D1"]

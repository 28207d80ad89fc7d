"""Figures built from result tables only: heatmaps, difference maps, layer profiles, curves, rollback."""
from mftma.plotting.curves import training_curves
from mftma.plotting.heatmaps import difference_maps, metric_heatmaps
from mftma.plotting.profiles import layer_profiles
from mftma.plotting.rollback import rollback_heatmaps
from mftma.plotting.style import paper_style, save_figure

__all__ = [
    "difference_maps",
    "layer_profiles",
    "metric_heatmaps",
    "paper_style",
    "rollback_heatmaps",
    "save_figure",
    "training_curves",
]

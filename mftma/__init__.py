"""mftma: where and when deep networks memorize.

Mean-field theoretic manifold analysis (capacity, radius, dimension, center correlation), linear probes,
an HDF5 activation cache of label-noise training runs, figures and layer rollback.
"""
__version__ = "0.1.0"

"""Linear probes on frozen features (docs/method.md §3)."""
from mftma.probes.classification import ProbeScore, make_probe, probe_accuracy, transfer_accuracy

__all__ = ["ProbeScore", "make_probe", "probe_accuracy", "transfer_accuracy"]

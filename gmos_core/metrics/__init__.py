"""gmos_core/metrics."""

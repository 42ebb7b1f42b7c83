"""gmos_core/propagation."""

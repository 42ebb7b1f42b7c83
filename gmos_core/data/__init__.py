"""gmos_core/data."""

"""gmos_core/models."""

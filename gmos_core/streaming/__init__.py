"""gmos_core/streaming."""

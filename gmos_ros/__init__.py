"""gmos_ros."""

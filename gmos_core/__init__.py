"""gmos_core: Gmos moving-object segmentation without ROS (models, metrics, data, propagation,
streaming). Never imports rclpy or any ROS package."""

__version__ = "0.1.0"

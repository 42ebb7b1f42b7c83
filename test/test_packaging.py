"""Packaging: our `training` package is the one imported (the sam2 wheel ships a top-level
`training` of its own that `make setup` removes), console scripts resolve, and setup.py does
not require any ros-* wheel."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_training_package_is_ours_from_any_directory(tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import training.train, training.evaluate; print(training.__file__)",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(out.stdout.strip()).resolve() == REPO / "training" / "__init__.py"


def test_setup_py_requires_no_ros_wheels() -> None:
    tree = ast.parse((REPO / "setup.py").read_text())
    strings = [
        n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    ]
    assert not [s for s in strings if s.startswith(("ros-", "rclpy"))]


def test_console_scripts_point_at_existing_functions() -> None:
    import importlib

    tree = ast.parse((REPO / "setup.py").read_text())
    specs = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and " = " in n.value
    ]
    assert len(specs) >= 8
    for spec in specs:
        name, target = (p.strip() for p in spec.split("="))
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name


def test_package_xml_declares_every_ros_package_imported() -> None:
    """rosdep resolves only what package.xml names: every ROS package that gmos_ros or the
    launch file imports must be there (a missing one fails on a clean robot, not here)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(REPO / "package.xml").getroot()
    declared = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    ros_roots = {
        "rclpy", "rcl_interfaces", "std_msgs", "sensor_msgs", "diagnostic_msgs",
        "lifecycle_msgs", "rosgraph_msgs", "gmos_msgs", "launch", "launch_ros",
        "builtin_interfaces", "geometry_msgs", "vision_msgs", "cv_bridge", "message_filters",
        "image_transport", "tf2_ros", "rosbag2_py", "rosidl_runtime_py",
    }  # fmt: skip
    imported = set()
    for path in list((REPO / "gmos_ros").glob("*.py")) + list((REPO / "launch").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    missing = (imported & ros_roots) - declared
    assert not missing, f"package.xml lacks {sorted(missing)}"
    for key in ("python3-numpy", "python3-opencv", "python3-rosbags-pip", "launch_ros"):
        assert key in declared

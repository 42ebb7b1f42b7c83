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

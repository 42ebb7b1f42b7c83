"""A non-editable install finds its model configurations and shipped weights (package data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SKIP = {".git", ".venv", "out", "build", "install", "log", "test", "docs", "__pycache__"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n in _SKIP or n.endswith((".egg-info", "_cache"))}


def test_non_editable_install_builds_the_micro_model_from_package_data(tmp_path):
    # A copy of the source, so the in-tree wheel build leaves nothing in the checkout.
    src, site, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    shutil.copytree(REPO, src, ignore=_ignore, symlinks=True)
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    run = subprocess.run(
        [*pip, "--no-compile", "--quiet", "--target", str(site), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if run.returncode != 0 and "No module named pip" in run.stderr:
        pytest.skip("this interpreter has no pip")
    assert run.returncode == 0, run.stderr[-2000:]
    probe = """
import json
import gmos_core
from gmos_core.models.build import CONFIG_DIR, GmosModelConfig, build_frame_model
from gmos_core.streaming.build import DEFAULT_BUNDLES
model = build_frame_model("micro", "gmos_s")
print(json.dumps({
    "package": gmos_core.__file__,
    "config_dir": str(CONFIG_DIR),
    "configs": sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")),
    "micro_name": GmosModelConfig.load("micro").name,
    "bundles": [p.is_file() for p in DEFAULT_BUNDLES.values()],
    "params": sum(p.numel() for m in (model.pi3, model.sam2, model.head) for p in m.parameters()),
    "model_config": model.config.name,
}))
"""
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["package"]).is_relative_to(site)  # the installed copy, not this checkout
    assert Path(got["config_dir"]).is_relative_to(site)
    assert {"micro", "paper"} <= set(got["configs"]) and got["micro_name"] == "micro"
    assert all(got["bundles"]) and got["params"] > 0 and got["model_config"] == "micro"

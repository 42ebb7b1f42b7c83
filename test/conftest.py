"""Shared pytest set-up: fixture paths, the `slow` / `gpu` markers, loopback-only DDS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import training

REPO = Path(__file__).resolve().parents[1]

# sam2's wheel ships a top-level `training` package (train.py, trainer.py) that would shadow ours
# when `training` resolves to site-packages (`make setup` deletes it; other installs may not):
# search the repo folder first, before any test module imports `training.*`.
_REPO_TRAINING = str(REPO / "training")
if list(training.__path__)[:1] != [_REPO_TRAINING]:
    training.__path__.insert(0, _REPO_TRAINING)
# CI clones the repo next to ../shared; GMOS_SHARED overrides for other layouts.
SHARED = Path(os.environ.get("GMOS_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"

# DDS must never leave the machine (environment note): loopback discovery and a test domain.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "87")
_fastdds = REPO / "config" / "fastdds_loopback.xml"
if _fastdds.exists():
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(_fastdds))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest --runslow` (CI skips it)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"parity fixtures not found at {FIXTURES} (set GMOS_SHARED)")
    return FIXTURES


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED


# A test-sized model: the micro SAM2 (its sizes are tied to the head's 256 channels) with a
# 1+1-block π³ on 56x56 frames (4x4 patches) and a 4-query head.
TINY_YAML = """
name: tiny
pi3: {encoder_depth: 1, decoder_depth: 2, embed_dim: 64, num_heads: 4, pixel_limit: 3136}
sam2:
  size: tiny
  image_size: 256
  overrides:
    - ++model.image_size=256
    - ++model.image_encoder.trunk.embed_dim=32
    - ++model.image_encoder.trunk.num_heads=1
    - ++model.image_encoder.trunk.stages=[1,1,2,1]
    - ++model.image_encoder.trunk.global_att_blocks=[3]
    - ++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]
    - ++model.memory_attention.layer.self_attention.feat_sizes=[16,16]
    - ++model.memory_attention.layer.cross_attention.feat_sizes=[16,16]
head: {embed_dim: 256, pi3_dim: 64, sam_dim: 256, encoder_depth: 1, decoder_depth: 1,
       num_heads: 8, num_obj_tokens: 4, mlp_dim: 256, grid: 16}
window: {num_frames: 5, span_s: 0.5}
"""


@pytest.fixture()
def tiny_model(tmp_path) -> str:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_YAML)
    return str(p)

"""Shared pytest set-up: fixture paths, the `slow` / `gpu` markers, loopback-only DDS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
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

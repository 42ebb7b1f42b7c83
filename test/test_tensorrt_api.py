"""The TensorRT API check, no GPU needed: every TensorRT class, enum member, method, property and
keyword argument the builder and the runtime use exists in the real bindings of 10.3 (JetPack
6), a late 10.x and 11.4; names that exist on one line only sit behind an explicit branch.

`make setup` installs the real ``tensorrt-cu12-bindings`` wheels (pybind11 bindings, ~1.3 MB
each) into ``$(VENV)/trt-bindings/<version>``; this test compiles stand-in ``libnvinfer`` /
``libnvonnxparser`` / ``libnvinfer_plugin`` libraries with gcc (entry points returning NULL)
so that ``import tensorrt`` works, and checks the names in one subprocess per version.
``trt.Builder(...)`` itself needs a GPU and the real library: it is NOT reached here (the
test asserts it fails with the stand-ins), so a build is never executed, only its API checked.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from training.export.trt_api import (
    BINDINGS_VERSIONS,
    REMOVED_IN_11,
    USED,
    _has,
    build_stub_libraries,
    check_version,
    version_table,
)

REPO = Path(__file__).resolve().parents[1]
BINDINGS = Path(os.environ.get("GMOS_TRT_BINDINGS", Path(sys.prefix) / "trt-bindings"))
SOURCES = {
    REPO / "training/export/engines.py": ("TensorRTBuilder", "network_flags", "layer_precisions"),
    REPO / "gmos_core/backends/trt_backend.py": ("_Engine", "TrtBackend"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    missing = [v for v in BINDINGS_VERSIONS if not (BINDINGS / v / "tensorrt_bindings").is_dir()]
    if missing:
        pytest.fail(
            f"TensorRT bindings {missing} are not installed under {BINDINGS}: run `make setup` "
            f"(pip install --no-deps --target {BINDINGS}/<version> tensorrt-cu12-bindings==<version>)"
            ", or set GMOS_TRT_BINDINGS to a folder holding them"
        )
    if shutil.which("gcc") is None:
        pytest.fail("gcc is needed to compile the TensorRT stand-in libraries")
    tmp = tmp_path_factory.mktemp("trt_stubs")
    out = {}
    for v in BINDINGS_VERSIONS:
        libs = build_stub_libraries(tmp / v, int(v.split(".")[0]))
        out[v] = check_version(BINDINGS / v, libs)
    return out


def _lines(version: str) -> set[str]:
    return {"all", version.split(".")[0]}


def test_the_checked_wheels_are_the_versions_asked_for(results) -> None:
    for v, res in results.items():
        assert res["version"] == v


def test_every_name_used_exists_on_every_line_it_is_used_on(results) -> None:
    missing = [
        (u.name, v)
        for u in USED
        for v, res in results.items()
        if u.line in _lines(v) and not res["names"][u.name]
    ]
    assert missing == [], "\n" + version_table(results)


def test_names_removed_in_11_are_absent_there_and_used_nowhere(results) -> None:
    for v, res in results.items():
        for name in REMOVED_IN_11:
            assert res["names"][name] is (v.split(".")[0] == "10"), (name, v)
    for path, scopes in SOURCES.items():
        used = _trt_uses(path, scopes)  # ILayer.precision shows up as layer.precision
        assert not used & set(REMOVED_IN_11), path
        # Anywhere in the code (docstrings may name them): no attribute of these names.
        attrs = {
            n.attr for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Attribute)
        }
        assert not attrs & {"FP16", "OBEY_PRECISION_CONSTRAINTS", "set_output_type"}, path


def test_builder_construction_needs_a_gpu_and_is_not_reached(results) -> None:
    """With stand-in libraries `trt.Builder(logger)` fails (as the real library does without a
    driver): what is checked is that the API exists, never that a build runs."""
    for v, res in results.items():
        assert res["builder_constructs"] is False, v
        assert "nullptr" in res["builder_error"] or "Error" in res["builder_error"], v


def test_the_checker_sees_missing_names_and_keywords() -> None:
    class Fake:
        class Builder:
            def create_network(self, flags=0):
                """create_network(self: Builder, flags: int = 0) -> INetworkDefinition"""

        class Flag:
            FP16 = 1

    assert _has(Fake, "Builder.create_network(flags)")
    assert not _has(Fake, "Builder.create_network(strongly_typed)")
    assert not _has(Fake, "Builder.build_engine")
    assert _has(Fake, "Flag.FP16") and not _has(Fake, "Flag.FP8")


def _trt_uses(path: Path, scopes: tuple[str, ...]) -> set[str]:
    """TensorRT names used in the given classes / functions of a source file: `trt.A.B`
    chains, and attributes of the variables that hold TensorRT objects."""
    holders = {
        "builder": "Builder",
        "network": "INetworkDefinition",
        "parser": "OnnxParser",
        "config": "IBuilderConfig",
        "layer": "ILayer",
        "t": "ITensor",
        "engine": "ICudaEngine",
        "context": "IExecutionContext",
        "runtime": "Runtime",
        "_runtime": "Runtime",
    }
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for top in tree.body:
        if getattr(top, "name", None) not in scopes:
            continue
        for node in ast.walk(top):
            if not isinstance(node, ast.Attribute):
                continue
            chain, cur = [node.attr], node.value
            while isinstance(cur, ast.Attribute):
                chain.insert(0, cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt":
                if not chain[0].startswith("__"):
                    found.add(".".join(chain))
            elif isinstance(cur, ast.Name) and chain[0] and cur.id in holders:
                found.add(f"{holders[cur.id]}.{chain[0]}")
            elif isinstance(cur, ast.Name) and cur.id == "self" and len(chain) > 1:
                if chain[0] in holders:
                    found.add(f"{holders[chain[0]]}.{chain[1]}")
    return found


def test_the_table_lists_every_tensorrt_name_the_sources_use() -> None:
    names = {re.sub(r"\(.*\)$", "", u.name) for u in USED}
    # Chains like trt.Logger.WARNING count, and so does each prefix (trt.Logger).
    listed = {".".join(n.split(".")[: i + 1]) for n in names for i in range(n.count(".") + 1)}
    for path, scopes in SOURCES.items():
        used = _trt_uses(path, scopes)
        assert used, path
        assert sorted(n for n in used if n not in listed) == [], path


def test_setup_extra_and_makefile_cover_the_checked_versions() -> None:
    setup = (REPO / "setup.py").read_text()
    assert re.search(r'"tensorrt>=10\.3,<11\.5"', setup), "setup.py: tensorrt extra range"
    makefile = (REPO / "Makefile").read_text()
    for v in BINDINGS_VERSIONS:
        assert v in makefile, f"Makefile does not install the {v} bindings"

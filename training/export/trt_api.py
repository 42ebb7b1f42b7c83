"""Every TensorRT Python name the project uses, and a check of them against real bindings.

`USED` lists each class, enum member, method, property and keyword argument that
``training/export/engines.py`` (the builder) and ``gmos_core/backends/trt_backend.py`` (the
runtime) touch, with the TensorRT line it is used on ("all", or "10" / "11" when it sits
behind an explicit version branch). `REMOVED_IN_11` are the names 11.0 dropped: the project
must not use them at all (test_tensorrt_api.py scans the sources).

`check_names(trt)` runs inside a process that imported a `tensorrt` module (the real
``tensorrt-cu12-bindings`` wheel over stand-in libraries is enough: no GPU is needed, but
`Builder(...)` / `Runtime(...)` cannot be constructed without one, so methods are checked on
the classes, keyword names in the pybind11 signatures).

    python -m training.export.trt_api --bindings .venv/trt-bindings --libs /tmp/trt-stubs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BINDINGS_VERSIONS",
    "REMOVED_IN_11",
    "USED",
    "UsedName",
    "build_stub_libraries",
    "check_names",
    "check_version",
]

# The bindings `make setup` installs (pip install --no-deps --target, ~1.3 MB each): JetPack 6's
# 10.3, the last 10.x, and 11.4. setup.py's `tensorrt` extra pins the range they span.
BINDINGS_VERSIONS: tuple[str, ...] = ("10.3.0", "10.16.1.11", "11.4.0.106")


@dataclass(frozen=True)
class UsedName:
    """One name the project uses.

    Attributes:
        name: "Class", "Class.member" or "Class.method(keyword)"; "" class = the module.
        line: "all" (used on every TensorRT line) or "10" / "11" (only behind that branch).
        where: the file that uses it.
    """

    name: str
    line: str
    where: str


_B = "training/export/engines.py"
_R = "gmos_core/backends/trt_backend.py"

USED: tuple[UsedName, ...] = (
    # module level
    UsedName("Logger", "all", _B),
    UsedName("Logger.WARNING", "all", _B),
    UsedName("Builder", "all", _B),
    UsedName("OnnxParser", "all", _B),
    UsedName("Runtime", "all", _R),
    UsedName("MemoryPoolType.WORKSPACE", "all", _B),
    UsedName("NetworkDefinitionCreationFlag.STRONGLY_TYPED", "10", _B),
    UsedName("DataType.FLOAT", "all", _B),
    UsedName("DataType.HALF", "all", _B),
    UsedName("DataType.BF16", "all", _R),
    UsedName("DataType.INT32", "all", _R),
    UsedName("DataType.INT64", "all", _R),
    UsedName("DataType.BOOL", "all", _R),
    UsedName("DataType.INT8", "all", _R),
    UsedName("DataType.UINT8", "all", _R),
    # builder
    UsedName("Builder.create_network(flags)", "all", _B),
    UsedName("Builder.create_builder_config", "all", _B),
    UsedName("Builder.build_serialized_network(network)", "all", _B),
    UsedName("Builder.build_serialized_network(config)", "all", _B),
    UsedName("OnnxParser.parse_from_file(model)", "all", _B),
    UsedName("OnnxParser.get_error", "all", _B),
    UsedName("OnnxParser.num_errors", "all", _B),
    UsedName("INetworkDefinition.num_inputs", "all", _B),
    UsedName("INetworkDefinition.get_input", "all", _B),
    UsedName("INetworkDefinition.num_layers", "all", _B),
    UsedName("INetworkDefinition.get_layer", "all", _B),
    UsedName("ILayer.num_outputs", "all", _B),
    UsedName("ILayer.get_output", "all", _B),
    UsedName("ITensor.name", "all", _B),
    UsedName("ITensor.shape", "all", _B),
    UsedName("ITensor.dtype", "all", _B),
    UsedName("IBuilderConfig.set_memory_pool_limit", "all", _B),
    UsedName("IBuilderConfig.create_timing_cache", "all", _B),
    UsedName("IBuilderConfig.set_timing_cache(ignore_mismatch)", "all", _B),
    UsedName("IBuilderConfig.get_timing_cache", "all", _B),
    UsedName("ITimingCache.serialize", "all", _B),
    # runtime
    UsedName("Runtime.deserialize_cuda_engine", "all", _R),
    UsedName("ICudaEngine.create_execution_context", "all", _R),
    UsedName("ICudaEngine.num_io_tensors", "all", _R),
    UsedName("ICudaEngine.get_tensor_name", "all", _R),
    UsedName("ICudaEngine.get_tensor_shape", "all", _R),
    UsedName("ICudaEngine.get_tensor_dtype", "all", _R),
    UsedName("IExecutionContext.set_tensor_address", "all", _R),
    UsedName("IExecutionContext.execute_async_v3(stream_handle)", "all", _R),
)

# 11.0 removed these (every network is strongly typed); deprecated in 10.12-10.16.
REMOVED_IN_11: tuple[str, ...] = (
    "BuilderFlag.FP16",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
    "ILayer.precision",
    "ILayer.set_output_type",
)


def _has(trt: Any, name: str) -> bool:
    """Whether `name` ("A.b", "A.b(kw)") exists in the imported bindings module."""
    keyword = None
    if name.endswith(")"):
        name, keyword = name[:-1].split("(")
    obj: Any = trt
    for part in name.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    if keyword is None:
        return True
    # pybind11 signatures: "create_network(self: ..., flags: int = 0) -> ..."; overloaded
    # methods list them as "1. build_serialized_network(self: ..., network: ..., ...)".
    doc = getattr(obj, "__doc__", "") or ""
    sig = re.compile(rf"^(\d+\. )?{re.escape(name.split('.')[-1])}\(self")
    return any(f" {keyword}:" in line for line in doc.splitlines() if sig.match(line.strip()))


def check_names(trt: Any) -> dict[str, bool]:
    """name -> present, for every `USED` and `REMOVED_IN_11` name."""
    return {n: _has(trt, n) for n in [*(u.name for u in USED), *REMOVED_IN_11]}


_CHILD = """
import json, sys
import tensorrt_bindings as trt
from training.export.trt_api import check_names
out = {"version": trt.__version__, "names": check_names(trt)}
try:  # needs a GPU and the real libnvinfer: with the stand-ins it must fail, not reached here
    trt.Builder(trt.Logger(trt.Logger.WARNING))
    out["builder_constructs"] = True
except Exception as exc:
    out["builder_constructs"] = False
    out["builder_error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""

_STUB_C = """
#include <stddef.h>
void* createInferBuilder_INTERNAL(void* a, int b) { return NULL; }
void* createInferRefitter_INTERNAL(void* a, void* b, int c) { return NULL; }
void* createInferRuntime_INTERNAL(void* a, int b) { return NULL; }
void* createNvOnnxParser_INTERNAL(void* a, void* b, int c) { return NULL; }
void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b, int c) { return NULL; }
void* getBuilderPluginRegistry(int a) { return NULL; }
void* getPluginRegistry(void) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void* a, const char* b) { return 1; }
"""


def build_stub_libraries(out: str | Path, major: int) -> Path:
    """Compile stand-in ``libnvinfer`` / ``libnvonnxparser`` / ``libnvinfer_plugin`` .so.N files
    (entry points returning NULL: enough for the bindings to import) into `out`; returns it.

    Raises:
        RuntimeError: gcc missing or failing (the message says so).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = out / "stub.c"
    src.write_text(_STUB_C)
    for lib in ("libnvinfer", "libnvonnxparser", "libnvinfer_plugin"):
        so = f"{lib}.so.{major}"
        cmd = ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{so}", "-o", str(out / so), str(src)]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise RuntimeError(
                f"cannot compile the TensorRT stand-in {so} with gcc: {exc}"
            ) from exc
    return out


def check_version(bindings_dir: str | Path, libs_dir: str | Path) -> dict[str, Any]:
    """Import one bindings wheel (installed with --target into `bindings_dir`) in a fresh
    process over the stand-ins in `libs_dir`, and check every name there."""
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(bindings_dir), str(repo)]),
        "LD_LIBRARY_PATH": str(libs_dir),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"importing the bindings in {bindings_dir} failed: {proc.stderr[-2000:]}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def version_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: name x version -> present / absent, with the line each name is used on."""
    versions = list(results)
    lines = [
        "| name | used on | " + " | ".join(versions) + " |",
        "|---|---|" + "---|" * len(versions),
    ]
    rows = [(u.name, "all" if u.line == "all" else f"{u.line}.x branch") for u in USED]
    rows += [(n, "not used (removed in 11.0)") for n in REMOVED_IN_11]
    for name, used in rows:
        cells = ["present" if results[v]["names"][name] else "**absent**" for v in versions]
        lines.append(f"| `{name}` | {used} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="trt_api", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bindings", type=Path, required=True, help="<dir>/<version>/ per wheel")
    args = ap.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for v in BINDINGS_VERSIONS:
            libs = build_stub_libraries(Path(tmp) / v, int(v.split(".")[0]))
            results[v] = check_version(args.bindings / v, libs)
    print(version_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""launch/gmos.launch.py, imported with recording stand-ins for `launch` / `launch_ros`.

`launch` cannot be installed here (the PyPI package of that name is unrelated), and with the
repo root on sys.path `import launch` would find the repo's own launch/ folder: the file is
loaded by path with stub modules in sys.modules that record what it would start.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest

from gmos_ros.bag import load_params_file
from gmos_ros.params import PARAMS, params_from_values

REPO = Path(__file__).resolve().parents[1]


class Recorded:
    """Any launch object: remembers its constructor arguments."""

    def __init__(self, *args, **kwargs) -> None:
        self.args = args
        self.kwargs = kwargs


def _stub(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def _kind(name: str) -> type:
    return type(name, (Recorded,), {})


def _perform(self, context: dict[str, str]) -> str:
    """LaunchConfiguration.perform: the argument's value in the (stand-in) context."""
    return context[self.args[0]]


def _node_of(launch_description, given: dict[str, str] | None = None):
    """Run the OpaqueFunction as launch would, with these launch arguments given ("" = not)."""
    from importlib import import_module

    entities = launch_description.args[0]
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    mod = import_module(opaque.kwargs["function"].__module__)
    context = {name: "" for name in mod.BACKEND_ARGS} | (given or {})
    (node,) = opaque.kwargs["function"](context)
    return node


@pytest.fixture
def launch_description(monkeypatch):
    classes = {
        n: _kind(n)
        for n in (
            "LaunchDescription",
            "DeclareLaunchArgument",
            "OpaqueFunction",
            "LaunchConfiguration",
            "PathJoinSubstitution",
            "Node",
            "ParameterValue",
            "FindPackageShare",
        )
    }
    mods = {
        "launch": _stub("launch", LaunchDescription=classes["LaunchDescription"]),
        "launch.actions": _stub(
            "launch.actions",
            DeclareLaunchArgument=classes["DeclareLaunchArgument"],
            OpaqueFunction=classes["OpaqueFunction"],
        ),
        "launch.substitutions": _stub(
            "launch.substitutions",
            LaunchConfiguration=classes["LaunchConfiguration"],
            PathJoinSubstitution=classes["PathJoinSubstitution"],
        ),
        "launch_ros": _stub("launch_ros"),
        "launch_ros.actions": _stub("launch_ros.actions", Node=classes["Node"]),
        "launch_ros.parameter_descriptions": _stub(
            "launch_ros.parameter_descriptions", ParameterValue=classes["ParameterValue"]
        ),
        "launch_ros.substitutions": _stub(
            "launch_ros.substitutions", FindPackageShare=classes["FindPackageShare"]
        ),
    }
    classes["LaunchConfiguration"].perform = _perform
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)
    spec = importlib.util.spec_from_file_location("gmos_launch", REPO / "launch" / "gmos.launch.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gmos_launch", module)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _resolve(sub, args: dict[str, object]) -> object:
    """Evaluate the stand-in substitutions the way launch would (share dir = the checkout)."""
    name = type(sub).__name__
    if name == "LaunchConfiguration":
        return _resolve(args[sub.args[0]], args)
    if name == "FindPackageShare":
        assert sub.args[0] == "gmos_ros"
        return str(REPO)
    if name == "PathJoinSubstitution":
        return str(Path(*[str(_resolve(p, args)) for p in sub.args[0]]))
    return sub


def test_launch_starts_gmos_node_with_arguments(launch_description):
    entities = launch_description.args[0]
    decls = {e.args[0]: e for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert set(decls) == {
        "namespace",
        "params_file",
        "image",
        "camera_info",
        "use_sim_time",
        *("backend", "onnx_dir", "engine_dir", "ort_provider", "device", "precision"),
    }
    assert all(d.kwargs.get("description") for d in decls.values())
    node = _node_of(launch_description)
    assert node.kwargs["package"] == "gmos_ros" and node.kwargs["executable"] == "gmos_node"
    assert type(node.kwargs["namespace"]).__name__ == "LaunchConfiguration"
    remaps = {src: dst.args[0] for src, dst in node.kwargs["remappings"]}
    assert remaps == {"image": "image", "camera_info": "camera_info"}
    # The node subscribes to the relative names that the remaps point elsewhere.
    overrides = node.kwargs["parameters"][1]
    assert overrides["input_topics"] == ["image"]
    assert overrides["camera_info_topics"] == ["camera_info"]
    sim = overrides["use_sim_time"]
    assert sim.kwargs["value_type"] is bool and sim.args[0].args[0] == "use_sim_time"
    # The executable exists: `gmos_node = gmos_ros.node:main`.
    from gmos_ros import node as node_module

    assert callable(node_module.main)


def test_launch_params_file_parses_and_declares_known_parameters(launch_description):
    entities = launch_description.args[0]
    defaults = {
        e.args[0]: e.kwargs["default_value"]
        for e in entities
        if type(e).__name__ == "DeclareLaunchArgument"
    }
    node = _node_of(launch_description)
    params_file = Path(_resolve(node.kwargs["parameters"][0], defaults))
    assert params_file == REPO / "config" / "gmos.yaml" and params_file.is_file()
    values = load_params_file(params_file)
    known = {p.name for p in PARAMS}
    assert values and set(values) <= known, set(values) - known
    overrides = {k: v for k, v in node.kwargs["parameters"][1].items() if k != "use_sim_time"}
    settings = params_from_values({**values, **overrides})
    assert settings.cameras[0].image_topic == "image"
    assert settings.cameras[0].camera_info_topic == "camera_info"


def test_backend_launch_arguments_override_the_params_file_only_when_given(launch_description):
    """Not given: the params file's backend stands (an empty value is not passed on); given:
    they reach the node as parameters it validates."""
    plain = _node_of(launch_description).kwargs["parameters"][1]
    assert not {"backend", "onnx_dir", "engine_dir", "ort_provider"} & set(plain)
    given = {"backend": "onnxruntime", "onnx_dir": "/x/onnx", "ort_provider": "cpu"}
    over = _node_of(launch_description, given).kwargs["parameters"][1]
    assert {k: over[k] for k in given} == given
    values = load_params_file(REPO / "config" / "gmos.yaml")
    settings = params_from_values(
        {**values, **{k: v for k, v in over.items() if k != "use_sim_time"}}
    )
    assert settings.runtime.backend == "onnxruntime" and settings.runtime.onnx_dir == "/x/onnx"
    with pytest.raises(ValueError, match="ort_provider"):
        params_from_values({**values, "ort_provider": "rocm"})

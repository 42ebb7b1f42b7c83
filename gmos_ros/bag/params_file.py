"""Node settings from a ROS 2 params YAML (+ `name:=value` overrides) without ROS launch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from gmos_ros.bag.storage import REPO
from gmos_ros.params import PARAMS, NodeParams, params_from_values


def default_params_file() -> Path:
    """config/gmos.yaml of the checkout, else of the installed package share."""
    for p in (
        REPO / "config" / "gmos.yaml",
        Path(sys.prefix) / "share" / "gmos_ros" / "config" / "gmos.yaml",
    ):
        if p.is_file():
            return p
    raise FileNotFoundError("config/gmos.yaml not found (checkout or share/gmos_ros)")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_params_file(path: str | Path, node_name: str = "gmos") -> dict[str, Any]:
    """A ROS 2 params YAML as flat dotted names -> values for `node_name`.

    Sections apply in ROS order: `/**` first, then the ones naming the node (with or without
    namespace), so node-specific values win.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    out: dict[str, Any] = {}
    for key in sorted(data, key=lambda k: 0 if k in ("/**", "**") else 1):
        section = data[key]
        name = str(key).rstrip("/").split("/")[-1]
        if key in ("/**", "**") or name == node_name:
            if not isinstance(section, dict) or "ros__parameters" not in section:
                raise ValueError(f"{path}: section {key!r} has no ros__parameters")
            out.update(_flatten(section["ros__parameters"]))
    return out


def _settings(params_file: str | None, overrides: list[str]) -> NodeParams:
    values = {s.name: None for s in PARAMS}
    values.update(load_params_file(params_file or default_params_file()))
    for item in overrides:
        if ":=" in item:
            k, v = item.split(":=", 1)
        elif "=" in item:
            k, v = item.split("=", 1)
        else:
            raise ValueError(f"-p needs name:=value, got {item!r}")
        values[k.strip()] = yaml.safe_load(v)
    return params_from_values(values)

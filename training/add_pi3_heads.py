"""Write a copy of a micro bundle whose π³ carries the trained geometry heads of the heads-only stage.

    python -m training.add_pi3_heads --bundle gmos_core/assets/micro_gmos.safetensors \
        --heads out/train/pi3_heads_micro/state_fp16.safetensors \
        --out out/bundles/micro_gmos_heads.safetensors

The heads-only stage (``--config-name pi3_heads_micro``, `training.pretrain_pi3` with
``train_body: false``) trains the point / confidence / camera heads on the frozen stage-1 π³
that every shipped micro model reads. This tool checks that the bundle's π³ IS that body (its
float16 tensors equal the stage's `body_fp16` ones bit for bit: heads trained on another body
would give wrong geometry silently), then writes every bundle tensor unchanged plus
``pi3.<head key>`` tensors (float16) and the ``pi3_heads`` metadata (`Pi3HeadSizes`) that
`gmos_core.bundle.read_bundle_info` expects. Masks do not change: the heads only read the
decoder's tokens (test/test_add_pi3_heads.py checks the masks bit for bit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from gmos_core.bundle import read_bundle_info
from gmos_core.models.pi3_heads import HEAD_NAMES, Pi3HeadSizes, build_heads
from training.pretrain_pi3 import Pi3PretrainConfig, pretrain_config_from_dict
from training.resume import load_fp16_state
from training.train import compose_config


def _recipe(config_name: str) -> Pi3PretrainConfig:
    """The typed `pretrain_pi3` config of a recipe."""
    return pretrain_config_from_dict(compose_config(config_name, []))


def head_sizes_of_config(config_name: str) -> Pi3HeadSizes:
    """The head sizes a `pretrain_pi3` recipe trains (its ``geometry_head_*`` settings)."""
    cfg = _recipe(config_name)
    return Pi3HeadSizes(
        width=cfg.geometry_head_width,
        depth=cfg.geometry_head_depth,
        num_heads=cfg.geometry_head_heads,
        camera_width=cfg.geometry_camera_width,
    )


def body_fp16_of_config(config_name: str) -> str:
    """The stage-1 state whose frozen π³ body a heads-only recipe trains on."""
    return _recipe(config_name).body_fp16


def add_pi3_heads(
    bundle: str | Path,
    heads_state: str | Path,
    out: str | Path,
    sizes: Pi3HeadSizes,
    body_fp16: str | Path | None,
) -> Path:
    """Copy `bundle` to `out` with the heads of `heads_state` added to its π³.

    Args:
        bundle: a gmos bundle without π³ heads.
        heads_state: a heads-only training state (``pi3_heads.*`` float16 tensors).
        out: the new bundle (must differ from `bundle`).
        sizes: the heads' sizes (the attention head count is not in the tensor shapes).
        body_fp16: the stage-1 state the heads were trained on; the bundle's π³ must equal its
            ``pi3.*`` tensors bit for bit (None: not checked).

    Raises:
        ValueError: out is the input, the bundle already has heads, the state holds no or
            mis-sized heads, or the bundle's π³ is not the body the heads were trained on.
    """
    bundle, out = Path(bundle), Path(out)
    if out.resolve() == bundle.resolve():
        raise ValueError(f"--out {out} would overwrite the input bundle; write a new file")
    info = read_bundle_info(bundle)  # named errors for a file that is not a bundle
    if info.pi3_heads is not None:
        raise ValueError(f"{bundle} already carries π³ heads ({info.pi3_heads})")
    st = load_fp16_state(heads_state)
    heads = st.parts.get("pi3_heads")
    if not heads:
        raise ValueError(f"{heads_state}: no pi3_heads.* tensors (not a heads-only state)")
    with safe_open(str(bundle), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors: dict[str, Tensor] = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    pi3_keys = {k[4:]: v for k, v in tensors.items() if k.startswith("pi3.")}
    embed_dim = int(pi3_keys["encoder.patch_embed.proj.weight"].shape[0])
    patch = int(pi3_keys["encoder.patch_embed.proj.weight"].shape[-1])
    ref = build_heads(
        embed_dim, sizes.width, sizes.depth, sizes.num_heads, sizes.camera_width, patch
    )
    want = {f"{n}.{k}": v for n, m in ref.items() for k, v in m.state_dict().items()}
    if set(heads) != set(want):
        extra, missing = sorted(set(heads) - set(want)), sorted(set(want) - set(heads))
        raise ValueError(
            f"{heads_state}: head keys differ: extra {extra[:3]}, missing {missing[:3]}"
        )
    bad = [k for k, v in heads.items() if tuple(v.shape) != tuple(want[k].shape)]
    if bad:
        raise ValueError(f"{heads_state}: heads do not have sizes {sizes}: {bad[:3]}")
    if body_fp16 is not None:
        body = load_fp16_state(body_fp16).parts["pi3"]
        differ = [
            k
            for k, v in body.items()
            if k not in pi3_keys
            or pi3_keys[k].shape != v.shape
            or not torch.equal(pi3_keys[k].to(torch.float16), v.to(torch.float16))
        ]
        if differ or set(pi3_keys) != set(body):
            raise ValueError(
                f"{bundle}: its π³ is not the body of {body_fp16} the heads were trained on "
                f"(differs at {differ[:3]})"
            )
    for k, v in heads.items():
        assert k.split(".", 1)[0] in HEAD_NAMES
        tensors[f"pi3.{k}"] = v.to(torch.float16).contiguous()
    meta["pi3_heads"] = sizes.to_json()
    meta["extra.pi3_heads_from"] = f"{Path(heads_state).name} step {st.step}"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(out)  # atomic: never half a bundle
    return out


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (2: bad input)."""
    p = argparse.ArgumentParser(prog="add_pi3_heads", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, type=Path, help="a gmos bundle without π³ heads")
    p.add_argument("--heads", required=True, type=Path, help="heads-only state_fp16.safetensors")
    p.add_argument("--out", required=True, type=Path, help="the new bundle")
    p.add_argument(
        "--config-name",
        default="pi3_heads_micro",
        help="the heads-only recipe (head sizes and the stage-1 body to check against)",
    )
    args = p.parse_args(argv)
    try:
        sizes = head_sizes_of_config(args.config_name)
        body = body_fp16_of_config(args.config_name) or None
        path = add_pi3_heads(args.bundle, args.heads, args.out, sizes, body)
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"add_pi3_heads: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

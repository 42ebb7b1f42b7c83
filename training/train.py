"""`gmos-train`: train a Gmos proposer or Gmos-S from a recipe in `training/configs/`.

    gmos-train --config-name gmos_s_micro [key=value ...]
    python -m training.train --config-name gmos_micro max_steps=200 optim.lr=3e-4
    torchrun --nproc_per_node 2 -m training.train --config-name gmos_paper   # DDP

Recipes (one YAML each, composed with Hydra's compose API so that ``key=value`` overrides work
exactly as in a Hydra app; ``+key=value`` adds a key):

    gmos_s_micro / gmos_micro   micro sizes, synthetic scenes, all parts trained on CPU
    gmos_s_paper / gmos_paper   official sizes, frozen pretrained π³ + SAM2, Gmos-2K + synthetic

Exit status: 0 done, 2 bad configuration, 3 non-finite loss (the last good checkpoint is kept).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

import training as _training_pkg

# The sam2 wheel installs its own top-level `training` package (with train.py / trainer.py)
# into site-packages, which shadows ours outside the repo root. Put this folder first on the
# package path so `training.trainer` below is ours whichever `training` was imported first.
_HERE = str(Path(__file__).resolve().parent)
if list(_training_pkg.__path__)[:1] != [_HERE]:
    _training_pkg.__path__.insert(0, _HERE)

from gmos_core.models.build import GmosModelConfig  # noqa: E402
from training.datasets import (  # noqa: E402
    Gmos2KDataConfig,
    Gmos2KWindowDataset,
    SyntheticWindowDataset,
    WindowSpec,
    synthetic_config_from_dict,
)
from training.trainer import TrainConfig, Trainer, config_from_dict, main_guard  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def compose_config(
    config_name: str, overrides: list[str], config_dir: Path = CONFIG_DIR
) -> dict[str, Any]:
    """Compose `<config_dir>/<config_name>.yaml` with Hydra overrides; a resolved plain dict."""
    # SAM2 initialises Hydra's global state on import: clear it so our config dir is used.
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
            cfg = compose(config_name=config_name, overrides=overrides)
    finally:
        GlobalHydra.instance().clear()
        if "sam2" in sys.modules:
            # Give SAM2 its config module back: its builders compose from it (a later
            # build_sam2 / build_sam2_video_predictor in this process would fail otherwise).
            initialize_config_module("sam2", version_base="1.2")
    raw = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(raw, dict)
    return raw  # type: ignore[return-value]


def train_config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """Typed `TrainConfig` from a composed dict; unknown keys are an error."""
    return config_from_dict(TrainConfig, raw, "training config")


def build_dataset(cfg: TrainConfig, spec: WindowSpec) -> tuple[Any, bool]:
    """(dataset, shuffle) for the config's ``data`` section."""
    data = dict(cfg.data)
    kind = data.pop("kind", "synthetic")
    if kind == "synthetic":
        return SyntheticWindowDataset(synthetic_config_from_dict(data), spec), False
    if kind == "gmos2k":
        if "subsets" in data and data["subsets"] is not None:
            data["subsets"] = tuple(data["subsets"])
        if "fps" in data:
            data["fps"] = {**Gmos2KDataConfig().fps, **data["fps"]}
        return Gmos2KWindowDataset(Gmos2KDataConfig(**data), spec, seed=cfg.seed), True
    raise ValueError(f"data.kind must be 'synthetic' or 'gmos2k', got {kind!r}")


def window_spec(cfg: TrainConfig) -> WindowSpec:
    """WindowSpec with sizes taken from the model config unless `window` overrides them."""
    m = GmosModelConfig.load(cfg.model)
    base = {
        "num_frames": m.num_frames,
        "pi3_pixel_limit": m.pi3.pixel_limit,
        "sam_size": m.sam2.image_size,
        "mask_size": 4 * m.head.grid,
    }
    return WindowSpec(**{**base, **dict(cfg.window)})


def build_parser() -> argparse.ArgumentParser:
    """The `gmos-train` argument parser (everything else is a Hydra override)."""
    p = argparse.ArgumentParser(prog="gmos-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config-name", required=True, help="recipe in training/configs/")
    p.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    p.add_argument("--print-config", action="store_true", help="print the composed config")
    p.add_argument("overrides", nargs="*", help="key=value Hydra overrides")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        raw = compose_config(args.config_name, list(args.overrides), args.config_dir)
        cfg = train_config_from_dict(raw)
        spec = window_spec(cfg)
    except Exception as e:  # hydra raises several types for bad overrides / missing files
        print(f"gmos-train: error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(OmegaConf.to_yaml(OmegaConf.create(raw)))
        return 0
    dataset, shuffle = build_dataset(cfg, spec)
    trainer = Trainer(cfg, dataset, shuffle=shuffle)
    summary: dict[str, Any] = {}

    def run() -> None:
        summary.update(trainer.fit())

    rc = main_guard(run)
    if rc == 0 and trainer.rank == 0:
        print(json.dumps({"out_dir": cfg.out_dir, **summary}, default=str))
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""``python -m ecgml.digitize input_dir=IMAGES output_dir=OUT [layout=page fs=500 dpi=…]``."""

from __future__ import annotations

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.digitize.folder import digitize_folder_from_config


@hydra_entry("digitize")
def main(cfg: DictConfig) -> None:
    digitize_folder_from_config(cfg)

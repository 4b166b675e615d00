"""``python -m ecgml.digitize input_dir=IMAGES output_dir=OUT [layout=auto fs=500 dpi=…]``."""

from __future__ import annotations

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.digitize.folder import digitize_folder_from_config


def left_unchanged(cfg: DictConfig) -> str:
    # the run removed its temporary folder and stopped its workers on the way out
    return f"{cfg.get('output_dir')} left unchanged"


@hydra_entry("digitize", interrupted=left_unchanged)
def main(cfg: DictConfig) -> None:
    digitize_folder_from_config(cfg)

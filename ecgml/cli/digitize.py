"""``python -m ecgml.digitize input_dir=IMAGES output_dir=OUT [layout=page fs=500 dpi=…]``."""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from ecgml.cli import hydra_entry
from ecgml.digitize.folder import digitize_folder_from_config

#: Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


@hydra_entry("digitize")
def main(cfg: DictConfig) -> None:
    try:
        digitize_folder_from_config(cfg)
    except KeyboardInterrupt:
        # The run removed its temporary folder and stopped its workers on the way out.
        print(
            f"interrupted: {cfg.get('output_dir')} left unchanged; rerun to start over",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(EXIT_INTERRUPTED)

"""``python -m ecgml.digitize input_dir=IMAGES output_dir=OUT [layout=page fs=500 dpi=…]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ecgml import CONF_DIR
from ecgml.cli import HYDRA_VERSION_BASE, entry_point
from ecgml.digitize.folder import digitize_folder_from_config


@hydra.main(config_path=str(CONF_DIR), config_name="digitize", version_base=HYDRA_VERSION_BASE)
@entry_point
def main(cfg: DictConfig) -> None:
    digitize_folder_from_config(cfg)


if __name__ == "__main__":
    main()

"""``python -m ecgml.synth out=DIR [scale=5 severity=0.5 images=false overwrite=true …]``."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ecgml.cli import hydra_entry
from ecgml.errors import EcgmlError
from ecgml.outputs.engine import check_address
from ecgml.synth.cohort import build_cohort, read_cohort_json

log = logging.getLogger("ecgml.synth")

#: Keys of conf/synth.yaml that drive the CLI rather than the generator (not in the cache key).
CLI_KEYS = ("out", "overwrite", "n_jobs", "engine", "task_name", "paths", "debug", "traceback")


def generator_config(cfg: DictConfig) -> dict:
    """The generator knobs of the composed CLI config (everything but the CLI's own keys)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    return {k: v for k, v in container.items() if k not in CLI_KEYS}


def run(cfg: DictConfig) -> Path:
    """Build the cohort the CLI config describes; return its folder."""
    if not cfg.out:
        raise EcgmlError("no output folder: pass out=DIR (e.g. out=data/synthetic)")
    address = check_address(cfg.get("engine", {}).get("address"))
    out = build_cohort(
        generator_config(cfg),
        Path(str(cfg.out)),
        bool(cfg.overwrite),
        n_jobs=cfg.n_jobs,
        engine_address=address,
    )
    meta = read_cohort_json(out) or {}
    print(
        f"cohort {meta.get('config_hash')}: {meta.get('n_patients')} patients, "
        f"{meta.get('n_beats')} beats {meta.get('group_counts')} -> {out}"
    )
    return out


def left_unchanged(cfg: DictConfig) -> str:
    # the build removed its temporary folder and stopped its workers on the way out
    return f"{cfg.get('out')} left unchanged"


@hydra_entry("synth", interrupted=left_unchanged)
def main(cfg: DictConfig) -> None:
    run(cfg)

"""A small 12-lead synthetic cohort (20 patients), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ecgml import CONF_DIR
from ecgml.synth.cohort import build_cohort, cohort_config


@pytest.fixture(scope="session")
def cohort12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = cohort_config(OmegaConf.load(CONF_DIR / "cohort" / "default.yaml"))
    groups = {"hyperkalemia": 4, "hypokalemia": 4, "hyponatremia": 4, "normal": 8}
    cfg.update(images=False, twelve_lead=True, seed=7, groups=groups)
    out = tmp_path_factory.mktemp("cohort12") / "cohort"
    return build_cohort(cfg, out, overwrite=False, n_jobs=1)

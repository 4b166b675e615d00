"""Issue 6's check on the synthetic cohort: the hyperkalemia model looks at the T wave.

The generator puts hyperkalemia's main sign (the peaked T) in the T wave, so a model trained on
enough patients (scale 3: 120 hyperkalemia patients) should put most of its saliency there for
hyperkalemia beats, and a randomized-weights copy should not (the sanity check).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ecgml.train import train
from tests.conftest import compose_once

pytestmark = pytest.mark.slow
REGIONS = ("p", "pr", "qrs", "st", "t", "u")


def test_hyperkalemia_saliency_concentrates_on_the_t_wave(tmp_path: Path) -> None:
    cfg = compose_once(
        "disorder=hyperkalemia",
        "data.cohort.scale=3",
        "trainer.max_epochs=25",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "trainer.enable_progress_bar=false",
        "training.log_model=false",
        "training.log_checkpoint=false",
        "evaluation.n_bootstrap=200",
    )
    metrics = train(cfg).metrics
    assert metrics["test/auroc"] > 0.75  # the model learned the disorder
    fractions = {r: metrics[f"explain/{r}_region_fraction_positive"] for r in REGIONS}
    assert max(fractions, key=fractions.get) == "t", fractions
    assert metrics["explain/sanity_passed"] == 1.0
    assert metrics["explain/sanity_similarity"] < 0.5

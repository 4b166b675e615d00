"""The Lightning fitter: ensembles average their members, augmentation stays out of predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ecgml.data.datamodule import load_table
from ecgml.errors import EcgmlError
from ecgml.pipeline.fitters import LightningFitter, ensemble_size, make_fitter

pytestmark = pytest.mark.slow


def fitted(compose_cfg, toy_store: Path, tmp_path: Path, *extra: str) -> LightningFitter:
    cfg = compose_cfg(
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        *extra,
    )
    fitter = make_fitter(cfg, logger=False, out=tmp_path)  # type: ignore[arg-type]
    assert isinstance(fitter, LightningFitter)
    fitter.fit(load_table(cfg))
    return fitter


def stored_test_beats(fitter: LightningFitter) -> torch.Tensor:
    x, _ = fitter.datamodule.table.subset("test")
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(1)


def test_ensemble_prediction_is_the_mean_of_its_members(compose_cfg, toy_store, tmp_path) -> None:
    fitter = fitted(compose_cfg, toy_store, tmp_path, "training.ensemble=2")
    members = fitter.model.backbone.members
    assert len(members) == 2 and len(fitter.checkpoints) == 2
    first, second = (dict(m.named_parameters()) for m in members)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # two seeds, two models
    with torch.no_grad():
        x = stored_test_beats(fitter)
        mean = torch.stack([torch.sigmoid(m.eval()(x)) for m in members]).mean(0).squeeze(-1)
    np.testing.assert_allclose(fitter.predict("test")["y_prob"], mean.numpy(), atol=1e-5)


def test_predictions_see_the_stored_beats_not_augmented_ones(
    compose_cfg, toy_store, tmp_path
) -> None:
    fitter = fitted(
        compose_cfg, toy_store, tmp_path, "data.augment.noise_mv=0.2", "data.augment.p=1"
    )
    with torch.no_grad():
        expected = torch.sigmoid(fitter.model.eval()(stored_test_beats(fitter))).numpy()
    first, second = fitter.predict("test")["y_prob"], fitter.predict("test")["y_prob"]
    np.testing.assert_allclose(first, expected, atol=1e-6)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("value", [0, -1, 1.5, "three"])
def test_bad_ensemble_size_is_a_user_error(compose_cfg, value) -> None:
    cfg = compose_cfg(f"training.ensemble={value}")
    with pytest.raises(EcgmlError, match="training.ensemble="):
        ensemble_size(cfg)

"""The Lightning fitter: ensembles average their members, augmentation stays out of predictions,
stochastic weight averaging keeps the averaged weights, label smoothing only in training."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, StochasticWeightAveraging

from ecgml.data.datamodule import load_table
from ecgml.data.tasks import task_spec
from ecgml.errors import EcgmlError
from ecgml.models import build_backbone
from ecgml.models.module import BeatClassifier
from ecgml.pipeline.fitters import (
    LightningFitter,
    build_callbacks,
    ensemble_size,
    kept_checkpoint,
    label_smoothing,
    make_fitter,
)
from ecgml.pipeline.units import BeatUnit


def fitted(
    compose_cfg, toy_store: Path, tmp_path: Path, *extra: str, callbacks: tuple = ()
) -> LightningFitter:
    cfg = compose_cfg(
        "data=beats",
        f"data.path={toy_store}",
        "disorder=hyperkalemia",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        *extra,
    )
    fitter = make_fitter(cfg, logger=False, out=tmp_path, unit=BeatUnit(), extra=callbacks)  # type: ignore[arg-type]
    assert isinstance(fitter, LightningFitter)
    fitter.fit(load_table(cfg))
    return fitter


def stored_test_beats(fitter: LightningFitter) -> torch.Tensor:
    x, _ = fitter.datamodule.table.subset("test")
    return torch.from_numpy(x.astype(np.float32)).unsqueeze(1)


@pytest.mark.slow
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


@pytest.mark.slow
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


class WeightsAtTheEnd(L.Callback):
    """The module's weights after each epoch, and once training has ended."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.ended = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def differs(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return any(not torch.allclose(first[k].float(), second[k].float()) for k in first)


@pytest.mark.slow
def test_swa_keeps_the_averaged_weights_not_the_last_epochs(
    compose_cfg, toy_store, tmp_path
) -> None:
    seen = WeightsAtTheEnd()
    fitter = fitted(
        compose_cfg,
        toy_store,
        tmp_path,
        "callbacks=swa",
        "model=linear1d",
        "trainer.max_epochs=6",
        callbacks=(seen,),
    )
    assert len(seen.epochs) == 7  # 6 epochs, then SWA's BatchNorm pass over the average
    assert differs(seen.epochs[5], seen.ended)  # the kept weights are not the last epoch's
    kept = fitter.model.state_dict()
    for name, value in seen.ended.items():
        torch.testing.assert_close(kept[name], value)


class NoBatchNorm(L.LightningModule):
    """A linear model without BatchNorm: Lightning gives it no extra statistics epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_kept_checkpoint_holds_the_swa_average_for_a_model_without_batchnorm(
    tmp_path: Path,
) -> None:
    """Lightning swaps the average in after the last checkpoint was written: rewritten."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=generator)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1)), batch_size=8)
    module = NoBatchNorm()
    trainer = L.Trainer(
        max_epochs=4,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path, filename="best", monitor=None),
            StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=0.5),
        ],
    )
    trainer.fit(module, data)
    path = trainer.checkpoint_callback.best_model_path
    final = {k: v.clone() for k, v in module.state_dict().items()}
    assert differs(torch.load(path, weights_only=True)["state_dict"], final)  # Lightning's gap
    assert kept_checkpoint(trainer) == path
    stored = torch.load(path, weights_only=True)["state_dict"]
    for name, value in final.items():
        torch.testing.assert_close(stored[name], value)


def test_swa_with_best_on_validation_checkpoints_is_refused(compose_cfg, tmp_path) -> None:
    cfg = compose_cfg(
        "callbacks=early_stopping",
        "+callbacks.swa._target_=lightning.pytorch.callbacks.StochasticWeightAveraging",
        "+callbacks.swa.swa_lrs=0.001",
    )
    with pytest.raises(EcgmlError, match="use callbacks=swa"):
        build_callbacks(cfg, tmp_path)


def test_label_smoothing_softens_training_targets_only(compose_cfg) -> None:
    cfg = compose_cfg("training.label_smoothing=0.2", "training.pos_weight=none")
    backbone = build_backbone(cfg.model, in_channels=1, n_outputs=1, seq_len=400)
    smoothing = label_smoothing(cfg, task_spec(cfg))
    module = BeatClassifier(backbone, torch.optim.AdamW, label_smoothing=smoothing)
    y = torch.tensor([0.0, 1.0])
    torch.testing.assert_close(module.train().loss_targets(y), torch.tensor([0.1, 0.9]))
    torch.testing.assert_close(module.eval().loss_targets(y), y)
    logits = torch.tensor([-4.0, 4.0])  # the loss of a confident right answer rises when smoothed
    hard = module.loss_fn(logits, y)
    soft = module.loss_fn(logits, module.train().loss_targets(y))
    assert soft.item() > hard.item() + 0.1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["training.label_smoothing=1.0"], "use a number in \\[0, 1\\)"),
        (["training.label_smoothing=-0.1"], "use a number in \\[0, 1\\)"),
        (["training.label_smoothing=some"], "use a number in \\[0, 1\\)"),
    ],
)
def test_bad_label_smoothing_is_a_user_error(compose_cfg, overrides, message) -> None:
    cfg = compose_cfg(*overrides)
    with pytest.raises(EcgmlError, match=message):
        label_smoothing(cfg, task_spec(cfg))


def test_label_smoothing_leaves_a_regression_alone(compose_cfg) -> None:
    cfg = compose_cfg("task=potassium")
    assert cfg.training.label_smoothing == 0.1  # the default, meant for class labels
    assert label_smoothing(cfg, task_spec(cfg)) == 0.0
    binary = compose_cfg()
    assert label_smoothing(binary, task_spec(binary)) == 0.1

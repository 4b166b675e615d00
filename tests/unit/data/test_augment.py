"""Augmentation keeps the R-peak where alignment put it and never reaches evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ecgml.data.augment import AugmentSettings, BeatAugmenter, recorded_span
from ecgml.data.datamodule import BeatDataModule, BeatTable
from ecgml.data.labels import LabelSummary
from ecgml.errors import EcgmlError

FS, R = 500.0, 125
STANDARD = AugmentSettings(p=1.0, amplitude=1.15, stretch=0.05, wander_mv=0.05, noise_mv=0.01)


def gaussian_beats(n: int = 32, length: int = 450, seed: int = 0) -> torch.Tensor:
    """P, QRS, T bumps with the R spike at ``R``; zero padding after sample 400."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)[None, :]
    r_amp = rng.uniform(0.5, 1.8, (n, 1))
    beats = (
        0.15 * np.exp(-0.5 * ((t - 60) / 12) ** 2)
        + r_amp * np.exp(-0.5 * ((t - R) / 4) ** 2)
        + 0.3 * np.exp(-0.5 * ((t - 260) / 25) ** 2)
    )
    beats[:, 400:] = 0.0
    return torch.tensor(beats, dtype=torch.float32).unsqueeze(1)


def test_every_transform_keeps_the_r_peak_sample() -> None:
    x = gaussian_beats()
    out = BeatAugmenter(STANDARD, FS, R)(x, torch.Generator().manual_seed(1))
    assert not torch.allclose(out, x)
    assert (out[:, 0, R - 20 : R + 21].argmax(dim=-1) == 20).all()


def test_warps_and_wander_leave_the_r_sample_value_to_the_gain_alone() -> None:
    x = gaussian_beats()
    settings = AugmentSettings(p=1.0, stretch=0.1, wander_mv=0.1)
    out = BeatAugmenter(settings, FS, R)(x, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out[:, 0, R], x[:, 0, R])
    assert (out - x).abs().amax() > 0.01  # the beats did change elsewhere


def test_stretch_moves_the_t_wave_but_not_r() -> None:
    x = gaussian_beats(n=64)
    out = BeatAugmenter(AugmentSettings(p=1.0, stretch=0.1), FS, R)(
        x, torch.Generator().manual_seed(3)
    )
    t_peak = out[:, 0, 180:360].argmax(dim=-1) + 180
    assert t_peak.float().std() > 3  # T peaks now spread around 260 ...
    assert ((t_peak - 260).abs() <= 0.1 * (260 - R) + 2).all()  # ... within the stretch range


def test_padding_stays_zero() -> None:
    x = gaussian_beats()
    out = BeatAugmenter(AugmentSettings(p=1.0, wander_mv=0.1, noise_mv=0.05), FS, R)(
        x, torch.Generator().manual_seed(4)
    )
    assert (out[:, :, 400:] == 0).all()
    assert recorded_span(x)[0, 0, :400].all() and not recorded_span(x)[0, 0, 400:].any()


def test_same_seed_same_augmentation() -> None:
    x = gaussian_beats()
    augmenter = BeatAugmenter(STANDARD, FS, R)
    a = augmenter(x, torch.Generator().manual_seed(5))
    b = augmenter(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("field", "value"), [("p", 1.5), ("amplitude", 0.9), ("stretch", 0.6), ("noise_mv", -1.0)]
)
def test_bad_settings_are_one_line_errors(field: str, value: float) -> None:
    with pytest.raises(EcgmlError, match=f"data.augment: {field}="):
        AugmentSettings.from_config({field: value})


def test_disabled_config_gives_no_augmenter() -> None:
    assert AugmentSettings.from_config({"enabled": False, "noise_mv": 0.5}) is None
    assert AugmentSettings.from_config(None) is None


def small_table(n: int = 40) -> BeatTable:
    x = gaussian_beats(n).squeeze(1).numpy()
    meta = pd.DataFrame(
        {
            "patient_id": [f"P{i // 2}" for i in range(n)],
            "beat_id": [f"B{i}" for i in range(n)],
            "y": [i // 2 % 2 for i in range(n)],
            "group": "g",
            "split": ["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4),
        }
    )
    summary = LabelSummary(n, n // 2, n // 4, n // 4, 0)
    return BeatTable(x, meta, FS, R, "digest", summary, meta[["patient_id", "y", "split"]])


class _FakeTrainer:
    def __init__(self, training: bool) -> None:
        self.training = training


def test_augmentation_touches_training_batches_only() -> None:
    data = BeatDataModule(small_table(), batch_size=8, augment=STANDARD)
    batch = next(iter(data.train_dataloader()))
    data.trainer = _FakeTrainer(training=False)  # type: ignore[assignment]  # validation, predict
    assert data.on_after_batch_transfer(batch, 0)[0] is batch[0]
    data.trainer = _FakeTrainer(training=True)  # type: ignore[assignment]
    augmented, labels = data.on_after_batch_transfer(batch, 0)
    assert not torch.allclose(augmented, batch[0])
    assert labels is batch[1]


def test_no_trainer_means_no_augmentation() -> None:
    """Scoring outside ``trainer.fit`` (ecgml.predict, explain) never augments."""
    data = BeatDataModule(small_table(), batch_size=8, augment=STANDARD)
    batch = next(iter(data.val_dataloader()))
    assert data.on_after_batch_transfer(batch, 0)[0] is batch[0]


def test_worker_loaders_give_the_in_process_batches_over_shared_files() -> None:
    """Two loader workers hand over the same batches as loading in process; they share them as
    named files (their own strategy), the training process keeps its strategy."""
    before = torch.multiprocessing.get_sharing_strategy()
    in_process = list(BeatDataModule(small_table(), batch_size=4).val_dataloader())
    workers = BeatDataModule(small_table(), batch_size=4, num_workers=2)
    batches = list(workers.val_dataloader())
    assert len(batches) == len(in_process) == 3
    for (x, y), (x0, y0) in zip(batches, in_process, strict=True):
        assert torch.equal(x, x0) and torch.equal(y, y0)
    loader = workers.val_dataloader()
    assert loader.worker_init_fn is not None
    probe = torch.utils.data.DataLoader(
        [0, 1],
        num_workers=1,
        worker_init_fn=loader.worker_init_fn,
        collate_fn=lambda _: str(torch.multiprocessing.get_sharing_strategy()),
    )
    assert list(probe) == ["file_system", "file_system"]
    assert torch.multiprocessing.get_sharing_strategy() == before

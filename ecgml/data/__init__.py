"""Beat datasets: labels, patient-level splits and the Lightning data module."""

from ecgml.data.datamodule import BeatDataModule
from ecgml.data.labels import binary_labels
from ecgml.data.splits import holdout_split, kfold_split

__all__ = ["BeatDataModule", "binary_labels", "holdout_split", "kfold_split"]

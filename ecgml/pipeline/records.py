"""The record unit's model pieces: a record model inside the task's LightningModule, its
predictions (one row per record, with each beat's or second's share of the decision) and the
configured record store.

One example is a whole recording (every beat of it, or the strip, :mod:`ecgml.data.records`);
the model is a record model (``model=set_cnn1d``, ``model=strip_cnn1d``,
:mod:`ecgml.models.record_models`) inside the task's LightningModule (the beat path's own
:meth:`~ecgml.tasks.RunTask.module`: binary, multi-label, regression). The run itself is
the beat run's lifecycle (:mod:`ecgml.pipeline.run`, its unit :class:`~ecgml.pipeline.units.
RecordUnit`): predictions are one row per record (``patient_id, record_id, split, y_true,
y_prob, y_pred, n_beats``; a set model with attention adds ``beat_weights`` and ``top_beat``),
each read as one row (``beat_id`` = ``record_id``) by the evaluation: ``test/*`` are
record-level, ``test_patient/*`` patient-level.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ecgml.data.records import (
    RecordDataModule,
    resolve_leads,
    resolve_record_store,
)
from ecgml.models.module import BeatClassifier
from ecgml.models.record_models import SetModel, StripModel, strip_saliency
from ecgml.pipeline.fitters import (
    with_outputs,
)
from ecgml.recordstore import RecordStore, load_record_store

__all__ = ["load_records", "predict_records"]

log = logging.getLogger(__name__)


def predict_records(model: BeatClassifier, data: RecordDataModule, split: str) -> pd.DataFrame:
    """One row per record of ``split``: the model's outputs; an attention set model adds each
    beat's weight (``beat_weights``, ``;``-joined) and the heaviest beat (``top_beat``), a strip
    model each second's share of the saliency (``segment_weights``) and the start of the
    heaviest second (``top_segment_s``)."""
    frame = data.prediction_frame(split)
    model = model.eval()
    backbone = model.backbone
    values, weights, segments = [], [], []
    for inputs, _ in data.loader(split):
        with torch.inference_mode():
            values.append(model.predict_values(inputs).float().cpu())
            if isinstance(backbone, SetModel) and backbone.pooling == "attention":
                w = backbone.attention(inputs).cpu().numpy()
                mask = inputs["mask"].numpy()
                weights += [w[k, mask[k]] for k in range(len(w))]
        if isinstance(backbone, StripModel):
            fs = data.table.strip_fs
            segments += list(strip_saliency(model, inputs["strip"], fs).numpy())
    out = with_outputs(frame, model, torch.cat(values).numpy() if values else np.zeros(0))
    if weights:
        out["beat_weights"] = [";".join(f"{v:.4f}" for v in w) for w in weights]
        out["top_beat"] = [int(np.argmax(w)) for w in weights]
    if segments:
        out["segment_weights"] = [";".join(f"{v:.4f}" for v in w) for w in segments]
        out["top_segment_s"] = [int(np.argmax(w)) for w in segments]
    return out


def load_records(cfg: DictConfig) -> RecordStore:
    """The configured record store, every record cut to the leads ``data.leads`` names."""
    leads = resolve_leads(cfg.data.get("leads"))
    return load_record_store(resolve_record_store(cfg.data), leads)

"""Per-beat isoelectric referencing (``data.baseline``): exact on flat segments, R untouched,
applied identically by training and serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ecgml.beatstore import load_beat_store
from ecgml.data.datamodule import build_beat_table
from ecgml.errors import EcgmlError
from ecgml.inference.preprocess import prepare_beats
from ecgml.modelfile.loaded import LoadedModel
from ecgml.models import build_backbone
from ecgml.models.scoring import BeatProbabilityModel
from ecgml.signal import reference_beat, reference_beats

FS = 500.0
R = 125  # 250 ms before R, 650 ms after: the synthetic cohort's window


def bump(t: np.ndarray, start: float, end: float, amplitude: float) -> np.ndarray:
    """A raised-cosine wave that is exactly zero outside ``[start, end]`` (s)."""
    inside = (t >= start) & (t <= end)
    return np.where(inside, amplitude * np.sin(np.pi * (t - start) / (end - start)) ** 2, 0.0)


def clean_beat() -> np.ndarray:
    """P, QRS, T on a zero baseline: flat PR segment (R-100..R-40 ms) and T-P segment (end)."""
    t = (np.arange(450) - R) / FS
    beat = bump(t, -0.2, -0.1, 0.15) + bump(t, -0.04, 0.04, 1.2) + bump(t, 0.15, 0.4, 0.3)
    return beat.astype(np.float32)


def test_linear_removes_constant_and_linear_offset_and_keeps_r() -> None:
    beat = clean_beat()
    n = np.arange(len(beat))
    drifted = beat + 0.12 - 0.3 * n / FS  # 0.12 mV offset, -0.3 mV/s wander
    out = reference_beat(drifted, R, FS, "linear")
    np.testing.assert_allclose(out, beat, atol=1e-5)
    assert len(out) == len(beat) and int(np.argmax(out)) == R


def test_pr_segment_removes_a_constant_offset_only() -> None:
    beat = clean_beat()
    out = reference_beat(beat + 0.12, R, FS, "pr_segment")
    np.testing.assert_allclose(out, beat, atol=1e-5)
    assert int(np.argmax(out)) == R
    sloped = reference_beat(beat + 0.3 * np.arange(len(beat)) / FS, R, FS, "pr_segment")
    assert abs(sloped[-1]) > 0.1  # the slope is left in
    np.testing.assert_array_equal(reference_beat(beat + 0.12, R, FS, "none"), beat + 0.12)


def test_reference_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="baseline must be one of"):
        reference_beat(clean_beat(), R, FS, "median")
    with pytest.raises(ValueError, match="outside"):
        reference_beat(clean_beat(), 999, FS, "pr_segment")
    with pytest.raises(ValueError, match="R indices"):
        reference_beats([clean_beat()], [R, R], FS, "pr_segment")


@pytest.mark.parametrize("method", ["pr_segment", "linear"])
def test_training_and_serving_reference_beats_alike(
    toy_store: Path, compose_cfg, method: str
) -> None:
    store = load_beat_store(toy_store)
    overrides = ("disorder=hyperkalemia", "data=beats", f"data.path={toy_store}")
    cfg = compose_cfg(*overrides, f"data.baseline={method}")
    table = build_beat_table(store, cfg.disorder, cfg.split, cfg.data)
    plain = compose_cfg(*overrides)
    assert not np.array_equal(table.x, build_beat_table(store, *_groups(plain)).x)
    backbone = build_backbone("cnn1d", in_channels=1, n_outputs=1, seq_len=table.seq_len)
    model = LoadedModel(
        "hyperkalemia",
        BeatProbabilityModel(backbone),
        table.seq_len,
        table.fs,
        table.r_index,
        "r_peak",
        0.5,
        "test",
        baseline=method,
    )
    rows = pd.Series(range(len(store.meta)), index=store.meta["beat_id"])
    rows = rows.loc[table.meta["beat_id"]].to_numpy()
    beats = [store.beats[i] for i in rows]
    r = store.meta["r_index"].iloc[rows].astype(int).tolist()
    assert prepare_beats(beats, r, table.fs, model).tobytes() == table.x.tobytes()


def test_training_needs_r_indices_to_reference(toy_store: Path, compose_cfg) -> None:
    store = load_beat_store(toy_store)
    store.meta = store.meta.drop(columns=["r_index"])
    cfg = compose_cfg(
        "disorder=hyperkalemia", "data=beats", f"data.path={toy_store}", "data.baseline=linear"
    )
    with pytest.raises(EcgmlError, match="r_index"):
        build_beat_table(store, *_groups(cfg))


def _groups(cfg) -> tuple:
    return cfg.disorder, cfg.split, cfg.data


def test_logged_model_carries_the_baseline(tmp_path: Path, compose_cfg) -> None:
    """Serving reads the method from the logged model's spec (ecgml.pipeline.beat_model)."""
    from mlflow import MlflowClient

    from ecgml.inference.loading import load_model_uri
    from ecgml.pipeline.beat_model import log_beat_model, model_spec

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("baseline", artifact_location=str(tmp_path / "art"))
    run_id = client.create_run(experiment).info.run_id
    cfg = compose_cfg("disorder=hyperkalemia", "data.baseline=linear")
    backbone = build_backbone("cnn1d", in_channels=1, n_outputs=1, seq_len=450)
    model_id = log_beat_model(uri, run_id, backbone, model_spec(cfg, 450, FS, R, 0.5))
    assert load_model_uri(f"models:/{model_id}", uri).baseline == "linear"

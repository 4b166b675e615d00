"""``task=pretrain`` (SimCLR on every beat) and fine-tuning from it (``model.init_from``)."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from ecgml import CONF_DIR
from ecgml.cli.train import train
from ecgml.errors import EcgmlError
from ecgml.models import build_backbone
from ecgml.models.contrastive import nt_xent_loss, positive_top1
from ecgml.pipeline.pretrain import PretrainResult, holdout_patients, pretrain, task_name
from ecgml.pipeline.pretrained import load_pretrained_encoder, read_pretrained
from tests.conftest import compose_once
from tests.fakes import write_toy_store

HEAD = {"head.1.weight", "head.1.bias"}  # CNN1D's last layer: embedding_dim wide when pretrained
BATCH = 16


def task_override() -> str:
    """``task=pretrain`` once conf/train.yaml lists the task group, ``+task=pretrain`` before."""
    defaults = OmegaConf.load(CONF_DIR / "train.yaml").get("defaults", [])
    listed = any(isinstance(d, DictConfig) and "task" in d for d in defaults)
    return "task=pretrain" if listed else "+task=pretrain"


def pretrain_cfg(store: Path, tmp: Path, uri: str, *extra: str) -> DictConfig:
    return compose_once(
        task_override(),
        "data=beats",
        f"data.path={store}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"logger.tracking_uri={uri}",
        "task.max_epochs=3",
        f"task.batch_size={BATCH}",
        "trainer.enable_progress_bar=false",
        *extra,
    )


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PretrainResult, str]]:
    """One 3-epoch pretraining on a 20-patient toy store, in a temporary MLflow store."""
    tmp = tmp_path_factory.mktemp("pretrain")
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    store = write_toy_store(tmp / "store", n_positive=10, n_negative=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        yield pretrain(pretrain_cfg(store, tmp, uri)), uri


@pytest.fixture()
def artifact(pretrained, tmp_path: Path) -> Path:
    """A local copy of the run's ``pretrain/`` folder."""
    result, uri = pretrained
    return Path(MlflowClient(uri).download_artifacts(result.run_id, "pretrain", str(tmp_path)))


def fresh_cnn(seed: int = 123, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_backbone("cnn1d", in_channels=1, n_outputs=1, seq_len=150, **overrides)


# ------------------------------------------------------------------------- NT-Xent


def test_nt_xent_matches_a_hand_computed_value() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each view: its pair at cosine 1, two others at cosine 0 (itself masked), temperature 1
    expected = -math.log(math.e / (math.e + 2))
    assert nt_xent_loss(z, z.clone(), temperature=1.0).item() == pytest.approx(expected)


def test_identical_views_give_a_lower_loss_than_random_views() -> None:
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(32, 8, generator=g)
    z2 = torch.randn(32, 8, generator=g)
    same, unrelated = nt_xent_loss(z1, z1.clone(), 0.1), nt_xent_loss(z1, z2, 0.1)
    assert same < unrelated
    assert same < math.log(2 * 32 - 1) < unrelated  # below / above the uniform-guess loss
    assert positive_top1(z1, z1.clone()) == 1.0
    swapped = nt_xent_loss(z1, z1.roll(1, dims=0), 0.1)  # every pair is the wrong beat
    assert swapped > unrelated


def test_nt_xent_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="temperature"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(2, 3), 0.0)
    with pytest.raises(ValueError, match="views"):
        nt_xent_loss(torch.ones(2, 3), torch.ones(3, 3))


def test_holdout_is_by_patient_and_keeps_both_sides() -> None:
    patients = np.repeat([f"P{i}" for i in range(20)], 3)
    val = holdout_patients(patients, 0.1, seed=0)
    held = set(patients[val])
    assert len(held) == 2 and not held & set(patients[~val])
    assert holdout_patients(patients[:3], 0.1, seed=0).sum() == 0  # one patient: all train


# ------------------------------------------------------------------------- pretraining


def test_pretraining_logs_the_encoder_and_pretrain_metrics(pretrained) -> None:
    result, uri = pretrained
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "ecgml-pretrain"
    assert run.data.tags["mlflow.runName"] == "pretrain-cnn1d-s42"
    files = {f.path for f in client.list_artifacts(result.run_id, "pretrain")}
    assert files == {"pretrain/encoder.pt", "pretrain/encoder.json"}
    metrics = run.data.metrics
    assert {"pretrain/train_loss", "pretrain/val_loss", "pretrain/val_top1"} <= set(metrics)
    assert metrics["pretrain/n_beats"] == 60 and metrics["pretrain/n_val_beats"] == 6
    history = [m.value for m in client.get_metric_history(result.run_id, "pretrain/train_loss")]
    assert len(history) == 3 and all(math.isfinite(v) for v in history)
    assert history[-1] < math.log(2 * BATCH - 1)  # better than embeddings that ignore the beat
    assert history[-1] < history[0]


def test_encoder_json_describes_the_backbone(artifact: Path) -> None:
    meta = json.loads((artifact / "encoder.json").read_text())
    assert meta["format"] == "ecgml-pretrain-encoder" and meta["model"] == "cnn1d"
    assert meta["backbone"]["_target_"] == "ecgml.models.backbones.cnn1d.CNN1D"
    assert (meta["seq_len"], meta["fs"], meta["embedding_dim"]) == (150, 250.0, 64)
    state = torch.load(artifact / "encoder.pt", weights_only=True)
    pooled = 2 * 64 * meta["backbone"]["head_bins"]  # avg + max pool of 64 channels per bin
    assert state["head.1.weight"].shape == (64, pooled)


def test_the_cli_dispatches_task_pretrain(pretrained, tmp_path: Path, capsys) -> None:
    _, uri = pretrained  # the same store: one MLflow database set-up per module
    store = write_toy_store(tmp_path / "store", n_positive=3, n_negative=3)
    cfg = pretrain_cfg(store, tmp_path, uri, "task.max_epochs=1", "task.val_fraction=0.2")
    assert task_name(cfg) == "pretrain" and task_name(compose_once()) == "binary"
    val_loss = train(cfg)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    run_id = line.rsplit("run_id: ", 1)[1]
    assert f"model.init_from={run_id}" in line and math.isfinite(val_loss)
    assert MlflowClient(uri).get_run(run_id).data.metrics["pretrain/val_loss"] == val_loss


# ------------------------------------------------------------------------- fine-tuning


def test_init_from_a_run_loads_every_weight_but_the_head(pretrained, artifact: Path) -> None:
    result, uri = pretrained
    saved = torch.load(artifact / "encoder.pt", weights_only=True)
    backbone = fresh_cnn()
    fresh = {k: v.clone() for k, v in backbone.state_dict().items()}
    loaded = load_pretrained_encoder(backbone, result.run_id, uri, model_name="cnn1d")
    assert set(loaded) == set(fresh) - HEAD
    now = backbone.state_dict()
    for key in loaded:
        assert torch.equal(now[key], saved[key]), key
    assert any(not torch.equal(fresh[k], saved[k]) for k in loaded)  # something did change
    for key in HEAD:
        assert torch.equal(now[key], fresh[key]), key  # the head keeps its fresh init


def test_a_changed_saved_weight_reaches_the_backbone(artifact: Path) -> None:
    first = fresh_cnn()
    key = next(k for k in first.state_dict() if k.startswith("features.") and k.endswith("weight"))
    load_pretrained_encoder(first, str(artifact), None, model_name="cnn1d")
    saved = torch.load(artifact / "encoder.pt", weights_only=True)
    assert torch.equal(first.state_dict()[key], saved[key])
    saved[key] = saved[key] + 1.0
    torch.save(saved, artifact / "encoder.pt")
    for path in (artifact, artifact / "encoder.pt", artifact / "encoder.json"):
        again = fresh_cnn()
        load_pretrained_encoder(again, str(path), None)
        assert torch.equal(again.state_dict()[key], first.state_dict()[key] + 1.0)


def _bad_artifact(artifact: Path, tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / f"bad-{kind}"
    shutil.copytree(artifact, folder)
    if kind == "json":
        (folder / "encoder.json").write_text(json.dumps({"model": "cnn1d"}))
    elif kind == "weights":
        (folder / "encoder.pt").write_bytes(b"not a tensor file")
    elif kind == "pickle":
        torch.save({"weights": object()}, folder / "encoder.pt")
    return folder


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("json", "is not an ecgml pretrain artifact: encoder.json has no format"),
        ("weights", "encoder.pt is not a torch tensor file"),
        ("pickle", "encoder.pt is not a torch tensor file"),
    ],
)
def test_a_foreign_artifact_is_refused(artifact, tmp_path, kind: str, message: str) -> None:
    with pytest.raises(EcgmlError, match=message):
        load_pretrained_encoder(fresh_cnn(), str(_bad_artifact(artifact, tmp_path, kind)), None)


def test_bad_init_from_values_are_one_line_user_errors(pretrained, artifact, tmp_path) -> None:
    result, uri = pretrained
    client = MlflowClient(uri)
    (empty := tmp_path / "empty").mkdir()
    other = client.create_run(client.get_run(result.run_id).info.experiment_id).info.run_id
    cases = [
        (str(tmp_path / "nope" / "encoder.pt"), "no such file or folder, and not a run id"),
        ("0" * 32, "is not in the MLflow store"),
        (other, "it is not an ecgml pretrain run"),
        (str(empty), "encoder.json is missing"),
    ]
    for init_from, message in cases:
        with pytest.raises(EcgmlError, match=message) as err:
            read_pretrained(init_from, uri)
        assert "\n" not in str(err.value)


def test_another_model_or_no_matching_tensor_is_refused(artifact: Path) -> None:
    resnet = build_backbone("resnet1d", in_channels=1, n_outputs=1, seq_len=150)
    with pytest.raises(EcgmlError, match="pretrained with model=cnn1d but model=resnet1d"):
        load_pretrained_encoder(resnet, str(artifact), None, model_name="resnet1d")
    narrow = fresh_cnn(channels=[8, 8])
    with pytest.raises(EcgmlError, match="none of its .* weights fits"):
        load_pretrained_encoder(narrow, str(artifact), None, model_name="cnn1d")


def test_other_input_resolution_is_refused_but_head_settings_may_differ(tmp_path) -> None:
    """Same shapes, other meaning: kernels learnt at 125 Hz must not load into a 250 Hz model."""
    from ecgml.models import build_backbone
    from ecgml.pipeline.pretrained import load_pretrained_encoder, save_encoder

    source = build_backbone("cnn1d", in_channels=1, n_outputs=64, seq_len=300, input_pool=4)
    settings = {"_target_": "ecgml.models.backbones.cnn1d.CNN1D", "input_pool": 4, "head_bins": 1}
    meta = {"model": "cnn1d", "backbone": settings, "seq_len": 300, "fs": 500.0, "r_index": 75}
    save_encoder(tmp_path / "enc", source, meta)
    target = build_backbone("cnn1d", in_channels=1, n_outputs=1, seq_len=300, input_pool=2)
    with pytest.raises(EcgmlError, match="input_pool=4 there, 2 here"):
        load_pretrained_encoder(
            target,
            str(tmp_path / "enc"),
            model_name="cnn1d",
            backbone_cfg={**settings, "input_pool": 2},
        )
    same = build_backbone(
        "cnn1d", in_channels=1, n_outputs=1, seq_len=300, input_pool=4, head_bins=8
    )
    loaded = load_pretrained_encoder(
        same, str(tmp_path / "enc"), model_name="cnn1d", backbone_cfg={**settings, "head_bins": 8}
    )
    assert "features.1.0.weight" in loaded

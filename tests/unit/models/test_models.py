import hydra
import lightning.pytorch as L
import pytest
import torch
from omegaconf import OmegaConf

from ecgml.errors import EcgmlError
from ecgml.models import BeatClassifier, available_backbones, build_backbone


@pytest.mark.parametrize("name", available_backbones())
@pytest.mark.parametrize(("batch", "length"), [(1, 97), (4, 450), (3, 1000)])
def test_backbones_map_beats_to_one_logit(name: str, batch: int, length: int) -> None:
    model = build_backbone(name, in_channels=1, n_outputs=1, seq_len=length)
    model.eval()
    assert model(torch.randn(batch, 1, length)).shape == (batch, 1)
    three = build_backbone(name, in_channels=2, n_outputs=3, seq_len=length)
    three.eval()
    assert three(torch.randn(batch, 2, length)).shape == (batch, 3)


def test_unknown_backbone_lists_the_known_ones() -> None:
    with pytest.raises(EcgmlError, match="use one of .*cnn1d"):
        build_backbone("resnet9000", in_channels=1, n_outputs=1, seq_len=100)


def test_backbones_come_from_the_model_config_target(compose_cfg) -> None:
    """``conf/model/<name>.yaml`` names the class; overrides replace its hyper-parameters."""
    assert "features_lr" not in available_backbones()  # kind: sklearn, no torch module
    model_cfg = compose_cfg("model=cnn1d", "model.backbone.channels=[8,8]").model
    assert model_cfg.backbone._target_ == "ecgml.models.backbones.cnn1d.CNN1D"
    model = build_backbone(model_cfg, in_channels=1, n_outputs=1, seq_len=100)
    assert model.features[-1][0].out_channels == 8
    wide = build_backbone("cnn1d", 1, 1, 100, channels=[4, 12])
    assert wide.features[-1][0].out_channels == 12


def test_overfits_one_batch() -> None:
    """Learning works: one fixed batch of random labels is memorized."""
    L.seed_everything(0)
    x = torch.randn(16, 1, 200)
    y = torch.tensor([0.0, 1.0] * 8)
    optimizer = hydra.utils.instantiate(
        OmegaConf.create({"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.01})
    )
    module = BeatClassifier(build_backbone("cnn1d", 1, 1, 200, dropout=0.0), optimizer)
    opt = module.configure_optimizers()
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = module.loss_fn(module(x), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    module.eval()
    with torch.no_grad():
        accuracy = ((module(x) > 0).float() == y).float().mean().item()
    assert first > 0.5
    assert loss.item() < 0.05
    assert accuracy == 1.0

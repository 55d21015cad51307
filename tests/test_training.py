"""Training mechanics: resuming from a per-epoch checkpoint reproduces an uninterrupted run exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from ddecs_search.config import BranchSpec, TrainingConfig
from ddecs_search.models import MultiExitNet, create_backbone
from ddecs_search.training import load_checkpoint, train_branches


class _Images(torch.utils.data.Dataset):
    """Synthetic 28x28 images (unit test of the loop's mechanics, not of accuracy)."""

    def __init__(self, n: int = 96) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 1, 28, 28, generator=g)
        self.y = torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def _model() -> MultiExitNet:
    torch.manual_seed(0)
    return MultiExitNet(
        create_backbone("lenet", num_classes=10), [0, 1], [BranchSpec(), BranchSpec(conv_layers=0)]
    )


def _train(mode: str, epochs: int, ckpt: Path, model: MultiExitNet | None = None) -> MultiExitNet:
    model = model or _model()
    cfg = TrainingConfig(mode=mode, epochs=epochs, batch_size=32)
    train_branches(
        model, _Images(), cfg, device=torch.device("cpu"), checkpoint_path=ckpt, seed=3, quiet=True
    )
    return model


def _same(a: MultiExitNet, b: MultiExitNet) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_from_checkpoint_matches_uninterrupted(tmp_path: Path) -> None:
    for mode in ("frozen", "joint"):
        straight = _train(mode, 3, tmp_path / f"{mode}-a.pt")
        _train(mode, 1, tmp_path / f"{mode}-b.pt")  # "crash" after epoch 1
        assert load_checkpoint(tmp_path / f"{mode}-b.pt")["epoch"] == 0
        resumed = _train(mode, 3, tmp_path / f"{mode}-b.pt")  # a fresh model, resumed from the file
        assert _same(straight, resumed), mode


def test_frozen_mode_leaves_the_backbone_untouched(tmp_path: Path) -> None:
    before = _model()
    after = _train("frozen", 2, tmp_path / "f.pt", model=_model())
    sb, sa = before.backbone.state_dict(), after.backbone.state_dict()
    assert all(torch.equal(sb[k], sa[k]) for k in sb)  # BN running stats included
    assert not all(
        torch.equal(before.branches.state_dict()[k], v) for k, v in after.branches.state_dict().items()
    )


def test_joint_mode_trains_the_backbone(tmp_path: Path) -> None:
    before = _model()
    after = _train("joint", 1, tmp_path / "j.pt", model=_model())
    w = "segments.0.0.weight"
    assert not torch.equal(before.backbone.state_dict()[w], after.backbone.state_dict()[w])

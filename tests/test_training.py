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


def _train(
    mode: str, epochs: int, ckpt: Path, model: MultiExitNet | None = None, schedule: str = "constant", **kw
) -> MultiExitNet:
    model = model or _model()
    cfg = TrainingConfig(mode=mode, epochs=epochs, batch_size=32, lr_schedule=schedule)
    train_branches(
        model, _Images(), cfg, device=torch.device("cpu"), checkpoint_path=ckpt, seed=3, quiet=True, **kw
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
    # trained channels-last on a CPU (models/_layout.py), handed back in the default layout
    assert all(p.is_contiguous() for p in after.parameters())


def test_exit_losses_add_self_distillation_to_early_exits_only() -> None:
    """``distill`` 0 is the plain weighted cross-entropy; > 0 mixes each early exit's CE with T² · KL to
    the final exit's softened output, which teaches without being taught (detached)."""
    import torch.nn.functional as F

    from ddecs_search.training import exit_losses

    g = torch.Generator().manual_seed(0)
    early = torch.randn(8, 10, generator=g, requires_grad=True)
    final = torch.randn(8, 10, generator=g, requires_grad=True)
    y = torch.randint(0, 10, (8,), generator=g)
    plain = exit_losses([early, final], y, TrainingConfig(), [1.0, 0.5])
    torch.testing.assert_close(plain, F.cross_entropy(early, y) + 0.5 * F.cross_entropy(final, y))

    cfg = TrainingConfig(distill=0.25, distill_temperature=3.0)
    kl = F.kl_div(F.log_softmax(early / 3, 1), F.softmax(final.detach() / 3, 1), reduction="batchmean")
    want = 0.75 * F.cross_entropy(early, y) + 0.25 * 9 * kl + 0.5 * F.cross_entropy(final, y)
    got = exit_losses([early, final], y, cfg, [1.0, 0.5])
    torch.testing.assert_close(got, want)
    # the teacher's gradient is its own cross-entropy only
    (g_final,) = torch.autograd.grad(got, final)
    (g_plain,) = torch.autograd.grad(0.5 * F.cross_entropy(final, y), final)
    torch.testing.assert_close(g_final, g_plain)


def test_distillation_trains_in_both_modes_and_frozen_keeps_the_backbone(tmp_path: Path) -> None:
    for mode in ("frozen", "joint"):
        before, model = _model(), _model()
        cfg = TrainingConfig(mode=mode, epochs=1, batch_size=32, distill=0.5)
        info = train_branches(
            model, _Images(), cfg, device=torch.device("cpu"), checkpoint_path=tmp_path / f"{mode}.pt",
            quiet=True,
        )  # fmt: skip
        assert info["epochs_run"] == 1
        w = "segments.0.0.weight"
        moved = not torch.equal(before.backbone.state_dict()[w], model.backbone.state_dict()[w])
        assert moved == (mode == "joint"), mode


def test_cosine_schedule_decays_per_step_to_zero_and_a_resumed_run_continues_it(tmp_path: Path) -> None:
    """The rate of every step is a function of the step alone: a run killed after epoch 1 and resumed
    ends with the weights of an uninterrupted one (the kill cannot be an ``epochs=1`` run here: its
    schedule would decay over one epoch)."""
    import math

    import pytest

    from ddecs_search.training import LoopSettings, scheduled_lr

    cos = LoopSettings(epochs=3, lr=0.01, lr_schedule="cosine")
    assert scheduled_lr(cos, 0, 9) == 0.01 and scheduled_lr(cos, 9, 9) == pytest.approx(0.0, abs=1e-12)
    assert scheduled_lr(cos, 3, 9) == pytest.approx(0.005 * (1 + math.cos(math.pi / 3)))
    assert scheduled_lr(LoopSettings(epochs=3, lr=0.01), 8, 9) == 0.01

    straight = _train("joint", 3, tmp_path / "a.pt", schedule="cosine")
    steps, lr = 3 * (len(_Images()) // 32), TrainingConfig().lr  # drop_last: 3 batches per epoch
    last = load_checkpoint(tmp_path / "a.pt")["optimizer"]["param_groups"][0]["lr"]
    want = scheduled_lr(LoopSettings(epochs=3, lr=lr, lr_schedule="cosine"), steps - 1, steps)
    assert last == pytest.approx(want) and 0 < last < 0.05 * lr

    class Kill(Exception):
        pass

    def kill(epoch: int, stats: dict, ckpt: Path) -> None:
        if epoch == 0:
            raise Kill

    with pytest.raises(Kill):
        _train("joint", 3, tmp_path / "b.pt", schedule="cosine", on_epoch=kill)
    assert load_checkpoint(tmp_path / "b.pt")["epoch"] == 0
    resumed = _train("joint", 3, tmp_path / "b.pt", schedule="cosine")
    assert _same(straight, resumed)
    assert not _same(straight, _train("joint", 3, tmp_path / "c.pt"))  # the constant rate differs


def test_partial_epochs_see_the_weights_at_their_step_and_leave_training_as_it_was(tmp_path: Path) -> None:
    """A sub-epoch rung scores the weights of the step it names (3 steps per epoch here: 0.5 and 0.6 are
    the 2nd step of epoch 1, 1.34 the 1st of epoch 2), its file is gone afterwards, and a callback that draws
    random numbers changes nothing in training (joint mode: the backbone's dropout draws them)."""
    from ddecs_search.training import PartialEpochs

    seen: dict[float, dict[str, torch.Tensor]] = {}
    after_step: dict[tuple[int, int], dict[str, torch.Tensor]] = {}
    model = _model()

    def on_batch(epoch: int, step: int, loss: float) -> None:
        after_step[(epoch, step)] = {k: v.clone() for k, v in model.state_dict().items()}

    def look(point: float, path: Path) -> None:
        seen[point] = load_checkpoint(path)["model"]
        assert load_checkpoint(path)["epoch"] == point
        torch.rand(1000)  # a rung pass may draw random numbers; training must not notice

    partial = PartialEpochs((0.5, 0.6, 1.0, 1.34), look)
    trained = _train("joint", 2, tmp_path / "a.pt", model=model, on_batch=on_batch, partial=partial)
    assert list(seen) == [0.5, 0.6, 1.34]  # 1.0 is a whole epoch: on_epoch's, not a partial point
    for point, step in ((0.5, (0, 1)), (0.6, (0, 1)), (1.34, (1, 0))):  # 0.5 and 0.6: one step, both seen
        assert all(torch.equal(seen[point][k], after_step[step][k]) for k in after_step[step]), point
    assert not any(p.name.endswith(".partial.pt") for p in tmp_path.iterdir())
    assert _same(trained, _train("joint", 2, tmp_path / "b.pt"))  # the same weights as without it

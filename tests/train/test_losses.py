"""Tests for train/losses.py: each loss is zero where it must be and positive elsewhere."""

import pytest
import torch

from train import losses


@pytest.fixture
def pair():
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 32, generator=gen)
    return target, (target + 0.05 * torch.randn(2, 3, 32, 32, generator=gen)).clamp(0, 1)


@pytest.mark.parametrize(
    "loss",
    [losses.charbonnier, losses.l1, losses.ssim_loss, losses.ms_ssim_loss, losses.sobel_edge_loss, losses.distill_loss, losses.fft_loss],
)
def test_image_losses_are_zero_for_identical_inputs_only(loss, pair):
    target, pred = pair
    same = loss(target.clone(), target)
    assert same.dim() == 0 and float(same) == pytest.approx(0, abs=1e-6)
    assert float(loss(pred, target)) > 1e-3


@pytest.mark.parametrize("loss", [losses.charbonnier, losses.ssim_loss, losses.sobel_edge_loss, losses.fft_loss])
def test_image_losses_take_clips(loss, pair):
    target, pred = pair
    clip_loss = loss(pred.view(1, 2, 3, 32, 32), target.view(1, 2, 3, 32, 32))
    torch.testing.assert_close(clip_loss, loss(pred, target))


def test_losses_reject_mismatched_shapes(pair):
    target, _ = pair
    with pytest.raises(ValueError, match="shape"):
        losses.charbonnier(target, target[:1])


def test_charbonnier_is_smooth_l1():
    pred, target = torch.tensor([0.5, 0.0]), torch.zeros(2)
    # For |d| >> eps it approaches |d| - eps per element.
    assert float(losses.charbonnier(pred, target, eps=1e-3)) == pytest.approx(0.5 / 2 - 1e-3 / 2, abs=1e-5)
    d = torch.tensor([1e-4], requires_grad=True)
    losses.charbonnier(d, torch.zeros(1)).backward()
    assert 0 < float(d.grad) < 0.2  # gentle near zero, unlike L1's constant slope


def test_fft_loss_weighs_lost_detail_more_than_the_pixel_loss_does():
    # Two errors with the same pixel loss: a blur of fine texture (the error is in the high
    # frequencies, spread over every coefficient) and a flat offset (one coefficient). The
    # spectral L1 calls the blur the larger error; the pixel L1 calls them equal.
    gen = torch.Generator().manual_seed(2)
    target = 0.5 + 0.2 * torch.randn(1, 3, 64, 64, generator=gen)
    blurred = torch.nn.functional.avg_pool2d(target, 3, 1, 1, count_include_pad=False)
    offset = target + (blurred - target).abs().mean()
    assert float(losses.l1(offset, target)) == pytest.approx(float(losses.l1(blurred, target)), rel=1e-4)
    assert float(losses.fft_loss(blurred, target)) > 5 * float(losses.fft_loss(offset, target))


def test_distill_loss_sends_no_gradient_to_the_teacher(pair):
    target, pred = pair
    student, teacher = pred.clone().requires_grad_(), target.clone().requires_grad_()
    losses.distill_loss(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None


def test_ms_ssim_falls_back_to_ssim_on_small_crops():
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(1, 3, 64, 64, generator=gen)
    pred = (target + 0.1 * torch.randn(1, 3, 64, 64, generator=gen)).clamp(0, 1)
    torch.testing.assert_close(losses.ms_ssim_loss(pred, target), losses.ssim_loss(pred, target))
    big_target = torch.rand(1, 3, 176, 176, generator=gen)
    big_pred = (big_target + 0.1 * torch.randn(1, 3, 176, 176, generator=gen)).clamp(0, 1)
    ms = losses.ms_ssim_loss(big_pred, big_target)
    assert 0 < float(ms) < 1 and not torch.isclose(ms, losses.ssim_loss(big_pred, big_target))


def test_sobel_sees_edges_not_offsets():
    ramp = torch.arange(16.0).div(64).expand(1, 3, 16, 16).clone()
    assert float(losses.sobel_edge_loss(ramp + 0.2, ramp)) == pytest.approx(0, abs=1e-6)
    torch.testing.assert_close(losses.sobel(ramp)[:, 0, 4:-4, 4:-4], torch.full((1, 8, 8), 1 / 64))
    assert float(losses.sobel_edge_loss(ramp.flip(-1), ramp)) > 1e-3


@pytest.fixture
def clip():
    gen = torch.Generator().manual_seed(3)
    return torch.rand(2, 4, 3, 16, 16, generator=gen) * 0.8


def test_temporal_loss_is_zero_for_the_target_and_constant_offsets(clip):
    assert float(losses.temporal_consistency_loss(clip.clone(), clip)) == 0
    assert float(losses.temporal_consistency_loss(clip + 0.1, clip)) < 1e-9
    per_pixel_offset = 0.1 * torch.rand(1, 1, 3, 16, 16)  # constant in time, varying in space
    assert float(losses.temporal_consistency_loss(clip + per_pixel_offset, clip)) < 1e-9


def test_temporal_loss_penalises_flicker(clip):
    flicker = clip.clone()
    flicker[:, 1] += 0.05  # one frame brighter
    assert float(losses.temporal_consistency_loss(flicker, clip)) > 0.01
    # A per-frame loss would not care if a perfect still frame is frozen; this loss does.
    frozen = clip[:, :1].expand_as(clip)
    assert float(losses.temporal_consistency_loss(frozen, clip)) > 0.01


def test_temporal_mask_ignores_moving_pixels(clip):
    still = clip[:, :1].repeat(1, 4, 1, 1, 1)
    still[:, :, :, :, :8] += 0.2 * torch.arange(4.0).view(1, 4, 1, 1, 1)  # the left half keeps changing
    pred = still.clone()
    pred[:, 2:, :, :, :8] -= 0.2  # errors only where the target moves
    assert float(losses.temporal_consistency_loss(pred, still)) > 0.01
    assert float(losses.temporal_consistency_loss(pred, still, mask_threshold=0.1)) == 0
    pred[:, 2:, :, :, 8:] += 0.2  # now also in the still half
    assert float(losses.temporal_consistency_loss(pred, still, mask_threshold=0.1)) > 0.01


def test_temporal_loss_needs_two_frames(clip):
    with pytest.raises(ValueError):
        losses.temporal_consistency_loss(clip[:, :1], clip[:, :1])
    with pytest.raises(ValueError):
        losses.temporal_consistency_loss(clip[:, 0], clip[:, 0])


def test_psnr_matches_the_formula(pair):
    target, _ = pair
    pred = target.clone()
    pred[0] += 0.01  # mse 1e-4 -> 40 dB where nothing clips
    pred[0] = pred[0].clamp(max=1)
    mse0 = (pred[0] - target[0]).square().mean()
    expected = (10 * torch.log10(1 / mse0) + 100) / 2  # image 1 is identical: capped at 100 dB
    torch.testing.assert_close(losses.psnr(pred, target), expected)

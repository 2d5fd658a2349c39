"""Losses for training the student: pure functions returning scalar tensors.

Images are (N, 3, H, W) float tensors in [0, 1]; clips (N, T, 3, H, W) are treated as N*T
images by every image loss. Only ``temporal_consistency_loss`` looks across time; none holds
weights.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from pytorch_msssim import ms_ssim, ssim

# MS-SSIM halves the image 4 times and then still slides an 11-px window over it, so the
# smaller side must exceed (11 - 1) * 2**4 = 160 px (pytorch_msssim asserts it).
MS_SSIM_MIN_SIDE = 160


def _images(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) or (N, T, 3, H, W) -> (N or N*T, 3, H, W)."""
    if x.dim() == 5:
        return x.flatten(0, 1)
    if x.dim() == 4:
        return x
    raise ValueError(f"expected (N, 3, H, W) or (N, T, 3, H, W), got shape {tuple(x.shape)}")


def _same_shape(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def _charbonnier(d: torch.Tensor, eps: float) -> torch.Tensor:
    # sqrt(d^2 + eps^2) - eps, written so that d = 0 gives exactly 0 and small d keeps its
    # digits (the plain difference cancels them away).
    d2 = d.square()
    return d2 / (torch.sqrt(d2 + eps * eps) + eps)


def charbonnier(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of sqrt((pred - target)^2 + eps^2) - eps: L1 with a smooth minimum; 0 when equal.

    pred, target: any matching shape.

    >>> charbonnier(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    tensor(0.)
    """
    _same_shape(pred, target)
    return _charbonnier(pred - target, eps).mean()


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error; pred, target: any matching shape."""
    _same_shape(pred, target)
    return F.l1_loss(pred, target)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (11-px Gaussian window, data range 1); (N, [T,] 3, H, W) in [0, 1]."""
    _same_shape(pred, target)
    return 1 - ssim(_images(pred), _images(target), data_range=1.0)


def ms_ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM, or 1 - SSIM when the smaller side is <= 160 px (see MS_SSIM_MIN_SIDE).

    Falling back keeps small training crops usable rather than failing the assertion; at
    those sizes the coarse MS-SSIM scales would be a handful of pixels anyway.

    >>> float(ms_ssim_loss(torch.ones(1, 3, 64, 64) / 2, torch.ones(1, 3, 64, 64) / 2))
    0.0
    """
    _same_shape(pred, target)
    if min(pred.shape[-2:]) <= MS_SSIM_MIN_SIDE:
        return ssim_loss(pred, target)
    return 1 - ms_ssim(_images(pred), _images(target), data_range=1.0)


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradients: (N, C, H, W) -> (N, 2C, H, W) as (d/dx, d/dy) pairs.

    Scaled by 1/8 so a ramp rising s per pixel gives s; borders replicate (no fake edges).
    """
    # Replicate padding by concatenation: F.pad's replicate mode has no backward that
    # torch.compile can trace on channels-last input (torch 2.14), and the loss is compiled.
    x = torch.cat([x[..., :1, :], x, x[..., -1:, :]], -2)
    x = torch.cat([x[..., :1], x, x[..., -1:]], -1)
    # The kernel as its two 1-D factors, a difference across and a [1, 2, 1] smoothing along, in
    # shifted slices: compiled, they fuse into one pass, where the backward of a grouped
    # convolution with two outputs per channel was the costliest op of a training step.
    across, down = x[..., 2:] - x[..., :-2], x[..., 2:, :] - x[..., :-2, :]
    gx = (across[..., :-2, :] + 2 * across[..., 1:-1, :] + across[..., 2:, :]) / 8
    gy = (down[..., :-2] + 2 * down[..., 1:-1] + down[..., 2:]) / 8
    return torch.stack([gx, gy], 2).flatten(1, 2)


def sobel_edge_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between Sobel gradients (not magnitudes: those lose edge direction and have no
    gradient at flat pixels); (N, [T,] 3, H, W). Sobel is linear, so this is the L1 of the
    difference's gradients: one convolution, not two."""
    _same_shape(pred, target)
    return sobel(_images(pred - target)).abs().mean()


def fft_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the 2-D spectra (real and imaginary parts) of output and ground truth, per
    channel, normalised so its size does not depend on the crop; (N, [T,] 3, H, W).

    Pixel losses under-weight fine detail: a blurred edge differs from a sharp one in few
    pixels, but in every high-frequency coefficient. MIMO-UNet (Cho et al., ICCV 2021) trains
    with this term beside its pixel loss; here it was chosen by an A/B on set 1 (model card, v7).

    >>> float(fft_loss(torch.ones(1, 3, 8, 8), torch.ones(1, 3, 8, 8)))
    0.0
    """
    _same_shape(pred, target)
    diff = torch.fft.rfft2(_images(pred).float() - _images(target).float(), norm="ortho")  # linear: spectrum of the difference
    return torch.view_as_real(diff).abs().mean()


def least_squares_gains(bands: torch.Tensor, residual: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Per sample, the gains g that make sum_k g_k bands_k closest to ``residual`` in the least
    squares sense: (N, K, ...) and (N, ...) -> (N, K). ``ridge`` (relative to the bands' mean
    energy) keeps a frame with no detail at zero gain instead of an arbitrary one."""
    b = bands.flatten(2).double()
    r = residual.flatten(1).double()
    gram = b @ b.transpose(1, 2)  # (N, K, K)
    scale = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)[:, None, None]
    eye = torch.eye(b.shape[1], dtype=b.dtype, device=b.device)
    return torch.linalg.solve(gram + ridge * scale * eye, (b @ r[:, :, None])).squeeze(2).to(bands.dtype)


def band_gain_loss(gains: torch.Tensor, bands: torch.Tensor, residual: torch.Tensor, taught: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
    """L1 from the detail path's per-frame band gains, (N, K), to the least-squares gains of each
    sample's own target (``least_squares_gains``), over the samples ``taught`` (N bools) only.

    Why teach the gains directly: the right amount differs by tens between kinds of softness
    (a Gaussian blur of sigma 1.6 wants 13 on the narrow band, the same with a little noise or
    JPEG 1-4, an upscale 0.5), and learnt through the output alone the path's gains moved by
    tenths in thousands of steps while the body sharpened every kind by one middling amount.
    Only samples whose residual the bands should carry are taught: soft ones, not motion blur,
    which the body undoes. The least-squares gains are what the bands should add with the body
    off, so the body's ``gate`` (N, ...), where there is one, is taught 0 on the same samples:
    taught the gains alone, the path sharpened on top of the body (train/README.md, "Capacity and shape")."""
    if not bool(taught.any()):
        return gains.new_zeros(())
    want = least_squares_gains(bands[taught], residual[taught])
    loss = (gains[taught] - want).abs().mean()
    return loss if gate is None else loss + gate[taught].abs().mean()


def distill_loss(pred: torch.Tensor, teacher_out: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier from the student's output to the teacher's (which gets no gradient)."""
    return charbonnier(pred, teacher_out.detach(), eps)


def temporal_consistency_loss(
    pred_clip: torch.Tensor, target_clip: torch.Tensor, mask_threshold: float | None = None, eps: float = 1e-3
) -> torch.Tensor:
    """Flicker penalty without optical flow: the prediction may change between frames only as
    much as the target does.

    Charbonnier of (pred[t+1] - pred[t]) - (target[t+1] - target[t]) over (N, T, 3, H, W),
    T >= 2. Zero when pred is the target plus any constant, so it never fights the
    per-frame losses. mask_threshold: ignore pixels whose target changes by more than this
    between frames (in any channel): moving edges and occlusions, where small misalignment of
    a correct prediction would otherwise be punished.

    >>> clip = torch.rand(1, 3, 3, 8, 8)
    >>> float(temporal_consistency_loss(clip, clip))
    0.0
    """
    _same_shape(pred_clip, target_clip)
    if pred_clip.dim() != 5 or pred_clip.shape[1] < 2:
        raise ValueError(f"expected (N, T>=2, 3, H, W) clips, got shape {tuple(pred_clip.shape)}")
    # Differencing the residual equals the difference of frame changes, with fewer roundings.
    residual = pred_clip - target_clip
    per_pixel = _charbonnier(residual[:, 1:] - residual[:, :-1], eps)
    if mask_threshold is None:
        return per_pixel.mean()
    change = (target_clip[:, 1:] - target_clip[:, :-1]).abs().amax(dim=2, keepdim=True)
    keep = (change <= mask_threshold).to(per_pixel.dtype).expand_as(per_pixel)
    return (per_pixel * keep).sum() / keep.sum().clamp_min(1)


def psnr(pred: torch.Tensor, target: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """Mean over images of the PSNR in dB, data range 1; (N, [T,] 3, H, W).

    pred is clamped to [0, 1] first, as it would be when saved. Identical images give
    ``max_db`` rather than infinity, so averages stay finite.
    """
    _same_shape(pred, target)
    mse = (_images(pred).clamp(0, 1) - _images(target)).square().flatten(1).mean(1)
    return (10 * torch.log10(1 / mse.clamp_min(10 ** (-max_db / 10)))).mean()

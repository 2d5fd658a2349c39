"""Losses for training the student: pure functions returning scalar tensors.

Images are (N, 3, H, W) float tensors in [0, 1]; clips (N, T, 3, H, W) are treated as N*T
images by every image loss. Only ``temporal_consistency_loss`` looks across time, and only
``VGGPerceptual`` holds weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision
from pytorch_msssim import ms_ssim, ssim
from torch import nn

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
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device) / 8
    channels = x.shape[1]
    weight = torch.stack([gx, gx.T]).unsqueeze(1).repeat(channels, 1, 1, 1)  # (2C, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), weight, groups=channels)


def sobel_edge_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between Sobel gradients (not magnitudes: those lose edge direction and have no
    gradient at flat pixels); (N, [T,] 3, H, W)."""
    _same_shape(pred, target)
    return F.l1_loss(sobel(_images(pred)), sobel(_images(target)))


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


def distill_loss(pred: torch.Tensor, teacher_out: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier from the student's output to the teacher's (which gets no gradient)."""
    return charbonnier(pred, teacher_out.detach(), eps)


def feature_matching_loss(
    student_feats: Sequence[torch.Tensor],
    teacher_feats: Sequence[torch.Tensor],
    adapters: Sequence[nn.Module | None] | None = None,
    kind: str = "l1",
) -> torch.Tensor:
    """Mean over levels of L1 (or "mse") between student and teacher feature maps.

    adapters: one module (e.g. a 1x1 conv mapping student to teacher channels) or None per
    level, applied to the student's feature. After it, shapes must match exactly.

    >>> f = [torch.ones(1, 8, 4, 4)]
    >>> feature_matching_loss(f, f)
    tensor(0.)
    """
    if not student_feats or len(student_feats) != len(teacher_feats):
        raise ValueError(f"need equally many features, got {len(student_feats)} and {len(teacher_feats)}")
    adapters = list(adapters) if adapters is not None else [None] * len(student_feats)
    if len(adapters) != len(student_feats):
        raise ValueError(f"need one adapter (or None) per level, got {len(adapters)} for {len(student_feats)}")
    if kind not in ("l1", "mse"):
        raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
    distance = F.l1_loss if kind == "l1" else F.mse_loss
    total = 0.0
    for level, (s, t, adapter) in enumerate(zip(student_feats, teacher_feats, adapters)):
        s = adapter(s) if adapter is not None else s
        if s.shape != t.shape:
            raise ValueError(
                f"level {level}: student feature {tuple(s.shape)} vs teacher {tuple(t.shape)}; "
                "pass an adapter (e.g. a 1x1 conv) or match the resolutions"
            )
        total = total + distance(s, t.detach())
    return total / len(student_feats)


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


# ReLU outputs of torchvision's vgg16().features, by their usual names.
VGG_LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}


class VGGPerceptual(nn.Module):
    """Perceptual loss: mean L1 between VGG-16 features of pred and target (frozen network).

    weights_path: a local file holding torchvision vgg16 ImageNet weights, either the whole
    model's state dict or ``vgg16().features``'s. Nothing is ever downloaded.
    Inputs (N, [T,] 3, H, W) RGB in [0, 1]; ImageNet normalisation is applied inside.

    >>> loss = VGGPerceptual("models/vgg16.pth")(pred, target)  # doctest: +SKIP
    """

    def __init__(
        self, weights_path: str | Path | None = None, layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3")
    ):
        super().__init__()
        if weights_path is None:
            raise ValueError(
                "VGGPerceptual needs weights_path: no VGG weights can be downloaded here. On a "
                "machine with internet run torch.save(torchvision.models.vgg16(weights='IMAGENET1K_V1')"
                ".state_dict(), 'vgg16.pth'), copy the file here and pass its path "
                "(VGGPerceptual('vgg16.pth')), or train without the perceptual term."
            )
        unknown = [name for name in layers if name not in VGG_LAYERS]
        if not layers or unknown:
            raise ValueError(f"layers must be a non-empty subset of {list(VGG_LAYERS)}, got {list(layers)}")
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"VGG weights {path} not found; pass the path of a saved vgg16 state dict")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if any(key.startswith("features.") for key in state):  # a whole-model state dict
            state = {key[len("features.") :]: v for key, v in state.items() if key.startswith("features.")}
        self.taps = sorted(VGG_LAYERS[name] for name in layers)
        depth = self.taps[-1] + 1
        self.features = torchvision.models.vgg16(weights=None).features[:depth]
        # strict: a wrong or truncated file must fail here, not train against random features.
        keep = {k: v for k, v in state.items() if not k.split(".")[0].isdigit() or int(k.split(".")[0]) < depth}
        self.features.load_state_dict(keep)
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x, out = (x - self.mean) / self.std, []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out.append(x)
        return out

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _same_shape(pred, target)
        with torch.no_grad():
            wanted = self._features(_images(target))
        got = self._features(_images(pred))
        return sum(F.l1_loss(g, w) for g, w in zip(got, wanted)) / len(got)

"""Restormer, the teacher network, and loading the official motion-deblurring checkpoint.

Licence: ``Restormer`` here is written from the paper (Zamir et al., "Restormer: Efficient
Transformer for High-Resolution Image Restoration", CVPR 2022), not from the official code,
which, like its weights, is licensed for non-commercial use only. Its module names follow the
official checkpoint's keys so those weights load, but the weights keep their own licence:
a teacher's licence constrains how the distilled student may be used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from livesharp.model import pad_to_multiple
from train.teacher_base import TeacherError, file_sha256
from train.tiling import tiled_forward


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel, with a learnable weight and bias
    (the paper's "WithBias" variant). ``body`` is a plain ``nn.LayerNorm`` on channels-last."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.LayerNorm(channels, eps=1e-5)

    def forward(self, x):
        # F.layer_norm (unlike a hand-written mean/var) stays in float32 under fp16 autocast.
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MDTA(nn.Module):
    """Multi-Dconv head transposed attention.

    Queries, keys and values come from a 1x1 conv followed by a 3x3 depthwise conv (local
    context). Attention is then taken across channels, not positions: each head forms a
    (C/heads x C/heads) map from L2-normalised q and k, scaled by a learnable per-head
    temperature. The cost is linear in the number of pixels, which is what makes a
    transformer affordable at full resolution.
    """

    def __init__(self, dim: int, heads: int, bias: bool = False):
        super().__init__()
        self.heads = heads
        self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x):
        n, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        # Channels are grouped head-major: head i owns channels [i*C/heads, (i+1)*C/heads).
        q, k, v = (t.reshape(n, self.heads, c // self.heads, h * w) for t in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(n, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward network: expand with a 1x1 conv, mix neighbours with a 3x3
    depthwise conv, let one half gate the other (GELU(a) * b), project back."""

    def __init__(self, dim: int, expansion: float, bias: bool = False):
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x):
        a, b = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + MDTA(norm(x)), then x + GDFN(norm(x))."""

    def __init__(self, dim: int, heads: int, expansion: float, bias: bool = False):
        super().__init__()
        self.norm1 = ChannelLayerNorm(dim)
        self.attn = MDTA(dim, heads, bias)
        self.norm2 = ChannelLayerNorm(dim)
        self.ffn = GDFN(dim, expansion, bias)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PatchEmbed(nn.Module):
    """3x3 conv from RGB to features (a "patch" is one pixel with its neighbours)."""

    def __init__(self, in_channels: int, dim: int, bias: bool = False):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, 3, padding=1, bias=bias)

    def forward(self, x):
        return self.proj(x)


class Resample(nn.Module):
    """Halve or double the resolution without losing information: a 3x3 conv sets the channel
    count, then pixels are folded into channels (PixelUnshuffle) or unfolded (PixelShuffle).
    Down: C -> C/2 -> 2C at half size. Up: C -> 2C -> C/2 at double size."""

    def __init__(self, dim: int, direction: Literal["down", "up"]):
        super().__init__()
        if direction == "down":
            self.body = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))
        else:
            self.body = nn.Sequential(nn.Conv2d(dim, dim * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x):
        return self.body(x)


def _blocks(n: int, dim: int, heads: int, expansion: float, bias: bool) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, heads, expansion, bias) for _ in range(n)])


class Restormer(nn.Module):
    """Restormer (Zamir et al., CVPR 2022): a 4-level transformer U-Net for image restoration.

    Our own implementation, written from the paper; the defaults are the motion-deblurring
    configuration, and the state dict matches the official ``motion_deblurring.pth`` key for
    key (load it with ``load_restormer``). The official code and weights are licensed for
    non-commercial use only; this file contains none of the code.

    Args:
        in_channels, out_channels: 3 for RGB.
        dim: channels at full resolution; doubled at every level down (48, 96, 192, 384).
        num_blocks: transformer blocks per level, full resolution first.
        num_refinement_blocks: blocks after the decoder, at full resolution.
        heads: attention heads per level.
        ffn_expansion_factor: GDFN hidden channels = int(dim * factor).
        bias: biases in the convolutions (the official configuration has none).

    Shape:
        (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H, W), any H and W: sides are
        reflect-padded to a multiple of 8 inside and cropped back. The output is not clamped.

    Cost:
        26.1 M parameters; about 2.2 TMAC per 1280x720 frame (linear in the pixel count),
        so it is a teacher, never a real-time model. Its largest activation at 720p (the
        level-1 GDFN expansion, 510 channels) is 1.9 GB in float32.

    >>> net = Restormer(num_blocks=(1, 1, 1, 1), num_refinement_blocks=1).eval()
    >>> net(torch.rand(1, 3, 37, 45)).shape
    torch.Size([1, 3, 37, 45])
    """

    multiple = 8  # three 2x downsamplings

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: tuple[int, int, int, int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: tuple[int, int, int, int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
    ):
        super().__init__()
        e, b = ffn_expansion_factor, bias
        # Attribute names (and their order) are the official checkpoint's keys.
        self.patch_embed = PatchEmbed(in_channels, dim, bias)
        self.encoder_level1 = _blocks(num_blocks[0], dim, heads[0], e, b)
        self.down1_2 = Resample(dim, "down")
        self.encoder_level2 = _blocks(num_blocks[1], dim * 2, heads[1], e, b)
        self.down2_3 = Resample(dim * 2, "down")
        self.encoder_level3 = _blocks(num_blocks[2], dim * 4, heads[2], e, b)
        self.down3_4 = Resample(dim * 4, "down")
        self.latent = _blocks(num_blocks[3], dim * 8, heads[3], e, b)
        self.up4_3 = Resample(dim * 8, "up")
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)
        self.decoder_level3 = _blocks(num_blocks[2], dim * 4, heads[2], e, b)
        self.up3_2 = Resample(dim * 4, "up")
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = _blocks(num_blocks[1], dim * 2, heads[1], e, b)
        self.up2_1 = Resample(dim * 2, "up")
        # Level 1 keeps the concatenated 2*dim channels: no reduction, and so does refinement.
        self.decoder_level1 = _blocks(num_blocks[0], dim * 2, heads[0], e, b)
        self.refinement = _blocks(num_refinement_blocks, dim * 2, heads[0], e, b)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def forward(self, inp):
        h, w = inp.shape[-2:]
        x = pad_to_multiple(inp, self.multiple)
        e1 = self.encoder_level1(self.patch_embed(x))
        e2 = self.encoder_level2(self.down1_2(e1))
        e3 = self.encoder_level3(self.down2_3(e2))
        z = self.latent(self.down3_4(e3))
        d3 = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(z), e3], dim=1)))
        d2 = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(d3), e2], dim=1)))
        d1 = self.decoder_level1(torch.cat([self.up2_1(d2), e1], dim=1))
        out = self.output(self.refinement(d1))
        return out[..., :h, :w] + inp


def _preview(names: list[str], n: int = 3) -> str:
    """'a, b, c (24 more)': a list short enough for a one-line error."""
    more = f" ({len(names) - n} more)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_restormer(path: str | Path, device: str | torch.device = "cpu") -> Restormer:
    """The official motion-deblurring Restormer (``motion_deblurring.pth``), frozen, in eval mode.

    Accepts the official layout ``{"params": state_dict}`` or a bare state dict. The file is
    read with ``weights_only=True``: loading never runs code from it. Any problem raises
    ``TeacherError`` with one line naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise TeacherError(f"{path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file; all mean the same to a user
        detail = (str(e).splitlines() or [""])[0][:120]
        raise TeacherError(f"{path}: not a readable checkpoint ({type(e).__name__}: {detail})") from None
    state = ckpt.get("params", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TeacherError(f"{path}: not a Restormer checkpoint (expected a state dict, or one under 'params')")

    model = Restormer()
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} {tuple(state[k].shape)}!={tuple(v.shape)}" for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_preview(unexpected)}")
    if reshaped:
        problems.append(f"wrong shapes {_preview(reshaped)}")
    if problems:
        raise TeacherError(f"{path}: not a Restormer motion_deblurring checkpoint: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
    return model.to(device).eval().requires_grad_(False)


class RestormerTeacher:
    """Restormer as a teacher: frozen, fp16 autocast on CUDA, tiled above ``tile`` pixels a side.

    ``__call__``: (N, 3, H, W) float in [0, 1] on any device -> (N, 3, H, W) float32 in [0, 1]
    on the same device. Runs under ``no_grad`` (not ``inference_mode``: inference tensors
    cannot be saved for the student's backward pass).
    """

    def __init__(self, model: Restormer, name: str, device: str | torch.device = "cpu", tile: int = 1280, overlap: int = 32):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.name = name
        self.tile, self.overlap = tile, overlap

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> "RestormerTeacher":
        path = Path(path)
        model = load_restormer(path, device)
        return cls(model, f"restormer:{file_sha256(path)[:12]}", device)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            y = tiled_forward(self.model, x.to(self.device, torch.float32), self.tile, self.overlap)
        return y.float().clamp_(0, 1).to(x.device)

"""Teachers: the big networks whose outputs the student learns to reproduce.

A teacher is any callable ``(N, 3, H, W) float RGB in [0, 1] -> same shape`` with a ``name``
that identifies its weights (cache keys use it). Three kinds, chosen by ``make_teacher``:

- ``restormer:PATH``: our own Restormer, loading the official ``motion_deblurring.pth``;
- ``onnx:PATH``: any image-to-image ONNX model, run by onnxruntime;
- ``none``: no teacher (train on ground truth only).

``tiled_forward`` runs any of them over frames that do not fit in memory, and ``TeacherCache``
keeps their outputs on disk so a 2.2-TMAC teacher runs once per crop, not once per epoch.

Licence: ``Restormer`` below is written from the paper (Zamir et al., "Restormer: Efficient
Transformer for High-Resolution Image Restoration", CVPR 2022), not from the official code,
which, like its weights, is licensed for non-commercial use only. Its module names follow the
official checkpoint's keys so those weights load, but the weights keep their own licence:
a teacher's licence constrains how the distilled student may be used.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from livesharp.files import atomic_output
from livesharp.model import pad_to_multiple


class TeacherError(ValueError):
    """A teacher spec, checkpoint or model that cannot be used; the message is one line for the user."""


class Teacher(Protocol):
    """What the training loop needs from a teacher."""

    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


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


def _tile_spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split one axis into tiles: (start, stop) of each tile's input, and the seams (cut
    positions) before and after its own share of the output (-1 at the image border)."""
    if size <= tile:
        return [(0, size, -1, -1)]
    n = -(-size // (tile - 2 * overlap))
    cuts = [round(i * size / n) for i in range(n + 1)]
    return [
        (max(0, cuts[i] - overlap), min(size, cuts[i + 1] + overlap), cuts[i] if i > 0 else -1, cuts[i + 1] if i < n - 1 else -1)
        for i in range(n)
    ]


def _tile_weight(start: int, stop: int, before: int, after: int, overlap: int) -> torch.Tensor:
    """1-D blending weight of one tile: 0 -> 1 over the ``overlap`` pixels centred on the seam
    before it, 1 -> 0 over those centred on the seam after it. The weights of neighbouring
    tiles sum to 1 at every pixel, and each tile's outer ``overlap // 2`` pixels (where its
    borders disturb the result) get weight 0."""
    pos = torch.arange(start, stop, dtype=torch.float64) + 0.5
    w = torch.ones(stop - start, dtype=torch.float64)
    for seam, rising in ((before, True), (after, False)):
        if seam < 0:
            continue
        if overlap == 0:
            ramp = (pos >= seam).double()
        else:
            ramp = ((pos - (seam - overlap // 2)) / overlap).clamp(0, 1)
        w = w * (ramp if rising else 1 - ramp)
    return w


def tiled_forward(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int = 512, overlap: int = 32) -> torch.Tensor:
    """Run an image-to-image function over overlapping tiles and blend the results.

    For frames too large to process at once. Each tile reaches ``overlap`` pixels beyond its
    own share on every inner side (neighbours share ``2 * overlap`` pixels), and outputs are
    cross-faded linearly over the ``overlap`` pixels centred on each seam. A function whose
    receptive field reaches at most ``overlap // 2`` pixels from the output pixel (a stack of
    convolutions, say) is reproduced exactly; one with global context (Restormer's channel
    attention) is approximated, with seams hidden by the cross-fade.

    Args:
        fn: (N, 3, h, w) -> (N, 3, h, w) for any h, w up to ``tile``.
        x: (N, 3, H, W).
        tile: largest tile side; an image that fits in one tile is passed to ``fn`` whole.
        overlap: see above; ``tile`` must be at least ``4 * overlap``.

    Returns:
        (N, 3, H, W), float32 unless ``fn`` returns float64.

    >>> blur = torch.nn.Conv2d(3, 3, 3, padding=1)
    >>> x = torch.rand(1, 3, 100, 130)
    >>> torch.allclose(tiled_forward(blur, x, tile=64, overlap=8), blur(x), atol=1e-5)
    True
    """
    if overlap < 0 or tile < max(1, 4 * overlap):
        raise ValueError(f"tiled_forward: need tile >= 4 * overlap >= 0, got tile={tile}, overlap={overlap}")
    h, w = x.shape[-2:]
    if h <= tile and w <= tile:
        return fn(x)
    out = None
    for y0, y1, *ycuts in _tile_spans(h, tile, overlap):
        wy = _tile_weight(y0, y1, *ycuts, overlap)
        for x0, x1, *xcuts in _tile_spans(w, tile, overlap):
            wx = _tile_weight(x0, x1, *xcuts, overlap)
            y = fn(x[..., y0:y1, x0:x1])
            if out is None:
                dtype = torch.float64 if y.dtype == torch.float64 else torch.float32
                out = torch.zeros(*y.shape[:-2], h, w, dtype=dtype, device=y.device)
            weight = (wy[:, None] * wx[None, :]).to(out)
            out[..., y0:y1, x0:x1] += y.to(out) * weight
    return out


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        return cls(model, f"restormer:{_file_sha256(path)[:12]}", device)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            y = tiled_forward(self.model, x.to(self.device, torch.float32), self.tile, self.overlap)
        return y.float().clamp_(0, 1).to(x.device)


@dataclass(frozen=True)
class TeacherSpec:
    """How to feed an external model: sides padded (reflect) to ``multiple``, tensor ``layout``,
    and the ``value_range`` that [0, 1] maps to (``(0.0, 255.0)`` for 8-bit-style models).

    An ONNX file can carry its own spec as JSON in its metadata under ``SPEC_KEY`` (the MAXIM
    conversion, ``python -m train.maxim``, writes one), so the loop needs no per-model cases.
    """

    multiple: int = 8
    layout: Literal["nchw", "nhwc"] = "nchw"
    value_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        if self.multiple < 1:
            raise TeacherError(f"TeacherSpec.multiple must be >= 1, got {self.multiple}")
        if self.layout not in ("nchw", "nhwc"):
            raise TeacherError(f"TeacherSpec.layout must be 'nchw' or 'nhwc', got {self.layout!r}")
        lo, hi = self.value_range
        if not hi > lo:
            raise TeacherError(f"TeacherSpec.value_range must be (low, high) with high > low, got {self.value_range}")


    @classmethod
    def from_json(cls, text: str) -> "TeacherSpec":
        try:
            d = json.loads(text)
            return cls(multiple=int(d.get("multiple", 8)), layout=d.get("layout", "nchw"), value_range=tuple(float(v) for v in d.get("value_range", (0.0, 1.0))))
        except (ValueError, TypeError, AttributeError) as e:
            raise TeacherError(f"teacher spec {text[:80]!r} is not valid JSON of multiple/layout/value_range ({e})") from None


SPEC_KEY = "livesharp.teacher_spec"
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64, "tensor(uint8)": np.uint8}


class OnnxTeacher:
    """Any image-to-image ONNX model as a teacher, run by onnxruntime.

    Args:
        path: the ``.onnx`` file.
        spec: padding, layout and value range. If omitted: the spec in the file's metadata
            (``SPEC_KEY``) if it has one; else the layout is read from the model's input shape
            (rank 4 with 3 last -> nhwc) and the rest are ``TeacherSpec`` defaults.
        device: "cuda" uses onnxruntime's CUDA provider when it is installed; otherwise CPU.

    ``__call__``: (N, 3, H, W) float in [0, 1] -> (N, 3, H, W) float32 in [0, 1], same device.
    ``name`` is ``"onnx:<file stem>:<first 12 hex of the file's sha256>"``.
    """

    def __init__(self, path: str | Path, spec: TeacherSpec | None = None, device: str | torch.device = "cpu"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise TeacherError('ONNX teachers need onnxruntime: pip install "livesharp[onnx]"') from None
        path = Path(path)
        if not path.is_file():
            raise TeacherError(f"{path}: no such file")
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            detail = (str(e).splitlines() or [""])[0][:160]
            raise TeacherError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {detail})") from None

        inp = self.session.get_inputs()[0]
        if len(inp.shape) != 4:
            raise TeacherError(f"{path}: expected one image input of rank 4, got shape {inp.shape}")
        if inp.type not in _ONNX_DTYPES:
            raise TeacherError(f"{path}: unsupported input type {inp.type} (expected one of {', '.join(_ONNX_DTYPES)})")
        self.input_name = inp.name
        self.input_dtype = _ONNX_DTYPES[inp.type]
        stored = self.session.get_modelmeta().custom_metadata_map.get(SPEC_KEY)
        self.spec = spec or (TeacherSpec.from_json(stored) if stored else TeacherSpec(layout="nhwc" if inp.shape[-1] == 3 else "nchw"))
        # Static sizes, by axis name: a model exported for fixed shapes accepts nothing else.
        dims = dict(zip("nhwc" if self.spec.layout == "nhwc" else "nchw", inp.shape))
        self.fixed = {a: d for a, d in dims.items() if isinstance(d, int)}
        if self.fixed.get("c", 3) != 3:
            raise TeacherError(f"{path}: input shape {inp.shape} has no 3-channel axis where layout {self.spec.layout} puts it")
        self.path = path
        self.name = f"onnx:{path.stem}:{_file_sha256(path)[:12]}"

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x.detach().float().cpu(), spec.multiple)
        hp, wp = xp.shape[-2:]
        for axis, size in (("h", hp), ("w", wp)):
            if axis in self.fixed and self.fixed[axis] != size:
                raise TeacherError(f"{self.path}: model takes a fixed {axis.upper()} of {self.fixed[axis]}, got {size} (after padding)")
        lo, hi = spec.value_range
        a = xp.numpy() * (hi - lo) + lo
        if spec.layout == "nhwc":
            a = a.transpose(0, 2, 3, 1)
        if self.input_dtype == np.uint8:
            a = np.clip(np.rint(a), 0, 255)
        a = np.ascontiguousarray(a, dtype=self.input_dtype)
        # A model exported for batch 1 gets the frames one at a time.
        batches = [a[i : i + 1] for i in range(len(a))] if self.fixed.get("n") == 1 else [a]
        y = np.concatenate([self.session.run(None, {self.input_name: b})[0] for b in batches]).astype(np.float32)
        if spec.layout == "nhwc" and y.ndim == 4:
            y = y.transpose(0, 3, 1, 2)
        if y.shape != (len(a), 3, hp, wp):
            raise TeacherError(f"{self.path}: output shape {y.shape} (as NCHW) does not match the input {(len(a), 3, hp, wp)}")
        y = (torch.from_numpy(np.ascontiguousarray(y)) - lo) / (hi - lo)
        return y[..., :h, :w].clamp_(0, 1).to(x.device)


def make_teacher(spec: str, device: str | torch.device = "cpu") -> Teacher | None:
    """A teacher from its command-line spec.

    ``"none"`` -> None; ``"restormer:PATH"`` or a PATH ending in .pth/.pt -> ``RestormerTeacher``;
    ``"onnx:PATH"`` or a PATH ending in .onnx -> ``OnnxTeacher`` (default ``TeacherSpec``).

    >>> make_teacher("none") is None
    True
    """
    kind, sep, rest = spec.partition(":")
    if spec == "none":
        return None
    if sep and kind == "restormer":
        return RestormerTeacher.from_checkpoint(rest, device)
    if sep and kind == "onnx":
        return OnnxTeacher(rest, device=device)
    if spec.endswith((".pth", ".pt")):
        return RestormerTeacher.from_checkpoint(spec, device)
    if spec.endswith(".onnx"):
        return OnnxTeacher(spec, device=device)
    raise TeacherError(f"unknown teacher {spec!r}: expected none, restormer:PATH, onnx:PATH, or a path ending in .pth, .pt or .onnx")


class TeacherCache:
    """Teacher outputs on disk, one file per (teacher, source, crop), so the teacher runs once.

    Files are ``root/ab/abcdef....pt`` holding a (3, H, W) uint8 tensor: 8 bits, like the
    frames the teacher saw. Writes go to a temp file in the same folder and are renamed into
    place, so a killed writer never leaves a half entry; an entry that does not load anyway
    (a damaged disk, a foreign file) is deleted with a warning and counts as a miss.

    >>> key = TeacherCache.key("restormer:0123456789ab", "clip.mp4|1234|1700000000", (0, 0, 256, 256))
    >>> TeacherCache(Path("cache")).path(key).parent.name == key[:2]
    True
    """

    VERSION = "livesharp-teacher-cache-v1"

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @classmethod
    def key(cls, teacher_name: str, source_id: str, crop: tuple[int, int, int, int] | None = None) -> str:
        """sha256 hex of a canonical description; ``crop`` is (top, left, height, width) or None."""
        if crop is not None:
            crop = [int(c) for c in crop]
            if len(crop) != 4:
                raise ValueError(f"crop must be (top, left, height, width), got {crop}")
        canon = json.dumps([cls.VERSION, str(teacher_name), str(source_id), crop], separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def get(self, key: str) -> torch.Tensor | None:
        """The cached output as float32 (3, H, W) in [0, 1], or None on a miss."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            t = torch.load(path, map_location="cpu", weights_only=True)
            if not (isinstance(t, torch.Tensor) and t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3):
                raise ValueError(f"expected a (3, H, W) uint8 tensor, got {type(t).__name__} {getattr(t, 'shape', '')}")
        except Exception as e:  # truncated zip, garbage, wrong content: all the same, recompute
            warnings.warn(f"teacher cache: dropping damaged entry {path} ({type(e).__name__})", stacklevel=2)
            path.unlink(missing_ok=True)
            return None
        return t.float() / 255

    def put(self, key: str, image: torch.Tensor) -> None:
        """Store a (3, H, W) or (1, 3, H, W) float image in [0, 1] (values outside are clipped)."""
        self._write(key, self._quantize(image))

    def get_or_compute(self, key: str, fn: Callable[[], torch.Tensor]) -> torch.Tensor:
        """``get(key)``, or compute with ``fn()``, store, and return what was stored: a hit and
        a miss give identical values (both 8-bit)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        q = self._quantize(fn())
        self._write(key, q)
        return q.float() / 255

    def _write(self, key: str, q: torch.Tensor) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            torch.save(q, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename: a power cut leaves no empty entry

    @staticmethod
    def _quantize(image: torch.Tensor) -> torch.Tensor:
        t = image.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"teacher cache stores (3, H, W) images, got shape {tuple(image.shape)}")
        return (t.float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous()


def teacher_targets(teacher, cache: TeacherCache, blur: torch.Tensor, sources: list[str]) -> torch.Tensor:
    """Teacher outputs for a (B, T, 3, H, W) batch, from the cache where it has them.

    Frame t of the sample named ``sources[b]`` is keyed ``"{source}|t={t}"``: training,
    ``train.fill_cache`` and ``train.evaluate`` all go through here, so they share entries.
    """
    out = torch.empty_like(blur)
    for b, source in enumerate(sources):
        for t in range(blur.shape[1]):
            key = TeacherCache.key(teacher.name, f"{source}|t={t}")
            out[b, t] = cache.get_or_compute(key, lambda: teacher(blur[b, t][None])[0])
    return out


__all__ = [
    "Restormer",
    "load_restormer",
    "tiled_forward",
    "TeacherSpec",
    "SPEC_KEY",
    "OnnxTeacher",
    "RestormerTeacher",
    "make_teacher",
    "TeacherCache",
    "teacher_targets",
    "TeacherError",
    "Teacher",
]

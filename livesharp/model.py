"""The student: a small NAFNet-style U-Net that runs at reduced resolution.

The frame is folded into channels with PixelUnshuffle, so every convolution works on a
quarter (or sixteenth) of the positions, and unfolded again at the end. The network predicts
a residual that is added to the input, so a zero last layer is the identity — a student that
has learned nothing leaves the picture exactly as it was.

Checkpoints describe themselves: ``{"model": state_dict, "model_args": cfg.args(), ...}``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelError  # defined in errors, so the engine can name it without importing torch
from .files import atomic_output


@dataclass(frozen=True)
class StudentConfig:
    unshuffle: int = 2  # PixelUnshuffle factor: 2 works at half resolution
    width: int = 16  # channels of the first level; doubled at every level down
    # Channels of the first level alone, the 4x4 patches' own (0: ``width``); the levels below
    # keep 2, 4, ... x ``width``. Sixteen hold no more than a patch's luma, and on set 1 ``tiny``
    # removes 3.8 dB of the error at periods of 32-64 px but 0.03 dB at 4-8 px, where a fifth
    # of it lies; 32, grown from a trained ``tiny-detail``, did not change that in 1,250 steps
    # (train/README.md, "Where set 1's error lies").
    first_width: int = 0
    enc_blocks: tuple[int, ...] = (1, 1, 1)
    middle_blocks: int = 1
    dec_blocks: tuple[int, ...] = (1, 1, 1)
    edge_kernel: int = 3  # kernel of the first and last conv; 1 saves most of their cost
    block: str = "naf"  # "naf": NAFBlock; "conv": two dense 3x3 convolutions (see ConvBlock)
    # Subtract the residual's mean over the frame, per colour: a sharpener then cannot change
    # a frame's brightness. Training taught students to darken (linear-light blur is brighter
    # than its target, and one frame does not say which kind it is), which harms every sharp
    # video; a conv32 fine-tune went from -0.37 to -0.03 grey levels on sharp input with it,
    # at the same gain on real blur. Costs one mean over the folded residual per frame: about
    # 10 % of conv32's 720p time under OpenVINO bf16, nothing measurable in int8
    # (benchmarks/README.md).
    zero_mean: bool = False
    # A DetailPath with this many bands (1 or 2): the luma's full-resolution high-passes, each
    # scaled by a gain the network sets per frame and per 4x4 block; 0 leaves it out.
    detail: int = 0

    def __post_init__(self):
        if len(self.enc_blocks) != len(self.dec_blocks):
            raise ModelError("enc_blocks and dec_blocks must have the same number of levels")
        if self.detail not in (0, 1, 2):
            raise ModelError(f"detail {self.detail}: choose 0 (none), 1 or 2 (a DetailPath of that many bands)")
        if self.block not in ("naf", "conv"):
            raise ModelError(f"block {self.block!r}: choose naf or conv")

    def args(self) -> dict:
        """The fields a checkpoint records and a graph's digest hashes (``export.model_digest``):
        all of them but ``first_width`` where it is 0, so a student from before that field saves
        and hashes as it did, and the shipped graphs still name their checkpoints."""
        args = asdict(self)
        if not self.first_width:
            del args["first_width"]
        return args

    @property
    def multiple(self) -> int:
        """Input sides are padded to this multiple so every downsampling divides evenly."""
        return self.unshuffle * 2 ** len(self.enc_blocks)


VARIANTS: dict[str, StudentConfig] = {
    # The shipped default since v5 (the frontier's naf16-m4; model card): 0.65 M params, 1.38
    # GMAC per megapixel; its speed per CPU kind is in benchmarks/README.md. Its four blocks at
    # 1/32 cost little time; the zero-mean residual keeps brightness.
    "tiny": StudentConfig(unshuffle=4, width=16, enc_blocks=(1, 1, 1), middle_blocks=4, dec_blocks=(1, 1, 1), edge_kernel=1, zero_mean=True),
    # tiny-detail with more blocks where they are cheap, at 1/8 to 1/32 of the resolution (issue
    # 29): for file and GPUs (no shipped weights). 1.80 M params, 3.21 GMAC per megapixel; on an
    # AVX2 CPU its 720p frame takes 1.7x tiny's under OpenVINO fp32. Grown from a trained tiny
    # (train.distill --grow small), whose function it starts with.
    "small": StudentConfig(unshuffle=4, width=16, enc_blocks=(1, 2, 4), middle_blocks=12, dec_blocks=(4, 2, 1), edge_kernel=1, zero_mean=True, detail=1),
    # Dense-convolution students (ConvBlock): several times the arithmetic of tiny in about the
    # same time under OpenVINO bf16 (``python -m train.frontier table`` times them).
    # 0.30 M params, 7.74 GMAC/MP: one level at 1/4 resolution (32 ch), three blocks at 1/8 (64 ch).
    "conv32": StudentConfig(unshuffle=4, width=32, enc_blocks=(1,), middle_blocks=3, dec_blocks=(1,), edge_kernel=3, block="conv", zero_mean=True),
    # 0.67 M params, 6.22 GMAC/MP: reaches 1/16 resolution, for the widest blur.
    "conv24-3": StudentConfig(unshuffle=4, width=24, enc_blocks=(1, 1), middle_blocks=3, dec_blocks=(1, 1), edge_kernel=3, block="conv"),
    # tiny with a DetailPath (issue 28; no shipped weights): 0.65 M params, 1.54 GMAC/MP; on an
    # AVX2 CPU its 720p frame takes 8-11 % longer than tiny's (benchmarks/README.md).
    "tiny-detail": StudentConfig(unshuffle=4, width=16, enc_blocks=(1, 1, 1), middle_blocks=4, dec_blocks=(1, 1, 1), edge_kernel=1, zero_mean=True, detail=1),
    # tiny with a DetailPath of two bands, the body's gate and the frame's band energies (issue 28;
    # no shipped weights): on an AVX2 CPU its 720p frame takes 18-22 % longer than tiny's under
    # OpenVINO fp32, twice the detail path's one band (train/README.md, "Capacity and shape").
    "tiny-detail2": StudentConfig(unshuffle=4, width=16, enc_blocks=(1, 1, 1), middle_blocks=4, dec_blocks=(1, 1, 1), edge_kernel=1, zero_mean=True, detail=2),
}


def _normalise(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean and unit variance over channels at every pixel."""
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + eps)


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at every pixel (the layout convolutions use)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x):
        return _normalise(x, self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class NAFBlock(nn.Module):
    """NAFNet block: depthwise-separable conv with a multiplicative gate instead of an activation,
    simplified channel attention, and a gated feed-forward; both halves are residual with
    learnable scales that start at zero, so a fresh block is the identity."""

    def __init__(self, c: int):
        super().__init__()
        self.norm1 = LayerNorm2d(c)
        self.pw1 = nn.Conv2d(c, 2 * c, 1)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.sca = nn.Conv2d(c, c, 1)
        self.pw2 = nn.Conv2d(c, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.ffn1 = nn.Conv2d(c, 2 * c, 1)
        self.ffn2 = nn.Conv2d(c, c, 1)
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        y = self.dw(self.pw1(self.norm1(x)))
        a, b = y.chunk(2, dim=1)
        y = a * b
        y = y * self.sca(F.adaptive_avg_pool2d(y, 1))
        x = x + self.beta * self.pw2(y)
        a, b = self.ffn1(self.norm2(x)).chunk(2, dim=1)
        return x + self.gamma * self.ffn2(a * b)


class ChannelNorm(nn.Module):
    """``_normalise`` for inference: zero mean and unit variance over channels at every pixel.

    Up to ``CONV_MAX`` channels the two channel means are 1x1 convolutions: ``centre`` (weight
    I - 1/c) gives x - mean(x) and ``spread`` (weight 1/c, bias eps) the variance at every
    channel, so no reduction runs. OpenVINO's CPU plugin reduces over channels slowly on the
    wide, thin tensors of the first levels, so this form is faster there; ``CONV_MAX`` is where
    the gain ended (the timings: ``git log -S "class ChannelNorm"``). The two convolutions stay
    in float in int8 graphs (``train.quantize``).

    rsqrt, not pow(-0.5): ONNX Runtime and torch compute a general power per element, which made
    them slower than with reductions; with rsqrt they are not, and OpenVINO keeps its gain.
    """

    CONV_MAX = 32

    def __init__(self, c: int, eps: float):
        super().__init__()
        self.eps = eps
        self.centre = self.spread = None
        if c <= self.CONV_MAX:
            self.centre = nn.Conv2d(c, c, 1, bias=False)
            self.spread = nn.Conv2d(c, c, 1)
            with torch.no_grad():
                self.centre.weight.copy_((torch.eye(c) - 1 / c)[:, :, None, None])
                self.spread.weight.fill_(1 / c)
                self.spread.bias.fill_(eps)

    def forward(self, x):
        if self.centre is None:
            return _normalise(x, self.eps)
        d = self.centre(x)
        return d * torch.rsqrt(self.spread(d * d))


class FusedNAFBlock(nn.Module):
    """A NAFBlock for inference: the same function in fewer, cheaper operations.

    The gates' two halves come from two convolutions instead of a split of one, the norms'
    scale and shift and ``beta``/``gamma`` are folded into the 1x1 convolutions beside them, and
    narrow norms take their channel means by convolution (``ChannelNorm``).
    OpenVINO splits bf16 tensors by channel with its reference kernel, so this form is faster
    there in int8 and bf16 (the timings: ``git log -S "class FusedNAFBlock"``), with the same
    output within float rounding (``Student.fused``).
    """

    def __init__(self, block: NAFBlock):
        super().__init__()
        c = block.pw2.out_channels
        self.norm1, self.norm2 = ChannelNorm(c, block.norm1.eps), ChannelNorm(c, block.norm2.eps)
        with torch.no_grad():
            self.pw1a, self.pw1b = _halves(_absorb_norm(block.norm1, block.pw1))
            self.dwa, self.dwb = _halves(block.dw)
            self.ffn1a, self.ffn1b = _halves(_absorb_norm(block.norm2, block.ffn1))
            self.sca = copy.deepcopy(block.sca)
            self.pw2, self.ffn2 = _scaled(block.pw2, block.beta), _scaled(block.ffn2, block.gamma)

    def forward(self, x):
        y = self.norm1(x)
        y = self.dwa(self.pw1a(y)) * self.dwb(self.pw1b(y))
        y = y * self.sca(F.adaptive_avg_pool2d(y, 1))
        x = x + self.pw2(y)
        y = self.norm2(x)
        return x + self.ffn2(self.ffn1a(y) * self.ffn1b(y))


def _absorb_norm(norm: LayerNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """A 1x1 convolution equal to ``conv(norm.weight * x + norm.bias)``."""
    out, w = copy.deepcopy(conv), conv.weight.double()
    out.bias.copy_(conv.bias.double() + w[:, :, 0, 0] @ norm.bias.double())
    out.weight.copy_(w * norm.weight.double().view(1, -1, 1, 1))
    return out


def _scaled(conv: nn.Conv2d, scale: torch.Tensor) -> nn.Conv2d:
    """A convolution equal to ``scale * conv(x)``, ``scale`` per output channel."""
    out = copy.deepcopy(conv)
    out.weight.mul_(scale.view(-1, 1, 1, 1))
    out.bias.mul_(scale.view(-1))
    return out


def _halves(conv: nn.Conv2d) -> tuple[nn.Conv2d, nn.Conv2d]:
    """Two convolutions giving the first and the second half of ``conv``'s output channels
    (``conv`` is dense or depthwise)."""
    c = conv.out_channels // 2
    depthwise = conv.groups > 1
    halves = []
    for w, b in zip(conv.weight.chunk(2), conv.bias.chunk(2)):
        half = nn.Conv2d(c if depthwise else conv.in_channels, c, conv.kernel_size, padding=conv.padding, groups=c if depthwise else 1,
                         device=w.device, dtype=w.dtype)
        half.weight.copy_(w)
        half.bias.copy_(b)
        halves.append(half)
    return halves[0], halves[1]


class ConvBlock(nn.Module):
    """Two dense 3x3 convolutions with a ReLU between, residual, scaled by a learnt factor.

    The factor starts at one, not at zero as NAFBlock's do: without normalisation, blocks that
    start switched off stayed off (after 2500 steps the middle blocks' scales were ~0.01 and the
    student was nearly a linear filter). The student is still the identity when fresh, through
    its zero last convolution.

    Why dense: on CPU runtimes a dense 3x3 convolution at reduced resolution reaches several
    times the GFLOP/s of the depthwise convolutions, LayerNorms and gates of a NAFBlock
    (``../shared/notes/cpu_budget.md``: ~700 against ~70 GFLOP/s under OpenVINO bf16), so the
    same milliseconds buy far more arithmetic.
    """

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x):
        return x + self.beta * self.conv2(F.relu(self.conv1(x)))


BLOCKS: dict[str, type[nn.Module]] = {"naf": NAFBlock, "conv": ConvBlock}


class DetailPath(nn.Module):
    """Unsharp masks whose amounts the network chooses, per frame and place by place.

    Folding each 4x4 patch into a few channels is what makes the student cheap, and what keeps
    the fine detail a soft frame needs from reaching its output: a fixed unsharp mask, which
    sees every pixel, beat it on optical blur by 1-2 dB. Here the luma of the folded frame is
    high-passed by 3x3 convolutions (full-resolution reach of 4 pixels each side), one per band,
    and added to all three colours (a change of luma only, so no colour fringes), each band
    scaled by a gain: one term per frame from the middle's features averaged over the frame
    (what kind of softness this is: blur, an upscale or a codec's blocks want different
    amounts), one per place from the last features. The gains start at zero, so a student given
    this path computes what it did. The high-passes start as unsharp masks' (``SIGMAS``);
    training may reshape one band, and leaves two as they are (see ``__init__``).

    Why two bands: one band with the best amount per kind of softness is an unsharp mask, and
    masks of one width cannot undo blurs of different widths. Two bands weighed per frame are a
    family of sharpening filters of different widths: on set 4, per-recipe least-squares
    weights of the two bands below (cut at 4 px) gain +2.53 / +5.73 / +3.60 / +0.24 dB over the
    soft input, against +2.35 / +4.00 / +2.80 / +0.24 for one band of sigma 1.5.
    """

    SIGMAS = {1: (1.5,), 2: (1.5, 2.5)}  # px at full resolution: 1.5 did best over set 4's optical kinds
    # The last features are small (mean |x| about 0.1), so a gain of the 1-2 an unsharp mask
    # uses needs weights near 1: from zero, AdamW at 3e-4 took 500 steps to move the gain 0.002.
    # Scaled by 10, the same steps move it ten times as far.
    GAIN_SCALE = 10.0
    ENERGY_FLOOR = 1e-4  # a flat frame's band energies are this, not log(0)
    # Softened video frames: slope (log narrow - log wide energy) and log wide-band energy.
    ENERGY_CENTRE, ENERGY_SPREAD = (-0.5, -4.3), (0.05, 0.5)

    def __init__(self, r: int, features: int, context: int, bands: int = 1):
        super().__init__()
        self.bands = bands
        # Beyond the frame the luma continues as its edge block: zeros there would read as a
        # cliff, and the path would draw a bright or dark line along every edge of the frame.
        self.highpass = nn.Conv2d(r * r, bands * r * r, 3, padding=1, bias=False, padding_mode="replicate")
        self.gain = nn.Conv2d(features, bands, 1)
        # Per frame: each band's gain, and with two bands one more output, the body's gate.
        self.frame_gain = nn.Conv2d(context, bands + (bands > 1), 1, bias=False)
        # With bands of two widths the frame's own blur width is measurable: how the detail's
        # energy falls from the wide band to the narrow one (the log of each band's mean |detail|,
        # whose differences do not depend on the picture's contrast) tells a sigma-1 blur from a
        # sigma-2 one, which the middle's features, averaged at 1/32 of the resolution, blur over.
        # The slope is small and differs little between kinds (about -0.44 for footage upscaled
        # from half its size, -0.55 for a Gaussian of sigma 1.6, each within +-0.02 over frames),
        # and the right amount is far from linear in it (0.5 to 13 for the narrow band): so the
        # statistics are shifted and scaled to units of about their spread over kinds
        # (``ENERGY_CENTRE``, ``ENERGY_SPREAD``; set 4's four kinds then lie at -1.4 to -1.8, sharp
        # frames near -0.8) and read by a small perceptron, whose last layer starts at zero.
        self.energy_gain = nn.Sequential(nn.Conv2d(2, 16, 1), nn.ReLU(), nn.Conv2d(16, bands + 1, 1)) if bands > 1 else None
        with torch.no_grad():  # of the sum of the colours: / 3 makes it of their mean
            self.highpass.weight.copy_(torch.cat([_folded_highpass(s, r) for s in self.SIGMAS[bands]]) / 3)
        # Two bands stay the masks they start as: the energy slope is read against fixed scales,
        # and trained bands drifted until it no longer told the kinds apart (+2.67 to +2.72 in
        # units of ENERGY_SPREAD over set 4's four kinds after 1,000 steps, from -1.36 to -1.82).
        self.highpass.weight.requires_grad_(bands == 1)
        for conv in (self.gain, self.frame_gain, self.energy_gain[-1] if self.energy_gain else None):
            if conv is not None:
                nn.init.zeros_(conv.weight)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)

    def forward(self, folded: torch.Tensor, features: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """The gained luma detail, (N, r², H', W'), from the folded frame, the last features and
        the middle's features averaged over the frame, (N, C, 1, 1); with two bands the factor
        for the body's residual, (N, 1, 1, 1), else None; and each band's gain, (N, bands, H', W'),
        which training may teach directly (``train.losses.band_gain_loss``).

        The body's gate: on soft footage the body's correction has the wrong shape. Least
        squares per kind of softness on set 4 weigh it 0.05-0.14 beside the two bands (on a
        trained student's outputs: train/README.md, "Capacity and shape"), so the network must be
        able to turn it down frame by frame, and keep it for motion blur, where the body does the
        work. It starts at 1."""
        frame = self.frame_gain(context)  # (N, bands (+ 1), 1, 1)
        detail = self.band_detail(folded)  # (N, bands, r², H', W')
        if self.bands == 1:
            gain = self.GAIN_SCALE * (self.gain(features) + frame)
            return detail[:, 0] * gain, None, gain
        # Measured on every fourth patch across and down (a 16 px grid): a frame's statistic needs
        # no more, and at 720p the full mean cost as much as a band.
        energy = torch.log(detail[..., ::4, ::4].abs().mean((2, 3, 4)) + self.ENERGY_FLOOR)  # (N, bands)
        stats = torch.stack([energy[:, 0] - energy[:, 1], energy[:, 1]], 1)  # the slope, and the wide band's level
        stats = (stats - stats.new_tensor(self.ENERGY_CENTRE)) / stats.new_tensor(self.ENERGY_SPREAD)
        frame = self.GAIN_SCALE * (frame + self.energy_gain(stats[:, :, None, None]))
        gain = self.GAIN_SCALE * self.gain(features) + frame[:, : self.bands]
        return (detail * gain[:, :, None]).sum(1), 1 + frame[:, self.bands :], gain

    def band_detail(self, folded: torch.Tensor) -> torch.Tensor:
        """Each band's luma detail of a folded frame before its gain, (N, bands, r², H', W')."""
        return self.highpass(folded.unflatten(1, (3, -1)).sum(1)).unflatten(1, (self.bands, -1))

    def with_bands(self, bands: int) -> "DetailPath":
        """A copy with ``bands`` bands: these bands as they are, the new ones at zero gain."""
        if bands < self.bands:
            raise ModelError(f"a detail path of {self.bands} bands cannot become one of {bands}")
        r = math.isqrt(self.highpass.in_channels)
        path = DetailPath(r, self.gain.in_channels, self.frame_gain.in_channels, bands).to(self.highpass.weight)
        with torch.no_grad():
            for name in ("highpass", "gain", "frame_gain"):  # energy_gain: new with the second band
                new, old = getattr(path, name), getattr(self, name)
                new.weight[: old.weight.shape[0], : old.weight.shape[1]] = old.weight
                if old.bias is not None:
                    new.bias[: old.bias.shape[0]] = old.bias
        return path


def _folded_highpass(sigma: float, r: int) -> torch.Tensor:
    """(r², r², 3, 3): identity minus a Gaussian of ``sigma`` (full-resolution pixels, cut at r
    pixels to each side), as a 3x3 convolution over folded positions: the same full-resolution
    filter at every pixel of a patch, so no pattern repeats with the folding."""
    weight = torch.zeros(r * r, r * r, 3, 3)
    for i in range(r):  # output pixel's row in its patch
        for j in range(r):
            # the Gaussian within reach of this output pixel, normalised over that reach
            rows = torch.arange(3 * r) - r - i  # offset of each input row the kernel sees
            cols = torch.arange(3 * r) - r - j
            kernel = torch.exp(-(rows.float()[:, None] ** 2 + cols.float()[None] ** 2) / (2 * sigma**2))
            # cut to the reach every pixel of the patch has, so each applies the same filter
            kernel *= (rows.abs() <= r)[:, None] & (cols.abs() <= r)[None]
            kernel = -kernel / kernel.sum()
            kernel[r + i, r + j] += 1
            # input pixel (a, b) of the 3r x 3r window is folded position (a // r, b // r), channel (a % r) r + b % r
            weight[i * r + j] = kernel.reshape(3, r, 3, r).permute(1, 3, 0, 2).reshape(r * r, 3, 3)
    return weight


class Student(nn.Module):
    """U-Net deblurring student.

    Args:
        cfg: the architecture; see ``VARIANTS``.

    Shape:
        (N, 3, H, W) float RGB in [0, 1] -> (N, 3, H, W), any H and W.

    >>> net = Student(VARIANTS["tiny"]).eval()
    >>> net(torch.rand(1, 3, 37, 50)).shape
    torch.Size([1, 3, 37, 50])
    """

    def __init__(self, cfg: StudentConfig = StudentConfig()):
        super().__init__()
        self.cfg = cfg
        folded = 3 * cfg.unshuffle**2
        widths = [cfg.first_width or cfg.width] + [cfg.width * 2**i for i in range(1, len(cfg.enc_blocks) + 1)]
        block = BLOCKS[cfg.block]
        self.intro = nn.Conv2d(folded, widths[0], cfg.edge_kernel, padding=cfg.edge_kernel // 2)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        for level, n in enumerate(cfg.enc_blocks):
            self.encoders.append(nn.Sequential(*[block(widths[level]) for _ in range(n)]))
            self.downs.append(nn.Conv2d(widths[level], widths[level + 1], 2, stride=2))
        self.middle = nn.Sequential(*[block(widths[-1]) for _ in range(cfg.middle_blocks)])
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for i, n in enumerate(cfg.dec_blocks):  # the coarsest decoder first
            level = len(cfg.dec_blocks) - 1 - i
            self.ups.append(nn.Sequential(nn.Conv2d(widths[level + 1], 4 * widths[level], 1, bias=False), nn.PixelShuffle(2)))
            self.decoders.append(nn.Sequential(*[block(widths[level]) for _ in range(n)]))
        c = widths[0]
        self.ending = nn.Conv2d(c, folded, cfg.edge_kernel, padding=cfg.edge_kernel // 2)
        # Start as the identity (residual = 0): training begins from "leave the frame alone"
        # rather than from noise, and an untrained student cannot damage a picture.
        nn.init.zeros_(self.ending.weight)
        nn.init.zeros_(self.ending.bias)
        self.detail = DetailPath(cfg.unshuffle, c, cfg.width * 2 ** len(cfg.enc_blocks), cfg.detail) if cfg.detail else None

    def with_detail(self, bands: int = 1) -> "Student":
        """A copy with a ``DetailPath`` of ``bands`` bands and these weights (a path it has keeps
        its bands): the same function until training moves the new gains off zero."""
        if bands <= self.cfg.detail:
            raise ModelError(f"the student already has a detail path of {self.cfg.detail} band(s)")
        net = Student(dataclasses.replace(self.cfg, detail=bands)).to(self.ending.weight)
        if self.detail is None:
            missing, unexpected = net.load_state_dict(self.state_dict(), strict=False)
            assert not unexpected and all(k.startswith("detail.") for k in missing), (missing, unexpected)
        else:
            body = {k: v for k, v in self.state_dict().items() if not k.startswith("detail.")}
            net.load_state_dict(body, strict=False)
            net.detail = self.detail.with_bands(bands)
        return net

    def grown(self, cfg: StudentConfig) -> "Student":
        """A copy with ``cfg``'s block counts (at least these, level by level), first and last
        convolutions (at least this wide), first level (as wide or twice as wide) and these
        weights, computing what this student does until training moves them:

        - each stage keeps its blocks first, and the new ones after them start as the identity
          (a fresh NAFBlock's scales are zero);
        - a wider end convolution holds the old kernel at its centre and zeros around it;
        - a first level twice as wide holds every channel twice (Net2Net's widening), which the
          channel LayerNorms leave unchanged; where two copies meet a convolution, its weight is
          split between them at random (seeded, so the same call gives the same copy) rather than
          halved, so that training drives the copies apart instead of keeping them equal.

        The levels below must be as wide, and as many; a detail path comes along as it is. This is
        how a bigger student starts from a trained small one instead of from scratch."""
        first = self.cfg.first_width or self.cfg.width
        wider = (cfg.first_width or cfg.width) // first
        same = dataclasses.replace(cfg, enc_blocks=self.cfg.enc_blocks, middle_blocks=self.cfg.middle_blocks, dec_blocks=self.cfg.dec_blocks,
                                   edge_kernel=self.cfg.edge_kernel, detail=self.cfg.detail, zero_mean=self.cfg.zero_mean, first_width=self.cfg.first_width)
        counts = zip((*cfg.enc_blocks, cfg.middle_blocks, *cfg.dec_blocks, cfg.edge_kernel),
                     (*self.cfg.enc_blocks, self.cfg.middle_blocks, *self.cfg.dec_blocks, self.cfg.edge_kernel))
        broken = [rule for rule, kept in [
            ("the same levels and widths below the first", same == self.cfg and len(cfg.enc_blocks) == len(self.cfg.enc_blocks)),
            ("of NAFBlocks, which start as the identity", self.cfg.block == "naf"),
            ("at least its blocks at every level", all(new >= old for new, old in counts)),
            ("end convolutions as wide or 2, 4, ... wider", (cfg.edge_kernel - self.cfg.edge_kernel) % 2 == 0),
            ("a first level as wide or twice as wide", (cfg.first_width or cfg.width) == wider * first and wider in (1, 2)),
        ] if not kept]
        if broken:
            raise ModelError("a student grows only into one of the same levels and widths below the first, with at least its blocks at every level, "
                             "end convolutions as wide or 2, 4, ... wider and a first level as wide or twice as wide, of NAFBlocks (which start as the "
                             f"identity): {self.cfg} cannot become {cfg} (not {'; not '.join(broken)})")
        deeper = dataclasses.replace(cfg, detail=self.cfg.detail, zero_mean=self.cfg.zero_mean, first_width=self.cfg.first_width)
        net = Student(deeper).to(self.ending.weight)
        with torch.no_grad():
            grown = net.state_dict()
            for name, tensor in self.state_dict().items():  # block i of a stage keeps its name
                if name in ("intro.weight", "ending.weight"):
                    grown[name].zero_()
                    k, pad = tensor.shape[-1], (grown[name].shape[-1] - tensor.shape[-1]) // 2
                    grown[name][..., pad : pad + k, pad : pad + k] = tensor
                else:
                    grown[name].copy_(tensor)
        return net if wider == 1 else net._first_level_doubled()

    def _first_level_doubled(self, seed: int = 0) -> "Student":
        """``grown``'s widening: the same function with every first-level channel held twice."""
        c, last = self.cfg.first_width or self.cfg.width, len(self.cfg.dec_blocks) - 1
        net = Student(dataclasses.replace(self.cfg, first_width=2 * c)).to(self.ending.weight)
        twice = torch.arange(2 * c) % c  # channel i of the wide level is channel i mod c
        gates = torch.cat([twice, twice + c])  # a gate's two halves (NAFBlock's chunk), each held twice
        shuffled = (torch.arange(8 * c) // 4 % c) * 4 + torch.arange(8 * c) % 4  # before PixelShuffle(2)
        generator = torch.Generator().manual_seed(seed)

        def split(w: torch.Tensor) -> torch.Tensor:
            """Weights reading a held-twice input: shares r and 1 - r of the old weight."""
            r = torch.rand(w.shape[0], c, *w.shape[2:], generator=generator, dtype=w.dtype).to(w) * 0.5 + 0.25
            return w[:, twice] * torch.cat([r, 1 - r], 1)

        # (rows: which old channel each output channel repeats, reads a held-twice input)
        block = {"norm1": (twice, False), "norm2": (twice, False), "pw1": (gates, True), "ffn1": (gates, True), "dw": (gates, False),
                 "sca": (twice, True), "pw2": (twice, True), "ffn2": (twice, True), "beta": (twice, False), "gamma": (twice, False)}
        first = {"intro": (twice, False), "downs.0": (None, True), f"ups.{last}.0": (shuffled, False), "ending": (None, True), "detail.gain": (None, True)}
        with torch.no_grad():
            wide = net.state_dict()
            for name, tensor in self.state_dict().items():
                parts = name.split(".")
                if name.startswith(("encoders.0.", f"decoders.{last}.")):  # stage.index.block.part[.kind]
                    rows, reads = block[parts[3]]
                else:
                    rows, reads = first.get(".".join(parts[:-1]), (None, False))
                t = split(tensor) if reads and parts[-1] == "weight" else tensor
                if rows is not None:
                    t = t[:, rows] if parts[-1] in ("beta", "gamma") else t[rows]  # the scales are (1, C, 1, 1)
                wide[name].copy_(t)
        return net

    def fused(self) -> "Student":
        """A copy for inference and export whose NAFBlocks compute the same in fewer
        operations (``FusedNAFBlock``); a student of ConvBlocks is copied as it is. Train the
        original: the copy's parameters are no longer a checkpoint's."""
        net = copy.deepcopy(self).eval()
        if self.cfg.block == "naf":
            for stage in (*net.encoders, net.middle, *net.decoders):
                for i, block in enumerate(stage):
                    stage[i] = FusedNAFBlock(block)
        return net

    def fold(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) of any dtype -> (N, C * unshuffle², H', W'): padded to ``multiple``, then
        each unshuffle x unshuffle patch folded into channels (channel-major, as PixelUnshuffle)."""
        if torch.onnx.is_in_onnx_export():
            # An exported graph has symbolic sides: always pad (by zero where it divides), and
            # always reflect; exported graphs need sides of at least ``multiple`` pixels.
            h, w = frames.shape[-2:]
            m = self.cfg.multiple
            x = F.pad(frames, (0, -w % m, 0, -h % m), mode="reflect")
        else:
            x = pad_to_multiple(frames, self.cfg.multiple)
        return F.pixel_unshuffle(x, self.cfg.unshuffle)

    def folded_frame(self, h, w, device: torch.device) -> torch.Tensor | None:
        """Where ``fold`` of an ``h`` x ``w`` frame holds the frame's own pixels, not padding: 1 or
        0, (1, 1, unshuffle², H', W'), for the zero-mean residual. None where it is not needed: no
        zero mean, or nothing padded (eager mode only; a graph cannot know). Built from a row and
        a column vector, so a graph holds no full-size mask."""
        m, r = self.cfg.multiple, self.cfg.unshuffle
        if not self.cfg.zero_mean or (not torch.onnx.is_in_onnx_export() and not (h % m or w % m)):
            return None
        offset = torch.arange(r, device=device)[:, None]  # the pixel's place in its patch
        rows = torch.arange((h + -h % m) // r, device=device) * r + offset < h  # (r, H')
        cols = torch.arange((w + -w % m) // r, device=device) * r + offset < w  # (r, W')
        valid = rows[:, None, :, None] & cols[None, :, None, :]  # (r, r, H', W'): channel i * r + j
        return valid.flatten(0, 1)[None, None].float()

    def folded_residual(self, x: torch.Tensor, frame: torch.Tensor | None = None, with_gains: bool = False):
        """The residual of a folded frame (``fold``, float in [0, 1]), still folded; ``frame``
        is ``folded_frame``, which the zero-mean residual needs to average the frame alone.
        ``with_gains`` also returns the detail path's band gains per frame and its gate on the
        body (``DetailPath.forward``; None for what the student has not).

        Working folded to the end lets an exported uint8 graph add the residual, round and
        unfold without a full-resolution float frame, which under OpenVINO int8 is markedly
        faster than unfolding first (the timings: ``git log -S "def folded_residual"``).
        """
        frame_input, x = x, self.intro(x)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        context = x.mean((2, 3), keepdim=True) if self.detail is not None else None
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        features, x = x, self.ending(x)
        gains = body = None
        if not (self.cfg.zero_mean or self.detail is not None):
            return (x, (gains, body)) if with_gains else x
        # A colour's unshuffle² channels are its pixels: the luma detail is added to each
        # colour's, and the mean is taken folded.
        per_colour = x.unflatten(1, (3, -1))  # (N, 3, unshuffle², H', W')
        if self.detail is not None:
            detail, body, gains = self.detail(frame_input, features, context)
            per_colour = (per_colour if body is None else per_colour * body[:, None]) + detail[:, None]
        if self.cfg.zero_mean:
            if frame is None:
                mean = per_colour.mean((2, 3, 4), keepdim=True)
            else:
                mean = (per_colour * frame).sum((2, 3, 4), keepdim=True) / frame.sum()
            per_colour = per_colour - mean
        x = per_colour.flatten(1, 2)
        if not with_gains:
            return x
        return x, (None if gains is None else gains.mean((2, 3)), body)  # only training averages the gains

    def forward(self, inp, with_gains: bool = False):
        """The sharpened frames; ``with_gains`` (training) also the detail path's band gains per
        frame, (N, bands), and its gate on the body, (N, 1, 1, 1), each None where there is none."""
        h, w = inp.shape[-2:]
        folded = self.folded_residual(self.fold(inp), self.folded_frame(h, w, inp.device), with_gains=with_gains)
        folded, terms = folded if with_gains else (folded, None)
        out = inp + F.pixel_shuffle(folded, self.cfg.unshuffle)[..., :h, :w]
        return (out, terms) if with_gains else out


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (..., H, W) bottom and right so both sides divide by ``multiple``: reflect, or
    replicate where the frame is too small to reflect (the pad must be smaller than the side).
    Unchanged (the same tensor) when they already divide. Crop back with ``[..., :H, :W]``.

    >>> pad_to_multiple(torch.zeros(1, 3, 5, 8), 4).shape
    torch.Size([1, 3, 8, 8])
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


def count_macs(model: nn.Module, height: int = 1000, width: int = 1000) -> int:
    """Multiply-accumulates of one forward pass at ``height`` x ``width`` (convolutions only)."""
    total = 0

    def hook(module, _inp, out):
        nonlocal total
        k = module.weight[0].numel()  # (in/groups) * kh * kw
        total += out.numel() * k

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width))
    finally:
        for h in hooks:
            h.remove()
    return total


def save_student(model: Student, path: str | Path, **extra) -> None:
    """Write a self-describing checkpoint atomically (temp file + rename)."""
    with atomic_output(path) as tmp:  # a kill mid-write leaves the previous checkpoint intact
        torch.save({"model": model.state_dict(), "model_args": model.cfg.args(), **extra}, tmp)


def _unreadable(path: Path, e: Exception) -> str:
    """One line for a checkpoint torch would not read, without torch's advice to load unsafely.

    torch's refusal of a pickled object is a paragraph that suggests ``weights_only=False``;
    a user needs only what the file holds and what to do.
    """
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
    if found:
        return (f"{path}: not a readable livesharp checkpoint: it refers to Python code ({found.group(1)}) that "
                f"loading would have to run, and livesharp never runs code from a checkpoint; save the weights as tensors (livesharp.model.save_student)")
    # torch's paragraph about unsafe loading, or what its reader stumbles on in a file it did
    # not write (a text file given as --model: "KeyError: 105")
    if "Weights only load failed" in str(e) or isinstance(e, (KeyError, EOFError, pickle.UnpicklingError)):
        return f"{path}: not a readable livesharp checkpoint (not a file torch.save wrote, or damaged)"
    text = " ".join(str(e).split())
    if len(text) > 160:  # cut at a word, and say so
        text = text[:160].rsplit(" ", 1)[0] + " ..."
    return f"{path}: not a readable livesharp checkpoint ({type(e).__name__}: {text})"


def load_student(name_or_path: str | Path, map_location="cpu") -> Student:
    """A student from a checkpoint, or by name: the *shipped* weights of that variant.

    A name means the same here as to ``--model`` and ``Sharpener``, so ``train.distill --init
    tiny`` fine-tunes the shipped model; fresh weights are ``Student(VARIANTS[name])``.
    Checkpoints are read with ``weights_only=True``: loading never runs code from the file.
    """
    if isinstance(name_or_path, str) and name_or_path in VARIANTS:
        from .settings import shipped_weights

        path = shipped_weights(name_or_path)
        if not path.is_file():
            raise ModelError(f"no trained weights for model {name_or_path!r} are installed (looked for {path}); "
                             f"fresh weights of that architecture are --variant {name_or_path} in train.distill")
        return load_student(path, map_location)
    path = Path(name_or_path)
    if not path.is_file():
        raise ModelError(f"model {str(name_or_path)!r} is neither a file nor one of {', '.join(VARIANTS)}, unsharp")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a bad file; all mean the same to a user
        raise ModelError(_unreadable(path, e)) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise ModelError(f"{path}: not a livesharp checkpoint (expected the keys 'model' and 'model_args')")
    args = dict(ckpt["model_args"])
    for key in ("enc_blocks", "dec_blocks"):
        if key in args:
            args[key] = tuple(args[key])
    try:
        model = Student(StudentConfig(**args))
        model.load_state_dict(ckpt["model"], strict=True)
    except (TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: checkpoint does not match its model_args ({str(e).splitlines()[0][:160]})") from None
    return model


__all__ = ["Student", "StudentConfig", "VARIANTS", "ModelError", "load_student", "save_student", "count_macs"]

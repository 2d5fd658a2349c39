"""A per-frame sharpening stage on a student's output, fit in closed form: what softness needs.

The student's correction has the wrong shape on soft footage (train/README.md, leg 5: a fixed
linear filter per kind of softness beats it on every kind), and the detail path meant to supply
that shape did not learn its gains by gradient descent (leg 5: they stayed at 0.03-0.5 where the
fits want 0.5-13). Here the same idea is fit directly. Per frame::

    out = x + c0 (r - Fr) + c1 Fr + c2 D0.7 + c3 D1.5 + c4 D2.5,   r = student(x) - x

with ``Ds`` the luma's detail under a Gaussian of sigma ``s`` (``luma - G_s * luma``, added to
every colour) and ``Fr`` the student's correction's own detail under sigma 1.5 (its fine part,
which costs on set 1 where the coarse part gains, leg 7, and sharpens codecs' blocks). The coefficients are a quadratic function of eight numbers measured on the frame
(``frame_stats``: how its detail falls off from fine to coarse bands, a codec's 8 px grid, how
much one direction dominates), and that function is the least-squares fit over the training
samples, each frame weighted by its own detail energy. It is one linear solve, so a fit takes as
long as running the student over the samples (minutes), and it cannot drift as the detail
path's trained gains did.

    python -m train.detail_fit --model tiny --count 2600 --crop 320 --curriculum 320 \\
      --soft $CLIP $STILLS --motion $STILLS --soft-fraction 0.7 --soft-upscaled 0.5 \\
      --soft-sharp-fraction 0.3 --linear-fraction 0.15 --val-real $S/gopro_real_pairs_val \\
      --val-sharp $S/gopro_test_sharp_frames --val-soft $S/gopro_test_sharp_frames --out runs/detail/fit.pt

Takes ``train.distill``'s data options (its samples are the campaign's own), fits, and prints
sets 1, 3 and 4 for the student alone and with the stage (leg 13). ``--out`` keeps the fit
(tensors only, with the command that made it) for a later student to build in.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from livesharp.files import atomic_output
from livesharp.model import ModelError, load_student
from train.data import DataError
from train.distill import build_data, parse_config, refuse_existing_out
from train.evaluate import SETS, evaluate, format_table, open_sets, soft_report, unsharp_grid

BANDS = (0.7, 1.5, 2.5)  # px: the correction's detail bands (two of them alone: set 4 +0.3 dB less)
STAT_SIGMAS = (0.5, 0.7, 1.0, 1.5, 2.5, 4.0)  # px: the bands whose energies describe the frame
SPLIT = 1.5  # px: the student's correction in two parts, coarser and finer than a Gaussian of this sigma
EDGE = 8  # px of border left out of the statistics: the blurs' padding is not the picture


def gaussian(luma: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 1, H, W) luma under a Gaussian of ``sigma`` px, separable, edges mirrored."""
    radius = int(4 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=luma.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    out = F.conv2d(F.pad(luma, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))


def detail(luma: torch.Tensor, sigma: float) -> torch.Tensor:
    return luma - gaussian(luma, sigma)


def frame_stats(x: torch.Tensor) -> torch.Tensor:
    """(N, 8) numbers that tell kinds of softness apart, for frames (N, 3, H, W) in [0, 1].

    Five slopes between the log energies (mean |detail|) of neighbouring bands of
    ``STAT_SIGMAS`` and the widest band's level (a Gaussian blur, a disc, an upscale and a
    sharp frame each fall off their own way); the log ratio of the luma steps on a codec's 8 px
    grid to those elsewhere (JPEG and H.264 blocks); and the log ratio of the gradient's two
    principal energies (motion blur smears one direction, lens blur none).
    """
    luma = x.mean(1, keepdim=True)
    inner = (..., slice(EDGE, -EDGE), slice(EDGE, -EDGE))
    energy = torch.stack([torch.log(detail(luma, s)[inner].abs().mean((1, 2, 3)) + 1e-4) for s in STAT_SIGMAS], 1)
    dx, dy = (luma[..., :, 1:] - luma[..., :, :-1]).abs(), (luma[..., 1:, :] - luma[..., :-1, :]).abs()
    grid = 0.5 * (dx[..., :, 7::8].mean((1, 2, 3)) / (dx.mean((1, 2, 3)) + 1e-6) + dy[..., 7::8, :].mean((1, 2, 3)) / (dy.mean((1, 2, 3)) + 1e-6))
    smooth = gaussian(luma, 1.0)
    gx, gy = smooth[..., :, 2:] - smooth[..., :, :-2], smooth[..., 2:, :] - smooth[..., :-2, :]
    gx, gy = gx[..., 1:-1, :], gy[..., :, 1:-1]
    xx, yy, xy = (gx * gx).mean((1, 2, 3)), (gy * gy).mean((1, 2, 3)), (gx * gy).mean((1, 2, 3))
    half, root = (xx + yy) / 2, torch.sqrt(((xx - yy) / 2) ** 2 + xy**2)
    aniso = torch.log((half + root + 1e-8) / (half - root + 1e-8))
    return torch.cat([energy[:, :-1] - energy[:, 1:], energy[:, -1:], torch.log(grid)[:, None], aniso[:, None]], 1)


def terms(x: torch.Tensor, y_student: torch.Tensor) -> torch.Tensor:
    """(N, 2 + len(BANDS), 3, H, W): the student's correction, coarse and fine, and each band's luma detail."""
    luma = x.mean(1, keepdim=True)
    bands = [detail(luma, s).expand_as(x) for s in BANDS]
    r = y_student - x
    fine = detail(r.flatten(0, 1)[:, None], SPLIT).view_as(r)
    return torch.stack([r - fine, fine, *bands], 1)


def features(stats: torch.Tensor, mean: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """(N, P) a constant, the standardised statistics and their pairwise products."""
    z = (stats - mean) / spread
    i, j = torch.triu_indices(z.shape[1], z.shape[1])
    return torch.cat([torch.ones_like(z[:, :1]), z, z[:, i] * z[:, j]], 1)


def apply(fit: dict, x: torch.Tensor, y_student: torch.Tensor) -> torch.Tensor:
    """The stage: frames (N, 3, H, W) and the student's output on them -> the sharpened frames."""
    x64, y64 = x.double(), y_student.double()
    coef = features(frame_stats(x64), fit["mean"], fit["spread"]) @ fit["weights"]  # (N, 2 + bands)
    return (x64 + (coef[:, :, None, None, None] * terms(x64, y64)).sum(1)).float()


def sufficient(x: torch.Tensor, y_student: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """One frame's least-squares summary: A A^T and A b for A = its terms, b = target - x."""
    a = terms(x.double(), y_student.double()).flatten(2)[0]  # (K, 3 H W)
    b = (target.double() - x.double()).flatten(1)[0]
    # copied: as NumPy views these products kept megabytes of the frame's tensors alive per
    # sample, 24 GB by a few thousand samples
    return (a @ a.T).numpy().copy(), (a @ b).numpy().copy()


def fit(stats: np.ndarray, grams: np.ndarray, rhs: np.ndarray, ridge: float = 1e-3) -> dict:
    """The quadratic map from statistics to coefficients minimising sum_f |x + A_f^T c_f - y|^2 / tr(A_f A_f^T).

    Weighted by each frame's detail energy, so frames count alike whatever their content; a
    ridge of ``ridge`` times the mean diagonal keeps rarely seen corners of the statistics tame.
    """
    s = torch.from_numpy(stats)
    mean, spread = s.mean(0), s.std(0) + 1e-9
    phi = features(s, mean, spread).numpy()
    w = 1 / np.trace(grams, axis1=1, axis2=2)
    p, k = phi.shape[1], grams.shape[1]
    # sum_f w_f (phi_f phi_f^T) kron G_f, as one matrix product over frames: a plain einsum of the
    # four operands builds the (frames, p, p, k, k) product first, gigabytes at a few thousand frames
    pairs = (w[:, None, None] * phi[:, :, None] * phi[:, None, :]).reshape(len(w), p * p)
    m = (pairs.T @ grams.reshape(len(w), k * k)).reshape(p, p, k, k).transpose(0, 2, 1, 3).reshape(p * k, p * k)
    v = ((w[:, None] * phi).T @ rhs).reshape(p * k)
    m += ridge * np.trace(m) / len(m) * np.eye(len(m))
    weights = np.linalg.solve(m, v).reshape(p, k)
    return {"weights": torch.from_numpy(weights), "mean": mean, "spread": spread, "bands": torch.tensor(BANDS), "split": torch.tensor(SPLIT),
            "stat_sigmas": torch.tensor(STAT_SIGMAS)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.detail_fit", description=__doc__.split("\n\n")[0],
                                epilog="Every other option is train.distill's (its data and --val-* sets).")
    p.add_argument("--model", default="tiny", help="the student under the stage: a name or a checkpoint (default tiny)")
    p.add_argument("--count", type=int, default=2600, help="training samples to fit on (default %(default)s)")
    p.add_argument("--ridge", type=float, default=1e-3, help="ridge, relative to the mean diagonal (default %(default)s)")
    p.add_argument("--out", default=None, help="also keep the fit here (a .pt of tensors; refused if the file exists)")
    own, rest = p.parse_known_args(argv)
    refuse_existing_out(p, own.out)
    cfg = parse_config(rest)
    try:
        net = load_student(own.model).eval()
    except ModelError as e:
        p.error(f"--model: {e}")
    try:
        train_set, _ = build_data(cfg, samples=own.count)
        sets = open_sets(cfg.val_real or None, None, cfg.val_sharp, soft=cfg.val_soft)
    except DataError as e:
        p.error(str(e))
    stats, grams, rhs = [], [], []
    with torch.no_grad():
        for i in range(len(train_set)):
            sample = train_set[i]
            x, y = sample["blur"][:1], sample["sharp"][:1]
            out = net(x).clamp(0, 1)
            g, h = sufficient(x, out, y)
            stats.append(frame_stats(x.double())[0].numpy())
            grams.append(g)
            rhs.append(h)
            if (i + 1) % 256 == 0:
                print(f"{i + 1}/{len(train_set)} samples", file=sys.stderr)
    result = fit(np.array(stats), np.array(grams), np.array(rhs), own.ridge)
    if own.out:
        Path(own.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(own.out) as tmp:
            torch.save(result | {"command": shlex.join(["python", "-m", "train.detail_fit", *(argv if argv is not None else sys.argv[1:])]),
                                 "model": own.model}, tmp)
        print(f"wrote {own.out}")

    def student(x: torch.Tensor) -> torch.Tensor:
        return net(x).clamp(0, 1)

    def staged(x: torch.Tensor) -> torch.Tensor:
        return apply(result, x, net(x).clamp(0, 1))

    methods = {"input": lambda x: x, "student": student, "student + stage": staged}
    reports = {}
    with torch.no_grad():
        for key, data in sets.items():
            if key == "soft":
                rows, table = soft_report(evaluate(methods | unsharp_grid(), data, per_item=True, structure=False))
                reports[key] = rows
            else:
                reports[key] = evaluate(methods, data, gains=key != "sharp", structure=False)
                table = format_table(reports[key])
            print(f"{SETS[key]}\n{table}\n")
    return {"fit": result, "sets": reports}


if __name__ == "__main__":
    main()

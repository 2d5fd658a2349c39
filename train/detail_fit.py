"""Fit the detail stage (``livesharp.detail``) in closed form on a student's output: what softness needs.

The student's correction has the wrong shape on soft footage (a fixed linear filter per kind of
softness beats it on every kind: train/README.md, "Capacity and shape"), and the detail path meant
to supply that shape did not learn its gains by gradient descent (they stayed at 0.03-0.5 where
the fits want 0.5-13). Here the same idea is fit directly. Per frame::

    out = x + c0 (y - x) + c1 D0.7 + c2 D1.5 + c3 D2.5,   y = student(x)

with ``Ds`` the luma's detail in a band of sigma ``s`` px (added to every colour). The amounts are
a quadratic function of fourteen numbers measured on the frame (``livesharp.detail.frame_stats``),
and that function is the least-squares fit over the training samples, each frame weighted by its
own detail energy. It is one linear solve, so a fit takes as long as running the student over
the samples (minutes), and it cannot drift as the detail path's trained gains did. The fit and
the product compute the stage with the same functions, on the same uint8 frames.

    python -m train.detail_fit --model tiny --count 3900 --crop 320 --curriculum 320 \\
      --soft $CLIP $STILLS --motion $STILLS --highfps $CLIP --soft-fraction 0.667 --motion-fraction 0.333 \\
      --soft-upscaled 0.5 --soft-sharp-fraction 0.3 --linear-fraction 0.15 --val-real $S/gopro_real_pairs_val \\
      --val-sharp $S/gopro_test_sharp_frames --val-soft $S/gopro_test_sharp_frames --out runs/detail/tiny.detail.json

Takes ``train.distill``'s data options (its samples are the campaign's own), fits, and prints
sets 1, 3 and 4 for the student alone and with the stage (train/README.md, "The detail stage").
``--out`` keeps the stage as the JSON the product loads (numbers, the command that made it, the
student and its digest).

Drawing the samples and running the student on them is most of a fit's time. ``--keep DIR`` keeps
them (each frame, the student's output on it, its target: uint8 arrays, about 0.9 MB a 320 px
sample); ``--from DIR`` fits on them instead of drawing new ones, so a change to the statistics or
the ridge is tried in the time scoring takes (the shipped fit was chosen among fits compared
this way), and ``--from DIR DIR ...`` fits on the samples of several draws together.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from itertools import chain, islice
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from livesharp.detail import DetailStage, features, frame_stats, terms
from livesharp.export import model_digest
from livesharp.files import atomic_output
from livesharp.model import ModelError, load_student
from train.data import DataError
from train.distill import build_data, parse_config, refuse_existing_out
from train.evaluate import SETS, evaluate, format_table, from_uint8, open_sets, soft_report, staged_method, to_uint8, unsharp_grid

BANDS = (0.7, 1.5, 2.5)  # px: the detail bands (two of them alone: set 4 +0.3 dB less)
KEPT = ("x", "y", "target")  # --keep's arrays: each frame, the student's output on it, its target
COUNT = 3900  # samples a fit draws unless told: twice that gave +0.02 dB on set 4 (train/README.md, "The detail stage")
STAT_SIGMAS = (0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0)  # px: the bands whose energies describe the frame


def sufficient(x: np.ndarray, y: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame's least-squares summary, A A^T and A b for A = its ``terms`` (each band on every
    colour) and b = target - x; uint8 (H, W, 3) frames in, small float64 arrays out."""
    r, *bands = (t.astype(np.float64) for t in terms(x, y, BANDS))
    d = target.astype(np.float64) - x
    rows = [r.ravel(), *[b.ravel() for b in bands]]
    k = len(rows)
    gram, rhs = np.empty((k, k)), np.empty(k)
    sum_r, sum_d = r.sum(2).ravel(), d.sum(2).ravel()  # a band meets each colour alike
    for i in range(k):
        rhs[i] = rows[0] @ d.ravel() if i == 0 else rows[i] @ sum_d
        for j in range(i, k):
            gram[i, j] = gram[j, i] = (rows[0] @ rows[0] if j == 0 else rows[j] @ sum_r) if i == 0 else 3 * rows[i] @ rows[j]
    return gram, rhs


def fit(stats: np.ndarray, grams: np.ndarray, rhs: np.ndarray, ridge: float = 3e-5) -> DetailStage:
    """The quadratic map from statistics to coefficients minimising sum_f |x + A_f^T c_f - y|^2 / tr(A_f A_f^T).

    Weighted by each frame's detail energy, so frames count alike whatever their content; a
    ridge of ``ridge`` times the mean diagonal keeps rarely seen corners of the statistics tame.
    """
    mean, spread = stats.mean(0), stats.std(0, ddof=1) + 1e-9
    phi = features(stats, mean, spread)
    w = 1 / np.trace(grams, axis1=1, axis2=2)
    p, k = phi.shape[1], grams.shape[1]
    # sum_f w_f (phi_f phi_f^T) kron G_f, as one matrix product over frames: a plain einsum of the
    # four operands builds the (frames, p, p, k, k) product first, gigabytes at a few thousand frames
    pairs = (w[:, None, None] * phi[:, :, None] * phi[:, None, :]).reshape(len(w), p * p)
    m = (pairs.T @ grams.reshape(len(w), k * k)).reshape(p, p, k, k).transpose(0, 2, 1, 3).reshape(p * k, p * k)
    v = ((w[:, None] * phi).T @ rhs).reshape(p * k)
    m += ridge * np.trace(m) / len(m) * np.eye(len(m))
    return DetailStage(np.linalg.solve(m, v).reshape(p, k), mean, spread, BANDS, STAT_SIGMAS)


def drawn(train_set, net) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame, the student's output on it, target), uint8 (H, W, 3), for each training sample."""
    with torch.no_grad():
        for i in range(len(train_set)):
            sample = train_set[i]
            x, target = to_uint8(sample["blur"][0]), to_uint8(sample["sharp"][0])
            yield x, to_uint8(net(from_uint8(x)[None])[0]), target


def kept(folder: Path, digest: str) -> tuple[list[np.ndarray], dict]:
    """The arrays ``--keep`` wrote to ``folder`` (memory-mapped) and its description; refused
    (DataError) where there are none or they were run through other weights than ``digest``'s."""
    try:
        meta = json.loads((folder / "samples.json").read_text())
        arrays = [np.load(folder / f"{k}.npy", mmap_mode="r") for k in KEPT]
    except (OSError, ValueError):
        raise DataError(f"--from {folder}: no samples kept there (keep them with --keep {folder})") from None
    if meta.get("digest") != digest:
        raise DataError(f"--from {folder}: its samples went through other weights ({meta.get('model')}); use that --model, or keep new samples")
    return arrays, meta


class Keeper:
    """Writes the samples a fit reads into ``folder`` (``--keep``), published only when complete:
    they go to ``folder.partial`` and are renamed at ``close``."""

    def __init__(self, folder: Path, count: int, meta: dict):
        self.folder, self.count, self.meta = folder, count, meta
        self.tmp = folder.with_name(folder.name + ".partial")
        self.arrays: list[np.ndarray] = []
        self.n = 0

    def add(self, *frames: np.ndarray) -> None:
        if not self.arrays:
            shutil.rmtree(self.tmp, ignore_errors=True)  # what an interrupted run left
            self.tmp.mkdir(parents=True)
            self.arrays = [np.lib.format.open_memmap(self.tmp / f"{k}.npy", "w+", np.uint8, (self.count, *frames[0].shape)) for k in KEPT]
        if frames[0].shape != self.arrays[0].shape[1:]:
            raise DataError(f"--keep needs samples of one size; give --curriculum the --crop ({frames[0].shape[:2]} after {self.arrays[0].shape[1:3]})")
        for a, f in zip(self.arrays, frames):
            a[self.n] = f
        self.n += 1

    def close(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)  # no samples at all: an empty, described folder
        for a in self.arrays:
            a.flush()
        (self.tmp / "samples.json").write_text(json.dumps(self.meta | {"count": self.n}, indent=1))
        os.replace(self.tmp, self.folder)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.detail_fit", description=__doc__.split("\n\n")[0],
                                epilog="Every other option is train.distill's (its data and --val-* sets).")
    p.add_argument("--model", default="tiny", help="the student under the stage: a name or a checkpoint (default tiny)")
    p.add_argument("--count", type=int, default=None,
                   help=f"training samples to fit on (default: {COUNT} drawn, or with --from every kept one; with --from, a number takes the first that many)")
    p.add_argument("--ridge", type=float, default=3e-5, help="ridge, relative to the mean diagonal (default %(default)s)")
    p.add_argument("--out", default=None, help="also keep the stage here (the JSON the product loads; refused if the file exists)")
    p.add_argument("--keep", default=None, help="also keep the samples (frames, the student's output, targets) in this new folder, for --from")
    p.add_argument("--from", dest="source", nargs="+", default=None, metavar="DIR",
                   help="fit on the samples runs kept with --keep (through the same --model; several folders: all of their "
                        "samples together) instead of drawing new ones; the data options are then ignored, the --val-* sets are not")
    own, rest = p.parse_known_args(argv)
    refuse_existing_out(p, own.out)
    if own.count is not None and own.count < 1:
        p.error(f"--count {own.count}: give at least 1 sample")
    if own.keep and Path(own.keep).exists():
        p.error(f"--keep {own.keep} exists: give a new folder")
    if own.keep and own.source:
        p.error("--keep and --from: the samples are kept already")
    cfg = parse_config(rest, need_data=not own.source)  # kept samples need no data options
    try:
        net = load_student(own.model).eval()
    except ModelError as e:
        p.error(f"--model: {e}")
    digest = model_digest(net)
    command = shlex.join(["python", "-m", "train.detail_fit", *(argv if argv is not None else sys.argv[1:])])
    try:
        if own.source:
            folders = [kept(Path(f), digest) for f in own.source]
            have = sum(meta["count"] for _, meta in folders)
            count = have if own.count is None else own.count
            if count > have:
                raise DataError(f"--count {count}: only {have} samples are kept in {', '.join(own.source)}; give at most that, or keep more")
            samples = islice(chain.from_iterable(zip(*arrays) for arrays, _ in folders), count)
            meta = {"command": [m["command"] for _, m in folders] if len(folders) > 1 else folders[0][1]["command"]}
        else:
            train_set, _ = build_data(cfg, samples=own.count or COUNT)
            samples, count, meta = drawn(train_set, net), len(train_set), {}
        sets = open_sets(cfg.val_real or None, None, cfg.val_sharp, soft=cfg.val_soft)
        keeper = Keeper(Path(own.keep), count, {"command": command, "model": own.model, "digest": digest}) if own.keep else None
        stats, grams, rhs = [], [], []
        for i, (x, y, target) in enumerate(samples):
            x, y, target = (np.ascontiguousarray(a) for a in (x, y, target))
            if keeper:
                keeper.add(x, y, target)
            g, h = sufficient(x, y, target)
            stats.append(frame_stats(x, STAT_SIGMAS))
            grams.append(g)
            rhs.append(h)
            if (i + 1) % 256 == 0:
                print(f"{i + 1}/{count} samples", file=sys.stderr)
    except DataError as e:
        if own.keep:
            shutil.rmtree(Path(own.keep).with_name(Path(own.keep).name + ".partial"), ignore_errors=True)
        p.error(str(e))
    if keeper:
        keeper.close()
        print(f"kept the samples in {own.keep}")
    result = fit(np.array(stats), np.array(grams), np.array(rhs), own.ridge)
    if own.out:
        Path(own.out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(own.out) as tmp:
            made = {"samples_command": meta["command"]} if own.source else {}  # how the samples it read were drawn
            Path(tmp).write_text(result.to_json(command=command, model=own.model, digest=digest, **made))
        print(f"wrote {own.out}")

    def student(x: torch.Tensor) -> torch.Tensor:
        return net(x).clamp(0, 1)

    staged = staged_method(student, result)

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

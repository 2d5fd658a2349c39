"""How hard the training samples are, beside the real blur the model is judged on.

The blur strength of a pair is the input's PSNR against its target: a distribution of it per
kind of sample (motion renders, high-frame-rate averages, softness), with the sharp -> sharp
share apart, next to the same for ``--val-real`` pairs; and the blur lengths the motion samples
were drawn with. Takes ``train.distill``'s options, so a campaign's own command line describes
its samples (``MODULE=train.strength bash train/campaign.sh`` does that for the campaign)::

    python -m train.strength --count 2048 <train.distill options>
    python -m train.strength --count 256 --model tiny --model runs/x/best.pt <options>

With ``--model``, also each model's gain on the same samples, per kind: how well a network fits
the kind of sample it is taught, beside how well it does on set 1 (``train.evaluate``). A network
that gains little on its own training samples is not held back by unseen scenes.

Prints markdown tables for the model card; nothing is written.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

import numpy as np
import torch

from livesharp.model import ModelError, load_student
from train.distill import build_data, parse_config
from train.evaluate import PairFolder

EDGES = (20.0, 25.0, 28.0, 31.0, 34.0, 37.0, 40.0, 45.0)  # dB; 28-33 is the "light blur"


def strength_db(sample: dict) -> float:
    """PSNR of the input against its target over the whole clip, in dB (inf where identical)."""
    blur, sharp = sample["blur"].numpy().astype(np.float64), sample["sharp"].numpy().astype(np.float64)
    mse = float(np.mean((blur - sharp) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def output_db(model, sample: dict) -> float:
    """PSNR of the model's output against the target over the whole clip (``strength_db``)."""
    with torch.no_grad():
        out = model(sample["blur"].float()).clamp(0, 1)
    return strength_db({"blur": out, "sharp": sample["sharp"]})


def kind_of(source: str) -> str:
    return source.split(":", 1)[0]


def histogram(values: list[float]) -> list[float]:
    """Shares (of ``values``) per bin of ``EDGES``, below the first and above the last included."""
    finite = [v for v in values if np.isfinite(v)]
    bins = [-np.inf, *EDGES[1:-1], np.inf]
    counts = np.histogram(finite, bins=bins)[0] if finite else np.zeros(len(bins) - 1)
    return [c / max(1, len(values)) for c in counts]


def bin_names() -> list[str]:
    inner = [f"{a:g}-{b:g}" for a, b in zip(EDGES[1:-2], EDGES[2:-1])]
    return [f"< {EDGES[1]:g}", *inner, f">= {EDGES[-2]:g}"]


def table(rows: dict[str, list[float]]) -> str:
    """Rows of strengths -> markdown: share per bin, the sharp (identical) share, the median."""
    head = ["kind", "samples", *bin_names(), "sharp -> sharp", "median dB (not sharp)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, values in rows.items():
        blurred = [v for v in values if np.isfinite(v)]
        sharp = 1 - len(blurred) / max(1, len(values))
        cells = [name, str(len(values)), *(f"{s:.0%}" for s in histogram(values)), f"{sharp:.0%}",
                 f"{np.median(blurred):.1f}" if blurred else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.strength", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=2048, help="training samples to draw (default %(default)s)")
    p.add_argument("--model", action="append", default=[], help="also each model's gain on the blurred samples, per kind (repeatable: a name or a checkpoint)")
    own, rest = p.parse_known_args(argv)
    cfg = parse_config(rest)
    try:
        models = {name: load_student(name).eval() for name in own.model}
    except ModelError as e:
        p.error(f"--model: {e}")
    train_set, _ = build_data(cfg, samples=own.count)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(train_set), size=min(own.count, len(train_set)), replace=False)
    rows: dict[str, list[float]] = {}
    lengths: Counter = Counter()
    gains: dict[str, list[tuple[float, list[float]]]] = {}  # kind -> (input dB, each model's gain)
    for i, index in enumerate(sorted(picks)):
        sample = train_set[int(index)]
        kind, db = kind_of(sample["source"]), strength_db(sample)
        rows.setdefault(kind, []).append(db)
        if models and np.isfinite(db):
            gains.setdefault(kind, []).append((db, [output_db(m, sample) - db for m in models.values()]))
        frames = re.search(r"\|n=(\d+)\|", sample["source"])  # sub-frames (motion) or frames (highfps) averaged
        if frames and int(frames.group(1)) > 1:
            lengths[(kind, int(frames.group(1)))] += 1
        if (i + 1) % 256 == 0:
            print(f"{i + 1}/{len(picks)} samples", file=sys.stderr)
    rows["all training samples"] = [v for values in list(rows.values()) for v in values]
    if cfg.val_real:
        real = PairFolder(cfg.val_real)
        rows[f"--val-real ({real.root.name})"] = [strength_db(real[i]) for i in range(len(real))]
    print(table(rows))
    print()
    print("| kind | frames averaged into one exposure | share of that kind's blurred samples |")
    print("| --- | --- | --- |")
    for kind in sorted({k for k, _ in lengths}):
        total = sum(c for (k, _), c in lengths.items() if k == kind)
        for (k, n), c in sorted(lengths.items()):
            if k == kind:
                print(f"| {kind} | {n} | {c / total:.0%} |")
    if models:
        print()
        print(fit_table(gains, list(models)))
    return {"rows": rows, "lengths": dict(lengths), "gains": gains}


def fit_table(gains: dict[str, list[tuple[float, list[float]]]], names: list[str], strong_db: float = 25.0) -> str:
    """Each model's mean gain per kind of blurred sample, and on that kind's strong blur alone."""
    head = ["kind", "blurred samples", "median input dB", *(f"gain of {n}" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for kind, items in gains.items():
        for label, chosen in ((kind, items), (f"{kind}, input < {strong_db:g} dB", [x for x in items if x[0] < strong_db])):
            if chosen:
                per_model = np.array([g for _, g in chosen]).mean(0)
                cells = [label, str(len(chosen)), f"{np.median([d for d, _ in chosen]):.1f}", *(f"{g:+.2f}" for g in per_model)]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

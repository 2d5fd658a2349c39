"""Can a student learn to undo one kind of blur at all? A probe apart from the campaign's mix.

Clean straight motion blur (no noise, no codec, stored values averaged) on training stills, and
the gain over the blurry input on held-out crops of other stills, every ``--eval-every`` steps of
training from ``--init``: batch 16 of 128 px crops, Charbonnier loss, AdamW with a short warm-up
and a cosine. Minutes, not hours: whether a shape can learn a blur at all (train/README.md,
"What the network can learn, and what is not there to fix").
It is not a stand-in for set 1: it ranks shapes in the opposite order, and a student trained on it
loses most of its gain on real blur (set 1 +0.824 -> +0.130).

    python -m train.probe --blur fixed    # one known kernel: a 9 px horizontal line
    python -m train.probe --blur angle    # 9 px in a random direction: the direction is blind
    python -m train.probe --blur any      # 5-15 px in a random direction
    python -m train.probe --blur angle --grow first_width=32,enc_blocks=3/1/1,dec_blocks=1/1/3
    python -m train.probe --blur any --steps 20000 --out runs/probe/any.pt   # then score it on set 1
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from livesharp.errors import LivesharpError
from livesharp.model import load_student, save_student
from train.data import DataError, list_images, read_rgb
from train.distill import grown_config, refuse_existing_out, threads
from train.losses import charbonnier
from train.soft import blur
from train.synthetic import linear_kernel

S = "../shared/data"
TRAIN = [f"{S}/{d}" for d in ("urban100_hr_q95", "div2k_valid_subset", "bsd100_hr_q95", "mcmaster18", "set5_set14", "pkg_images")]
HELD_OUT = [f"{S}/kodak24_crop500"]
KERNEL = 17  # px a side: room for 15 px in any direction


def motion(rng: np.random.Generator, kind: str) -> tuple[float, float]:
    """A straight blur's length (px) and direction (radians)."""
    return {"fixed": (9.0, 0.0), "angle": (9.0, rng.uniform(0, np.pi)), "any": (rng.uniform(5, 15), rng.uniform(0, np.pi))}[kind]


def describe(length: float, angle: float) -> list[float]:
    """What ``--aux`` asks the network to tell: the blur as a point that does not jump where the
    direction wraps (a line at angle a is the line at a + pi, hence 2a), scaled to about [-1, 1]."""
    return [length / 15 * np.cos(2 * angle), length / 15 * np.sin(2 * angle), length / 15]


def batch(rng: np.random.Generator, stills: list[np.ndarray], kind: str, n: int, crop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` (blurry, sharp) crops, float [0, 1], the blurry ones rounded to 8 bits as stored, and
    each one's blur (``describe``)."""
    m = KERNEL  # blurred with real neighbours around the crop, not mirrored edges
    blurry, sharp, blurs = [], [], []
    for _ in range(n):
        img = stills[rng.integers(len(stills))]
        y, x = rng.integers(0, img.shape[0] - crop - 2 * m + 1), rng.integers(0, img.shape[1] - crop - 2 * m + 1)
        region = img[y : y + crop + 2 * m, x : x + crop + 2 * m].astype(np.float32) / 255
        length, angle = motion(rng, kind)
        blurry.append(np.round(blur(region, linear_kernel(length, angle, KERNEL)) * 255)[m:-m, m:-m] / 255)
        sharp.append(region[m:-m, m:-m])
        blurs.append(describe(length, angle))
    as_tensor = lambda a: torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2).contiguous().float()
    return as_tensor(blurry), as_tensor(sharp), torch.tensor(blurs)


def gain(net: torch.nn.Module, blurry: torch.Tensor, sharp: torch.Tensor) -> float:
    """dB gained over the blurry input, the output rounded to 8 bits as a user gets it."""
    net.eval()
    with torch.no_grad():
        out = torch.round(net(blurry).clamp(0, 1) * 255) / 255
    net.train()
    return float(10 * torch.log10(((blurry - sharp) ** 2).mean() / ((out - sharp) ** 2).mean()))


def main(argv: list[str] | None = None) -> dict[int, float]:
    p = argparse.ArgumentParser(prog="python -m train.probe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blur", choices=("fixed", "angle", "any"), default="angle", help="which blur to learn (above)")
    p.add_argument("--init", default="tiny", help="the student to start from: a shipped model's name or a checkpoint")
    p.add_argument("--grow", default="", help="grow --init first, as train.distill --grow does (FIELD=VALUE,...)")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--train", nargs="+", default=TRAIN, help="folders of training stills")
    p.add_argument("--held-out", nargs="+", default=HELD_OUT, help="folders of stills never trained on, 64 crops scored")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: as it is)")
    p.add_argument("--aux", type=float, default=0.0, help="weight of a side task: tell the blur's length and direction "
                   "(describe) from the features of --aux-at at every position, by a 1x1 convolution that is trained and thrown away")
    p.add_argument("--aux-at", choices=("middle", "last"), default="last", help="the coarsest level, or the last decoder level (1/4 resolution)")
    p.add_argument("--out", help="save the trained student here, with its gains and this command (python -m train.evaluate scores it)")
    args = p.parse_args(argv)
    refuse_existing_out(p, args.out)
    try:
        small = 2 * KERNEL + args.crop
        stills = [img for img in map(read_rgb, list_images(args.train)) if min(img.shape[:2]) >= small]
        held_out = [img for img in map(read_rgb, list_images(args.held_out)) if min(img.shape[:2]) >= small]
        if not stills or not held_out:
            raise DataError(f"no stills of at least {small} px a side in {'--train' if not stills else '--held-out'}")
        net = load_student(args.init)
        if args.grow:
            net = net.grown(grown_config(net.cfg, args.grow))
    except (DataError, LivesharpError) as e:
        sys.exit(f"error: {e}")
    with threads(args.threads):
        val = batch(np.random.default_rng([args.seed, 1]), held_out, args.blur, 64, args.crop)[:2]
        rng = np.random.default_rng([args.seed, 0])
        params = list(net.parameters())
        if args.aux:
            stage = net.middle if args.aux_at == "middle" else net.decoders[-1]
            features = {}
            stage.register_forward_hook(lambda module, inputs, output: features.update(x=output))
            head = torch.nn.Conv2d(net.ups[0][0].in_channels if args.aux_at == "middle" else net.ending.in_channels, 3, 1)
            params += list(head.parameters())
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4, betas=(0.9, 0.99))
        gains = {0: gain(net, *val)}
        print(f"--blur {args.blur}: held-out input {float(-10 * torch.log10(((val[0] - val[1]) ** 2).mean())):.2f} dB; "
              f"step 0 gain {gains[0]:+.3f} dB", file=sys.stderr, flush=True)
        warmup = min(50, args.steps)
        side_errors = []
        for step in range(1, args.steps + 1):
            for group in opt.param_groups:
                group["lr"] = args.lr * min(1.0, step / warmup) * 0.5 * (1 + np.cos(np.pi * step / args.steps))
            x, y, blurs = batch(rng, stills, args.blur, 16, args.crop)
            loss = charbonnier(net(x), y)
            if args.aux:
                side = (head(features["x"]) - blurs[:, :, None, None]).pow(2).mean()
                side_errors.append(side.item())
                loss = loss + args.aux * side
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % args.eval_every == 0 or step == args.steps:
                gains[step] = gain(net, *val)
                # how well the features tell the blur: always guessing the mean blur scores 0.120 (angle), 0.172 (any)
                told = f"; side task's squared error {np.mean(side_errors):.4f}" if side_errors else ""
                print(f"step {step}: gain {gains[step]:+.3f} dB{told}", file=sys.stderr, flush=True)
                side_errors = []
    if args.out:
        save_student(net, args.out, probe=gains, command=" ".join(["python -m train.probe", *(argv if argv is not None else sys.argv[1:])]))
    return gains


if __name__ == "__main__":
    main()

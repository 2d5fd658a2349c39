"""Distil a teacher into the student: ``python -m train.distill [options]``.

One loop, top to bottom: data, student, teacher, optimiser, then ``for step in range(steps)``
with every loss term visible. Checkpoints are written atomically every ``ckpt_every`` steps and
``--resume`` continues from the last one; evaluation every ``eval_every`` steps logs PSNR/SSIM
on the held-out split and saves a sample grid.

Config is the ``DistillConfig`` dataclass: every field is a flag (``--batch 8``), and
``--config run.toml`` reads a flat TOML file whose keys must be field names.

Examples:
  python -m train.distill --dry-run
  python -m train.distill --highfps ../shared/data/gopro240_GOPR0477_11_00/*.mkv --stills ../shared/data/kodak24_crop500 --steps 6000
  python -m train.distill --gopro /data/GOPRO_Large --teacher restormer:motion_deblurring.pth --resume
  torchrun --nproc-per-node 4 -m train.distill --gopro /data/GOPRO_Large --batch 16
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import dataclasses
import math
import multiprocessing
import os
import re
import shutil
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler
from tqdm import tqdm

from livesharp.files import atomic_output
from livesharp.model import VARIANTS, ModelError, Student, StudentConfig, load_student, save_student
from livesharp.settings import cpu_cores
from train import losses
from train.bank import RollingBank, order_from
from train.data import DataError, RealClips, list_images, load_frames, split_files
from train.gopro import GoProPairs, HighFpsBlur, split_highfps
from train.evaluate import SETS, baseline_methods, evaluate, format_table, open_sets, selection_score, student_method, to_uint8
from train.motion import TrajectoryBlur, with_sharp_share, with_strong_extent
from train.soft import SoftBlur, by_recipe
from train.synthetic import SyntheticBlur
from train.teachers import TeacherCache, TeacherError, make_teacher, teacher_targets

def _f(default, help: str):
    """A config field with its --help text (tuples need a factory)."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DistillConfig:
    # what to train
    variant: str = _f("tiny", f"student architecture: {', '.join(VARIANTS)}")
    init: str = _f("", "start from this student checkpoint (fine-tuning; its architecture replaces --variant); empty = from scratch")
    grow: str = _f("", "give the --init student the blocks, end convolutions and first-level width of this variant (small from a trained tiny-detail), or those its own config gets from FIELD=VALUE,... (edge_kernel=3, middle_blocks=8, enc_blocks=1/2/4, first_width=32: twice as wide); new blocks start as the identity and a doubled channel as two copies: the same function until trained")
    detail: int = _f(0, "1 or 2: give the --init student a detail path of that many bands (livesharp.model.DetailPath, StudentConfig.detail), new bands at zero gain: the same function until trained")
    zero_mean: bool = _f(False, "the student's residual keeps each frame's mean brightness (StudentConfig.zero_mean); also turns it on for --init")
    out: str = _f("runs/distill", "folder for checkpoints, log.csv, samples/ and the final student.pt")
    # data
    gopro: str = _f("", "GOPRO_Large root ({train,test}/GOPRxxxx_xx_xx/{blur,sharp}); empty = not used")
    gopro_blur: str = _f("blur", "GoPro input folder: blur or blur_gamma")
    highfps: tuple = _f((), "high-frame-rate sharp videos/frame folders, blurred by the GoPro recipe; the last 20%% of each is held out")
    highfps_window: tuple = _f((7, 13), "odd min and max number of sharp frames averaged per blurry frame")
    stills: tuple = _f((), "folders of still photos for synthetic blur (camera shake, defocus, noise, JPEG); 10%% held out by file-name hash")
    stills_fraction: float = _f(0.3, "share of training samples drawn from stills when both kinds are given")
    motion: tuple = _f((), "folders of still photos blurred by rendered camera and object motion through a camera model (train.motion); all files train")
    motion_fraction: float = _f(0.5, "share of training samples drawn from --motion stills when other sources are given (of those left after --soft)")
    soft: tuple = _f((), "softness (train.soft): high-frame-rate videos (their training range, as video-sharp targets) and folders of stills (made video-sharp), softened by random lens blur, defocus, upscaling, noise and compression")
    soft_fraction: float = _f(0.4, "share of training samples drawn from --soft sources when other sources are given")
    soft_sharp_fraction: float = _f(0.3, "share of --soft samples that are sharp -> sharp, unchanged")
    soft_upscaled: float = _f(0.0, "share of the softened --soft samples that are only upscaled from 0.4-0.8 of the size and compressed, no lens blur (beside those the random recipe makes)")
    soft_clean: float = _f(0.0, "share of the softened --soft samples that are a lens blur alone, no noise or codec (beside those the random recipe makes)")
    soft_codec: float = _f(0.0, "share of the softened --soft samples that are sharp footage only compressed (JPEG or H.264, some with noise): nothing to undo")
    soft_video: float = _f(0.5, "share of the --soft samples drawn from its videos' frames where it has both videos and stills: the footage's own domain")
    camera: bool = _f(False, "--highfps samples go through a random camera (tone curve, clipped highlights, noise, JPEG/H.264; train.camera)")
    sharp_fraction: float = _f(0.1, "share of --motion samples, and with --camera of --highfps samples, that are sharp -> sharp (camera noise only)")
    motion_video_sharp: bool = _f(False, "shrink (0.5-1x) and soften (Gaussian sigma 0.5-0.9) each --motion still to a video frame's sharpness before the motion, as --soft does its stills' targets (set 1 within noise of crisp stills: train/README.md, 'What has been measured')")
    motion_depth: float = _f(0.0, "share of the blurred --motion samples whose scene has depth: near pixels move with the camera's whole path, far ones a share of it, as a camera moving through a street blurs them (train.motion.depth_field; set 1 within noise of no depth: train/README.md, 'What has been measured')")
    motion_strong: tuple = _f((4.0, 26.0), "min and max extent in px (a path's longest chord in one exposure) of the --motion samples' strong class, most of them (the mild class is 1-5 px)")
    linear_fraction: float = _f(0.4, "share of camera samples blurred in linear light (brighter streaks, as a sensor) rather than in stored values (as GOPRO_Large's blur/)")
    real: tuple = _f((), "videos with no ground truth (webcam, phone footage): learnt from the teacher alone (needs --teacher)")
    real_fraction: float = _f(0.25, "share of training samples drawn from --real videos")
    pool: int = _f(0, "distinct training samples, reused every epoch (0 = a fresh sample every step); with a slow teacher, fill its cache for the pool first (python -m train.fill_cache)")
    crop: int = _f(256, "training crop size taken from the data (the curriculum crops inside it)")
    curriculum: tuple = _f((128, 192, 256), "crop sizes used in equal thirds of training, smallest first")
    clip_len: int = _f(2, "consecutive frames per sample; 2 or more enables the temporal loss")
    min_edge_energy: float = _f(0.002, "reject crops flatter than this Sobel energy (0 = keep all)")
    workers: int = _f(1, "data-loading worker processes")
    reuse: int = _f(1, "use each rendered sample this many times (train.bank: a rolling bank of --bank-window samples, each pass shuffled; needs --workers 1); 1 = a fresh sample every draw")
    bank_window: int = _f(4096, "samples per block of the rolling bank (held in the data worker's memory)")
    # teacher
    teacher: str = _f("none", "none | restormer:PATH (official motion_deblurring.pth) | onnx:PATH (any image-to-image ONNX model)")
    teacher_cache: str = _f("cache/teacher", "folder where teacher outputs are cached (reused across runs)")
    # losses (weights; 0 turns a term off)
    w_pixel: float = _f(1.0, "Charbonnier to ground truth")
    w_ssim: float = _f(0.1, "1 - MS-SSIM to ground truth (SSIM for crops <= 160 px)")
    w_edge: float = _f(0.1, "L1 between Sobel gradients of output and ground truth")
    w_fft: float = _f(0.0, "L1 between the 2-D spectra of output and ground truth (MIMO-UNet's frequency loss)")
    w_bands: float = _f(0.0, "on --soft samples, L1 from the detail path's per-frame band gains to each sample's least-squares gains, and from its gate on the body to 0 (train.losses.band_gain_loss); needs a detail path")
    w_distill: float = _f(0.5, "Charbonnier to the teacher output (needs --teacher)")
    w_temporal: float = _f(0.2, "flicker: frame-to-frame change of output vs of ground truth (needs clip_len >= 2)")
    temporal_mask: float = _f(0.1, "ignore pixels whose ground truth changes more than this between frames (0 = no mask)")
    # optimisation
    steps: int = _f(6000, "optimiser steps")
    batch: int = _f(8, "samples per step (per process under torchrun)")
    lr: float = _f(2e-3, "peak AdamW learning rate")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    warmup: int = _f(200, "linear warm-up steps before the cosine decay")
    grad_clip: float = _f(0.5, "clip the gradient norm to this")
    ema: float = _f(0.999, "EMA decay of the weights that are evaluated and saved")
    # bookkeeping
    eval_every: int = _f(500, "evaluate on the held-out split every N steps")
    val_real: str = _f("", "set 1: real blurry/sharp pairs of unseen scenes (DIR/blur, DIR/sharp), e.g. ../shared/data/gopro_real_pairs_val; never train on them")
    val_sharp: tuple = _f((), "set 3: folders of sharp frames, fed as input to measure harm")
    val_soft: tuple = _f((), "set 4: folders of sharp frames of unseen scenes, softened by fixed recipes (train.soft.RECIPES), e.g. ../shared/data/gopro_test_sharp_frames; never train on them")
    ckpt_every: int = _f(250, "write out/last.pt every N steps (atomic)")
    val_items: int = _f(16, "held-out clips per evaluation")
    seed: int = _f(0, "seed of data sampling and initialisation")
    device: str = _f("auto", "auto | cpu | cuda")
    threads: int = _f(0, "CPU threads for torch's training steps (0 = all cores); 1 leaves a core to the data workers (--workers), which on two cores is faster; evaluations use all cores")
    compile: bool = _f(False, "torch.compile the student's training step (a minute or two to compile per crop size; faster steps after)")
    resume: bool = _f(False, "continue from out/last.pt")
    dry_run: bool = _f(False, "two steps on tiny crops, one evaluation, then stop: a smoke test")


# --- configuration -------------------------------------------------------------------------


LOG_COLUMNS = ["step", "lr", "loss", "pixel", "ssim", "edge", "fft", "distill", "temporal", "bands", "crop", "sec_per_step", "val_psnr", "val_ssim"]


def refuse_existing_out(p: argparse.ArgumentParser, out: str | None) -> None:
    """Stop with one line if ``out`` names a file already there: a tool's minutes of work never
    end in replacing a file the user did not ask to replace."""
    if out and (Path(out).exists() or Path(out).is_symlink()):
        p.error(f"--out {out} exists: give another path, or delete it first (nothing was run)")


def parse_config(argv: list[str] | None = None, need_data: bool = True) -> DistillConfig:
    p = argparse.ArgumentParser(prog="python -m train.distill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="flat TOML file of DistillConfig fields; flags given here win")
    for f in dataclasses.fields(DistillConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        help = f"{f.metadata['help']} (default: {default if not isinstance(default, tuple) else ' '.join(map(str, default)) or 'none'})"
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)
        elif isinstance(default, tuple):
            kind = type(default[0]) if default else str
            p.add_argument(flag, nargs="*", type=kind, default=None, help=help, metavar=f.name.upper())
        else:
            p.add_argument(flag, type=type(default), default=None, help=help, metavar=f.name.upper())
    args = vars(p.parse_args(argv))
    values = {}
    config_path = args.pop("config")
    if config_path:
        path = Path(config_path)
        try:
            values = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            p.error(f"--config {path}: {e}")
        unknown = set(values) - {f.name for f in dataclasses.fields(DistillConfig)}
        if unknown:
            p.error(f"--config {path}: unknown keys {', '.join(sorted(unknown))}")
    values |= {k: v for k, v in args.items() if v is not None}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    cfg = DistillConfig(**values)
    if cfg.variant not in VARIANTS:
        p.error(f"--variant {cfg.variant}: choose one of {', '.join(VARIANTS)}")
    if need_data and not (cfg.gopro or cfg.highfps or cfg.stills or cfg.motion or cfg.soft):
        p.error("no training data: pass --gopro, --highfps, --stills, --motion or --soft")
    if cfg.real and (cfg.teacher == "none" or not cfg.w_distill):
        p.error("--real videos have no ground truth and learn from the teacher alone: pass --teacher (and a --w-distill above 0)")
    if len(cfg.motion_strong) != 2 or not 0 < cfg.motion_strong[0] <= cfg.motion_strong[1]:
        p.error(f"--motion-strong {' '.join(map(str, cfg.motion_strong))}: give the smallest and largest extent in px, 0 < MIN <= MAX (e.g. 4 26)")
    if cfg.reuse > 1 and (cfg.workers != 1 or cfg.pool):
        p.error(f"--reuse {cfg.reuse}: the bank lives in one data worker: use --workers 1 and no --pool")
    if cfg.pool and cfg.pool < cfg.batch:
        p.error(f"--pool {cfg.pool}: must hold at least one batch ({cfg.batch})")
    return cfg


# --- data ----------------------------------------------------------------------------------


def build_data(cfg: DistillConfig, samples: int):
    """(train set of ``samples`` random crops, held-out validation set of full frames/clips).

    Every sample is a pure function of (seed, index), so the same config gives the same crops
    to ``train.fill_cache`` and to the loop.
    """
    train_sets, val_sets, crop = [], [], cfg.crop
    if cfg.real:
        n_real = max(1, round(samples * cfg.real_fraction))
        train_sets.append(RealClips(cfg.real, cfg.clip_len, crop, seed=cfg.seed, length=n_real, min_edge_energy=cfg.min_edge_energy))
        samples = max(1, samples - n_real)
    if cfg.soft:
        others = cfg.gopro or cfg.highfps or cfg.stills or cfg.motion
        n_soft = max(1, round(samples * (cfg.soft_fraction if others else 1.0)))
        train_sets.append(SoftBlur(cfg.soft, crop, cfg.clip_len, seed=cfg.seed, length=n_soft, sharp_fraction=cfg.soft_sharp_fraction,
                                   min_edge_energy=cfg.min_edge_energy, max_window=cfg.highfps_window[1], upscaled_fraction=cfg.soft_upscaled, clean_fraction=cfg.soft_clean,
                                   codec_fraction=cfg.soft_codec, video_share=cfg.soft_video))
        if skipped := train_sets[-1].skipped:
            names = ", ".join(p.name for p in skipped[:4]) + (f" and {len(skipped) - 4} more" if len(skipped) > 4 else "")
            print(f"--soft: {len(skipped)} stills smaller than the {crop} px crop left out ({names})", file=sys.stderr)
        samples = max(0, samples - n_soft)
    if cfg.motion and samples:
        others = cfg.gopro or cfg.highfps or cfg.stills
        n_motion = max(1, round(samples * (cfg.motion_fraction if others else 1.0)))
        train_sets.append(TrajectoryBlur(list_images(cfg.motion), crop, cfg.clip_len, seed=cfg.seed, length=n_motion, min_edge_energy=cfg.min_edge_energy,
                                        strengths=with_sharp_share(cfg.sharp_fraction, with_strong_extent(*cfg.motion_strong)), linear_fraction=cfg.linear_fraction, video_sharp=cfg.motion_video_sharp, depth_prob=cfg.motion_depth))
        samples = max(0, samples - n_motion)
    still_share = cfg.stills_fraction if cfg.stills and (cfg.gopro or cfg.highfps) else (1.0 if cfg.stills else 0.0)
    video_samples = max(1, round(samples * (1 - still_share))) if samples else 0
    video_sources = ([cfg.gopro] if cfg.gopro else []) + list(cfg.highfps)
    for src in video_sources:
        n = max(1, video_samples // len(video_sources))
        if src == cfg.gopro:
            train_sets.append(GoProPairs(src, "train", cfg.gopro_blur, cfg.clip_len, crop, seed=cfg.seed, min_edge_energy=cfg.min_edge_energy, length=n))
            val_sets.append(GoProPairs(src, "test", cfg.gopro_blur, cfg.clip_len, crop=None, augment=False))
        else:
            frames = load_frames(src)
            train_range, val_range = split_highfps(len(frames), max_window=cfg.highfps_window[1])
            common = dict(window=tuple(cfg.highfps_window), clip_len=cfg.clip_len, name=Path(src).name)
            train_sets.append(HighFpsBlur(frames, frame_range=train_range, crop=crop, seed=cfg.seed, length=n, min_edge_energy=cfg.min_edge_energy,
                                          camera=cfg.camera, sharp_fraction=cfg.sharp_fraction, linear_fraction=cfg.linear_fraction, **common))
            val_sets.append(HighFpsBlur(frames, frame_range=val_range, crop=None, augment=False, every=4, **common))
    if cfg.stills and samples:
        train_files, val_files = split_files(list_images(cfg.stills))
        n = max(1, samples - video_samples) if video_sources else samples
        train_sets.append(SyntheticBlur(train_files, crop, cfg.clip_len, seed=cfg.seed, length=n, min_edge_energy=cfg.min_edge_energy))
        if not video_sources and val_files:
            val_sets.append(SyntheticBlur(val_files, crop=crop, clip_len=cfg.clip_len, augment=False))
    # The first held-out set is logged every evaluation; checkpoints are chosen on --val-real
    # and --val-sharp (open_sets) when given, never on this set alone.
    return ConcatDataset(train_sets), (val_sets[0] if val_sets else None)


def crop_size(cfg: DistillConfig, step: int) -> int:
    """Curriculum: small crops first (fast steps, local detail), full crops last (context)."""
    sizes = [min(s, cfg.crop) for s in cfg.curriculum] or [cfg.crop]
    return sizes[min(len(sizes) - 1, step * len(sizes) // max(1, cfg.steps))]


def random_subcrop(size: int, h: int, w: int, gen: torch.Generator) -> tuple[int, int]:
    top = int(torch.randint(0, h - size + 1, (1,), generator=gen)) if h > size else 0
    left = int(torch.randint(0, w - size + 1, (1,), generator=gen)) if w > size else 0
    return top, left


@contextlib.contextmanager
def threads(n: int):
    """torch on ``n`` threads (0: as it is), then back to the thread count it had."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def all_cores():
    """torch on every core this process may use, then back to the thread count it had."""
    return threads(cpu_cores())


def lr_at(cfg: DistillConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def loss_terms(cfg: DistillConfig, pred: torch.Tensor, sharp: torch.Tensor, target_t: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Each loss term of a step (weights apart): pure functions of the output and its targets."""
    zero = pred.new_zeros(())
    return {
        "pixel": losses.charbonnier(pred, sharp),
        "ssim": losses.ms_ssim_loss(pred.clamp(0, 1), sharp) if cfg.w_ssim else zero,
        "edge": losses.sobel_edge_loss(pred, sharp) if cfg.w_edge else zero,
        "fft": losses.fft_loss(pred, sharp) if cfg.w_fft else zero,
        "distill": losses.distill_loss(pred, target_t) if target_t is not None else zero,
        "temporal": losses.temporal_consistency_loss(pred, sharp, cfg.temporal_mask or None) if cfg.w_temporal and pred.shape[1] > 1 else zero,
    }


def band_terms(student: Student, blur: torch.Tensor, sharp: torch.Tensor, gains: torch.Tensor, gate: torch.Tensor | None, sources: list[str], frames: int) -> torch.Tensor:
    """``losses.band_gain_loss`` for a batch of frames, (N, 3, H, W): the bands are the student's
    own (no gradient through them), the residual the colours' mean of target - input, folded
    alike, and the samples taught are the softened ones (``train.soft``), sharp -> sharp among them."""
    with torch.no_grad():
        bands = student.detail.band_detail(student.fold(blur))
        residual = student.fold(sharp - blur).unflatten(1, (3, -1)).mean(1)
        soft = torch.tensor([s.startswith("soft:") for s in sources for _ in range(frames)], device=blur.device)
    return losses.band_gain_loss(gains.float(), bands.float(), residual.float(), soft, None if gate is None else gate.float())


def save_grid(path: Path, blur: torch.Tensor, pred: torch.Tensor, sharp: torch.Tensor) -> None:
    """input | output | ground truth, one row per sample, for a look at what the numbers mean."""
    rows = [np.concatenate([to_uint8(b), to_uint8(p), to_uint8(s)], axis=1) for b, p, s in zip(blur, pred, sharp)]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, axis=0), cv2.COLOR_RGB2BGR))


# --- the loop --------------------------------------------------------------------------------


def grown_config(start: StudentConfig, spec: str) -> StudentConfig:
    """``--grow``'s target: a variant's name, or ``start`` with ``FIELD=VALUE,...`` replaced
    (integers; a tuple as ``1/2/4``)."""
    if "=" not in spec:
        if spec not in VARIANTS:
            raise ModelError(f"choose one of {', '.join(VARIANTS)}, or FIELD=VALUE,... such as edge_kernel=3")
        return VARIANTS[spec]
    fields = {f.name for f in dataclasses.fields(StudentConfig)} - {"block", "detail", "zero_mean", "unshuffle", "width"}
    changes = {}
    for item in spec.split(","):
        key, _, value = item.partition("=")
        if key not in fields or not re.fullmatch(r"\d+(/\d+)*", value):
            raise ModelError(f"{item!r}: give FIELD=VALUE with FIELD one of {', '.join(sorted(fields))} and a whole number (a tuple as 1/2/4)")
        changes[key] = tuple(map(int, value.split("/"))) if key.endswith("_blocks") and key != "middle_blocks" else int(value)
    return dataclasses.replace(start, **changes)


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(argv)
    command = " ".join(["python -m train.distill", *(argv if argv is not None else sys.argv[1:])])
    if cfg.dry_run:
        cfg = dataclasses.replace(cfg, steps=2, crop=min(cfg.crop, 64), curriculum=(64,), batch=2, eval_every=2, ckpt_every=2, val_items=1, workers=0, out=str(Path(cfg.out) / "dry-run"))
    # --threads for this run only: a caller in the same process gets its own count back
    with threads(cfg.threads):
        return run(cfg, command)


def run(cfg: DistillConfig, command: str) -> dict:
    """The loop, top to bottom (``main`` parses the command line around it)."""
    ddp = "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1
    rank = 0
    if ddp:  # launched by torchrun: one process per GPU
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        rank = dist.get_rank()
    if cfg.device == "auto":
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed + rank)
    out = Path(cfg.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)

    # 1) data: random training crops, and the held-out split the model is judged on
    try:
        train_set, val_set = build_data(cfg, samples=cfg.pool or math.ceil(cfg.steps * cfg.batch / cfg.reuse))
    except DataError as e:
        sys.exit(f"error: {e}")
    sampler = DistributedSampler(train_set, seed=cfg.seed) if ddp else None
    if not ddp and not cfg.pool:  # also at --reuse 1: its order is what lets a resumed run draw an unbroken one's samples
        train_set = RollingBank(train_set, cfg.bank_window, cfg.reuse, seed=cfg.seed)
    # Workers start from a fresh interpreter, not a fork of this one: a fork inherits what the
    # parent's libraries hold, and PyAV 18.1.1's converter, kept per thread with its helper
    # threads gone in the child, hangs the worker at its first conversion. The price is the
    # decoded frames pickled once per worker (and held twice).
    start_method = "forkserver" if cfg.workers and "forkserver" in multiprocessing.get_all_start_methods() else None
    loader_args = dict(batch_size=cfg.batch, num_workers=cfg.workers, drop_last=True, persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda",
                       multiprocessing_context=start_method)

    # 2) student, its EMA twin, and the teacher (frozen; its outputs are cached on disk)
    try:
        student = (load_student(cfg.init) if cfg.init else Student(VARIANTS[cfg.variant])).to(device)
    except ModelError as e:
        sys.exit(f"error: --init: {e}")
    if cfg.zero_mean and not student.cfg.zero_mean:  # no weights change, only what forward does
        student.cfg = dataclasses.replace(student.cfg, zero_mean=True)
    if cfg.grow:
        try:
            student = student.grown(grown_config(student.cfg, cfg.grow))
        except ModelError as e:
            sys.exit(f"error: --grow {cfg.grow}: {e}")
    if cfg.detail > student.cfg.detail:
        student = student.with_detail(cfg.detail)
    if cfg.w_bands and student.detail is None:
        sys.exit("error: --w-bands teaches the detail path's band gains, and this student has none: add one with --detail 2")
    # Channels-last: the CPU's convolutions run without reordering each layer's input.
    memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    student = student.to(memory_format=memory_format)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    model = torch.nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None) if ddp else student
    compute_terms = loss_terms
    if cfg.compile:
        model = torch.compile(model)
        # The losses cost about as much as the student's forward and backward, and are mostly
        # elementwise arithmetic that compilation fuses.
        compute_terms = torch.compile(loss_terms)
    try:
        teacher = make_teacher(cfg.teacher, device)
    except TeacherError as e:
        sys.exit(f"error: {e}")
    cache = TeacherCache(cfg.teacher_cache)
    # fused: one kernel over all parameters (the CPU default loops over them); about 1 % of a
    # step on two cores (benchmarks/train_throughput.py).
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99), fused=True)
    start, best = 0, {"score": -math.inf, "step": 0}
    last = out / "last.pt"
    if cfg.resume:
        if not last.is_file():
            sys.exit(f"error: --resume: no checkpoint at {last}; start without --resume")
        ckpt = torch.load(last, map_location=device, weights_only=True)
        if "student" not in ckpt:
            sys.exit(f"error: --resume: {last} was written by an older livesharp (no training state); start a new --out")
        student.load_state_dict(ckpt["student"])
        ema.load_state_dict(ckpt["model"])  # the self-describing part: the EMA weights
        opt.load_state_dict(ckpt["optimizer"])
        start, best = ckpt["step"], ckpt.get("best", best)
        print(f"resumed from {last} at step {start}", file=sys.stderr)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + start)
    # One log: under torchrun every rank runs this loop, and rank 0's rows stand for the step.
    log_path = out / "log.csv" if rank == 0 else Path(os.devnull)
    if cfg.resume and log_path.is_file():
        # The steps logged after the checkpoint are run again: their rows go, so each step keeps one.
        with open(log_path, newline="") as f:
            rows = list(csv.reader(f))
        at = rows[0].index("step") if rows else 0
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[at]) <= start]
        if len(kept) < len(rows):
            with atomic_output(log_path) as tmp, open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(kept)
    log_file = open(log_path, "a+", newline="")
    log_file.seek(0)
    # A resumed run keeps the columns its log began with (an older livesharp wrote fewer terms).
    columns = next(csv.reader(log_file), None) or LOG_COLUMNS
    log_file.seek(0, 2)
    log = csv.writer(log_file)
    if log_file.tell() == 0:
        log.writerow(columns)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    # The sets checkpoints are chosen on: real blur of unseen scenes (1) and sharp input (3).
    try:
        select_sets = open_sets(cfg.val_real or None, sharp=cfg.val_sharp, soft=cfg.val_soft)
    except DataError as e:
        sys.exit(f"error: {e}")
    baselines = evaluate(baseline_methods(), val_set, cfg.val_items) if rank == 0 and val_set is not None else {}
    if baselines:
        print(format_table(baselines), file=sys.stderr)
    history: dict = {}

    def batches():
        # The loader (and its persistent workers) lives as long as this generator, not as long as
        # main's frame, which an exception's traceback may keep for a while.
        if isinstance(train_set, RollingBank):  # resumes with the very samples an unbroken run would draw next
            loader = DataLoader(train_set, sampler=order_from(train_set, start * cfg.batch), **loader_args)
        else:
            loader = DataLoader(train_set, shuffle=sampler is None, sampler=sampler, **loader_args)
        epoch = 0
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, disable=rank != 0 or None, unit="step", dynamic_ncols=True)
    t_last = time.perf_counter()
    # Closed however the run stops (Ctrl-C included), so the loader's workers are shut down then,
    # not at some later garbage collection while another run's loader or compile is going.
    with contextlib.closing(batches()) as data, log_file, bar:
        for step in bar:
            batch = next(data)
            blur, sharp = batch["blur"].to(device, non_blocking=True), batch["sharp"].to(device, non_blocking=True)

            # 1) teacher targets for the full crops (cached), before the curriculum crops them
            target_t = teacher_targets(teacher, cache, blur, batch["source"]).to(device) if teacher is not None and cfg.w_distill else None
            if target_t is not None:
                # Footage with no ground truth is supervised by the teacher alone, in every term.
                sharp = torch.where(batch["has_gt"].to(device).view(-1, 1, 1, 1, 1), sharp, target_t)

            # 2) curriculum: one sub-crop of the batch at this step's size
            size = crop_size(cfg, step)
            top, left = random_subcrop(size, blur.shape[-2], blur.shape[-1], gen)
            window = (..., slice(top, top + size), slice(left, left + size))
            blur, sharp = blur[window], sharp[window]
            target_t = target_t[window] if target_t is not None else None

            # 3) student on every frame of every clip
            lr = lr_at(cfg, step)
            for group in opt.param_groups:
                group["lr"] = lr
            with amp:
                pred, (gains, gate) = model(blur.flatten(0, 1).contiguous(memory_format=memory_format), with_gains=True)
                pred = pred.reshape(blur.shape).float()

            # 4) losses, each a pure function; weights from the config
            terms = compute_terms(cfg, pred, sharp, target_t)
            if cfg.w_bands:
                terms["bands"] = band_terms(student, blur.flatten(0, 1), sharp.flatten(0, 1), gains, gate, batch["source"], blur.shape[1])
            weights = {"pixel": cfg.w_pixel, "ssim": cfg.w_ssim, "edge": cfg.w_edge, "fft": cfg.w_fft, "distill": cfg.w_distill, "temporal": cfg.w_temporal,
                       "bands": cfg.w_bands}
            loss = sum(weights[k] * v for k, v in terms.items())

            # 5) update, clip, EMA
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
            opt.step()
            with torch.no_grad():
                decay = min(cfg.ema, (1 + step) / (10 + step))  # average over fewer steps early on
                for e, s in zip(ema.parameters(), student.parameters()):
                    e.lerp_(s.detach(), 1 - decay)

            # 6) log, evaluate, checkpoint
            now = time.perf_counter()
            row = {"step": step + 1, "lr": f"{lr:.2e}", "loss": f"{loss.item():.5f}", **{k: f"{v.item():.5f}" for k, v in terms.items()}, "crop": size, "sec_per_step": f"{now - t_last:.3f}", "val_psnr": "", "val_ssim": ""}
            t_last = now
            bar.set_postfix(loss=row["loss"], crop=size, lr=row["lr"])
            done = step + 1
            if rank == 0 and (done % cfg.eval_every == 0 or done == cfg.steps):
                # Evaluations have every core: the data workers wait on a full queue meanwhile.
                with all_cores():
                    history[done] = {}
                    if val_set is not None:
                        result = history[done]["clip"] = evaluate({"student": student_method(ema, device)}, val_set, cfg.val_items)["student"]
                        row["val_psnr"], row["val_ssim"] = f"{result['psnr']:.3f}", f"{result['ssim']:.4f}"
                        tqdm.write(f"step {done}: {SETS['clip']}: PSNR {result['psnr']:.3f} dB (input {baselines['input']['psnr']:.3f}, unsharp {baselines['unsharp']['psnr']:.3f}), SSIM {result['ssim']:.4f}", file=sys.stderr)
                        with torch.no_grad():
                            sample = val_set[0]
                            save_grid(out / "samples" / f"step{done:06d}.png", sample["blur"][:1], ema(sample["blur"][:1].to(device)).cpu(), sample["sharp"][:1])
                    if select_sets:
                        # 7) choose the checkpoint on unseen scenes and harm, never on the training scene
                        # the input is the reference of "gain"; unsharp masking never changes between evaluations
                        scored = {k: evaluate({"input": baseline_methods()["input"], "student": student_method(ema, device)}, d, gains=k != "sharp", per_item=k == "soft",
                                              structure=k != "soft")
                                  for k, d in select_sets.items()}
                        if "soft" in scored:  # per recipe, not per frame
                            per_recipe = by_recipe(scored["soft"])["student"]
                            scored["soft"] = {n: {k: v for k, v in r.items() if k != "items_detail"} for n, r in scored["soft"].items()}
                            scored["soft"]["student"]["per_recipe"] = per_recipe
                        score = selection_score(scored)
                        history[done] |= {k: r["student"] for k, r in scored.items()} | {"score": score}
                        parts = [f"set 1 gain {scored['real']['student']['gain']:+.3f} dB (worst {scored['real']['student']['worst_gain']:+.3f})"] if "real" in scored else []
                        parts += [f"set 3 {scored['sharp']['student']['psnr']:.2f} dB, shift {scored['sharp']['student']['shift']:+.2f}"] if "sharp" in scored else []
                        parts += [f"set 4 gain {scored['soft']['student']['gain']:+.3f} dB (" + " ".join(f"{r} {g:+.2f}" for r, g in scored["soft"]["student"]["per_recipe"].items()) + ")"] if "soft" in scored else []
                        tqdm.write(f"step {done}: {', '.join(parts)}; score {score:+.3f}{' (best)' if score > best['score'] else ''}", file=sys.stderr)
                        # Every scored checkpoint is kept: the best score is one trade-off between gain
                        # and harm, and the run's later ones may be the better pick under another bar.
                        scored_ckpt = dict(config=dataclasses.asdict(cfg), step=done, score=score, validation=dict(scored), command=command)
                        save_student(copy.deepcopy(ema).cpu(), out / f"step{done:06d}.pt", **scored_ckpt)
                        if score > best["score"]:
                            best = {"score": score, "step": done}
                            save_student(copy.deepcopy(ema).cpu(), out / "best.pt", **scored_ckpt)
            log.writerow([row.get(k, "") for k in columns])
            log_file.flush()  # so `tail log.csv` shows a background run's progress
            if rank == 0 and (done % cfg.ckpt_every == 0 or done == cfg.steps):
                # One format: the EMA weights as a self-describing student (loadable by --model and
                # --init), the training state beside them.
                save_student(ema, last, student=student.state_dict(), optimizer=opt.state_dict(), step=done, best=best,
                             config=dataclasses.asdict(cfg), command=command)

    # the deliverable: the EMA weights as a self-describing student checkpoint
    result = {}
    if rank == 0:
        with all_cores():
            final = evaluate(baseline_methods() | {"student": student_method(ema, device)}, val_set, cfg.val_items) if val_set is not None else {}
        if final:
            print(format_table(final), file=sys.stderr)
        result = {"config": dataclasses.asdict(cfg), "validation": final, "history": history, "best": best}
        if select_sets and (out / "best.pt").is_file():
            # The deliverable is the checkpoint that did best on unseen scenes and sharp input.
            with atomic_output(out / "student.pt") as tmp:
                shutil.copyfile(out / "best.pt", tmp)
            print(f"wrote {out / 'student.pt'} (step {best['step']}, score {best['score']:+.3f})", file=sys.stderr)
        else:
            save_student(ema.cpu(), out / "student.pt", config=dataclasses.asdict(cfg), validation=final, command=command)
            print(f"wrote {out / 'student.pt'}", file=sys.stderr)
    if ddp:
        dist.destroy_process_group()
    return result


if __name__ == "__main__":
    main()

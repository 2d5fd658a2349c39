"""Fill the teacher cache ahead of training, in the background, resuming where it stopped.

    nohup python -m train.fill_cache --teacher onnx:teachers/maxim_gopro.onnx --pool 512 \\
        --crop 128 --real ../shared/data/videos/intel_sample_videos/asl_gestures/*.mkv > fill.log &
    python -m train.distill --teacher onnx:teachers/maxim_gopro.onnx --pool 512 --crop 128 ...

It takes the same flags as ``train.distill`` and builds the same training pool (every sample
is a pure function of the seed and its index), then runs the teacher on every frame of every
sample that the cache does not hold yet. A big teacher on a CPU takes many seconds per crop,
so this is meant to run for hours: each output is written atomically as soon as it is made,
a killed run loses at most the crop in flight, and a restart skips everything already done.
Training on the same pool then never waits for the teacher.
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from livesharp.engine import resolve_device
from livesharp.errors import LivesharpError
from train.data import DataError
from train.distill import build_data, parse_config, threads
from train.teachers import TeacherCache, TeacherError, make_teacher, teacher_targets


def missing(cache: TeacherCache, teacher_name: str, sample: dict) -> int:
    """How many of a sample's frames the cache lacks. Entries are read, not only looked for:
    a damaged one is dropped here (with a warning) and made again."""
    return sum(cache.get(TeacherCache.key(teacher_name, f"{sample['source']}|t={t}")) is None for t in range(sample["blur"].shape[0]))


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(argv)
    if cfg.teacher == "none":
        sys.exit("error: --teacher is required: the cache holds a teacher's outputs")
    if not cfg.pool:
        sys.exit("error: --pool N is required: the cache is filled for a fixed pool of N training samples, the same --pool training uses")
    with threads(cfg.threads):  # --threads for this run only
        try:
            train_set, _ = build_data(cfg, samples=cfg.pool)
            teacher = make_teacher(cfg.teacher, resolve_device(cfg.device))  # auto: CUDA when there is one
        except (DataError, TeacherError, LivesharpError) as e:
            sys.exit(f"error: {e}")
        cache = TeacherCache(cfg.teacher_cache)
        made = had = 0
        t0 = time.perf_counter()
        bar = tqdm(range(len(train_set)), unit="sample", dynamic_ncols=True)
        for i in bar:
            sample = train_set[i]
            todo = missing(cache, teacher.name, sample)
            if todo:
                teacher_targets(teacher, cache, sample["blur"][None], [sample["source"]])
                made += todo
                bar.set_postfix(made=made, s_per_frame=f"{(time.perf_counter() - t0) / made:.1f}")
            had += sample["blur"].shape[0] - todo
        bar.close()
        print(f"teacher cache {cache.root}: {made} outputs made, {had} already there, for {len(train_set)} samples", file=sys.stderr)
        return {"made": made, "had": had, "samples": len(train_set)}


if __name__ == "__main__":
    main()

"""A real ONNX teacher (a small model this test exports) driving distillation: the cache filled
ahead of training (miss, hit, resume after a kill mid-run, corrupt entry rejected), real
footage with no ground truth supervised by the teacher alone, and the config errors."""

import csv
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from livesharp.model import load_student
from train import distill, fill_cache
from train.data import RealClips
from train.teachers import OnnxTeacher, TeacherCache

POOL = 6  # samples of 2 frames: 12 teacher outputs


class Sharpen(nn.Module):
    """A fixed unsharp mask: the teacher's output differs from both input and ground truth."""

    def forward(self, x):
        blur = nn.functional.avg_pool2d(nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        return (x + 0.8 * (x - blur)).clamp(0, 1)


def frames_folder(root, n, h, w, seed, square=True):
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    for t in range(n):
        f = bg.copy()
        if square:
            x = 4 + 2 * (t % 20)
            f[16:32, x : x + 16] = (250, 250, 250)
        cv2.imwrite(str(root / f"{t:04d}.png"), f)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("teacher-data")
    teacher = root / "sharpen.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Sharpen(), (torch.rand(1, 3, 32, 32),), str(teacher), dynamo=False, opset_version=17, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}})
    return {
        "teacher": teacher,
        "highfps": frames_folder(root / "highfps", 60, 64, 96, seed=1),
        "real": frames_folder(root / "real", 12, 48, 64, seed=2, square=False),
    }


def args(tmp_path, data, *more):
    # One thread: on 32-pixel crops two threads cost more in hand-offs than they save (60 steps
    # took 35 s with 2 on two busy cores, 10 s with 1).
    # `--highfps` repeated: its default is the GoPro clip in ../shared, which these tests never use.
    return ["--highfps", str(data["highfps"]), "--highfps-window", "3", "5", "--real", str(data["real"]), "--teacher", f"onnx:{data['teacher']}",
            "--teacher-cache", str(tmp_path / "cache"), "--pool", str(POOL), "--crop", "32", "--curriculum", "32", "--batch", "2",
            "--min-edge-energy", "0", "--workers", "0", "--threads", "1", "--out", str(tmp_path / "run"), "--val-items", "1", *more]


def entries(tmp_path):
    return sorted((tmp_path / "cache").rglob("*.pt"))


def test_fill_then_hit_then_resume_after_a_kill_and_reject_a_corrupt_entry(tmp_path, data, monkeypatch):
    # a run killed after 5 outputs: those 5 are complete entries, nothing half-written is left
    # (and --threads 1 held for the run only, killed or not)
    torch.set_num_threads(2)
    calls = {"n": 0}
    real_call = OnnxTeacher.__call__

    def dies_after_five(self, x):
        if calls["n"] == 5:
            raise KeyboardInterrupt  # what `kill -INT` does mid-run
        calls["n"] += 1
        return real_call(self, x)

    monkeypatch.setattr(OnnxTeacher, "__call__", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        fill_cache.main(args(tmp_path, data))
    assert len(entries(tmp_path)) == 5 and torch.get_num_threads() == 2
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and p.suffix != ".pt"]
    monkeypatch.undo()

    # the restart makes only what is missing
    r = fill_cache.main(args(tmp_path, data))
    assert (r["made"], r["had"], r["samples"]) == (2 * POOL - 5, 5, POOL) and torch.get_num_threads() == 2
    assert len(entries(tmp_path)) == 2 * POOL

    # everything is a hit now
    r = fill_cache.main(args(tmp_path, data))
    assert (r["made"], r["had"]) == (0, 2 * POOL)

    # a damaged entry is dropped with a warning and made again
    entries(tmp_path)[3].write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="dropping damaged entry"):
        r = fill_cache.main(args(tmp_path, data))
    assert (r["made"], r["had"]) == (1, 2 * POOL - 1)


def test_training_on_a_filled_pool_never_runs_the_teacher(tmp_path, data, monkeypatch):
    fill_cache.main(args(tmp_path, data))
    calls = []
    monkeypatch.setattr(OnnxTeacher, "__call__", lambda self, x: calls.append(1) or x)
    distill.main(args(tmp_path, data, "--steps", "4", "--eval-every", "4", "--warmup", "1"))
    assert calls == []
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert all(float(r["distill"]) > 0 for r in rows)
    assert (tmp_path / "run" / "student.pt").is_file()


def test_footage_without_ground_truth_learns_the_teacher(tmp_path, data):
    """A pool of real clips (plus the one GoPro-recipe sample the split leaves): the student,
    which starts as the identity, moves towards the teacher on footage that has no target."""
    cfg = distill.parse_config(args(tmp_path, data, "--real-fraction", "1.0"))
    train_set, _ = distill.build_data(cfg, samples=POOL)
    sample = train_set[0]
    assert sample["has_gt"].item() is False and sample["source"].startswith("real:")
    torch.testing.assert_close(sample["sharp"], sample["blur"])  # a stand-in, replaced in the loop

    distill.main(args(tmp_path, data, "--real-fraction", "1.0", "--steps", "60", "--lr", "1e-2", "--warmup", "2", "--w-ssim", "0",
                      "--w-edge", "0", "--w-temporal", "0", "--eval-every", "60", "--ema", "0"))
    student = load_student(tmp_path / "run" / "student.pt").eval()
    teacher = OnnxTeacher(data["teacher"])
    x = torch.stack([train_set[i]["blur"][0] for i in range(POOL)])
    with torch.no_grad():
        before = (x - teacher(x)).abs().mean()
        after = (student(x) - teacher(x)).abs().mean()
    assert after < 0.97 * before, (float(before), float(after))
    # In a batch of real clips only, the ground-truth term *is* the distance to the teacher.
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["pixel"] == r["distill"] for r in rows) >= len(rows) // 2


def test_real_clips_are_repeatable_and_distinct(data):
    ds = RealClips([data["real"]], clip_len=2, crop=32, seed=3, length=8)
    a, b = ds[5], ds[5]
    torch.testing.assert_close(a["blur"], b["blur"])
    assert a["source"] == b["source"] and a["blur"].shape == (2, 3, 32, 32)
    assert len({ds[i]["source"] for i in range(8)}) > 4
    with pytest.raises(IndexError):
        ds[8]


@pytest.mark.parametrize("extra, message", [
    (["--teacher", "none"], "--real videos have no ground truth"),
    (["--pool", "1"], "--pool 1: must hold at least one batch"),
])
def test_config_errors(tmp_path, data, capsys, extra, message):
    with pytest.raises(SystemExit):
        distill.parse_config(args(tmp_path, data, *extra))
    assert message in capsys.readouterr().err


def test_fill_cache_needs_a_teacher_and_a_pool(tmp_path, data):
    with pytest.raises(SystemExit, match="--pool N is required"):
        fill_cache.main(args(tmp_path, data, "--pool", "0"))
    with pytest.raises(SystemExit, match="--teacher is required"):
        fill_cache.main(["--highfps", str(data["highfps"]), "--teacher", "none", "--pool", "8"])


def test_cache_keys_match_between_fill_and_training(tmp_path, data):
    cfg = distill.parse_config(args(tmp_path, data))
    train_set, _ = distill.build_data(cfg, samples=POOL)
    sources = [train_set[i]["source"] for i in range(POOL)]
    fill_cache.main(args(tmp_path, data))
    teacher = OnnxTeacher(data["teacher"])
    cache = TeacherCache(tmp_path / "cache")
    for s in sources:
        for t in range(2):
            assert cache.path(TeacherCache.key(teacher.name, f"{s}|t={t}")).is_file()


def test_evaluate_reports_psnr_against_the_teacher_for_several_models(tmp_path, data, capsys):
    import json

    from livesharp.model import VARIANTS, Student, save_student
    from train import evaluate

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_student(Student(VARIANTS["tiny"]), tmp_path / name / "student.pt")  # identity students
    out = tmp_path / "eval.json"
    code = evaluate.main(["--data", str(data["highfps"]), "--model", str(tmp_path / "a" / "student.pt"), "--model", str(tmp_path / "b" / "student.pt"),
                          "--crop", "32", "--window", "3", "5", "--teacher", f"onnx:{data['teacher']}", "--teacher-cache", str(tmp_path / "cache"),
                          "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["input", "unsharp", "student", "b/student", "teacher", "ground truth"]
    assert set(results.pop("ground truth")) == {"warp_error", "items"}  # the sharp clips' own flicker
    teacher_row = results.pop("teacher")  # the teacher itself, against the ground truth
    assert "psnr_teacher" not in teacher_row and 10 < teacher_row["psnr"] < 100
    assert teacher_row["psnr"] != pytest.approx(results["input"]["psnr"])  # it changed the picture
    for r in results.values():
        assert 10 < r["psnr_teacher"] < 100
    # an identity student's output is its input, so it is exactly as far from the teacher
    assert results["student"]["psnr_teacher"] == pytest.approx(results["input"]["psnr_teacher"])
    assert "psnr_teacher" in capsys.readouterr().out
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2 * results["input"]["items"]  # teacher run once per frame

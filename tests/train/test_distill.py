"""train.distill and train.evaluate end to end on data the tests make (no ../shared)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from livesharp.model import VARIANTS, Student, load_student, save_student
from train import distill, evaluate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    """Twelve textured 96x96 stills: enough for a train split and a held-out split."""
    root = tmp_path_factory.mktemp("stills")
    rng = np.random.default_rng(0)
    for i in range(12):
        base = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        img = cv2.resize(base, (96, 96), interpolation=cv2.INTER_NEAREST)  # sharp blocky edges
        cv2.imwrite(str(root / f"img_{i:02d}.png"), img)
    return root


@pytest.fixture(scope="module")
def highfps(tmp_path_factory):
    """A 'high-frame-rate' clip: 60 frames of a square moving 2 px per frame over a texture."""
    root = tmp_path_factory.mktemp("highfps")
    rng = np.random.default_rng(1)
    bg = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (96, 64), interpolation=cv2.INTER_NEAREST)
    for t in range(60):
        f = bg.copy()
        x = 4 + 2 * (t % 30)
        f[20:40, x : x + 20] = (250, 250, 250)
        cv2.imwrite(str(root / f"{t:04d}.png"), f)
    return root


def run(tmp_path, *args):
    # One thread: on these small crops a second costs more in hand-offs than it saves (issue 30).
    return distill.main(["--out", str(tmp_path / "run"), "--workers", "0", "--threads", "1", *args])


@pytest.fixture(scope="module")
def val_sets(tmp_path_factory):
    """Set 1 (real-blur pairs: three 'scenes') and set 3 (sharp frames) in the layouts of
    ../shared/data/gopro_real_pairs_val and gopro_test_sharp_frames, made here."""
    root = tmp_path_factory.mktemp("val")
    rng = np.random.default_rng(7)
    for kind in ("blur", "sharp"):
        (root / "pairs" / kind).mkdir(parents=True)
    (root / "sharp_frames").mkdir()
    for i in range(3):
        sharp = cv2.resize(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), (96, 64), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(root / "pairs" / "sharp" / f"scene{i}.png"), sharp)
        cv2.imwrite(str(root / "pairs" / "blur" / f"scene{i}.png"), cv2.blur(sharp, (9, 1)))
        cv2.imwrite(str(root / "sharp_frames" / f"frame{i}.png"), sharp)
    return {"pairs": root / "pairs", "sharp": root / "sharp_frames"}


def read_log(tmp_path):
    with open(tmp_path / "run" / "log.csv") as f:
        return list(csv.DictReader(f))


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        distill.parse_config(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for f in distill.dataclasses.fields(distill.DistillConfig):
        assert "--" + f.name.replace("_", "-") in text
    assert "Examples:" in text


def test_motion_strong_reaches_the_motion_samples_and_a_bad_range_is_one_line(stills, capsys):
    cfg = distill.parse_config(["--motion", str(stills), "--motion-strong", "3", "12"])
    train, _ = distill.build_data(cfg, 8)
    (motion,) = train.datasets
    assert motion.strengths["strong"][1] == (3.0, 12.0) and motion.max_extent == 12.0  # objects move no farther either
    with pytest.raises(SystemExit):
        distill.parse_config(["--motion", str(stills), "--motion-strong", "12", "3"])
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("--motion-strong 12.0 3.0: give the smallest and largest extent in px, 0 < MIN <= MAX (e.g. 4 26)")


def test_config_file_unknown_key_is_an_error(tmp_path, stills, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('steps = 5\nbatchsize = 3\n')
    with pytest.raises(SystemExit):
        distill.parse_config(["--config", str(cfg), "--stills", str(stills)])
    assert "unknown keys batchsize" in capsys.readouterr().err
    cfg.write_text('steps = 5\nlr = 0.01\n')
    c = distill.parse_config(["--config", str(cfg), "--stills", str(stills), "--steps", "7"])
    assert (c.steps, c.lr) == (7, 0.01)  # the flag wins over the file


def test_no_data_is_an_error(capsys):
    with pytest.raises(SystemExit):
        distill.parse_config([])
    assert "no training data" in capsys.readouterr().err


def test_dry_run_writes_a_loadable_student(tmp_path, stills):
    result = run(tmp_path, "--dry-run", "--stills", str(stills))
    ckpt = tmp_path / "run" / "dry-run" / "student.pt"
    net = load_student(ckpt)
    assert torch.isfinite(net(torch.rand(1, 3, 40, 40))).all()
    assert set(result["validation"]) == {"input", "unsharp", "student", "ground truth"}  # 2-frame clips: warping error
    assert list((tmp_path / "run" / "dry-run" / "samples").glob("*.png"))


def test_twenty_steps_lower_the_loss_and_resume_continues(tmp_path, highfps):
    common = ["--highfps", str(highfps), "--highfps-window", "3", "5", "--crop", "64", "--curriculum", "64",
              "--batch", "4", "--val-items", "2", "--eval-every", "100", "--lr", "3e-3", "--warmup", "2", "--min-edge-energy", "0"]
    run(tmp_path, *common, "--steps", "20", "--ckpt-every", "10")
    rows = read_log(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(1, 21))
    first = np.mean([float(r["pixel"]) for r in rows[:4]])
    last = np.mean([float(r["pixel"]) for r in rows[-4:]])
    assert last < first, (first, last)
    assert float(rows[0]["temporal"]) > 0  # clips of 2 frames feed the temporal loss
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["step"] == 20

    # a log begun by an older livesharp, before the fft term: the resumed rows keep its columns
    log = tmp_path / "run" / "log.csv"
    old_columns = [c for c in distill.LOG_COLUMNS if c != "fft"]
    with open(log, "w", newline="") as f:
        w = csv.DictWriter(f, old_columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    run(tmp_path, *common, "--steps", "24", "--ckpt-every", "2", "--resume")
    rows = read_log(tmp_path)
    assert [int(r["step"]) for r in rows] == list(range(1, 25))  # continued at 21, nothing redone
    assert all(list(r) == old_columns and None not in r.values() for r in rows)  # no row longer than the header
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 24


def test_last_checkpoint_is_a_student_every_command_loads(tmp_path, stills):
    """One checkpoint format: training's last.pt is self-describing (the EMA weights), so
    --model, --init and load_student take it like student.pt."""
    run(tmp_path, "--dry-run", "--stills", str(stills))
    last = tmp_path / "run" / "dry-run" / "last.pt"
    net = load_student(last)
    final = load_student(tmp_path / "run" / "dry-run" / "student.pt")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), final.state_dict().values()))
    ckpt = torch.load(last, weights_only=True)
    assert {"model", "model_args", "student", "optimizer", "step", "command"} <= set(ckpt)
    result = distill.main(["--stills", str(stills), "--dry-run", "--init", str(last), "--out", str(tmp_path / "ft"), "--workers", "0"])
    assert result["validation"]
    assert load_student(tmp_path / "ft" / "dry-run" / "student.pt").cfg == net.cfg  # --init's architecture, as it was


def test_threads_are_the_runs_own(tmp_path, stills):
    """--threads holds for the run: a caller in the same process (a test, a notebook) gets its
    own thread count back, even when the run fails."""
    torch.set_num_threads(2)
    run(tmp_path, "--dry-run", "--stills", str(stills))
    assert torch.get_num_threads() == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no image paths"):
        run(tmp_path, "--dry-run", "--stills", str(tmp_path / "empty"))
    assert torch.get_num_threads() == 2


def test_two_ranks_keep_one_log(tmp_path, stills):
    """torchrun with two CPU ranks (gloo), as train/README.md measures: one header, one row a step."""
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "train.distill", "--stills", str(stills),
                        "--crop", "32", "--curriculum", "32", "--batch", "2", "--steps", "3", "--workers", "0", "--threads", "1",
                        "--eval-every", "100", "--min-edge-energy", "0", "--out", str(out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.reader((out / "log.csv").read_text().splitlines()))
    assert rows[0] == distill.LOG_COLUMNS and [int(row[0]) for row in rows[1:]] == [1, 2, 3]


def test_zero_mean_turns_on_for_an_init_checkpoint_and_is_recorded(tmp_path, stills):
    run(tmp_path, "--dry-run", "--stills", str(stills), "--variant", "conv24-3")
    last = tmp_path / "run" / "dry-run" / "last.pt"
    assert not load_student(last).cfg.zero_mean  # conv24-3: off
    distill.main(["--stills", str(stills), "--dry-run", "--init", str(last), "--zero-mean", "--out", str(tmp_path / "ft"), "--workers", "0"])
    tuned = load_student(tmp_path / "ft" / "dry-run" / "student.pt")
    assert tuned.cfg.zero_mean  # the checkpoint describes the network that was trained
    x = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(tuned(x).mean((-2, -1)), x.mean((-2, -1)), atol=1e-5, rtol=0)


def test_motion_and_camera_sources_train(tmp_path, stills, highfps):
    result = run(tmp_path, "--dry-run", "--motion", str(stills), "--highfps", str(highfps), "--highfps-window", "3", "5", "--camera")
    assert result["validation"]  # the clip's held-out frames are still reported


def test_checkpoint_is_chosen_on_unseen_scenes_and_harm(tmp_path, stills, val_sets):
    result = run(tmp_path, "--motion", str(stills), "--crop", "64", "--curriculum", "64", "--batch", "2", "--steps", "4",
                 "--eval-every", "2", "--ckpt-every", "2", "--warmup", "1", "--val-real", str(val_sets["pairs"]), "--val-sharp", str(val_sets["sharp"]))
    history = result["history"]
    assert set(history) == {2, 4}
    for h in history.values():
        assert {"real", "sharp", "score"} <= set(h) and "clip" not in h  # no --highfps: no set 2
        assert h["score"] == pytest.approx(evaluate.selection_score({"real": {"student": h["real"]}, "sharp": {"student": h["sharp"]}}))
    best_step = max(history, key=lambda k: history[k]["score"])
    assert result["best"]["step"] == best_step
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    shipped = torch.load(tmp_path / "run" / "student.pt", weights_only=True)
    assert best["step"] == best_step and shipped["step"] == best_step  # student.pt is the best checkpoint
    assert shipped["score"] == pytest.approx(history[best_step]["score"])
    for step, h in history.items():  # every scored checkpoint is kept, not only the best
        kept = torch.load(tmp_path / "run" / f"step{step:06d}.pt", weights_only=True)
        assert kept["step"] == step and kept["score"] == pytest.approx(h["score"])


def test_selection_score_is_set1_gain_less_set3_harm_never_set2():
    good_real = {"student": {"gain": 0.5}}
    clean = {"student": {"psnr": 40.0, "shift": 0.1}}
    assert evaluate.selection_score({"real": good_real, "sharp": clean}) == pytest.approx(0.5)
    # harm costs: 2 dB below 35 and 0.7 grey levels past 0.3
    assert evaluate.selection_score({"real": good_real, "sharp": {"student": {"psnr": 33.0, "shift": -1.0}}}) == pytest.approx(0.5 - 2.0 - 0.7)
    # the training scene's own frames never enter the score
    assert evaluate.selection_score({"real": good_real, "sharp": clean, "clip": {"student": {"gain": 9.0}}}) == pytest.approx(0.5)


def test_evaluate_reports_three_sets_per_image(tmp_path, highfps, val_sets, capsys):
    from livesharp.model import Student, VARIANTS

    save_student(Student(VARIANTS["tiny"]), tmp_path / "ident.pt")
    out = tmp_path / "eval.json"
    code = evaluate.main(["--model", str(tmp_path / "ident.pt"), "--real-pairs", str(val_sets["pairs"]), "--data", str(highfps),
                          "--window", "3", "5", "--sharp", str(val_sets["sharp"]), "--json", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    # set 1 first, then the training scene, labelled as such, then harm
    assert text.index("1. real blur, unseen scenes") < text.index("same scene as training") < text.index("3. do no harm")
    for i in range(3):
        assert f"scene{i}.png" in text  # one row per image of set 1
    sets = json.loads(out.read_text())["sets"]
    assert list(sets) == ["real", "clip", "sharp"]
    real = sets["real"]
    assert real["ident"]["gain"] == pytest.approx(0.0, abs=1e-9) and real["unsharp"]["worst_gain"] <= real["unsharp"]["gain"]
    assert set(real["ident"]["items_detail"]) == {"scene0.png", "scene1.png", "scene2.png"}
    # sharp input: an identity model is perfect and keeps brightness; unsharp masking is not
    sharp = sets["sharp"]
    assert sharp["input"]["items"] == 3 + len(range(*evaluate.split_highfps(60, max_window=5)[1], 8))  # folder + clip tail
    assert sharp["ident"]["psnr"] == 100.0 and sharp["ident"]["shift"] == 0.0
    assert sharp["unsharp"]["psnr"] < 60 and "gain" not in sharp["unsharp"]


def test_evaluate_without_any_set_is_one_line(tmp_path, capsys):
    assert evaluate.main(["--model", "tiny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: nothing to evaluate on") and err.count("\n") == 1


def test_error_bands_say_where_a_blur_lies_and_what_a_correction_removes_there(tmp_path, val_sets, capsys):
    """A Gaussian blur's error lies at fine periods; a method that takes half of it away removes
    6 dB in every band that holds it, the input nothing. ``--bands`` prints it for each model."""
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    blur = cv2.GaussianBlur(sharp, (0, 0), 1.5)
    item = {"blur": evaluate.from_uint8(blur)[None], "sharp": evaluate.from_uint8(sharp)[None], "source": "noise"}
    half = lambda x: x + 0.5 * (item["sharp"] - x)  # noqa: E731
    bands = evaluate.error_bands(evaluate.evaluate({"input": lambda x: x, "half": half}, [item], bands=True))
    share = np.array(bands["share"])
    assert share.sum() == pytest.approx(1.0) and share[-2:].sum() > 0.8  # periods under 8 px
    assert bands["input"] == [0.0] * 6
    for s, removed in zip(share, bands["half"]):
        if s > 0.05:
            assert removed == pytest.approx(20 * np.log10(2), abs=0.1)
    save_student(Student(VARIANTS["tiny"]), tmp_path / "ident.pt")
    assert evaluate.main(["--model", str(tmp_path / "ident.pt"), "--real-pairs", str(val_sets["pairs"]), "--bands"]) == 0
    table = capsys.readouterr().out.split("dB removed, by period")[1].splitlines()
    assert table[0].split()[-3:] == ["<", "4", "px"] and table[1].startswith("the blur error there")
    assert table[3].split() == ["ident", *["+0.00"] * 6]  # unsharp's row, then the model's: an identity removes nothing


def test_resume_without_checkpoint_says_so(tmp_path, stills):
    with pytest.raises(SystemExit) as e:
        run(tmp_path, "--stills", str(stills), "--resume", "--steps", "2")
    assert "no checkpoint" in str(e.value.code)


def test_evaluate_on_a_gopro_folder(tmp_path, capsys):
    """A tiny GoPro-layout test split; the 'model' is a student that learned nothing (identity)."""
    rng = np.random.default_rng(2)
    for seq in ("GOPR0001_00_00", "GOPR0002_00_00"):
        for kind in ("blur", "sharp"):
            (tmp_path / "gopro" / "test" / seq / kind).mkdir(parents=True)
        for i in range(3):
            sharp = cv2.resize(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8), (64, 48), interpolation=cv2.INTER_NEAREST)
            blur = cv2.blur(sharp, (7, 1))
            cv2.imwrite(str(tmp_path / "gopro" / "test" / seq / "sharp" / f"{i:06d}.png"), sharp)
            cv2.imwrite(str(tmp_path / "gopro" / "test" / seq / "blur" / f"{i:06d}.png"), blur)
    from livesharp.model import Student, VARIANTS, save_student

    save_student(Student(VARIANTS["tiny"]), tmp_path / "ident.pt")
    out = tmp_path / "eval.json"
    code = evaluate.main(["--data", str(tmp_path / "gopro"), "--model", str(tmp_path / "ident.pt"), "--clip-len", "2", "--json", str(out)])
    assert code == 0
    table = capsys.readouterr().out
    assert "warp_error" in table and "unsharp" in table
    res = json.loads(out.read_text())["results"]
    # A fresh student is the identity, so it scores exactly what the input scores.
    assert res["ident"]["psnr"] == pytest.approx(res["input"]["psnr"], abs=1e-6)
    assert res["input"]["items"] == 4  # two sequences x two 2-frame clips
    assert res["input"]["warp_error"] >= 0
    # the sharp frames' own flicker, through the same flow: a row with nothing else in it
    assert "ground truth" in table and set(res["ground truth"]) == {"warp_error", "items"}
    assert res["ground truth"]["warp_error"] > 0 and res["ground truth"]["items"] == 4


def test_evaluate_writes_json_only_where_asked(tmp_path, monkeypatch, capsys):
    # It used to write eval_<model>.json into the working folder, over any earlier one.
    (tmp_path / "sharp").mkdir()
    for i in range(2):
        cv2.imwrite(str(tmp_path / "sharp" / f"{i}.png"), np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    from livesharp.model import Student, VARIANTS, save_student

    save_student(Student(VARIANTS["tiny"]), tmp_path / "ident.pt")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert evaluate.main(["--sharp", "sharp", "--model", "ident.pt"]) == 0
    assert "sharp" in capsys.readouterr().out and sorted(p.name for p in tmp_path.iterdir()) == before
    assert evaluate.main(["--sharp", "sharp", "--model", "ident.pt", "--json", "out.json"]) == 0
    assert json.loads((tmp_path / "out.json").read_text())["sets"]["sharp"]["ident"]["items"] == 2


def test_evaluate_bad_model_is_one_line(tmp_path, capsys):
    assert evaluate.main(["--data", str(tmp_path), "--model", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_init_tiny_fine_tunes_the_shipped_weights(tmp_path, stills):
    distill.main(["--stills", str(stills), "--dry-run", "--init", "tiny", "--out", str(tmp_path / "ft"), "--workers", "0"])
    tuned, shipped = load_student(tmp_path / "ft" / "dry-run" / "student.pt").state_dict(), load_student("tiny").state_dict()
    assert max((tuned[k] - shipped[k]).abs().max().item() for k in shipped) < 0.01  # two small steps from the shipped model


def test_init_fine_tunes_from_a_checkpoint_and_bad_init_is_one_line(tmp_path, stills, capsys):
    net = load_student("tiny")
    with torch.no_grad():
        for p in net.parameters():  # far from the fresh initialisation a run without --init starts at
            p.add_(0.3 * torch.randn_like(p))
    start = tmp_path / "start.pt"
    save_student(net, start)
    result = distill.main(["--highfps", "--stills", str(stills), "--dry-run", "--init", str(start), "--out", str(tmp_path / "ft"), "--workers", "0"])
    tuned = load_student(tmp_path / "ft" / "dry-run" / "student.pt")
    # two steps from the start point: close to it, not to a fresh identity student
    a, b = load_student(start).state_dict(), tuned.state_dict()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 0.05
    assert any((a[k] != b[k]).any() for k in a) and result["validation"]
    with pytest.raises(SystemExit, match="error: --init"):
        distill.main(["--highfps", "--stills", str(stills), "--dry-run", "--init", str(tmp_path / "nothing.pt"), "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("bands, variant", [(1, "tiny-detail"), (2, "tiny-detail2")])
def test_detail_adds_the_path_to_an_init_checkpoint_and_trains_it(tmp_path, stills, bands, variant):
    """--detail N gives the --init student a DetailPath of N bands; the path's weights are trained
    and the checkpoint describes the network that was trained (it loads as that architecture)."""
    distill.main(["--stills", str(stills), "--dry-run", "--init", "tiny", "--detail", str(bands), "--out", str(tmp_path / "ft"), "--workers", "0"])
    ckpt = torch.load(tmp_path / "ft" / "dry-run" / "last.pt", weights_only=True)
    tuned = load_student(tmp_path / "ft" / "dry-run" / "student.pt")
    assert tuned.cfg == VARIANTS[variant]
    if bands == 2:  # two bands stay the masks they start as: their energies are read against fixed scales
        assert torch.equal(ckpt["student"]["detail.highpass.weight"], Student(VARIANTS[variant]).detail.highpass.weight)
    moved = [k for k in ("detail.gain.weight", "detail.frame_gain.weight") if ckpt["student"][k].abs().max() > 0]
    assert moved  # started at zero: the training steps reached the path


def test_grow_gives_the_init_student_more_blocks_and_trains_them(tmp_path, stills):
    """--grow small turns the shipped tiny, given a detail path, into small: the checkpoint loads
    as small and its new blocks, which start as the identity, are trained. A variant it cannot
    grow into, or a field --grow cannot change, is one error line."""
    distill.main(["--stills", str(stills), "--dry-run", "--init", "tiny", "--detail", "1", "--grow", "small",
                  "--out", str(tmp_path / "ft"), "--workers", "0"])
    ckpt = torch.load(tmp_path / "ft" / "dry-run" / "last.pt", weights_only=True)
    assert load_student(tmp_path / "ft" / "dry-run" / "student.pt").cfg == VARIANTS["small"]
    assert ckpt["student"]["middle.11.beta"].abs().max() > 0  # started at zero
    with pytest.raises(SystemExit, match="error: --grow conv32: a student grows only into"):
        distill.main(["--stills", str(stills), "--dry-run", "--init", "tiny", "--grow", "conv32", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="error: --grow width=24: 'width=24': give FIELD=VALUE with FIELD one of dec_blocks, edge_kernel"):
        distill.main(["--stills", str(stills), "--dry-run", "--init", "tiny", "--grow", "width=24", "--out", str(tmp_path / "x")])

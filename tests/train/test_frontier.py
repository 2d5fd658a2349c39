"""train.frontier: a variant trained from scratch on the fixed recipe, then scored in the table,
on a data root laid out like ../shared/data that the test makes (2 steps, real training)."""

import json

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import write_video
from train import frontier

STILL_FOLDERS = ("urban100_hr_q95", "div2k_valid_subset", "bsd100_hr_q95", "kodak24_crop500", "mcmaster18", "set5_set14", "pkg_images")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared_data")
    rng = np.random.default_rng(3)

    def texture(h, w):
        return cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)

    for name in STILL_FOLDERS:
        (root / name).mkdir()
        for i in range(2):
            cv2.imwrite(str(root / name / f"{i}.png"), texture(192, 192))
    clip = root / "gopro240_GOPR0477_11_00" / "GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv"
    clip.parent.mkdir()
    write_video(clip, size=(192, 144), frames=40, rate=30)
    for kind in ("blur", "sharp"):
        (root / "gopro_real_pairs_val" / kind).mkdir(parents=True)
    (root / "gopro_test_sharp_frames").mkdir()
    for i in range(2):
        sharp = texture(64, 96)
        cv2.imwrite(str(root / "gopro_real_pairs_val" / "sharp" / f"s{i}.png"), sharp)
        cv2.imwrite(str(root / "gopro_real_pairs_val" / "blur" / f"s{i}.png"), cv2.blur(sharp, (9, 1)))
        cv2.imwrite(str(root / "gopro_test_sharp_frames" / f"f{i}.png"), sharp)
    return root


def test_a_variant_trains_from_fresh_weights_and_its_scores_reach_the_table(tmp_path, data_root, capsys, monkeypatch):
    import functools

    from train import quantize

    out = tmp_path / "frontier"
    assert frontier.main(["train", "conv32-m2", "--steps", "2", "--out", str(out), "--data-root", str(data_root)]) == 0
    run = out / "conv32-m2"
    init = torch.load(run / "init.pt", weights_only=True)
    assert init["model_args"]["middle_blocks"] == 2 and init["model_args"]["zero_mean"]
    assert not init["model"]["ending.weight"].any()  # from scratch: the fresh student, the identity
    trained = torch.load(run / "student.pt", weights_only=True)
    assert trained["model"]["ending.weight"].any()  # two real steps moved it
    assert trained["step"] == 2 and "--lr 2e-3" in trained["command"] and "--linear-fraction 0.15" in trained["command"]

    # A second call skips what is done instead of training it again.
    before = (run / "student.pt").stat().st_mtime_ns
    assert frontier.main(["train", "conv32-m2", "--steps", "2", "--out", str(out), "--data-root", str(data_root)]) == 0
    assert (run / "student.pt").stat().st_mtime_ns == before
    assert "conv32-m2: done, skipped" in capsys.readouterr().err

    # timed for real (int8 calibrated on the test's stills), as the card's table is; no speed is
    # asserted, so one timed run of each graph after its warm-up (not the card's 7 x 8), and int8
    # calibrated on 4 crops of 64 (not 16 of 256): 116 s -> about 35 s on 2 busy cores
    monkeypatch.setattr(quantize, "time_720p", functools.partial(quantize.time_720p, repeats=1, runs=1))
    calibrate = quantize.calibration_frames
    monkeypatch.setattr(quantize, "calibration_frames", lambda dirs, **kw: calibrate(dirs, **kw | dict(count=4, crop=64)))
    assert frontier.main(["table", "conv32-m2", "naf16", "--out", str(out), "--data-root", str(data_root)]) == 0
    text = capsys.readouterr().out
    row = next(line for line in text.splitlines() if line.startswith("| `conv32-m2`"))
    real = trained["validation"]["real"]["student"]
    assert f"{real['gain']:+.3f} ({real['worst_gain']:+.3f})" in row
    assert "| `naf16` |" in text and "not trained" in text
    saved = json.loads((out / "frontier.json").read_text())
    assert saved["conv32-m2"]["real"]["gain"] == pytest.approx(real["gain"])
    assert saved["naf16"]["real"] is None
    assert all(saved[n]["ms_720p"]["float"] > 0 and saved[n]["ms_720p"]["int8"] > 0 for n in ("conv32-m2", "naf16"))


def test_an_unknown_variant_is_named(capsys):
    with pytest.raises(SystemExit) as e:
        frontier.main(["table", "conv99"])
    assert e.value.code == 2
    assert "unknown variant 'conv99'" in capsys.readouterr().err

"""train.strength: the blur-strength table of the model card."""

import math

import torch

from train.strength import histogram, strength_db, table


def _pair(noise: float) -> dict:
    sharp = torch.full((1, 3, 8, 8), 0.5)
    return {"blur": sharp + noise, "sharp": sharp, "source": "x"}


def test_strength_is_the_inputs_psnr_and_identical_pairs_are_sharp():
    assert math.isinf(strength_db(_pair(0.0)))
    assert abs(strength_db(_pair(0.01)) - 40.0) < 1e-3  # MSE 1e-4


def test_every_sample_is_counted_once_in_a_bin_or_as_sharp():
    values = [22.0, 26.0, 26.5, 41.0, float("inf")]
    shares = histogram(values)
    assert shares[0] == 0.2 and shares[1] == 0.4 and shares[-1] == 0.2
    assert abs(sum(shares) - 0.8) < 1e-9  # the fifth is sharp -> sharp
    row = table({"k": values}).splitlines()[-1]
    assert "| 20% |" in row and "| 40% |" in row and row.endswith("| 20% | 26.2 |")


def test_with_models_it_reports_each_ones_gain_on_the_same_samples(tmp_path, capsys):
    """--model: a fresh student (the identity) gains exactly 0 on every blurred sample, the
    shipped one something else, and the table has a column per model."""
    import cv2
    import numpy as np

    from livesharp.model import VARIANTS, Student, save_student
    from train import strength

    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"s{i}.png"), cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST))
    fresh = tmp_path / "fresh.pt"
    save_student(Student(VARIANTS["tiny"]), fresh)
    result = strength.main(["--count", "6", "--model", str(fresh), "--model", "tiny", "--motion", str(tmp_path),
                            "--crop", "64", "--curriculum", "64", "--sharp-fraction", "0", "--steps", "1"])
    motion = result["gains"]["motion"]
    assert len(motion) == 6
    assert all(gains[0] == 0.0 for _, gains in motion)
    assert any(abs(gains[1]) > 0.01 for _, gains in motion)
    assert f"| gain of {fresh} | gain of tiny |" in capsys.readouterr().out

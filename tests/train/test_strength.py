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

"""train.probe: a student learns one known blur in a few real steps, on stills the test makes."""

import cv2
import numpy as np
import pytest
import torch

from livesharp.model import load_student
from train import probe


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(5)
    for name, count in (("train", 6), ("held_out", 2)):
        (root / name).mkdir()
        for i in range(count):
            img = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(str(root / name / f"{i}.png"), img)
    return root


def test_a_known_blur_is_learnt(folders, tmp_path):
    torch.set_num_threads(2)
    out = tmp_path / "probe.pt"
    gains = probe.main(["--blur", "fixed", "--steps", "80", "--eval-every", "40", "--crop", "32", "--threads", "1",
                        "--train", str(folders / "train"), "--held-out", str(folders / "held_out"), "--out", str(out)])
    assert sorted(gains) == [0, 40, 80]
    assert gains[80] > gains[0] + 0.1, gains  # 9 px smears over 8 px blocks: it learns to undo them (+0.17 dB in 60 steps)
    assert torch.get_num_threads() == 2
    # --out keeps the student it trained, with its gains and the command: scored again, it gains what it reported
    ckpt = torch.load(out, weights_only=True)
    assert ckpt["probe"] == gains and ckpt["command"].startswith("python -m train.probe --blur fixed")
    held_out = [probe.read_rgb(p) for p in probe.list_images([str(folders / "held_out")])]
    val = probe.batch(np.random.default_rng([0, 1]), held_out, "fixed", 64, 32)[:2]
    assert probe.gain(load_student(out), *val) == pytest.approx(gains[80], abs=1e-4)


def test_an_existing_out_is_not_replaced(folders, tmp_path, capsys):
    kept = tmp_path / "mine.pt"
    kept.write_bytes(b"a user's file")
    with pytest.raises(SystemExit) as e:
        probe.main(["--crop", "32", "--train", str(folders / "train"), "--held-out", str(folders / "held_out"), "--out", str(kept)])
    assert e.value.code == 2 and f"--out {kept} exists: give another path, or delete it first" in capsys.readouterr().err
    assert kept.read_bytes() == b"a user's file"


def test_stills_too_small_are_one_line(folders, tmp_path, capsys):
    (tmp_path / "tiny").mkdir()
    cv2.imwrite(str(tmp_path / "tiny" / "a.png"), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(SystemExit, match="no stills of at least 66 px a side in --held-out"):
        probe.main(["--crop", "32", "--train", str(folders / "train"), "--held-out", str(tmp_path / "tiny")])


@pytest.mark.parametrize("at", ["middle", "last"])
def test_the_side_task_trains_the_network(folders, tmp_path, at):
    """--aux's head is thrown away, so what it leaves is its pull on the network's own weights."""
    run = lambda name, *extra: probe.main(["--blur", "angle", "--steps", "6", "--eval-every", "6", "--crop", "32", "--threads", "1",
                                           "--train", str(folders / "train"), "--held-out", str(folders / "held_out"),
                                           "--out", str(tmp_path / name), *extra])
    run("plain.pt")
    run("aux.pt", "--aux", "1", "--aux-at", at)
    plain, aux = (torch.load(tmp_path / n, weights_only=True)["model"] for n in ("plain.pt", "aux.pt"))
    assert plain.keys() == aux.keys()  # the head is not part of the student
    assert any(not torch.equal(plain[k], aux[k]) for k in plain)

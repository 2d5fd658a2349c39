"""train.detail_fit: the per-frame sharpening stage, fit in closed form on a real student's output."""

import json

import cv2
import numpy as np
import pytest
import torch

from livesharp import detail
from livesharp.export import model_digest
from livesharp.model import load_student
from tests.conftest import natural
from train import detail_fit
from train.soft import video_sharpness


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    rng = np.random.default_rng(0)
    out = {}
    for name, count, size in (("train", 12, 192), ("val", 4, 128)):
        root = tmp_path_factory.mktemp(name)
        for i in range(count):
            img = natural(rng, size, size)
            # held-out frames as sharp as the video-sharp targets train.soft makes of stills
            cv2.imwrite(str(root / f"{name}{i}.png"), video_sharpness(img, 1.0, 0.7) if name == "val" else img)
        out[name] = root
    return out


def test_the_stage_sharpens_soft_frames_the_student_leaves_soft_and_leaves_sharp_ones(folders, capsys):
    """Fit on softened training pictures, the stage gains more than the student alone on set 4's
    recipes applied to unseen pictures, and leaves sharp ones (as sharp as its targets) nearly alone."""
    torch.set_num_threads(1)
    result = detail_fit.main(["--count", "480", "--soft", str(folders["train"]), "--soft-sharp-fraction", "0.3",
                              "--crop", "96", "--curriculum", "96", "--clip-len", "1", "--min-edge-energy", "0",
                              "--val-soft", str(folders["val"]), "--val-sharp", str(folders["val"])])
    soft = result["sets"]["soft"]
    assert soft["student + stage"]["mean"] > soft["student"]["mean"] + 0.5
    assert result["sets"]["sharp"]["student + stage"]["psnr"] > 35
    printed = capsys.readouterr().out
    assert "student + stage" in printed and "best unsharp" in printed


def test_an_existing_out_file_is_refused_before_anything_is_fitted(folders, tmp_path, capsys):
    out = tmp_path / "fit.pt"
    out.write_bytes(b"keep me")
    with pytest.raises(SystemExit) as e:
        detail_fit.main(["--out", str(out), "--soft", str(folders["train"])])
    assert e.value.code == 2 and out.read_bytes() == b"keep me"
    assert f"--out {out} exists: give another path" in capsys.readouterr().err


def test_a_missing_folder_is_one_line_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        detail_fit.main(["--count", "4", "--soft", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "nowhere" in err and "Traceback" not in err


def test_a_frames_summary_is_the_normal_equations_of_its_terms():
    """The fit adds up each frame's A A^T and A b without building A (each band meets every
    colour); they must be what A itself gives."""
    rng = np.random.default_rng(2)
    x, y, target = natural(rng, 40, 40), natural(rng, 40, 40), natural(rng, 40, 40)
    gram, rhs = detail_fit.sufficient(x, y, target)
    r, *bands = detail.terms(x, y, detail_fit.BANDS)
    a = np.stack([r.ravel(), *[np.repeat(b[..., None], 3, 2).ravel() for b in bands]]).astype(np.float64)
    b = (target.astype(np.float64) - x).ravel()
    assert np.allclose(gram, a @ a.T, rtol=1e-9) and np.allclose(rhs, a @ b, rtol=1e-9)


def test_the_fit_saves_the_stage_the_product_loads(folders, tmp_path):
    """--out writes the JSON livesharp reads, with the command that made it and the weights it was fit on."""
    out = tmp_path / "stage.json"
    result = detail_fit.main(["--count", "24", "--soft", str(folders["train"]), "--crop", "96", "--curriculum", "96",
                              "--clip-len", "1", "--min-edge-energy", "0", "--out", str(out)])
    stage, digest = detail.load_stage(out)
    assert np.allclose(stage.weights, result["fit"].weights) and stage.bands == detail_fit.BANDS
    assert digest == model_digest(load_student("tiny"))
    assert "train.detail_fit" in json.loads(out.read_text())["command"]


def test_kept_samples_fit_the_same_stage_without_drawing_them_again(folders, tmp_path):
    """--keep writes the samples the fit read; --from fits on them: the same stage, and its JSON
    says how the samples were drawn."""
    common = ["--count", "24", "--crop", "96", "--curriculum", "96", "--clip-len", "1", "--min-edge-energy", "0"]
    drawn = detail_fit.main([*common, "--soft", str(folders["train"]), "--keep", str(tmp_path / "kept")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # published whole, no partial folder left
    assert np.load(tmp_path / "kept" / "x.npy").shape == (24, 96, 96, 3)
    again = detail_fit.main([*common, "--from", str(tmp_path / "kept"), "--out", str(tmp_path / "stage.json")])
    assert np.array_equal(again["fit"].weights, drawn["fit"].weights)
    saved = json.loads((tmp_path / "stage.json").read_text())
    assert "--keep" in saved["samples_command"] and "--from" in saved["command"]


def test_count_takes_the_first_kept_samples_and_no_more_than_were_kept(folders, tmp_path, capsys):
    """--from with --count fits on that many of the kept samples (it once fit on all of them
    whatever --count said), and asking for more than were kept is refused in one line."""
    common = ["--crop", "96", "--curriculum", "96", "--clip-len", "1", "--min-edge-energy", "0"]
    detail_fit.main([*common, "--count", "24", "--soft", str(folders["train"]), "--keep", str(tmp_path / "kept")])
    part = detail_fit.main([*common, "--count", "12", "--from", str(tmp_path / "kept")])
    x, y, target = (np.load(tmp_path / "kept" / f"{k}.npy")[:12] for k in detail_fit.KEPT)
    summaries = [detail_fit.sufficient(*f) for f in zip(x, y, target)]
    first = detail_fit.fit(np.array([detail.frame_stats(f, detail_fit.STAT_SIGMAS) for f in x]),
                           np.array([g for g, _ in summaries]), np.array([h for _, h in summaries]), 3e-5)
    assert np.allclose(part["fit"].weights, first.weights)
    with pytest.raises(SystemExit) as e:
        detail_fit.main([*common, "--count", "25", "--from", str(tmp_path / "kept")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "only 24 samples are kept" in err and "Traceback" not in err


def test_several_kept_draws_fit_together(folders, tmp_path):
    """--from A B fits on the samples of both draws, as one fit over all of them, and says how
    each was drawn."""
    common = ["--count", "10", "--crop", "96", "--curriculum", "96", "--clip-len", "1", "--min-edge-energy", "0", "--soft", str(folders["train"])]
    detail_fit.main([*common, "--keep", str(tmp_path / "a")])
    detail_fit.main([*common, "--seed", "5", "--keep", str(tmp_path / "b")])
    both = detail_fit.main(["--from", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "stage.json")])
    x, y, target = (np.concatenate([np.load(tmp_path / d / f"{k}.npy") for d in "ab"]) for k in detail_fit.KEPT)
    summaries = [detail_fit.sufficient(*f) for f in zip(x, y, target)]
    union = detail_fit.fit(np.array([detail.frame_stats(f, detail_fit.STAT_SIGMAS) for f in x]),
                           np.array([g for g, _ in summaries]), np.array([h for _, h in summaries]))
    assert len(x) == 20 and np.allclose(both["fit"].weights, union.weights)
    made = json.loads((tmp_path / "stage.json").read_text())["samples_command"]
    assert len(made) == 2 and "--seed 5" in made[1]


def test_samples_kept_through_other_weights_are_refused(folders, tmp_path, capsys):
    from tests.livesharp.conftest import make_random_student
    from livesharp.model import save_student

    detail_fit.main(["--count", "4", "--crop", "96", "--curriculum", "96", "--clip-len", "1", "--min-edge-energy", "0",
                     "--soft", str(folders["train"]), "--keep", str(tmp_path / "kept")])
    save_student(make_random_student(), tmp_path / "other.pt")
    with pytest.raises(SystemExit) as e:
        detail_fit.main(["--model", str(tmp_path / "other.pt"), "--from", str(tmp_path / "kept")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "its samples went through other weights (tiny)" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:  # and an existing folder is never written into
        detail_fit.main(["--count", "4", "--soft", str(folders["train"]), "--keep", str(tmp_path / "kept")])
    assert e.value.code == 2 and "--keep" in capsys.readouterr().err

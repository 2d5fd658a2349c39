"""train.detail_fit: the per-frame sharpening stage, fit in closed form on a real student's output."""

import cv2
import numpy as np
import pytest
import torch

from train import detail_fit
from train.soft import video_sharpness


def natural(rng: np.random.Generator, size: int) -> np.ndarray:
    """A picture with detail at every scale (noise blurred at several widths, summed: about 1/f)."""
    img = sum(cv2.GaussianBlur(rng.normal(size=(size, size, 3)).astype(np.float32), (0, 0), s) * s for s in (0.6, 1.5, 4, 10))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    rng = np.random.default_rng(0)
    out = {}
    for name, count, size in (("train", 12, 192), ("val", 4, 128)):
        root = tmp_path_factory.mktemp(name)
        for i in range(count):
            img = natural(rng, size)
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


def test_statistics_tell_a_blur_from_its_sharp_frame_and_ignore_contrast():
    rng = np.random.default_rng(1)
    sharp = torch.from_numpy(natural(rng, 128)).permute(2, 0, 1)[None].double() / 255
    blurred = detail_fit.gaussian(sharp.flatten(0, 1)[:, None], 1.6).view_as(sharp)
    s, b = detail_fit.frame_stats(sharp), detail_fit.frame_stats(blurred)
    assert (b[0, 1:4] - s[0, 1:4]).abs().max() > 0.2  # the blur steepens the fall-off of its detail
    half = detail_fit.frame_stats(0.25 + sharp / 2)
    assert torch.allclose(half[0, :5], s[0, :5], atol=0.02)  # slopes are ratios: contrast drops out


def test_a_missing_folder_is_one_line_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        detail_fit.main(["--count", "4", "--soft", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "nowhere" in err and "Traceback" not in err


def test_a_frames_summary_keeps_nothing_of_the_frame_alive():
    """The fit keeps one summary per sample; as NumPy views of torch products they held the
    frame's tensors (megabytes each) and a 2,600-sample fit ran out of 24 GB. They must own
    their few numbers."""
    x, y = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    g, h = detail_fit.sufficient(x, x.roll(1, -1), y)
    k = detail_fit.terms(x, x).shape[1]
    assert g.shape == (k, k) and h.shape == (k,)
    assert g.flags.owndata and h.flags.owndata

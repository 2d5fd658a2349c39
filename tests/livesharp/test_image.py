"""Tests for livesharp.pipeline.process_image on what photos and graphics carry besides 8-bit RGB:
transparency and 16 bits per channel. Every image is made here."""


import cv2
import numpy as np
import pytest

from livesharp.pipeline import process_image


def picture(h: int = 40, w: int = 48, depth=np.uint8) -> np.ndarray:
    """Blocks of random colour (edges to sharpen), RGB; 16-bit ones use all 16 bits."""
    top = 255 if depth == np.uint8 else 65535
    small = np.random.default_rng(1).integers(0, top + 1, (h // 8 + 1, w // 8 + 1, 3)).astype(depth)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def with_hidden_colour(rgb: np.ndarray) -> np.ndarray:
    """RGBA: the left half fully transparent (its colours hidden), a soft ramp on the right."""
    h, w = rgb.shape[:2]
    top = np.iinfo(rgb.dtype).max
    alpha = np.zeros((h, w), rgb.dtype)
    alpha[:, w // 2 :] = np.linspace(top // 4, top, w - w // 2).astype(rgb.dtype)
    return np.dstack([rgb, alpha])


def write(path, img: np.ndarray):
    code = cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR
    assert cv2.imwrite(str(path), cv2.cvtColor(img, code))
    return path


def read(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("suffix", [".png", ".tiff", ".webp"])
def test_alpha_is_kept_and_the_colour_under_it_untouched_by_an_identity_model(tmp_path, identity_student, suffix):
    rgba = with_hidden_colour(picture())
    src = write(tmp_path / "in.png", rgba)
    dst = tmp_path / f"out{suffix}"
    process_image(src, dst, model=identity_student(), device="cpu", backend="torch")
    out = read(dst)
    assert out.shape == rgba.shape  # four channels still
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    if suffix == ".webp":  # lossy, and libwebp does not keep what is fully transparent: compare what shows
        shown = rgba[..., 3] > 0
        assert np.abs(out[..., :3][shown].astype(int) - rgba[..., :3][shown]).mean() < 8
    else:  # lossless: every colour, hidden or not, as it was
        np.testing.assert_array_equal(out[..., :3], rgba[..., :3])


def test_alpha_is_copied_while_the_colour_is_sharpened(tmp_path):
    rgba = with_hidden_colour(picture())
    src = write(tmp_path / "in.png", rgba)
    process_image(src, tmp_path / "out.png", model="unsharp", device="cpu")
    out = read(tmp_path / "out.png")
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    assert not np.array_equal(out[..., :3], rgba[..., :3])


@pytest.mark.parametrize("suffix", [".png", ".tiff"])
def test_16_bit_stays_16_bit_and_exact_through_an_identity_model(tmp_path, identity_student, suffix):
    rgb = picture(depth=np.uint16)
    src = write(tmp_path / f"in{suffix}", rgb)
    process_image(src, tmp_path / f"out{suffix}", model=identity_student(), device="cpu", backend="torch")
    out = read(tmp_path / f"out{suffix}")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgb)


def test_16_bit_sharpened_keeps_the_low_bits(tmp_path):
    rgb = picture(depth=np.uint16)
    src = write(tmp_path / "in.png", rgb)
    process_image(src, tmp_path / "out.png", model="unsharp", device="cpu")
    out = read(tmp_path / "out.png")
    assert out.dtype == np.uint16 and not np.array_equal(out, rgb)
    assert np.count_nonzero(out % 257) > out.size // 2  # not 8-bit values scaled up


def test_16_bit_rgba_keeps_both(tmp_path, identity_student):
    rgba = with_hidden_colour(picture(depth=np.uint16))
    src = write(tmp_path / "in.png", rgba)
    process_image(src, tmp_path / "out.png", model=identity_student(), device="cpu", backend="torch")
    out = read(tmp_path / "out.png")
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, rgba)


@pytest.mark.parametrize("img, dst, warning", [
    ("rgba", "out.jpg", "transparency (an alpha channel) and .jpg cannot store it"),
    ("deep", "out.jpg", "16 bits per channel: .jpg stores 8 bits per channel"),
], ids=["alpha-to-jpeg", "16-bit-to-jpeg"])
def test_what_the_output_format_cannot_store_is_one_warning(tmp_path, livesharp_warnings, img, dst, warning):
    src = write(tmp_path / "in.png", with_hidden_colour(picture()) if img == "rgba" else picture(depth=np.uint16))
    process_image(src, tmp_path / dst, model="unsharp", device="cpu")
    warnings = livesharp_warnings
    assert len(warnings) == 1 and warning in warnings[0], warnings
    assert cv2.imread(str(tmp_path / dst)).shape == (40, 48, 3)


def test_side_by_side_of_an_rgba_image_keeps_alpha_for_both_panels(tmp_path):
    rgba = with_hidden_colour(picture())
    src = write(tmp_path / "in.png", rgba)
    process_image(src, tmp_path / "out.png", model="unsharp", device="cpu", side_by_side=True)
    out = read(tmp_path / "out.png")
    assert out.shape == (40, 96, 4)
    np.testing.assert_array_equal(out[..., 3], np.hstack([rgba[..., 3]] * 2))


def with_orientation(path, img: np.ndarray, orientation: int, fmt: str):
    """``img`` saved by Pillow with an EXIF Orientation tag (the file stores it un-turned)."""
    from PIL import ExifTags, Image

    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    Image.fromarray(img).save(path, fmt, exif=exif, **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {}))
    return path


def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """What EXIF's orientations 1-8 mean, written out (CIPA DC-008), for the test to check against."""
    return {1: a, 2: a[:, ::-1], 3: a[::-1, ::-1], 4: a[::-1], 5: a.swapaxes(0, 1), 6: a[::-1].swapaxes(0, 1),
            7: a[::-1, ::-1].swapaxes(0, 1), 8: a[:, ::-1].swapaxes(0, 1)}[orientation]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_jpeg_is_turned_upright_by_its_exif_orientation(tmp_path, identity_student, orientation):
    rgb = picture(40, 48)
    src = with_orientation(tmp_path / "in.jpg", rgb, orientation, "JPEG")
    process_image(src, tmp_path / "out.png", model=identity_student(), device="cpu", backend="torch")
    out = read(tmp_path / "out.png")
    assert out.shape == upright(rgb, orientation).shape
    assert np.abs(out.astype(int) - upright(rgb, orientation)).mean() < 3  # JPEG at quality 100


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_alpha_turns_with_the_picture_even_where_the_colour_is_uniform(tmp_path, identity_student, orientation):
    """A one-colour logo whose shape is all in its alpha: nothing in the colour says how it was turned."""
    rgba = with_hidden_colour(np.full((40, 48, 3), 200, np.uint8))
    rgba[..., :3] = 200  # the hidden half too
    src = with_orientation(tmp_path / "in.png", rgba, orientation, "PNG")
    process_image(src, tmp_path / "out.png", model=identity_student(), device="cpu", backend="torch")
    np.testing.assert_array_equal(read(tmp_path / "out.png"), upright(rgba, orientation))


@pytest.mark.parametrize("orientation, turn", [(3, 2), (6, -1), (8, 1)])
@pytest.mark.parametrize("deep", [False, True])
def test_a_tiff_is_turned_as_its_orientation_tag_says(tmp_path, orientation, turn, deep):
    """OpenCV 5 turns a TIFF by its tag itself: a half turn came out turned twice (as stored),
    a quarter turn was refused in five lines ("not an image OpenCV can read")."""
    from PIL import Image

    from livesharp.pipeline import process_image

    stored = np.zeros((40, 60), np.uint8)
    stored[:10, :20] = 255  # a block at the top left as stored
    picture = Image.fromarray(stored.astype(np.uint16) * 257) if deep else Image.fromarray(np.dstack([stored] * 3))
    picture.save(tmp_path / "in.tif", tiffinfo={274: orientation})
    process_image(tmp_path / "in.tif", tmp_path / "out.png", model="unsharp", strength=0.0)
    out = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    out = out if out.ndim == 2 else out[..., 0]
    assert out.dtype == (np.uint16 if deep else np.uint8)
    assert np.array_equal(out > out.max() // 2, np.rot90(stored, turn) > 127)  # TIFF: 3 half turn, 6 clockwise, 8 anticlockwise


def test_a_motion_photos_video_after_the_picture_is_named(tmp_path, livesharp_warnings):
    """A phone's motion photo is a JPEG with its clip appended after the picture's end: the clip
    was dropped from the output without a word."""
    from livesharp.pipeline import process_image

    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 120, np.uint8))
    clip = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40  # what follows stands for the clip's MP4
    (tmp_path / "motion.jpg").write_bytes(jpeg.tobytes() + clip)
    process_image(tmp_path / "motion.jpg", tmp_path / "out.jpg", model="unsharp")
    assert livesharp_warnings == ["motion.jpg: not copied: 10 KB of data after the picture (a motion photo's video?)"]
    (tmp_path / "plain.jpg").write_bytes(jpeg.tobytes())  # the same picture alone says nothing
    livesharp_warnings.clear()
    process_image(tmp_path / "plain.jpg", tmp_path / "plain_out.jpg", model="unsharp")
    assert livesharp_warnings == []


@pytest.mark.parametrize("deep", [False, True])
def test_a_grey_pngs_transparent_level_is_kept(tmp_path, deep):
    """A grey PNG marks one grey level transparent (tRNS); OpenCV reads that as alpha for colour
    PNGs only, so a grey one's transparency was dropped without a word."""
    from PIL import Image

    from livesharp.pipeline import process_image

    grey = np.full((32, 48), 90, np.uint8)
    grey[4:6, 10:15] = 17  # ten pixels at the transparent level
    picture = Image.fromarray(grey.astype(np.uint16) * 257) if deep else Image.fromarray(grey)
    picture.save(tmp_path / "in.png", transparency=17 * 257 if deep else 17)
    process_image(tmp_path / "in.png", tmp_path / "out.png", model="unsharp", strength=0.0)
    out = Image.open(tmp_path / "out.png")
    alpha = np.asarray(out.convert("RGBA"))[..., 3] if "A" in out.mode or "transparency" in out.info else None
    assert alpha is not None, out.mode
    assert np.array_equal(alpha == 0, grey == 17)

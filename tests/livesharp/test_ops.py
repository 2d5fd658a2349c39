"""Tests for livesharp/ops.py: pure frame functions on uint8 RGB arrays."""

import numpy as np
import pytest

from livesharp import ops


def step_edge(h: int = 32, w: int = 32) -> np.ndarray:
    """Dark left half, bright right half."""
    img = np.full((h, w, 3), 60, np.uint8)
    img[:, w // 2 :] = 190
    return img


def test_unsharp_mask_leaves_a_flat_image_alone():
    flat = np.full((17, 23, 3), 128, np.uint8)
    out = ops.unsharp_mask(flat, amount=1.5)
    assert out.dtype == np.uint8 and out.shape == flat.shape
    np.testing.assert_array_equal(out, flat)


def test_unsharp_mask_increases_contrast_across_an_edge():
    img = step_edge()
    out = ops.unsharp_mask(img, amount=1.0)
    row_in, row_out = img[16, :, 0].astype(int), out[16, :, 0].astype(int)
    # Overshoot on both sides of the edge: darker just left of it, brighter just right.
    assert row_out[15] < row_in[15] and row_out[16] > row_in[16]
    assert row_out[16] - row_out[15] > row_in[16] - row_in[15]
    # Far from the edge nothing changes.
    assert row_out[2] == row_in[2] and row_out[29] == row_in[29]


def test_unsharp_mask_amount_zero_is_identity():
    img = step_edge()
    np.testing.assert_array_equal(ops.unsharp_mask(img, amount=0.0), img)


def test_unsharp_mask_saturates_instead_of_wrapping():
    img = np.zeros((8, 8, 3), np.uint8)
    img[:, 4:] = 255
    out = ops.unsharp_mask(img, amount=2.0)
    # uint8 wrap-around would turn the overshoot past 255 into a dark value.
    assert out[:, 4].min() == 255 and out[:, 3].max() == 0


def test_side_by_side_is_twice_as_wide_with_the_panels_in_order():
    before = np.full((40, 30, 3), 10, np.uint8)
    after = np.full((40, 30, 3), 200, np.uint8)
    out = ops.side_by_side(before, after, labels=None)
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :30], before)
    np.testing.assert_array_equal(out[:, 30:], after)


def test_side_by_side_labels_draw_on_both_panels_only_near_the_top():
    before = np.full((120, 160, 3), 100, np.uint8)
    after = before.copy()
    plain = ops.side_by_side(before, after, labels=None)
    labelled = ops.side_by_side(before, after, labels=("input", "tiny"))
    changed = np.any(labelled != plain, axis=2)
    assert changed[:, :160].any() and changed[:, 160:].any()
    assert not changed[60:].any()  # the labels stay in the top of the frame
    # Inputs are not drawn on.
    assert (before == 100).all() and (after == 100).all()


@pytest.mark.parametrize("size", [(120, 160), (360, 640), (720, 1280)])
@pytest.mark.parametrize("grey", [20, 128, 235])
def test_a_label_is_white_text_in_a_black_outline_with_nothing_beside_it(size, grey):
    """What a viewer reads: white letters, each ringed in black, on any background; and no
    stray outline away from the letters (OpenCV 5 drew a second, shifted copy: 'inputt')."""
    import cv2

    h, w = size
    frame = np.full((h, w, 3), grey, np.uint8)
    out = ops.side_by_side(frame, frame, labels=("input", "livesharp tiny"))[..., 0].astype(int)
    for panel in (out[:, :w], out[:, w:]):
        drawn = panel != grey
        white, black = drawn & (panel >= 150), drawn & (panel <= 60)
        assert white.sum() >= 20 and black.sum() >= white.sum() // 2  # readable on dark and bright frames
        near_text = cv2.dilate(white.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        assert not (black & ~near_text).any()  # every outline pixel hugs a letter
        outlined = cv2.dilate(black.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        assert (white & outlined).sum() >= 0.9 * white.sum()  # and every letter has its outline


def test_side_by_side_rejects_different_shapes():
    with pytest.raises(ValueError, match="equal shapes"):
        ops.side_by_side(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


@pytest.mark.parametrize("h, w", [(4, 6), (5, 6), (4, 7), (5, 7), (1, 1)])
def test_pad_to_even_repeats_the_last_row_and_column(h, w):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = ops.pad_to_even(img)
    assert out.shape == (h + h % 2, w + w % 2, 3)
    np.testing.assert_array_equal(out[:h, :w], img)
    if h % 2:
        np.testing.assert_array_equal(out[h, :w], img[h - 1])
    if w % 2:
        np.testing.assert_array_equal(out[:h, w], img[:, w - 1])
    if h % 2 == 0 and w % 2 == 0:
        assert out is img  # even frames pass through without a copy


def test_upright_turns_and_mirrors_as_the_display_matrix_says():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 2] = 255  # top-right corner
    q = 65536
    cclock = [0, -q, 0, q, 0, 0, 0, 0, 1 << 30]  # what `rotate=90` writes: shown a quarter turn anticlockwise
    r90 = ops.upright(img, cclock)
    assert r90.shape == (3, 2, 3) and r90[0, 0, 0] == 255  # top-right goes to top-left
    assert r90.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(ops.upright(img, [-q, 0, 0, 0, -q, 0, 0, 0, 1 << 30]), img[::-1, ::-1])  # a half turn
    np.testing.assert_array_equal(ops.upright(img, [-q, 0, 0, 0, q, 0, 0, 0, 1 << 30]), img[:, ::-1])  # a mirror, not a half turn
    np.testing.assert_array_equal(ops.upright(img, [q, 0, 0, 0, -q, 0, 0, 0, 1 << 30]), img[::-1])  # upside down
    assert ops.upright(img, None) is img
    assert ops.swaps_sides(cclock) and not ops.swaps_sides([-q, 0, 0, 0, q, 0, 0, 0, 1 << 30])

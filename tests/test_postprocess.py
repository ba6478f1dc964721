"""Mask clean-up: opening, closing and small-component removal on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.inference.postprocess import METHODS, default_min_area, postprocess


def _bar_with_gap() -> np.ndarray:
    m = np.zeros((20, 20), np.uint8)
    m[5:8, 2:18] = 255  # a 3-px thick bar
    m[5:8, 10] = 0  # with a 1-px gap
    m[14, 14] = 255  # and an isolated pixel
    return m


def test_open_close_removes_speck_and_fills_gap():
    out = postprocess(_bar_with_gap(), "open_close")
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    assert out[14, 14] == 0  # opening removed the isolated pixel
    assert (out[5:8, 10] == 255).all()  # closing filled the gap
    expected = np.zeros((20, 20), np.uint8)
    expected[5:8, 2:18] = 255
    assert np.array_equal(out, expected)


def test_open_close_erases_lines_thinner_than_kernel():
    line = np.zeros((20, 20), bool)
    line[10, 2:18] = True
    assert not postprocess(line, "open_close").any()  # the documented hairline caveat


def test_remove_small_removes_small_components_only():
    m = np.zeros((40, 40), bool)
    m[2, 2:5] = True  # 3 px
    m[20:25, 10:20] = True  # 50 px
    m[30, 0:30] = True  # thin but long: 30 px
    out = postprocess(m, "remove_small", min_area=10)
    expected = m.copy()
    expected[2, 2:5] = False
    assert np.array_equal(out > 0, expected)
    assert postprocess(m, "remove_small", min_area=0).astype(bool).sum() == m.sum()


def test_default_min_area_is_relative_to_image_size():
    assert default_min_area((640, 640)) == 41
    assert default_min_area((10, 10)) == 1


def test_every_method_returns_uint8_0_255_and_none_keeps_mask():
    m = _bar_with_gap() // 255
    for method in METHODS:
        out = postprocess(m, method)
        assert out.dtype == np.uint8 and out.shape == m.shape
        assert set(np.unique(out)) <= {0, 255}
    assert np.array_equal(postprocess(m, "none"), m * 255)
    with pytest.raises(ValueError, match="method"):
        postprocess(m, "dilate")


def test_a_clean_up_must_beat_none_by_the_margin():
    from helpers.inference.postprocess import CHOICE_MARGIN, choose_method

    assert choose_method({"none": 0.30, "open_close": 0.3002, "remove_small": 0.29}) == "none"
    assert choose_method({"none": 0.30, "remove_small": 0.30 + CHOICE_MARGIN}) == "remove_small"
    assert choose_method({"none": 0.30, "open_close": 0.32, "remove_small": 0.31}) == "open_close"
    assert choose_method({"none": 0.30, "open_close": 0.30}) == "none"

"""prepare_strip: a whole-strip model's input, the same in training and serving."""

import numpy as np
import pytest

from ecgml.signal import prepare_strip


def test_a_recording_is_resampled_offset_removed_and_cropped() -> None:
    t = np.arange(0, 12, 1 / 500)  # 12 s at 500 Hz
    signal = 0.8 + 0.5 * np.sin(2 * np.pi * 1.0 * t)  # a recorder offset of 0.8 mV
    strip = prepare_strip(signal, 500.0, 100.0, 1000)
    assert strip.dtype == np.float32 and strip.shape == (1000,)
    expected = 0.5 * np.sin(2 * np.pi * 1.0 * np.arange(1000) / 100.0)
    np.testing.assert_allclose(strip[50:950], expected[50:950], atol=0.02)  # edges: resampling


def test_a_short_recording_is_zero_padded_at_the_end() -> None:
    signal = np.r_[np.full(300, 2.0), np.full(200, 3.0)]  # 5 s at 100 Hz, median 2.0
    strip = prepare_strip(signal, 100.0, 100.0, 1000)
    assert strip[:300] == pytest.approx(0.0) and strip[300:500] == pytest.approx(1.0)
    assert not strip[500:].any()
    assert not prepare_strip(np.zeros(0), 100.0, 100.0, 10).any()

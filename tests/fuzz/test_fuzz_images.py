"""Fuzz: image loading for digitize/predict on PNG/JPEG magic, random headers, truncations.

``load_image`` returns an image within the pixel cap or raises ``DigitizeError`` (an
EcgmlError); ``process_image`` never raises and never reports an internal error.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ecgml.digitize.errors import DigitizeError
from ecgml.digitize.image import load_image
from ecgml.digitize.pipeline import process_image
from tests.fuzz.cases import case_dir
from tests.fuzz.harness import FUZZ
from tests.fuzz.strategies import image_bytes

#: Small enough that a header claiming more is refused before any decoding.
CAP = 2_000_000


@FUZZ
@given(
    content=image_bytes(),
    suffix=st.sampled_from([".png", ".jpg", ".jpeg", ".PNG", ".pdf"]),
)
def test_any_image_bytes_load_or_are_one_user_error(content: bytes, suffix: str) -> None:
    with case_dir() as case:
        path = case / f"scan{suffix}"
        path.write_bytes(content)
        try:
            image = load_image(path, max_pixels=CAP)
        except DigitizeError as err:
            assert str(err).strip() and "\n" not in str(err), repr(str(err))
        else:
            assert image.dtype == np.uint8 and image.shape[0] * image.shape[1] <= CAP
        result = process_image(path, max_pixels=CAP)
        assert result.status in ("ok", "failed")
        assert not result.error.startswith("internal error"), result.error

"""Hypothesis strategies for hostile user input: manifests, beat files, JSON, images, paths."""

from __future__ import annotations

import json
import struct
import zlib

import cv2
import numpy as np
from hypothesis import strategies as st

from ecgml.beatstore import OPTIONAL_COLUMNS, REQUIRED_COLUMNS, VALID_GROUPS

SEPARATORS = (",", ";", "\t", "|")
#: Paths a manifest may list, relative to the store: the fixture layout of :func:`write_case`.
SPECIAL_PATHS = (
    "beats/b0.csv",
    "beats/b1.csv",
    "beats/b2.csv",
    "../outside.csv",
    "beats/../../outside.csv",
    "link_out.csv",
    "link_dir/outside.csv",
    "zero.csv",
    "fifo.csv",
    "beats",
    "missing.csv",
    "loop.csv",
    "a" * 300 + ".csv",
    "beats/b0.csv/x",
    "",
    " ",
)

NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["nan", "-inf", "1e400", "1" + "0" * 5000, "0x10", "1_000", "١٢", "", "mv"]),
)
TEXT = st.text(max_size=12)


@st.composite
def beat_text(draw: st.DrawFn) -> bytes:
    """A beat CSV: plausible samples, odd numbers, headers, garbage, or nothing."""
    kind = draw(st.sampled_from(["samples", "numbers", "columns", "bytes", "empty"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "empty":
        return draw(st.sampled_from([b"", b"\n", b"mv\n", b"\n\n  \n"]))
    header = draw(st.sampled_from(["", "mv\n", "time_s,mv\n", "x;y\n", "\ufeffmv\n"]))
    if kind == "samples":
        values = draw(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=200))
        lines = [f"{v:.4f}" for v in values]
    elif kind == "numbers":
        lines = draw(st.lists(NUMBER_TEXT, min_size=1, max_size=20))
    else:
        lines = draw(st.lists(st.lists(NUMBER_TEXT, min_size=2, max_size=3), max_size=20))
        lines = [draw(st.sampled_from(SEPARATORS)).join(cells) for cells in lines]
    end = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    return (header + end.join(lines) + end).encode("utf-8", "surrogatepass")


def _cell(column: str) -> st.SearchStrategy[str]:
    if column == "beat_file":
        return st.one_of(st.sampled_from(SPECIAL_PATHS), TEXT)
    if column == "group":
        return st.one_of(st.sampled_from(VALID_GROUPS), st.sampled_from(["NORMAL", " x"]), TEXT)
    if column in ("r_index", "beat_index"):
        return st.one_of(NUMBER_TEXT, st.integers(-5, 400).map(str))
    return st.one_of(st.sampled_from(["p1", "p2", "P0001"]), TEXT)


@st.composite
def manifest_text(draw: st.DrawFn) -> bytes:
    """A manifest: real, shuffled, missing or unknown columns; any separator; odd values."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    known = list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    columns = draw(st.lists(st.sampled_from(known), min_size=1, max_size=8, unique=True))
    if draw(st.booleans()):
        columns = list(REQUIRED_COLUMNS) + [c for c in columns if c not in REQUIRED_COLUMNS]
    columns += draw(st.lists(TEXT, max_size=2))
    sep = draw(st.sampled_from(SEPARATORS))
    rows = draw(
        st.lists(st.tuples(*(_cell(c) for c in columns)), max_size=5).map(
            lambda found: [sep.join(cells) for cells in found]
        )
    )
    text = "\n".join([sep.join(columns), *rows]) + draw(st.sampled_from(["", "\n", "\n\n"]))
    return text.encode("utf-8", "surrogatepass")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def meta_text(draw: st.DrawFn) -> bytes | None:
    """``beatstore.json``: absent, any JSON, an object with odd keys, or not JSON at all."""
    kind = draw(st.sampled_from(["absent", "json", "object", "raw", "deep"]))
    if kind == "absent":
        return None
    if kind == "raw":
        return draw(st.binary(max_size=200))
    if kind == "deep":
        return b"[" * draw(st.integers(900, 200_000))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode()
    keys = st.sampled_from(["fs", "units", "pre_r_ms", "post_r_ms", "extra"])
    value = st.one_of(
        JSON_VALUES,
        st.floats(20, 20_000),
        st.sampled_from([500, 360.0, "500", "mV", "uV", 1e-9, 10**400]),
    )
    return json.dumps(draw(st.dictionaries(keys, value, max_size=5))).encode()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _real_image(ext: str, side: int) -> bytes:
    gray = np.random.default_rng(side).integers(0, 255, (side, side + 3, 3), dtype=np.uint8)
    ok, data = cv2.imencode(ext, gray)
    assert ok
    return data.tobytes()


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """PNG/JPEG magic with random headers and bodies, truncated or corrupted real images."""
    kind = draw(st.sampled_from(["png_header", "jpeg_header", "truncated", "flipped", "magic"]))
    if kind == "png_header":
        width, height = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1))
        ihdr = struct.pack(">II", width, height) + draw(st.binary(min_size=5, max_size=5))
        body = _png_chunk(b"IHDR", ihdr) + draw(st.binary(max_size=200))
        return b"\x89PNG\r\n\x1a\n" + body
    if kind == "jpeg_header":
        marker = draw(st.sampled_from([0xC0, 0xC2, 0xDA, 0xE0, 0xFF, 0xD0]))
        size = struct.pack(">HH", draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
        segment = bytes([0xFF, marker]) + b"\x00\x11\x08" + size + draw(st.binary(max_size=60))
        return b"\xff\xd8" + segment + draw(st.binary(max_size=200))
    real = _real_image(draw(st.sampled_from([".png", ".jpg"])), draw(st.integers(4, 40)))
    if kind == "truncated":
        return real[: draw(st.integers(0, len(real)))]
    if kind == "flipped":
        data = bytearray(real)
        for index in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[index] ^= draw(st.integers(1, 255))
        return bytes(data)
    return draw(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"%PDF-1.4\n"])) + draw(
        st.binary(max_size=300)
    )

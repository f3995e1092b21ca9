"""The standard-library image core (imagegen.py "Pixels"): PNG decoding checked against
Pillow and against hand-made files, resampling against exact expected values, encoding by
round trip, chroma-key removal on a synthetic anti-aliased disc, thumbnails, terminal
preview escapes and the batch contact sheet."""
from __future__ import annotations

import base64
import html.parser
import io
import math
import random
import re
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imagegen
from imagegen import PixelsError, Raster


# helpers ###################################################################################

def pillow():
    return pytest.importorskip("PIL.Image")


def chunk(kind: bytes, body: bytes) -> bytes:
    return (len(body).to_bytes(4, "big") + kind + body
            + (zlib.crc32(kind + body) & 0xFFFFFFFF).to_bytes(4, "big"))


def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def filter_line(kind: int, line: bytes, prior: bytes, bpp: int) -> bytes:
    """The PNG filter `kind` applied to one scanline, written out the slow, obvious way."""
    out = bytearray()
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prior[i]
        c = prior[i - bpp] if i >= bpp else 0
        predictor = (0, a, b, (a + b) // 2, paeth(a, b, c))[kind]
        out.append((x - predictor) & 255)
    return bytes(out)


def make_png(width: int, height: int, depth: int, color_type: int, lines: list[bytes], *,
             filters=(0, 1, 2, 3, 4), palette: bytes = b"", trns: bytes = b"",
             interlace: bool = False, compress=zlib.compress) -> bytes:
    """A PNG from packed scanlines (interlaced: a list of the scanlines of each pass),
    cycling through `filters` row by row."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    bpp = max(1, depth * channels // 8)
    raw, index = bytearray(), 0
    for scanlines in (lines if interlace else [lines]):
        prior = None
        for line in scanlines:
            prior = prior or bytes(len(line))  # each pass starts from a row of zeros
            kind = filters[index % len(filters)]
            raw += bytes((kind,)) + filter_line(kind, line, prior, bpp)
            prior, index = line, index + 1
    header = (width.to_bytes(4, "big") + height.to_bytes(4, "big")
              + bytes((depth, color_type, 0, 0, int(interlace))))
    body = chunk(b"IHDR", header)
    if palette:
        body += chunk(b"PLTE", palette)
    if trns:
        body += chunk(b"tRNS", trns)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", compress(bytes(raw))) + chunk(b"IEND", b"")


def pack(samples: list[int], depth: int) -> bytes:
    """Samples of `depth` bits packed big-endian into bytes, as a PNG scanline stores them."""
    if depth == 16:
        return b"".join(value.to_bytes(2, "big") for value in samples)
    if depth == 8:
        return bytes(samples)
    per_byte = 8 // depth
    out = bytearray()
    for start in range(0, len(samples), per_byte):
        group = samples[start:start + per_byte] + [0] * (per_byte - len(samples[start:start + per_byte]))
        value = 0
        for sample in group:
            value = (value << depth) | sample
        out.append(value)
    return bytes(out)


def noise_raster(width: int, height: int, channels: int, seed: int = 1) -> Raster:
    rng = random.Random(seed)
    return Raster(width, height, channels, tuple(
        bytes(rng.randrange(256) for _ in range(width * channels)) for _ in range(height)))


def gradient_raster(width: int, height: int, channels: int = 3) -> Raster:
    """Smooth content: what a photo looks like at the scale of a few pixels."""
    rows = []
    for y in range(height):
        row = bytearray()
        for x in range(width):
            values = (255 * x // max(1, width - 1), 255 * y // max(1, height - 1),
                      int(127.5 + 127.5 * math.sin((x + y) / 40)),
                      int(127.5 + 127.5 * math.cos(x / 50 - y / 70)))
            row += bytes(values[:channels])
        rows.append(bytes(row))
    return Raster(width, height, channels, tuple(rows))


def exact_box(raster: Raster, width: int, height: int) -> list[bytes]:
    """The exact area average, in floating point, rounded half up: the reference."""
    sx, sy = raster.width / width, raster.height / height
    rows = []
    for oy in range(height):
        y0, y1 = oy * sy, (oy + 1) * sy
        row = bytearray()
        for ox in range(width):
            x0, x1 = ox * sx, (ox + 1) * sx
            total = [0.0] * raster.channels
            for y in range(int(y0), min(raster.height, math.ceil(y1))):
                wy = min(y1, y + 1) - max(y0, y)
                for x in range(int(x0), min(raster.width, math.ceil(x1))):
                    wx = min(x1, x + 1) - max(x0, x)
                    for c, value in enumerate(raster.pixel(x, y)):
                        total[c] += value * wx * wy
            row += bytes(math.floor(t / (sx * sy) + 0.5) for t in total)
        rows.append(bytes(row))
    return rows


def to_pillow(raster: Raster):
    image = pillow()
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[raster.channels]
    return image.frombytes(mode, (raster.width, raster.height), b"".join(raster.rows))


def pillow_png(im, **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, "PNG", **options)
    return buffer.getvalue()


def max_difference(a: list | tuple, b: list | tuple) -> int:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


# decoding: against Pillow #################################################################

SIZES = [(1, 1), (13, 7), (37, 29)]


def pillow_image(mode: str, size: tuple, seed: int):
    """A noisy image of the mode, so that every filter and every sample value shows up."""
    image = pillow()
    width, height = size
    rng = random.Random(seed)
    if mode in ("1", "L", "I;16"):
        grey = image.frombytes("L", size, bytes(rng.randrange(256) for _ in range(width * height)))
        if mode == "1":
            return grey.convert("1")
        if mode == "I;16":
            wide = b"".join(rng.randrange(65536).to_bytes(2, "little") for _ in range(width * height))
            return image.frombytes("I;16", size, wide)
        return grey
    if mode.startswith("P"):
        colours = int(mode[1:]) if len(mode) > 1 else 200
        rgb = image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(width * height * 3)))
        return rgb.quantize(colors=colours)
    bands = len(mode)
    return image.frombytes(mode, size, bytes(rng.randrange(256) for _ in range(width * height * bands)))


def pillow_expected(data: bytes) -> tuple[int, bytes]:
    """(channels, pixels) as Pillow decodes data, in the decoder's conventions."""
    image = pillow()
    im = image.open(io.BytesIO(data))
    im.load()
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("L", "RGB") and "transparency" in im.info:
        im = im.convert("LA" if im.mode == "L" else "RGBA")
    if im.mode.startswith("I;16"):
        values = im.tobytes("raw", "I;16")
        return 1, values[1::2]  # the high byte of each little-endian sample
    return len(im.getbands()), im.tobytes()


@pytest.mark.parametrize("interlace", [0, 1], ids=["plain", "adam7"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", ["1", "L", "LA", "RGB", "RGBA", "P", "I;16"])
def test_decodes_what_pillow_writes(mode, size, interlace):
    data = pillow_png(pillow_image(mode, size, seed=sum(size)), interlace=interlace)
    channels, expected = pillow_expected(data)
    raster = imagegen.decode_png(data)
    assert (raster.width, raster.height, raster.channels) == (*size, channels)
    assert b"".join(raster.rows) == expected


@pytest.mark.parametrize("interlace", [0, 1], ids=["plain", "adam7"])
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_decodes_palettes_of_every_depth_with_transparency(bits, interlace):
    im = pillow_image(f"P{2 ** bits}", (19, 11), seed=bits)
    alphas = bytes((index * 37) % 256 for index in range(2 ** bits))
    data = pillow_png(im, bits=bits, transparency=alphas, interlace=interlace)
    assert data[24] == bits and data[25] == 3  # IHDR: the depth and colour type asked for
    channels, expected = pillow_expected(data)
    raster = imagegen.decode_png(data)
    assert raster.channels == channels == 4
    assert b"".join(raster.rows) == expected


@pytest.mark.parametrize("mode,key", [("L", 77), ("RGB", (10, 20, 30))])
def test_grey_and_rgb_transparency_colour_becomes_alpha(mode, key):
    im = pillow_image(mode, (23, 9), seed=5)
    pixels = bytearray(im.tobytes())
    width = 23 * len(mode)
    pixels[0:len(mode)] = bytes([key] if mode == "L" else key)  # the key at (0, 0)
    im = pillow().frombytes(mode, (23, 9), bytes(pixels))
    data = pillow_png(im, transparency=key)
    channels, expected = pillow_expected(data)
    raster = imagegen.decode_png(data)
    assert raster.channels == channels == len(mode) + 1
    assert raster.pixel(0, 0)[-1] == 0
    assert b"".join(raster.rows) == expected
    assert len(raster.rows[0]) == width // len(mode) * channels


# decoding: hand-made files (what Pillow cannot write) ####################################

@pytest.mark.parametrize("interlace", [False, True], ids=["plain", "adam7"])
@pytest.mark.parametrize("depth", [1, 2, 4, 8, 16])
def test_greyscale_every_depth_every_filter(depth, interlace):
    width, height = 21, 10
    rng = random.Random(depth)
    top = (1 << depth) - 1
    samples = [[rng.randrange(top + 1) for _ in range(width)] for _ in range(height)]
    key = samples[3][4]
    lines = []
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
               (1, 0, 2, 2), (0, 1, 1, 2)] if interlace else [(0, 0, 1, 1)])
    for x0, y0, dx, dy in passes:
        scanlines = [pack(samples[y][x0::dx], depth) for y in range(y0, height, dy)
                     if samples[y][x0::dx]]
        lines.append(scanlines)
    data = make_png(width, height, depth, 0, lines if interlace else lines[0],
                    trns=key.to_bytes(2, "big"),
                    interlace=interlace)
    raster = imagegen.decode_png(data)
    assert raster.channels == 2
    for y in range(height):
        for x in range(width):
            value = samples[y][x]
            grey = value >> 8 if depth == 16 else value * (255 // top)
            assert raster.pixel(x, y) == (grey, 0 if value == key else 255), (x, y)


def test_two_bit_grey_is_scaled_to_the_full_range():
    data = make_png(4, 1, 2, 0, [pack([0, 1, 2, 3], 2)])
    assert imagegen.decode_png(data).rows == (bytes([0, 85, 170, 255]),)


def test_sixteen_bit_rgb_transparency_compares_all_sixteen_bits():
    key = (0x1234, 0xABCD, 0x00FF)
    near = (0x1234, 0xABCD, 0x00FE)  # same high bytes: must stay opaque
    other = (0xFFFF, 0x8000, 0x0001)
    line = pack([*key, *near, *other], 16)
    trns = b"".join(value.to_bytes(2, "big") for value in key)
    raster = imagegen.decode_png(make_png(3, 2, 16, 2, [line, line], trns=trns))
    assert raster.channels == 4
    assert raster.rows[1] == bytes([0x12, 0xAB, 0x00, 0, 0x12, 0xAB, 0x00, 255,
                                    0xFF, 0x80, 0x00, 255])


@pytest.mark.parametrize("color_type,channels", [(2, 3), (4, 2), (6, 4)])
@pytest.mark.parametrize("depth", [8, 16])
def test_every_filter_at_every_pixel_width(color_type, channels, depth):
    """bpp 2, 3, 4, 6 and 8, each row with another filter: the decoder gives back the
    samples exactly (16-bit ones as their high byte)."""
    width, height = 17, 15
    rng = random.Random(color_type * depth)
    samples = [[rng.randrange(1 << depth) for _ in range(width * channels)] for _ in range(height)]
    data = make_png(width, height, depth, color_type, [pack(row, depth) for row in samples])
    raster = imagegen.decode_png(data)
    expected = tuple(bytes(v >> 8 if depth == 16 else v for v in row) for row in samples)
    assert raster.rows == expected


def test_idat_may_be_split_into_many_chunks():
    data = pillow_png(pillow_image("RGB", (40, 30), seed=9))
    reference = imagegen.decode_png(data)
    start = data.index(b"IDAT") - 4
    length = int.from_bytes(data[start:start + 4], "big")
    compressed = data[start + 8:start + 8 + length]
    split = b"".join(chunk(b"IDAT", compressed[i:i + 7]) for i in range(0, len(compressed), 7))
    assert imagegen.decode_png(data[:start] + split + data[start + 12 + length:]) == reference


# decoding: refusals #######################################################################

def test_broken_files_are_refused_with_a_clear_message():
    good = make_png(8, 8, 8, 2, [bytes(24)] * 8)
    idat = good.index(b"IDAT")
    cases = {
        "not a PNG": b"GIF89a" + good[6:],
        "CRC": good[:idat + 6] + bytes([good[idat + 6] ^ 1]) + good[idat + 7:],
        "truncated": good[:idat + 10],
        "no IEND": good[:good.index(b"IEND") - 4],
    }
    for expected, data in cases.items():
        with pytest.raises(PixelsError, match=expected):
            imagegen.decode_png(data)


def test_a_damaged_zlib_stream_is_a_clear_error_even_without_crc_checks():
    good = make_png(8, 8, 8, 2, [bytes(range(24))] * 8)
    idat = good.index(b"IDAT")
    damaged = bytearray(good)
    damaged[idat + 4:idat + 6] = b"\xff\xff"  # the zlib header
    with pytest.raises(PixelsError, match="zlib"):
        imagegen.decode_png(bytes(damaged), verify_crc=False)
    short = make_png(8, 8, 8, 2, [bytes(24)] * 8, compress=lambda raw: zlib.compress(raw[:100]))
    with pytest.raises(PixelsError, match="truncated"):
        imagegen.decode_png(short)


def test_a_decompression_bomb_is_refused_before_inflating():
    header = (100_000).to_bytes(4, "big") * 2 + bytes((8, 6, 0, 0, 0))
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(10_000_000), 9)) + chunk(b"IEND", b""))
    with pytest.raises(PixelsError, match="100000x100000"):
        imagegen.decode_png(bomb)
    small = make_png(64, 64, 8, 0, [bytes(64)] * 64)
    with pytest.raises(PixelsError, match="more than 1,000 pixels"):
        imagegen.decode_png(small, max_pixels=1000)


@pytest.mark.parametrize("header", [
    bytes((8, 1, 0, 0, 0)),  # colour type 1 does not exist
    bytes((16, 3, 0, 0, 0)),  # a 16-bit palette does not exist
    bytes((8, 2, 1, 0, 0)),  # unknown compression method
    bytes((8, 2, 0, 0, 2)),  # unknown interlace method
])
def test_impossible_headers_are_refused(header):
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", (4).to_bytes(4, "big") * 2 + header)
            + chunk(b"IDAT", zlib.compress(bytes(100))) + chunk(b"IEND", b""))
    with pytest.raises(PixelsError):
        imagegen.decode_png(data)


def test_an_unknown_filter_type_is_refused():
    data = make_png(2, 1, 8, 0, [b"\1\2"], compress=lambda raw: zlib.compress(b"\x07\1\2"))
    with pytest.raises(PixelsError, match="filter type 7"):
        imagegen.decode_png(data)


# resampling ###############################################################################

def grey(rows: list[list[int]]) -> Raster:
    return Raster(len(rows[0]), len(rows), 1, tuple(bytes(row) for row in rows))


def test_halving_averages_each_block_of_four_exactly():
    image = grey([[0, 10, 100, 100], [20, 30, 100, 104], [1, 2, 255, 255], [3, 4, 255, 254]])
    assert imagegen.resample(image, 2, 2).rows == (bytes([15, 101]), bytes([3, 255]))


def test_a_non_integer_reduction_weighs_the_covered_area():
    # 3 -> 2: the first output pixel is all of pixel 0 and half of pixel 1
    assert imagegen.resample(grey([[30, 60, 90]]), 2, 1).rows == (bytes([40, 80]),)
    # 5 -> 2: 2.5 pixels each
    assert imagegen.resample(grey([[0, 0, 100, 200, 200]]), 2, 1).rows == (bytes([20, 180]),)


def test_an_enlargement_interpolates_between_pixel_centres():
    assert imagegen.resample(grey([[0, 100]]), 4, 1).rows == (bytes([0, 25, 75, 100]),)
    assert imagegen.resample(grey([[0], [100]]), 1, 4).rows == tuple(
        bytes([v]) for v in (0, 25, 75, 100))


@pytest.mark.parametrize("target", [(1, 1), (7, 5), (10, 10), (13, 3), (4, 11), (19, 17)])
def test_reductions_match_the_exact_area_average(target):
    image = noise_raster(20, 17, 3, seed=target[0])
    result = imagegen.resample(image, *target)
    assert max_difference(result.rows, exact_box(image, *target)) <= 1


@pytest.mark.parametrize("target", [(836, 470), (600, 300), (1200, 630), (555, 313)])
def test_reductions_agree_with_pillows_box_filter(target):
    """Pillow's BOX weighs a source pixel by where its centre falls, not by the area it
    covers, so for non-integer ratios it is close to the exact average, not equal to it."""
    image = pillow()
    source = gradient_raster(1672, 941)
    expected = to_pillow(source).resize(target, image.BOX).tobytes()
    result = b"".join(imagegen.resample(source, *target).rows)
    differences = [abs(a - b) for a, b in zip(result, expected)]
    assert max(differences) <= 4
    assert sum(differences) / len(differences) < 0.4


def test_integer_reductions_of_noise_equal_pillows_box_filter():
    image = pillow()
    source = noise_raster(60, 45, 4, seed=3)
    source = Raster(60, 45, 4, tuple(bytes(255 if i % 4 == 3 else v for i, v in enumerate(row))
                                     for row in source.rows))  # opaque: no premultiplication
    expected = to_pillow(source).resize((20, 15), image.BOX).tobytes()
    assert max_difference([b"".join(imagegen.resample(source, 20, 15).rows)], [expected]) <= 1


def test_transparent_pixels_do_not_bleed_their_colour():
    image = Raster(2, 1, 4, (bytes([255, 0, 0, 255, 0, 255, 0, 0]),))
    assert imagegen.resample(image, 1, 1).rows == (bytes([255, 0, 0, 128]),)


def test_a_constant_image_stays_constant_at_any_size():
    flat = Raster(37, 23, 3, tuple(bytes([12, 200, 77]) * 37 for _ in range(23)))
    for size in [(1, 1), (20, 9), (36, 22), (80, 51)]:
        assert set(imagegen.resample(flat, *size).rows) == {bytes([12, 200, 77]) * size[0]}


def test_crop_takes_the_rectangle_and_refuses_outside():
    image = grey([[1, 2, 3], [4, 5, 6], [7, 8, 9]])
    assert imagegen.crop(image, 1, 1, 2, 2).rows == (bytes([5, 6]), bytes([8, 9]))
    with pytest.raises(PixelsError):
        imagegen.crop(image, 2, 2, 2, 2)


def test_cover_fills_the_exact_size_and_crops_the_centre():
    image = gradient_raster(1672, 941)
    result, done = imagegen.cover(image, 1200, 630)
    assert (result.width, result.height, len(result.rows)) == (1200, 630, 630)
    assert {len(row) for row in result.rows} == {3600}
    assert done == "scaled 1672x941 to 1200x675 and cropped the centre 1200x630"
    # scaled to 1200x675, 22.5 rows are cut at the top: row 315 is half of 337, half of 338
    scaled = imagegen.resample(image, 1200, 675).rows
    expected = [bytes((a + b + 1) // 2 for a, b in zip(scaled[337], scaled[338]))]
    assert max_difference([result.rows[315]], expected) <= 1


def test_cover_of_the_same_size_keeps_the_image():
    image = noise_raster(8, 4, 3)
    assert imagegen.cover(image, 8, 4) == (image, "kept 8x4")


def test_cover_of_a_square_from_a_wide_image_crops_the_sides():
    image = grey([[0, 50, 100, 150]] * 2)
    result, done = imagegen.cover(image, 2, 2)
    assert result.rows == (bytes([50, 100]),) * 2
    assert done == "scaled 4x2 to 2x2 and cropped the centre 2x2" or "cropped" in done


def test_contain_pads_with_transparency_or_a_colour():
    image = Raster(4, 2, 3, (bytes([200, 10, 10]) * 4,) * 2)
    padded, done = imagegen.contain(image, 4, 4)
    assert (padded.width, padded.height, padded.channels) == (4, 4, 4)
    assert padded.rows[0] == bytes(16) and padded.rows[3] == bytes(16)
    assert padded.rows[1] == bytes([200, 10, 10, 255]) * 4
    assert done == "kept 4x2, centred on 4x4 and padded with transparency"
    boxed, done = imagegen.contain(image, 2, 4, background=(255, 255, 255))
    assert boxed.channels == 3
    assert [row for row in boxed.rows] == [bytes([255] * 6)] + [bytes([200, 10, 10]) * 2] + [
        bytes([255] * 6)] * 2
    assert done == "scaled 4x2 to 2x1, centred on 2x4 and padded with #ffffff"


# encoding #################################################################################

@pytest.mark.parametrize("channels,mode", [(1, "L"), (2, "LA"), (3, "RGB"), (4, "RGBA")])
def test_encoded_png_reads_back_in_pillow(channels, mode):
    image = pillow()
    for raster in (noise_raster(31, 17, channels), gradient_raster(64, 40, channels)):
        data = imagegen.encode_png(raster)
        decoded = image.open(io.BytesIO(data))
        decoded.load()
        assert decoded.mode == mode and decoded.size == (raster.width, raster.height)
        assert decoded.tobytes() == b"".join(raster.rows)


def test_encoder_compresses_smooth_images_well():
    raster = gradient_raster(400, 300)
    assert len(imagegen.encode_png(raster)) < 400 * 300 * 3 // 8


rasters = st.integers(1, 4).flatmap(lambda channels: st.tuples(
    st.integers(1, 12), st.integers(1, 9)).flatmap(lambda size: st.builds(
        lambda data: Raster(size[0], size[1], channels, tuple(
            data[y * size[0] * channels:(y + 1) * size[0] * channels] for y in range(size[1]))),
        st.binary(min_size=size[0] * size[1] * channels, max_size=size[0] * size[1] * channels))))


@settings(max_examples=150, deadline=None)
@given(rasters)
def test_encode_then_decode_is_the_identity(raster):
    assert imagegen.decode_png(imagegen.encode_png(raster)) == raster


@settings(max_examples=60, deadline=None)
@given(rasters, st.booleans())
def test_pillow_written_pngs_decode_exactly(raster, interlace):
    data = pillow_png(to_pillow(raster), interlace=int(interlace))
    assert imagegen.decode_png(data) == raster


@settings(max_examples=60, deadline=None)
@given(rasters, st.integers(1, 20), st.integers(1, 20))
def test_resample_gives_the_asked_size_and_keeps_values_in_range(raster, width, height):
    result = imagegen.resample(raster, width, height)
    assert (result.width, result.height, result.channels) == (width, height, raster.channels)
    assert [len(row) for row in result.rows] == [width * raster.channels] * height
    for c in range(raster.channels):
        source = [v for row in raster.rows for v in row[c::raster.channels]]
        if raster.channels in (2, 4) and c < raster.channels - 1:
            continue  # premultiplied colour may round to anything its alpha allows
        assert all(min(source) <= v <= max(source) for row in result.rows
                   for v in row[c::raster.channels])


# chroma key and transparency ###############################################################

def key_disc(subject: tuple, key: tuple, width: int = 96, height: int = 72,
             radius: float = 25.0) -> tuple[Raster, list[list[float]]]:
    """A disc of `subject` on `key`, anti-aliased by 8x8 supersampling: (image, coverage)."""
    rows, coverage = [], []
    cx, cy = width / 2 + 0.3, height / 2 - 0.2
    for y in range(height):
        row, covered = bytearray(), []
        for x in range(width):
            inside = sum(1 for i in range(8) for j in range(8)
                         if (x + (i + .5) / 8 - cx) ** 2 + (y + (j + .5) / 8 - cy) ** 2 <= radius ** 2)
            share = inside / 64
            covered.append(share)
            row += bytes(round(share * s + (1 - share) * k) for s, k in zip(subject, key))
        rows.append(bytes(row))
        coverage.append(covered)
    return Raster(width, height, 3, tuple(rows)), coverage


@pytest.mark.parametrize("subject,key", [
    ((200, 40, 60), (0, 255, 0)), ((20, 20, 30), (0, 255, 0)), ((240, 240, 240), (0, 255, 0)),
    ((40, 160, 60), (255, 0, 255)), ((90, 60, 200), (0, 255, 0)),
], ids=["red-on-green", "black-on-green", "white-on-green", "green-on-magenta", "blue-on-green"])
def test_chroma_key_gives_a_soft_edge_without_a_halo(subject, key):
    image, coverage = key_disc(subject, key)
    result, done = imagegen.remove_chroma_key(image)
    assert result.channels == 4
    assert done.startswith("removed the chroma key #{:02x}{:02x}{:02x}: ".format(*key))
    soft = 0
    for y in range(image.height):
        for x in range(image.width):
            red, green, blue, alpha = result.pixel(x, y)
            share = coverage[y][x]
            if share == 0:
                assert (red, green, blue, alpha) == (0, 0, 0, 0), (x, y)
            elif share == 1:
                assert (red, green, blue, alpha) == (*subject, 255), (x, y)
            else:
                assert abs(alpha - 255 * share) <= (6 if share >= 0.25 else 24), (x, y, share)
                if alpha:
                    soft += 0 < alpha < 255
                    # no key-coloured fringe: the edge keeps the subject's colour
                    assert max(abs(a - b) for a, b in zip((red, green, blue), subject)) <= 24
    assert soft > 50  # the edge is a ramp, not a hard cut


def test_chroma_key_refuses_an_image_without_a_flat_border():
    with pytest.raises(PixelsError, match="not a flat colour"):
        imagegen.remove_chroma_key(noise_raster(40, 30, 3))


def test_has_transparency_looks_at_the_pixels():
    opaque_rgba = imagegen.encode_png(Raster(2, 1, 4, (bytes([1, 2, 3, 255] * 2),)))
    one_clear = imagegen.encode_png(Raster(2, 1, 4, (bytes([1, 2, 3, 255, 1, 2, 3, 0]),)))
    rgb = imagegen.encode_png(Raster(2, 1, 3, (bytes(6),)))
    palette = make_png(2, 1, 8, 3, [b"\0\1"], palette=bytes(6), trns=b"\xff\x00")
    palette_unused = make_png(2, 1, 8, 3, [b"\0\0"], palette=bytes(6), trns=b"\xff\x00")
    assert not imagegen.has_transparency(opaque_rgba)
    assert imagegen.has_transparency(one_clear)
    assert not imagegen.has_transparency(rgb)
    assert imagegen.has_transparency(palette)
    assert not imagegen.has_transparency(palette_unused)
    assert not imagegen.has_transparency(b"\xff\xd8\xff\xe0" + bytes(40))


# thumbnails ###############################################################################

@pytest.mark.parametrize("size,expected", [((1000, 500), (256, 128)), ((300, 1200), (64, 256)),
                                           ((100, 80), (100, 80)), ((1672, 941), (256, 144))])
def test_thumbnail_has_the_long_side_asked(size, expected):
    data = imagegen.encode_png(gradient_raster(*size))
    thumbnail = imagegen.png_thumbnail(data)
    info = imagegen.sniff_image(thumbnail)
    assert (info.format, info.width, info.height) == ("png", *expected)
    assert imagegen.sniff_image(imagegen.png_thumbnail(data, 64)).width <= 64


# previews #################################################################################

@pytest.mark.parametrize("environ,tty,expected", [
    ({"TERM": "xterm-kitty"}, True, "kitty"),
    ({"TERM": "xterm-256color", "KITTY_WINDOW_ID": "1"}, True, "kitty"),
    ({"TERM_PROGRAM": "iTerm.app", "TERM": "xterm-256color"}, True, "iterm"),
    ({"TERM_PROGRAM": "WezTerm"}, True, "iterm"),
    ({"TERM": "xterm-kitty"}, False, None),
    ({"TERM": "dumb", "KITTY_WINDOW_ID": "1"}, True, None),
    ({"TERM": "xterm-256color", "TERM_PROGRAM": "Apple_Terminal"}, True, None),
    ({"TERM": "screen-256color", "KITTY_WINDOW_ID": "3", "TMUX": "/tmp/tmux-0/default"}, True, None),
    ({}, True, None),
])
def test_preview_protocol_from_the_environment(environ, tty, expected):
    assert imagegen.preview_protocol(environ, tty) == expected


def test_kitty_sequence_sends_the_png_in_chunks():
    png = imagegen.encode_png(noise_raster(60, 60, 3))
    sequence = imagegen.kitty_sequence(png)
    escapes = re.findall(r"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\", sequence)
    assert len(escapes) > 2
    assert sequence == "".join(f"\x1b_G{keys};{data}\x1b\\" for keys, data in escapes)
    keys = [dict(item.split("=") for item in k.split(",")) for k, _ in escapes]
    assert keys[0]["a"] == "T" and keys[0]["f"] == "100"
    assert [k["m"] for k in keys] == ["1"] * (len(keys) - 1) + ["0"]
    assert all(set(k) == {"m"} for k in keys[1:])
    assert all(len(data) <= 4096 and len(data) % 4 == 0 for _, data in escapes[:-1])
    assert base64.b64decode("".join(data for _, data in escapes)) == png


def test_kitty_sequence_of_a_small_image_is_one_escape():
    png = imagegen.encode_png(noise_raster(2, 2, 3))
    sequence = imagegen.kitty_sequence(png)
    assert sequence.startswith("\x1b_Ga=T,f=100,") and sequence.count("\x1b_G") == 1
    assert ",m=0;" in sequence and sequence.endswith("\x1b\\")


def test_iterm_sequence_is_one_osc_1337():
    png = imagegen.encode_png(noise_raster(5, 5, 3))
    sequence = imagegen.iterm_sequence(png, name="fox é.png")
    match = re.fullmatch(r"\x1b\]1337;File=([^:]*):([A-Za-z0-9+/=]+)\x07", sequence)
    assert match
    arguments = dict(item.split("=", 1) for item in match.group(1).split(";"))
    assert arguments["inline"] == "1" and arguments["size"] == str(len(png))
    assert base64.b64decode(arguments["name"]).decode() == "fox é.png"
    assert base64.b64decode(match.group(2)) == png


def test_preview_sequence_is_empty_where_nothing_is_supported():
    png = imagegen.encode_png(noise_raster(2, 2, 3))
    assert imagegen.preview_sequence(png, None) == ""
    assert imagegen.preview_sequence(png, "kitty").startswith("\x1b_G")
    assert imagegen.preview_sequence(png, "iterm").startswith("\x1b]1337;File=")


# the contact sheet ########################################################################

class TagChecker(html.parser.HTMLParser):
    """Balanced tags (void elements aside), and what a browser would see."""

    VOID = {"meta", "img", "br", "link", "input", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.images: list[dict] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "a":
            self.links.append(dict(attrs)["href"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, (self.stack, tag)
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def test_gallery_is_valid_html_with_everything_escaped():
    thumbnail = imagegen.png_thumbnail(imagegen.encode_png(gradient_raster(600, 300)))
    items = [
        imagegen.GalleryItem("fox.png", 'a "fox" <script>alert(1)</script> & friends', 1200,
                             630, thumbnail),
        imagegen.GalleryItem("sub dir/odd#name?.png", "plain", None, None, None),
    ]
    page = imagegen.gallery_html(items, title="batch <1>")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script>" not in page and "&lt;script&gt;" in page
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert checker.tags.count("figure") == 2
    text = "".join(checker.text)
    assert 'a "fox" <script>alert(1)</script> & friends' in text
    assert "1200x630" in text and "batch <1>" in text and "sub dir/odd#name?.png" in text
    first, second = checker.images
    assert first["alt"] == 'a "fox" <script>alert(1)</script> & friends'
    assert base64.b64decode(first["src"].split(",", 1)[1]) == thumbnail
    assert second["src"] == "sub%20dir/odd%23name%3F.png"
    assert "fox.png" in checker.links and "sub%20dir/odd%23name%3F.png" in checker.links


def test_chroma_key_clears_a_noisy_background_and_keeps_the_subject():
    image, coverage = key_disc((230, 120, 20), (0, 250, 10))
    rng = random.Random(7)
    noisy = tuple(bytes(min(255, max(0, v + rng.randint(-6, 6))) for v in row)
                  for row in image.rows)
    result, _ = imagegen.remove_chroma_key(Raster(image.width, image.height, 3, noisy))
    for y in range(image.height):
        for x in range(image.width):
            alpha = result.pixel(x, y)[3]
            if coverage[y][x] == 0:
                assert alpha == 0, (x, y)
            elif coverage[y][x] == 1:
                assert alpha == 255, (x, y)

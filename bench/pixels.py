#!/usr/bin/env python3
"""The image core's cost: decode + resample + encode of a 1672x941 PNG to 1200x630 in pure
Python, against Pillow on the same machine and against the server's generation time.

    python3 bench/pixels.py            # 5 rounds
    python3 bench/pixels.py --quick    # one round (bench/bench.py --quick runs this too)

The source image is photo-like (smooth gradients plus grain), 1672x941 RGB, the shape the
codex images route answers for "Aspect ratio: 16:9". It is written twice: by Pillow when it
is importable (adaptive filters, mostly Paeth: the slow case for a pure-Python decoder, and
what most encoders produce) and by imagegen.encode_png (None/Sub/Up/Average: the fast case).
A generation takes 15-45 s; the target is under 10% of a typical one (25 s): 2.5 s.

Standard library only (Pillow is only the baseline). It asserts nothing: it prints a table.
"""
from __future__ import annotations

import argparse
import io
import math
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import imagegen  # noqa: E402

SOURCE = (1672, 941)
TARGET = (1200, 630)
GENERATION_S = (15.0, 25.0, 45.0)  # fastest, typical and slowest generation seen live


def photo_like(width: int, height: int, seed: int = 1) -> imagegen.Raster:
    """Smooth colour fields plus soft grain (noise averaged with its neighbours, as in a
    generated picture, where no two adjacent pixels are unrelated), made a row at a time."""
    rng = random.Random(seed)
    grain = bytes((value % 25) + 116 for value in range(256))  # 116..140, centred on 128
    math_row = imagegen._RowMath(width * 3)
    offset = imagegen._lanes(width * 3, b"\x80")
    previous = None
    rows = []
    for y in range(height):
        base = bytearray(width * 3)
        base[0::3] = bytes(int(127 + 100 * math.sin(x / 97 + y / 143)) for x in range(width))
        base[1::3] = bytes(20 + 200 * y // height for _ in range(width))
        base[2::3] = bytes(20 + (x * 200 // width + y // 8) % 200 for x in range(width))
        noise = int.from_bytes(bytes(rng.getrandbits(8) for _ in range(width * 3))
                               .translate(grain), "little")
        noise = math_row.average(math_row.average(noise, (noise << 24) & math_row.mask),
                                 math_row.average(noise, noise >> 24))
        noise = math_row.average(noise, previous) if previous is not None else noise
        previous = noise
        total = math_row.sub(math_row.add(int.from_bytes(base, "little"), noise), offset)
        rows.append(total.to_bytes(width * 3, "little"))
    return imagegen.Raster(width, height, 3, tuple(rows))


def timed(function, rounds: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def filter_mix(data: bytes) -> str:
    """Which PNG filters the rows of data use, e.g. 'Paeth 97%, Sub 3%'."""
    import zlib
    header, compressed = imagegen._read_chunks(data, verify_crc=False)
    raw = zlib.decompress(compressed)
    stride = 1 + header.width * 3
    counts = [0] * 5
    for y in range(header.height):
        counts[raw[y * stride]] += 1
    names = ("None", "Sub", "Up", "Average", "Paeth")
    return ", ".join(f"{names[k]} {100 * counts[k] / header.height:.0f}%"
                     for k in sorted(range(5), key=lambda k: -counts[k]) if counts[k])


def rows(rounds: int) -> list[tuple[str, str, str, str]]:
    """The table rows (measure, median, ratio, note) of the pixels benchmark."""
    width, height = TARGET
    source = photo_like(*SOURCE)
    ours_png = imagegen.encode_png(source)
    try:
        from PIL import Image
    except ImportError:
        Image = None
    inputs = [("imagegen-written", ours_png)]
    if Image is not None:
        buffer = io.BytesIO()
        Image.frombytes("RGB", SOURCE, b"".join(source.rows)).save(buffer, "PNG")
        inputs.insert(0, ("Pillow-written", buffer.getvalue()))
    table = []
    typical = GENERATION_S[1]
    for label, data in inputs:
        decode_s, raster = timed(lambda data=data: imagegen.decode_png(data), rounds)
        resample_s, fitted = timed(lambda raster=raster: imagegen.cover(raster, width, height),
                                   rounds)
        encode_s, _ = timed(lambda fitted=fitted: imagegen.encode_png(fitted[0]), rounds)
        total = decode_s + resample_s + encode_s
        pillow_s = None
        if Image is not None:
            def with_pillow(data=data) -> bytes:
                image = Image.open(io.BytesIO(data))
                scale = max(width / image.width, height / image.height)
                box_w, box_h = width / scale, height / scale
                left, top = (image.width - box_w) / 2, (image.height - box_h) / 2
                image = image.resize((width, height), Image.BOX,
                                     box=(left, top, left + box_w, top + box_h))
                out = io.BytesIO()
                image.save(out, "PNG", compress_level=imagegen.PNG_COMPRESSION)
                return out.getvalue()
            pillow_s, _ = timed(with_pillow, rounds)
        name = f"pixels, {label} {SOURCE[0]}x{SOURCE[1]} ({filter_mix(data)})"
        table.append((f"{name}: decode", f"{decode_s:.3f} s", "", ""))
        table.append((f"{name}: cover to {width}x{height}", f"{resample_s:.3f} s", "", ""))
        table.append((f"{name}: encode", f"{encode_s:.3f} s", "", ""))
        if pillow_s is not None:
            table.append((f"{name}: Pillow, the same three steps", f"{pillow_s:.3f} s", "1.00x",
                          "baseline"))
        share = ", ".join(f"{100 * total / g:.1f}% of {g:g} s" for g in GENERATION_S)
        table.append((f"{name}: decode + cover + encode", f"{total:.3f} s",
                      f"{total / pillow_s:.1f}x" if pillow_s else "",
                      f"{share}; target < 10% of {typical:g} s"))
    data = inputs[0][1]
    thumb_s, _ = timed(lambda: imagegen.png_thumbnail(data), rounds)
    table.append(("pixels: thumbnail (long side 256) from the PNG", f"{thumb_s:.3f} s", "", ""))
    keyed = key_image(*SOURCE)
    key_s, (_, done) = timed(lambda: imagegen.remove_chroma_key(keyed), rounds)
    table.append((f"pixels: chroma key on {SOURCE[0]}x{SOURCE[1]} (a disc on green)",
                  f"{key_s:.3f} s", "", done.split(": ", 1)[1]))
    return table


def key_image(width: int, height: int) -> imagegen.Raster:
    """A subject (an ellipse, hard edge) on pure green, made a row at a time."""
    green, subject = b"\0\xff\0", b"\xc8\x28\x3c"
    rows = []
    for y in range(height):
        dy = (y - height / 2) / (height * 0.35)
        half = int(width * 0.3 * math.sqrt(max(0.0, 1 - dy * dy)))
        left = width // 2 - half
        rows.append(green * left + subject * (2 * half) + green * (width - left - 2 * half))
    return imagegen.Raster(width, height, 3, tuple(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    print(f"python {sys.version.split()[0]}, {rounds} round(s)", flush=True)
    table = rows(rounds)
    header = ("measure", "median", "ratio", "note")
    widths = [max(len(row[i]) for row in table + [header]) for i in range(4)]
    for row in [header] + table:
        print("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The streaming image decoder: long JSON strings leave the answer as it arrives, their base64
decoded strictly into a file beside the final image, so a 20 MB image is never held whole."""
from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import imagegen
from fakeserver import ok, png_bytes


def filtered(text: bytes, pieces: list[int], limit: int = 64, directory=None):
    """Feed `text` through LongStrings in pieces of the given sizes; (JSON out, spills)."""
    spills = imagegen.Spills(directory)
    strings = imagegen.LongStrings(spills, limit=limit)
    out, position = [], 0
    for size in pieces:
        out.append(strings.feed(text[position:position + size]))
        position += size
    out.append(strings.feed(text[position:]))
    out.append(strings.finish())
    return b"".join(out), spills


@settings(max_examples=150, deadline=None)
@given(image=st.binary(min_size=0, max_size=3000), pieces=st.lists(st.integers(1, 400)),
       slashes=st.booleans(), limit=st.integers(40, 400))
def test_any_split_gives_the_same_json_and_the_same_image(image, pieces, slashes, limit):
    encoded = base64.b64encode(image).decode()
    document = {"type": "response.output_item.done", "short": "a \"quoted\\\" word",
                "item": {"type": "image_generation_call", "result": encoded, "n": 1}}
    text = json.dumps(document)
    if slashes:
        text = text.replace("/", "\\/")
    out, spills = filtered(text.encode(), pieces, limit=limit)
    parsed = json.loads(out)
    result = parsed["item"]["result"]
    spill = spills.claim(result)
    if spill is None:  # short enough to stay in the JSON
        assert result == encoded
    else:
        assert spill.valid
        assert spill.data == image
        assert spill.length == len(image)
    assert parsed["short"] == document["short"]
    assert parsed["item"]["n"] == 1


@settings(max_examples=100, deadline=None)
@given(image=st.binary(min_size=60, max_size=600), position=st.integers(0, 10_000),
       junk=st.sampled_from(["@", "-", "_", "\\n", "\\u0041", "=", " "]))
def test_anything_but_strict_base64_is_flagged(image, position, junk):
    encoded = base64.b64encode(image).decode()
    spot = position % len(encoded)
    broken = encoded[:spot] + junk + encoded[spot:]
    out, spills = filtered(json.dumps({"result": broken}).encode(), [7, 13], limit=40)
    value = json.loads(out)["result"]
    spill = spills.claim(value)
    if spill is None:  # junk early on: the string stays in the JSON for the strict check
        assert value == json.loads(json.dumps(broken))
        with pytest.raises(imagegen.BackendError):
            imagegen.decode_image_base64(value, "test")
    else:
        assert not spill.valid


def test_long_text_that_is_not_base64_stays_in_the_json():
    text = "a long answer, with spaces and punctuation. " * 200
    out, spills = filtered(json.dumps({"text": text, "key": "v"}).encode(), [50, 999], limit=64)
    assert json.loads(out) == {"text": text, "key": "v"}
    assert spills.items == []


def test_truncated_base64_is_flagged():
    encoded = base64.b64encode(os.urandom(100)).decode()[:-1]
    out, spills = filtered(json.dumps({"result": encoded}).encode(), [30], limit=8)
    assert not spills.claim(json.loads(out)["result"]).valid


def test_spills_go_to_a_temporary_file_beside_the_image(tmp_path):
    image = png_bytes(64, 64) + os.urandom(5000)
    text = json.dumps({"result": base64.b64encode(image).decode()}).encode()
    out, spills = filtered(text, [100, 1000], limit=64, directory=str(tmp_path))
    spill = spills.claim(json.loads(out)["result"])
    assert spill.path and os.path.dirname(spill.path) == str(tmp_path)
    assert os.path.basename(spill.path).startswith(".imagegen-")
    with open(spill.path, "rb") as handle:
        assert handle.read() == image
    assert spill.head == image[:imagegen.SPILL_HEAD_BYTES]
    assert imagegen.sniff_image(spill.head).format == "png"


def test_unclaimed_spills_are_deleted(tmp_path):
    text = json.dumps({"a": "QUJD" * 100, "b": "REVG" * 100}).encode()
    out, spills = filtered(text, [], limit=64, directory=str(tmp_path))
    kept = spills.claim(json.loads(out)["a"])
    spills.release()
    assert os.listdir(tmp_path) == [os.path.basename(kept.path)]


def test_a_large_image_is_saved_whole_through_the_streaming_path(env, fake, run):
    image = png_bytes(64, 64) + os.urandom(3 * 1024 * 1024)  # well past the line threshold
    fake.queue("/images/generations", ok(image=image))
    result = run("a large picture", "--json")
    assert result.code == 0, result
    saved = env.work / result.json["images"][0]["path"]
    assert saved.read_bytes() == image
    entry = result.json["images"][0]
    assert entry["bytes"] == len(image)
    import hashlib
    assert entry["sha256"] == hashlib.sha256(image).hexdigest()
    leftovers = [p.name for p in saved.parent.iterdir() if p.name != saved.name]
    assert leftovers == []


def test_a_large_image_on_the_images_route_is_saved_whole(env, fake, run):
    image = png_bytes(64, 64) + os.urandom(2 * 1024 * 1024)
    fake.queue("/images/generations", ok(image=image))
    result = run("a large picture", "--route", "images", "-o", "big.png")
    assert result.code == 0, result
    assert (env.work / "big.png").read_bytes() == image
    assert sorted(p.name for p in env.work.iterdir()) == ["big.png"]


def test_a_large_answer_that_is_not_an_image_leaves_nothing(env, fake, run):
    data = b"GIF89a" + os.urandom(2 * 1024 * 1024)
    fake.queue("/images/generations", ok(image=data))
    result = run("a large picture", "--retries", "0")
    assert result.code == 5, result
    assert "not a PNG, JPEG or WebP" in result.err
    generated = env.work / "assets" / "generated"
    assert not generated.exists() or list(generated.iterdir()) == []

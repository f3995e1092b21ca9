"""Deliver exactly what was asked: the saved file has the size asked (--fit), real
transparency (the server's alpha, or a chroma key removed here), the format asked (JPEG and
WebP through Pillow, never PNG bytes under another extension), and is shown inline with
--preview and in batch --gallery. Checked on the files themselves, what reached the fake and
what was said; the gallery in a real headless browser."""
from __future__ import annotations

import base64
import json
import os
import pty
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

import imagegen
from fakeserver import keyed_png_bytes, ok, png_bytes

GENERATIONS = "/backend-api/codex/images/generations"
RESPONSES = "/backend-api/codex/responses"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")
SIGNATURES = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".webp": b"RIFF"}


# helpers ###################################################################################

def raster_of(path: Path) -> imagegen.Raster:
    """The pixels of a saved file: PNG by the tool's own decoder, others through Pillow."""
    data = path.read_bytes()
    if data.startswith(SIGNATURES[".png"]):
        return imagegen.decode_png(data)
    pytest.importorskip("PIL")
    return imagegen.pillow_decode(data)


def alpha(raster: imagegen.Raster, x: int, y: int) -> int:
    return raster.pixel(x, y)[3] if raster.channels == 4 else 255


def assert_extensions_match(folder: Path) -> None:
    """Every image file's bytes are what its extension says."""
    for path in folder.rglob("*"):
        if path.suffix in SIGNATURES:
            assert path.read_bytes().startswith(SIGNATURES[path.suffix]), path


def noisy_png(width: int = 96, height: int = 64) -> bytes:
    """An opaque PNG with no flat border: nothing to key out."""
    rows = tuple(bytes((x * 7 + y * 13) % 251 for x in range(width * 3)) for y in range(height))
    return imagegen.encode_png(imagegen.Raster(width, height, 3, rows))


def images_of(result) -> list[dict]:
    return result.json["images"]


# --size WxH is what is saved, whatever the server sends ####################################

@pytest.mark.parametrize("fit", ["cover", "contain", "none"])
def test_each_fit_on_the_codex_images_route(env, fake, run, fit):
    # 1200x640 becomes a 16:9 aspect line; the service answers 1672x941
    result = run("a banner", "--size", "1200x640", "--fit", fit, "-o", "banner.png", "--json",
                 "--meta")
    assert result.code == 0, result
    assert fake.last_request.path == GENERATIONS
    assert fake.last_request.json["prompt"].endswith("Aspect ratio: landscape 16:9.")
    raster = raster_of(env.work / "banner.png")
    (image,) = images_of(result)
    assert image["received"] == "1672x941"
    meta = json.loads((env.work / "banner.png.json").read_text())
    assert meta["size_received"] == "1672x941" and meta["fit"] == fit
    if fit == "none":
        assert (raster.width, raster.height) == (1672, 941)
        assert (env.work / "banner.png").read_bytes() == fake.images_sent[0]
        assert image["fitted"] is None and meta["fitted"] is None
        return
    assert (raster.width, raster.height) == (1200, 640)
    assert (image["width"], image["height"]) == (1200, 640)
    assert meta["size_saved"] == "1200x640"
    assert image["fitted"] == meta["fitted"] and image["fitted"].startswith(f"{fit}: scaled 1672x941")
    solid = raster.pixel(600, 320)[:3]
    assert alpha(raster, 600, 320) == 255
    if fit == "cover":
        assert "cropped the centre 1200x640" in image["fitted"]
        assert raster.pixel(0, 0)[:3] == solid and alpha(raster, 0, 0) == 255
    else:  # 1137x640 inside, transparent bands left and right (a PNG, background auto)
        assert "padded with transparency" in image["fitted"]
        assert alpha(raster, 0, 320) == 0 and alpha(raster, 1199, 320) == 0
        assert alpha(raster, 40, 320) == 255
    stderr = run("a banner", "--size", "1200x640", "--fit", fit, "-o", "again.png")
    lines = [line for line in stderr.err.splitlines() if line.startswith("imagegen: again.png: ")]
    assert len(lines) == 1 and "received 1672x941 png; " + fit in lines[0], stderr.err


def test_contain_with_an_opaque_background_pads_with_the_border_colour(env, fake, run):
    result = run("a banner", "--size", "1200x640", "--fit", "contain", "--background", "opaque",
                 "-o", "banner.png", "--json")
    assert result.code == 0, result
    raster = raster_of(env.work / "banner.png")
    assert (raster.width, raster.height) == (1200, 640)
    assert alpha(raster, 0, 0) == 255
    assert raster.pixel(0, 320)[:3] == raster.pixel(600, 320)[:3]  # the image's own edge colour
    assert "padded with #" in images_of(result)[0]["fitted"]


def test_the_api_backend_fits_an_answer_of_another_size(env, fake, run):
    env.write_api_config()
    fake.answer_size = (1024, 1024)  # asked 1536x1024, sent a square
    result = run("a field", "--backend", "api", "--size", "1536x1024", "-o", "field.png", "--json")
    assert result.code == 0, result
    assert fake.last_request.json["size"] == "1536x1024"  # this backend is asked the size
    raster = raster_of(env.work / "field.png")
    assert (raster.width, raster.height) == (1536, 1024)
    (image,) = images_of(result)
    assert image["received"] == "1024x1024"
    assert image["fitted"] == "cover: scaled 1024x1024 to 1536x1536 and cropped the centre 1536x1024"


def test_the_api_backend_at_the_size_asked_is_saved_untouched(env, fake, run):
    env.write_api_config()
    result = run("a field", "--backend", "api", "--size", "1536x1024", "-o", "field.png", "--json")
    assert result.code == 0, result
    assert (env.work / "field.png").read_bytes() == fake.images_sent[0]
    assert images_of(result)[0]["fitted"] is None


def test_a_batch_line_may_choose_its_fit(env, fake, run):
    (env.work / "lines.jsonl").write_text(
        json.dumps({"prompt": "kept", "out": "kept.png", "size": "1200x640", "fit": "none"}) + "\n"
        + json.dumps({"prompt": "fitted", "out": "fitted.png", "size": "1200x640"}) + "\n")
    result = run("batch", "lines.jsonl", "--json")
    assert result.code == 0, result
    kept, fitted = (json.loads(line)["images"][0] for line in result.lines)
    assert (kept["width"], kept["fitted"]) == (1672, None)
    assert (fitted["width"], fitted["height"]) == (1200, 640)


def test_fit_is_checked(env, fake, run):
    result = run("x", "--fit", "stretch")
    assert result.code == 2 and "cover, contain, none" in result.err, result
    assert fake.requests == []


# transparency ##############################################################################

def test_transparent_on_the_images_route_is_the_servers_alpha(env, fake, run):
    result = run("a sticker", "--background", "transparent", "-o", "sticker.png", "--json",
                 "--meta")
    assert result.code == 0, result
    assert fake.last_request.path == GENERATIONS
    assert fake.last_request.json["background"] == "transparent"
    assert (env.work / "sticker.png").read_bytes() == fake.images_sent[0]  # untouched
    assert imagegen.has_transparency((env.work / "sticker.png").read_bytes())
    assert images_of(result)[0]["transparency"] == "native"
    assert json.loads((env.work / "sticker.png.json").read_text())["transparency"] == "native"


@pytest.mark.parametrize("prompt, key, word", [
    ("a red fox sticker", "#00ff00", "green"),
    ("a green frog sticker", "#ff00ff", "magenta"),  # the subject is green: another key
])
def test_the_responses_route_makes_transparency_from_a_chroma_key(env, fake, run, prompt, key, word):
    result = run(prompt, "--route", "responses", "--background", "transparent", "-o", "s.png",
                 "--json", "--meta")
    assert result.code == 0, result
    request = fake.last_request
    assert request.path == RESPONSES
    tool = request.json["tools"][0]
    assert "background" not in tool  # the route refuses transparent: never sent
    text = request.json["input"][0]["content"][-1]["text"]
    assert text.startswith(prompt + "\n\nBackground: ") and f"{word} chroma-key colour {key}" in text
    raster = raster_of(env.work / "s.png")
    assert raster.channels == 4
    width, height = raster.width, raster.height
    assert alpha(raster, 0, 0) == 0 and alpha(raster, width - 1, height - 1) == 0
    centre = raster.pixel(width // 2, height // 2)
    assert centre[3] == 255 and centre[:3] == tuple(imagegen.decode_png(fake.images_sent[0])
                                                     .pixel(width // 2, height // 2))
    edge = alpha(raster, width // 4, height // 2)  # the anti-aliased edge: half see-through
    assert 0 < edge < 255
    (image,) = images_of(result)
    assert image["transparency"] == "chroma-key"
    meta = json.loads((env.work / "s.png.json").read_text())
    assert meta["transparency"] == "chroma-key" and key in meta["transparency_detail"]
    said = run(prompt, "--route", "responses", "--background", "transparent", "-o", "t.png")
    assert re.search(r"imagegen: t\.png: .*transparency: made here \(removed the chroma key "
                     + key, said.err), said.err


def test_the_gateway_makes_transparency_from_a_chroma_key(env, fake, run):
    env.set(CODEX_API_BASE_URL=fake.url)
    result = run("a robot", "--backend", "gateway", "--background", "transparent", "--json")
    assert result.code == 0, result
    text = json.dumps(fake.last_request.json)
    assert "chroma-key colour #00ff00" in text and "Transparent background" not in text
    assert images_of(result)[0]["transparency"] == "chroma-key"
    assert imagegen.has_transparency((env.work / images_of(result)[0]["path"]).read_bytes())


def test_an_opaque_answer_with_a_flat_border_is_keyed_out(env, fake, run):
    fake.queue("/images/generations", ok(image=keyed_png_bytes(200, 120, (250, 250, 250))))
    result = run("a sticker", "--background", "transparent", "-o", "s.png", "--json")
    assert result.code == 0, result
    assert images_of(result)[0]["transparency"] == "border-key"
    raster = raster_of(env.work / "s.png")
    assert alpha(raster, 0, 0) == 0 and alpha(raster, 100, 60) == 255


def test_an_opaque_answer_that_cannot_be_keyed_is_saved_with_a_warning(env, fake, run):
    fake.queue("/images/generations", ok(image=noisy_png()))
    result = run("a sticker", "--background", "transparent", "-o", "s.png", "--json")
    assert result.code == 0, result
    assert (env.work / "s.png").read_bytes() == fake.images_sent[0]  # as it came
    assert images_of(result)[0]["transparency"] == "opaque"
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "no transparent background" in warnings[0], result.err


# JPEG and WebP #############################################################################

@pytest.mark.parametrize("out, fmt", [("photo.jpg", "jpeg"), ("photo.webp", "webp")])
def test_the_images_route_png_is_converted_with_pillow(env, fake, run, out, fmt):
    pytest.importorskip("PIL")
    result = run("a photo", "--route", "images", "-o", out, "--size", "1536x1024", "--json")
    assert result.code == 0, result
    assert fake.last_request.path == GENERATIONS
    data = (env.work / out).read_bytes()
    assert data.startswith(SIGNATURES[Path(out).suffix])
    (image,) = images_of(result)
    assert (image["format"], image["width"], image["height"]) == (fmt, 1536, 1024)
    assert image["converted"] == f"png to {fmt} with Pillow"
    raster = raster_of(env.work / out)
    sent = imagegen.decode_png(fake.images_sent[0]).pixel(10, 10)
    assert all(abs(a - b) <= 12 for a, b in zip(raster.pixel(700, 500)[:3], sent[:3]))
    assert_extensions_match(env.work)


def test_a_transparent_webp_from_the_images_route_keeps_its_alpha(env, fake, run):
    pytest.importorskip("PIL")
    result = run("a sticker", "--background", "transparent", "-o", "s.webp", "--json")
    assert result.code == 0, result
    data = (env.work / "s.webp").read_bytes()
    assert data[:4] == b"RIFF" and imagegen.has_transparency(data)
    assert images_of(result)[0]["transparency"] == "native"


def test_jpeg_at_a_size_the_service_ignores_is_resized(env, fake, run):
    pytest.importorskip("PIL")
    result = run("a card", "-o", "og.jpg", "--size", "1200x640", "--json")
    assert result.code == 0, result
    assert fake.last_request.path == RESPONSES  # JPEG prefers the route that sends JPEG...
    assert fake.last_request.json["tools"][0]["output_format"] == "png"  # ...asked lossless
    (image,) = images_of(result)
    assert (image["format"], image["width"], image["height"]) == ("jpeg", 1200, 640)
    assert image["received"] == "1672x941" and image["converted"] == "png to jpeg with Pillow"


def test_jpeg_at_a_size_the_service_ignores_without_pillow_is_refused(env, fake, run, no_pillow):
    result = run("a card", "-o", "og.jpg", "--size", "1200x640")
    assert result.code == 2, result
    assert fake.requests_to("/backend-api/codex/") == []
    assert "Pillow" in result.err and "--fit none" in result.err and ".png" in result.err
    kept = run("a card", "-o", "og.jpg", "--size", "1200x640", "--fit", "none")
    assert kept.code == 0, kept
    assert (env.work / "og.jpg").read_bytes() == fake.images_sent[0]  # JPEG as sent


def test_jpeg_asked_is_sent_natively_without_a_size(env, fake, run, no_pillow):
    result = run("a photo", "-o", "photo.jpg")
    assert result.code == 0, result
    assert (env.work / "photo.jpg").read_bytes() == fake.images_sent[0]
    assert_extensions_match(env.work)


def test_an_unforeseen_jpeg_of_the_wrong_size_without_pillow_is_kept_with_a_warning(
        env, fake, run, no_pillow):
    env.write_api_config()
    fake.answer_size = (1024, 1024)  # the api backend honours sizes: not foreseeable
    result = run("a photo", "--backend", "api", "-o", "photo.jpg", "--size", "1536x1024", "--json")
    assert result.code == 0, result
    assert (env.work / "photo.jpg").read_bytes() == fake.images_sent[0]
    assert images_of(result)[0]["width"] == 1024
    assert re.search(r"warning: photo\.jpg: kept as received \(1024x1024 jpeg\): fitting it to "
                     r"1536x1024 needs Pillow", result.err), result.err


def test_the_server_sending_jpeg_for_png_is_converted_with_pillow(env, fake, run):
    pytest.importorskip("PIL")
    fake.queue("/images/generations", ok(fmt="jpeg"))
    result = run("a cat", "-o", "cat.png", "--json")
    assert result.code == 0, result
    data = (env.work / "cat.png").read_bytes()
    assert data.startswith(SIGNATURES[".png"]) and fake.images_sent[0][:3] == b"\xff\xd8\xff"
    assert images_of(result)[0]["converted"] == "jpeg to png with Pillow"


def test_never_png_bytes_under_a_jpeg_name(env, fake, run, no_pillow):
    # the gateway was asked for JPEG in words and sent a PNG; without Pillow: a .png
    env.set(CODEX_API_BASE_URL=fake.url)
    result = run("a photo", "--backend", "gateway", "-o", "photo.jpg")
    assert result.code == 0, result
    assert result.lines == ["photo.png"]
    assert not (env.work / "photo.jpg").exists()
    assert_extensions_match(env.work)
    assert "saved as photo.png" in result.err


# --preview #################################################################################

def run_in_pty(run_cli, env_vars: dict, *argv: str) -> tuple[int, bytes, str]:
    """imagegen with stderr on a pseudo-terminal: (exit code, what the terminal got, stdout)."""
    controller, terminal = pty.openpty()
    proc = run_cli.popen(*argv, env_vars=env_vars, stderr=terminal)
    os.close(terminal)
    received = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the other side closed
                return
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=60)
    reader.join(10)
    os.close(controller)
    return proc.returncode, bytes(received), out.decode()


PREVIEW_ENV = {"TERM": "xterm-256color", "TERM_PROGRAM": None, "KITTY_WINDOW_ID": None,
               "TMUX": None}


def test_preview_in_kitty_sends_the_png(env, fake, run_cli):
    code, seen, out = run_in_pty(run_cli, dict(PREVIEW_ENV, TERM="xterm-kitty"),
                                 "a kite", "-o", "kite.png", "--preview")
    assert code == 0, seen
    assert out.strip() == "kite.png"
    chunks = re.findall(rb"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\", seen)
    assert chunks and chunks[0][0].startswith(b"a=T,f=100")
    assert base64.b64decode(b"".join(payload for _, payload in chunks)) == \
        (env.work / "kite.png").read_bytes()


def test_preview_in_iterm_sends_the_file(env, fake, run_cli):
    code, seen, _ = run_in_pty(run_cli, dict(PREVIEW_ENV, TERM_PROGRAM="iTerm.app"),
                               "a kite", "-o", "kite.png", "--preview")
    assert code == 0, seen
    match = re.search(rb"\x1b\]1337;File=([^:]*):([A-Za-z0-9+/=]+)\x07", seen)
    assert match and b"inline=1" in match.group(1)
    assert base64.b64decode(match.group(2)) == (env.work / "kite.png").read_bytes()


def test_preview_in_an_ordinary_terminal_or_a_pipe_sends_nothing(env, fake, run_cli, run):
    code, seen, _ = run_in_pty(run_cli, PREVIEW_ENV, "a kite", "-o", "kite.png", "--preview")
    assert code == 0 and b"\x1b_G" not in seen and b"1337;File" not in seen, seen
    piped = run("a kite", "-o", "kite2.png", "--preview", env_vars={"TERM": "xterm-kitty"})
    assert piped.code == 0, piped
    assert "\x1b" not in piped.err and "\x1b" not in piped.out


def test_preview_of_a_jpeg_in_kitty_is_a_png_thumbnail(env, fake, run_cli):
    pytest.importorskip("PIL")
    code, seen, _ = run_in_pty(run_cli, dict(PREVIEW_ENV, TERM="xterm-kitty"),
                               "a photo", "-o", "photo.jpg", "--preview")
    assert code == 0, seen
    chunks = re.findall(rb"\x1b_G[^;]*;([A-Za-z0-9+/=]*)\x1b\\", seen)
    thumbnail = base64.b64decode(b"".join(chunks))
    assert thumbnail.startswith(SIGNATURES[".png"])


def test_preview_belongs_to_generate_and_gallery_to_batch(env, fake, run):
    (env.work / "b.jsonl").write_text('{"prompt": "x"}\n')
    assert run("batch", "b.jsonl", "--preview").code == 2
    assert run("x", "--gallery").code == 2
    assert fake.requests == []


# batch --gallery ###########################################################################

def write_lines(env, lines: list[dict]) -> None:
    (env.work / "batch.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_gallery_lists_every_output_and_stays_off_stdout(env, fake, run):
    write_lines(env, [{"prompt": "a red <b>one</b>", "out": "art/one.png"},
                      {"prompt": "a second", "out": "art/sub/two.png", "size": "1200x640"}])
    result = run("batch", "batch.jsonl", "--gallery", "--json")
    assert result.code == 0, result
    assert [json.loads(line)["ok"] for line in result.lines] == [True, True]  # stdout: the lines
    index = env.work / "art" / "index.html"
    assert result.err.splitlines()[-1] == f"imagegen: gallery of 2 images: {Path('art') / 'index.html'}"
    html = index.read_text()
    assert "a red &lt;b&gt;one&lt;/b&gt;" in html and "<b>one" not in html
    assert 'href="one.png"' in html and 'href="sub/two.png"' in html
    assert "1200x640" in html and html.count("data:image/png;base64,") == 2
    again = run("batch", "batch.jsonl", "--gallery")  # all there: skipped, still listed
    assert again.code == 0 and "gallery of 2 images" in again.err
    assert index.read_text().count("<figure>") == 2


def test_gallery_shows_a_line_that_made_no_image_with_its_reason(env, fake, run):
    from fakeserver import content_policy
    fake.by_prompt["a <i>forbidden</i> one"] = content_policy()
    write_lines(env, [{"prompt": "a fine one", "out": "art/one.png"},
                      {"prompt": "a <i>forbidden</i> one", "out": "art/two.png"}])
    result = run("batch", "batch.jsonl", "--gallery")
    assert result.code == 6, result
    assert f"imagegen: gallery of 1 image and 1 failed: {Path('art') / 'index.html'}\n" in result.err
    html = (env.work / "art" / "index.html").read_text()
    assert html.count("<figure") == 2 and html.count("<img ") == 1
    failed = html[html.index('<figure class="failed">'):]
    assert "a &lt;i&gt;forbidden&lt;/i&gt; one" in failed and "<i>forbidden" not in html
    assert "no_image: " in failed and "content policy" in failed
    assert not (env.work / "art" / "two.png").exists()


def test_gallery_leaves_a_foreign_index_alone(env, fake, run):
    folder = env.work / "assets" / "generated"  # where lines without "out" go
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("<html>mine</html>")
    write_lines(env, [{"prompt": "one"}])
    result = run("batch", "batch.jsonl", "--gallery")
    assert result.code == 0, result
    assert (folder / "one.png").exists()
    assert (folder / "index.html").read_text() == "<html>mine</html>"
    assert "was not written by imagegen" in result.err


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if IN_CI:
            pytest.fail("chromium is missing (CI=true: .ci/run installs it)", pytrace=False)
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def test_gallery_shows_the_thumbnails_in_a_real_browser(env, fake, run, tmp_path):
    browser = chromium()
    colours = [(230, 30, 30), (30, 30, 230)]
    for index, colour in enumerate(colours):
        fake.by_prompt[f"shot {index}"] = ok(image=png_bytes(640, 480, color=colour))
    write_lines(env, [{"prompt": f"shot {index}", "out": f"shots/s{index}.png"}
                      for index in range(len(colours))])
    result = run("batch", "batch.jsonl", "--gallery")
    assert result.code == 0, result
    index = env.work / "shots" / "index.html"
    screenshot = tmp_path / "page.png"
    profile = tmp_path / "profile"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
               "--window-size=1000,700", f"--screenshot={screenshot}", index.as_uri()]
    done = subprocess.run(command, capture_output=True, timeout=120, env=dict(os.environ, HOME=str(tmp_path)))
    assert screenshot.exists(), done.stderr.decode(errors="replace")[-2000:]
    page = imagegen.decode_png(screenshot.read_bytes())
    seen = {page.pixel(x, y)[:3] for y in range(0, page.height, 4) for x in range(0, page.width, 4)}
    for colour in colours:
        assert any(all(abs(a - b) <= 6 for a, b in zip(pixel, colour)) for pixel in seen), colour

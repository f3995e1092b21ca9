"""What a person sees on the terminal: a live line that never wraps, counts that add up, each
path once, a heartbeat in logs; and the small things a newcomer hits on the way."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest


CODEX = "/codex/responses"
PROMPT = "a paper plane over a blue sea"
DEFAULT_PATH = "assets/generated/a-paper-plane-over-a-blue-sea.png"


def drawn(err: str) -> list[str]:
    """Every state of the live line (the text after each \\r\\x1b[2K up to the next one)."""
    return [piece for piece in err.split("\r\x1b[2K")[1:] if piece and "\n" not in piece]


# the live line ##############################################################################

def test_the_live_line_never_wraps_a_narrow_terminal(fake, env, run):
    fake.delay = 0.8
    result = run(PROMPT, "-n", "3", "-o", "out/", tty=True, env_vars={"COLUMNS": "40"})
    assert result.code == 0, result
    states = drawn(result.err)
    assert states, result
    assert all(len(state) <= 39 for state in states), states
    assert any(state.endswith("…") for state in states), states


def test_a_wide_terminal_shows_the_whole_line(fake, env, run):
    fake.delay = 0.8
    result = run(PROMPT, "-n", "2", "-o", "out/", tty=True, env_vars={"COLUMNS": "200"})
    states = drawn(result.err)
    assert any(re.fullmatch(r"imagegen: [a-z/]+ · \d/2 saved · \d in flight · \d+ s( · .*)?", s)
               for s in states), states
    assert not any("…" in state for state in states)


def test_batch_progress_counts_every_line_in_flight(fake, env, run):
    fake.delay = 1.0
    (env.work / "three.jsonl").write_text("".join(
        json.dumps({"prompt": f"icon {n}", "out": f"icons/{n}.png"}) + "\n" for n in range(3)))
    result = run("batch", "three.jsonl", "--parallel", "3", tty=True, env_vars={"COLUMNS": "200"})
    assert result.code == 0, result
    states = drawn(result.err)
    assert any("0/3 saved · 3 in flight" in state for state in states), states
    assert not any("1 image" in state for state in states), states


# a heartbeat where there is no live line ####################################################

@pytest.fixture
def quick_heartbeat(monkeypatch):
    import imagegen
    monkeypatch.setattr(imagegen, "HEARTBEAT_S", 0.3)


def test_a_heartbeat_line_when_stderr_is_not_a_terminal(fake, env, run, quick_heartbeat):
    fake.delay = 1.2
    result = run(PROMPT)
    assert result.code == 0, result
    beats = [line for line in result.err.splitlines() if line.startswith("imagegen: still ")]
    assert beats, result
    assert all(re.fullmatch(r"imagegen: still [a-z/]+ · 1 image · \d+ s( · .*)?", b) for b in beats), beats
    assert "\r" not in result.err and "\x1b" not in result.err


@pytest.mark.parametrize("flag", ["--quiet", "--json"])
def test_no_heartbeat_with_quiet_or_json(fake, env, run, quick_heartbeat, flag):
    fake.delay = 1.0
    result = run(PROMPT, flag)
    assert result.code == 0, result
    assert "still" not in result.err


def test_no_progress_gives_heartbeat_lines_instead_of_the_live_line(fake, env, run, quick_heartbeat):
    fake.delay = 1.0
    result = run(PROMPT, "--no-progress", tty=True)
    assert result.code == 0, result
    assert "\r" not in result.err
    assert any(line.startswith("imagegen: still ") for line in result.err.splitlines())


# each path once in a terminal ###############################################################

@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals here")
def test_one_terminal_shows_each_path_once(fake, env, run_cli):
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen(run_cli.command(PROMPT, "-n", "2", "-o", "coins/", "--no-progress"),
                                stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                                cwd=str(env.work), env=env.environ())
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(60) == 0, output
    finally:
        os.close(controller)
    text = output.decode("utf-8", "replace")
    for path in ("coins/a-paper-plane-over-a-blue-sea.png", "coins/a-paper-plane-over-a-blue-sea-2.png"):
        assert len(re.findall(re.escape(path) + r"(?![-\w])", text)) == 1, text
    assert "saved" not in text


def test_a_pipe_keeps_the_saved_lines_on_stderr(fake, env, run_cli):
    result = run_cli(PROMPT)
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert f"saved {DEFAULT_PATH}" in result.err


# small things a newcomer hits ###############################################################

def rgba_png(width: int, height: int, alpha) -> bytes:
    """An 8-bit RGBA PNG whose alpha at (x, y) is alpha(x, y); rows use the Paeth filter's
    neighbour, Up, so the check must really undo filters."""
    import struct
    import zlib
    rows = []
    previous = bytes(width * 4)
    for y in range(height):
        row = b"".join(bytes((10, 20, 30, alpha(x, y))) for x in range(width))
        rows.append(b"\x02" + bytes((a - b) & 0xFF for a, b in zip(row, previous)))
        previous = row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("mask, warned", [
    (rgba_png(16, 16, lambda x, y: 255), True),
    (rgba_png(16, 16, lambda x, y: 0 if (x, y) == (9, 12) else 255), False),
    ("rgb", True),
], ids=["opaque-alpha", "one-transparent-pixel", "no-alpha"])
def test_a_mask_with_no_transparent_pixel_draws_a_warning(fake, env, run, mask, warned):
    from fakeserver import png_bytes
    (env.work / "photo.png").write_bytes(png_bytes(16, 16))
    (env.work / "mask.png").write_bytes(png_bytes(16, 16) if mask == "rgb" else mask)
    result = run("change the sky", "-i", "photo.png", "--mask", "mask.png")
    assert result.code == 0, result
    assert ("the mask mask.png has no transparent pixel" in result.err) is warned, result


def test_a_size_error_suggests_the_nearest_valid_size(fake, env, run):
    # --fit none: the model must make the size itself (otherwise any size is fitted here)
    result = run(PROMPT, "--size", "1000x1000", "--fit", "none")
    assert result.code == 2 and "try 1008x1008" in result.err, result
    result = run(PROMPT, "--size", "100x100", "--fit", "none")
    assert result.code == 2 and "try 816x816" in result.err, result
    result = run(PROMPT, "--size", "1920x1080", "--fit", "none")
    assert result.code == 2 and "try 1920x1088" in result.err, result
    assert fake.requests == []


def test_the_suggested_size_is_always_accepted():
    import imagegen
    for width, height in ((1000, 1000), (100, 100), (4096, 4096), (5000, 1000), (10, 3000),
                          (1200, 630), (3841, 2161), (655, 1000)):
        best = imagegen.nearest_size(width, height)
        assert best is not None and imagegen.size_problems(*best) == [], (width, height, best)


def test_a_mistyped_option_gets_a_did_you_mean(fake, env, run):
    result = run(PROMPT, "--szie", "1024x1024")
    assert result.code == 2
    assert "unknown option --szie; did you mean --size?" in result.err
    assert "did you mean" not in run(PROMPT, "--zzzzzz").err


def test_a_read_only_file_system_is_said_as_such(fake, env, run, monkeypatch):
    import imagegen
    real = os.statvfs

    class ReadOnly:
        def __init__(self, result):
            self.f_flag = result.f_flag | os.ST_RDONLY

    monkeypatch.setattr(imagegen.os, "statvfs", lambda path: ReadOnly(real(path)))
    result = run(PROMPT)
    assert result.code == 7, result
    assert "read-only file system; choose a writable -o" in result.err
    assert fake.requests == []


def test_dash_o_dash_writes_the_image_bytes_to_a_pipe(fake, env, run_cli):
    proc = run_cli.popen(PROMPT, "-o", "-")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == fake.images_sent[-1]
    assert b"to stdout" in err
    assert not (env.work / "-.png").exists() and not (env.work / "assets").exists()


def test_dash_o_dash_refuses_several_images(fake, env, run):
    result = run(PROMPT, "-o", "-", "-n", "2")
    assert result.code == 2 and "use -n 1" in result.err
    assert fake.requests == []


def test_dash_o_dash_refuses_a_terminal(fake, env, run, monkeypatch):
    import imagegen
    monkeypatch.setattr(imagegen, "_isatty", lambda stream: True)
    result = run(PROMPT, "-o", "-")
    assert result.code == 2 and "stdout, which is a terminal" in result.err
    assert fake.requests == []


def test_dry_run_shows_where_each_image_would_go(fake, env, run):
    (env.work / "assets" / "generated").mkdir(parents=True)
    (env.work / "assets" / "generated" / "a-logo.png").write_bytes(b"taken")
    result = run("a logo", "--dry-run", "-n", "2")
    assert result.code == 0, result
    assert result.json["saves"] == ["assets/generated/a-logo-2.png", "assets/generated/a-logo-3.png"]
    assert len(result.json["requests"]) == 2
    result = run("a logo", "--dry-run", "-n", "2", "-o", "x.webp")
    assert result.json["saves"] == ["x.webp", "x-2.webp"]
    assert sorted(p.name for p in env.work.iterdir()) == ["assets"]  # nothing was claimed


def test_batch_dry_run_shows_the_saves_too(fake, env, run):
    (env.work / "two.jsonl").write_text('{"prompt": "a", "out": "one.png"}\n{"prompt": "b"}\n')
    result = run("batch", "two.jsonl", "--dry-run")
    assert result.code == 0, result
    assert result.json["saves"] == ["one.png", "assets/generated/b.png"]


def test_batch_lines_without_out_warn_once(fake, env, run):
    (env.work / "noout.jsonl").write_text(
        '{"prompt": "no out one"}\n{"prompt": "with out", "out": "w.png"}\n{"prompt": "no out two"}\n')
    result = run("batch", "noout.jsonl")
    assert result.code == 0, result
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warnings) == 1, result
    assert "lines 1, 3 have no \"out\": running this batch again makes them again" in warnings[0]
    (env.work / "without.jsonl").write_text('{"prompt": "x", "out": "x.png"}\n')
    assert "warning" not in run("batch", "without.jsonl").err


def test_running_the_tests_leaves_no_cache_in_the_checkout(request):
    # `npx skills add ./checkout` copies the folder as it is (only .git and __pycache__ are
    # left out): pytest's and Hypothesis' caches must live elsewhere.
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    cache = Path(request.config.cache.mkdir("imagegen-probe")).resolve()
    assert root not in cache.parents, cache
    hypothesis = pytest.importorskip("hypothesis.configuration")
    try:
        found = hypothesis.storage_directory("examples", intent_to_write=False)
    except TypeError:  # older Hypothesis: no intent_to_write
        found = hypothesis.storage_directory("examples")
    home = Path(getattr(found, "path", found)).resolve()
    assert root not in home.parents, home


# terminal safety in --json ##################################################################

UNSAFE = "\u0085\u009b2J\u202eevil\u202c\u2066x\u2069"  # C1 (NEL, CSI), bidi override, isolate


def test_json_escapes_the_characters_that_could_drive_a_terminal(fake, env, run):
    from fakeserver import ok
    fake.default("/responses", ok(revised_prompt=f"café {UNSAFE} — fine"))
    result = run(PROMPT, "--json", "--route", "responses")
    assert result.code == 0, result
    raw = result.out
    for char in UNSAFE:
        if not char.isascii():
            assert char not in raw, repr(char)
            assert f"\\u{ord(char):04x}" in raw
    assert "café" in raw and "—" in raw  # other non-ASCII text stays readable
    assert result.json["images"][0]["revised_prompt"] == f"café {UNSAFE} — fine"


def test_json_escapes_them_in_a_servers_error_message_too(fake, env, run):
    from fakeserver import content_policy
    fake.default("/images/generations", content_policy(f"refused {UNSAFE} é"))
    result = run(PROMPT, "--json")
    assert result.code == 6, result
    assert not any(char in result.out for char in UNSAFE if not char.isascii())
    assert "\\u202e" in result.out and "é" in result.out
    assert UNSAFE in result.json["error"]["message"]


# previews in Ghostty ########################################################################

@pytest.mark.parametrize("environ", [
    {"TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty"},
    {"TERM": "xterm-ghostty"},                              # over ssh: TERM_PROGRAM is not sent
    {"TERM": "xterm-256color", "TERM_PROGRAM": "ghostty"},
])
def test_ghostty_speaks_kittys_graphics_protocol(environ):
    import imagegen
    assert imagegen.preview_protocol(environ, True) == "kitty"
    assert imagegen.preview_protocol(environ, False) is None
    assert imagegen.preview_protocol(dict(environ, TMUX="/tmp/tmux-0/default"), True) is None


def test_preview_in_ghostty_sends_the_png(fake, env, run):
    import base64
    result = run("a kite", "-o", "kite.png", "--preview", tty=True, env_vars={
        "TERM": "xterm-ghostty", "TERM_PROGRAM": "ghostty", "KITTY_WINDOW_ID": None,
        "TMUX": None})
    assert result.code == 0, result
    assert result.out == "kite.png\n"
    chunks = re.findall(r"\x1b_G([^;]*);([A-Za-z0-9+/=]*)\x1b\\", result.err)
    assert chunks and chunks[0][0].startswith("a=T,f=100"), result
    assert base64.b64decode("".join(payload for _, payload in chunks)) == \
        (env.work / "kite.png").read_bytes()

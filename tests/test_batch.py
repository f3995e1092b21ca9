"""`imagegen batch`, quota awareness and provenance sidecars (issue 6).

Black-box tests against the fake server: what stdout and stderr say, the exit code, which
requests reached the server, what is left on disk. A few unit tests pin the pure quota
helpers (quota_from_headers, window_label, describe_quota).
"""
from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from fakeserver import (content_policy, find_secrets, ok, png_bytes, image_info, rate_limited,
                        stall, status, usage_limit)

import imagegen

SUMMARY = re.compile(r"^imagegen: batch: (\d+) done, (\d+) skipped, (\d+) failed in [\d.]+ s$")
QUOTA_FILE = "codex-imagegen-quota.json"


# helpers ####################################################################################

@pytest.fixture(autouse=True)
def responses_route(env):
    """Batches run on the Responses route here (its stream behaviours script each line; the
    default images route is covered in test_routes.py), unless a test names a route."""
    env.set(IMAGEGEN_ROUTE="responses")


def write_batch(env: Any, lines: list, name: str = "batch.jsonl") -> Path:
    """One JSON object a line (a str is written as is: a broken line, or a blank one)."""
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path = env.work / name
    path.write_text(text + "\n", encoding="utf-8")
    return path


def image_requests(fake: Any) -> list:
    """The requests that asked for an image (either Codex route), in arrival order."""
    return [r for r in fake.requests
            if r.path.endswith(("/codex/responses", "/images/generations", "/images/edits"))]


def prompt_of(request: Any) -> str:
    body = request.json
    if "prompt" in body:
        return body["prompt"]
    texts = [part.get("text", "") for item in body.get("input", [])
             for part in (item.get("content") or []) if part.get("type") == "input_text"]
    return "\n".join(texts)


def by_prompt(fake: Any) -> dict:
    """{prompt: request} for every image request (a prompt is asked for once in these tests)."""
    found: dict = {}
    for request in image_requests(fake):
        prompt = prompt_of(request)
        assert prompt not in found, f"{prompt!r} was sent twice"
        found[prompt] = request
    return found


def tool_of(request: Any) -> dict:
    return next(t for t in request.json["tools"] if t["type"] == "image_generation")


def summary(result: Any) -> tuple[int, int, int]:
    lines = [line for line in result.err.splitlines() if SUMMARY.match(line)]
    assert len(lines) == 1, f"expected one summary line on stderr:\n{result.err}"
    done, skipped, failed = SUMMARY.match(lines[0]).groups()
    return int(done), int(skipped), int(failed)


def quota_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "quota:" in line]


def leftovers(folder: Path) -> list[str]:
    """Temporary or partial files left in a folder tree."""
    return [str(p) for p in folder.rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


# a batch of a dozen lines ###################################################################

def test_a_dozen_lines_one_result_a_prompt_in_input_order(fake, env, run):
    fake.by_prompt["REFUSE"] = content_policy()       # line 2: refused (no_image, exit 6)
    fake.by_prompt["BROKEN"] = status(500)            # line 8: a 5xx, with "retries": 0
    fake.by_prompt["slow first"] = ok(delay=0.4)      # line 1 finishes after the others
    icons = env.work / "icons"
    icons.mkdir()
    done_before = {"three": png_bytes(8, 8, color=(1, 2, 3)), "seven": png_bytes(9, 9)}
    for name, data in done_before.items():
        (icons / f"{name}.png").write_bytes(data)
    old = time.time() - 3600
    for name in done_before:
        os.utime(icons / f"{name}.png", (old, old))
    write_batch(env, [
        {"prompt": "slow first icon", "out": "icons/one.png"},                   # 1
        {"prompt": "icon two REFUSE", "out": "icons/two.png"},                   # 2
        {"prompt": "icon three", "out": "icons/three.png"},                      # 3 done before
        '{"prompt": "icon four", "out": ',                                       # 4 bad JSON
        {"prompt": "icon five", "out": "icons/five.png", "colour": "red"},       # 5 unknown key
        {"prompt": "icon six", "out": "icons/six.png", "size": "1000x8"},        # 6 bad size
        {"prompt": "icon seven", "out": "icons/seven.png"},                      # 7 done before
        {"prompt": "icon eight BROKEN", "out": "icons/eight.png", "retries": 0}, # 8 a 500
        {"prompt": "icon nine"},                                                 # 9 automatic name
        {"prompt": "icon ten", "out": "icons/ten.webp"},                         # 10
        "",                                                                      # 11 blank: no prompt
        {"prompt": "icon twelve", "out": "icons/twelve.png", "moderation": "auto"},  # 12
        {"out": "icons/thirteen.png"},                                           # 13 no prompt
        {"prompt": "icon fourteen", "out": "icons/fourteen.png"},                # 14
    ])

    result = run("batch", "batch.jsonl", "--parallel", "4", "--moderation", "low")

    lines = result.out.splitlines()
    assert len(lines) == 13, result  # one a prompt line; the blank line is not a prompt
    assert lines[0] == os.path.join("icons", "one.png")
    assert lines[1].startswith("ERROR no_image: line 2: ") and "content policy" in lines[1]
    assert lines[2] == os.path.join("icons", "three.png")
    assert lines[3].startswith("ERROR usage: line 4: ") and "JSON" in lines[3]
    assert lines[4].startswith("ERROR usage: line 5: ") and "colour" in lines[4]
    assert lines[5].startswith("ERROR usage: line 6: ") and "1000x8" in lines[5]
    assert lines[6] == os.path.join("icons", "seven.png")
    assert lines[7].startswith("ERROR backend: line 8: ") and "500" in lines[7]
    assert lines[8] == os.path.join("assets", "generated", "icon-nine.png")
    assert lines[9] == os.path.join("icons", "ten.webp")
    assert lines[10] == os.path.join("icons", "twelve.png")
    assert lines[11].startswith("ERROR usage: line 13: ") and "prompt" in lines[11]
    assert lines[12] == os.path.join("icons", "fourteen.png")
    assert all("\n" not in line and line.strip() == line for line in lines)

    # the first failure in input order decides the exit code (line 2: no_image), not the
    # usage errors that were known before any request, nor the later 5xx
    assert result.code == 6, result
    assert summary(result) == (5, 2, 6)

    # what reached the server: one request per line that had to run, none for the others
    sent = by_prompt(fake)
    assert set(sent) == {"slow first icon", "icon two REFUSE", "icon eight BROKEN", "icon nine",
                         "icon ten", "icon twelve", "icon fourteen"}
    assert tool_of(sent["icon twelve"])["moderation"] == "auto"
    assert tool_of(sent["icon nine"])["moderation"] == "low"
    assert tool_of(sent["icon ten"])["output_format"] == "webp"
    assert not fake.requests_to("/images/generations")  # no fallback after a refusal or a 5xx

    # the files: every saved image is exactly what the server sent; the skipped ones untouched
    saved = [env.work / line for line in lines if not line.startswith("ERROR")
             and not line.endswith(("three.png", "seven.png"))]
    assert len(saved) == 5
    sent_images = fake.images_sent
    for path in saved:
        assert path.read_bytes() in sent_images, path
    assert (icons / "ten.webp").read_bytes()[8:12] == b"WEBP"
    for name, data in done_before.items():
        path = icons / f"{name}.png"
        assert path.read_bytes() == data
        assert abs(path.stat().st_mtime - old) < 1
    for name in ("two", "five", "six", "eight", "thirteen"):
        assert not (icons / f"{name}.png").exists()
    assert leftovers(env.work) == []


def test_exit_code_is_that_of_the_first_failing_line(fake, env, run):
    fake.by_prompt["REFUSE"] = content_policy()
    write_batch(env, [
        {"prompt": "fine", "out": "a.png"},
        {"prompt": "fine too", "out": "b.png", "colour": "blue"},   # usage (2) first
        {"prompt": "REFUSE this", "out": "c.png"},                  # then no_image (6)
    ])
    result = run("batch", "batch.jsonl")
    assert result.code == 2, result
    assert [line.split(":")[0] for line in result.lines] == ["a.png", "ERROR usage", "ERROR no_image"]
    assert summary(result) == (1, 0, 2)


def test_a_batch_where_every_line_succeeds_or_is_skipped_exits_0(fake, env, run):
    (env.work / "old.png").write_bytes(png_bytes(4, 4))
    write_batch(env, [{"prompt": "old one", "out": "old.png"}, {"prompt": "new one", "out": "new.png"}])
    result = run("batch", "batch.jsonl")
    assert result.code == 0, result
    assert result.lines == ["old.png", "new.png"]
    assert summary(result) == (1, 1, 0)
    assert [prompt_of(r) for r in image_requests(fake)] == ["new one"]


# resume #####################################################################################

def test_rerun_after_an_interruption_only_makes_the_missing_image(fake, env, run):
    write_batch(env, [{"prompt": f"frame {n}", "out": f"frames/{n}.png"} for n in range(1, 5)])
    first = run("batch", "batch.jsonl")
    assert first.code == 0, first
    assert len(image_requests(fake)) == 4
    before = {n: (env.work / "frames" / f"{n}.png").read_bytes() for n in range(1, 5)}

    (env.work / "frames" / "3.png").unlink()
    fake.reset()
    second = run("batch", "batch.jsonl")

    assert second.code == 0, second
    assert [prompt_of(r) for r in image_requests(fake)] == ["frame 3"]
    assert second.lines == [os.path.join("frames", f"{n}.png") for n in range(1, 5)]
    assert summary(second) == (1, 3, 0)
    assert (env.work / "frames" / "3.png").read_bytes() == fake.images_sent[0]
    for n in (1, 2, 4):
        assert (env.work / "frames" / f"{n}.png").read_bytes() == before[n]


def test_force_runs_lines_whose_out_exists(fake, env, run):
    (env.work / "a.png").write_bytes(png_bytes(4, 4))
    write_batch(env, [{"prompt": "again", "out": "a.png"}])
    result = run("batch", "batch.jsonl", "--force")
    assert result.code == 0, result
    assert len(image_requests(fake)) == 1
    assert (env.work / "a.png").read_bytes() == fake.images_sent[0]
    assert summary(result) == (1, 0, 0)


# per-line options ###########################################################################

def test_line_options_override_the_command_line_defaults(fake, env, run):
    (env.work / "refs").mkdir()
    ref_a, ref_b = png_bytes(32, 32, color=(9, 9, 9)), png_bytes(48, 32, color=(7, 70, 7))
    (env.work / "refs" / "a.png").write_bytes(ref_a)
    (env.work / "refs" / "b.png").write_bytes(ref_b)
    write_batch(env, [
        {"prompt": "plain", "out": "plain.png"},
        {"prompt": "high", "out": "high.png", "moderation": "auto"},
        {"prompt": "wide", "out": "wide", "size": "1536x1024", "format": "webp"},
        # fit none: the JPEG as the server sends it (a resize would ask for a PNG to convert)
        {"prompt": "photo", "out": "photo", "output_format": "jpeg", "compression": 40,
         "fit": "none"},
        {"prompt": "edit", "out": "edit.png", "image": ["refs/a.png", "refs/b.png"]},
        {"prompt": "pair", "out": "pair.png", "count": 2},
    ])

    result = run("batch", "batch.jsonl", "--moderation", "low", "--size", "1024x1024",
                 "--background", "opaque")

    assert result.code == 0, result
    assert result.lines == ["plain.png", "high.png", "wide.webp", "photo.jpg", "edit.png",
                            "pair.png\tpair-2.png"]
    sent: dict = {}  # "pair" is asked for twice
    lines = {}  # the codex backend asks for the size as an aspect line after the prompt
    for request in image_requests(fake):
        prompt, _, line = prompt_of(request).partition("\n\nAspect ratio: ")
        sent.setdefault(prompt, []).append(request)
        lines[prompt] = line
    assert len(sent["pair"]) == 2
    tools = {prompt: tool_of(requests[0]) for prompt, requests in sent.items()}
    assert tools["plain"]["moderation"] == "low" and lines["plain"] == "square 1:1."
    assert tools["plain"]["background"] == "opaque"
    assert tools["high"]["moderation"] == "auto" and lines["high"] == "square 1:1."
    assert lines["wide"] == "landscape 3:2." and tools["wide"]["output_format"] == "webp"
    assert tools["photo"]["output_format"] == "jpeg" and tools["photo"]["output_compression"] == 40
    assert tools["photo"]["moderation"] == "low" and tools["photo"]["background"] == "opaque"
    assert sent["edit"][0].input_images() == [ref_a, ref_b]
    assert all(not r.input_images() for p, rs in sent.items() if p != "edit" for r in rs)
    assert image_info((env.work / "wide.webp").read_bytes())[:3] == ("webp", 1536, 1024)
    assert image_info((env.work / "photo.jpg").read_bytes()) == ("jpeg", 1254, 1254)
    assert image_info((env.work / "plain.png").read_bytes())[:3] == ("png", 1024, 1024)  # cover


def test_batch_from_stdin(fake, env, run):
    text = "\n".join(json.dumps({"prompt": f"from stdin {n}", "out": f"s{n}.png"}) for n in (1, 2))
    result = run("batch", "-", input=text + "\n")
    assert result.code == 0, result
    assert result.lines == ["s1.png", "s2.png"]
    assert sorted(prompt_of(r) for r in image_requests(fake)) == ["from stdin 1", "from stdin 2"]


def test_unreadable_batch_file_is_a_usage_error(fake, env, run):
    result = run("batch", "missing.jsonl")
    assert result.code == 2, result
    assert "missing.jsonl" in result.err
    assert fake.requests == []


# --parallel #################################################################################

def test_parallel_keeps_several_requests_in_flight(fake, env, run):
    fake.delay = 0.3
    write_batch(env, [{"prompt": f"tile {n}", "out": f"tile{n}.png"} for n in range(4)])
    result = run("batch", "batch.jsonl", "--parallel", "4")
    assert result.code == 0, result
    assert result.lines == [f"tile{n}.png" for n in range(4)]
    assert fake.max_in_flight >= 2  # seen by the server: overlapping requests


def test_parallel_1_sends_one_request_at_a_time(fake, env, run):
    fake.delay = 0.05
    write_batch(env, [{"prompt": f"tile {n}", "out": f"tile{n}.png"} for n in range(3)])
    result = run("batch", "batch.jsonl", "--parallel", "1")
    assert result.code == 0, result
    assert fake.max_in_flight == 1
    assert [prompt_of(r) for r in image_requests(fake)] == ["tile 0", "tile 1", "tile 2"]


# a usage limit ##############################################################################

def test_a_usage_limit_stops_starting_new_lines(fake, env, run):
    resets_at = int(time.time()) + 5400
    fake.queue("/codex/responses", ok(), usage_limit(resets_at=resets_at))
    done_before = png_bytes(6, 6)
    (env.work / "sprite4.png").write_bytes(done_before)
    write_batch(env, [{"prompt": f"sprite {n}", "out": f"sprite{n}.png"} for n in range(1, 7)])

    result = run("batch", "batch.jsonl", "--parallel", "1")

    assert result.code == 4, result
    assert len(image_requests(fake)) == 2  # lines 3.. were never sent, nothing fell back
    lines = result.lines
    assert len(lines) == 6
    assert lines[0] == "sprite1.png"
    assert lines[3] == "sprite4.png"  # already done: still reported as done
    for line in (lines[1], lines[2], lines[4], lines[5]):
        assert line.startswith("ERROR rate_limit: "), result
    reset = time.strftime("%H:%M", time.localtime(resets_at))
    assert f"resets at {reset}" in lines[1]
    assert f"resets at {reset}" in result.err  # stderr says when the quota resets
    assert summary(result) == (1, 1, 4)
    assert sorted(p.name for p in env.work.glob("sprite*")) == ["sprite1.png", "sprite4.png"]
    assert (env.work / "sprite4.png").read_bytes() == done_before


def test_lines_in_flight_finish_after_a_usage_limit(fake, env, run):
    fake.by_prompt["slow"] = ok(delay=0.5)
    fake.by_prompt["limit"] = usage_limit(resets_in_seconds=600)
    write_batch(env, [{"prompt": "slow one", "out": "slow.png"},
                      {"prompt": "limit hit", "out": "limit.png"},
                      {"prompt": "never 1", "out": "n1.png"},
                      {"prompt": "never 2", "out": "n2.png"}])
    result = run("batch", "batch.jsonl", "--parallel", "2")
    assert result.code == 4, result
    assert sorted(prompt_of(r) for r in image_requests(fake)) == ["limit hit", "slow one"]
    assert result.lines[0] == "slow.png"
    assert (env.work / "slow.png").read_bytes() in fake.images_sent
    assert all(line.startswith("ERROR rate_limit: ") for line in result.lines[1:])
    assert summary(result) == (1, 0, 3)


# --json and --dry-run #######################################################################

def test_json_gives_one_object_a_line_in_input_order(fake, env, run):
    fake.by_prompt["REFUSE"] = content_policy()
    fake.by_prompt["late"] = ok(delay=0.3)
    (env.work / "kept.png").write_bytes(png_bytes(4, 4))
    write_batch(env, [
        {"prompt": "late one", "out": "late.png"},
        {"prompt": "kept", "out": "kept.png"},
        {"prompt": "REFUSE me", "out": "no.png"},
        "[1, 2]",
        {"prompt": "quick", "out": "quick.png"},
    ])
    result = run("batch", "batch.jsonl", "--json", "--parallel", "3")
    assert result.code == 6, result
    objects = [json.loads(line) for line in result.out.splitlines()]
    assert [o["line"] for o in objects] == [1, 2, 3, 4, 5]
    assert [o["ok"] for o in objects] == [True, True, False, False, True]
    late, kept, refused, broken, quick = objects
    assert late["images"][0]["path"] == "late.png"
    assert late["images"][0]["sha256"]
    assert (env.work / "late.png").read_bytes() in fake.images_sent
    assert late["images"][0]["bytes"] == (env.work / "late.png").stat().st_size
    assert kept["images"][0]["path"] == "kept.png"
    assert kept.get("skipped") is True
    assert refused["error"]["kind"] == "no_image" and refused["error"]["exit_code"] == 6
    assert broken["error"]["kind"] == "usage" and broken["error"]["exit_code"] == 2
    assert quick["images"][0]["path"] == "quick.png"
    # --json: no progress, no summary and no quota line on stderr; the quota is in the JSON
    assert quota_lines(result.err) == []
    assert not any(SUMMARY.match(line) for line in result.err.splitlines())
    assert objects[-1]["quota"]["windows"][0]["used_percent"] == 12.5


def test_dry_run_prints_the_requests_of_every_line_and_sends_nothing(fake, env, run):
    (env.work / "exists.png").write_bytes(png_bytes(4, 4))
    write_batch(env, [
        {"prompt": "first dry", "out": "a.png", "moderation": "low"},
        {"prompt": "already there", "out": "exists.png"},
        {"prompt": "second dry", "size": "1536x1024"},
    ])
    result = run("batch", "batch.jsonl", "--dry-run")
    assert result.code == 0, result
    requests = result.json["requests"]
    bodies = [r["body"] for r in requests if r["url"].endswith("/responses")]
    assert len(bodies) == 2, requests  # the line whose out exists would not be sent
    tools = [next(t for t in body["tools"] if t["type"] == "image_generation") for body in bodies]
    assert [tool.get("moderation") for tool in tools] == ["low", None]
    text = json.dumps(requests)
    assert "first dry" in text and "second dry" in text and "already there" not in text
    assert fake.requests == []
    assert not (env.work / "a.png").exists()


def test_dry_run_names_the_bad_lines(fake, env, run):
    write_batch(env, [{"prompt": "good", "out": "a.png"}, {"prompt": "bad", "size": "9x9"}])
    result = run("batch", "batch.jsonl", "--dry-run")
    assert result.code == 2, result
    assert len(result.json["requests"]) == 1
    assert "line 2" in result.err
    assert fake.requests == []


# quota ######################################################################################

def _headers(pairs: dict) -> http.client.HTTPMessage:
    message = http.client.HTTPMessage()
    for name, value in pairs.items():
        message[name] = value
    return message


def test_quota_from_headers_reads_both_windows():
    headers = _headers({
        "X-Codex-Primary-Used-Percent": "12.5", "X-Codex-Primary-Window-Minutes": "300",
        "X-Codex-Primary-Reset-At": "1800000000",
        "x-codex-secondary-used-percent": "3", "x-codex-secondary-window-minutes": "10080",
        "x-codex-secondary-reset-at": "1800259200",
    })
    quota = imagegen.quota_from_headers(headers)
    assert quota == {"windows": [
        {"limit": "codex", "name": "primary", "used_percent": 12.5, "window_minutes": 300,
         "resets_at": 1800000000},
        {"limit": "codex", "name": "secondary", "used_percent": 3.0, "window_minutes": 10080,
         "resets_at": 1800259200},
    ]}


def test_quota_from_headers_without_or_with_broken_headers():
    assert imagegen.quota_from_headers(None) is None
    assert imagegen.quota_from_headers(_headers({"x-request-id": "req_1"})) is None
    assert imagegen.quota_from_headers(_headers({"x-codex-primary-used-percent": "lots"})) is None
    quota = imagegen.quota_from_headers(_headers({
        "x-codex-secondary-used-percent": "80", "x-codex-secondary-reset-at": "soon"}))
    assert quota == {"windows": [{"limit": "codex", "name": "secondary", "used_percent": 80.0,
                                  "window_minutes": None, "resets_at": None}]}


@pytest.mark.parametrize("minutes, label", [
    (300, "5-hour window"), (60, "1-hour window"), (10080, "weekly window"),
    (1440, "daily window"), (90, "90-minute window"), (None, "primary window"),
])
def test_window_label(minutes, label):
    assert imagegen.window_label(minutes, "primary") == label


def test_describe_quota_says_how_much_is_used_and_when_it_resets():
    now = 1_800_000_000
    quota = {"windows": [
        {"name": "primary", "used_percent": 12.5, "window_minutes": 300, "resets_at": now + 3723},
        {"name": "secondary", "used_percent": 3.0, "window_minutes": 10080, "resets_at": now + 2 * 86400},
    ]}
    text = imagegen.describe_quota(quota, now)
    assert text == "5-hour: 12.5% used, resets in 1h 2m; weekly: 3% used, resets in 2d 0h"


def test_describe_quota_of_a_window_that_has_reset_since():
    now = 1_800_000_000
    quota = {"windows": [{"name": "primary", "used_percent": 90, "window_minutes": 300,
                          "resets_at": now - 60}]}
    text = imagegen.describe_quota(quota, now)
    assert text.startswith("5-hour: 90% used")
    assert "has reset since" in text and "resets in" not in text


def test_auth_status_with_an_old_quota_state(fake, env, run):
    state = {"windows": [{"name": "primary", "used_percent": 99.0, "window_minutes": 300,
                          "resets_at": int(time.time()) - 600}], "seen_at": int(time.time()) - 9000}
    (env.codex_home / QUOTA_FILE).write_text(json.dumps(state))
    shown = run("auth", "status")
    assert shown.code == 0, shown
    (line,) = [line for line in shown.out.splitlines() if line.startswith("quota:")]
    assert "5-hour: 99% used" in line and "has reset since" in line


def test_a_run_ends_with_one_quota_line(fake, env, run):
    result = run("a lighthouse", "-o", "l.png")
    assert result.code == 0, result
    lines = quota_lines(result.err)
    assert len(lines) == 1, result.err
    line = lines[0]
    assert result.err.splitlines()[-1] == line  # the run ends with it
    match = re.search(r"5-hour: 12\.5% used, resets in (59m|1h 0m); weekly: 3% used, resets in ", line)
    assert match, line
    assert len(line) <= 100
    assert "quota" not in result.out


def test_quiet_and_json_runs_print_no_quota_line(fake, env, run):
    quiet = run("a quiet one", "-o", "q.png", "--quiet")
    assert quiet.code == 0 and quiet.err == "", quiet
    as_json = run("a json one", "-o", "j.png", "--json")
    assert as_json.code == 0, as_json
    assert quota_lines(as_json.err) == []
    quota = as_json.json["quota"]
    windows = {w["name"]: w for w in quota["windows"]}
    assert windows["primary"]["used_percent"] == 12.5
    assert windows["primary"]["window_minutes"] == 300
    assert windows["secondary"]["used_percent"] == 3.0
    assert windows["secondary"]["window_minutes"] == 10080
    assert windows["primary"]["resets_at"] > time.time() + 3500


def test_no_quota_line_when_the_server_sends_no_quota_headers(fake, env, run):
    fake.rate_limits = None
    result = run("no headers", "-o", "n.png")
    assert result.code == 0, result
    assert quota_lines(result.err) == []
    as_json = run("no headers json", "-o", "m.png", "--json")
    assert as_json.json.get("quota") is None
    assert not (env.codex_home / QUOTA_FILE).exists()
    status_result = run("auth", "status")
    assert not [line for line in status_result.out.splitlines() if line.startswith("quota")]


def test_auth_status_shows_the_last_quota_seen(fake, env, run):
    fake.rate_limits["primary"]["used_percent"] = 20
    assert run("first", "-o", "1.png").code == 0
    fake.rate_limits["primary"]["used_percent"] = 37.5
    assert run("second", "-o", "2.png").code == 0

    state = env.codex_home / QUOTA_FILE
    assert state.exists()
    assert stat.S_IMODE(state.stat().st_mode) == 0o600

    shown = run("auth", "status")
    assert shown.code == 0, shown
    quota_line = [line for line in shown.out.splitlines() if line.startswith("quota:")]
    assert len(quota_line) == 1, shown
    assert "5-hour: 37.5% used" in quota_line[0]
    assert "weekly: 3% used" in quota_line[0] and len(quota_line[0]) <= 100

    as_json = run("auth", "status", "--json")
    assert as_json.code == 0, as_json
    windows = {w["name"]: w for w in as_json.json["quota"]["windows"]}
    assert windows["primary"]["used_percent"] == 37.5
    assert windows["secondary"]["window_minutes"] == 10080


def test_auth_status_quota_state_beside_a_custom_auth_file(fake, env, run):
    other = env.tmp / "elsewhere"
    other.mkdir()
    (other / "auth.json").write_bytes(env.auth_file.read_bytes())
    os.chmod(other / "auth.json", 0o600)
    env.set(CODEX_AUTH_FILE=str(other / "auth.json"))
    assert run("custom", "-o", "c.png").code == 0
    assert (other / QUOTA_FILE).exists()
    assert not (env.codex_home / QUOTA_FILE).exists()
    assert "quota" in run("auth", "status", "--json").json


def test_a_batch_reports_the_quota_once_and_remembers_it(fake, env, run):
    write_batch(env, [{"prompt": f"q {n}", "out": f"q{n}.png"} for n in range(3)])
    result = run("batch", "batch.jsonl")
    assert result.code == 0, result
    assert len(quota_lines(result.err)) == 1
    assert "5-hour: 12.5% used" in quota_lines(result.err)[0]
    assert (env.codex_home / QUOTA_FILE).exists()


def test_the_quota_is_shown_after_a_usage_limit(fake, env, run):
    fake.rate_limits["primary"]["used_percent"] = 100
    fake.queue("/codex/responses", usage_limit(resets_in_seconds=1200))
    result = run("over the limit", "-o", "x.png")
    assert result.code == 4, result
    assert "5-hour: 100% used" in " ".join(quota_lines(result.err))


# --meta #####################################################################################

def _parse_time(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def test_meta_writes_a_sidecar_beside_the_image(fake, env, run):
    fake.answer_size = (1024, 1024)  # the server ignores the size asked
    start = time.time()
    result = run("a red fox in the snow", "-o", "fox.png", "--size", "1536x1024", "--meta",
                 "--fit", "none")
    end = time.time()
    assert result.code == 0, result
    assert result.lines == ["fox.png"]  # the sidecar is not a result
    image = (env.work / "fox.png").read_bytes()
    assert image == fake.images_sent[0]  # never modified (--fit none)
    meta = json.loads((env.work / "fox.png.json").read_text(encoding="utf-8"))
    assert meta["prompt"] == "a red fox in the snow"
    # the fake echoes the prompt as sent: with the aspect line the codex backend gets for --size
    assert meta["revised_prompt"] == ("A detailed rendering of: a red fox in the snow\n\n"
                                      "Aspect ratio: landscape 3:2.")
    assert meta["backend"] == "codex"
    assert meta["route"] == "responses"
    assert meta["model"] == "gpt-5.5"
    assert meta["image_model"]
    assert meta["size_requested"] == "1536x1024"
    assert meta["size_received"] == "1024x1024"
    assert start - 1 <= _parse_time(meta["created_at"]) <= end + 1
    assert find_secrets(json.dumps(meta), fake.secrets | env.auth_secrets()) == []


def test_meta_on_the_images_route(fake, env, run):
    result = run("a blue whale", "-o", "whale.png", "--route", "images", "--meta")
    assert result.code == 0, result
    meta = json.loads((env.work / "whale.png.json").read_text(encoding="utf-8"))
    assert meta["route"] == "images"
    assert meta["image_model"] == "gpt-image-2"
    assert meta["size_requested"] == "auto"
    assert meta["size_received"] == "1254x1254"  # the service's square canvas
    assert (env.work / "whale.png").read_bytes() == fake.images_sent[0]


def test_no_sidecar_without_meta(fake, env, run):
    assert run("plain", "-o", "plain.png").code == 0
    assert sorted(p.name for p in env.work.iterdir()) == ["plain.png"]


def test_meta_with_several_images_writes_one_sidecar_each(fake, env, run):
    result = run("twins", "-o", "twin.png", "-n", "2", "--meta")
    assert result.code == 0, result
    for name in ("twin.png", "twin-2.png"):
        meta = json.loads((env.work / f"{name}.json").read_text(encoding="utf-8"))
        assert meta["prompt"] == "twins"
        assert (env.work / name).read_bytes() in fake.images_sent


def test_batch_meta_writes_a_sidecar_for_every_line(fake, env, run):
    fake.by_prompt["REFUSE"] = content_policy()
    write_batch(env, [
        {"prompt": "meta one", "out": "m1.png"},
        {"prompt": "meta two", "out": "m2.png", "size": "1024x1536"},
        {"prompt": "REFUSE meta", "out": "m3.png"},
        {"prompt": "meta four"},
    ])
    result = run("batch", "batch.jsonl", "--meta")
    assert result.code == 6, result
    for path, prompt, size in (("m1.png", "meta one", "auto"), ("m2.png", "meta two", "1024x1536"),
                               (os.path.join("assets", "generated", "meta-four.png"), "meta four",
                                "auto")):
        meta = json.loads((env.work / (path + ".json")).read_text(encoding="utf-8"))
        assert meta["prompt"] == prompt
        assert meta["size_requested"] == size
        assert (env.work / path).read_bytes() in fake.images_sent
    assert json.loads((env.work / "m2.png.json").read_text())["size_received"] == "1024x1536"
    assert not (env.work / "m3.png.json").exists()


def test_a_line_may_ask_for_meta_itself(fake, env, run):
    write_batch(env, [{"prompt": "with meta", "out": "w.png", "meta": True},
                      {"prompt": "without", "out": "wo.png"}])
    result = run("batch", "batch.jsonl")
    assert result.code == 0, result
    assert (env.work / "w.png.json").exists()
    assert not (env.work / "wo.png.json").exists()


def test_meta_names_the_backend_that_made_the_image(fake, env, run):
    env.write_api_config()
    result = run("a green frog", "-o", "frog.png", "--backend", "api", "--meta")
    assert result.code == 0, result
    meta = json.loads((env.work / "frog.png.json").read_text(encoding="utf-8"))
    assert meta["backend"] == "api"
    assert meta["route"] == "images"
    assert meta["prompt"] == "a green frog"
    assert (env.work / "frog.png").read_bytes() == fake.images_sent[0]
    assert find_secrets((env.work / "frog.png.json").read_text(), fake.secrets) == []


# more batch output ##########################################################################

def test_json_lists_what_a_failed_line_saved_before_failing(fake, env, run):
    fake.queue("/codex/responses", ok(), content_policy())
    write_batch(env, [{"prompt": "two of them", "out": "two.png", "count": 2}])
    result = run("batch", "batch.jsonl", "--json", "--parallel", "1")
    assert result.code == 6, result
    (line,) = [json.loads(text) for text in result.out.splitlines()]
    assert line["ok"] is False and line["error"]["kind"] == "no_image"
    assert [image["path"] for image in line["images"]] == ["two.png"]
    assert (env.work / "two.png").read_bytes() == fake.images_sent[0]
    assert not (env.work / "two-2.png").exists()
    assert line["failed"] == [{"index": 2, "error": line["error"]}]


def test_json_lists_each_failed_image_of_a_line(fake, env, run):
    """A line of 3 images: image 2 refused, image 3 rate-limited; its object lists both, the
    line's error is the first (image 2's), and the line after it still runs."""
    fake.queue("/codex/responses", ok(), content_policy(), rate_limited(), ok())
    write_batch(env, [{"prompt": "three of them", "out": "three.png", "count": 3, "retries": 0},
                      {"prompt": "after them", "out": "after.png"}])
    result = run("batch", "batch.jsonl", "--json", "--parallel", "1")
    assert result.code == 6, result
    first, after = [json.loads(text) for text in result.out.splitlines()]
    assert first["ok"] is False and first["error"]["kind"] == "no_image"
    assert [image["path"] for image in first["images"]] == ["three.png"]
    assert [(item["index"], item["error"]["kind"], item["error"]["exit_code"])
            for item in first["failed"]] == [(2, "no_image", 6), (3, "rate_limit", 4)]
    assert first["failed"][0]["error"] == first["error"]
    assert "Rate limit reached" in first["failed"][1]["error"]["message"]
    assert after["ok"] is True and "failed" not in after
    assert sorted(p.name for p in env.work.glob("*.png")) == ["after.png", "three.png"]
    assert (env.work / "three.png").read_bytes() == fake.images_sent[0]


def test_json_of_a_line_not_started_after_a_usage_limit_has_no_failed_list(fake, env, run):
    """"failed" lists the images asked for; a line never started has only its error."""
    fake.queue("/codex/responses", usage_limit())
    write_batch(env, [{"prompt": "limit hit", "out": "limit.png"},
                      {"prompt": "never", "out": "never.png", "count": 2}])
    result = run("batch", "batch.jsonl", "--json", "--parallel", "1")
    assert result.code == 4, result
    hit, never = [json.loads(text) for text in result.out.splitlines()]
    assert hit["failed"] == [{"index": 1, "error": hit["error"]}]
    assert "failed" not in never and never["ok"] is False
    assert never["error"]["kind"] == "rate_limit"
    assert never["error"]["message"] == "not started: the usage limit was reached earlier in this batch"
    assert never["images"] == [] and len(image_requests(fake)) == 1
    assert list(env.work.glob("*.png")) == []


def test_quiet_batch_prints_only_the_results(fake, env, run):
    fake.by_prompt["REFUSE"] = content_policy()
    write_batch(env, [{"prompt": "quiet one", "out": "q1.png"},
                      {"prompt": "REFUSE quietly", "out": "q2.png"}])
    result = run("batch", "batch.jsonl", "--quiet")
    assert result.code == 6, result
    assert result.lines[0] == "q1.png"
    assert result.lines[1].startswith("ERROR no_image: ")
    assert len(result.lines) == 2
    assert quota_lines(result.err) == []
    assert not any(SUMMARY.match(line) for line in result.err.splitlines())
    assert "saved" not in result.err


def test_batch_as_a_user_runs_it(fake, env, run_cli):
    text = "\n".join(json.dumps({"prompt": f"cli {n}", "out": f"cli/{n}.png"}) for n in (1, 2, 3))
    result = run_cli("batch", "-", "--parallel", "2", input=text + "\n")
    assert result.code == 0, result
    assert result.lines == [os.path.join("cli", f"{n}.png") for n in (1, 2, 3)]
    assert summary(result) == (3, 0, 0)
    assert len(quota_lines(result.err)) == 1
    for n in (1, 2, 3):
        assert (env.work / "cli" / f"{n}.png").read_bytes() in fake.images_sent


def test_paths_that_look_like_keys_are_printed_as_they_are(env, fake, run):
    (env.work / "keys.jsonl").write_text(
        '{"prompt": "sk-8 skateboard wheels with a deck that is long enough"}\n')
    result = run("batch", "keys.jsonl")
    assert result.code == 0, result
    assert result.lines == ["assets/generated/sk-8-skateboard-wheels-with-a-deck-that-is-long.png"]
    assert (env.work / result.lines[0]).read_bytes() == fake.images_sent[-1]
    as_json = run("batch", "keys.jsonl", "--json", "--force")
    assert "sk-8-skateboard" in as_json.lines[0]


# every line is checked before the first request #############################################

def test_every_bad_line_is_named_before_anything_is_sent_and_the_good_ones_still_run(
        fake, env, run):
    (env.work / "ref.png").write_bytes(png_bytes(8, 8))
    write_batch(env, [
        {"prompt": "one", "out": "one.png"},
        {"prompt": "two", "out": "two.png", "sise": "1024x1024"},              # 2 a typo
        {"prompt": "three", "out": "three.png", "image": ["ref.png"]},
        {"prompt": "four", "out": "four.png", "image": ["missing.png"]},        # 4 no such file
        {"prompt": "five", "out": str(env.codex_home / "five.png")},            # 5 Codex home
        {"prompt": "six", "out": "one.png"},                                    # 6 line 1's out
        {"prompt": "seven", "out": "seven.png"},
    ])
    result = run("batch", "batch.jsonl", "--no-progress")

    assert result.code == 2, result  # the first failing line's, in input order (a usage error)
    lines = result.out.splitlines()  # one a prompt, in input order
    assert lines[0] == "one.png" and lines[2] == "three.png" and lines[6] == "seven.png"
    assert lines[1] == "ERROR usage: line 2: unknown key 'sise'; did you mean 'size'?"
    assert lines[3].startswith("ERROR usage: line 4: ") and "missing.png" in lines[3]
    assert lines[4].startswith("ERROR output: line 5: ") and "Codex home" in lines[4]
    assert lines[5] == "ERROR usage: line 6: \"out\" one.png is also line 1's"
    # said on stderr before the first request, with the way to check a file without sending
    first = result.err.splitlines()[0]
    assert first == ("imagegen: warning: lines 2, 4, 5, 6 are invalid and will not be sent (their "
                     "ERROR lines say why); `imagegen batch batch.jsonl --dry-run` checks a file "
                     "without sending anything"), result.err
    assert sorted(prompt_of(r) for r in image_requests(fake)) == ["one", "seven", "three"]
    assert not (env.work / "two.png").exists() and not (env.work / "four.png").exists()
    assert not (env.codex_home / "five.png").exists()


def test_dry_run_names_every_bad_line_and_sends_nothing(fake, env, run):
    write_batch(env, [{"prompt": "fine", "out": "a.png"}, {"prompt": "bad", "size": "9x9"},
                      "not json"])
    result = run("batch", "batch.jsonl", "--dry-run")
    assert result.code == 2, result
    assert "line 2: " in result.err and "line 3: " in result.err
    assert fake.requests == []


def test_json_gives_an_object_for_each_bad_line_in_its_place(fake, env, run):
    write_batch(env, [{"prompt": "fine", "out": "a.png"}, {"prompt": "bad", "size": "9x9"},
                      "not json"])
    result = run("batch", "batch.jsonl", "--json")
    assert result.code == 2, result
    objects = [json.loads(line) for line in result.out.splitlines()]
    assert [(o["line"], o["ok"]) for o in objects] == [(1, True), (2, False), (3, False)]
    assert [o["error"]["kind"] for o in objects[1:]] == ["usage", "usage"]
    assert [prompt_of(r) for r in image_requests(fake)] == ["fine"]


@pytest.mark.parametrize("text", [
    '[{"prompt": "a"}, {"prompt": "b"}]',
    '[\n  {"prompt": "a"},\n  {"prompt": "b"}\n]',
    '\n  [{"prompt": "a"}]',
], ids=["one-line", "pretty", "after-a-blank-line"])
def test_a_json_array_is_not_a_batch_and_says_so(fake, env, run, text):
    (env.work / "batch.json").write_text(text + "\n", encoding="utf-8")
    result = run("batch", "batch.json")
    assert result.code == 2, result
    assert result.out == ""
    assert result.err == ("imagegen: error: batch.json is a JSON array: a batch takes one JSON "
                          "object per line (JSONL), not an array\n")
    assert fake.requests == []


def test_a_line_already_done_is_not_checked_again(fake, env, run):
    """A re-run skips a line whose out exists, even when its reference image is gone."""
    (env.work / "done.png").write_bytes(png_bytes(4, 4))
    write_batch(env, [{"prompt": "done", "out": "done.png", "image": ["gone.png"]},
                      {"prompt": "new", "out": "new.png"}])
    result = run("batch", "batch.jsonl")
    assert result.code == 0, result
    assert result.lines == ["done.png", "new.png"]


# Ctrl-C ######################################################################################

def test_ctrl_c_says_what_was_done_and_how_to_resume_truthfully(fake, env, run_cli):
    import signal
    fake.by_prompt["REFUSE"] = content_policy()
    fake.by_prompt["STALL"] = stall(seconds=30)
    write_batch(env, [
        {"prompt": "one", "out": "one.png"},                    # 1 done
        {"prompt": "two REFUSE", "out": "two.png"},             # 2 failed
        {"prompt": "three"},                                    # 3 done, without "out"
        {"prompt": "four STALL", "out": "four.png"},            # 4 cut off
        {"prompt": "five STALL", "out": "five.png"},            # 5 cut off
        {"prompt": "six", "out": "six.png"},                    # 6 not started
        {"prompt": "seven", "out": "seven.png"},                # 7 not started
    ])
    proc = run_cli.popen("batch", "batch.jsonl", "--parallel", "2", "--no-progress")
    fake.wait_for("/responses", count=5, timeout=20)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    result = run_cli.wait(proc, timeout=30)

    assert result.code == 130, result
    assert result.lines[0] == "one.png"
    assert result.lines[1].startswith("ERROR no_image: line 2: ")
    assert result.lines[2] == os.path.join("assets", "generated", "three.png")
    assert len(result.lines) == 3, result
    last = result.err.splitlines()[-1]
    assert last == ('imagegen: error: batch interrupted: 2 done, 1 failed, 2 cut off, 2 not '
                    'started; no partial file was left; run the same command again to resume '
                    '(lines whose "out" file exists are skipped; line 3 has no "out" and would '
                    'be made again)'), result
    assert leftovers(env.work) == []

    # what the hint promises: the same command skips line 1 and makes the others
    fake.by_prompt.clear()
    sent_before = len(image_requests(fake))
    again = run_cli("batch", "batch.jsonl", "--parallel", "2", "--no-progress")
    assert again.code == 0, again
    prompts = sorted(prompt_of(r) for r in image_requests(fake)[sent_before:])
    assert prompts == sorted(["two REFUSE", "three", "four STALL", "five STALL", "six", "seven"])
    assert again.lines[0] == "one.png"
    assert again.lines[2] == os.path.join("assets", "generated", "three-2.png")


def test_interrupted_summary_counts_each_kind_of_line():
    job = imagegen._make_job({"prompt": "x", "out": "x.png"}, {})
    lines = [imagegen._BatchLine(n, job) for n in range(1, 5)]
    outcomes = {1: imagegen._Outcome(job, skipped="x.png")}
    text = imagegen._interrupted_summary(lines, outcomes, begun={1, 2})
    assert text.startswith("batch interrupted: 0 done, 1 skipped, 0 failed, 1 cut off, "
                           "2 not started; ")
    assert "would be made again" not in text


def test_each_line_of_a_parallel_batch_times_out_on_its_own_timeout(fake, env, run):
    # Line 1 (Responses route) never answers and has 0.7 s; line 2 (images route) answers
    # and has 30 s. Line 2's job starts while line 1 waits: its timeout must not become
    # line 1's, in the message or in the wait.
    fake.default("/codex/responses", stall(seconds=10))
    write_batch(env, [
        {"prompt": "a slow fox", "out": "slow.png", "timeout": 0.7, "stall_timeout": 0},
        {"prompt": "a quick fox", "out": "quick.png", "timeout": 30, "route": "images"},
    ])
    result = run("batch", "batch.jsonl", "--parallel", "2", "--retries", "0")
    assert result.code == 5, result
    lines = result.out.splitlines()
    assert lines[0].startswith("ERROR backend:"), result
    assert "no answer within the 0.7 s budget (--timeout)" in lines[0], result
    assert lines[1] == "quick.png"
    assert not (env.work / "slow.png").exists()
    assert (env.work / "quick.png").read_bytes() == fake.images_sent[-1]

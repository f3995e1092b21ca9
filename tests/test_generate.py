"""The core `generate` path: the default codex backend on its Responses route.

The images route is the default since December 2026 (test_routes.py covers it and the
choice between routes); every test here runs with IMAGEGEN_ROUTE=responses, because the
machinery it checks (SSE reading, retries, failures, output) is exercised best on a stream.

What a user notices: the file and its bytes (compared with what the fake sent), stdout and
stderr, the exit code, what reached the server, and what is left on disk after a failure.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
import json
import platform
import re
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Result
from fakeserver import (
    AUTH_CLAIM, bad_base64, cloudflare, content_policy, disconnect, echo_secrets,
    error_event, failed, incomplete, jwt_claims, make_auth_json, make_secret, not_an_image,
    ok, overloaded, png_bytes, rate_limited, stall, status, text_only, trickle, truncated, usage_limit,
)

CODEX = "/codex/responses"
PROMPT = "a red fox in fresh snow"
DEFAULT_PATH = "assets/generated/a-red-fox-in-fresh-snow.png"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# helpers ###################################################################################

@pytest.fixture(autouse=True)
def responses_route(env):
    """The whole file runs on the Responses route (see the docstring)."""
    env.set(IMAGEGEN_ROUTE="responses")


def files_in(folder: Path) -> list[str]:
    """Every file under folder (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def error_lines(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("imagegen: error: ")]


def the_error(result: Result) -> str:
    """The one error line on stderr (the contract: one line, no dump)."""
    lines = error_lines(result)
    assert len(lines) == 1, result
    return lines[0]


def assert_failed(result: Result, env: Any, code: int, pattern: str | None = None) -> str:
    """Exit code, nothing on stdout, one error line (matching pattern), no file left."""
    assert result.code == code, result
    assert result.out == "", result
    line = the_error(result)
    if pattern is not None:
        assert re.search(pattern, line, re.I), result
    assert files_in(env.work) == [], result
    return line


def quiet_failure(result: Result, env: Any, code: int, pattern: str | None = None) -> str:
    """As assert_failed, for a --quiet run: stderr is that one line and nothing else."""
    line = assert_failed(result, env, code, pattern)
    assert result.err == line + "\n", result
    return line


def saved_bytes(env: Any, result: Result) -> list[bytes]:
    return [(env.work / line).read_bytes() for line in result.lines]


# the happy path ############################################################################

def test_a_prompt_becomes_the_file_the_server_sent(fake, env, run):
    result = run(PROMPT)
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]
    assert files_in(env.work) == [DEFAULT_PATH]
    assert len(fake.requests) == 1
    assert fake.errors == []


def test_the_request_carries_codex_headers(fake, env, run):
    tokens = env.read_auth()["tokens"]
    assert run(PROMPT).code == 0
    request = fake.last_request
    assert request.method == "POST"
    assert request.path == "/backend-api/codex/responses"
    assert request.header("Authorization") == f"Bearer {tokens['access_token']}"
    assert request.header("ChatGPT-Account-ID") == tokens["account_id"]
    assert request.header("originator") == "codex-imagegen"   # who we are, never Codex
    assert request.header("version") == "0.169.0"
    imagegen = importlib.import_module("imagegen")
    agent = request.header("User-Agent")
    match = re.fullmatch(r"codex-imagegen/(\S+) \((\S[^;()]*) ([^;()]*); ([^;()]+)\)", agent or "")
    assert match, agent
    assert match.group(1) == imagegen.__version__
    if platform.system() == "Linux":
        assert match.group(2) == "Linux"
        assert match.group(3) == platform.release()
    assert match.group(4) == platform.machine()
    assert "codex_cli_rs" not in agent and "codex_exec" not in agent
    session = request.header("session-id")
    assert session and UUID_RE.match(session), session
    assert request.header("thread-id") == request.header("x-client-request-id") == session
    assert request.header("session_id") is None   # underscores are dropped by proxies
    for codex_only in ("x-codex-installation-id", "x-codex-window-id", "x-codex-turn-metadata",
                       "x-codex-image-turn-id", "x-codex-beta-features", "x-oai-attestation"):
        assert request.header(codex_only) is None
    assert request.header("Accept") == "text/event-stream"
    assert request.header("Content-Type") == "application/json"
    assert request.header("OpenAI-Beta") is None


def test_each_request_gets_a_fresh_session_id(fake, env, run):
    result = run(PROMPT, "-n", "2")
    assert result.code == 0, result
    sessions = [r.header("session-id") for r in fake.requests_to(CODEX)]
    assert len(sessions) == 2 and len(set(sessions)) == 2
    assert all(UUID_RE.match(s) for s in sessions)


@pytest.mark.parametrize("missing", ["absent", "null", "empty"])
def test_account_id_falls_back_to_the_id_token_claim_never_sub(fake, env, run, missing):
    doc = make_auth_json(fake.auth.tokens)
    if missing == "absent":
        del doc["tokens"]["account_id"]
    else:
        doc["tokens"]["account_id"] = None if missing == "null" else ""
    env.write_auth(doc=doc)
    assert run(PROMPT).code == 0
    claims = jwt_claims(doc["tokens"]["id_token"])
    sent = fake.last_request.header("ChatGPT-Account-ID")
    assert sent == claims[AUTH_CLAIM]["chatgpt_account_id"] == fake.auth.account_id
    assert sent != claims["sub"]
    assert sent != jwt_claims(doc["tokens"]["access_token"])["sub"]


def test_account_id_of_the_file_wins_over_the_claim(fake, env, run):
    doc = make_auth_json(fake.auth.tokens)
    doc["tokens"]["account_id"] = "acct-from-the-file-1234"
    env.write_auth(doc=doc)
    assert run(PROMPT).code == 0
    assert fake.last_request.header("ChatGPT-Account-ID") == "acct-from-the-file-1234"


@pytest.mark.parametrize("latest, sent", [
    (None, "0.169.0"),            # no version.json: the floor
    ("0.98.0", "0.169.0"),        # a stale cache: never below the floor
    ("0.169.0", "0.169.0"),
    ("0.170.3", "0.170.3"),       # a newer release seen by Codex
    ("1.2.0", "1.2.0"),
    ("not-a-version", "0.169.0"),
])
def test_version_header_is_the_newest_of_version_json_and_the_floor(fake, env, run, latest, sent):
    if latest is not None:
        (env.codex_home / "version.json").write_text(json.dumps(
            {"latest_version": latest, "last_checked_at": "2025-11-20T10:00:00Z"}), encoding="utf-8")
    result = run(PROMPT)
    assert result.code == 0, result
    request = fake.last_request
    assert request.header("version") == sent
    assert request.header("User-Agent").startswith("codex-imagegen/")   # Codex's version is not ours
    assert sent not in request.header("User-Agent")


def test_the_body_is_a_codex_responses_request(fake, env, run):
    prompt = 'a "quoted" fox, 50% off — ünïcödé\nsecond line'
    assert run(prompt).code == 0
    body = fake.last_request.json
    assert body["model"] == "gpt-5.5"
    assert isinstance(body["instructions"], str) and body["instructions"].strip()
    assert body["input"] == [{"type": "message", "role": "user",
                              "content": [{"type": "input_text", "text": prompt}]}]
    assert body["tools"] == [{"type": "image_generation", "output_format": "png"}]
    assert body["tool_choice"] == {"type": "image_generation"}   # forced: no chat instead of an image
    assert body["parallel_tool_calls"] is False
    assert body["store"] is False
    assert body["stream"] is True
    assert isinstance(body["prompt_cache_key"], str) and body["prompt_cache_key"]
    assert "OpenAI-Beta" not in fake.last_request.headers


@pytest.mark.parametrize("args, env_model, expected", [
    (["--model", "gpt-5.4-mini"], None, "gpt-5.4-mini"),
    ([], "gpt-5.3-codex", "gpt-5.3-codex"),
    (["--model", "gpt-5.4"], "gpt-5.3-codex", "gpt-5.4"),   # the option wins
])
def test_host_model_from_option_or_environment(fake, env, run, args, env_model, expected):
    result = run(PROMPT, *args, env_vars={"IMAGEGEN_MODEL": env_model})
    assert result.code == 0, result
    assert fake.last_request.json["model"] == expected


def test_tool_carries_only_the_options_the_user_set(fake, env, run):
    # The codex backend rewrites size and quality: size becomes the prompt's aspect line, and
    # quality is left out with one warning line.
    result = run(PROMPT, "--size", "1536x1024", "--quality", "high", "--background", "opaque",
                 "--format", "webp", "--compression", "80", "--moderation", "low")
    assert result.code == 0, result
    body = fake.last_request.json
    assert body["tools"] == [{
        "type": "image_generation", "output_format": "webp", "background": "opaque",
        "output_compression": 80, "moderation": "low"}]
    assert body["input"][0]["content"] == [
        {"type": "input_text", "text": PROMPT + "\n\nAspect ratio: landscape 3:2."}]
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--quality high" in warnings[0], result.err
    assert "landscape 3:2" in result.err
    assert result.out == "assets/generated/a-red-fox-in-fresh-snow.webp\n"
    assert (env.work / result.lines[0]).read_bytes() == fake.images_sent[-1]
    assert fake.images_sent[-1][:4] == b"RIFF"


@pytest.mark.parametrize("args, env_vars, warned", [
    (["--image-model", "gpt-image-1"], {}, "--image-model gpt-image-1"),
    ([], {"IMAGEGEN_IMAGE_MODEL": "gpt-image-2"}, None),
    (["--image-model", "gpt-image-1.5"], {"IMAGEGEN_IMAGE_MODEL": "gpt-image-2"}, "--image-model gpt-image-1.5"),
    (["--input-fidelity", "high", "-i", "ref.png"], {}, "--input-fidelity high"),
])
def test_image_model_and_input_fidelity_never_reach_the_codex_responses_route(fake, env, run, args,
                                                                              env_vars, warned):
    # live, the route answers another model with server_is_overloaded and input_fidelity with a 400
    (env.work / "ref.png").write_bytes(png_bytes(64, 48))
    result = run(PROMPT, *args, env_vars=env_vars)
    assert result.code == 0, result
    (tool,) = fake.last_request.json["tools"]
    assert "model" not in tool and "input_fidelity" not in tool
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert warnings == ([] if warned is None else [warnings[0]]) and (warned is None or warned in warnings[0])


# SSE framing ###############################################################################

FRAMINGS = {
    "crlf": dict(newline="\r\n"),
    "cr": dict(newline="\r"),
    "no-space": dict(space=False),
    "noise": dict(noise=True),
    "split-data": dict(split_data=True),
    "bytewise": dict(bytewise=True),
    "bytewise-crlf": dict(bytewise=True, newline="\r\n"),
    "bytewise-crlf-split": dict(bytewise=True, newline="\r\n", split_data=True),  # CR | LF across reads
    "bytewise-cr-split": dict(bytewise=True, newline="\r", split_data=True),
    "no-final-blank": dict(final_blank=False),
    "mismatched-names": dict(event_names="mismatch"),
    "no-names": dict(event_names="none"),
    "image-in-completed": dict(image_in="completed"),
    "image-in-both": dict(image_in="both"),
    "completed-without-blank": dict(image_in="completed", final_blank=False),
    "completed-cr-no-blank": dict(image_in="completed", final_blank=False, newline="\r", chunked=False),
    "no-content-type": dict(content_type=None),
    "not-chunked": dict(chunked=False),
    "partial-images": dict(partial_images=2),
    "everything": dict(newline="\r", space=False, noise=True, split_data=True, bytewise=True,
                       final_blank=False, event_names="mismatch", image_in="completed", chunked=False,
                       content_type=None),
}


@pytest.mark.parametrize("framing", list(FRAMINGS), ids=list(FRAMINGS))
def test_sse_framing_variants_give_the_same_file(fake, env, run, framing):
    fake.default(CODEX, ok(**FRAMINGS[framing]))
    result = run(PROMPT, "--retries", "0")
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert len(fake.images_sent) == 1
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[0]
    assert len(fake.requests) == 1


def test_framing_of_a_failure_is_read_too(fake, env, run):
    fake.default(CODEX, content_policy().plus(newline="\r\n", bytewise=True, final_blank=False,
                                              event_names="none", space=False))
    result = run(PROMPT, "--quiet")
    quiet_failure(result, env, 6, "content policy")


# failures ##################################################################################

def test_text_only_answer_on_the_responses_route_is_no_image(fake, env, run):
    fake.queue(CODEX, text_only("I would rather describe a fox in words."))
    result = run(PROMPT, "--route", "responses", "--quiet")
    line = quiet_failure(result, env, 6)
    assert "I would rather describe a fox in words." in line
    assert len(fake.requests) == 1


def test_usage_limit_is_not_retried_and_says_when_it_resets(fake, env, run):
    resets_at = int(time.time()) + 2 * 3600 + 300
    fake.default(CODEX, usage_limit(resets_at=resets_at, plan_type="plus"))
    result = run(PROMPT, "--retries", "5", "--quiet")
    line = quiet_failure(result, env, 4, "usage limit")
    assert len(fake.requests) == 1
    assert time.strftime("%H:%M", time.localtime(resets_at)) in line
    assert "resets" in line


def test_usage_limit_with_resets_in_seconds(fake, env, run):
    fake.default(CODEX, usage_limit(resets_in_seconds=150))
    result = run(PROMPT, "--quiet")
    line = quiet_failure(result, env, 4, "usage limit")
    assert len(fake.requests) == 1
    assert re.search(r"resets at \d\d:\d\d \(in 2m\)", line), line


@pytest.mark.parametrize("message, head, tail", [
    ("image limit reached", "imagegen: error: image limit reached on the plus plan; resets at ", None),
    ("limit reached", "imagegen: error: usage limit reached on the plus plan; resets at ", None),
    ("The usage limit has been reached.", "imagegen: error: usage limit reached on the plus plan; ", None),
    ("You have used all your images for now", "imagegen: error: usage limit reached on the plus plan; ",
     "(You have used all your images for now)"),
], ids=["names-the-limit", "bare", "sentence", "other-words"])
def test_a_usage_limit_says_which_limit_once(fake, env, run, message, head, tail):
    fake.default("/images/generations", usage_limit(resets_in_seconds=600, message=message))
    result = run(PROMPT, "--route", "images", "--quiet")
    assert result.code == 4, result
    line = result.err.strip()
    assert line.startswith(head), line
    assert line.lower().count("limit reached") <= 1, line  # not again in parentheses
    if tail:
        assert tail in line, line


@pytest.mark.parametrize("seconds, span", [
    (86400 + 3600 + 30, "25h 0m"),
    (2 * 86400 - 30, "47h 59m"),      # under two days: still in hours
    (2 * 86400 + 30, "2d 0h"),        # two days or more: in days
    (9 * 86400 + 5 * 3600 + 30, "9d 5h"),
], ids=["25h", "just-under-2-days", "just-over-2-days", "9-days"])
def test_a_reset_in_days_is_told_in_hours_under_two_days(fake, env, run, seconds, span):
    fake.default(CODEX, usage_limit(resets_in_seconds=seconds))
    result = run(PROMPT, "--quiet")
    line = quiet_failure(result, env, 4, "usage limit")
    assert f"(in {span})" in line, line


def test_usage_limit_json_has_retry_after(fake, env, run):
    fake.default(CODEX, usage_limit(resets_in_seconds=600))
    result = run(PROMPT, "--json")
    assert result.code == 4, result
    payload = result.json
    assert payload["ok"] is False and payload["images"] == []
    error = payload["error"]
    assert error["kind"] == "rate_limit" and error["exit_code"] == 4
    assert 590 <= error["retry_after_s"] <= 600
    assert "usage limit" in error["message"]
    assert len(fake.requests) == 1


def test_a_5xx_then_success_is_retried_with_backoff(fake, env, run):
    fake.queue(CODEX, status(500))
    sleeps: list[float] = []
    result = run(PROMPT, seams={"sleep": sleeps.append, "random": lambda: 0.5})
    assert result.code == 0, result
    assert len(fake.requests_to(CODEX)) == 2
    assert result.out == DEFAULT_PATH + "\n"
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]
    assert sleeps == [pytest.approx(0.5)]   # the first backoff step, with middle jitter
    assert "retrying" in result.err


@pytest.mark.parametrize("retries, expected", [("0", 1), ("1", 2), ("2", 3)])
def test_exhausted_retries(fake, env, run, retries, expected):
    fake.default(CODEX, status(502, headers={"Retry-After": "0"}))
    result = run(PROMPT, "--retries", retries, "--quiet")
    quiet_failure(result, env, 5, r"HTTP 502")
    assert len(fake.requests) == expected


def test_rate_limited_waits_as_told_then_succeeds(fake, env, run):
    fake.queue(CODEX, rate_limited(0.01))
    sleeps: list[float] = []
    result = run(PROMPT, seams={"sleep": sleeps.append})
    assert result.code == 0, result
    assert len(fake.requests) == 2
    assert sleeps == [pytest.approx(0.01)]
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]


def test_rate_limited_for_real_then_succeeds(fake, env, run):
    fake.queue(CODEX, rate_limited(0.01))
    result = run(PROMPT)
    assert result.code == 0, result
    assert len(fake.requests) == 2
    assert result.out == DEFAULT_PATH + "\n"


def test_overloaded_honours_retry_after(fake, env, run):
    fake.queue(CODEX, overloaded(retry_after=0))
    sleeps: list[float] = []
    result = run(PROMPT, seams={"sleep": sleeps.append, "random": lambda: 1.0})
    assert result.code == 0, result
    assert len(fake.requests) == 2
    assert sleeps == [0]     # Retry-After wins over the backoff
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]


def test_disconnect_then_success(fake, env, run):
    fake.queue(CODEX, disconnect())
    sleeps: list[float] = []
    result = run(PROMPT, seams={"sleep": sleeps.append, "random": lambda: 0.0})
    assert result.code == 0, result
    assert len(fake.requests) == 2
    assert len(sleeps) == 1
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]


def test_disconnect_every_time(fake, env, run):
    fake.default(CODEX, disconnect())
    result = run(PROMPT, "--retries", "0", "--quiet")
    quiet_failure(result, env, 5)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("clean", [False, True], ids=["abrupt", "clean-end"])
def test_truncated_stream(fake, env, run, clean):
    fake.default(CODEX, truncated(after=4, clean=clean))
    result = run(PROMPT, "--retries", "0", "--quiet")
    quiet_failure(result, env, 5, "truncated|broke|ended")
    assert len(fake.requests) == 1
    assert fake.images_sent == []


def test_truncated_then_success_is_retried(fake, env, run):
    fake.queue(CODEX, truncated(after=4))
    result = run(PROMPT, seams={"sleep": lambda s: None})
    assert result.code == 0, result
    assert len(fake.requests) == 2


@pytest.mark.parametrize("behaviour, pattern", [
    (bad_base64(), "not valid base64"),
    (not_an_image(), "not a PNG, JPEG or WebP"),
], ids=["bad-base64", "not-an-image"])
def test_undecodable_image(fake, env, run, behaviour, pattern):
    fake.default(CODEX, behaviour)
    result = run(PROMPT, "--quiet")
    quiet_failure(result, env, 5, pattern)


@pytest.mark.parametrize("after", [None, 0, 6], ids=["after-first-event", "before-headers", "mid-stream"])
def test_stall(fake, env, run, after):
    fake.default(CODEX, stall(seconds=10, after=after))
    result = run(PROMPT, "--stall-timeout", "0.5", "--retries", "0", "--quiet")
    quiet_failure(result, env, 5, "stalled")
    assert len(fake.requests) == 1


def test_total_timeout_against_a_trickle(fake, env, run):
    fake.default(CODEX, trickle(interval=0.02, chunk=1))
    result = run(PROMPT, "--timeout", "1", "--retries", "0", "--quiet")
    quiet_failure(result, env, 5, "timed out")
    assert len(fake.requests) == 1


def test_cloudflare_html_403_is_one_line_without_html(fake, env, run):
    fake.default(CODEX, cloudflare())
    result = run(PROMPT, "--quiet")
    line = quiet_failure(result, env, 5, "403")
    assert "<" not in result.err and "&nbsp;" not in result.err
    assert re.search(r"proxy|firewall|CDN", line), line
    assert len(line) < 600
    assert len(fake.requests) == 1


def test_too_old_names_the_version_header_sent(fake, env, run):
    fake.min_version = "9.0.0"
    result = run(PROMPT, "--quiet")
    line = quiet_failure(result, env, 5, "newer version of Codex")
    assert re.search(r"\bversion\b\W{1,3}0\.169\.0", line), line   # names the header and its value
    assert len(fake.requests) == 1


def test_too_old_names_the_version_json_value(fake, env, run):
    fake.min_version = "9.0.0"
    (env.codex_home / "version.json").write_text('{"latest_version": "0.171.0"}', encoding="utf-8")
    result = run(PROMPT, "--quiet")
    line = quiet_failure(result, env, 5, "newer version of Codex")
    assert "0.171.0" in line


def test_error_event(fake, env, run):
    fake.default(CODEX, error_event("server_error", "The image service hiccupped."))
    result = run(PROMPT, "--retries", "0", "--quiet")
    quiet_failure(result, env, 5, "The image service hiccupped")
    assert len(fake.requests) == 1


def test_failed_with_an_unknown_code(fake, env, run):
    fake.default(CODEX, failed("invalid_prompt", "Your prompt was malformed."))
    result = run(PROMPT, "--quiet")
    quiet_failure(result, env, 5, "Your prompt was malformed")
    assert len(fake.requests) == 1


def test_content_policy_is_not_retried_nor_rerouted(fake, env, run):
    fake.default(CODEX, content_policy("Rejected by our safety system, sorry."))
    result = run(PROMPT, "--retries", "3", "--quiet")
    line = quiet_failure(result, env, 6, "content policy")
    assert "Rejected by our safety system, sorry." in line
    assert len(fake.requests) == 1


def test_insufficient_quota_is_a_rate_limit(fake, env, run):
    fake.default(CODEX, failed("insufficient_quota", "You exceeded your current quota."))
    result = run(PROMPT, "--quiet")
    quiet_failure(result, env, 4, "quota")
    assert len(fake.requests) == 1


@pytest.mark.parametrize("reason, code", [("max_output_tokens", 5), ("content_filter", 6)])
def test_incomplete(fake, env, run, reason, code):
    fake.default(CODEX, incomplete(reason))
    result = run(PROMPT, "--retries", "0", "--quiet")
    quiet_failure(result, env, code, "incomplete")


# -n with a partial failure #################################################################

def test_count_with_one_refusal_prints_the_saved_paths(fake, env, run):
    fake.queue(CODEX, ok(), content_policy(), ok())
    result = run(PROMPT, "-n", "3")
    assert result.code == 6, result
    assert len(fake.requests) == 3
    assert len(result.lines) == 2
    assert sorted(saved_bytes(env, result)) == sorted(fake.images_sent)
    assert len(fake.images_sent) == 2
    assert sorted(files_in(env.work)) == sorted(result.lines)
    assert "content policy" in the_error(result)


def test_count_with_one_refusal_json(fake, env, run):
    fake.queue(CODEX, ok(), ok(), content_policy())
    result = run(PROMPT, "-n", "3", "--parallel", "1", "--json")
    assert result.code == 6, result
    payload = result.json
    assert payload["ok"] is False
    assert payload["error"]["kind"] == "no_image"
    assert payload["error"]["exit_code"] == 6
    assert "content policy" in payload["error"]["message"]
    paths = [image["path"] for image in payload["images"]]
    assert paths == ["assets/generated/a-red-fox-in-fresh-snow.png",
                     "assets/generated/a-red-fox-in-fresh-snow-2.png"]
    assert [(env.work / p).read_bytes() for p in paths] == fake.images_sent
    assert sorted(files_in(env.work)) == sorted(paths)


def test_count_with_images_failing_for_different_reasons_says_each(fake, env, run):
    """-n 3: image 2 refused, image 3 rate-limited. The one saved path on stdout, one error
    line for each failed image, and the exit code of the first failure (image 2's)."""
    fake.queue(CODEX, ok(), content_policy(), rate_limited())
    result = run(PROMPT, "-n", "3", "--parallel", "1", "--retries", "0")
    assert result.code == 6, result
    assert result.out == DEFAULT_PATH + "\n"
    assert files_in(env.work) == [DEFAULT_PATH]
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[0]
    refused, limited = error_lines(result)
    assert refused.startswith("imagegen: error: image 2 of 3: "), result
    assert "content policy" in refused and "rate limit" not in refused.lower()
    assert limited.startswith("imagegen: error: image 3 of 3: "), result
    assert "Rate limit reached" in limited and "content policy" not in limited


def test_count_with_images_failing_for_different_reasons_json(fake, env, run):
    fake.queue(CODEX, ok(), content_policy(), rate_limited())
    result = run(PROMPT, "-n", "3", "--parallel", "1", "--retries", "0", "--json")
    assert result.code == 6, result
    payload = result.json
    assert payload["ok"] is False
    assert payload["error"]["kind"] == "no_image" and payload["error"]["exit_code"] == 6
    assert [image["path"] for image in payload["images"]] == [DEFAULT_PATH]
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[0]
    assert files_in(env.work) == [DEFAULT_PATH]
    refused, limited = payload["failed"]
    assert refused["index"] == 2 and refused["error"] == payload["error"]
    assert limited["index"] == 3
    assert limited["error"]["kind"] == "rate_limit" and limited["error"]["exit_code"] == 4
    assert "Rate limit reached" in limited["error"]["message"]
    # stderr says the same, one line a failed image
    assert [line.split(": ")[2] for line in error_lines(result)] == ["image 2 of 3", "image 3 of 3"]


def test_images_failing_alike_share_one_line(fake, env, run):
    """The same refusal for images 1 and 3 of 3 is said once, naming both."""
    fake.queue(CODEX, content_policy(), ok(), content_policy())
    result = run(PROMPT, "-n", "3", "--parallel", "1", "--retries", "0")
    assert result.code == 6, result
    assert result.out == DEFAULT_PATH + "\n"
    (line,) = error_lines(result)
    assert line.startswith("imagegen: error: images 1, 3 of 3: "), result
    assert "content policy" in line


def test_json_of_a_run_where_every_image_was_saved_has_no_failed_list(fake, env, run):
    result = run(PROMPT, "-n", "2", "--json")
    assert result.code == 0, result
    assert result.json["ok"] is True and "failed" not in result.json
    assert len(result.json["images"]) == 2


def test_one_image_asked_one_plain_error_line(fake, env, run):
    """-n 1: the failure's message as it is, with no "image 1 of 1"."""
    fake.queue(CODEX, content_policy())
    result = run(PROMPT, "--retries", "0")
    line = assert_failed(result, env, 6, "content policy")
    assert "image 1" not in line


def test_count_all_saved(fake, env, run):
    result = run(PROMPT, "-n", "3", "--parallel", "3")
    assert result.code == 0, result
    assert len(result.lines) == 3 and len(set(result.lines)) == 3
    assert sorted(saved_bytes(env, result)) == sorted(fake.images_sent)
    assert len(fake.requests_to(CODEX)) == 3


# --json ####################################################################################

CONTRACT_IMAGE_KEYS = {"path", "bytes", "format", "width", "height", "sha256", "revised_prompt",
                       "model", "elapsed_s"}


def test_json_success_shape(fake, env, run):
    fake.default(CODEX, ok(size=(1536, 1024), revised_prompt="A red fox standing in snow, soft light."))
    result = run(PROMPT, "--json")
    assert result.code == 0, result
    assert result.out.count("\n") == 1 and result.out.endswith("}\n")
    payload = result.json
    assert set(payload) <= {"ok", "backend", "route", "images", "quota"}
    assert payload["ok"] is True
    assert payload["backend"] == "codex"
    assert payload["route"] == "responses"
    assert len(payload["images"]) == 1
    image = payload["images"][0]
    assert CONTRACT_IMAGE_KEYS <= set(image)
    # and what came and what was done to it here (tests/test_exact.py)
    assert set(image) - CONTRACT_IMAGE_KEYS <= {"route", "received", "fitted", "converted",
                                                "transparency"}
    assert (image["received"], image["fitted"], image["converted"]) == ("1536x1024", None, None)
    data = fake.images_sent[-1]
    assert image["path"] == DEFAULT_PATH
    assert (env.work / image["path"]).read_bytes() == data
    assert image["bytes"] == len(data)
    assert image["format"] == "png"
    assert (image["width"], image["height"]) == (1536, 1024)
    assert image["sha256"] == hashlib.sha256(data).hexdigest()
    assert image["revised_prompt"] == "A red fox standing in snow, soft light."
    assert image["model"] == "gpt-image-2-codex"   # what the server said made it
    assert isinstance(image["elapsed_s"], (int, float)) and image["elapsed_s"] >= 0
    assert result.err == ""     # no progress, no quota line with --json


def test_json_carries_quota_when_the_server_sent_it(fake, env, run):
    result = run(PROMPT, "--json")
    assert result.code == 0, result
    quota = result.json["quota"]
    windows = {w["name"]: w for w in quota["windows"]}
    assert windows["primary"]["used_percent"] == 12.5
    assert windows["primary"]["window_minutes"] == 300
    assert windows["secondary"]["used_percent"] == 3.0


def test_json_without_quota_headers(fake, env, run):
    fake.rate_limits = None
    result = run(PROMPT, "--json")
    assert result.code == 0, result
    assert "quota" not in result.json


def test_json_failure_shape(fake, env, run):
    fake.default(CODEX, cloudflare())
    result = run(PROMPT, "--json")
    assert result.code == 5, result
    assert result.out.count("\n") == 1
    payload = result.json
    assert payload["ok"] is False
    assert payload["images"] == []
    assert set(payload["error"]) == {"kind", "message", "exit_code"}
    assert payload["error"]["kind"] == "backend" and payload["error"]["exit_code"] == 5
    assert "<" not in payload["error"]["message"]
    assert files_in(env.work) == []


def test_json_rate_limit_retry_after(fake, env, run):
    fake.default(CODEX, failed("rate_limit_exceeded", "Rate limit reached. Please try again in 0.01s."))
    result = run(PROMPT, "--json", "--retries", "0")
    assert result.code == 4, result
    error = result.json["error"]
    assert error["kind"] == "rate_limit"
    assert "retry_after_s" in error and error["retry_after_s"] == pytest.approx(0.0, abs=0.05)


# --quiet and plain progress ################################################################

def test_quiet_success_prints_only_the_path(fake, env, run):
    result = run(PROMPT, "--quiet")
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert result.err == ""


def test_quiet_short_option(fake, env, run):
    result = run(PROMPT, "-q", "-n", "2")
    assert result.code == 0, result
    assert len(result.lines) == 2 and all(line.startswith("assets/generated/") for line in result.lines)
    assert result.err == ""


def test_plain_progress_when_stderr_is_not_a_terminal(fake, env, run):
    result = run(PROMPT)
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    lines = result.err.splitlines()
    assert 1 <= len(lines) <= 6, result
    assert "\r" not in result.err and "\x1b" not in result.err
    assert all(line.startswith("imagegen: ") for line in lines)
    assert any(DEFAULT_PATH in line for line in lines)   # says what it saved
    quota = [line for line in lines if "quota" in line]
    assert len(quota) == 1 and "12.5% used" in quota[0] and "resets" in quota[0]


def test_no_quota_line_without_quota_headers(fake, env, run):
    fake.rate_limits = None
    result = run(PROMPT)
    assert result.code == 0, result
    assert "quota" not in result.err


def test_no_progress_option_keeps_stdout_clean(fake, env, run):
    result = run(PROMPT, "--no-progress")
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert "\r" not in result.err and "\x1b" not in result.err


# --dry-run #################################################################################

def test_dry_run_without_credentials(fake, env, run):
    env.auth_file.unlink()
    result = run(PROMPT, "--dry-run")
    assert result.code == 0, result
    assert fake.requests == []
    payload = result.json
    assert set(payload) == {"requests", "saves"}
    assert payload["saves"] == [DEFAULT_PATH]
    assert len(payload["requests"]) == 1
    request = payload["requests"][0]
    assert set(request) == {"method", "url", "headers", "body"}
    assert request["method"] == "POST"
    assert request["url"] == fake.codex_base_url + "/responses"
    assert request["headers"]["Authorization"] == "Bearer ***"
    assert request["headers"]["originator"] == "codex-imagegen"
    body = request["body"]
    assert body["model"] == "gpt-5.5" and body["stream"] is True and body["store"] is False
    assert body["input"][0]["content"] == [{"type": "input_text", "text": PROMPT}]
    assert body["tools"] == [{"type": "image_generation", "output_format": "png"}]
    assert files_in(env.work) == []


def test_dry_run_with_credentials_hides_the_token(fake, env, run):
    tokens = env.read_auth()["tokens"]
    result = run(PROMPT, "--dry-run", "-n", "2", "--size", "1024x1024")
    assert result.code == 0, result
    assert fake.requests == []
    assert tokens["access_token"] not in result.out and tokens["refresh_token"] not in result.out
    requests = result.json["requests"]
    assert len(requests) == 2
    for request in requests:
        assert request["headers"]["Authorization"] == "Bearer ***"
        assert request["headers"]["ChatGPT-Account-ID"] == tokens["account_id"]
        assert "size" not in request["body"]["tools"][0]   # the service ignores it: an aspect line
        assert request["body"]["input"][0]["content"][-1]["text"].endswith("Aspect ratio: square 1:1.")
    assert files_in(env.work) == []


def test_dry_run_json_flag_still_one_object(fake, env, run):
    env.auth_file.unlink()
    result = run(PROMPT, "--dry-run", "--json")
    assert result.code == 0, result
    assert set(result.json) == {"requests", "saves"}
    assert fake.requests == []


# secrets echoed by the server ##############################################################

@pytest.mark.parametrize("options", [
    dict(code=500),
    dict(code=400),
    dict(code=500, in_header=True),
    dict(in_stream=True),
    dict(in_stream=True, in_header=True),
], ids=["500", "400", "500-header", "stream", "stream-header"])
def test_secrets_echoed_by_the_server_are_never_printed(fake, env, run, options):
    fake.default(CODEX, echo_secrets(**options))
    result = run(PROMPT, "--retries", "0", "--route", "responses")
    assert result.code == 5, result
    line = the_error(result)
    assert "Invalid credentials" in line        # the message itself is shown, redacted
    assert "SECRETx" not in result.err
    assert files_in(env.work) == []


def test_secrets_echoed_in_a_rejection_before_the_route_switch(fake, env, run):
    # route auto: a 400 not about the prompt moves to the Responses route, and says so on stderr
    fake.queue("/images/generations", echo_secrets(code=400, in_header=True))
    result = run(PROMPT, env_vars={"IMAGEGEN_ROUTE": "auto"})
    assert result.code == 0, result
    assert [r.path.rsplit("/", 2)[-2:] for r in fake.requests] == [["images", "generations"],
                                                                   ["codex", "responses"]]
    assert any("switching" in line and "Invalid credentials" in line for line in result.err.splitlines())
    assert "SECRETx" not in result.err
    assert (env.work / result.lines[0]).read_bytes() == fake.images_sent[-1]


def test_secrets_echoed_never_reach_json(fake, env, run):
    fake.default(CODEX, echo_secrets(code=500, in_header=True))
    result = run(PROMPT, "--retries", "0", "--json")
    assert result.code == 5, result
    assert "Invalid credentials" in result.json["error"]["message"]
    assert "SECRETx" not in result.out


def test_an_unknown_api_key_echoed_in_an_error_is_redacted(fake, env, run):
    # An extra secret the test made up, placed where a server might echo it back.
    secret = make_secret("sk-")
    env.secrets.add(secret)
    fake.default(CODEX, status(500, {"error": {"message": f"bad key {secret}", "code": None}}))
    result = run(PROMPT, "--retries", "0")
    assert result.code == 5, result
    assert the_error(result)


# more failure forms ########################################################################

def test_a_plain_429_rate_limit_is_retried(fake, env, run):
    fake.queue(CODEX, status(429, {"error": {"type": "rate_limit_exceeded", "code": "rate_limit_exceeded",
                                             "message": "Too many requests."}}, headers={"Retry-After": "0"}))
    result = run(PROMPT)
    assert result.code == 0, result
    assert len(fake.requests) == 2
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]


def test_a_usage_limit_stops_the_remaining_images(fake, env, run):
    fake.queue(CODEX, ok(), usage_limit())
    result = run(PROMPT, "-n", "3", "--parallel", "1")
    assert result.code == 4, result
    assert len(fake.requests) == 2           # the third image is never asked for
    assert result.out == DEFAULT_PATH + "\n"
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[0]
    assert files_in(env.work) == [DEFAULT_PATH]
    # one line a failed image: why image 2 failed, and that image 3 was never started
    limit, rest = error_lines(result)
    assert limit.startswith("imagegen: error: image 2 of 3: usage limit reached"), result
    assert rest == "imagegen: error: image 3 of 3 not started: the usage limit was reached"


def test_a_usage_limit_in_json_lists_the_images_not_started(fake, env, run):
    fake.queue(CODEX, ok(), usage_limit())
    result = run(PROMPT, "-n", "4", "--parallel", "1", "--json")
    assert result.code == 4, result
    payload = result.json
    assert [image["path"] for image in payload["images"]] == [DEFAULT_PATH]
    assert [item["index"] for item in payload["failed"]] == [2, 3, 4]
    assert payload["failed"][0]["error"] == payload["error"]
    assert "usage limit" in payload["error"]["message"]
    for item in payload["failed"][1:]:
        assert item["error"]["kind"] == "rate_limit" and item["error"]["exit_code"] == 4
        assert item["error"]["message"] == "not started: the usage limit was reached"
    assert len(fake.requests) == 2


def test_an_html_502_is_not_dumped(fake, env, run):
    fake.default(CODEX, cloudflare(code=502))
    result = run(PROMPT, "--retries", "1", "--quiet")
    line = quiet_failure(result, env, 5, "502")
    assert "<" not in line and "&nbsp;" not in line
    assert len(fake.requests) == 2           # a 5xx is transient, whatever its body


@pytest.mark.parametrize("body", [
    {"error": {"message": "overloaded " + "x" * 5000, "code": "server_error"}},
    "plain text failure " + "y" * 5000,
], ids=["json", "text"])
def test_long_error_bodies_are_cut(fake, env, run, body):
    fake.default(CODEX, status(500, body))
    result = run(PROMPT, "--retries", "0", "--quiet")
    line = quiet_failure(result, env, 5, "500")
    assert 30 < len(line) < 800
    assert "x" * 501 not in line and "y" * 501 not in line


def test_a_stall_longer_than_the_total_budget_is_a_timeout(fake, env, run):
    fake.default(CODEX, stall(seconds=10))
    result = run(PROMPT, "--timeout", "0.7", "--stall-timeout", "0", "--quiet")
    quiet_failure(result, env, 5, r"timed out: no answer within the 0\.7 s budget \(--timeout\)")


def test_a_stall_is_retried(fake, env, run):
    fake.queue(CODEX, stall(seconds=10, then="close"))
    result = run(PROMPT, "--stall-timeout", "0.4", seams={"sleep": lambda s: None})
    assert result.code == 0, result
    assert len(fake.requests) == 2
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]


# terminals #################################################################################

def test_live_progress_line_only_on_a_terminal(fake, env, run):
    fake.default(CODEX, ok(delay=0.7))
    result = run(PROMPT, tty=True)
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"          # stdout untouched by the live line
    assert "\r" in result.err                          # the line was drawn and updated
    # it is wiped before the plain lines: each ends clean, and nothing is left drawn at the end
    final_lines = [line.rsplit("\r\x1b[2K", 1)[-1] for line in result.err.split("\n")]
    assert final_lines[-1] == ""
    assert all(line.startswith("imagegen: ") for line in final_lines[:-1]), final_lines
    assert any(DEFAULT_PATH in line for line in final_lines)


def test_no_live_line_with_term_dumb(fake, env, run):
    fake.default(CODEX, ok(delay=0.7))
    result = run(PROMPT, tty=True, env_vars={"TERM": "dumb"})
    assert result.code == 0, result
    assert "\r" not in result.err and "\x1b" not in result.err


def test_no_live_line_with_no_progress(fake, env, run):
    fake.default(CODEX, ok(delay=0.7))
    result = run(PROMPT, "--no-progress", tty=True)
    assert result.code == 0, result
    assert "\r" not in result.err and "\x1b" not in result.err
    assert any(DEFAULT_PATH in line for line in result.err.splitlines())


def test_no_colour_with_no_color(fake, env, run):
    fake.default(CODEX, content_policy())
    plain = run(PROMPT, "--quiet", tty=True, env_vars={"NO_COLOR": "1"})
    assert plain.code == 6, plain
    assert "\x1b" not in plain.err
    assert plain.err.startswith("imagegen: error: ")


def test_an_image_that_arrived_before_the_connection_broke_is_kept(fake, env, run):
    # everything up to and including response.output_item.done, then the connection drops
    fake.default(CODEX, truncated(after=10))
    result = run(PROMPT, "--retries", "0", "--quiet")
    assert len(fake.images_sent) == 1, "the scripted stream no longer ends with the image item"
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[0]


def test_rate_limited_every_time_is_exit_4(fake, env, run):
    fake.default(CODEX, rate_limited(0.01))
    result = run(PROMPT, "--retries", "1", "--quiet")
    quiet_failure(result, env, 4, "rate limit")
    assert len(fake.requests) == 2


# paths that look like secrets ##############################################################

@pytest.mark.parametrize("prompt, name", [
    ("sk-8 skateboard wheels, top view", "sk-8-skateboard-wheels-top-view.png"),
    ("SK Hynix memory chip, macro photo", "sk-hynix-memory-chip-macro-photo.png"),
])
def test_a_saved_path_that_looks_like_a_key_is_printed_as_it_is(fake, env, run, prompt, name):
    path = f"assets/generated/{name}"
    result = run(prompt)
    assert result.code == 0, result
    assert result.out == path + "\n"          # a path a script can open, not assets/generated/***.png
    assert (env.work / path).read_bytes() == fake.images_sent[-1]
    assert any(f"saved {path}" in line for line in result.err.splitlines()), result
    result = run(prompt, "--json")
    assert result.code == 0, result
    assert result.json["images"][0]["path"] == path.replace(".png", "-2.png")


def test_an_out_path_with_the_word_bearer_is_printed_as_it_is(fake, env, run):
    result = run(PROMPT, "-o", "my bearer photos/fox.png", "--quiet")
    assert result.code == 0, result
    assert result.out == "my bearer photos/fox.png\n"
    assert (env.work / "my bearer photos/fox.png").read_bytes() == fake.images_sent[-1]


# where the request goes ####################################################################

@pytest.mark.parametrize("how", ["option", "option-with-slash", "environment-with-slash"])
def test_base_url(fake, env, run, how):
    if how == "environment-with-slash":
        env.set(IMAGEGEN_CODEX_BASE_URL=fake.codex_base_url + "/")
        args: list[str] = []
    else:
        env.set(IMAGEGEN_CODEX_BASE_URL="http://127.0.0.1:9/nowhere")   # --base-url wins over it
        args = ["--base-url", fake.codex_base_url + ("/" if how == "option-with-slash" else "")]
    result = run(PROMPT, *args, "--quiet")
    assert result.code == 0, result
    assert [r.path for r in fake.requests] == ["/backend-api/codex/responses"]
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]


# answers that are not an event stream ######################################################

@pytest.mark.parametrize("body, content_type, pattern", [
    ("data: this is not json\n\n", "text/event-stream", "not JSON"),
    ({"detail": "something odd happened"}, "application/json", "something odd happened"),
    ({"error": {"code": "server_error", "message": "upstream hiccup"}}, "application/json", "upstream hiccup"),
    ("{not json", "application/json", "JSON"),
    ("", "text/event-stream", "ended"),
], ids=["not-json-event", "json-instead-of-sse", "json-error", "broken-json", "empty"])
def test_a_200_that_is_not_a_usable_stream(fake, env, run, body, content_type, pattern):
    fake.default(CODEX, status(200, body, content_type=content_type))
    result = run(PROMPT, "--retries", "0", "--quiet")
    quiet_failure(result, env, 5, pattern)
    assert len(fake.requests) == 1


def test_a_whole_response_object_instead_of_a_stream_is_read(fake, env, run):
    # a provider (or proxy) that ignored stream: true and sent the finished response
    image = png_bytes(64, 48)
    fake.default(CODEX, status(200, {"object": "response", "status": "completed", "output": [
        {"type": "image_generation_call", "status": "completed", "revised_prompt": "a fox",
         "result": base64.b64encode(image).decode()}]}))
    result = run(PROMPT, "--quiet")
    assert result.code == 0, result
    assert (env.work / DEFAULT_PATH).read_bytes() == image

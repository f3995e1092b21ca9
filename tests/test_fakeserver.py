"""The fake server and the fixtures, checked with urllib alone (no imagegen.py needed)."""
from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request

import pytest

import fakeserver as fs
from fakeserver import (
    CLIENT_ID, bad_base64, cloudflare, detail, disconnect, echo_secrets, error_event, failed, image_info,
    incomplete, not_an_image, ok, other_format, overloaded, rate_limited, refresh_error, stall, status,
    text_only, trickle, truncated, usage_limit,
)

VERSION = "0.169.0"


def post(url, body=None, token=None, headers=None, data=None, content_type="application/json", timeout=10):
    """POST and return (status, headers, body bytes), errors included."""
    if data is None and body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data if data is not None else b"", method="POST")
    request.add_header("Content-Type", content_type)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def parse_sse(raw: bytes) -> list:
    """A WHATWG-style decoder: any line ending, comments, multi-line data, last event at EOF."""
    events, data = [], []
    for line in re.split(r"\r\n|\r|\n", raw.decode("utf-8")):
        if line == "":
            if data:
                events.append(json.loads("\n".join(data)))
            data = []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            if field == "data":
                data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append(json.loads("\n".join(data)))
    return events


def responses_body(prompt="a red fox", **tool):
    return {
        "model": "gpt-5.5", "instructions": "You make images.",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": prompt}]}],
        "tools": [{"type": "image_generation", "output_format": "png", **tool}],
        "tool_choice": "auto", "parallel_tool_calls": False, "store": False, "stream": True,
    }


def stream(fake, body=None, **kwargs):
    return post(fake.codex_base_url + "/responses", body or responses_body(), token=fake.auth.tokens["access_token"],
                headers={"version": VERSION, "Accept": "text/event-stream"}, **kwargs)


def image_from(events):
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"
             and e["item"]["type"] == "image_generation_call"]
    return base64.b64decode(items[-1]["result"], validate=True) if items else None


# images and tokens


def test_made_images_have_parseable_headers():
    assert image_info(fs.png_bytes(1536, 1024)) == ("png", 1536, 1024)
    assert image_info(fs.png_bytes(16, 32, rgba=True))[1:] == (16, 32)
    assert image_info(fs.jpeg_bytes(1024, 1536)) == ("jpeg", 1024, 1536)
    assert fs.jpeg_bytes(8, 8)[:3] == b"\xff\xd8\xff" and fs.jpeg_bytes(8, 8)[-2:] == b"\xff\xd9"
    assert image_info(fs.webp_bytes(1024, 1024)) == ("webp", 1024, 1024)
    assert image_info(fs.webp_bytes(300, 200, extended=True)) == ("webp", 300, 200)
    assert fs.webp_bytes(300, 200, extended=True)[12:16] == b"VP8X"


def test_made_images_decode_in_pillow():
    image_module = pytest.importorskip("PIL.Image")
    for data in (fs.png_bytes(40, 30), fs.png_bytes(40, 30, True), fs.jpeg_bytes(40, 30), fs.webp_bytes(40, 30)):
        picture = image_module.open(io.BytesIO(data))
        picture.load()
        assert picture.size == (40, 30)


def test_tokens_and_auth_json_have_codex_shape():
    tokens = fs.make_tokens(account_id="acct-1", email="a@b.c", plan="pro", exp=123)
    claims = fs.jwt_claims(tokens["id_token"])
    assert claims["email"] == "a@b.c"
    assert claims[fs.AUTH_CLAIM]["chatgpt_account_id"] == "acct-1"
    assert claims[fs.AUTH_CLAIM]["chatgpt_plan_type"] == "pro"
    assert claims["sub"] != "acct-1"
    assert fs.jwt_claims(tokens["access_token"])["exp"] == 123
    assert "=" not in tokens["access_token"] and tokens["access_token"].count(".") == 2
    assert all(fs.SECRET_MARKER in tokens[k] for k in ("id_token", "access_token", "refresh_token"))
    doc = fs.make_auth_json(tokens, extra_field=1)
    assert doc["auth_mode"] == "chatgpt" and doc["OPENAI_API_KEY"] is None and doc["extra_field"] == 1
    assert doc["tokens"] == {k: tokens[k] for k in ("id_token", "access_token", "refresh_token", "account_id")}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", doc["last_refresh"])


def test_find_secrets_reports_whole_and_partial_leaks():
    secret = fs.make_secret("rt_")
    assert fs.find_secrets(f"oops {secret} here", {secret}) == [secret]
    assert fs.find_secrets(f"cut: {secret[:12]}", {secret}) == [fs.SECRET_MARKER]
    assert fs.find_secrets("nothing here", {secret}) == []


# the Responses stream


def test_happy_stream_ignores_size_and_follows_the_aspect_line(fake):
    # like the live codex backend: the tool's size is rewritten to auto; the prompt's line wins
    code, headers, raw = stream(fake, responses_body("a fox\n\nAspect ratio: landscape 3:2.", size="1024x1536"))
    assert code == 200
    assert headers["Content-Type"] == "text/event-stream"
    for name in ("x-codex-primary-used-percent", "x-codex-primary-window-minutes", "x-codex-primary-reset-at",
                 "x-codex-secondary-used-percent", "x-request-id"):
        assert headers[name]
    events = parse_sse(raw)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.output_item.done",
        "response.output_item.added", "response.image_generation_call.in_progress",
        "response.image_generation_call.generating", "response.image_generation_call.completed",
        "response.output_item.done", "response.completed"]
    assert b"\n: keepalive\n" in raw and b"event: response.completed\n" in raw
    image = image_from(events)
    assert image_info(image) == ("png", 1536, 1024)
    assert fake.images_sent == [image]
    item = events[-2]["item"]
    assert item["status"] == "completed" and "a fox" in item["revised_prompt"] and item["size"] == "1536x1024"
    assert events[0]["response"]["tools"][0]["model"] == "gpt-image-2-codex"
    request = fake.requests_to("/responses")[0]
    assert request.json["input"][0]["content"][0]["text"].startswith("a fox")
    _, _, raw = stream(fake, responses_body("a fox", size="1536x1024"))
    assert image_info(image_from(parse_sse(raw))) == ("png", 1254, 1254)  # no line: a square
    assert request.header("authorization") == "Bearer " + fake.auth.tokens["access_token"]


@pytest.mark.parametrize("framing", [
    {"newline": "\r\n"},
    {"newline": "\r", "bytewise": True},
    {"space": False, "split_data": True},
    {"noise": True, "event_names": "mismatch"},
    {"final_blank": False, "chunked": False, "content_type": None},
    {"event_names": "none", "image_in": "completed"},
])
def test_stream_framings_still_carry_the_image(fake, framing):
    fake.queue("/responses", ok(**framing))
    code, headers, raw = stream(fake)
    assert code == 200
    events = parse_sse(raw)
    assert events[-1]["type"] == "response.completed"
    image = image_from(events) or base64.b64decode(events[-1]["response"]["output"][0]["result"])
    assert image_info(image) == ("png", 1254, 1254) and fake.images_sent == [image]
    if framing.get("newline") == "\r":
        assert b"\n" not in raw
    if framing.get("space") is False:
        assert b"data:{" in raw and b"data: " not in raw
    if framing.get("split_data"):
        assert len(re.findall(rb"^data:", raw, re.M)) > 2 * len(events)
    if framing.get("final_blank") is False:
        assert raw.endswith(b"}\n") and not raw.endswith(b"\n\n")
    if framing.get("event_names") == "mismatch":
        assert raw.startswith(b": ping\n\nevent: error\n")


def test_output_format_and_other_format(fake):
    code, _, raw = stream(fake, responses_body("a fox. Aspect ratio: portrait 9:16", output_format="webp"))
    assert image_info(image_from(parse_sse(raw))) == ("webp", 941, 1672)
    fake.queue("/responses", other_format("jpeg"))
    _, _, raw = stream(fake)
    events = parse_sse(raw)
    assert image_info(image_from(events))[0] == "jpeg" and events[-2]["item"]["output_format"] == "jpeg"


def test_failure_streams(fake):
    fake.queue("/responses", rate_limited(), error_event(), incomplete("max_output_tokens"), text_only("no picture"),
               failed("image_content_policy_violation", "refused"), bad_base64(), not_an_image())
    last = [parse_sse(stream(fake)[2])[-1] for _ in range(5)]
    assert last[0]["type"] == "response.failed"
    assert last[0]["response"]["error"]["code"] == "rate_limit_exceeded"
    assert "try again in 0.01s" in last[0]["response"]["error"]["message"]
    assert last[1]["type"] == "error" and last[1]["code"] == "server_error"
    assert last[2]["response"]["incomplete_details"]["reason"] == "max_output_tokens"
    assert last[3]["type"] == "response.completed"
    assert last[3]["response"]["output"][0]["content"][0]["text"] == "no picture"
    assert last[4]["response"]["error"]["code"] == "image_content_policy_violation"
    bad = parse_sse(stream(fake)[2])[-2]["item"]["result"]
    with pytest.raises(ValueError):
        base64.b64decode(bad, validate=True)
    junk = image_from(parse_sse(stream(fake)[2]))
    assert junk and image_info(junk) is None
    assert fake.images_sent == [junk]


def test_truncated_streams_end_without_completion(fake):
    fake.queue("/responses", truncated(after=3), truncated(after=3, clean=True))
    with pytest.raises(http.client.IncompleteRead):
        stream(fake)
    _, _, raw = stream(fake)
    assert [e["type"] for e in parse_sse(raw)][-1] == "response.output_item.added"
    assert fake.images_sent == []


def test_trickle_delivers_everything_slowly(fake):
    fake.queue("/responses", trickle(interval=0.02, chunk=2048))
    started = time.monotonic()
    _, _, raw = stream(fake)
    assert time.monotonic() - started >= 0.04
    assert image_info(image_from(parse_sse(raw))) == ("png", 1254, 1254)


def test_stall_then_finish(fake):
    fake.queue("/responses", stall(0.3))
    started = time.monotonic()
    assert image_from(parse_sse(stream(fake)[2]))
    assert time.monotonic() - started >= 0.3


def test_a_stall_does_not_block_stop(fake):
    fake.queue("/responses", stall(60))
    outcome = []

    def client():
        try:
            outcome.append(stream(fake, timeout=30))
        except Exception as error:  # the server hangs up: that is the point
            outcome.append(error)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    assert fake.wait_for("/responses", timeout=5)
    time.sleep(0.1)
    started = time.monotonic()
    fake.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert outcome and not thread.is_alive()


def test_provider_responses_route_uses_the_provider_key(fake):
    url = fake.api_base_url + "/responses"
    assert post(url, responses_body(), token=fake.api_key)[0] == 401
    code, _, raw = post(url, responses_body(), token=fake.provider_key)
    assert code == 200 and image_from(parse_sse(raw))


# auth


def test_bad_or_expired_access_token_gets_401(fake):
    url = fake.codex_base_url + "/responses"
    code, _, body = post(url, responses_body(), token="nope", headers={"version": VERSION})
    assert code == 401 and json.loads(body)["error"]["code"] == "token_expired"
    expired = fake.auth.issue(expired=True)
    assert post(url, responses_body(), token=expired["access_token"], headers={"version": VERSION})[0] == 401
    assert fake.requests_to("/responses")[0].bearer == "nope"


def test_strict_checks_like_the_backend(fake):
    token = fake.auth.tokens["access_token"]
    url = fake.codex_base_url + "/responses"
    code, _, body = post(url, responses_body(), token=token)
    assert code == 400 and "requires a newer version of Codex" in json.loads(body)["detail"]
    for change, message in (({"store": True}, "Store must be set to false"), ({"instructions": ""}, "Instructions are required"),
                            ({"stream": False}, "Stream must be set to true")):
        code, _, body = post(url, {**responses_body(), **change}, token=token, headers={"version": VERSION})
        assert (code, json.loads(body)["detail"]) == (400, message)


def test_refresh_rotates_and_a_reused_token_is_refused(fake):
    old = dict(fake.auth.tokens)
    url = fake.url + "/oauth/token"
    code, _, body = post(url, {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": old["refresh_token"]})
    fresh = json.loads(body)
    assert code == 200 and set(fresh) >= {"id_token", "access_token", "refresh_token"}
    assert fresh["refresh_token"] != old["refresh_token"] and fake.auth.refresh_count == 1
    assert fake.auth.current_refresh_token == fresh["refresh_token"]
    assert fresh["access_token"] in fake.secrets and fresh["refresh_token"] in fake.secrets
    assert fake.auth.access_ok(fresh["access_token"])
    code, _, body = post(url, {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": old["refresh_token"]})
    assert code == 401 and json.loads(body)["error"]["code"] == "refresh_token_reused"
    assert fake.auth.refresh_count == 1
    fake.queue("/oauth/token", refresh_error("refresh_token_expired"), status(500))
    token = {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": fresh["refresh_token"]}
    code, _, body = post(url, token)
    assert code == 401 and json.loads(body)["error"]["code"] == "refresh_token_expired"
    assert post(url, token)[0] == 500
    assert post(url, token)[0] == 200 and fake.auth.refresh_count == 2


def test_device_login_pends_then_succeeds(fake):
    fake.auth.device_pending = 2
    code, _, body = post(fake.url + "/api/accounts/deviceauth/usercode", {"client_id": CLIENT_ID})
    start = json.loads(body)
    assert code == 200 and start["interval"] == "0" and start["user_code"]
    poll = {"device_auth_id": start["device_auth_id"], "user_code": start["user_code"]}
    codes = [post(fake.url + "/api/accounts/deviceauth/token", poll)[0] for _ in range(2)]
    code, _, body = post(fake.url + "/api/accounts/deviceauth/token", poll)
    assert codes == [403, 403] and code == 200
    grant = json.loads(body)
    assert set(grant) == {"authorization_code", "code_challenge", "code_verifier"}
    form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": grant["authorization_code"],
                                   "redirect_uri": fake.url + "/deviceauth/callback", "client_id": CLIENT_ID,
                                   "code_verifier": grant["code_verifier"]}).encode()
    code, _, body = post(fake.url + "/oauth/token", data=form, content_type="application/x-www-form-urlencoded")
    tokens = json.loads(body)
    assert code == 200 and fake.auth.login_count == 1
    assert fake.auth.access_ok(tokens["access_token"]) and fake.auth.current_refresh_token == tokens["refresh_token"]
    assert fake.requests_to("/oauth/token")[0].form["code_verifier"] == grant["code_verifier"]


# images routes, api, gateway, files


def multipart(fields, files, boundary="----fakeboundary42"):
    chunks = []
    for name, value in fields:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, content_type, data in files:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                      f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def test_multipart_edit_is_parsed_back(fake):
    first, second, mask = fs.png_bytes(1024, 1024), fs.jpeg_bytes(1024, 1024), fs.png_bytes(1024, 1024, rgba=True)
    data, content_type = multipart(
        [("prompt", "add a hat"), ("model", "gpt-image-2"), ("n", "2"), ("size", "1024x1536"), ("output_format", "png")],
        [("image[]", "a.png", "image/png", first), ("image[]", "b.jpg", "image/jpeg", second),
         ("mask", "mask.png", "image/png", mask)])
    code, _, body = post(fake.api_base_url + "/images/edits", data=data, content_type=content_type, token=fake.api_key)
    assert code == 200
    answer = json.loads(body)
    assert len(answer["data"]) == 2 and answer["size"] == "1024x1536"
    assert [image_info(base64.b64decode(d["b64_json"])) for d in answer["data"]] == [("png", 1024, 1536)] * 2
    request = fake.requests_to("/images/edits")[0]
    assert [(p.name, p.filename, p.content_type) for p in request.multipart] == [
        ("prompt", None, None), ("model", None, None), ("n", None, None), ("size", None, None),
        ("output_format", None, None), ("image[]", "a.png", "image/png"), ("image[]", "b.jpg", "image/jpeg"),
        ("mask", "mask.png", "image/png")]
    assert request.input_images() == [first, second] and request.mask() == mask
    assert request.field("prompt") == "add a hat"
    broken = data.replace(b"----fakeboundary42--", b"")
    assert post(fake.api_base_url + "/images/edits", data=broken, content_type=content_type, token=fake.api_key)[0] == 400


def test_api_generations_honour_n_url_answers_and_the_key(fake):
    url = fake.api_base_url + "/images/generations"
    body = {"prompt": "x", "model": "gpt-image-2", "n": 3, "size": "1536x864", "output_format": "jpeg"}
    assert post(url, body, token="sk-wrong")[0] == 401
    code, _, raw = post(url, body, token=fake.api_key)
    data = json.loads(raw)["data"]
    assert code == 200 and len(data) == 3 and len(set(d["b64_json"] for d in data)) >= 1
    assert image_info(base64.b64decode(data[0]["b64_json"])) == ("jpeg", 1536, 864)
    assert len(fake.images_sent) == 3
    code, _, raw = post(url, {**body, "size": "1000x1000"}, token=fake.api_key)
    assert code == 400 and json.loads(raw)["error"]["param"] == "size"
    fake.queue("/images/generations", ok(url=True, n=1))
    link = json.loads(post(url, body, token=fake.api_key)[2])["data"][0]["url"]
    with urllib.request.urlopen(link, timeout=5) as response:
        assert response.read() == fake.images_sent[-1]


def test_codex_images_route(fake):
    url = fake.codex_base_url + "/images/edits"
    headers = {"version": VERSION}
    token = fake.auth.tokens["access_token"]
    body = {"prompt": "add a hat", "model": "gpt-image-2", "background": "auto", "quality": "auto", "size": "auto",
            "images": [{"image_url": fs.data_url(fs.png_bytes(64, 64))}]}
    code, response_headers, raw = post(url, body, token=token, headers=headers)
    answer = json.loads(raw)
    assert code == 200 and answer["output_format"] == "png" and answer["size"] == "1254x1254" and answer["usage"]
    assert answer["data"][0]["generation_id"] and "revised_prompt" not in answer["data"][0]
    assert response_headers["x-codex-primary-used-percent"]
    assert response_headers["x-codex-imagegen-request-id"] and response_headers["x-oai-request-id"]
    bad = {**body, "images": [{"image_url": "data:image/png;base64," + base64.b64encode(b"not an image").decode()}]}
    code, _, raw = post(url, bad, token=token, headers=headers)
    assert code == 400 and "does not represent a valid image" in json.loads(raw)["error"]["message"]
    fake.queue("/images/edits", text_only(), failed("moderation_blocked", "no"), rate_limited())
    assert json.loads(post(url, body, token=token, headers=headers)[2])["data"] == []
    assert post(url, body, token=token, headers=headers)[0] == 400
    assert post(url, body, token=token, headers=headers)[0] == 429


def test_gateway_content_shapes(fake):
    url = fake.url + "/v1/chat/completions"
    body = {"model": "gpt-5.5", "stream": False, "messages": [{"role": "user", "content": "a cat, 1536x1024"}]}
    assert post(url, body, token="wrong")[0] == 401
    content = json.loads(post(url, body, token="devtoken")[2])["choices"][0]["message"]["content"]
    match = re.search(r"!\[image\]\((data:image/png;base64,[^)]+)\)", content)
    assert image_info(fs.decode_data_url(match.group(1))[1]) == ("png", 1536, 1024)
    fake.queue("/chat/completions", ok(content="list"), text_only("just words"))
    parts = json.loads(post(url, body, token="devtoken")[2])["choices"][0]["message"]["content"]
    assert parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert json.loads(post(url, body, token="devtoken")[2])["choices"][0]["message"]["content"] == "just words"
    assert "devtoken" not in fake.secrets
    fake.gateway_token = fs.make_secret("gw-")
    assert fake.gateway_token in fake.secrets
    fake.block_python_user_agent = True
    code, _, raw = post(url, body, token=fake.gateway_token)
    assert (code, raw) == (403, b"error code: 1010")


def test_files_and_oversize_files(fake):
    link = fake.add_file("ref.png", fs.png_bytes(32, 32))
    with urllib.request.urlopen(link, timeout=5) as response:
        assert response.read() == fs.png_bytes(32, 32) and response.headers["Content-Type"] == "image/png"
    big = fake.add_oversize_file("big.png", 3 * 2 ** 20, declare_length=False)
    with urllib.request.urlopen(big, timeout=5) as response:
        assert response.headers["Content-Length"] is None
        assert len(response.read()) == 3 * 2 ** 20
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(fake.url + "/files/missing.png", timeout=5)


# scripting


def test_queue_pops_behaviours_in_order_then_the_default(fake):
    url = fake.codex_base_url + "/images/generations"
    token = fake.auth.tokens["access_token"]
    fake.queue("/images/generations", status(500), usage_limit(resets_at=1704067242), detail("nope"),
               overloaded(retry_after=0), cloudflare())
    replies = [post(url, {"prompt": "x"}, token=token, headers={"version": VERSION}) for _ in range(6)]
    assert [r[0] for r in replies] == [500, 429, 400, 503, 403, 200]
    assert json.loads(replies[1][2])["error"] == {"type": "usage_limit_reached", "message": "limit reached",
                                                  "resets_at": 1704067242, "plan_type": "plus"}
    assert json.loads(replies[2][2]) == {"detail": "nope"}
    assert replies[3][1]["Retry-After"] == "0"
    assert replies[4][1]["Content-Type"].startswith("text/html") and b"Cloudflare" in replies[4][2]
    assert json.loads(replies[5][2])["data"][0]["b64_json"]
    fake.default("/images/generations", status(404, {"detail": "Not Found"}))
    assert post(url, {"prompt": "x"}, token=token, headers={"version": VERSION})[0] == 404
    fake.default("/images/generations", None)
    assert post(url, {"prompt": "x"}, token=token, headers={"version": VERSION})[0] == 200
    assert fake.pending("/images/generations") == 0 and fake.errors == []


def test_disconnect_and_usage_limit_in_seconds(fake):
    fake.queue("/codex/responses", disconnect(), usage_limit(resets_in_seconds=90))
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, urllib.error.URLError)):
        stream(fake)
    code, _, body = stream(fake)
    assert code == 429 and json.loads(body)["error"]["resets_in_seconds"] == 90


def test_echoed_secrets_are_registered(fake):
    fake.queue("/responses", echo_secrets(code=401), echo_secrets(in_stream=True))
    code, _, body = stream(fake)
    text = body.decode()
    assert code == 401
    assert fake.auth.tokens["access_token"] in text and fake.auth.current_refresh_token in text
    assert fs.find_secrets(text, fake.secrets)
    events = parse_sse(stream(fake)[2])
    assert events[-1]["type"] == "error" and fake.auth.current_refresh_token in events[-1]["message"]
    fake.queue("/oauth/token", echo_secrets(code=400))
    sent = fake.auth.current_refresh_token
    reply = post(fake.url + "/oauth/token", {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": sent})
    assert reply[0] == 400 and sent in reply[2].decode()


def test_reset_forgets_requests_and_queues(fake):
    fake.queue("/responses", status(500))
    stream(fake, responses_body())
    fake.queue("/responses", status(500))
    fake.reset()
    assert fake.requests == [] and fake.images_sent == [] and fake.pending("/responses") == 0


def test_standalone_main_prints_exports(tmp_path):
    import subprocess

    script = os.path.join(os.path.dirname(fs.__file__), "fakeserver.py")
    proc = subprocess.Popen([sys.executable, script, "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(7)]
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()
    exports = dict(re.findall(r"^export (\w+)=(.*)$", "".join(lines), re.M))
    assert not os.path.exists(exports["CODEX_HOME"])  # removed on exit
    assert set(exports) == {"CODEX_HOME", "IMAGEGEN_CODEX_BASE_URL", "IMAGEGEN_AUTH_BASE_URL", "CODEX_API_BASE_URL",
                            "IMAGEGEN_API_BASE_URL", "IMAGEGEN_API_KEY"}
    assert exports["IMAGEGEN_CODEX_BASE_URL"].endswith("/backend-api/codex")


# the live service as measured (December 2026)


def codex_post(fake, path, body):
    return post(fake.codex_base_url + path, body, token=fake.auth.tokens["access_token"], headers={"version": VERSION})


@pytest.mark.parametrize("line, shape", [
    ("", (1254, 1254)), ("Aspect ratio: landscape 16:9.", (1672, 941)), ("Aspect ratio: portrait 9:16.", (941, 1672)),
    ("aspect ratio 3:2", (1536, 1024)), ("Aspect ratio: portrait 2:3.", (1024, 1536)), ("Aspect ratio: 1:1", (1254, 1254)),
    ("Aspect ratio: 21:9", (1916, 821)),
])
def test_codex_images_route_answers_one_png_shaped_by_the_prompt(fake, line, shape):
    body = {"prompt": f"a lighthouse\n\n{line}", "model": "no-such-model", "size": "256x256", "quality": "high",
            "output_format": "jpeg", "n": 3, "background": "opaque"}
    code, _, raw = codex_post(fake, "/images/generations", body)
    data = json.loads(raw)["data"]
    assert code == 200 and len(data) == 1
    assert image_info(base64.b64decode(data[0]["b64_json"])) == ("png", *shape)


def test_codex_images_route_honours_a_transparent_background(fake):
    code, _, raw = codex_post(fake, "/images/generations", {"prompt": "a sticker", "background": "transparent"})
    png = base64.b64decode(json.loads(raw)["data"][0]["b64_json"])
    assert code == 200 and png[25] == 6  # colour type 6: RGBA


def test_codex_responses_route_rejects_transparent_and_input_fidelity(fake):
    code, _, raw = stream(fake, responses_body(background="transparent"))
    error = json.loads(raw)["error"]
    assert (code, error["code"]) == (400, "image_generation_user_error")
    assert error["message"] == "Transparent background is not supported for this model."
    code, _, raw = stream(fake, responses_body(input_fidelity="high"))
    assert (code, json.loads(raw)["error"]["code"]) == (400, "invalid_input_fidelity_model")
    events = parse_sse(stream(fake, responses_body(model="gpt-image-9"))[2])
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "server_is_overloaded"


def test_a_forced_tool_works_unless_the_plan_has_no_image_generation(fake):
    forced = {**responses_body(), "tool_choice": {"type": "image_generation"}}
    code, _, raw = stream(fake, forced)
    assert code == 200 and image_from(parse_sse(raw))
    fake.image_generation = False
    code, _, raw = stream(fake, forced)
    assert code == 400
    assert json.loads(raw)["error"]["message"] == "Tool choice 'image_generation' not found in 'tools' parameter."
    code, _, raw = codex_post(fake, "/images/generations", {"prompt": "x"})
    assert code == 403 and json.loads(raw) == fs.FORBIDDEN_BODIES["plan"]
    assert fake.auth.refresh_count == 0


@pytest.mark.parametrize("kind", sorted(fs.FORBIDDEN_BODIES))
def test_forbidden_bodies(fake, kind):
    fake.queue("/images/generations", fs.forbidden(kind))
    code, headers, raw = codex_post(fake, "/images/generations", {"prompt": "x"})
    assert code == 403 and json.loads(raw) == fs.FORBIDDEN_BODIES[kind]
    assert headers["Content-Type"] == "application/json"


def test_quota_header_families(fake):
    _, images, _ = codex_post(fake, "/images/generations", {"prompt": "x"})
    assert images["x-image-gen-limit-name"] == "image_gen"
    assert images["x-image-gen-primary-used-percent"] == "34.0"
    assert images["x-image-gen-primary-window-minutes"] == "1440"
    assert images["x-image-gen-secondary-window-minutes"] == "0"
    assert images["x-codex-active-limit"] == "image_gen" and images["x-codex-plan-type"] == "plus"
    assert int(images["x-codex-primary-reset-after-seconds"]) == 3600
    _, sse, _ = stream(fake)
    assert sse["x-codex-active-limit"] == "premium" and sse["x-image-gen-primary-used-percent"] is None
    fake.rate_limits = None
    _, bare, _ = stream(fake)
    assert not [name for name in bare.keys() if name.lower().startswith("x-codex-")]


def test_wham_usage_has_the_captured_shape(fake):
    request = urllib.request.Request(fake.url + "/backend-api/wham/usage",
                                     headers={"Authorization": "Bearer " + fake.auth.tokens["access_token"]})
    with urllib.request.urlopen(request, timeout=5) as response:
        usage = json.loads(response.read())
    assert usage["plan_type"] == "plus"
    assert usage["rate_limit"]["primary_window"]["limit_window_seconds"] == 300 * 60
    assert usage["rate_limit"]["primary_window"]["used_percent"] == 12.5
    (extra,) = usage["additional_rate_limits"]
    assert extra["limit_name"] == "image_gen" and extra["rate_limit"]["primary_window"]["limit_window_seconds"] == 86400
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(fake.url + "/backend-api/wham/usage",
                                                      headers={"Authorization": "Bearer nope"}), timeout=5)
    assert refused.value.code == 401


# the fixtures


def test_env_fixture_isolates_and_points_at_the_fake(env, fake):
    assert os.environ["HOME"] == str(env.home) and os.environ["CODEX_HOME"] == str(env.codex_home)
    assert os.environ["IMAGEGEN_CODEX_BASE_URL"] == fake.url + "/backend-api/codex"
    assert os.environ["IMAGEGEN_AUTH_BASE_URL"] == fake.url
    assert not any(name.startswith("IMAGEGEN_") and name not in ("IMAGEGEN_CODEX_BASE_URL", "IMAGEGEN_AUTH_BASE_URL")
                   for name in os.environ)
    assert "OPENAI_API_KEY" not in os.environ and "HTTPS_PROXY" not in os.environ
    assert os.getcwd() == str(env.work)
    assert stat.S_IMODE(env.codex_home.stat().st_mode) == 0o700
    assert stat.S_IMODE(env.auth_file.stat().st_mode) == 0o600
    assert fake.auth.access_ok(env.read_auth()["tokens"]["access_token"])
    doc = env.write_auth(expired=True)
    assert not fake.auth.access_ok(doc["tokens"]["access_token"])
    assert env.read_auth() == doc and stat.S_IMODE(env.auth_file.stat().st_mode) == 0o600


def test_run_fixture_captures_and_scans(run, env, monkeypatch):
    stub = types.ModuleType("imagegen")

    def main(argv=None):
        if argv[0] == "exit":
            raise SystemExit(int(argv[1]))
        if argv[0] == "leak":
            print("token: " + env.read_auth()["tokens"]["refresh_token"], file=sys.stderr)
            return 3
        print(os.getcwd(), sys.stdout.isatty(), sys.stderr.isatty(), sys.stdin.read())
        print("progress", file=sys.stderr)
        return 0

    stub.main = main
    monkeypatch.setitem(sys.modules, "imagegen", stub)
    result = run("hello", input="from stdin")
    assert (result.code, result.out, result.err) == (0, f"{env.work} False False from stdin\n", "progress\n")
    assert run(["exit", "7"]).code == 7
    with pytest.raises(pytest.fail.Exception, match="printed a secret"):
        run("leak")


def test_concurrent_refreshes_with_one_token_succeed_once(fake):
    fake.auth.refresh_delay = 0.2
    token = {"client_id": CLIENT_ID, "grant_type": "refresh_token", "refresh_token": fake.auth.current_refresh_token}
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(post(fake.url + "/oauth/token", token)[0])) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert sorted(codes) == [200, 401, 401, 401] and fake.auth.refresh_count == 1


def test_run_cli_runs_a_script_in_the_work_dir_with_the_environment(run_cli, env, tmp_path):
    script = tmp_path / "stand_in.py"
    script.write_text("import os, sys\nprint(os.getcwd(), os.environ['CODEX_HOME'], sys.stdin.read(), *sys.argv[1:])\n"
                      "sys.exit(4)\n")
    run_cli.script = script
    result = run_cli("a", "b c", input="piped", env_vars={"EXTRA": "1"})
    assert result.code == 4 and result.out.split() == [str(env.work), str(env.codex_home), "piped", "a", "b", "c"]


# the standalone server's prompt words (README "Try it without an account")


@contextlib.contextmanager
def standalone_server(env, *args):
    """Run `python3 tests/fakeserver.py *args` until the block ends: (exports, comment lines)."""
    script = os.path.join(os.path.dirname(fs.__file__), "fakeserver.py")
    proc = subprocess.Popen([sys.executable, script, *args], stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or not lines[-1].startswith("# Ctrl-C"):
            line = proc.stdout.readline()
            assert line, f"the server ended before it was ready: {lines!r}"
            lines.append(line)
        exports = dict(re.findall(r"^export (\w+)=(.*)$", "".join(lines), re.M))
        tokens = json.loads(open(os.path.join(exports["CODEX_HOME"], "auth.json"), encoding="utf-8").read())["tokens"]
        env.secrets.update(value for name, value in tokens.items() if name != "account_id")
        env.secrets.add(exports["IMAGEGEN_API_KEY"])
        yield exports, [line.rstrip("\n") for line in lines if line.startswith("#")]
    finally:
        proc.terminate()
        proc.wait(5)
        proc.stdout.close()


def test_standalone_by_prompt_words_fail_the_way_the_cli_reports(run_cli, env):
    with standalone_server(env, "--by-prompt", "LIMIT=usage_limit", "--by-prompt", "REFUSE=content_policy") as (exports, _):
        limited = run_cli("a LIMIT cat", env_vars=exports)
        refused = run_cli("REFUSE this", env_vars=exports)
        plain = run_cli("a plain cat", "-o", "cat.png", env_vars=exports)
    assert limited.code == 4 and "usage limit reached" in limited.err, limited
    assert refused.code == 6 and "content policy" in refused.err, refused
    assert plain.code == 0, plain
    assert image_info((env.work / "cat.png").read_bytes())[0] == "png"


def test_standalone_errors_lists_its_words_and_by_prompt_overrides_one(run_cli, env):
    with standalone_server(env, "--errors", "--by-prompt", "TEXT=ok") as (exports, comments):
        text = run_cli("a TEXT cat", "-o", "text.png", env_vars=exports)
        broken = run_cli("BROKEN thing", "--retries", "0", env_vars=exports)
    listed = {line.split()[1]: line.split()[2] for line in comments if re.match(r"^#   [A-Z]", line)}
    assert listed == {"LIMIT": "usage_limit:", "REFUSE": "content_policy:", "TEXT": "ok:", "BROKEN": "status:500:",
                      "SLOW": "stall:30:"}
    assert text.code == 0 and (env.work / "text.png").exists(), text
    assert broken.code == 5 and "HTTP 500" in broken.err, broken


@pytest.mark.parametrize("rule, complaint", [
    ("X=nonsense", "unknown behaviour 'nonsense'; valid: bad_base64, cloudflare, content_policy,"),
    ("X=status:abc", "status takes an integer as :ARG"),
    ("LIMIT", "expected WORD=BEHAVIOUR"),
])
def test_standalone_refuses_a_bad_by_prompt_naming_what_is_valid(rule, complaint):
    script = os.path.join(os.path.dirname(fs.__file__), "fakeserver.py")
    done = subprocess.run([sys.executable, script, "--by-prompt", rule], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1].startswith("fakeserver.py: error: argument --by-prompt: " + complaint)

#!/usr/bin/env python3
"""A local fake of every server imagegen.py talks to.

One ``FakeServer`` on 127.0.0.1 plays all of them at once, faithful to
shared/PROTOCOL.md:

    POST /backend-api/codex/responses            Codex backend, SSE       (bearer: ChatGPT access token)
    POST /backend-api/codex/images/generations   Codex backend, JSON      (bearer: access token)
    POST /backend-api/codex/images/edits         Codex backend, JSON      (bearer: access token)
    POST /oauth/token                            refresh (JSON) and device-code exchange (form)
    POST /api/accounts/deviceauth/usercode       device login, step 1
    POST /api/accounts/deviceauth/token          device login, polling (403 while pending)
    POST /v1/chat/completions                    gateway                  (bearer: server.gateway_token)
    POST /v1/images/generations                  Images API, JSON         (bearer: server.api_key)
    POST /v1/images/edits                        Images API, multipart    (bearer: server.api_key)
    POST /v1/responses                           Responses provider, SSE  (bearer: server.provider_key)
    GET  /backend-api/wham/usage                 live usage, no quota spent (bearer: access token)
    GET  /files/<name>                           bytes registered with server.add_file()

The codex backend behaves as measured on the live service (December 2026; see
shared/reference/protocol-2026-12.md and codex-0.169-capture.md):

  images routes   size, quality, output_format, n and model are ignored (any value): one PNG
                  comes back, its canvas chosen by an "Aspect ratio: [word] W:H" line in the
                  prompt (nearest of 1:1 1254x1254, 3:2 1536x1024, 2:3 1024x1536, 16:9 1672x941,
                  9:16 941x1672, 21:9 1916x821, 6:5 1370x1148; no line: 1254x1254); background
                  transparent gives RGBA. data[] carries generation_id and no revised_prompt;
                  headers x-codex-imagegen-request-id and x-oai-request-id.
  /responses      the tool is rewritten (gpt-image-2-codex, quality and size auto; the canvas
                  follows the aspect line; output_format is honoured); a tool background
                  "transparent" gets 400 image_generation_user_error "Transparent background is
                  not supported for this model."; input_fidelity gets 400
                  invalid_input_fidelity_model; a tool model not in CODEX_TOOL_MODELS gets a
                  response.failed server_is_overloaded. tool_choice {"type": "image_generation"}
                  works while server.image_generation is True; without it: 400 "Tool choice
                  'image_generation' not found in 'tools' parameter." (the provider route
                  /v1/responses still refuses any non-string tool_choice).
  plans           server.image_generation = False: a plan without image generation (the images
                  routes answer 403 FORBIDDEN_BODIES["plan"], the forced tool is "not found").
  quota headers   on both codex routes x-codex-{primary,secondary}-{used-percent,window-minutes,
                  reset-at,reset-after-seconds} (server.rate_limits), x-codex-plan-type,
                  x-codex-credits-*, x-codex-active-limit (server.active_limit by route kind:
                  "image_gen" on images, "premium" on /responses); on the images routes also
                  x-image-gen-* with x-image-gen-limit-name: image_gen (server.image_rate_limits,
                  its secondary window 0 minutes, as live). wham/usage answers the same numbers
                  in the captured shape (rate_limit, additional_rate_limits[image_gen]), or
                  server.usage when set.

On every route, a prompt asking for a flat "chroma-key colour #rrggbb" background gets, as an
opaque PNG, that colour with a subject in the middle: a rectangle of half the canvas in the
answer's colour, its one-pixel edge half key, half subject (anti-aliased), like a model's
answer to Codex's own chroma-key prompt (keyed_png_bytes).

Scripted answers (ok(size=...), ok(fmt=...), ok(n=...), server.answer_size,
server.answer_format) still win over all of this, on every route.

So the environment for the CLI is: IMAGEGEN_CODEX_BASE_URL=<url>/backend-api/codex,
IMAGEGEN_AUTH_BASE_URL=<url>, CODEX_API_BASE_URL=<url>, IMAGEGEN_API_BASE_URL=<url>/v1,
provider base_url=<url>/v1.

Scripting misbehaviour
======================

Each request first passes the route's auth check (a bad bearer gets 401 and consumes
nothing), then the request-shape checks of ``server.strict`` (400 ``{"detail": ...}`` like
the real backend), then takes the next scripted behaviour for its route::

    server.queue("/responses", usage_limit(), rate_limited())   # one behaviour per request
    server.default("/images/generations", status(500))          # whenever the queue is empty
    server.default("/images/generations", None)                 # back to the happy answer

A route key is a suffix of the path; the longest key that matches wins, so "/responses"
covers both SSE routes and "/codex/responses" only the Codex one. With no behaviour, the
happy answer ``ok()`` is given (after ``server.delay`` seconds).

Behaviours (factories below; each returns a ``Behaviour``; ``b.plus(**opts)`` adds options)::

  any route
    ok(**opts)                     the happy answer; options below
    status(code, body=None, headers=None, content_type=None)
                                   any HTTP answer; body dict/list -> JSON, str -> text, bytes as is
    detail(message, code=400)      400 {"detail": message}
    too_old()                      400 {"detail": "... requires a newer version of Codex ..."}
    usage_limit(resets_at=None, resets_in_seconds=None, plan_type="plus", message="limit reached")
                                   429 {"error": {"type": "usage_limit_reached", ...}}; resets_at defaults
                                   to now+3600 unless resets_in_seconds is given
    overloaded(retry_after=0, code=503, error_code="server_is_overloaded")  with Retry-After
    cloudflare(code=403)           an HTML page, content-type text/html
    disconnect()                   close the connection without answering
    echo_secrets(code=500, in_stream=False, in_header=False)
                                   an error whose message holds the request's Authorization value,
                                   the current refresh/id tokens and any refresh_token the request
                                   sent; in_stream=True on the SSE routes: a 200 stream with an
                                   ``error`` event instead; in_header=True: also in x-request-id
    forbidden(kind="plan")         a JSON 403: "plan" (no image generation), "workspace" (no access to
                                   Codex, {"detail": ...}), "misalignment", "bio", "cyber" (policy codes);
                                   bodies in FORBIDDEN_BODIES
    refresh_error(code="refresh_token_expired", status_code=401)
                                   for /oauth/token: {"error": {"code": code, "message": ...}}
  streams and images (SSE routes; most also map onto the JSON routes, see each)
    text_only(text="...")          SSE: an assistant message, response.completed, no image;
                                   images routes: 200 with "data": []; gateway: text content
    truncated(after=3, clean=False)
                                   SSE: only the first `after` events, then an abrupt close (clean=True:
                                   a proper end of the chunked body); JSON: half the body, then close
    stall(seconds=5.0, after=None, then="finish")
                                   SSE: headers and `after` (default 1) events, then silence;
                                   then="finish" sends the rest afterwards, "close" hangs up.
                                   JSON: silence before the status line (after=0, the default
                                   there), or half-way through the body (after>=1). Stopping the
                                   server cuts any stall short.
    trickle(interval=0.05, chunk=1)
                                   the whole answer, `chunk` bytes every `interval` seconds
    bad_base64(value=...)          result / b64_json / data URL that is not valid base64
    not_an_image(data=...)         valid base64 of bytes that are not PNG, JPEG or WebP
    other_format(fmt="jpeg")       an image in another format than asked (= ok(fmt=fmt))
    error_event(code="server_error", message=...)        SSE `error` event; JSON routes: 500
    failed(code, message)          SSE response.failed; JSON routes: 400 (429 for rate/quota codes)
    rate_limited(seconds=0.01)     failed("rate_limit_exceeded", "... Please try again in 0.01s.")
    content_policy(message=...)    failed("image_content_policy_violation", ...)
    insufficient_quota()           failed("insufficient_quota", ...)
    incomplete(reason="max_output_tokens")               SSE response.incomplete

  options of ok() (and of every stream-producing behaviour, via .plus()):
    fmt="png"|"jpeg"|"webp"        answer in this format      size=(w, h) or "WxH"
    image=b"..."                   send exactly these bytes    result="..."  raw base64 text
    revised_prompt="..."           n=3 (images routes)         delay=0.5 (seconds before answering)
    image_in="item"|"completed"|"both"   where the SSE image lives (output_item.done / response.completed)
    partial_images=2               SSE partial_image events (default: the tool's partial_images)
    url=True                       Images API: answer data[].url pointing at GET /files/...
    content="markdown"|"list"|"bare"|"text"             gateway message content shape
    SSE framing: newline="\\n"|"\\r\\n"|"\\r", space=False (no space after the colon),
    split_data=True (JSON over several data: lines), noise=True (comment lines, also inside
    events, plus unknown `keepalive` and `codex.rate_limits` events), bytewise=True (one
    byte per write), final_blank=False (no blank line after the last event),
    event_names="match"|"mismatch"|"none", chunked=False (Connection: close, no length),
    content_type=None (omit Content-Type)
    Delivery options (stall, trickle, truncate_after, bytewise) work on every route,
    including /oauth/token and /files/. Also on every route: gzip=True (Content-Encoding:
    gzip although the client did not ask; streams are flushed event by event), and on the
    JSON routes content_length_delta=N (declare N bytes more than the body, send the body,
    hang up; negative: declare fewer).

Inspecting: server.requests (Recorded: method, path, query, headers, .header(name), body,
.json, .form, .multipart [Part: name, filename, content_type, data], .parts(name),
.field(name), .bearer, .input_images(), .mask()), server.requests_to(suffix),
server.last_request, server.wait_for(suffix, count=1, timeout=5), server.pending(suffix),
server.images_sent, server.secrets, server.errors (handler exceptions and unsupported
behaviours: a test can assert it is empty), server.reset(). Files: server.add_file(name,
data, content_type="image/png") -> URL, server.add_oversize_file(name, size,
declare_length=True) -> URL.

Server knobs: server.delay, server.strict, server.min_version, server.answer_format,
server.answer_size, server.api_answer_url, server.gateway_content, server.rate_limits (None:
no quota headers at all), server.image_rate_limits (None: no x-image-gen-*),
server.active_limit, server.image_generation, server.usage, server.block_python_user_agent (gateway: 403 "error code: 1010" for
Python-urllib), server.api_key / provider_key / gateway_token (the gateway token defaults to
the CLI's documented fallback "devtoken", which is public and so not in server.secrets).
server.by_prompt[text] = behaviour: an image request (SSE, images or gateway route) whose
prompt contains `text` gets that behaviour, every time, before any queue (so parallel
clients can fail by content, not by arrival order). server.max_in_flight: the most requests
the fake was handling at once (from arrival to the end of the answer), since start or reset.

Auth knobs (server.auth): tokens (the current set), issue(expired=False), valid_access_tokens,
revoke_access_tokens(), current_refresh_token, used_refresh_tokens, refresh_count,
refresh_attempts, refresh_delay, refresh_returns, access_ttl, check_expiry, device_pending,
device_pending_status, device_interval, device_user_code_key, device_polls, login_count.

Everything the fake issues that is secret contains SECRET_MARKER ("SECRETx") and is listed in
server.secrets, so a test can scan output for it (find_secrets()).

Run standalone (``python3 tests/fakeserver.py --port 8765``) to try the CLI by hand: it
prints the export lines to paste and serves until Ctrl-C. ``--by-prompt WORD=NAME[:ARG]``
(repeatable) sets server.by_prompt[WORD] from STANDALONE_BEHAVIOURS (ARG: the factory's first
argument); ``--errors`` adds DEFAULT_ERROR_WORDS (LIMIT, REFUSE, TEXT, BROKEN, SLOW).

Standard library only; Python 3.9 to 3.13.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import email.message
import email.parser
import email.utils
import functools
import hashlib
import itertools
import json
import math
import os
import re
import secrets as _random
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import uuid
import zlib
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"
SECRET_MARKER = "SECRETx"
PUBLIC_GATEWAY_TOKEN = "devtoken"  # the CLI's documented fallback: public, not a secret
CODEX_PREFIX = "/backend-api/codex"
MIN_CODEX_VERSION = "0.169.0"
AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"
DEFAULT_MODEL = "gpt-5.5"
USAGE = {
    "input_tokens": 1474,
    "input_tokens_details": {"image_tokens": 1457, "text_tokens": 17},
    "output_tokens": 1372,
    "output_tokens_details": {"image_tokens": 1372, "text_tokens": 0},
    "total_tokens": 2846,
}
# The canvases the live codex backend makes (it ignores `size`): an "Aspect ratio: W:H" line
# in the prompt picks the nearest; with none, a square.
CODEX_CANVASES = {(1, 1): (1254, 1254), (3, 2): (1536, 1024), (2, 3): (1024, 1536),
                  (16, 9): (1672, 941), (9, 16): (941, 1672), (21, 9): (1916, 821),
                  (6, 5): (1370, 1148)}
CODEX_TOOL_MODELS = ("gpt-image-2", "gpt-image-2-codex", "gpt-image-1", "gpt-image-1.5", "gpt-image-1-mini")
PALETTE = [(200, 40, 40), (40, 160, 60), (40, 80, 200), (220, 180, 30), (150, 60, 170), (20, 170, 170)]


# Secrets and tokens ########################################################################

def make_secret(prefix: str = "") -> str:
    """A distinctive made-up secret: prefix + SECRET_MARKER + 32 hex digits."""
    return f"{prefix}{SECRET_MARKER}{_random.token_hex(16)}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: dict, header: dict | None = None) -> str:
    """header.payload.signature, base64url without padding; the signature is made up
    (and carries SECRET_MARKER, so a leaked JWT is found by a marker scan too)."""
    header = header or {"alg": "RS256", "typ": "JWT", "kid": "fake-key"}
    compact = functools.partial(json.dumps, separators=(",", ":"))
    return ".".join((b64url(compact(header).encode()), b64url(compact(claims).encode()), make_secret()))


def jwt_claims(token: str) -> dict | None:
    """The payload of a JWT, or None when it is not one."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None


def make_tokens(account_id: str | None = None, email: str = "user@example.com", plan: str = "plus",
                exp: float | None = None, user_id: str | None = None) -> dict:
    """A fresh token set as Codex keeps it: {id_token, access_token, refresh_token, account_id}.

    The id token carries `email` and the auth claim {chatgpt_account_id, chatgpt_plan_type,
    chatgpt_user_id}; the access token carries `exp` (default: an hour from now). The `sub`
    claims deliberately differ from the account id."""
    now = int(time.time())
    account_id = account_id or str(uuid.uuid4())
    user_id = user_id or "user-" + _random.token_hex(8)
    exp = now + 3600 if exp is None else int(exp)
    auth = {"chatgpt_account_id": account_id, "chatgpt_plan_type": plan,
            "chatgpt_user_id": user_id, "user_id": user_id}
    subject = "auth0|" + _random.token_hex(8)
    id_token = make_jwt({
        "iss": "https://auth.openai.com", "aud": [CLIENT_ID], "sub": subject,
        "email": email, "email_verified": True, "iat": now, "auth_time": now, "exp": now + 3600,
        AUTH_CLAIM: auth,
    })
    access_token = make_jwt({
        "iss": "https://auth.openai.com", "aud": ["https://api.openai.com/v1"], "client_id": CLIENT_ID,
        "sub": subject, "iat": now, "nbf": now, "exp": exp,
        "scp": ["openid", "profile", "email", "offline_access"],
        AUTH_CLAIM: auth, PROFILE_CLAIM: {"email": email, "email_verified": True},
    })
    return {"id_token": id_token, "access_token": access_token,
            "refresh_token": make_secret("rt_"), "account_id": account_id}


def rfc3339(when: float | None = None) -> str:
    """UTC time as Codex writes last_refresh: 2026-04-25T17:09:29.123456Z."""
    moment = datetime.datetime.fromtimestamp(time.time() if when is None else when, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_auth_json(tokens: dict, **extra: Any) -> dict:
    """auth.json in Codex's format; `extra` sets or overrides top-level fields."""
    doc = {
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": None,
        "tokens": {key: tokens.get(key) for key in ("id_token", "access_token", "refresh_token", "account_id")},
        "last_refresh": rfc3339(),
    }
    doc.update(extra)
    return doc


def write_auth_file(path: str | os.PathLike, doc: dict) -> None:
    """Write auth.json atomically with mode 0600, pretty-printed like Codex."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".auth-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(doc, handle, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def find_secrets(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets that occur in text, plus SECRET_MARKER itself if it occurs (a partial leak)."""
    found = sorted({s for s in secrets if s and len(s) >= 8 and s in text})
    if SECRET_MARKER in text and not found:
        found.append(SECRET_MARKER)
    return found


# Images ####################################################################################

def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


@functools.lru_cache(maxsize=64)
def png_bytes(width: int, height: int, rgba: bool = False, color: tuple = (200, 40, 40)) -> bytes:
    """A valid solid-colour 8-bit PNG (RGB, or RGBA with alpha 128)."""
    if not (0 < width < 2 ** 31 and 0 < height < 2 ** 31):
        raise ValueError(f"bad PNG size {width}x{height}")
    pixel = bytes(color[:3]) + (b"\x80" if rgba else b"")
    row = b"\x00" + pixel * width
    compressor = zlib.compressobj(6)
    rows_per_feed = max(1, (1 << 20) // len(row))
    pieces = []
    for start in range(0, height, rows_per_feed):
        pieces.append(compressor.compress(row * min(rows_per_feed, height - start)))
    pieces.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 6 if rgba else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", b"".join(pieces)) + _png_chunk(b"IEND", b""))


@functools.lru_cache(maxsize=16)
def keyed_png_bytes(width: int, height: int, key: tuple, color: tuple = (200, 40, 40)) -> bytes:
    """An opaque RGB PNG: the flat `key` colour with a `color` rectangle of half the canvas in
    the middle, whose one-pixel border is the average of both (an anti-aliased edge)."""
    key_px, subject = bytes(key[:3]), bytes(color[:3])
    edge = bytes((k + c) // 2 for k, c in zip(key[:3], color[:3]))
    left, top = width // 4, height // 4
    inner = width - 2 * left
    plain = b"\x00" + key_px * width
    border_row = b"\x00" + key_px * left + edge * inner + key_px * (width - left - inner)
    body_row = (b"\x00" + key_px * left + edge + subject * (inner - 2) + edge
                + key_px * (width - left - inner))
    rows = [plain if y < top or y >= height - top else
            border_row if y in (top, height - top - 1) else body_row for y in range(height)]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + _png_chunk(b"IEND", b""))


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


@functools.lru_cache(maxsize=64)
def jpeg_bytes(width: int, height: int) -> bytes:
    """A baseline greyscale JPEG (mid grey) whose SOF0 carries the size.

    It even decodes: one-symbol Huffman tables make every 8x8 block the two bits "00"
    (DC difference 0, then end of block)."""
    if not (0 < width < 65536 and 0 < height < 65536):
        raise ValueError(f"bad JPEG size {width}x{height}")
    one_symbol = bytes([1] + [0] * 15) + b"\x00"
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    whole, rest = divmod(2 * blocks, 8)
    scan = bytes(whole) + (bytes([(1 << (8 - rest)) - 1]) if rest else b"")
    return b"".join((
        b"\xff\xd8",
        _jpeg_segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"),
        _jpeg_segment(0xDB, b"\x00" + bytes([1] * 64)),
        _jpeg_segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        _jpeg_segment(0xC4, b"\x00" + one_symbol),
        _jpeg_segment(0xC4, b"\x10" + one_symbol),
        _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
        scan,
        b"\xff\xd9",
    ))


def _riff_chunk(tag: bytes, data: bytes) -> bytes:
    return tag + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


@functools.lru_cache(maxsize=64)
def webp_bytes(width: int, height: int, rgba: bool = False, color: tuple = (200, 40, 40),
               extended: bool = False) -> bytes:
    """A lossless (VP8L) solid-colour WebP; extended=True wraps it in a VP8X canvas header.

    Every prefix code is a one-symbol "simple" code, so the pixels take no bits at all."""
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise ValueError(f"bad WebP size {width}x{height}")
    value, nbits = 0, 0

    def put(field: int, bits: int) -> None:
        nonlocal value, nbits
        value |= (field & ((1 << bits) - 1)) << nbits
        nbits += bits

    put(width - 1, 14)
    put(height - 1, 14)
    put(1 if rgba else 0, 1)
    put(0, 3)  # version
    put(0, 1)  # no transform
    put(0, 1)  # no colour cache
    put(0, 1)  # no meta prefix codes
    red, green, blue = color[:3]
    for symbol in (green, red, blue, 0x80 if rgba else 0xFF, 0):
        put(1, 1)  # simple code
        put(0, 1)  # one symbol
        put(1, 1)  # 8-bit symbol
        put(symbol, 8)
    vp8l = _riff_chunk(b"VP8L", b"\x2f" + value.to_bytes((nbits + 7) // 8, "little"))
    chunks = vp8l
    if extended:
        canvas = bytes((0x10 if rgba else 0, 0, 0, 0)) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks = _riff_chunk(b"VP8X", canvas) + vp8l
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WEBP" + chunks


def image_bytes(fmt: str, width: int, height: int, rgba: bool = False, color: tuple = (200, 40, 40)) -> bytes:
    """An image of the given format ("png", "jpeg"/"jpg", "webp")."""
    fmt = fmt.lower()
    if fmt == "png":
        return png_bytes(width, height, rgba, tuple(color))
    if fmt in ("jpeg", "jpg"):
        return jpeg_bytes(width, height)
    if fmt == "webp":
        return webp_bytes(width, height, rgba, tuple(color))
    raise ValueError(f"unknown image format {fmt!r}")


def image_info(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) read from the header of a PNG, JPEG, WebP or GIF; else None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:3] == b"\xff\xd8\xff":
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
                return "jpeg", width, height
            pos += 2 + length
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        tag, body = data[12:16], data[20:]
        if tag == b"VP8X" and len(body) >= 10:
            return "webp", 1 + int.from_bytes(body[4:7], "little"), 1 + int.from_bytes(body[7:10], "little")
        if tag == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
            bits = int.from_bytes(body[1:5], "little")
            return "webp", 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
        if tag == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
            width, height = struct.unpack("<HH", body[6:10])
            return "webp", width & 0x3FFF, height & 0x3FFF
        return None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        width, height = struct.unpack("<HH", data[6:10])
        return "gif", width, height
    return None


MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_url(url: str) -> tuple[str, bytes] | None:
    """(mime, bytes) of a base64 data URL; None when it is not one or does not decode."""
    match = re.match(r"data:([^;,]*)(?:;[^,]*)?;base64,(.*)\Z", url or "", re.S)
    if not match:
        return None
    try:
        return match.group(1), base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_size(text: Any) -> tuple[int, int] | None:
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*", str(text or ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def codex_canvas(prompt: str) -> tuple[int, int]:
    """The canvas the codex backend makes for a prompt: the nearest to its aspect line."""
    match = re.search(r"(?i)aspect(?: ratio)?\W+(?:[a-z]+\s+)?(\d{1,2})\s*:\s*(\d{1,2})", prompt)
    if not match or not int(match.group(1)) or not int(match.group(2)):
        return CODEX_CANVASES[(1, 1)]
    asked = math.log(int(match.group(1)) / int(match.group(2)))
    ratio = min(CODEX_CANVASES, key=lambda r: abs(math.log(r[0] / r[1]) - asked))
    return CODEX_CANVASES[ratio]


def gpt_image_2_size_error(width: int, height: int) -> str | None:
    """Why the Images API would refuse this size for gpt-image-2, or None."""
    if width % 16 or height % 16:
        return "both sides must be divisible by 16"
    if max(width, height) > 3 * min(width, height):
        return "the aspect ratio must be between 1:3 and 3:1"
    if max(width, height) > 3840 or width * height > 3840 * 2160:
        return "the maximum supported resolution is 3840x2160"
    if width * height < 655360:
        return "the image must have at least 655,360 pixels"
    return None


# Recorded requests #########################################################################

class Part:
    """One part of a multipart/form-data body."""

    def __init__(self, name: str | None, filename: str | None, content_type: str | None, data: bytes):
        self.name, self.filename, self.content_type, self.data = name, filename, content_type, data

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"Part(name={self.name!r}, filename={self.filename!r}, content_type={self.content_type!r}, {len(self.data)} bytes)"


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """Split a multipart/form-data body byte-exactly; ValueError when it is malformed."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not boundary:
        raise ValueError("not multipart/form-data with a boundary")
    boundary = email.utils.collapse_rfc2231_value(boundary)
    segments = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    parts, closed = [], False
    for segment in segments[1:]:
        if segment.startswith(b"--"):
            closed = True
            break
        line_end = segment.find(b"\r\n")
        if line_end < 0 or segment[:line_end].strip(b" \t"):
            raise ValueError("malformed boundary line")
        segment = segment[line_end + 2:]
        if segment.startswith(b"\r\n"):
            head, content = b"", segment[2:]
        else:
            head, sep, content = segment.partition(b"\r\n\r\n")
            if not sep:
                raise ValueError("part without a blank line after its headers")
        headers = email.parser.BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if name is not None:
            name = email.utils.collapse_rfc2231_value(name)
        ctype = headers.get_content_type() if headers.get("Content-Type") else None
        parts.append(Part(name, headers.get_filename(), ctype, content))
    if not closed:
        raise ValueError("no closing boundary")
    return parts


class Recorded:
    """One request as the fake received it."""

    def __init__(self, method: str, path: str, query: dict, headers: Any, body: bytes, target: str):
        self.method = method
        self.path = path            # without the query
        self.query = query          # name -> last value
        self.headers = headers      # http.client.HTTPMessage: case-insensitive .get()
        self.body = body
        self.target = target        # the raw request target, with the query
        self.time = time.time()

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def bearer(self) -> str | None:
        value = self.header("Authorization") or ""
        return value[7:].strip() if value[:7].lower() == "bearer " else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @functools.cached_property
    def json(self) -> Any:
        """The body parsed as JSON, or None."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def form(self) -> dict | None:
        """The x-www-form-urlencoded body as name -> last value, or None."""
        if self.content_type != "application/x-www-form-urlencoded":
            return None
        return dict(parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True))

    @functools.cached_property
    def multipart(self) -> list[Part] | None:
        """The multipart/form-data parts, or None when the body is not (well-formed) multipart."""
        if self.content_type != "multipart/form-data":
            return None
        try:
            return parse_multipart(self.body, self.header("Content-Type") or "")
        except ValueError:
            return None

    def parts(self, name: str) -> list[Part]:
        return [p for p in self.multipart or [] if p.name == name]

    def field(self, name: str) -> str | None:
        """A multipart text field (its last value)."""
        found = self.parts(name)
        return found[-1].text if found else None

    def input_images(self) -> list[bytes]:
        """The reference images the request carried, decoded, in order."""
        if self.multipart is not None:
            return [p.data for p in self.multipart if p.name in ("image", "image[]")]
        body = self.json if isinstance(self.json, dict) else {}
        urls = [entry.get("image_url") for entry in body.get("images") or [] if isinstance(entry, dict)]
        for item in body.get("input") or []:
            if isinstance(item, dict) and isinstance(item.get("content"), list):
                urls += [c.get("image_url") for c in item["content"]
                         if isinstance(c, dict) and c.get("type") == "input_image"]
        return [decoded[1] for decoded in map(decode_data_url, urls) if decoded]

    def mask(self) -> bytes | None:
        """The mask the request carried, decoded, or None."""
        if self.multipart is not None:
            found = self.parts("mask")
            return found[-1].data if found else None
        body = self.json if isinstance(self.json, dict) else {}
        candidates = [body.get("mask")] + [t.get("input_image_mask") for t in body.get("tools") or [] if isinstance(t, dict)]
        for candidate in candidates:
            if isinstance(candidate, dict):
                decoded = decode_data_url(candidate.get("image_url"))
                if decoded:
                    return decoded[1]
        return None

    def __repr__(self) -> str:
        return f"<Recorded {self.method} {self.path} {len(self.body)} bytes>"


# Behaviours ################################################################################

class Behaviour:
    """One scripted answer: a kind and its options (see the module docstring)."""

    __slots__ = ("kind", "opts")

    def __init__(self, kind: str, **opts: Any):
        self.kind = kind
        self.opts = opts

    def plus(self, **opts: Any) -> Behaviour:
        """The same behaviour with more options (e.g. framing for a failed stream)."""
        return Behaviour(self.kind, **{**self.opts, **opts})

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.opts.items() if k != "body")
        return f"{self.kind}({options})"


def ok(**opts: Any) -> Behaviour:
    return Behaviour("ok", **opts)


def status(code: int, body: Any = None, headers: dict | None = None, content_type: str | None = None) -> Behaviour:
    return Behaviour("status", code=code, body=body, headers=dict(headers or {}), content_type=content_type)


def detail(message: str, code: int = 400) -> Behaviour:
    return status(code, {"detail": message})


def too_old() -> Behaviour:
    return detail("The 'gpt-5.5' model requires a newer version of Codex. "
                  "Please upgrade to the latest app or CLI and try again.")


def usage_limit(resets_at: int | None = None, resets_in_seconds: int | None = None,
                plan_type: str = "plus", message: str = "limit reached") -> Behaviour:
    error: dict = {"type": "usage_limit_reached", "message": message, "plan_type": plan_type}
    if resets_in_seconds is not None:
        error["resets_in_seconds"] = resets_in_seconds
    if resets_at is not None or resets_in_seconds is None:
        error["resets_at"] = int(time.time()) + 3600 if resets_at is None else resets_at
    return status(429, {"error": error})


def overloaded(retry_after: Any = 0, code: int = 503, error_code: str = "server_is_overloaded") -> Behaviour:
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return status(code, {"error": {"code": error_code, "message": "The server is overloaded. Please try again later."}},
                  headers=headers)


CLOUDFLARE_HTML = (
    "<!DOCTYPE html>\n<html lang=\"en-US\"><head><title>Just a moment...</title></head>\n"
    "<body><h1>Attention Required! | Cloudflare</h1>\n<p>Sorry, you have been blocked.</p>\n"
    + "<div class=\"cf-wrapper\">" + "&nbsp;" * 400 + "</div>\n"
    "<p>Cloudflare Ray ID: 8f00000000000000</p></body></html>\n"
)


def cloudflare(code: int = 403) -> Behaviour:
    return status(code, CLOUDFLARE_HTML, headers={"cf-ray": "8f00000000000000-SJC"}, content_type="text/html; charset=UTF-8")


def disconnect() -> Behaviour:
    return Behaviour("disconnect")


def echo_secrets(code: int = 500, in_stream: bool = False, in_header: bool = False) -> Behaviour:
    return Behaviour("echo", code=code, in_stream=in_stream, in_header=in_header)


FORBIDDEN_BODIES = {
    # what the live service and Codex 0.169's capture show for a JSON 403 (never cured by a refresh)
    "plan": {"error": {"message": "Your plan does not include image generation.", "type": "invalid_request_error",
                       "code": "forbidden"}},
    "workspace": {"detail": "Your workspace does not have access to Codex."},
    "misalignment": {"error": {"message": "This request was flagged as a misalignment policy violation.",
                               "type": "invalid_request_error", "code": "misalignment_policy_violation"}},
    "bio": {"error": {"message": "This request may violate our usage policies (bio).", "type": "invalid_request_error",
                      "code": "bio_policy"}},
    "cyber": {"error": {"message": "This request may violate our usage policies (cyber).",
                        "type": "invalid_request_error", "code": "cyber_policy"}},
}


def forbidden(kind: str = "plan") -> Behaviour:
    """A JSON 403 of one kind: plan, workspace (no access), misalignment, bio, cyber (policy)."""
    return status(403, FORBIDDEN_BODIES[kind])


def refresh_error(code: str = "refresh_token_expired", status_code: int = 401) -> Behaviour:
    messages = {
        "refresh_token_expired": "Your refresh token has expired. Please sign in again.",
        "refresh_token_reused": "Your refresh token has already been used to generate a new access token. Please try signing in again.",
        "refresh_token_invalidated": "Your refresh token has been invalidated. Please try signing in again.",
    }
    return status(status_code, {"error": {"code": code, "message": messages.get(code, "Could not refresh the token.")}})


def text_only(text: str = "I can describe that image, but I won't draw it right now.") -> Behaviour:
    return Behaviour("text_only", text=text)


def truncated(after: int = 3, clean: bool = False) -> Behaviour:
    return ok(truncate_after=after, clean=clean)


def stall(seconds: float = 5.0, after: int | None = None, then: str = "finish") -> Behaviour:
    return ok(stall=seconds, stall_after=after, then=then)


def trickle(interval: float = 0.05, chunk: int = 1) -> Behaviour:
    return ok(trickle=interval, trickle_chunk=chunk)


def bad_base64(value: str = "iVBORw0KGgo@@@@not*base64!!") -> Behaviour:
    return ok(result=value)


def not_an_image(data: bytes = b"This is plain text, not an image.\n" * 4) -> Behaviour:
    return ok(image=data)


def other_format(fmt: str = "jpeg") -> Behaviour:
    return ok(fmt=fmt)


def error_event(code: str = "server_error", message: str = "An error occurred while processing your request.") -> Behaviour:
    return Behaviour("error_event", code=code, message=message)


def failed(code: str, message: str = "The request failed.") -> Behaviour:
    return Behaviour("failed", code=code, message=message)


def rate_limited(seconds: float = 0.01) -> Behaviour:
    return failed("rate_limit_exceeded",
                  f"Rate limit reached for gpt-image-2 on images per min. Please try again in {seconds}s. "
                  "Visit https://platform.openai.com/account/rate-limits to learn more.")


def content_policy(message: str = "Your request was rejected as a result of our safety system.") -> Behaviour:
    return failed("image_content_policy_violation", message)


def insufficient_quota() -> Behaviour:
    return failed("insufficient_quota", "You exceeded your current quota, please check your plan and billing details.")


def incomplete(reason: str = "max_output_tokens") -> Behaviour:
    return Behaviour("incomplete", reason=reason)


# Auth state ################################################################################

class AuthState:
    """The issuer's memory: which tokens are valid, which refresh token is current."""

    def __init__(self, server: FakeServer, email: str = "user@example.com", plan: str = "plus"):
        self._server = server
        self._lock = threading.Lock()
        self.email = email
        self.plan = plan
        self.account_id = str(uuid.uuid4())
        self.user_id = "user-" + _random.token_hex(8)
        self.access_ttl = 3600
        self.check_expiry = True
        self.valid_access_tokens: set[str] = set()
        self.current_refresh_token: str | None = None
        self.used_refresh_tokens: set[str] = set()
        self.refresh_count = 0         # successful refreshes
        self.refresh_attempts = 0      # every refresh request that reached the token logic
        self.refresh_delay = 0.0
        self.refresh_returns = ("id_token", "access_token", "refresh_token")
        self.device_pending = 1
        self.device_pending_status = 403
        self.device_interval: Any = "0"
        self.device_user_code_key = "user_code"
        self.device_polls = 0
        self.device: dict | None = None
        self.login_count = 0
        self.tokens: dict = {}
        self.issue()

    def _new_tokens(self, exp: float | None) -> dict:
        tokens = make_tokens(self.account_id, self.email, self.plan, exp, self.user_id)
        self._server.register_secret(tokens["id_token"], tokens["access_token"], tokens["refresh_token"])
        return tokens

    def issue(self, expired: bool = False, exp: float | None = None) -> dict:
        """A new current token set (as after a login); the previous refresh token stops working.
        expired=True gives an access token whose exp passed an hour ago."""
        if exp is None:
            exp = time.time() + (-3600 if expired else self.access_ttl)
        tokens = self._new_tokens(exp)
        with self._lock:
            self.valid_access_tokens.add(tokens["access_token"])
            self.current_refresh_token = tokens["refresh_token"]
            self.tokens = dict(tokens)
        return dict(tokens)

    def revoke_access_tokens(self) -> None:
        """Every access token issued so far now gets 401."""
        with self._lock:
            self.valid_access_tokens.clear()

    def access_ok(self, token: str | None) -> bool:
        with self._lock:
            if not token or token not in self.valid_access_tokens:
                return False
        if self.check_expiry:
            exp = (jwt_claims(token) or {}).get("exp")
            if isinstance(exp, (int, float)) and exp <= time.time():
                return False
        return True

    def refresh(self, fields: dict) -> tuple[int, dict]:
        """The token endpoint's answer to a refresh_token grant."""
        if fields.get("client_id") != CLIENT_ID:
            return 401, {"error": "invalid_client", "error_description": "Unknown client_id."}
        token = fields.get("refresh_token")
        with self._lock:
            self.refresh_attempts += 1
            if token and token in self.used_refresh_tokens:
                return 401, {"error": {"code": "refresh_token_reused", "message":
                             "Your refresh token has already been used to generate a new access token. Please try signing in again."}}
            if not token or token != self.current_refresh_token:
                return 401, {"error": {"code": "refresh_token_invalidated", "message":
                             "Your refresh token has been invalidated. Please try signing in again."}}
            fresh = self._new_tokens(time.time() + self.access_ttl)
            answer: dict = {}
            for key in self.refresh_returns:
                answer[key] = fresh[key]
                self.tokens[key] = fresh[key]
            if "access_token" in answer:
                self.valid_access_tokens.add(answer["access_token"])
            if "refresh_token" in answer:
                self.used_refresh_tokens.add(token)
                self.current_refresh_token = answer["refresh_token"]
            self.refresh_count += 1
        answer["expires_in"] = self.access_ttl
        return 200, answer

    def start_device_login(self, fields: dict) -> tuple[int, dict]:
        if fields.get("client_id") != CLIENT_ID:
            return 400, {"error": {"message": "Unknown client_id."}}
        verifier = make_secret("cv_")
        with self._lock:
            self.device = {
                "device_auth_id": "deviceauth_" + _random.token_hex(12),
                "user_code": f"{_random.token_hex(2).upper()}-{_random.token_hex(2).upper()}",
                "authorization_code": make_secret("ac_"),
                "code_verifier": verifier,
                "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
            }
            self.device_polls = 0
            device = dict(self.device)
        self._server.register_secret(device["authorization_code"], device["code_verifier"])
        return 200, {"device_auth_id": device["device_auth_id"], self.device_user_code_key: device["user_code"],
                     "interval": self.device_interval}

    def poll_device_login(self, fields: dict) -> tuple[int, dict]:
        with self._lock:
            device = self.device
            if not device or fields.get("device_auth_id") != device["device_auth_id"] \
                    or fields.get("user_code") != device["user_code"]:
                return 400, {"error": {"message": "Unknown device_auth_id or user_code."}}
            self.device_polls += 1
            if self.device_polls <= self.device_pending:
                return self.device_pending_status, {"error": {"message": "Device authorization is pending.",
                                                              "code": "deviceauth_authorization_pending"}}
            return 200, {key: device[key] for key in ("authorization_code", "code_challenge", "code_verifier")}

    def exchange_code(self, fields: dict) -> tuple[int, dict]:
        with self._lock:
            device = self.device
        problems = []
        if fields.get("client_id") != CLIENT_ID:
            problems.append("client_id")
        if not device or fields.get("code") != device["authorization_code"]:
            problems.append("code")
        if not device or fields.get("code_verifier") != device["code_verifier"]:
            problems.append("code_verifier")
        if urlsplit(fields.get("redirect_uri") or "").path != "/deviceauth/callback":
            problems.append("redirect_uri")
        if problems:
            return 400, {"error": "invalid_grant", "error_description": "Bad " + ", ".join(problems) + "."}
        tokens = self.issue()
        with self._lock:
            self.login_count += 1
            self.device = None
        return 200, {"id_token": tokens["id_token"], "access_token": tokens["access_token"],
                     "refresh_token": tokens["refresh_token"]}


# The server ################################################################################

class _Route:
    def __init__(self, path: str, kind: str, auth: str | None = None, method: str = "POST",
                 edit: bool = False, prefix: bool = False):
        self.path, self.kind, self.auth, self.method, self.edit, self.prefix = path, kind, auth, method, edit, prefix

    def matches(self, path: str) -> bool:
        return path.startswith(self.path) if self.prefix else path == self.path


ROUTES = [
    _Route(CODEX_PREFIX + "/responses", "sse", "codex"),
    _Route(CODEX_PREFIX + "/images/generations", "images", "codex"),
    _Route(CODEX_PREFIX + "/images/edits", "images", "codex", edit=True),
    _Route("/v1/responses", "sse", "provider"),
    _Route("/v1/images/generations", "images", "api"),
    _Route("/v1/images/edits", "images", "api", edit=True),
    _Route("/v1/chat/completions", "gateway", "gateway"),
    _Route("/oauth/token", "token"),
    _Route("/api/accounts/deviceauth/usercode", "usercode"),
    _Route("/api/accounts/deviceauth/token", "devicetoken"),
    _Route("/files/", "files", method="GET", prefix=True),
    _Route("/backend-api/wham/usage", "usage", "codex", method="GET"),
]


class _Abort(Exception):
    """Hang up on the client now."""


class _Frame:
    """A piece of an answer, and the images that count as sent once it is written."""

    def __init__(self, data: bytes, images: list | None = None):
        self.data, self.images = data, images or []


def _version_tuple(text: str | None) -> tuple:
    return tuple(int(n) for n in re.findall(r"\d+", text or "")[:3]) or (0,)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.fake.errors.append(traceback.format_exc())


class FakeServer:
    """All the fake backends on one 127.0.0.1 port; see the module docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, delay: float = 0.0):
        self.host, self.port = host, port
        self.delay = delay
        self.strict = True
        self.min_version: str | None = MIN_CODEX_VERSION
        self.answer_format: str | None = None
        self.answer_size: tuple[int, int] | None = None
        self.api_answer_url = False
        self.gateway_content = "markdown"
        self.block_python_user_agent = False
        self.rate_limits: dict | None = {
            "primary": {"used_percent": 12.5, "window_minutes": 300, "reset_after_seconds": 3600},
            "secondary": {"used_percent": 3.0, "window_minutes": 10080, "reset_after_seconds": 259200},
        }
        # the images route's own limit (x-image-gen-*, limit name image_gen), and its 0-minute window
        self.image_rate_limits: dict | None = {
            "primary": {"used_percent": 34.0, "window_minutes": 1440, "reset_after_seconds": 7200},
            "secondary": {"used_percent": 0.0, "window_minutes": 0, "reset_after_seconds": 0},
        }
        self.active_limit: dict = {"images": "image_gen", "sse": "premium"}  # x-codex-active-limit by route kind
        self.image_generation = True  # False: a plan without image generation (403 / tool not found)
        self.usage: Any = None  # GET wham/usage answer; None: built from the knobs above
        self.by_prompt: dict[str, Behaviour] = {}
        self.max_in_flight = 0
        self._in_flight = 0
        self.hung_up: list[str] = []  # paths whose client closed the connection during a delay
        self.errors: list[str] = []
        self._lock = threading.RLock()
        self._arrived = threading.Condition(self._lock)
        self._requests: list[Recorded] = []
        self._images_sent: list[bytes] = []
        self._queues: dict[str, deque] = {}
        self._defaults: dict[str, Behaviour] = {}
        self._files: dict[str, dict] = {}
        self._secrets: set[str] = set()
        self._connections: set[socket.socket] = set()
        self._colors = itertools.count()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.api_key = make_secret("sk-")
        self.provider_key = make_secret("sk-proj-")
        self.gateway_token = PUBLIC_GATEWAY_TOKEN
        self.auth = AuthState(self)

    # life cycle

    def start(self) -> FakeServer:
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _HTTPServer((self.host, self.port), _Handler)
            self._httpd.fake = self
            self.port = self._httpd.server_address[1]
            # stop() waits for serve_forever to look at its shutdown flag, once per poll_interval:
            # a short one keeps each test's teardown from waiting (an idle poll costs nothing).
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.005},
                                            name=f"fakeserver:{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stalled and trickling answers are cut off at once."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def codex_base_url(self) -> str:
        return self.url + CODEX_PREFIX

    @property
    def api_base_url(self) -> str:
        return self.url + "/v1"

    # scripting

    def queue(self, path_suffix: str, *behaviours: Behaviour) -> None:
        """The next requests whose path ends with path_suffix get these behaviours, in order."""
        for behaviour in behaviours:
            if not isinstance(behaviour, Behaviour):
                raise TypeError(f"not a Behaviour: {behaviour!r}")
        with self._lock:
            self._queues.setdefault(path_suffix, deque()).extend(behaviours)

    def default(self, path_suffix: str, behaviour: Behaviour | None) -> None:
        """What requests to path_suffix get once its queue is empty (None: the happy answer)."""
        with self._lock:
            if behaviour is None:
                self._defaults.pop(path_suffix, None)
            else:
                self._defaults[path_suffix] = behaviour

    def pending(self, path_suffix: str) -> int:
        """How many queued behaviours for path_suffix have not been used yet."""
        with self._lock:
            return len(self._queues.get(path_suffix, ()))

    def _next_behaviour(self, path: str) -> Behaviour:
        with self._lock:
            keys = [k for k, q in self._queues.items() if q and path.endswith(k)]
            if keys:
                return self._queues[max(keys, key=len)].popleft()
            keys = [k for k in self._defaults if path.endswith(k)]
            if keys:
                return self._defaults[max(keys, key=len)]
        return ok()

    def add_file(self, name: str, data: bytes, content_type: str = "image/png", chunked: bool = False) -> str:
        """Serve data at GET /files/<name>; returns its URL."""
        with self._lock:
            self._files[name] = {"data": data, "content_type": content_type, "chunked": chunked}
        return f"{self.url}/files/{name}"

    def add_oversize_file(self, name: str, size: int, content_type: str = "image/png",
                          declare_length: bool = True) -> str:
        """Serve `size` bytes (a PNG signature, then zeros) without holding them in memory;
        declare_length=False sends them chunked, with no Content-Length."""
        with self._lock:
            self._files[name] = {"size": size, "content_type": content_type, "chunked": not declare_length}
        return f"{self.url}/files/{name}"

    # what happened

    def register_secret(self, *values: str | None) -> None:
        with self._lock:
            self._secrets.update(v for v in values if v)

    @property
    def secrets(self) -> set[str]:
        """Every secret the fake issued or is configured with."""
        with self._lock:
            found = set(self._secrets)
        found.update(k for k in (self.api_key, self.provider_key, self.gateway_token)
                     if k and k != PUBLIC_GATEWAY_TOKEN)
        return found

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_suffix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    @property
    def last_request(self) -> Recorded | None:
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def images_sent(self) -> list[bytes]:
        """The decoded image payloads delivered to clients, in order (recorded just before
        the last byte of the answer that carries them is written)."""
        with self._lock:
            return list(self._images_sent)

    def wait_for(self, path_suffix: str, count: int = 1, timeout: float = 5.0) -> list[Recorded]:
        """Block until `count` requests to path_suffix have arrived (or timeout); returns them."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [r for r in self._requests if r.path.endswith(path_suffix)]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._arrived.wait(remaining)

    def reset(self) -> None:
        """Forget recorded requests, sent images, queues and defaults (auth state stays)."""
        with self._lock:
            self._requests.clear()
            self._images_sent.clear()
            self._queues.clear()
            self._defaults.clear()
            self.errors.clear()
            self.by_prompt.clear()
            self.max_in_flight = 0

    # used by the handler

    def _busy(self, change: int) -> None:
        with self._lock:
            self._in_flight += change
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _record(self, request: Recorded) -> None:
        with self._arrived:
            self._requests.append(request)
            self._arrived.notify_all()

    def _sent(self, images: list) -> None:
        if images:
            with self._lock:
                self._images_sent.extend(images)

    def _track(self, connection: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _wait(self, seconds: float | None) -> bool:
        """Sleep; True when the server is stopping meanwhile."""
        if seconds and seconds > 0:
            return self._stopping.wait(seconds)
        return self._stopping.is_set()

    def _next_color(self) -> tuple:
        return PALETTE[next(self._colors) % len(PALETTE)]

    def _rate_limit_headers(self, kind: str = "sse") -> dict:
        """The quota headers of a codex answer: x-codex-* always (when rate_limits is set); on
        the images routes also x-image-gen-* with its limit name; the active limit and plan."""
        headers: dict = {}
        if not self.rate_limits:
            return headers
        now = int(time.time())
        families = [("codex", self.rate_limits)]
        if kind == "images" and self.image_rate_limits:
            families.append(("image-gen", self.image_rate_limits))
            headers["x-image-gen-limit-name"] = "image_gen"
        for family, windows in families:
            for which, window in (windows or {}).items():
                headers[f"x-{family}-{which}-used-percent"] = str(window["used_percent"])
                headers[f"x-{family}-{which}-window-minutes"] = str(window["window_minutes"])
                headers[f"x-{family}-{which}-reset-at"] = str(now + int(window["reset_after_seconds"]))
                headers[f"x-{family}-{which}-reset-after-seconds"] = str(int(window["reset_after_seconds"]))
        headers["x-codex-plan-type"] = self.auth.plan
        if self.active_limit.get(kind):
            headers["x-codex-active-limit"] = self.active_limit[kind]
        headers.update({"x-codex-credits-has-credits": "False", "x-codex-credits-unlimited": "False",
                        "x-codex-credits-balance": ""})
        return headers

    def usage_answer(self) -> dict:
        """GET wham/usage, as Codex 0.169's capture shows it: the Codex limit and image_gen."""
        if self.usage is not None:
            return self.usage
        now = int(time.time())

        def windows(spec: dict | None) -> dict:
            found: dict = {}
            for which, window in (spec or {}).items():
                found[f"{which}_window"] = {
                    "used_percent": window["used_percent"], "limit_window_seconds": int(window["window_minutes"]) * 60,
                    "reset_after_seconds": int(window["reset_after_seconds"]),
                    "reset_at": now + int(window["reset_after_seconds"])}
            return found

        answer: dict = {"plan_type": self.auth.plan, "rate_limit": windows(self.rate_limits),
                        "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
                        "additional_rate_limits": []}
        if self.image_rate_limits:
            answer["additional_rate_limits"].append({"limit_name": "image_gen", "metered_feature": "image_gen",
                                                     "rate_limit": windows(self.image_rate_limits)})
        return answer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeserver/1.0"
    sys_version = ""
    server: _HTTPServer

    # plumbing

    def setup(self) -> None:
        super().setup()
        self.fake = self.server.fake
        self.fake._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.fake._track(self.connection, False)

    def handle(self) -> None:
        try:
            super().handle()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            pieces = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(pieces)
                pieces.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _start(self, code: int, headers: dict) -> None:
        self.send_response(code)
        for name, value in headers.items():
            if value is not None:
                self.send_header(name, str(value))
        self.end_headers()

    def _write(self, data: bytes, chunked: bool) -> None:
        if chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)
        self.wfile.flush()

    def _emit(self, data: bytes, chunked: bool, opts: dict, images: list | None = None) -> None:
        """Write data whole, byte by byte (bytewise) or slowly (trickle). The images count as
        sent just before the last piece goes out, so a client never sees them first."""
        interval = opts.get("trickle")
        if interval:
            step = max(1, int(opts.get("trickle_chunk") or 1))
        elif opts.get("bytewise"):
            step = 1
        else:
            step = len(data) or 1
        for start in range(0, len(data), step):
            if start + step >= len(data):
                self.fake._sent(images or [])
            self._write(data[start:start + step], chunked)
            if interval and self.fake._wait(interval):
                raise _Abort()

    def _pause(self, opts: dict) -> None:
        if self.fake._wait(opts.get("stall")) or opts.get("then") == "close":
            raise _Abort()

    def _deliver(self, code: int, headers: dict, frames: list, opts: dict, stream: bool = False) -> None:
        """Send an answer made of frames, applying the delivery options (stall, trickle,
        truncation, byte-by-byte, chunked or not)."""
        stall_after = opts.get("stall_after")
        truncate_after = opts.get("truncate_after")
        if opts.get("gzip"):
            headers = {**headers, "Content-Encoding": "gzip"}
            frames = _gzip_frames(frames)
        if not stream:
            body = b"".join(f.data for f in frames)
            stall_after = 0 if stall_after is None else stall_after
            if opts.get("stall") and stall_after == 0:
                self._pause(opts)
            declared = len(body) + int(opts.get("content_length_delta") or 0)
            self._start(code, {**headers, "Content-Length": max(0, declared)})
            if declared > len(body):  # promise more than there is, send what there is, hang up
                self._emit(body, False, opts, [image for f in frames for image in f.images])
                raise _Abort()
            if truncate_after is not None:
                self._write(body[:len(body) // 2], False)
                raise _Abort()
            if opts.get("stall") and stall_after > 0:
                self._emit(body[:len(body) // 2], False, opts)
                self._pause(opts)
                body = body[len(body) // 2:]
            self._emit(body, False, opts, [image for f in frames for image in f.images])
            return
        chunked = opts.get("chunked", True)
        headers = dict(headers)
        if chunked:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Connection"] = "close"
            self.close_connection = True
        self._start(code, headers)
        stall_after = 1 if stall_after is None else stall_after
        for index, frame in enumerate(frames):
            if truncate_after is not None and index >= truncate_after:
                if opts.get("clean") and chunked:
                    break
                raise _Abort()
            if opts.get("stall") and index == stall_after:
                self._pause(opts)
            self._emit(frame.data, chunked, opts, frame.images)
        else:
            if opts.get("stall") and stall_after >= len(frames):
                self._pause(opts)
        if chunked:
            self._write(b"", True)

    def _send(self, code: int, body: Any, headers: dict | None = None, content_type: str | None = None,
              opts: dict | None = None, images: list | None = None) -> None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            content_type = content_type or "application/json"
        elif isinstance(body, str):
            data = body.encode("utf-8")
            content_type = content_type or "text/plain; charset=utf-8"
        else:
            data = body or b""
            content_type = content_type or "application/octet-stream"
        merged = {"Content-Type": content_type, **self._diagnostic_headers(), **(headers or {})}
        self._deliver(code, merged, [_Frame(data, images)], opts or {})

    def _diagnostic_headers(self) -> dict:
        request_id = "req_" + _random.token_hex(12)
        headers = {"x-request-id": request_id}
        if self.route is not None and self.route.auth == "codex":
            headers["x-oai-request-id"] = request_id
            headers["cf-ray"] = _random.token_hex(8) + "-SJC"
            if self.route.kind in ("sse", "images"):
                headers.update(self.fake._rate_limit_headers(self.route.kind))
            if self.route.kind == "images":
                headers["x-codex-imagegen-request-id"] = "imgreq_" + _random.token_hex(8)
        return headers

    # dispatch

    def _serve(self) -> None:
        fake = self.fake
        self.route = None
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        target = urlsplit(self.path)
        self.rec = Recorded(self.command, target.path, dict(parse_qsl(target.query, keep_blank_values=True)),
                            self.headers, body, self.path)
        fake._busy(1)
        fake._record(self.rec)
        try:
            self.route = next((r for r in ROUTES if r.matches(self.rec.path)), None)
            if self.route is None:
                self._send(404, {"detail": "Not Found"})
            elif self.command != self.route.method:
                self._send(405, {"detail": "Method Not Allowed"})
            elif self._refused():
                pass
            else:
                self._answer(self._by_prompt() or fake._next_behaviour(self.rec.path))
        except _Abort:
            self.close_connection = True
        except OSError:
            self.close_connection = True
        except Exception:
            fake.errors.append(traceback.format_exc())
            self.close_connection = True
        finally:
            fake._busy(-1)

    def _by_prompt(self) -> Behaviour | None:
        """server.by_prompt's behaviour for this request's prompt, if any."""
        if not self.fake.by_prompt or self.route.kind not in ("sse", "images", "gateway"):
            return None
        prompt = str((self._image_fields() or {}).get("prompt") or "")
        with self.fake._lock:
            rules = list(self.fake.by_prompt.items())
        return next((behaviour for text, behaviour in rules if text in prompt), None)

    def _refused(self) -> bool:
        """Answer (and return True) when the route's gatekeeping rejects the request."""
        route, rec, fake = self.route, self.rec, self.fake
        if route.kind == "gateway" and fake.block_python_user_agent and \
                (rec.header("User-Agent") or "Python-urllib").startswith("Python-urllib"):
            self._send(403, "error code: 1010", content_type="text/plain; charset=UTF-8")
            return True
        bearer = rec.bearer
        if route.auth == "codex" and not fake.auth.access_ok(bearer):
            self._send(401, {"error": {"message": "Provided authentication token is expired. Please try signing in again.",
                                       "type": None, "code": "token_expired", "param": None}})
            return True
        if route.auth in ("api", "provider") and (not bearer or bearer != (fake.api_key if route.auth == "api" else fake.provider_key)):
            self._send(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                                       "code": "invalid_api_key", "param": None}})
            return True
        if route.auth == "gateway" and bearer != fake.gateway_token:
            self._send(401, {"detail": "Invalid or missing bearer token."})
            return True
        problem = self._invalid() if fake.strict else None
        if problem is not None:
            self._send(400, problem)
            return True
        if route.kind == "images" and route.auth == "codex" and not fake.image_generation:
            self._send(403, FORBIDDEN_BODIES["plan"])
            return True
        return False

    def _invalid(self) -> dict | None:
        """What the real server would say about a malformed request, or None."""
        route, rec = self.route, self.rec
        if route.auth == "codex" and route.kind != "usage" and self.fake.min_version and \
                _version_tuple(rec.header("version")) < _version_tuple(self.fake.min_version):
            return too_old().opts["body"]
        if route.kind == "sse":
            body = rec.json
            if not isinstance(body, dict):
                return {"detail": "Request body must be a JSON object"}
            if route.auth == "codex":
                if not body.get("instructions"):
                    return {"detail": "Instructions are required"}
                if body.get("store") is not False:
                    return {"detail": "Store must be set to false"}
            if body.get("stream") is not True:
                return {"detail": "Stream must be set to true"}
            if not isinstance(body.get("input"), list):
                return {"detail": "Input must be a list"}
            choice = body.get("tool_choice", "auto")
            # The codex backend takes a forced image_generation tool for plans that include it
            # (it strips the tool for the others); other providers here take only a string.
            if not isinstance(choice, str) and (route.auth != "codex" or not self.fake.image_generation):
                return {"error": {"message": "Tool choice 'image_generation' not found in 'tools' parameter.",
                                  "type": "invalid_request_error", "param": "tool_choice", "code": None}}
            if route.auth == "codex":
                tool = next((t for t in body.get("tools") or [] if isinstance(t, dict)
                             and t.get("type") == "image_generation"), {})
                if tool.get("background") == "transparent":
                    return {"error": {"message": "Transparent background is not supported for this model.",
                                      "type": "image_generation_user_error", "param": "tools",
                                      "code": "image_generation_user_error"}}
                if "input_fidelity" in tool:
                    return {"error": {"message": "The model 'gpt-image-2-codex' does not support the "
                                                 "'input_fidelity' parameter.", "type": "invalid_request_error",
                                      "param": "tools", "code": "invalid_input_fidelity_model"}}
            return self._invalid_images(rec)
        if route.kind == "images" and route.auth == "codex" and not self.fake.image_generation:
            return None  # answered by _refused: a 403, as for a plan without image generation
        if route.kind == "images":
            fields = self._image_fields()
            if fields is None:
                return {"error": {"message": "Could not parse the request body.", "type": "invalid_request_error",
                                  "param": None, "code": None}}
            if not fields.get("prompt"):
                return {"error": {"message": "Missing required parameter: 'prompt'.", "type": "invalid_request_error",
                                  "param": "prompt", "code": "missing_required_parameter"}}
            if route.edit and not rec.input_images():
                return {"error": {"message": "Missing required parameter: 'image'.", "type": "invalid_request_error",
                                  "param": "image", "code": "missing_required_parameter"}}
            try:
                count = int(fields.get("n") or 1)
            except (TypeError, ValueError):
                count = 0
            if not 1 <= count <= 10:
                return {"error": {"message": "Invalid 'n': must be between 1 and 10.", "type": "invalid_request_error",
                                  "param": "n", "code": "invalid_value"}}
            size = parse_size(fields.get("size"))
            model = str(fields.get("model") or "")
            if route.auth == "api" and size and model.startswith("gpt-image-2"):
                why = gpt_image_2_size_error(*size)
                if why:
                    return {"error": {"message": f"Invalid size '{fields.get('size')}': {why}.",
                                      "type": "invalid_request_error", "param": "size", "code": "invalid_value"}}
            return self._invalid_images(rec)
        if route.kind == "gateway":
            body = rec.json
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return {"detail": "messages must be a list"}
            if body.get("stream"):
                return {"detail": "Streaming is not supported for image generation; send stream: false."}
        return None

    def _invalid_images(self, rec: Recorded) -> dict | None:
        urls = []
        body = rec.json if isinstance(rec.json, dict) else {}
        urls += [e.get("image_url") for e in body.get("images") or [] if isinstance(e, dict)]
        for item in body.get("input") or []:
            if isinstance(item, dict) and isinstance(item.get("content"), list):
                urls += [c.get("image_url") for c in item["content"] if isinstance(c, dict) and c.get("type") == "input_image"]
        blobs = [p.data for p in rec.multipart or [] if p.name in ("image", "image[]", "mask")]
        for url in urls:
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                continue
            decoded = decode_data_url(url) if isinstance(url, str) else None
            blobs.append(decoded[1] if decoded else b"")
        mask = rec.mask()
        if mask is not None:
            blobs.append(mask)
        if any(image_info(blob) is None for blob in blobs):
            return {"error": {"message": "The image data you provided does not represent a valid image. Please check "
                                         "your input and try again with one of the supported image formats: "
                                         "['image/jpeg', 'image/png', 'image/gif', 'image/webp'].",
                              "type": "invalid_request_error", "param": None, "code": "invalid_image"}}
        return None

    def _answer(self, behaviour: Behaviour) -> None:
        fake, kind, opts = self.fake, behaviour.kind, behaviour.opts
        if kind == "status":
            body = opts["body"]
            if body is None:
                phrase = HTTPStatus(opts["code"]).phrase if opts["code"] in HTTPStatus._value2member_map_ else "Error"
                body = {"error": {"message": phrase, "type": None, "code": None}}
            self._send(opts["code"], body, headers=opts.get("headers"), content_type=opts.get("content_type"))
            return
        if kind == "disconnect":
            raise _Abort()
        if kind == "echo" and not (opts.get("in_stream") and self.route.kind == "sse"):
            message = self._echo_message()
            headers = {"x-request-id": "req_" + message} if opts.get("in_header") else None
            self._send(opts["code"], {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_token"},
                                      "detail": message}, headers=headers)
            return
        if kind == "ok" and self._delay_unless_hung_up(opts.get("delay", fake.delay)):
            raise _Abort()
        getattr(self, "_route_" + self.route.kind)(behaviour)

    def _delay_unless_hung_up(self, seconds: float) -> bool:
        """The happy answer's delay, as a server thinking before its status line. True (no
        answer) when the server stops meanwhile, or when the client hangs up: that is
        recorded in fake.hung_up, as a real server would see the connection close."""
        import select
        ends = time.monotonic() + (seconds or 0)
        while True:
            left = ends - time.monotonic()
            if left <= 0:
                return self.fake._wait(0)
            if self.fake._wait(min(left, 0.05)):
                return True
            try:
                readable, _, _ = select.select([self.connection], [], [], 0)
                gone = bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except (OSError, ValueError):
                gone = True
            if gone:
                with self.fake._lock:
                    self.fake.hung_up.append(self.path)
                return True

    def _echo_message(self) -> str:
        body = self.rec.json if isinstance(self.rec.json, dict) else (self.rec.form or {})
        sent = body.get("refresh_token") if isinstance(body, dict) else None
        tokens = self.fake.auth.tokens
        return (f"Invalid credentials. Authorization: {self.rec.header('Authorization')}; "
                f"refresh_token={self.fake.auth.current_refresh_token}; id_token={tokens.get('id_token')}"
                + (f"; you sent refresh_token={sent}" if sent else ""))

    def _unsupported(self, behaviour: Behaviour) -> None:
        message = f"fakeserver: behaviour {behaviour!r} is not supported on {self.rec.path}"
        self.fake.errors.append(message)
        self._send(500, {"error": {"message": message}})

    # image planning

    def _image_fields(self) -> dict | None:
        """The request's image options (prompt, size, output_format, ...), whatever the route."""
        rec = self.rec
        if self.route.kind == "images" and self.route.auth == "api" and self.route.edit:
            if rec.multipart is None:
                return None
            return {p.name: p.text for p in rec.multipart if p.filename is None and p.name}
        body = rec.json
        if not isinstance(body, dict):
            return None
        if self.route.kind == "sse":
            tool = next((t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "image_generation"), {})
            fields = dict(tool)
            fields["prompt"] = self._prompt_text(body.get("input"))
            return fields
        if self.route.kind == "gateway":
            return {"prompt": self._prompt_text(body.get("messages"))}
        return dict(body)

    @staticmethod
    def _prompt_text(items: Any) -> str:
        texts = []
        for item in items or []:
            if not isinstance(item, dict):
                continue
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts += [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") in ("input_text", "text")]
        return "\n".join(t for t in texts if t)

    def _plan(self, opts: dict, fields: dict) -> dict:
        """The image to answer with: bytes, format, size and the echoed options."""
        fake = self.fake
        size = opts.get("size") or fake.answer_size
        if isinstance(size, str):
            size = parse_size(size)
        codex = self.route.auth == "codex"
        if codex:  # the live service ignores size, quality, format, n and model (measured)
            kept = ("prompt", "background", "output_format") if self.route.kind == "sse" else ("prompt", "background")
            fields = {key: value for key, value in fields.items() if key in kept}
        if not size and codex:
            size = codex_canvas(fields.get("prompt") or "")
        if not size:
            asked = parse_size(fields.get("size"))
            if self.route.kind == "gateway":
                match = re.search(r"(\d{3,4})\s*[xX×]\s*(\d{3,4})", fields.get("prompt") or "")
                asked = (int(match.group(1)), int(match.group(2))) if match else None
            size = asked if asked and max(asked) <= 4096 and min(asked) > 0 else (1024, 1024)
        width, height = size
        asked_format = str(fields.get("output_format") or "png").lower()
        fmt = (opts.get("fmt") or fake.answer_format or asked_format).lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in ("png", "jpeg", "webp"):
            fmt = "png"
        background = fields.get("background") if fields.get("background") in ("opaque", "transparent") else "opaque"
        quality = fields.get("quality") if fields.get("quality") in ("low", "medium", "high") else (
            "low" if codex else "medium")
        rgba = background == "transparent" and fmt in ("png", "webp")
        count = int(opts.get("n") or (fields.get("n") if self.route.kind == "images" else 1) or 1)
        images = []
        key = re.search(r"(?i)chroma-key colou?r #([0-9a-f]{6})", fields.get("prompt") or "")
        for _ in range(count):
            if "image" in opts:
                images.append(opts["image"])
            elif key and fmt == "png" and not rgba:
                images.append(keyed_png_bytes(width, height, tuple(bytes.fromhex(key.group(1))),
                                              fake._next_color()))
            else:
                images.append(image_bytes(fmt, width, height, rgba, fake._next_color()))
        encoded = [opts["result"] if "result" in opts else base64.b64encode(img).decode("ascii") for img in images]
        sent = [] if "result" in opts else images
        prompt = fields.get("prompt") or ""
        revised = opts.get("revised_prompt", f"A detailed rendering of: {prompt}" if prompt else None)
        return {"images": sent, "b64": encoded, "format": fmt, "width": width, "height": height,
                "size": f"{width}x{height}", "background": background, "quality": quality, "revised_prompt": revised}

    # routes

    def _route_sse(self, behaviour: Behaviour) -> None:
        opts = behaviour.opts
        fields = self._image_fields() or {}
        events = self._sse_events(behaviour, fields)
        frames = _serialize_sse(events, opts)
        headers = {"Content-Type": opts.get("content_type", "text/event-stream"), "Cache-Control": "no-cache",
                   "openai-model": (self.rec.json or {}).get("model") or DEFAULT_MODEL, **self._diagnostic_headers()}
        if "content_type" in opts and opts["content_type"] is None:
            headers.pop("Content-Type")
        self._deliver(200, headers, frames, opts, stream=True)

    def _sse_events(self, behaviour: Behaviour, fields: dict) -> list:
        """The stream as a list of (event dict or comment text, images it delivers)."""
        kind, opts = behaviour.kind, behaviour.opts
        sequence = itertools.count()
        body = self.rec.json if isinstance(self.rec.json, dict) else {}
        model = body.get("model") or DEFAULT_MODEL
        response_id = "resp_" + _random.token_hex(12)
        now = int(time.time())

        def event(type_: str, **fields_: Any) -> dict:
            return {"type": type_, "sequence_number": next(sequence), **fields_}

        echoed_tool = {"type": "image_generation", "model": "gpt-image-2-codex", "quality": "auto", "size": "auto",
                       "background": "auto", "output_format": fields.get("output_format") or "png"}
        events: list = [
            (event("response.created", response={"id": response_id, "object": "response", "created_at": now,
                                                 "status": "in_progress", "model": model, "output": [],
                                                 "tools": [echoed_tool], "store": False}), []),
            (event("response.in_progress", response={"id": response_id, "status": "in_progress"}), []),
        ]
        if opts.get("noise"):
            events = [("ping", [])] + events + [(event("keepalive"), []),
                       (event("codex.rate_limits", rate_limits={"primary": {"used_percent": 12.5}}), [])]
        reasoning = {"id": "rs_" + _random.token_hex(8), "type": "reasoning", "summary": []}
        events += [
            (event("response.output_item.added", output_index=0, item=reasoning), []),
            (event("response.output_item.done", output_index=0,
                   item={**reasoning, "encrypted_content": "gAAAA" + _random.token_hex(16)}), []),
        ]
        usage = {"input_tokens": 2310, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 180,
                 "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 2490}

        def finished(type_: str, status_: str, output: list, **extra: Any) -> dict:
            return event(type_, response={"id": response_id, "object": "response", "created_at": now,
                                          "status": status_, "model": model, "output": output, **extra})

        tool_model = fields.get("model")
        if kind == "ok" and self.route.auth == "codex" and tool_model and tool_model not in CODEX_TOOL_MODELS:
            # what the live codex backend does with a tool model it does not know
            kind, opts = "failed", {"code": "server_is_overloaded", "message": "Our servers are currently "
                                    "overloaded. Please try again later.", **opts}
        if kind == "ok":
            plan = self._plan(opts, fields)
            call_id = "ig_" + _random.token_hex(8)
            index = {"output_index": 1, "item_id": call_id}
            events += [
                (event("response.output_item.added", output_index=1,
                       item={"id": call_id, "type": "image_generation_call", "status": "in_progress", "result": None}), []),
                (event("response.image_generation_call.in_progress", **index), []),
                ("keepalive", []),
                (event("response.image_generation_call.generating", **index), []),
            ]
            partials = int(opts.get("partial_images", fields.get("partial_images") or 0) or 0)
            for number in range(partials):
                partial = image_bytes(plan["format"], plan["width"], plan["height"], False, self.fake._next_color())
                events.append((event("response.image_generation_call.partial_image", **index,
                                     partial_image_index=number, partial_image_b64=base64.b64encode(partial).decode(),
                                     size=plan["size"], quality=plan["quality"], background=plan["background"],
                                     output_format=plan["format"]), []))
            item = {"id": call_id, "type": "image_generation_call", "status": "completed",
                    "revised_prompt": plan["revised_prompt"], "background": plan["background"],
                    "output_format": plan["format"], "quality": plan["quality"], "size": plan["size"],
                    "result": plan["b64"][0]}
            if item["revised_prompt"] is None:
                del item["revised_prompt"]
            where = opts.get("image_in", "item")
            events.append((event("response.image_generation_call.completed", **index), []))
            if where in ("item", "both"):
                events.append((event("response.output_item.done", output_index=1, item=item), plan["images"]))
            events.append((finished("response.completed", "completed", [item] if where in ("completed", "both") else [],
                                    usage=usage), plan["images"] if where == "completed" else []))
        elif kind == "text_only":
            text = opts["text"]
            message_id = "msg_" + _random.token_hex(8)
            message = {"id": message_id, "type": "message", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": text, "annotations": []}]}
            half = len(text) // 2
            events += [
                (event("response.output_item.added", output_index=1,
                       item={**message, "status": "in_progress", "content": []}), []),
                (event("response.output_text.delta", output_index=1, item_id=message_id, content_index=0, delta=text[:half]), []),
                (event("response.output_text.delta", output_index=1, item_id=message_id, content_index=0, delta=text[half:]), []),
                (event("response.output_text.done", output_index=1, item_id=message_id, content_index=0, text=text), []),
                (event("response.output_item.done", output_index=1, item=message), []),
                (finished("response.completed", "completed", [message], usage=usage), []),
            ]
        elif kind == "error_event":
            events.append((event("error", code=opts["code"], message=opts["message"], param=None), []))
        elif kind == "echo":
            events.append((event("error", code="invalid_request_error", message=self._echo_message(), param=None), []))
        elif kind == "failed":
            events.append((finished("response.failed", "failed", [], error={"code": opts["code"], "message": opts["message"]},
                                    usage=None), []))
        elif kind == "incomplete":
            events.append((finished("response.incomplete", "incomplete", [],
                                    incomplete_details={"reason": opts["reason"]}), []))
        else:
            raise ValueError(f"behaviour {behaviour!r} is not supported on {self.rec.path}")
        return events

    def _json_failure(self, behaviour: Behaviour) -> bool:
        """JSON routes: answer failed/error_event as HTTP errors; True when handled."""
        opts = behaviour.opts
        if behaviour.kind == "failed":
            quota = opts["code"] in ("rate_limit_exceeded", "insufficient_quota")
            self._send(429 if quota else 400, {"error": {"message": opts["message"], "code": opts["code"],
                                                         "type": opts["code"] if quota else "invalid_request_error",
                                                         "param": None}})
            return True
        if behaviour.kind == "error_event":
            self._send(500, {"error": {"message": opts["message"], "code": opts["code"], "type": "server_error", "param": None}})
            return True
        return False

    def _route_images(self, behaviour: Behaviour) -> None:
        if self._json_failure(behaviour):
            return
        opts = behaviour.opts
        fields = self._image_fields() or {}
        headers: dict = {}
        created = int(time.time())
        if behaviour.kind == "text_only":
            self._send(200, {"created": created, "data": []}, headers=headers, opts=opts)
            return
        if behaviour.kind != "ok":
            self._unsupported(behaviour)
            return
        plan = self._plan(opts, fields)
        if opts.get("url", self.fake.api_answer_url):
            data = []
            for encoded, raw in zip(plan["b64"], plan["images"] or [None] * len(plan["b64"])):
                name = f"gen-{_random.token_hex(6)}.{plan['format']}"
                payload = raw if raw is not None else encoded.encode()
                data.append({"url": self.fake.add_file(name, payload, MIME.get(plan["format"], "image/png")), "revised_prompt": None})
        elif self.route.auth == "codex":  # no revised_prompt here; a generation id instead
            data = [{"b64_json": encoded, "generation_id": "gen_" + _random.token_hex(8)} for encoded in plan["b64"]]
        else:
            data = [{"b64_json": encoded, "revised_prompt": None} for encoded in plan["b64"]]
        answer = {"created": created, "data": data, "background": plan["background"], "output_format": plan["format"],
                  "quality": plan["quality"], "size": plan["size"], "usage": USAGE}
        self._send(200, answer, headers=headers, opts=opts, images=plan["images"])

    def _route_gateway(self, behaviour: Behaviour) -> None:
        if self._json_failure(behaviour):
            return
        opts = behaviour.opts
        body = self.rec.json if isinstance(self.rec.json, dict) else {}
        style = opts.get("content", self.fake.gateway_content)
        images: list = []
        if behaviour.kind == "text_only":
            content: Any = opts["text"]
        elif behaviour.kind != "ok":
            self._unsupported(behaviour)
            return
        else:
            plan = self._plan(opts, self._image_fields() or {})
            url = f"data:{MIME[plan['format']]};base64,{plan['b64'][0]}"
            images = plan["images"]
            if style == "list":
                content = [{"type": "text", "text": "Here is your image."}, {"type": "image_url", "image_url": {"url": url}}]
            elif style == "bare":
                content = url
            elif style == "text":
                content, images = "Sorry, I could not make that image.", []
            else:
                content = f"Here is your image.\n\n![image]({url})"
        answer = {"id": "chatcmpl-" + _random.token_hex(12), "object": "chat.completion", "created": int(time.time()),
                  "model": body.get("model") or DEFAULT_MODEL,
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}}
        self._send(200, answer, opts=opts, images=images)

    def _route_token(self, behaviour: Behaviour) -> None:
        if behaviour.kind != "ok":
            self._unsupported(behaviour)
            return
        rec, auth = self.rec, self.fake.auth
        fields = rec.json if isinstance(rec.json, dict) else (rec.form or {})
        grant = fields.get("grant_type")
        if grant == "refresh_token":
            if self.fake._wait(auth.refresh_delay):
                raise _Abort()
            code, answer = auth.refresh(fields)
        elif grant == "authorization_code":
            if self.fake.strict and rec.form is None:
                code, answer = 400, {"error": "invalid_request",
                                     "error_description": "Expected application/x-www-form-urlencoded."}
            else:
                code, answer = auth.exchange_code(fields)
        else:
            code, answer = 400, {"error": "unsupported_grant_type"}
        self._send(code, answer, opts=behaviour.opts)

    def _route_usercode(self, behaviour: Behaviour) -> None:
        if behaviour.kind != "ok":
            self._unsupported(behaviour)
            return
        fields = self.rec.json if isinstance(self.rec.json, dict) else {}
        self._send(*self.fake.auth.start_device_login(fields), opts=behaviour.opts)

    def _route_devicetoken(self, behaviour: Behaviour) -> None:
        if behaviour.kind != "ok":
            self._unsupported(behaviour)
            return
        fields = self.rec.json if isinstance(self.rec.json, dict) else {}
        self._send(*self.fake.auth.poll_device_login(fields), opts=behaviour.opts)

    def _route_usage(self, behaviour: Behaviour) -> None:
        if behaviour.kind != "ok":
            self._unsupported(behaviour)
            return
        self._send(200, self.fake.usage_answer(), opts=behaviour.opts)

    def _route_files(self, behaviour: Behaviour) -> None:
        if behaviour.kind != "ok":
            self._unsupported(behaviour)
            return
        name = self.rec.path[len("/files/"):]
        with self.fake._lock:
            entry = self.fake._files.get(name)
        if entry is None:
            self._send(404, {"detail": "Not Found"})
            return
        if "size" not in entry:
            if entry["chunked"]:
                self._deliver(200, {"Content-Type": entry["content_type"]}, [_Frame(entry["data"])], behaviour.opts, stream=True)
            else:
                self._send(200, entry["data"], content_type=entry["content_type"], opts=behaviour.opts)
            return
        size, chunked = entry["size"], entry["chunked"]
        headers = {"Content-Type": entry["content_type"]}
        headers["Transfer-Encoding" if chunked else "Content-Length"] = "chunked" if chunked else size
        self._start(200, headers)
        sent, block = 0, b"\x89PNG\r\n\x1a\n" + bytes(65536 - 8)
        while sent < size:
            piece = block[:size - sent] if sent == 0 else bytes(min(65536, size - sent))
            self._write(piece, chunked)
            sent += len(piece)
            if self.fake._stopping.is_set():
                raise _Abort()
        if chunked:
            self._write(b"", True)


def _json_lines(payload: dict, split: bool) -> list[str]:
    """The event's JSON as data lines; split=True puts each top-level member on its own line
    (cut after a structural comma, so joining the lines with "\\n" gives valid JSON)."""
    dumps = functools.partial(json.dumps, ensure_ascii=False, separators=(",", ":"))
    if not split or len(payload) < 2:
        return [dumps(payload)]
    members = [dumps(key) + ":" + dumps(value) for key, value in payload.items()]
    return ["{" + members[0] + ","] + [m + "," for m in members[1:-1]] + [members[-1] + "}"]


def _gzip_frames(frames: list[_Frame]) -> list[_Frame]:
    """The frames as one gzip stream, each flushed so a reader can decode it on arrival."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = []
    for index, frame in enumerate(frames):
        mode = zlib.Z_FINISH if index == len(frames) - 1 else zlib.Z_SYNC_FLUSH
        packed.append(_Frame(compressor.compress(frame.data) + compressor.flush(mode), frame.images))
    return packed


def _serialize_sse(events: list, opts: dict) -> list[_Frame]:
    newline = opts.get("newline", "\n")
    colon = ":" if opts.get("space") is False else ": "
    names = opts.get("event_names", "match")
    previous_type = "error"
    frames = []
    for number, (payload, images) in enumerate(events):
        last = number == len(events) - 1
        if isinstance(payload, str):
            lines = [":" + colon[1:] + payload]
        else:
            lines = []
            if names == "match":
                lines.append("event" + colon + payload["type"])
            elif names == "mismatch":
                lines.append("event" + colon + previous_type)
            if opts.get("noise"):
                lines.append(":" + colon[1:] + "comment inside an event")
            lines += ["data" + colon + line for line in _json_lines(payload, bool(opts.get("split_data")))]
            previous_type = payload["type"]
        text = newline.join(lines) + newline
        if not (last and opts.get("final_blank") is False):
            text += newline
        frames.append(_Frame(text.encode("utf-8"), images))
    return frames


# Standalone ################################################################################

# The behaviours a prompt word can trigger from the command line (--by-prompt WORD=NAME[:ARG]):
# name -> (make(arg), type of ARG or None when it takes none, default ARG, what it does).
STANDALONE_BEHAVIOURS: dict = {
    "ok": (lambda _: ok(), None, None, "the happy answer"),
    "usage_limit": (lambda _: usage_limit(), None, None, "429 usage_limit_reached, resets in an hour"),
    "rate_limited": (rate_limited, float, 0.01, "failed rate_limit_exceeded, 'try again in {}s'"),
    "insufficient_quota": (lambda _: insufficient_quota(), None, None, "failed insufficient_quota"),
    "overloaded": (overloaded, int, 0, "503 server_is_overloaded, Retry-After: {}"),
    "content_policy": (lambda _: content_policy(), None, None, "refused: failed image_content_policy_violation"),
    "forbidden": (forbidden, str, "plan", "a JSON 403 of kind {} (" + ", ".join(FORBIDDEN_BODIES) + ")"),
    "text_only": (lambda _: text_only(), None, None, "a text answer without an image"),
    "status": (status, int, 500, "HTTP status {} with a JSON error body"),
    "cloudflare": (cloudflare, int, 403, "HTTP {} with a Cloudflare HTML page"),
    "too_old": (lambda _: too_old(), None, None, "400 'requires a newer version of Codex'"),
    "failed": (failed, str, "server_error", "failed with code {}"),
    "error_event": (error_event, str, "server_error", "an error event with code {} (JSON routes: 500)"),
    "incomplete": (incomplete, str, "max_output_tokens", "response.incomplete, reason {}"),
    "stall": (stall, float, 30.0, "{} s of silence, then the answer"),
    "trickle": (trickle, float, 0.05, "the answer one byte every {} s"),
    "truncated": (truncated, int, 3, "the answer cut off after {} events (JSON: half the body)"),
    "disconnect": (lambda _: disconnect(), None, None, "the connection closed without an answer"),
    "bad_base64": (lambda _: bad_base64(), None, None, "image data that is not valid base64"),
    "not_an_image": (lambda _: not_an_image(), None, None, "base64 of bytes that are not an image"),
    "other_format": (other_format, str, "jpeg", "a {} image whatever format was asked"),
}

# --errors: one word for each failure a newcomer most likely wants to see.
DEFAULT_ERROR_WORDS = (("LIMIT", "usage_limit"), ("REFUSE", "content_policy"), ("TEXT", "text_only"),
                       ("BROKEN", "status:500"), ("SLOW", "stall:30"))


_ARG_KINDS = {int: "an integer", float: "a number", str: "a word"}


class PromptRule:
    """One --by-prompt WORD=NAME[:ARG]: the behaviour, and a line saying what it does."""

    def __init__(self, word: str, name: str, behaviour: Behaviour, description: str):
        self.word, self.name, self.behaviour, self.description = word, name, behaviour, description


def prompt_rule(text: str) -> PromptRule:
    """Parse WORD=NAME[:ARG] (an argparse type: a bad one is a one-line usage error)."""
    word, equals, spec = text.partition("=")
    if not equals or not word or not spec:
        raise argparse.ArgumentTypeError(f"expected WORD=BEHAVIOUR, got {text!r}")
    name, colon, raw_arg = spec.partition(":")
    if name not in STANDALONE_BEHAVIOURS:
        raise argparse.ArgumentTypeError(f"unknown behaviour {name!r}; valid: {', '.join(sorted(STANDALONE_BEHAVIOURS))}")
    make, arg_type, arg, description = STANDALONE_BEHAVIOURS[name]
    if colon:
        try:
            if arg_type is None:
                raise ValueError
            arg = arg_type(raw_arg)
            if (name == "forbidden" and arg not in FORBIDDEN_BODIES) or (arg_type is int and not 100 <= arg <= 599
                                                                        and name in ("status", "cloudflare")):
                raise ValueError
        except ValueError:
            wanted = "takes no :ARG" if arg_type is None else f"takes {_ARG_KINDS[arg_type]} as :ARG"
            raise argparse.ArgumentTypeError(f"{name} {wanted}, got {spec!r}") from None
    shown_arg = f"{arg:g}" if isinstance(arg, float) else str(arg)
    shown = name if arg_type is None else f"{name}:{shown_arg}"
    return PromptRule(word, shown, make(arg), description.format(shown_arg))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the fake Codex/auth/gateway/Images API backends for imagegen.py.")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each happy answer")
    parser.add_argument("--by-prompt", type=prompt_rule, action="append", default=[], metavar="WORD=BEHAVIOUR",
                        help="an image request whose prompt contains WORD (case matters) gets BEHAVIOUR, written "
                             "NAME or NAME:ARG; repeatable; names: " + ", ".join(sorted(STANDALONE_BEHAVIOURS)))
    parser.add_argument("--errors", action="store_true",
                        help="also script " + ", ".join(f"{w}={b}" for w, b in DEFAULT_ERROR_WORDS)
                             + " (--by-prompt wins for the same word)")
    args = parser.parse_args(argv)
    defaults = [prompt_rule(f"{word}={name}") for word, name in DEFAULT_ERROR_WORDS] if args.errors else []
    rules = {rule.word: rule for rule in defaults + args.by_prompt}  # a later rule replaces an earlier one
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up on kill, too
    server = FakeServer(args.host, args.port, args.delay)
    server.by_prompt.update((word, rule.behaviour) for word, rule in rules.items())
    server.start()
    codex_home = tempfile.mkdtemp(prefix="fake-codex-home-")
    try:
        os.chmod(codex_home, 0o700)
        write_auth_file(os.path.join(codex_home, "auth.json"), make_auth_json(server.auth.tokens))
        print(f"# fake server at {server.url}; paste these lines into a shell:")
        print(f"export CODEX_HOME={codex_home}")
        print(f"export IMAGEGEN_CODEX_BASE_URL={server.codex_base_url}")
        print(f"export IMAGEGEN_AUTH_BASE_URL={server.url}")
        print(f"export CODEX_API_BASE_URL={server.url}")
        print(f"export IMAGEGEN_API_BASE_URL={server.api_base_url}")
        print(f"export IMAGEGEN_API_KEY={server.api_key}")
        print(f"# gateway token: {server.gateway_token}; responses provider: base_url {server.api_base_url}, "
              f"key {server.provider_key}")
        if rules:
            print("# an image request whose prompt contains one of these words (case matters) gets:")
        width = max((len(word) for word in rules), default=0)
        for word, rule in rules.items():
            print(f"#   {word.ljust(width)}  {rule.name}: {rule.description}")
        print("# Ctrl-C stops the server.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
        shutil.rmtree(codex_home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

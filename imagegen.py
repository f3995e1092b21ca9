#!/usr/bin/env python3
# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""imagegen: make a bitmap from a prompt with your ChatGPT subscription and save it.

It reads the ChatGPT login that the Codex CLI keeps (~/.codex/auth.json), refreshes it
when needed without breaking Codex's own login, asks the Codex backend for an image and
saves it under assets/generated/ (or where -o says). Standard library only.

    imagegen "a flat icon of a paper plane, blue on white" -o assets/icons/plane.png
    imagegen "make the sky a sunset" -i photo.jpg --json

Exit codes: 0 saved, 1 internal error, 2 usage, 3 auth, 4 rate limit, 5 backend,
6 no image (refusal or text-only answer), 7 output path, 130 interrupted.
"""
from __future__ import annotations

import base64
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

__version__ = "0.2.0"

#: What a program or a test may use. The rest is this file's own: its functions and classes
#: carry a leading underscore (a test that reaches one says so), and its upper-case constants
#: are settings, each explained where it is defined, not promised either.
__all__ = [
    "__version__", "main",
    # errors: one a row of the exit-code table
    "ImagegenError", "UsageError", "AuthError", "RateLimitError", "BackendError",
    "NoImageError", "OutputError", "Interrupted", "PixelsError",
    # the pure parts: bytes and text in, values out
    "Secrets", "sniff_image", "decode_image_base64", "size_problems", "nearest_size",
    "Raster", "decode_png", "encode_png", "resample", "crop", "cover", "contain",
    "has_transparency", "remove_chroma_key", "png_thumbnail", "pillow_decode",
    "PNG_COMPRESSION", "SSEEvent", "SSEDecoder", "LongStrings", "Spills", "SPILL_HEAD_BYTES",
    "images_from_chat", "read_images_payload", "fetch_image_urls", "error_from_http",
    "error_entry", "quota_from_headers", "describe_quota", "window_label",
    "parse_toml_subset", "load_toml", "read_auth_json",
    "preview_protocol", "preview_sequence", "kitty_sequence", "iterm_sequence",
    "GalleryItem", "gallery_html",
    # the edges tests drive directly
    "Transport", "Response", "ResponsesRoute", "Probes",
]

# Constants ########################################################################################

CLIENT_ID = "app_EMoamEEZ73f0CkXaXp7hrann"  # the Codex CLI's public OAuth client id
DEFAULT_CODEX_BASE_URL = "https://chatgpt.com/backend-api/codex"
DEFAULT_AUTH_BASE_URL = "https://auth.openai.com"
DEFAULT_API_BASE_URL = "https://api.openai.com/v1"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000"
DEFAULT_GATEWAY_TOKEN = "devtoken"  # agent-cli-to-api's local default
GATEWAY_START_HINT = "CODEX_ENABLE_IMAGE_GEN=1 uv run agent-cli-to-api codex"
DEFAULT_MODEL = "gpt-5.5"
DEFAULT_IMAGE_MODEL = "gpt-image-2"
#: Who is asking, on every request to OpenAI hosts: OpenAI asked third-party tools to name
#: themselves instead of claiming to be the Codex CLI, and an honest originator is served alike.
ORIGINATOR = "codex-imagegen"
#: What Codex itself names on the images route; the service ignores the model (measured).
CODEX_IMAGE_MODEL = "gpt-image-2"
#: The canvas shapes the codex backend makes, chosen by an aspect line in the prompt (it
#: ignores `size`): (word, width ratio, height ratio), measured 1254x1254, 1536x1024,
#: 1024x1536, 1672x941 and 941x1672.
CODEX_ASPECTS = (("square", 1, 1), ("landscape", 3, 2), ("portrait", 2, 3),
                 ("landscape", 16, 9), ("portrait", 9, 16))
# `version` headers that are too old get "requires a newer version of Codex", and
# version.json may lag: never send less than a release known to work.
CODEX_VERSION_FLOOR = "0.169.0"
INSTRUCTIONS = (
    "You are an image generation assistant. For every request, call the image_generation "
    "tool exactly once to create the image the user describes, following the description "
    "faithfully. Do not ask questions and do not answer with text instead of an image."
)

FORMATS = ("png", "jpeg", "webp")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
FORMAT_OF_EXTENSION = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
# -o with one of these image extensions is a mistake (we cannot write them), not a stem.
OTHER_IMAGE_EXTENSIONS = {".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".svg", ".ico"}
MIME_OF_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
CLASSIC_SIZES = ("1024x1024", "1536x1024", "1024x1536")
MIN_PIXELS = 655_360
MAX_PIXELS = 3840 * 2160
MAX_EDGE = 3840
MIN_FIT_SIDE = 16  # a --size fitted here (not made by the model) may be any WxH this large

#: The options' limits and defaults: make_job, Job, --help and the MCP schema read these.
MAX_COUNT = 10  # images one command (or batch line) makes
MAX_PARALLEL = 8  # requests (or batch lines) in flight
PARALLEL_DEFAULT_CAP = 4  # without --parallel: min(count, this), min(lines, this) in a batch
MAX_RETRIES = 5
DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT_S = 300.0  # the total budget for one image
DEFAULT_STALL_TIMEOUT_S = 120.0  # the longest silence from the server
MAX_SECONDS = 86400  # a day: the most --timeout or --stall-timeout may be
MAX_COMPRESSION = 100
CHOICES = {
    "quality": ("auto", "low", "medium", "high"),
    "background": ("auto", "opaque", "transparent"),
    "moderation": ("auto", "low"),
    "input_fidelity": ("low", "high"),
    "action": ("auto", "generate", "edit"),
    "backend": ("codex", "gateway", "responses", "api"),
    "route": ("auto", "responses", "images"),
    "fit": ("cover", "contain", "none"),
}

REFRESH_SKEW_S = 300  # refresh this long before the access token's exp (Codex 0.169: 5 min)
REFRESH_INTERVAL_S = 8 * 24 * 3600  # Codex's rule when the token carries no exp
LOCK_WAIT_S = 30.0
MAX_ERROR_CHARS = 500
MAX_REFERENCE_BYTES = 20 * 1024 * 1024  # the backends' data-URL limit is about 20 MiB
MAX_CONFIG_BYTES = 1024 * 1024  # auth.json, config files, a prompt file: far more than any
MAX_BATCH_BYTES = 256 * 1024 * 1024  # a batch file (100k lines with long prompts fit)
MAX_RESPONSE_BYTES = 192 * 1024 * 1024  # a 3840x2160 PNG in base64 is well under this
MAX_IMAGES_CODEX_ROUTE = 5  # what Codex itself sends on /images/edits
MAX_IMAGES = 16  # reference images one request takes
DOWNLOAD_TIMEOUT_S = 60.0
DEVICE_LOGIN_LIMIT_S = 15 * 60
DEVICE_POLL_MAX_S = 60.0  # the longest wait between polls, whatever the server's interval
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
RETRY_AFTER_CAP_S = 60.0
CONTENT_POLICY_CODES = {
    "image_content_policy_violation", "content_policy_violation", "moderation_blocked",
    "content_filter", "safety_violation", "cyber_policy", "image_generation_user_error",
    "image_generation_user_error_moderation", "misalignment_policy_violation", "bio_policy",
}
#: A token endpoint's words for "this login is over" (any status): refreshing again cannot help.
LOGIN_OVER_CODES = {
    "invalid_grant": "the login was revoked or has expired",
    "refresh_token_expired": "your refresh token has expired",
    "refresh_token_reused": "your refresh token was already used",
    "refresh_token_invalidated": "your refresh token was revoked",
}
QUOTA_CODES = {"usage_limit_reached", "usage_not_included", "insufficient_quota"}
IMAGE_ERROR_CODES = {
    "invalid_image", "invalid_base64_image", "image_too_large", "image_too_small",
    "image_parse_error", "unsupported_image_media_type", "invalid_image_format",
    "invalid_image_url", "image_file_too_large",
}


# Errors ###########################################################################################

class ImagegenError(Exception):
    """An expected failure: main() prints its message and exits with its code."""

    exit_code = 1
    kind = "internal"

    def __init__(self, message: str, *, transient: bool = False,
                 retry_after: float | None = None, fallback: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient  # worth a re-send within --retries
        self.retry_after = retry_after  # seconds the server asked us to wait
        self.fallback = fallback  # route auto may try the next route: it cost nothing


class UsageError(ImagegenError):
    exit_code, kind = 2, "usage"


class AuthError(ImagegenError):
    exit_code, kind = 3, "auth"


class RateLimitError(ImagegenError):
    exit_code, kind = 4, "rate_limit"


class BackendError(ImagegenError):
    exit_code, kind = 5, "backend"


class NoImageError(ImagegenError):
    exit_code, kind = 6, "no_image"


class OutputError(ImagegenError):
    exit_code, kind = 7, "output"


class Interrupted(ImagegenError):
    exit_code, kind = 130, "interrupted"


class _Unauthorized(AuthError):
    """HTTP 401: the caller may refresh the login once and send again; one that survives
    the refresh is exit 3. (A 403 is never cured by a refresh: Codex does not try.)"""


#: The command a hint names (`imagegen auth login`) is written with this name and printed
#: with the name the user started the program by (program_name).
HINT_PROGRAM = "`imagegen "


def _program_name(argv0: str | None = None, windows: bool = os.name == "nt") -> str:
    """The command the user typed to start this program, for hints: `imagegen` or
    `codex-imagegen` (an installed entry point), `python3 imagegen.py` (the file run as a
    script, its path as typed); "imagegen" when it cannot be told (embedded, a test)."""
    if argv0 is None:
        argv = getattr(sys, "argv", None) or [""]
        argv0 = argv[0] or ""
    name = os.path.basename(argv0)
    stem = name[:-4] if name.lower().endswith(".exe") else name
    if stem in ("imagegen", "codex-imagegen"):
        return stem
    try:
        same = name.endswith(".py") and os.path.samefile(argv0, __file__)
    except (OSError, ValueError, NameError):
        same = False
    if not same:
        return "imagegen"
    if windows:
        shown = f'"{argv0}"' if " " in argv0 else argv0
        return f"python {shown}"
    import shlex
    return f"python3 {shlex.quote(argv0)}"


def _as_invoked(text: str, program: str | None = None) -> str:
    """`text` with the commands it names (`imagegen auth login`) as the user would type
    them: every message is written with `imagegen ...`, and printed through this."""
    if HINT_PROGRAM not in text:
        return text
    return text.replace(HINT_PROGRAM, f"`{program or _program_name()} ")


# Redaction ########################################################################################

#: Each pattern is written so that it cannot backtrack over a long run: a lookbehind makes a
#: match start only where a run of token characters starts, so a server's 300 KB of "eyJeyJ..."
#: or "a.a.a..." is scanned once, not once for every position in it.
_SECRET_PATTERNS = (
    # JWTs (access and id tokens) wherever they appear
    (re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"),
     "***"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]{6,}"), r"\1***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), "***"),
    (re.compile(r"\brt_[A-Za-z0-9_.-]{12,}"), "***"),
    (re.compile(
        r"(?i)([\"']?(?:access_token|refresh_token|id_token|api_key|apikey|openai_api_key|token|"
        r"authorization|code_verifier|authorization_code|client_secret|password)[\"']?[ \t]*"
        # (JSON's true/false/null are not secrets: `"refresh_token": true` must stay JSON)
        r"[:=][ \t]*[\"']?)(?!(?i:bearer|basic)\s)(?!\*\*\*)(?!(?:true|false|null)\b)"
        r"([^\"'\s,}&]{4,})"), r"\1***"),
    # a password in a URL (https://user:password@host/...)
    (re.compile(r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^/\s@]+@"), r"\1***@"),
)
#: An echo may break a secret with a line break or a space (also as a JSON escape), cut it
#: short, or encode it: a known secret is found from its first ECHO_MIN_CHARS characters on,
#: whatever whitespace sits between them, and as base64 or hex.
ECHO_MIN_CHARS = 12
_ECHO_GAP = r"(?:\s|\\[nrt])*"


def _encoded_forms(value: str) -> set[str]:
    """base64 (standard and URL-safe, at each of the 3 byte alignments, without the edge
    characters that depend on the neighbouring bytes) and hex of a secret."""
    raw = value.encode("utf-8", "replace")
    forms = {raw.hex(), raw.hex().upper()}
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            middle = encode(b"\0" * shift + raw).decode("ascii")[4:-4]
            if len(middle) >= ECHO_MIN_CHARS:
                forms.add(middle)
    return forms


def _echo_spans(text: str, value: str, head: re.Pattern) -> list[tuple[int, int]]:
    """Where text holds value, or a prefix of it of ECHO_MIN_CHARS or more, with whitespace
    anywhere inside: (start, end) pairs. Linear: each start is extended once."""
    spans = []
    for match in head.finditer(text):
        index, matched, end = match.end(), ECHO_MIN_CHARS, match.end()
        while matched < len(value) and index < len(text):
            char = text[index]
            if char == value[matched]:
                index, matched = index + 1, matched + 1
                end = index
            elif char.isspace():
                index += 1
            elif char == "\\" and text[index + 1:index + 2] in ("n", "r", "t"):
                index += 2
            else:
                break
        spans.append((match.start(), end))
    return spans


class Secrets:
    """The secrets of one run; redact() is the one function every output passes through."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._echoes: dict[str, tuple[re.Pattern, set[str]]] = {}
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            for value in values:
                if not isinstance(value, str) or len(value) < 4 or value in self._values:
                    continue
                self._values.add(value)
                if len(value) >= ECHO_MIN_CHARS:
                    head = re.compile(_ECHO_GAP.join(map(re.escape, value[:ECHO_MIN_CHARS])))
                    self._echoes[value] = (head, _encoded_forms(value))

    def redact(self, text: str, keep: Iterable[str] = ()) -> str:
        """Known secrets become ***, then whatever looks like one. The parts of text equal to
        a `keep` string (a saved path: made here, not echoed by a server) get only the first
        step: the patterns would print sk-8-skateboard.png as ***.png."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
            echoes = dict(self._echoes)
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        kept = sorted({k for k in keep if k and k in text}, key=len, reverse=True)
        pieces = re.split("(" + "|".join(map(re.escape, kept)) + ")", text) if kept else [text]
        for index in range(0, len(pieces), 2):  # the odd pieces are the kept strings
            pieces[index] = self._redact_echoes(pieces[index], echoes)
            for pattern, replacement in _SECRET_PATTERNS:
                pieces[index] = pattern.sub(replacement, pieces[index])
        return "".join(pieces)

    @staticmethod
    def _redact_echoes(text: str, echoes: dict) -> str:
        spans: list[tuple[int, int]] = []
        for value, (head, forms) in echoes.items():
            spans.extend(_echo_spans(text, value, head))
            for form in forms:
                start = text.find(form)
                while start >= 0:
                    spans.append((start, start + len(form)))
                    start = text.find(form, start + len(form))
        if not spans:
            return text
        out, position = [], 0
        for start, end in sorted(spans):
            if end <= position:
                continue
            if start >= position:
                out.append(text[position:start])
                out.append("***")
            position = end
        out.append(text[position:])
        return "".join(out)


# Time, sizes and identifiers ######################################################################

def _new_uuid() -> str:
    """A random (version 4) UUID, without importing uuid."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _utc_now_rfc3339(now: float) -> str:
    """Codex's last_refresh format: RFC 3339, UTC, microseconds, Z."""
    import datetime
    stamp = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_rfc3339(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    import datetime
    cleaned = text.strip().replace("Z", "+00:00")
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d:\d\d)?$", cleaned)
    if not match:
        return None
    fraction = (match.group(2) or "")[:7]  # Python 3.9 takes at most 6 digits
    try:
        stamp = datetime.datetime.fromisoformat(
            match.group(1) + fraction.ljust(7, "0")[:7] + (match.group(3) or "+00:00"))
    except ValueError:
        return None
    return stamp.timestamp()


def _human_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / 1024 / 1024:.1f} MB"


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


# Options and the Job ##############################################################################

@dataclass(frozen=True)
class _Job:
    """One generate command, validated. None means "not set by the user"."""

    prompt: str
    out: str | None = None
    force: bool = False
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    format: str = "png"
    format_set: bool = False
    compression: int | None = None
    moderation: str | None = None
    images: tuple[str, ...] = ()
    mask: str | None = None
    input_fidelity: str | None = None
    action: str | None = None
    count: int = 1
    parallel: int = 1
    backend: str = "codex"
    route: str = "auto"
    model: str = DEFAULT_MODEL
    image_model: str = DEFAULT_IMAGE_MODEL
    image_model_set: bool = False
    base_url: str | None = None
    config: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    quiet: bool = False
    json: bool = False
    progress: bool = True
    dry_run: bool = False
    meta: bool = False
    fit: str = "cover"
    preview: bool = False

    @property
    def is_edit(self) -> bool:
        return bool(self.images)


ENV_DEFAULTS = {
    "backend": "IMAGEGEN_BACKEND", "route": "IMAGEGEN_ROUTE",
    "model": "IMAGEGEN_MODEL", "image_model": "IMAGEGEN_IMAGE_MODEL",
}
# `batch` lines may carry these options, by their long names (both spellings of format).
JOB_OPTIONS = (
    "prompt", "out", "force", "size", "quality", "background", "format", "output_format",
    "compression", "moderation", "image", "mask", "input_fidelity", "action", "count",
    "parallel", "backend", "route", "model", "image_model", "base_url", "config", "timeout",
    "stall_timeout", "retries", "meta", "fit",
)


def _is_gpt_image_2(model: str) -> bool:
    return model == "gpt-image-2" or model.startswith("gpt-image-2-")


def _parse_size(size: str | None) -> tuple[int, int] | None:
    """(width, height) of a WxH size; None for auto, None or anything else."""
    match = re.fullmatch(r"(\d+)x(\d+)", size or "")
    return (int(match.group(1)), int(match.group(2))) if match else None


def _check_size(size: str, image_model: str, exact: bool = True) -> None:
    """Raise UsageError unless `size` is auto or a WxH the tool can deliver. `exact`
    (--fit none): the image model itself must make it; otherwise any WxH within the
    bounds below does, since the answer is fitted to it here."""
    if size == "auto":
        return
    match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size)
    if not match:
        raise UsageError(f"--size must be auto or WIDTHxHEIGHT, like 1536x1024 (got {size!r})")
    width, height = int(match.group(1)), int(match.group(2))
    if not exact:
        if min(width, height) < MIN_FIT_SIDE or max(width, height) > MAX_EDGE \
                or width * height > MAX_PIXELS:
            raise UsageError(f"--size {size}: each side from {MIN_FIT_SIDE} to {MAX_EDGE}, "
                             f"at most {MAX_PIXELS:,} pixels (3840x2160)")
        return
    if not _is_gpt_image_2(image_model):
        if size not in CLASSIC_SIZES:
            raise UsageError(f"{image_model} takes --size {', '.join(CLASSIC_SIZES)} or auto "
                             f"(got {size}; the nearest is {_nearest_classic_size(width, height)})")
        return
    problems = size_problems(width, height)
    if problems:
        nearest = nearest_size(width, height)
        raise UsageError(f"--size {size} does not suit {image_model}: " + "; ".join(problems)
                         + (f"; try {nearest[0]}x{nearest[1]}" if nearest else ""))


def _model_size(size: str, image_model: str) -> str:
    """The size to ask `image_model` for when the file must be `size` (WxH): the size
    itself when the model makes it, else the nearest one it makes (fitted here after)."""
    try:
        _check_size(size, image_model)
        return size
    except UsageError:
        width, height = _parse_size(size) or (0, 0)
    if not _is_gpt_image_2(image_model):
        return _nearest_classic_size(width, height)
    nearest = nearest_size(width, height)
    return f"{nearest[0]}x{nearest[1]}" if nearest else "auto"


def _nearest_classic_size(width: int, height: int) -> str:
    """The DALL-E / gpt-image-1 size whose aspect ratio is nearest to WxH's."""
    return min(CLASSIC_SIZES, key=lambda s: abs(
        math.log(int(s.split("x")[0]) / int(s.split("x")[1]))
        - math.log(max(width, 1) / max(height, 1))))


def size_problems(width: int, height: int) -> list[str]:
    """What is wrong with WxH for gpt-image-2 (empty when it is fine)."""
    problems = []
    if width % 16 or height % 16:
        problems.append("both sides must be divisible by 16")
    if max(width, height) > 3 * min(width, height):
        problems.append("the aspect ratio must be within 1:3 and 3:1")
    if width * height > MAX_PIXELS:
        problems.append(f"at most {MAX_PIXELS:,} pixels (3840x2160)")
    if max(width, height) > MAX_EDGE:
        problems.append(f"the long edge must be at most {MAX_EDGE}")
    if width * height < MIN_PIXELS:
        problems.append(f"at least {MIN_PIXELS:,} pixels")
    return problems


def nearest_size(width: int, height: int) -> tuple[int, int] | None:
    """The valid gpt-image-2 size closest to WxH: the sides nearest to the asked ones among
    sizes within 2% of its aspect ratio (clamped to 1:3..3:1); a tie goes to the larger."""
    if width <= 0 or height <= 0:
        return None
    ratio = min(max(width / height, 1 / 3), 3.0)
    pixels = min(max(width * height, MIN_PIXELS), MAX_PIXELS)
    base_w = math.sqrt(pixels * ratio)
    base_h = base_w / ratio
    candidates = [(w, h) for w in range(max(16, int(base_w) // 16 * 16 - 64),
                                        int(base_w) // 16 * 16 + 81, 16)
                  for h in range(max(16, int(base_h) // 16 * 16 - 64),
                                 int(base_h) // 16 * 16 + 81, 16)
                  if not size_problems(w, h)]
    if not candidates:
        return None
    return min(candidates, key=lambda c: (abs(math.log(c[0] / c[1] / ratio)) > 0.02,
                                          abs(c[0] - width) + abs(c[1] - height),
                                          -c[0] * c[1]))


def _as_int(name: str, value: Any, low: int, high: int) -> int:
    try:
        number = int(value)
        if isinstance(value, float) and value != number:
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(f"--{name.replace('_', '-')} must be a whole number "
                         f"from {low} to {high} (got {value!r})") from None
    if not low <= number <= high:
        raise UsageError(f"--{name.replace('_', '-')} must be from {low} to {high} (got {number})")
    return number


def _as_seconds(name: str, value: Any, allow_zero: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"--{name.replace('_', '-')} must be a number of seconds "
                         f"(got {value!r})") from None
    option = f"--{name.replace('_', '-')}"
    if number > MAX_SECONDS:  # also inf
        raise UsageError(f"{option} is at most {MAX_SECONDS:g} seconds (a day) (got {value!r})")
    if number != number or number < 0 or (number == 0 and not allow_zero):
        raise UsageError(f"{option} must be a positive number of seconds"
                         + (" (0 = none)" if allow_zero else "") + f" (got {value!r})")
    return number


def _make_job(options: dict, env: dict) -> _Job:
    """Validate options (long names; None = not given) into a Job, or raise UsageError."""
    get = options.get
    values: dict[str, Any] = {}
    prompt = get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError("no prompt: give it as an argument, with -p, or with --prompt-file")
    values["prompt"] = prompt
    for name, variable in ENV_DEFAULTS.items():
        value = get(name)
        source = f"--{name.replace('_', '-')}"
        if value is None and env.get(variable):
            value, source = env[variable], variable
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise UsageError(f"{source} must be a non-empty string")
        if name in CHOICES and value not in CHOICES[name]:
            raise UsageError(f"{source} must be one of {', '.join(CHOICES[name])} (got {value!r})")
        values[name] = value
    if "image_model" in values:
        values["image_model_set"] = True
    for name in ("quality", "background", "moderation", "input_fidelity", "action", "fit"):
        value = get(name)
        if value is not None:
            if value not in CHOICES[name]:
                raise UsageError(f"--{name.replace('_', '-')} must be one of "
                                 f"{', '.join(CHOICES[name])} (got {value!r})")
            values[name] = value

    out = get("out")
    if out is not None:
        if not isinstance(out, str) or not out:
            raise UsageError("-o/--out must be a path")
        values["out"] = out
    fmt = get("format") or get("output_format")
    if fmt is not None:
        fmt = {"jpg": "jpeg"}.get(str(fmt).lower(), str(fmt).lower())
        if fmt not in FORMATS:
            raise UsageError(f"--format must be one of png, jpeg, webp (got {fmt!r})")
    if out and not out.endswith(("/", os.sep)):
        ext = os.path.splitext(out)[1].lower()
        if ext in OTHER_IMAGE_EXTENSIONS:
            raise UsageError(f"cannot write {ext} files: use .png, .jpg or .webp (-o {out})")
        ext_format = FORMAT_OF_EXTENSION.get(ext)
        if ext_format and fmt and ext_format != fmt:
            raise UsageError(f"-o {out} says {ext_format} but --format says {fmt}")
        fmt = fmt or ext_format
    values["format"] = fmt or "png"
    values["format_set"] = fmt is not None

    image_model = values.get("image_model", DEFAULT_IMAGE_MODEL)
    size = get("size")
    if size is not None:
        size = str(size).strip().lower()
        _check_size(size, image_model, exact=values.get("fit") == "none")
        values["size"] = size
    if get("compression") is not None:
        values["compression"] = _as_int("compression", get("compression"), 0, MAX_COMPRESSION)
        if values["format"] == "png":
            raise UsageError("--compression applies to jpeg and webp only")
    if values.get("background") == "transparent" and values["format"] == "jpeg":
        raise UsageError("--background transparent needs png or webp, not jpeg")

    images = get("image") or ()
    if isinstance(images, str):
        images = (images,)
    if not isinstance(images, (list, tuple)) or not all(isinstance(i, str) and i for i in images):
        raise UsageError("image must be a path or URL, or a list of them")
    if len(images) > MAX_IMAGES:
        raise UsageError(f"at most {MAX_IMAGES} reference images (got {len(images)})")
    values["images"] = tuple(images)
    if get("mask") is not None:
        if not images:
            raise UsageError("--mask needs at least one -i/--image to apply to")
        values["mask"] = str(get("mask"))
    route_limit = _CodexImagesRoute.capabilities.max_images  # --route images names this one
    if values.get("route") == "images" and len(images) > route_limit:
        raise UsageError(f"the images route takes at most {route_limit} reference "
                         f"images (got {len(images)})")

    count = _as_int("count", get("count") if get("count") is not None else _Job.count, 1,
                    MAX_COUNT)
    values["count"] = count
    parallel = get("parallel")
    values["parallel"] = (_as_int("parallel", parallel, 1, MAX_PARALLEL) if parallel is not None
                          else min(count, PARALLEL_DEFAULT_CAP))
    if get("retries") is not None:
        values["retries"] = _as_int("retries", get("retries"), 0, MAX_RETRIES)
    if get("timeout") is not None:
        values["timeout"] = _as_seconds("timeout", get("timeout"), allow_zero=False)
    if get("stall_timeout") is not None:
        values["stall_timeout"] = _as_seconds("stall_timeout", get("stall_timeout"),
                                              allow_zero=True)
    for name in ("base_url", "config"):
        if get(name) is not None:
            values[name] = str(get(name))
    if values.get("base_url") and not re.match(r"(?i)^https?://[^/\s]+", values["base_url"]):
        raise UsageError(f"--base-url must be an http(s) URL (got {values['base_url']!r})")
    for name in ("force", "quiet", "json", "dry_run", "meta", "preview"):
        if get(name):
            values[name] = True
    if get("no_progress"):
        values["progress"] = False
    return _Job(**values)


# Help #############################################################################################

_HELP_VALUES = dict(
    fit_sides=f"{MIN_FIT_SIDE}..{MAX_EDGE}", pixels=f"{MAX_PIXELS:,}", edge=MAX_EDGE,
    model_pixels=f"{MIN_PIXELS:,}..{MAX_PIXELS:,}", fit=_Job.fit, formats=", ".join(FORMATS),
    compression=MAX_COMPRESSION, count=f"{MAX_COUNT} ({_Job.count})",
    parallel=f"{MAX_PARALLEL} (min(count, {PARALLEL_DEFAULT_CAP}))",
    parallel_max=MAX_PARALLEL, backend=f"{', '.join(CHOICES['backend'])} ({_Job.backend}",
    route=f"{', '.join(CHOICES['route'])} ({_Job.route}", model=DEFAULT_MODEL,
    image_model=DEFAULT_IMAGE_MODEL, timeout=f"{DEFAULT_TIMEOUT_S:g}",
    stall_timeout=f"{DEFAULT_STALL_TIMEOUT_S:g}", retries=f"{MAX_RETRIES} ({DEFAULT_RETRIES})",
    **{name: ", ".join(CHOICES[name]) for name in (
        "quality", "background", "moderation", "input_fidelity", "action")})

#: --help, with the limits and defaults filled in from their one definition above.
HELP = """\
usage: imagegen [generate] PROMPT [options]
       imagegen auth status [--json] | login [--open-browser] | logout [--force]
       imagegen batch FILE.jsonl [options]
       imagegen doctor [--json]       is everything ready? one line a check, with the fix
       imagegen mcp [--workspace DIR] | --print-config CLIENT
       imagegen --version | --help

Make an image from a prompt through your ChatGPT subscription (the Codex login in
~/.codex/auth.json) and save it into the current project.

prompt (exactly one):
  PROMPT                    the prompt, as one quoted argument
  -p, --prompt TEXT         the prompt
  --prompt-file FILE        read the prompt from FILE (- = stdin)

output:
  -o, --out PATH            file, or directory (trailing /); default assets/generated/<slug>.<ext>;
                            - writes the image to stdout (a pipe, one image)
  --force                   allow -o to replace an existing file
  --meta                    also write <image>.json with the prompt, models and sizes
  --preview                 show the saved image in the terminal (kitty, Ghostty, iTerm2, WezTerm)
  -q, --quiet               stdout: saved paths only; stderr: errors only
  --json                    stdout: one JSON object
  --no-progress             no live progress line
  --dry-run                 print the request(s) that would be sent and where each image would
                            be saved; no network, no login needed

image:
  --size auto|WxH           (auto) the saved file is exactly WxH (sides {fit_sides}, at most
                            {pixels} pixels): the server is asked for the nearest size it
                            makes and the answer is fitted; with --fit none, WxH must be a
                            size the model makes (gpt-image-2: sides divisible by 16, ratio
                            1:3..3:1, {model_pixels} pixels, long edge <= {edge})
  --fit F                   when the server sends another size: cover (scale, crop the centre),
                            contain (fit inside, padded), none (keep it as it came) ({fit})
  --quality Q               {quality} (auto)
  --background B            {background} (auto); transparent needs png or webp,
                            and is made here from a flat key colour where a route has none
  --format F                {formats} (from the -o extension, else png); alias --output-format
  --compression 0..{compression}      jpeg and webp only
  --moderation M            {moderation}
  -n, --count N             how many images, 1..{count}
  --parallel N              requests in flight, 1..{parallel}

edits:
  -i, --image PATH|URL      reference image (repeatable); makes the request an edit
  --mask PNG                edit mask, same size as the first image (needs -i)
  --input-fidelity F        {input_fidelity}
  --action A                {action}

backend:
  --backend B               {backend}; env IMAGEGEN_BACKEND)
  --route R                 {route}; env IMAGEGEN_ROUTE); codex only
  --model M                 host chat model for the Responses route ({model}; env IMAGEGEN_MODEL)
  --image-model M           image model ({image_model}; env IMAGEGEN_IMAGE_MODEL)
  --base-url URL            override the backend's base URL
  --config PATH             the api backend's key file
  --timeout S               total budget for one image, seconds ({timeout})
  --stall-timeout S         longest silence from the server, seconds ({stall_timeout}; 0 = none)
  --retries N               re-sends after transient failures, 0..{retries}

batch FILE.jsonl (- = stdin): one JSON object a line, {{"prompt": ..., "out": ..., "size": ...}};
  the options above are the defaults for every line; existing outputs are skipped;
  --gallery also writes index.html (thumbnails, prompts, sizes) beside the outputs.

Secrets are never taken from the command line: tokens and keys come from files or the
environment (CODEX_HOME, CODEX_AUTH_FILE, IMAGEGEN_API_KEY, CODEX_API_TOKEN, ...).

exit codes:
  0 every image saved         4 rate limit or quota (the message says when it resets)
  1 internal error (a bug)    5 backend: network, timeout, 5xx, malformed answer
  2 usage: bad arguments      6 no image: refusal or a text-only answer
  3 auth: log in again        7 output: cannot or will not write the path
  130 interrupted
""".format(**_HELP_VALUES)

AUTH_HELP = """\
usage: imagegen auth status [--json]        is there a usable login? (never prints a secret)
       imagegen auth login [--open-browser] ChatGPT device-code login; writes auth.json as
                                            Codex does (shared with Codex)
       imagegen auth logout [--force]       forget what this tool keeps (its quota cache);
                                            --force also removes the ChatGPT login from
                                            auth.json, after a copy in auth.json.bak, which
                                            logs Codex out too

exit codes: 0 done (status: the login is usable), 2 usage, 3 no usable login, 5 network
"""

BATCH_HELP = """\
usage: imagegen batch FILE.jsonl [options]     (FILE = - reads stdin)

One JSON object a line: {{"prompt": "...", "out": "icons/home.png", "size": "1024x1024"}}.
Keys: prompt (required), out, and any generate option by its long name (image as a list).
The command-line options (see imagegen --help) are the defaults for every line; relative
paths count from the current directory. A line whose out exists is skipped, so the same
command resumes an interrupted batch; a line without out is made again on every run.
--parallel N lines in flight (1..{parallel_max}); --json one object a line; --dry-run sends nothing;
--gallery writes index.html, a contact sheet of the outputs, in their common folder.
stdout: one line a prompt, in input order: its path(s), or ERROR <kind>: line <N>: <message>.
""".format(**_HELP_VALUES)


# Names and paths ##################################################################################

def _slugify(prompt: str, limit: int = 48) -> str:
    """ASCII, lower case, runs of other characters as '-', cut at a word, 'image' if empty."""
    import unicodedata
    ascii_text = unicodedata.normalize("NFKD", prompt).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > limit:
        cut = slug[:limit + 1]
        slug = cut[:cut.rfind("-")] if "-" in cut[1:] else slug[:limit]
        slug = slug.strip("-")
    return slug or "image"


def _name_order(path: str) -> tuple:
    """Sort key putting x.png, x-2.png, ..., x-10.png in that order: parallel images claim
    their automatic names as they finish, but are listed as a person would count them."""
    stem, ext = os.path.splitext(path)
    match = re.fullmatch(r"(.*)-(\d+)", stem)
    return (match.group(1), int(match.group(2)), ext) if match else (stem, 1, ext)


def _is_inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _relative_for_display(path: str, cwd: str) -> str:
    """Relative to cwd when inside it, else absolute (the contract's stdout rule)."""
    absolute = os.path.abspath(path)
    if _is_inside(absolute, cwd) and os.path.realpath(absolute) != os.path.realpath(cwd):
        return os.path.relpath(absolute, cwd)
    return absolute


# Image bytes ######################################################################################

@dataclass(frozen=True)
class _ImageInfo:
    format: str
    width: int | None
    height: int | None


def sniff_image(data: bytes) -> _ImageInfo | None:
    """PNG, JPEG or WebP by signature, with the dimensions from the headers; else None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) >= 24 and data[12:16] == b"IHDR":
            return _ImageInfo("png", int.from_bytes(data[16:20], "big"),
                             int.from_bytes(data[20:24], "big"))
        return _ImageInfo("png", None, None)
    if data[:3] == b"\xff\xd8\xff":
        return _ImageInfo("jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _ImageInfo("webp", *_webp_size(data))
    return None


def _jpeg_size(data: bytes) -> tuple[int | None, int | None]:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            position += 1
            continue
        marker = data[position + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            position += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:
            break
        position += 2 + length
    return None, None


def _webp_size(data: bytes) -> tuple[int | None, int | None]:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 " and len(data) >= 30:
        return (int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF)
    return None, None


_BASE64_RE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


def decode_image_base64(text: str | bytes, where: str) -> bytes:
    """Strict base64 of an image; BackendError when it is not base64 or not an image."""
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    raw = raw.strip()
    if not raw or len(raw) % 4 or not _BASE64_RE.fullmatch(raw):
        raise BackendError(f"the {where} holds an image that is not valid base64")
    data = base64.b64decode(raw)
    if sniff_image(data) is None:
        raise BackendError(f"the {where} holds data that is not a PNG, JPEG or WebP image "
                           f"({len(data)} bytes starting {data[:8].hex()})")
    return data


def _compact_base64(value: Any) -> Any:
    """For --dry-run: every base64 payload over 64 characters becomes <base64: N bytes>."""
    if isinstance(value, dict):
        return {key: _compact_base64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_compact_base64(item) for item in value]
    if isinstance(value, str) and len(value) > 64:
        prefix, _, payload = value.rpartition("base64,") if value.startswith("data:") else (
            "", "", value)
        if _BASE64_RE.fullmatch(payload.encode("ascii", "replace")) and len(payload) > 64:
            size = len(payload) * 3 // 4 - payload[-2:].count("=")
            return f"{prefix}{'base64,' if prefix else ''}<base64: {size} bytes>"
    return value


# Pixels: PNG decode, resample, encode #############################################################

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# 40 MP decode to at most 160 MB: far above any generated image (8.3 MP), enough for a
# camera photo; a "bomb" of a few KB claiming 100k x 100k pixels is refused before inflating.
MAX_DECODE_PIXELS = 40_000_000
PNG_COMPRESSION = 6  # zlib's default: within ~5% of level 9's size at a third of the time
THUMBNAIL_SIDE = 256
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of the seven interlace passes
_CHANNELS_OF_COLOR_TYPE = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS_OF_COLOR_TYPE = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16),
                         6: (8, 16)}
_WEIGHT_ONE = 1 << 16  # resampling weights are fixed point: the weights of a pixel sum to this


class PixelsError(ValueError):
    """Bytes that are not a PNG this module can read, or pixels it cannot work with. Callers
    turn it into the exit code of whoever sent the bytes (the server: 5, the user: 2)."""


@dataclass(frozen=True)
class Raster:
    """8-bit pixels: `channels` is 1 (grey), 2 (grey, alpha), 3 (RGB) or 4 (RGBA), and each
    of the `height` rows holds width * channels bytes.

    This section is enough of an image library, in the standard library, to deliver what
    was asked (an exact size, real transparency, thumbnails, previews): pure functions, no
    I/O. Its speed comes from whole-row work (zlib, slicing, bytes.translate, and integers
    that hold a row with a lane per sample); Python loops over pixels remain only where a
    row cannot be done at once (the Average and Paeth filters, alpha at soft edges)."""

    width: int
    height: int
    channels: int
    rows: tuple

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    def pixel(self, x: int, y: int) -> tuple:
        start = x * self.channels
        return tuple(self.rows[y][start:start + self.channels])


def _lanes(byte_count: int, pattern: bytes) -> int:
    return int.from_bytes(pattern * byte_count, "little")


class _RowMath:
    """Bytewise arithmetic on a row held as one little-endian integer (SWAR): a carry never
    crosses from one byte into the next, so a row is added, subtracted or averaged at once."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.high = _lanes(length, b"\x80")
        self.low = _lanes(length, b"\x7f")
        self.mask = (1 << (8 * length)) - 1

    def add(self, x: int, y: int) -> int:
        return ((x & self.low) + (y & self.low)) ^ ((x ^ y) & self.high)

    def sub(self, x: int, y: int) -> int:
        return ((x | self.high) - (y & self.low)) ^ ((x ^ y ^ self.high) & self.high)

    def average(self, x: int, y: int) -> int:
        return (x & y) + (((x ^ y) >> 1) & self.low)

    def prefix_sum(self, x: int, stride: int) -> int:
        """Running sum (mod 256) of every stride-th byte: the Sub filter undone in
        log2(length / stride) whole-row additions."""
        shift = 8 * stride
        while shift < 8 * self.length:
            x = self.add(x, (x << shift) & self.mask)
            shift *= 2
        return x


def _unfilter_average(line: bytes, prior: bytes, bpp: int) -> bytearray:
    out = bytearray(len(line))
    for channel in range(bpp):
        left, result = 0, []
        append = result.append
        for raw, up in zip(line[channel::bpp], prior[channel::bpp]):
            left = (raw + ((left + up) >> 1)) & 255
            append(left)
        out[channel::bpp] = bytes(result)
    return out


def _unfilter_paeth(line: bytes, prior: bytes, bpp: int) -> bytearray:
    out = bytearray(len(line))
    for channel in range(bpp):
        ups = prior[channel::bpp]
        left, result = 0, []
        append = result.append
        for raw, up, up_left in zip(line[channel::bpp], ups, b"\0" + ups[:-1]):
            pa = up - up_left  # |p - left| where p = left + up - up_left
            pb = left - up_left  # |p - up|
            pc = pa + pb  # |p - up_left|
            if pa < 0:
                pa = -pa
            if pb < 0:
                pb = -pb
            if pc < 0:
                pc = -pc
            if pa <= pb and pa <= pc:
                left = (raw + left) & 255
            elif pb <= pc:
                left = (raw + up) & 255
            else:
                left = (raw + up_left) & 255
            append(left)
        out[channel::bpp] = bytes(result)
    return out


def _unfilter(data: bytes, offset: int, rows: int, stride: int, bpp: int) -> tuple[list, int]:
    """The `rows` scanlines of `stride` bytes (plus the filter byte) starting at offset in
    the inflated data, unfiltered; and the offset after them."""
    math = _RowMath(stride)
    prior = bytes(stride)
    lines = []
    for _ in range(rows):
        kind = data[offset]
        line = data[offset + 1:offset + 1 + stride]
        offset += 1 + stride
        if kind == 0:
            current = line
        elif kind == 1:
            current = math.prefix_sum(int.from_bytes(line, "little"), bpp).to_bytes(
                stride, "little")
        elif kind == 2:
            current = math.add(int.from_bytes(line, "little"),
                               int.from_bytes(prior, "little")).to_bytes(stride, "little")
        elif kind == 3:
            current = bytes(_unfilter_average(line, prior, bpp))
        elif kind == 4:
            current = bytes(_unfilter_paeth(line, prior, bpp))
        else:
            raise PixelsError(f"PNG scanline has an unknown filter type {kind}")
        lines.append(current)
        prior = current
    return lines, offset


@dataclass(frozen=True)
class _PNGHeader:
    width: int
    height: int
    depth: int
    color_type: int
    interlaced: bool
    palette: bytes  # RGB triples (colour type 3)
    transparency: bytes  # the tRNS chunk as stored


def _read_chunks(data: bytes, verify_crc: bool) -> tuple[_PNGHeader, bytes]:
    import zlib
    if data[:8] != PNG_SIGNATURE:
        raise PixelsError("not a PNG (the signature is missing)")
    position, header, palette, transparency = 8, None, b"", b""
    idat: list = []
    idat_done = False
    ended = False
    while position < len(data):
        if position + 12 > len(data):
            raise PixelsError("PNG is truncated inside a chunk header")
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        end = position + 8 + length
        if length > 0x7FFFFFFF or end + 4 > len(data):
            raise PixelsError(f"PNG is truncated inside the {kind!r} chunk")
        body = data[position + 8:end]
        critical = not kind[0] & 0x20
        if verify_crc or critical and kind != b"IDAT":
            crc = int.from_bytes(data[end:end + 4], "big")
            if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
                raise PixelsError(f"PNG {str(kind, 'latin-1')} chunk fails its CRC check")
        position = end + 4
        if header is None and kind != b"IHDR":
            raise PixelsError("PNG does not start with an IHDR chunk")
        if kind == b"IHDR":
            header = _parse_ihdr(body)
        elif kind == b"PLTE":
            if len(body) % 3 or not 3 <= len(body) <= 768:
                raise PixelsError("PNG palette (PLTE) has a bad length")
            palette = body
        elif kind == b"tRNS":
            transparency = body
        elif kind == b"IDAT":
            if idat_done:
                raise PixelsError("PNG IDAT chunks are not consecutive")
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
        elif critical:
            raise PixelsError(f"PNG has an unknown critical chunk {kind!r}")
        if idat and kind != b"IDAT":
            idat_done = True
    if header is None:
        raise PixelsError("PNG has no IHDR chunk")
    if not idat:
        raise PixelsError("PNG has no image data (IDAT)")
    if not ended:
        raise PixelsError("PNG is truncated (no IEND chunk)")
    if header.color_type == 3 and not palette:
        raise PixelsError("palette PNG has no PLTE chunk")
    return replace(header, palette=palette, transparency=transparency), b"".join(idat)


def _parse_ihdr(body: bytes) -> _PNGHeader:
    if len(body) != 13:
        raise PixelsError("PNG IHDR chunk has a bad length")
    width = int.from_bytes(body[0:4], "big")
    height = int.from_bytes(body[4:8], "big")
    depth, color_type, compression, filtering, interlace = body[8:13]
    if not width or not height or width > 0x7FFFFFFF or height > 0x7FFFFFFF:
        raise PixelsError(f"PNG has an impossible size {width}x{height}")
    if depth not in _DEPTHS_OF_COLOR_TYPE.get(color_type, ()):
        raise PixelsError(f"PNG has an invalid colour type {color_type} / bit depth {depth}")
    if compression or filtering or interlace > 1:
        raise PixelsError("PNG uses an unknown compression, filter or interlace method")
    return _PNGHeader(width, height, depth, color_type, bool(interlace), b"", b"")


def _pass_sizes(header: _PNGHeader) -> list:
    """(x0, y0, dx, dy, width, height) of each non-empty pass (one for a plain PNG)."""
    if not header.interlaced:
        return [(0, 0, 1, 1, header.width, header.height)]
    sizes = []
    for x0, y0, dx, dy in _ADAM7:
        width = (header.width - x0 + dx - 1) // dx if header.width > x0 else 0
        height = (header.height - y0 + dy - 1) // dy if header.height > y0 else 0
        if width and height:
            sizes.append((x0, y0, dx, dy, width, height))
    return sizes


def _unpack_tables(depth: int, scale: bool) -> list:
    """For bit depths below 8: one bytes.translate table per sample position in a byte."""
    per_byte, top = 8 // depth, (1 << depth) - 1
    factor = 255 // top if scale else 1
    return [bytes(((value >> (8 - depth * (k + 1))) & top) * factor for value in range(256))
            for k in range(per_byte)]


class _SampleReader:
    """Turns unfiltered scanlines into 8-bit rows of the output channel count."""

    def __init__(self, header: _PNGHeader) -> None:
        self.header = header
        color_type, depth, trns = header.color_type, header.depth, header.transparency
        self.samples = _CHANNELS_OF_COLOR_TYPE[color_type]
        self.unpack = _unpack_tables(depth, color_type == 0) if depth < 8 else None
        self.key = None  # the tRNS colour of grey or RGB, as bytes in the stored depth
        self.channels = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}[color_type]
        if color_type == 3:
            palette = header.palette
            alphas = trns[:len(palette) // 3]
            self.tables = [bytes(palette[index * 3 + c] if index * 3 < len(palette) else 0
                                 for index in range(256)) for c in range(3)]
            if alphas and alphas.count(255) != len(alphas):
                full = alphas + b"\xff" * (256 - len(alphas))
                self.tables.append(full)
            self.channels = len(self.tables)
        elif color_type in (0, 2) and len(trns) == 2 * self.samples:
            top = (1 << depth) - 1
            values = [int.from_bytes(trns[i:i + 2], "big") & top for i in range(0, len(trns), 2)]
            if depth == 16:
                self.key = [value.to_bytes(2, "big") for value in values]
            elif depth == 8:
                self.key = [bytes([value]) for value in values]
            else:
                self.key = [bytes([value * (255 // top)]) for value in values]
            self.channels += 1

    def row(self, line: bytes, width: int) -> bytes:
        header = self.header
        if self.unpack is not None:
            per_byte = len(self.unpack)
            samples = bytearray(len(line) * per_byte)
            for k, table in enumerate(self.unpack):
                samples[k::per_byte] = line.translate(table)
            line = bytes(samples[:width])
        planes16 = None
        if header.depth == 16:
            if self.key is not None:
                planes16 = [line[c * 2:: 2 * self.samples] for c in range(self.samples)] + [
                    line[c * 2 + 1:: 2 * self.samples] for c in range(self.samples)]
            line = line[0::2]
        if header.color_type == 3:
            if len(line) > width:
                line = line[:width]
            out = bytearray(width * self.channels)
            for c, table in enumerate(self.tables):
                out[c::self.channels] = line.translate(table)
            return bytes(out)
        if self.key is None:
            return line
        # grey or RGB with a tRNS colour: alpha 0 where every sample equals the key
        samples = self.samples
        if planes16 is not None:
            planes = planes16
            keys = [k[0:1] for k in self.key] + [k[1:2] for k in self.key]
        else:
            planes = [line[c::samples] for c in range(samples)]
            keys = self.key
        match = -1
        for plane, key in zip(planes, keys):
            table = bytearray(256)
            table[key[0]] = 1
            match &= int.from_bytes(plane.translate(table), "little")
        alpha = match.to_bytes(width, "little").translate(bytes([255, 0]) + bytes(254))
        out = bytearray(width * (samples + 1))
        for c in range(samples):
            out[c::samples + 1] = line[c::samples]
        out[samples::samples + 1] = alpha
        return bytes(out)


def decode_png(data: bytes, *, verify_crc: bool = True,
               max_pixels: int = MAX_DECODE_PIXELS) -> Raster:
    """Every standard PNG (colour types 0, 2, 3, 4, 6; bit depths 1-16; Adam7 or not) as an
    8-bit Raster: palettes become RGB, or RGBA with tRNS; a grey or RGB tRNS colour adds an
    alpha channel; 16-bit samples keep their high byte (as libpng's strip_16 and Pillow do).
    PixelsError for anything malformed, including a damaged zlib stream."""
    import zlib
    header, compressed = _read_chunks(data, verify_crc)
    if header.width * header.height > max_pixels:
        raise PixelsError(f"PNG is {header.width}x{header.height}: more than "
                          f"{max_pixels:,} pixels")
    samples = _CHANNELS_OF_COLOR_TYPE[header.color_type]
    bits = header.depth * samples
    bpp = max(1, bits // 8)
    passes = _pass_sizes(header)
    expected = sum(height * (1 + (width * bits + 7) // 8) for *_, width, height in passes)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, expected)
    except zlib.error as error:
        raise PixelsError(f"PNG image data is corrupt (zlib: {error})") from None
    if len(raw) < expected:
        raise PixelsError(f"PNG image data is truncated ({len(raw):,} of {expected:,} bytes)")
    reader = _SampleReader(header)
    channels = reader.channels
    if not header.interlaced:
        lines, _ = _unfilter(raw, 0, header.height, (header.width * bits + 7) // 8, bpp)
        rows = tuple(reader.row(line, header.width) for line in lines)
        return Raster(header.width, header.height, channels, rows)
    full = [bytearray(header.width * channels) for _ in range(header.height)]
    offset = 0
    for x0, y0, dx, dy, width, height in passes:
        lines, offset = _unfilter(raw, offset, height, (width * bits + 7) // 8, bpp)
        for index, line in enumerate(lines):
            row, target = reader.row(line, width), full[y0 + index * dy]
            for c in range(channels):
                target[x0 * channels + c::dx * channels] = row[c::channels]
    return Raster(header.width, header.height, channels, tuple(bytes(row) for row in full))


def _convert_raster(raster: Raster, channels: int) -> Raster:
    """The same pixels with 1, 2, 3 or 4 channels: grey is copied into R, G and B, a missing
    alpha is 255, and an alpha dropped is dropped (not composited). Colour to grey is refused."""
    source = raster.channels
    if channels == source:
        return raster
    if channels not in (1, 2, 3, 4) or channels < 3 <= source:
        raise PixelsError(f"cannot convert {source} channels to {channels}")
    width = raster.width
    colour_in, colour_out = (1 if source < 3 else 3), (1 if channels < 3 else 3)
    opaque = b"\xff" * width
    rows = []
    for row in raster.rows:
        out = bytearray(width * channels)
        for c in range(colour_out):
            out[c::channels] = row[(c if colour_in == 3 else 0)::source]
        if channels in (2, 4):
            out[channels - 1::channels] = row[source - 1::source] if source in (2, 4) else opaque
        rows.append(bytes(out))
    return Raster(width, raster.height, channels, tuple(rows))


def crop(raster: Raster, left: int, top: int, width: int, height: int) -> Raster:
    """The width x height rectangle whose top-left pixel is (left, top)."""
    if (left < 0 or top < 0 or width < 1 or height < 1 or left + width > raster.width
            or top + height > raster.height):
        raise PixelsError(f"crop {width}x{height}+{left}+{top} is outside the "
                          f"{raster.width}x{raster.height} image")
    start, end = left * raster.channels, (left + width) * raster.channels
    return Raster(width, height, raster.channels,
                  tuple(row[start:end] for row in raster.rows[top:top + height]))


def _axis_weights(start: float, end: float, source: int, target: int) -> list:
    """Per output pixel along one axis: (first source pixel, integer weights summing to
    _WEIGHT_ONE). A reduction averages exactly the area each output pixel covers (a box
    filter, correct for any ratio); an enlargement interpolates linearly between the two
    nearest source pixel centres."""
    scale = (end - start) / target
    result = []
    for index in range(target):
        if scale >= 1.0:
            low = start + index * scale
            high = low + scale
            first = max(0, min(source - 1, int(math.floor(low + 1e-9))))
            last = max(first + 1, min(source, int(math.ceil(high - 1e-9))))
            weights, previous = [], 0
            for pixel in range(first, last):
                covered = 1.0 if pixel == last - 1 else (min(high, pixel + 1) - low) / scale
                cumulative = round(covered * _WEIGHT_ONE)
                weights.append(cumulative - previous)
                previous = cumulative
        else:
            centre = start + (index + 0.5) * scale - 0.5
            first = int(math.floor(centre))
            fraction = centre - first
            if first < 0:
                first, fraction = 0, 0.0
            if first >= source - 1:
                first, fraction = source - 1, 0.0
            second = round(fraction * _WEIGHT_ONE)
            weights = [_WEIGHT_ONE - second, second] if second else [_WEIGHT_ONE]
        result.append((first, weights))
    return result


def _is_identity(weights: list) -> bool:
    first = weights[0][0]
    return all(ws == [_WEIGHT_ONE] and start == first + index
               for index, (start, ws) in enumerate(weights))


def _premultiply(raster: Raster, undo: bool = False) -> Raster:
    """Colour times alpha (rounded, as Pillow's RGBa), or back: averaging premultiplied
    colour keeps invisible pixels from bleeding into visible ones."""
    channels, width = raster.channels, raster.width
    colours, rows = channels - 1, []
    for row in raster.rows:
        alphas = row[channels - 1::channels]
        if alphas.count(255) == width:
            rows.append(row)
            continue
        out = bytearray(row)
        for x, alpha in enumerate(alphas):
            if alpha == 255:
                continue
            base = x * channels
            for c in range(base, base + colours):
                if not alpha:
                    out[c] = 0
                elif undo:
                    out[c] = min(255, (out[c] * 255 + alpha // 2) // alpha)
                else:
                    out[c] = (out[c] * alpha + 127) // 255
        rows.append(bytes(out))
    return replace(raster, rows=tuple(rows))


def resample(raster: Raster, width: int, height: int,
             box: tuple | None = None) -> Raster:
    """The part of the image inside box (left, top, right, bottom, in source pixels, may be
    fractional; default the whole image) scaled to width x height: an exact area average
    where it shrinks, linear interpolation where it grows, alpha premultiplied.

    Rows are big integers with a lane per sample, so a weighted sum of rows or of columns is
    a handful of integer operations, whatever the width."""
    if width < 1 or height < 1:
        raise PixelsError(f"cannot resample to {width}x{height}")
    left, top, right, bottom = box or (0, 0, raster.width, raster.height)
    if not (0 <= left < right <= raster.width and 0 <= top < bottom <= raster.height):
        raise PixelsError(f"box {box} is outside the {raster.width}x{raster.height} image")
    columns = _axis_weights(left, right, raster.width, width)
    lines = _axis_weights(top, bottom, raster.height, height)
    premultiplied = raster.has_alpha and any(
        row[raster.channels - 1::raster.channels].count(255) != raster.width
        for row in raster.rows[lines[0][0]:lines[-1][0] + len(lines[-1][1])])
    if premultiplied:
        raster = _premultiply(raster)
    channels = raster.channels
    row_bytes = raster.width * channels
    if _is_identity(lines):
        vertical, sample_bytes, significant = raster.rows[lines[0][0]:][:height], 1, 1
    else:
        vertical, sample_bytes, significant = _resample_rows(raster.rows, row_bytes, lines), 4, 3
    if _is_identity(columns) and sample_bytes == 1:
        start = columns[0][0] * channels
        rows = tuple(row[start:start + width * channels] for row in vertical)
    else:
        rows = _resample_columns(vertical, raster.width, channels, columns, sample_bytes,
                                 significant)
    result = Raster(width, height, channels, rows)
    return _premultiply(result, undo=True) if premultiplied else result


def _resample_rows(rows: tuple, row_bytes: int, lines: list) -> list:
    """Weighted sums of whole rows: each result row holds 4-byte lanes of sample * 2**16."""
    spread = bytearray(4 * row_bytes)
    numbers: dict = {}
    result = []
    for first, weights in lines:
        total = 0
        for offset, weight in enumerate(weights):
            number = numbers.get(first + offset)
            if number is None:
                spread[0::4] = rows[first + offset]
                number = numbers[first + offset] = int.from_bytes(spread, "little")
            total += weight * number
        result.append(total.to_bytes(4 * row_bytes, "little"))
        for index in [index for index in numbers if index < first]:
            del numbers[index]
    return result


def _resample_columns(rows: list, source_width: int, channels: int, columns: list,
                      sample_bytes: int, significant: int) -> tuple:
    """Weighted sums of whole columns (every row at once), rounded to 8 bits. A sample of
    the rows is `sample_bytes` wide, of which the low `significant` bytes carry its value
    (already times 2**16 when they come from _resample_rows)."""
    height = len(rows)
    lane = 4 if sample_bytes == 1 else 8  # room for 255 * 2**16, or for 255 * 2**32
    shift_bytes = 2 if sample_bytes == 1 else 4
    joined = b"".join(rows)
    stride = source_width * channels * sample_bytes
    spread = bytearray(lane * channels * height)
    step = lane * channels
    half = _lanes(channels * height, bytes(shift_bytes - 1) + b"\x80" + bytes(lane - shift_bytes))
    width = len(columns)
    out = bytearray(width * channels * height)
    out_stride = width * channels
    numbers: dict = {}
    for x, (first, weights) in enumerate(columns):
        total = half
        for offset, weight in enumerate(weights):
            number = numbers.get(first + offset)
            if number is None:
                base = (first + offset) * channels * sample_bytes
                for c in range(channels):
                    for byte in range(significant):
                        spread[c * lane + byte::step] = joined[
                            base + c * sample_bytes + byte::stride]
                number = numbers[first + offset] = int.from_bytes(spread, "little")
            total += weight * number
        packed = total.to_bytes(lane * channels * height, "little")
        for c in range(channels):
            out[x * channels + c::out_stride] = packed[c * lane + shift_bytes::step]
        for index in [index for index in numbers if index < first]:
            del numbers[index]
    return tuple(bytes(out[y * out_stride:(y + 1) * out_stride]) for y in range(height))


def _size_text(width: int, height: int) -> str:
    return f"{width}x{height}"


def cover(raster: Raster, width: int, height: int) -> tuple[Raster, str]:
    """Scaled to cover width x height and centre-cropped to exactly that; and what was done."""
    source = _size_text(raster.width, raster.height)
    if (raster.width, raster.height) == (width, height):
        return raster, f"kept {source}"
    scale = max(width / raster.width, height / raster.height)
    box_width, box_height = min(raster.width, width / scale), min(raster.height, height / scale)
    left, top = (raster.width - box_width) / 2, (raster.height - box_height) / 2
    result = resample(raster, width, height, (left, top, left + box_width, top + box_height))
    scaled = (max(width, round(raster.width * scale)), max(height, round(raster.height * scale)))
    if scaled == (width, height):
        return result, f"scaled {source} to {_size_text(width, height)}"
    return result, (f"scaled {source} to {_size_text(*scaled)} and cropped the centre "
                    f"{_size_text(width, height)}")


def contain(raster: Raster, width: int, height: int,
            background: tuple | None = None) -> tuple[Raster, str]:
    """Scaled to fit inside width x height and centred on a canvas of exactly that size,
    padded with transparency (background None: the result is RGBA) or with an opaque
    (r, g, b) colour; and what was done."""
    source = _size_text(raster.width, raster.height)
    scale = min(width / raster.width, height / raster.height)
    fitted_width = min(width, max(1, round(raster.width * scale)))
    fitted_height = min(height, max(1, round(raster.height * scale)))
    fitted = raster
    if (fitted_width, fitted_height) != (raster.width, raster.height):
        fitted = resample(raster, fitted_width, fitted_height)
    done = (f"kept {source}" if fitted is raster
            else f"scaled {source} to {_size_text(fitted_width, fitted_height)}")
    if (fitted_width, fitted_height) == (width, height):
        return fitted, done
    if background is None:
        fitted, pad, padding = _convert_raster(fitted, 4), b"\0\0\0\0", "transparency"
    else:
        red, green, blue = (int(value) for value in background)
        channels = 4 if fitted.has_alpha else 3
        fitted = _convert_raster(fitted, channels)
        pad = bytes((red, green, blue, 255)[:channels])
        padding = f"#{red:02x}{green:02x}{blue:02x}"
    left, top = (width - fitted_width) // 2, (height - fitted_height) // 2
    blank = pad * width
    before, after = pad * left, pad * (width - fitted_width - left)
    rows = ([blank] * top + [before + row + after for row in fitted.rows]
            + [blank] * (height - fitted_height - top))
    return (Raster(width, height, fitted.channels, tuple(rows)),
            f"{done}, centred on {_size_text(width, height)} and padded with {padding}")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib
    return (len(body).to_bytes(4, "big") + kind + body
            + (zlib.crc32(kind + body) & 0xFFFFFFFF).to_bytes(4, "big"))


_FILTER_COST = bytes(min(value, 256 - value) for value in range(256))


def encode_png(raster: Raster, level: int = PNG_COMPRESSION) -> bytes:
    """An 8-bit PNG (grey, grey+alpha, RGB or RGBA as the raster has), not interlaced. Each
    row gets the filter among None, Sub, Up and Average whose bytes are smallest as signed
    numbers (libpng's heuristic); all four are computed on the whole row at once."""
    import zlib
    channels, stride = raster.channels, raster.width * raster.channels
    math = _RowMath(stride)
    shift = 8 * channels
    parts, prior = [], 0
    for row in raster.rows:
        number = int.from_bytes(row, "little")
        left = (number << shift) & math.mask
        best, best_cost = b"\0" + row, sum(row.translate(_FILTER_COST))
        for kind, filtered in ((1, math.sub(number, left)), (2, math.sub(number, prior)),
                               (3, math.sub(number, math.average(left, prior)))):
            candidate = filtered.to_bytes(stride, "little")
            cost = sum(candidate.translate(_FILTER_COST))
            if cost < best_cost:
                best, best_cost = bytes((kind,)) + candidate, cost
        parts.append(best)
        prior = number
    compressed = zlib.compress(b"".join(parts), level)
    header = (raster.width.to_bytes(4, "big") + raster.height.to_bytes(4, "big")
              + bytes((8, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, 0)))
    step = 1 << 20
    return b"".join([PNG_SIGNATURE, _png_chunk(b"IHDR", header)]
                    + [_png_chunk(b"IDAT", compressed[start:start + step])
                       for start in range(0, len(compressed), step)]
                    + [_png_chunk(b"IEND", b"")])


def png_thumbnail(data: bytes, long_side: int = THUMBNAIL_SIDE) -> bytes:
    """A PNG whose longer side is at most long_side (a smaller image is re-encoded as is)."""
    return encode_png(_shrunk(decode_png(data), long_side))


def _shrunk(raster: Raster, long_side: int) -> Raster:
    """The raster scaled down so that its longer side is at most long_side."""
    longest = max(raster.width, raster.height)
    if longest <= long_side:
        return raster
    scale = long_side / longest
    return resample(raster, max(1, round(raster.width * scale)),
                    max(1, round(raster.height * scale)))

def _border_pixels(raster: Raster, band: int = 2) -> list:
    """RGB of the pixels within `band` of the edge (every one; rows at once)."""
    rgb = _convert_raster(raster, 3) if raster.channels < 3 else raster
    channels, width, height = rgb.channels, rgb.width, rgb.height
    band = max(1, min(band, width // 2 or 1, height // 2 or 1))
    pixels = []
    for y, row in enumerate(rgb.rows):
        if y < band or y >= height - band:
            xs: Iterable = range(width)
        else:
            xs = [*range(band), *range(max(band, width - band), width)]
        for x in xs:
            pixels.append(tuple(row[x * channels:x * channels + 3]))
    return pixels


def remove_chroma_key(raster: Raster, key: tuple | None = None) -> tuple[Raster, str]:
    """RGBA with a flat key colour (green, magenta...) made transparent; and what was done.

    The key is the median of the border unless given. Pixels near the key become fully
    transparent; pixels within two of them form the soft edge, where alpha is how far the
    pixel has moved from the key towards the most solid colour next to it, and that colour is
    taken back out of the key (un-premultiplied), then any key tint left is suppressed
    (de-spill): anti-aliased borders keep their softness without a key-coloured halo.
    PixelsError when the border is not a flat colour."""
    border = _border_pixels(raster)
    if key is None:
        key = tuple(sorted(pixel[c] for pixel in border)[len(border) // 2] for c in range(3))
    key = tuple(int(value) for value in key)
    distances = sorted(max(abs(p[0] - key[0]), abs(p[1] - key[1]), abs(p[2] - key[2]))
                       for p in border)
    hex_key = "#{:02x}{:02x}{:02x}".format(*key)
    if distances[len(distances) * 6 // 10] > 48:
        raise PixelsError(f"the image border is not a flat colour (median {hex_key}); "
                          "there is no chroma key to remove")
    # what still counts as background: the border's own noise, with room for compression
    noise = distances[len(distances) * 9 // 10]
    tolerance = min(96, max(16, noise + 12))
    source = raster if raster.channels == 4 else _convert_raster(raster, 4)
    width, height = source.width, source.height
    full = (1 << (8 * width)) - 1
    tables = []
    for value in key:
        table = bytearray(256)
        for level in range(max(0, value - tolerance), min(255, value + tolerance) + 1):
            table[level] = 1
        tables.append(bytes(table))
    keyed = []  # per row: an integer with byte 1 where the pixel is background
    for row in source.rows:
        mask = full
        for c in range(3):
            mask &= int.from_bytes(row[c::4].translate(tables[c]), "little")
        keyed.append(mask)
    spread = []  # background grown by two pixels sideways...
    for mask in keyed:
        grown = mask | (mask << 8) | (mask >> 8) | (mask << 16) | (mask >> 16)
        spread.append(grown & full)
    spill = [c for c in range(3) if key[c] >= max(key) - 16 and key[c] >= 128]
    plain = [c for c in range(3) if c not in spill]
    rows, edge_count, clear_count = [], 0, 0
    for y, row in enumerate(source.rows):
        mask = keyed[y]
        near = 0
        for other in spread[max(0, y - 2):y + 3]:  # ...and up and down
            near |= other
        mask_bytes = mask.to_bytes(width, "little")
        clear_count += mask_bytes.count(1)
        out = bytearray(row)
        if row[3::4].count(255) == width:
            out[3::4] = mask_bytes.translate(bytes([255, 0]) + bytes(254))
        else:  # an alpha that was already there is kept where the key does not clear it
            out[3::4] = bytes(0 if cleared else alpha
                              for alpha, cleared in zip(row[3::4], mask_bytes))
        for c in range(3):
            colour = int.from_bytes(row[c::4], "little") & (full ^ (mask * 255))
            out[c::4] = colour.to_bytes(width, "little")
        edge = (near & ~mask & full).to_bytes(width, "little")
        x = edge.find(1)
        while x >= 0:
            edge_count += 1
            out[x * 4:x * 4 + 4] = _unmix_pixel(source, x, y, key, tolerance, noise, spill,
                                                plain)
            x = edge.find(1, x + 1)
        rows.append(bytes(out))
    total = width * height
    return (Raster(width, height, 4, tuple(rows)),
            f"removed the chroma key {hex_key}: {100 * clear_count / total:.0f}% transparent, "
            f"{edge_count} soft edge pixels")


def _unmix_pixel(source: Raster, x: int, y: int, key: tuple, tolerance: int, noise: int,
                 spill: list, plain: list) -> bytes:
    """One soft-edge pixel: alpha and colour from the key and the most solid neighbour."""
    def offset_of(pixel: tuple) -> tuple:
        return (pixel[0] - key[0], pixel[1] - key[1], pixel[2] - key[2])

    here = source.pixel(x, y)
    moved = offset_of(here)
    distance = max(abs(v) for v in moved)
    solid, solid_distance = moved, distance
    for ny in range(max(0, y - 3), min(source.height, y + 4)):
        row = source.rows[ny]
        for nx in range(max(0, x - 3), min(source.width, x + 4)):
            base = nx * 4
            candidate = (row[base] - key[0], row[base + 1] - key[1], row[base + 2] - key[2])
            candidate_distance = max(abs(v) for v in candidate)
            if candidate_distance > solid_distance:
                solid, solid_distance = candidate, candidate_distance
    length = sum(v * v for v in solid)
    mix = sum(m * s for m, s in zip(moved, solid)) / length if length else 1.0
    mix = max(0.0, min(1.0, mix))
    if (1.0 - mix) * solid_distance <= 2 * noise + 4:  # as solid as the noise can tell
        mix = 1.0
    # alpha fades to 0 on the way into the background's own noise; the colour is unmixed
    # with the share of the subject itself, which puts it back where it was
    alpha_byte = round(min(mix, (distance - tolerance) / max(48, tolerance)) * here[3])
    if alpha_byte <= 0:
        return b"\0\0\0\0"
    colour = [min(255, max(0, round(key[c] + moved[c] / mix))) for c in range(3)]
    if spill and plain:
        cap = max(colour[c] for c in plain)
        for c in spill:
            colour[c] = min(colour[c], cap)
    return bytes((*colour, alpha_byte))


def has_transparency(data: bytes) -> bool:
    """Whether the image really is see-through somewhere: for a PNG, some pixel's alpha (from
    an alpha channel or tRNS) is below 255; for a WebP, its header says it has alpha; a JPEG
    never. PixelsError for a PNG that cannot be read."""
    info = sniff_image(data)
    if info is None or info.format == "jpeg":
        return False
    if info.format == "webp":
        chunk = data[12:16]
        if chunk == b"VP8X":
            return len(data) > 20 and bool(data[20] & 0x10)
        if chunk == b"VP8L":
            return len(data) > 24 and bool(data[24] & 0x10)
        return False
    header, _ = _read_chunks(data, verify_crc=False)
    if header.color_type in (0, 2, 3) and not header.transparency:
        return False
    raster = decode_png(data, verify_crc=False)
    channels = raster.channels
    return raster.has_alpha and any(
        row[channels - 1::channels].count(255) != raster.width for row in raster.rows)


KITTY_CHUNK = 4096  # the kitty protocol's limit for one escape's base64 payload


def preview_protocol(environ: dict, is_tty: bool) -> str | None:
    """Which inline-image protocol ("kitty", "iterm" or None) this terminal speaks, from the
    environment alone (no query is sent): kitty's graphics protocol in kitty and Ghostty,
    iTerm2's inline images in iTerm2 and WezTerm. None when stdout is not a terminal, for
    TERM=dumb, and inside tmux or screen, which swallow these escapes."""
    term = environ.get("TERM", "")
    if not is_tty or term == "dumb" or environ.get("TMUX") or term.startswith(("screen", "tmux")):
        return None
    if term in ("xterm-kitty", "xterm-ghostty") or environ.get("KITTY_WINDOW_ID") \
            or environ.get("TERM_PROGRAM") == "ghostty":
        return "kitty"
    if environ.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        return "iterm"
    return None


def kitty_sequence(png: bytes, columns: int | None = None) -> str:
    """The kitty graphics protocol escapes that display a PNG (a=T: transmit and show,
    f=100: PNG, q=2: no reply), its base64 in chunks of KITTY_CHUNK with m=1 on all but the
    last; `columns` scales it to that many cells wide."""
    payload = base64.b64encode(png).decode("ascii")
    chunks = [payload[i:i + KITTY_CHUNK] for i in range(0, len(payload), KITTY_CHUNK)] or [""]
    first = "a=T,f=100,q=2" + (f",c={int(columns)}" if columns else "")
    parts = []
    for index, chunk in enumerate(chunks):
        more = "1" if index < len(chunks) - 1 else "0"
        keys = (first + ",") if index == 0 else ""
        parts.append(f"\x1b_G{keys}m={more};{chunk}\x1b\\")
    return "".join(parts)


def iterm_sequence(image: bytes, name: str = "", width: str = "auto") -> str:
    """The iTerm2 inline-image escape (OSC 1337 File=inline=1, also read by WezTerm)."""
    arguments = [f"size={len(image)}", "inline=1", "preserveAspectRatio=1", f"width={width}"]
    if name:
        arguments.insert(0, "name=" + base64.b64encode(name.encode("utf-8")).decode("ascii"))
    return (f"\x1b]1337;File={';'.join(arguments)}:"
            f"{base64.b64encode(image).decode('ascii')}\x07")


def preview_sequence(png: bytes, protocol: str | None, name: str = "") -> str:
    """What to write to the terminal to show png inline ('' when protocol is None)."""
    if protocol == "kitty":
        return kitty_sequence(png) + "\n"
    if protocol == "iterm":
        return iterm_sequence(png, name) + "\n"
    return ""


@dataclass(frozen=True)
class GalleryItem:
    """One image of a contact sheet: its path relative to index.html, the prompt, its size,
    and a thumbnail PNG to embed (or None to show the image itself, scaled by the browser);
    or, with no path, a prompt that made no image and why (`failed`)."""

    path: str
    prompt: str
    width: int | None = None
    height: int | None = None
    thumbnail: bytes | None = None
    note: str = ""
    failed: str = ""


def gallery_html(items: Iterable, title: str = "imagegen gallery") -> str:
    """A self-contained contact sheet (index.html): a grid of thumbnails, each linking to its
    image, with the prompt, the size and the path. Every text is escaped; paths are URL-quoted
    relative links."""
    import html
    from urllib.parse import quote
    cards = []
    for item in items:
        if not item.path:
            cards.append(f'<figure class="failed"><div class="none">no image</div><figcaption>'
                         f'<p class="prompt">{html.escape(item.prompt)}</p>'
                         f'<p class="error">{html.escape(item.failed)}</p></figcaption></figure>')
            continue
        href = quote(item.path.replace(os.sep, "/"), safe="/")
        if item.thumbnail is not None:
            source = "data:image/png;base64," + base64.b64encode(item.thumbnail).decode("ascii")
        else:
            source = href
        size = f"{item.width}x{item.height}" if item.width and item.height else ""
        details = "".join(f'<p class="{cls}">{html.escape(text)}</p>'
                          for cls, text in (("size", size), ("note", item.note)) if text)
        cards.append(
            f'<figure><a href="{html.escape(href)}"><img src="{html.escape(source)}" '
            f'alt="{html.escape(item.prompt)}" loading="lazy"></a>'
            f'<figcaption><p class="prompt">{html.escape(item.prompt)}</p>{details}'
            f'<p class="path"><a href="{html.escape(href)}">{html.escape(item.path)}</a></p>'
            f"</figcaption></figure>")
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        "<style>body{font:14px system-ui,sans-serif;margin:1.5rem;background:#fafafa}"
        "main{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1rem}"
        "figure{margin:0;padding:.5rem;background:#fff;border:1px solid #ddd;border-radius:6px}"
        "img{display:block;max-width:100%;max-height:256px;margin:auto;"
        "background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 0 0/16px 16px}"
        "p{margin:.3rem 0;overflow-wrap:anywhere}.size,.path,.note{color:#666;font-size:12px}"
        ".failed{border-color:#e0b4b4;background:#fff6f6}.error{color:#9f3a38;font-size:12px}"
        ".none{display:flex;align-items:center;justify-content:center;height:120px;"
        "color:#9f3a38}"
        "</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n<main>\n" + "\n".join(cards)
        + "\n</main></body></html>\n")


# Server-sent events ###############################################################################

@dataclass(frozen=True)
class SSEEvent:
    event: str
    data: bytes


class SSEDecoder:
    """Incremental server-sent-events framing (WHATWG): bytes in any chunks, events out.

    CR, LF and CRLF end lines (also a CRLF split across chunks); ':' lines are comments;
    several data lines join with '\\n'; one space after the colon is dropped; a blank line
    dispatches. Only the current line and the current event are held.
    """

    def __init__(self, spills: Spills | None = None) -> None:
        self._partial: list[bytes] = []  # pieces of the unfinished line, joined once
        self._partial_length = 0
        self._spills = spills  # where long strings of long data lines go (None: nowhere)
        self._strings: LongStrings | None = None
        self._long_checked = False
        self._data: bytes | bytearray | None = None  # the event's data lines, joined as they come
        self._event = ""
        self._skip_line = False  # the rest of an over-long line that is not data
        self._skip_lf = False
        self._started = False
        self._head = b""  # the first bytes, held until a BOM split across chunks is ruled out

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        if not chunk:
            return events
        if not self._started:
            chunk = self._head + chunk
            if len(chunk) < 3 and b"\xef\xbb\xbf".startswith(chunk):
                self._head = chunk
                return events
            self._started, self._head = True, b""
            if chunk.startswith(b"\xef\xbb\xbf"):
                chunk = chunk[3:]
                if not chunk:
                    return events
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        # bytes.find (memchr) rather than a regex: a 20 MB base64 line must scan at GB/s.
        # Each search resumes past the last hit, so the scan stays linear.
        start, end = 0, len(chunk)
        lf, cr = chunk.find(b"\n"), chunk.find(b"\r")
        while lf >= 0 or cr >= 0:
            if cr < 0 or 0 <= lf < cr:
                stop, start_next = lf, lf + 1
            else:
                stop = cr
                start_next = cr + 2 if chunk[cr + 1:cr + 2] == b"\n" else cr + 1
                if cr + 1 == end:
                    self._skip_lf = True  # a CRLF may be split across chunks
            if self._partial:
                line = self._end_line(chunk[start:stop])
            else:
                line = chunk[start:stop]
            self._line(line, events)
            start = start_next
            if 0 <= lf < start:
                lf = chunk.find(b"\n", start)
            if 0 <= cr < start:
                cr = chunk.find(b"\r", start)
        if start < end:
            self._add(chunk[start:])
        return events

    def _add(self, piece: bytes) -> None:
        """Part of an unfinished line. A data line past SPILL_LINE_BYTES (an image event)
        from then on streams through LongStrings, so the base64 is never held whole. Any
        other line longer than SSE_FIELD_BYTES (an event name, a comment) is dropped."""
        if self._skip_line:
            return
        if self._partial_length + len(piece) > SSE_FIELD_BYTES and not self._long_checked \
                and not (b"".join(self._partial[:4]) + piece[:4]).startswith(b"data"):
            self._partial, self._partial_length, self._skip_line = [], 0, True
            return
        if self._strings is not None:
            piece = self._strings.feed(piece)
        self._partial.append(piece)
        self._partial_length += len(piece)
        if self._spills is not None and not self._long_checked \
                and self._partial_length > SPILL_LINE_BYTES:
            self._long_checked = True
            line = b"".join(self._partial)
            if line.startswith(b"data:"):
                self._strings = LongStrings(self._spills)
                line = self._strings.feed(line)
            self._partial, self._partial_length = [line], len(line)

    def _end_line(self, piece: bytes) -> bytes:
        self._add(piece)
        if self._strings is not None:
            self._partial.append(self._strings.finish())
            self._strings = None
        line = b"".join(self._partial)
        self._partial, self._partial_length, self._long_checked = [], 0, False
        if self._skip_line:
            self._skip_line = False
            return b":"  # a comment: ignored
        return line

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event not followed by a blank line is still dispatched."""
        events: list[SSEEvent] = []
        if self._head:  # a stream shorter than a BOM, and not one
            self._started, self._partial = True, [self._head]
        if self._partial:
            self._line(self._end_line(b""), events)
        self._dispatch(events)
        return events

    def _line(self, line: bytes, events: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line[:1] == b":":
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            # One growing buffer, not a list of lines: a million 2-byte lines must cost
            # about 3 MB, not 50 (F8). The response cap bounds its size.
            if self._data is None:
                self._data = value
            else:
                if not isinstance(self._data, bytearray):
                    self._data = bytearray(self._data)
                self._data += b"\n"
                self._data += value
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")

    def _dispatch(self, events: list[SSEEvent]) -> None:
        if self._data is not None:
            events.append(SSEEvent(self._event, bytes(self._data)))
        self._data = None
        self._event = ""


# Long strings: images decoded as they stream ######################################################

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
SPILL_LINE_BYTES = 1024 * 1024  # only lines longer than this are filtered (image events)
SSE_FIELD_BYTES = 64 * 1024  # an event name or comment line longer than this is dropped
SPILL_STRING_BYTES = 64 * 1024  # strings longer than this leave the JSON
SPILL_MARK = "imagegen-spill:"
SPILL_HEAD_BYTES = 64 * 1024  # enough to find a JPEG's dimensions after its metadata


class _Spill:
    """A JSON string's base64 content, decoded strictly as it arrives into a temporary file
    beside the final image (or into memory when there is no directory)."""

    def __init__(self, directory: str | None,
                 create: Callable[[str], tuple[int, str]] | None = None) -> None:
        import hashlib
        self.directory, self._create = directory, create
        self.path: str | None = None
        self.length = 0
        self.head = b""
        self.valid = True
        self._hash = hashlib.sha256()
        self._file: Any = None
        self._parts: list[bytes] = []
        self._carry = b""
        self._escape = False
        self._padded = False

    def write(self, raw: bytes) -> None:
        """Take raw JSON string content (with its escapes) in any pieces."""
        if not self.valid:
            return
        if self._escape or b"\\" in raw:
            raw = self._unescape(raw)
        data = self._carry + raw if self._carry else raw
        usable = len(data) - len(data) % 4
        block, self._carry = data[:usable], data[usable:]
        if block:
            self._decode(block)

    def _unescape(self, raw: bytes) -> bytes:
        # JSON may escape "/" as "\/"; any other escape cannot be part of base64.
        if self._escape:
            self._escape = False
            if raw[:1] != b"/":
                self.valid = False
                return b""
        pieces = raw.split(b"\\")
        kept = [pieces[0]]
        for index, piece in enumerate(pieces[1:], 1):
            if piece == b"" and index == len(pieces) - 1:
                self._escape = True  # the escaped character comes in the next piece
            elif piece[:1] == b"/":
                kept.append(piece)
            else:
                self.valid = False
                return b""
        return b"".join(kept)

    def _decode(self, block: bytes) -> None:
        import binascii
        if self._padded:
            self.valid = False  # data after the padding
            return
        if block.translate(None, _BASE64_ALPHABET):
            stripped = block.rstrip(b"=")
            if len(block) - len(stripped) > 2 or stripped.translate(None, _BASE64_ALPHABET):
                self.valid = False
                return
            self._padded = True
        self._emit(binascii.a2b_base64(block))

    def _emit(self, data: bytes) -> None:
        if not data:
            return
        self.length += len(data)
        self._hash.update(data)
        if len(self.head) < SPILL_HEAD_BYTES:
            self.head += data[:SPILL_HEAD_BYTES - len(self.head)]
        if self.directory is None:
            self._parts.append(data)
            return
        if self._file is None:
            os.makedirs(self.directory, exist_ok=True)
            if self._create is not None:
                fd, self.path = self._create(self.directory)
            else:
                fd, self.path = _make_temporary(self.directory, ".imagegen-", ".part")
            self._file = os.fdopen(fd, "wb")
        self._file.write(data)

    def close(self) -> None:
        if self._carry or self._escape:
            self.valid = False  # not a whole number of base64 quads
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.close()
        if self.path:
            try:
                os.unlink(self.path)
            except OSError:
                pass

    @property
    def data(self) -> bytes:
        """The decoded bytes (memory mode), or read back from the file."""
        if self.path is None:
            return b"".join(self._parts)
        with open(self.path, "rb") as handle:
            return handle.read()

    def sha256(self) -> str:
        return self._hash.hexdigest()


class Spills:
    """The long strings taken out of one answer, by placeholder."""

    def __init__(self, directory: str | None = None,
                 create: Callable[[str], tuple[int, str]] | None = None) -> None:
        self.directory, self.create = directory, create
        self.items: list[_Spill] = []
        self.claimed: set[int] = set()

    def new(self) -> tuple[_Spill, bytes]:
        spill = _Spill(self.directory, self.create)
        self.items.append(spill)
        return spill, f"{SPILL_MARK}{len(self.items) - 1}".encode()

    def claim(self, value: Any) -> _Spill | None:
        """The spill a placeholder names (and keep its file), else None."""
        if not isinstance(value, str) or not value.startswith(SPILL_MARK):
            return None
        try:
            index = int(value[len(SPILL_MARK):])
            spill = self.items[index]
        except (ValueError, IndexError):
            return None
        self.claimed.add(index)
        return spill

    def release(self) -> None:
        """Delete what nobody claimed (partial images, unknown long strings)."""
        for index, spill in enumerate(self.items):
            if index not in self.claimed:
                spill.discard()


class LongStrings:
    """Streams one line of JSON text, replacing each string longer than `limit` bytes with a
    placeholder and handing its content to a Spill; JSON strings never span lines."""

    def __init__(self, spills: Spills, limit: int = SPILL_STRING_BYTES) -> None:
        self.spills, self.limit = spills, limit
        self.in_string = False
        self.escape = False
        self.held: list[bytes] = []
        self.held_length = 0
        self.keep = False  # this string is not base64: never spill it
        self.spill: _Spill | None = None

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        position, end = 0, len(data)
        while position < end:
            if not self.in_string:
                quote = data.find(b'"', position)
                if quote < 0:
                    out.append(data[position:])
                    break
                out.append(data[position:quote + 1])
                position = quote + 1
                self.in_string, self.held, self.held_length, self.keep = True, [], 0, False
                continue
            if self.escape:
                self._take(data[position:position + 1])
                position += 1
                self.escape = False
                continue
            quote = data.find(b'"', position)
            backslash = data.find(b"\\", position, quote if quote >= 0 else end)
            if backslash >= 0:
                self._take(data[position:backslash + 1])
                position = backslash + 1
                self.escape = True
                continue
            if quote < 0:
                self._take(data[position:])
                break
            self._take(data[position:quote])
            position = quote + 1
            self.in_string = False
            if self.spill is not None:
                self.spill.close()
                out.append(self.placeholder + b'"')
                self.spill = None
            else:
                out.extend(self.held)
                out.append(b'"')
            self.held = []
        return b"".join(out)

    def _take(self, raw: bytes) -> None:
        if self.spill is not None:
            self.spill.write(raw)
            return
        self.held.append(raw)
        self.held_length += len(raw)
        if self.held_length > self.limit and not self.keep:
            held = b"".join(self.held)
            if held.replace(b"\\/", b"/").translate(None, _BASE64_ALPHABET):
                self.keep = True  # long text, not base64: it stays in the JSON
                return
            self.spill, self.placeholder = self.spills.new()
            self.spill.write(held)
            self.held, self.held_length = [], 0

    def finish(self) -> bytes:
        """End of the line: a string still open is malformed JSON; give it back as it was."""
        rest = b"".join(self.held) if self.in_string and self.spill is None else b""
        if self.spill is not None:
            self.spill.close()
            rest = self.placeholder
        self.in_string, self.escape, self.held, self.spill = False, False, [], None
        return rest


# Reading answers (pure) ###########################################################################

@dataclass(frozen=True)
class _RawImage:
    """An image as the server sent it, checked, with what the server said about it."""

    data: bytes  # b"" when the image streamed to a file (see spill)
    info: _ImageInfo
    revised_prompt: str | None = None
    model: str | None = None
    size: str | None = None
    spill: _Spill | None = None  # the decoded image in a temporary file beside its final path
    url: str | None = None  # an answer that names the image by URL: fetched after reading

    @property
    def nbytes(self) -> int:
        return self.spill.length if self.spill is not None else len(self.data)

    def sha256(self) -> str:
        import hashlib
        return self.spill.sha256() if self.spill is not None else hashlib.sha256(
            self.data).hexdigest()

    def content(self) -> bytes:
        """All the bytes (read back from the spill file when there is one)."""
        return self.spill.data if self.spill is not None else self.data


def _image_from_spill(spill: _Spill, where: str, **meta: Any) -> _RawImage:
    """A streamed image, checked as strictly as decode_image_base64 checks one in memory."""
    if not spill.valid or spill.length == 0:
        raise BackendError(f"the {where} holds an image that is not valid base64")
    info = sniff_image(spill.head)
    if info is None:
        raise BackendError(f"the {where} holds data that is not a PNG, JPEG or WebP image "
                           f"({spill.length} bytes starting {spill.head[:8].hex()})")
    return _RawImage(data=b"", info=info, spill=spill, **meta)


def _error_fields(payload: Any) -> tuple[str, str]:
    """(code, message) from the error shapes the backends use."""
    if not isinstance(payload, dict):
        return "", str(payload or "")
    error = payload.get("error", payload)
    if isinstance(error, str):
        return error, str(payload.get("error_description") or payload.get("message") or error)
    if not isinstance(error, dict):
        error = payload
    detail = payload.get("detail")
    if isinstance(detail, dict):
        error = detail
    code = error.get("code") or error.get("type") or payload.get("code") or ""
    message = error.get("message") or (detail if isinstance(detail, str) else "") or ""
    return str(code), str(message)


def _is_refusal(code: str, message: str) -> bool:
    """A content-policy refusal (exit 6): final, never retried nor sent elsewhere."""
    lowered = f"{code} {message}".lower()
    return code in CONTENT_POLICY_CODES or any(words in lowered for words in (
        "content policy", "safety system", "usage policy", "usage policies"))


def _route_refusal(code: str, message: str, text: str) -> ImagegenError | None:
    """An answer saying the route cannot do what was asked (not the prompt, not the login):
    route auto may try the other route, and a forced route is a usage error with the fix.
    `text` is the server's words as they should be shown."""
    lowered = message.lower()
    if code == "invalid_input_fidelity_model" or (
            "input_fidelity" in lowered and "not support" in lowered):
        return UsageError(f"this route's image model does not take --input-fidelity ({text}): "
                          f"leave the option out", fallback=True)
    if "transparent background is not supported" in lowered:
        return UsageError(f"this route cannot make a transparent background ({text}): use "
                          f"--route images (or --route auto) on the codex backend, or "
                          f"--backend api", fallback=True)
    if "tool choice 'image_generation' not found" in lowered:
        return AuthError(f"your ChatGPT plan or workspace does not include image generation "
                         f"in Codex (the server said: {text}); the Free plan does not")
    return None


def _failure_error(code: str, message: str, where: str) -> ImagegenError:
    """Map a failure the model or server reported inside an answer to the contract's kinds."""
    text = f"{message} ({code})" if code and code not in message else (message or code)
    refused_here = _route_refusal(code, message, text)
    if refused_here is not None:
        return refused_here
    if _is_refusal(code, message):
        return NoImageError(f"the request was refused by the content policy: {text}")
    if code in QUOTA_CODES:
        return RateLimitError(f"usage limit reached: {text}")
    if code == "rate_limit_exceeded":
        delay = _try_again_seconds(message)
        return RateLimitError(f"rate limited: {text}", transient=True,
                              retry_after=delay if delay is not None else None)
    if code in ("server_is_overloaded", "slow_down", "server_error", "internal_error") or not code:
        return BackendError(f"{where} failed: {text or 'no reason given'}", transient=True)
    if code in IMAGE_ERROR_CODES:
        return UsageError(f"the server rejected a reference image: {text}")
    return BackendError(f"{where} failed: {text}")


def _listed(value: Any) -> list:
    """A JSON array from the server, or [] when it sent something else there: a malformed
    answer must end in the tool's own error, never a TypeError."""
    return value if isinstance(value, list) else []


class _ResponsesReader:
    """Pure reading of a Responses stream: JSON events in, images or a mapped error out."""

    def __init__(self, spills: Spills | None = None) -> None:
        self.spills = spills
        self.images: list[_RawImage] = []
        self.pending: list[dict] = []  # image items from response.completed, used if none else
        self.text: list[str] = []
        self.deltas: list[str] = []
        self.completed = False
        self.failure: ImagegenError | None = None
        self.model: str | None = None
        self.tool_model: str | None = None

    def feed(self, event: dict) -> str | None:
        """Take one event; return the phase it starts (for progress), if any."""
        kind = event.get("type")
        if not isinstance(kind, str):
            return None
        if kind == "response.created" and isinstance(event.get("response"), dict):
            response = event["response"]
            self.model = response.get("model") or self.model
            for tool in _listed(response.get("tools")):
                if isinstance(tool, dict) and tool.get("type") == "image_generation":
                    self.tool_model = tool.get("model") or self.tool_model
            return "thinking"
        if kind == "response.output_item.done":
            item = event.get("item")
            if isinstance(item, dict):
                return self._item(item)
            return None
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            self.deltas.append(event["delta"])
            return None
        if kind == "response.image_generation_call.in_progress":
            return "queued"
        if kind == "response.image_generation_call.generating":
            return "generating"
        if kind == "response.image_generation_call.partial_image":
            return "receiving"
        if kind == "response.completed":
            self.completed = True
            response = event.get("response")
            if isinstance(response, dict):
                for item in _listed(response.get("output")):
                    if isinstance(item, dict) and item.get("type") == "image_generation_call":
                        self.pending.append(item)
                    elif isinstance(item, dict) and item.get("type") == "message" and not self.text:
                        self._item(item)
            return "done"
        if kind == "error":
            self.failure = self.failure or _failure_error(
                str(event.get("code") or ""), str(event.get("message") or ""), "the image request")
            return None
        if kind == "response.failed":
            response = event.get("response") if isinstance(event.get("response"), dict) else {}
            code, message = _error_fields(response.get("error") or {})
            self.failure = _failure_error(code, message, "the image request")
            return None
        if kind == "response.incomplete":
            response = event.get("response") if isinstance(event.get("response"), dict) else {}
            details = response.get("incomplete_details") or {}
            reason = details.get("reason") if isinstance(details, dict) else None
            if reason == "content_filter":
                self.failure = NoImageError(
                    "the request was refused by the content policy (incomplete: content_filter)")
            else:
                self.failure = BackendError(
                    f"the answer was cut short by the server (incomplete: {reason or 'unknown'})")
            return None
        return None

    def _item(self, item: dict) -> str | None:
        if item.get("type") == "image_generation_call":
            result = item.get("result")
            if isinstance(result, str) and result:
                self.images.append(self._image(item))
                return "received"
            if item.get("status") == "failed":
                self.failure = self.failure or BackendError("the image generation call failed")
            return None
        if item.get("type") == "message":
            for part in _listed(item.get("content")):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    self.text.append(part["text"])
                elif isinstance(part, dict) and isinstance(part.get("refusal"), str):
                    self.text.append(part["refusal"])
        return None

    def _image(self, item: dict) -> _RawImage:
        meta = {"revised_prompt": item.get("revised_prompt"),
                "model": item.get("model") or self.tool_model, "size": item.get("size")}
        spill = self.spills.claim(item["result"]) if self.spills is not None else None
        if spill is not None:
            return _image_from_spill(spill, "image_generation_call result", **meta)
        data = decode_image_base64(item["result"], "image_generation_call result")
        return _RawImage(data=data, info=sniff_image(data), **meta)  # type: ignore[arg-type]

    def result(self) -> list[_RawImage]:
        """The images, or the error the stream amounts to."""
        if not self.images:
            for item in self.pending:
                if isinstance(item.get("result"), str) and item["result"]:
                    self.images.append(self._image(item))
        if self.images:
            return self.images
        if self.failure:
            raise self.failure
        if not self.completed:
            raise BackendError("the stream ended before the image arrived (truncated answer)",
                               transient=True)
        said = " ".join(self.text).strip() or "".join(self.deltas).strip()
        if said:
            raise NoImageError(f"the model answered with text instead of an image: "
                               f"{said[:MAX_ERROR_CHARS]}", fallback=True)
        raise NoImageError("the model finished without making an image", fallback=True)


def _images_from_json(payload: Any, where: str) -> list[dict]:
    """The data[] entries of an Images answer ({"data": [{"b64_json"|"url"}]})."""
    if not isinstance(payload, dict):
        raise BackendError(f"the {where} answer is not a JSON object")
    data = payload.get("data")
    if not isinstance(data, list) or not data:
        if payload.get("error") or payload.get("detail"):
            code, message = _error_fields(payload)
            raise _failure_error(code, message, where)
        keys = ", ".join(sorted(payload)) or "nothing"
        raise NoImageError(f"the {where} answer holds no image (it has: {keys})")
    return [entry for entry in data if isinstance(entry, dict)]


_DATA_URI_RE = re.compile(r"data:image/(png|jpe?g|webp);base64,([A-Za-z0-9+/=\s]+)")


def images_from_chat(payload: Any) -> tuple[list[_RawImage], str]:
    """Images in a chat completion's message (data URIs in text or parts), and its text."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BackendError("the gateway's answer has no choices[0].message") from None
    texts: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if isinstance(url, str):
                texts.append(url)
    images = []
    for match in _DATA_URI_RE.finditer("\n".join(texts)):
        data = decode_image_base64(re.sub(r"\s+", "", match.group(2)), "gateway answer")
        images.append(_RawImage(data=data, info=sniff_image(data)))  # type: ignore[arg-type]
    said = _DATA_URI_RE.sub("", " ".join(texts))
    said = re.sub(r"!\[[^\][]*\]\(\s*\)", "", said).strip()  # no "[" inside: linear
    return images, said


def _parse_retry_after(value: str | None, now: float) -> float | None:
    """A Retry-After header in seconds or as an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # "inf" and "nan" parse as floats: unreadable, and no strict JSON could carry them
        return max(0.0, seconds) if seconds < float("inf") else None
    from email.utils import parsedate_to_datetime
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError):
        return None


def _try_again_seconds(message: str) -> float | None:
    """The delay in "Please try again in 1.5s" (or ms), as the backend words it."""
    match = re.search(r"(?i)try again in\s*(\d+(?:\.\d+)?)\s*(ms|s|seconds?)\b", message or "")
    if not match:
        return None
    amount = float(match.group(1))
    return amount / 1000 if match.group(2).lower() == "ms" else amount


#: A quota answer's message that only names the limit: "image limit reached", "limit reached".
_LIMIT_REACHED = re.compile(
    r"(?i)(?:(?:the|your|an?) )?(?:([a-z][a-z _-]{0,30}?) )?limit (?:has been |was )?reached\.?")


def error_from_http(status: int, headers: Any, body: bytes, *, version_sent: str | None = None,
                    now: float | None = None) -> ImagegenError:
    """Map an HTTP error answer to the contract's kinds; never dumps an HTML page.
    The error keeps the status and headers (for quota headers and pending polls)."""
    error = _error_from_http(status, headers, body, version_sent, now)
    error.status = status  # type: ignore[attr-defined]
    error.headers = headers  # type: ignore[attr-defined]
    return error


def _error_from_http(status: int, headers: Any, body: bytes, version_sent: str | None,
                     now: float | None) -> ImagegenError:
    now = time.time() if now is None else now
    text = body.decode("utf-8", "replace")
    try:
        payload = json.loads(text) if text.strip() else None
    except ValueError:
        payload = None
    is_json = isinstance(payload, dict)
    code, message = _error_fields(payload) if is_json else ("", "")
    error = payload.get("error") if is_json and isinstance(payload.get("error"), dict) else {}
    kind = str(error.get("type") or "")
    shown_ids: list[str] = []
    for name in ("x-codex-imagegen-request-id", "x-oai-request-id", "x-request-id", "cf-ray"):
        value = headers.get(name) if headers is not None else None
        if value and not any(value in seen for seen in shown_ids):  # the same id, once
            shown_ids.append(f"{name} {value}")
    suffix = f" [{', '.join(shown_ids)}]" if shown_ids else ""
    if not is_json:
        looks_html = re.search(r"(?i)<\s*(!doctype|html|head|body|title)\b", text) is not None
        if looks_html:
            title = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
            shown = f"an HTML page{': ' + title.group(1).strip()[:100] if title else ''}"
        else:
            shown = " ".join(text.split())[:MAX_ERROR_CHARS] or "an empty body"
        message = shown
    detail = message or code or "no details"
    retry_after = _parse_retry_after(headers.get("Retry-After") if headers else None, now)

    if status == 429:
        if kind in QUOTA_CODES or code in QUOTA_CODES:
            resets_at = error.get("resets_at")
            if not isinstance(resets_at, (int, float)) and isinstance(
                    error.get("resets_in_seconds"), (int, float)):
                resets_at = now + error["resets_in_seconds"]
            plan = f" on the {error['plan_type']} plan" if error.get("plan_type") else ""
            reset = _describe_reset(resets_at, now) if isinstance(resets_at, (int, float)) else ""
            # The server's own words lead when they only say which limit ("image limit
            # reached"), rather than trailing the same words in parentheses.
            which = _LIMIT_REACHED.fullmatch(detail.strip())
            head = "usage limit reached" if not which or not which.group(1) \
                else f"{which.group(1).lower()} limit reached"
            err = RateLimitError(f"{head}{plan}"
                                 + (f"; {reset}" if reset else "; the server did not say when it "
                                    "resets") + ("" if which else f" ({detail[:MAX_ERROR_CHARS]})")
                                 + suffix)
            # `reset` is empty for inf, NaN or a year out of range: no retry_after_s then,
            # which --json could not carry as strict JSON.
            err.retry_after = max(0.0, resets_at - now) if reset else None
            return err
        delay = retry_after if retry_after is not None else _try_again_seconds(message)
        return RateLimitError(f"rate limited (HTTP 429): {detail[:MAX_ERROR_CHARS]}{suffix}",
                              transient=True, retry_after=delay)
    if status == 401:
        refused = _Unauthorized(f"the server refused the login (HTTP 401): "
                               f"{detail[:MAX_ERROR_CHARS]}{suffix}")
        # The token endpoint says why in the code, not the message (refresh_token_expired...).
        refused.server_code = code  # type: ignore[attr-defined]
        return refused
    if code in LOGIN_OVER_CODES:  # a token endpoint's final word, at any status
        said = f"{code}: {message[:200]}" if message and message != code else code
        return AuthError(f"{LOGIN_OVER_CODES[code]} ({said}): log in again with `imagegen auth "
                         f"login` (or `codex login`)")
    if status == 403:
        if not is_json:
            return BackendError(
                f"HTTP 403 with {message} instead of an API answer: a proxy, firewall or CDN "
                f"blocked the request (check HTTPS_PROXY, VPN or network){suffix}")
        if _is_refusal(code, message):
            return NoImageError(f"the request was refused by the content policy (HTTP 403): "
                                f"{detail[:MAX_ERROR_CHARS]}{suffix}")
        # Not the login: a plan, workspace or region refusal. Codex never refreshes after a
        # 403, and spending the rotating refresh token here could only hurt.
        return AuthError(f"the server refused access (HTTP 403): "
                         f"{detail[:MAX_ERROR_CHARS]}{suffix}")
    refused_here = _route_refusal(code, message, detail[:MAX_ERROR_CHARS])
    if refused_here is not None and status < 500:
        return refused_here
    lowered = detail.lower()
    if "newer version of codex" in lowered or "requires a newer version" in lowered:
        sent = f" (this tool sent the header `version: {version_sent}`)" if version_sent else ""
        return BackendError(f"the server says the client is too old: it requires a newer "
                            f"version of Codex{sent}; update Codex so ~/.codex/version.json "
                            f"is current, or update imagegen{suffix}")
    if _is_refusal(code, message):
        return NoImageError(f"the request was refused by the content policy: "
                            f"{detail[:MAX_ERROR_CHARS]}")
    if status >= 500:
        return BackendError(f"the server failed (HTTP {status}): {detail[:MAX_ERROR_CHARS]}"
                            f"{suffix}", transient=True, retry_after=retry_after)
    # "image_generation" names the tool, and a refused tool is a route problem, not an input one.
    about_input = (code in IMAGE_ERROR_CODES or re.search(
        r"(?i)\b(prompt|image(?!_generation)|mask)", detail) is not None)
    err = BackendError(f"the server rejected the request (HTTP {status}): "
                       f"{detail[:MAX_ERROR_CHARS]}{suffix}")
    err.fallback = status == 404 or (status == 400 and not about_input)
    if code in IMAGE_ERROR_CODES:
        return UsageError(f"the server rejected a reference image (HTTP {status}): "
                          f"{detail[:MAX_ERROR_CHARS]}")
    return err


# Transport ########################################################################################

@dataclass(frozen=True)
class _HttpRequest:
    """One request, fully built; `shown` is the body as --dry-run prints it."""

    method: str
    url: str
    headers: dict
    body: bytes | None = None
    shown: Any = None
    secret_headers: tuple[str, ...] = ("Authorization",)
    route: str = ""

    def for_display(self) -> dict:
        headers = {}
        for name, value in self.headers.items():
            if name in self.secret_headers:
                scheme = value.split(" ", 1)[0] if " " in value else ""
                value = f"{scheme} ***".strip()
            headers[name] = value
        return {"method": self.method, "url": self.url, "headers": headers,
                "body": _compact_base64(self.shown)}


def _json_request(method: str, url: str, headers: dict, body: Any, route: str = "",
                 **extra: Any) -> _HttpRequest:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = dict(headers, **{"Content-Type": "application/json"})
    return _HttpRequest(method, url, headers, data, body, route=route, **extra)


class Response:
    """An open HTTP answer whose reads keep to the stall and total deadlines."""

    def __init__(self, raw: Any, transport: Transport, deadline: float,
                 stall_timeout: float, watch: _Watch | None = None,
                 budget: float | None = None) -> None:
        self.raw = raw
        self.watch = watch  # cuts the connection at the deadline (see _Watch)
        self.status = raw.status
        self.headers = raw.headers
        self.transport = transport
        self.deadline = deadline
        self.stall_timeout = stall_timeout
        # the whole time allowed, for the message when the deadline passes (Transport.open)
        self.budget = round(max(deadline - transport.clock(), 0.0), 1) if budget is None \
            else budget
        self.received = 0
        self.decoded = 0  # bytes after Content-Encoding, when there is one
        self._decompress = None
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            import zlib
            self._decompress = zlib.decompressobj(47)  # gzip or zlib header, auto-detected

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        """Body chunks as they arrive; BackendError on stall, deadline, cut or excess."""
        import http.client
        import socket
        while True:
            if self.transport.cancelled():
                raise Interrupted("interrupted")
            remaining = self.deadline - self.transport.clock()
            if remaining <= 0:
                raise self.transport.timeout_error(self.budget)
            limit = min(remaining, self.stall_timeout) if self.stall_timeout else remaining
            sock = _socket_of(self.raw)
            if sock is not None:
                sock.settimeout(max(0.01, limit))
            try:
                chunk = self.raw.read1(size) if hasattr(self.raw, "read1") else self.raw.read(size)
            except (socket.timeout, TimeoutError):
                if self.cut():
                    raise self.transport.cut_error(self.budget) from None
                if self.transport.clock() >= self.deadline - 0.01:
                    raise self.transport.timeout_error(self.budget) from None
                raise BackendError(f"stalled: the server sent nothing for "
                                   f"{self.stall_timeout:g} s (--stall-timeout)",
                                   transient=True) from None
            except (http.client.IncompleteRead, ConnectionError, OSError,
                    http.client.HTTPException, ValueError) as exc:
                if self.cut():
                    raise self.transport.cut_error(self.budget) from None
                raise BackendError(f"the connection broke while reading the answer "
                                   f"({type(exc).__name__})", transient=True) from None
            if not chunk and self.cut():  # the watch shut the socket: not a clean end
                raise self.transport.cut_error(self.budget)
            if not chunk:
                # http.client's read1 ends quietly when the server hangs up before the
                # Content-Length it promised: that is a cut answer, not a complete one.
                missing = getattr(self.raw, "length", None)
                if isinstance(missing, int) and missing > 0:
                    raise BackendError(f"the connection broke while reading the answer "
                                       f"({missing} bytes short of its Content-Length)",
                                       transient=True)
                if self._decompress is not None:
                    tail = self._decompress.flush()
                    if tail:
                        yield tail
                return
            self.received += len(chunk)
            if self.received > MAX_RESPONSE_BYTES:
                raise BackendError(f"the answer is larger than {_human_bytes(MAX_RESPONSE_BYTES)}"
                                   f", more than any image; stopped reading")
            if self._decompress is not None:
                # The cap holds for what the body inflates to as well: a few KB of gzip can
                # inflate to gigabytes. max_length keeps even one read within the cap.
                room = MAX_RESPONSE_BYTES - self.decoded + 1
                try:
                    chunk = self._decompress.decompress(chunk, room)
                except Exception:
                    raise BackendError("the answer's compressed body is corrupt") from None
                self.decoded += len(chunk)
                if self.decoded > MAX_RESPONSE_BYTES:
                    raise BackendError(f"the answer inflates to more than "
                                       f"{_human_bytes(MAX_RESPONSE_BYTES)}, more than any "
                                       f"image; stopped reading")
            if chunk:
                yield chunk

    def read_all(self, cap: int = MAX_RESPONSE_BYTES, spills: Spills | None = None) -> bytes:
        """The whole body; with `spills`, long base64 strings stream out of it to files."""
        strings = LongStrings(spills) if spills is not None else None
        parts, total = [], 0
        for chunk in self.chunks():
            total += len(chunk)
            if total > cap:
                raise BackendError(f"the answer is larger than {_human_bytes(cap)}; stopped")
            parts.append(strings.feed(chunk) if strings is not None else chunk)
        if strings is not None:
            parts.append(strings.finish())
        return b"".join(parts)

    def cut(self) -> bool:
        """True when the watch cut this answer short (deadline or Ctrl-C)."""
        return self.watch is not None and self.watch.fired

    def close(self) -> None:
        if self.watch is not None:
            self.transport.forget(self.watch)
        try:
            self.raw.close()
        except Exception:
            pass


class _Watch:
    """Cuts one request at its deadline. A socket timeout bounds each recv, not a read: a
    server that dribbles a byte a second would hold the status line, the headers, a chunk
    size line or the trailers for as long as it liked. At the deadline (or on Ctrl-C) the
    socket is shut down, which wakes any read of it."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self.thread = threading.get_ident()
        self._sock: Any = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(0.0, seconds), self.fire)
        self._timer.daemon = True
        self._timer.start()

    def attach(self, sock: Any) -> None:
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired:
            self._shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._sock
        if sock is not None:
            self._shutdown(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    @staticmethod
    def _shutdown(sock: Any) -> None:
        import socket
        try:  # the plain socket's shutdown, also under TLS: it only wakes the reader
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except (OSError, ValueError, TypeError):
            pass


def _watched_handlers(transport: Transport) -> list:
    """urllib's HTTP and HTTPS handlers, except that each connection reports its socket to
    the request's _Watch as soon as it is connected."""
    import urllib.request

    def watched(http_class: Any) -> Any:
        watch = getattr(transport.local, "watch", None)

        class Watched(http_class):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                if watch is not None:
                    watch.attach(self.sock)

        return Watched

    class HTTPHandler(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
            return super().do_open(watched(http_class), req, **kwargs)

    handlers = [HTTPHandler()]
    if hasattr(urllib.request, "HTTPSHandler"):
        class HTTPSHandler(urllib.request.HTTPSHandler):
            def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
                return super().do_open(watched(http_class), req, **kwargs)

        handlers.append(HTTPSHandler())
    return handlers


def _check_url(url: str) -> None:
    """A URL urllib can use (http or https, with a host), else a usage error that names it
    without any user:password@ part: a base URL or token URL override without its scheme."""
    import urllib.parse
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        shown = url.split("?")[0].split("#")[0].rpartition("@")[2][:200]
        raise UsageError(f"{shown!r} is not an http(s) URL: a base URL (--base-url, "
                         f"IMAGEGEN_*_BASE_URL, a config file) or CODEX_REFRESH_TOKEN_URL_OVERRIDE "
                         f"needs its scheme, e.g. https://{shown}")


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _same_origin_credentials() -> Any:
    """urllib's redirect handler, except that credentials stay with their origin: urllib
    itself re-sends Authorization to whatever host a 301, 302 or 303 names."""
    import urllib.parse
    import urllib.request

    class SameOriginCredentials(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                             newurl: str) -> Any:
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            before, after = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
            if new is not None and (before.scheme, before.netloc) != (after.scheme, after.netloc):
                for name in ("Authorization", "ChatGPT-Account-ID", "Cookie"):
                    new.remove_header(name.capitalize())  # urllib keeps names capitalize()d
            return new

    return SameOriginCredentials()


def _socket_of(raw: Any) -> Any:
    """The socket under an http.client response, to tighten its timeout between reads."""
    try:
        return raw.fp.raw._sock
    except AttributeError:
        return None


def _proxy_for(url: str) -> str | None:
    """The proxy urllib would use for url (HTTP(S)_PROXY and NO_PROXY, as the transport's
    opener does), or None."""
    import urllib.parse
    import urllib.request
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


class Transport:
    """The only network code: opens requests with urllib, maps failures to errors."""

    def __init__(self, opener: Any = None, clock: Callable[[], float] = time.monotonic,
                 cancel: threading.Event | None = None) -> None:
        self._opener = opener
        self.clock = clock
        self.cancel = cancel or threading.Event()
        self.local = threading.local()  # the watch of the request this thread is opening
        self._watches: set[_Watch] = set()
        self._watches_lock = threading.Lock()

    def cancelled(self) -> bool:
        return self.cancel.is_set()

    @staticmethod
    def timeout_error(budget: float) -> BackendError:
        return BackendError(f"timed out: no answer within the {budget:g} s budget (--timeout)")

    def cut_error(self, budget: float) -> ImagegenError:
        """What a request cut by its watch became: Ctrl-C, or the deadline."""
        return Interrupted("interrupted") if self.cancelled() else self.timeout_error(budget)

    def abort(self, thread: int | None = None) -> None:
        """Cut the requests in flight (of one thread, or all): Ctrl-C, a held signal's end."""
        with self._watches_lock:
            watches = [w for w in self._watches if thread is None or w.thread == thread]
        for watch in watches:
            watch.fire()

    def forget(self, watch: _Watch) -> None:
        watch.cancel()
        with self._watches_lock:
            self._watches.discard(watch)

    def opener(self) -> Any:
        if self._opener is None:
            import urllib.request
            # Built per run, not urlopen()'s global one, so proxy variables are read now.
            self._opener = urllib.request.build_opener(_same_origin_credentials(),
                                                       *_watched_handlers(self))
        return self._opener

    def open(self, request: _HttpRequest, deadline: float, stall_timeout: float = 0,
             budget: float | None = None) -> Response:
        """Send the request. Returns a 2xx Response; raises the mapped error otherwise.
        `budget`: the whole time allowed (a job's --timeout), for the message when the
        deadline passes; by default the time left now."""
        import urllib.request
        if self.cancelled():
            raise Interrupted("interrupted")
        remaining = deadline - self.clock()
        if budget is None:
            budget = round(max(remaining, 0.0), 1)
        if remaining <= 0:
            raise self.timeout_error(budget)
        limit = min(remaining, stall_timeout) if stall_timeout else remaining
        _check_url(request.url)
        raw_request = urllib.request.Request(request.url, data=request.body,
                                             headers=request.headers, method=request.method)
        # Without any user:password@ part: the host is shown in every error below.
        host = urllib.request.urlparse(request.url).netloc.rpartition("@")[2]
        watch = _Watch(remaining)
        with self._watches_lock:
            self._watches.add(watch)
        self.local.watch = watch
        try:
            raw = self._open(raw_request, host, request, deadline, stall_timeout, limit,
                             budget)
        except BaseException as exc:
            self.forget(watch)
            if watch.fired and isinstance(exc, ImagegenError) \
                    and getattr(exc, "status", None) is None:
                raise self.cut_error(budget) from None
            raise
        finally:
            self.local.watch = None
        return Response(raw, self, deadline, stall_timeout, watch, budget)

    def _open(self, raw_request: Any, host: str, request: _HttpRequest, deadline: float,
              stall_timeout: float, limit: float, budget: float) -> Any:
        import http.client
        import socket
        import urllib.error
        try:
            return self.opener().open(raw_request, timeout=max(0.05, limit))
        except urllib.error.HTTPError as exc:
            body = b""
            try:
                body = exc.read(MAX_ERROR_CHARS * 40)
            except Exception:
                pass
            finally:
                exc.close()
            try:
                error = error_from_http(exc.code, exc.headers, body,
                                        version_sent=request.headers.get("version"))
            except RecursionError:
                error = BackendError(f"the server's error answer (HTTP {exc.code}) is nested "
                                     f"too deeply to read", transient=exc.code >= 500)
                error.status = exc.code  # type: ignore[attr-defined]
            error.body_json = _json_or_none(body)  # type: ignore[attr-defined]
            raise error from None
        except urllib.error.URLError as exc:
            # urllib wraps only what fails while connecting and sending: nothing was answered.
            error = self._url_error(exc, host, deadline, stall_timeout, budget, request.url)
            error.delivered = False  # type: ignore[attr-defined]
            raise error from None
        except (socket.timeout, TimeoutError):
            raise self._timeout(deadline, stall_timeout, budget) from None
        except http.client.InvalidURL as exc:
            raise UsageError(f"the URL for {host} is not valid ({exc})") from None
        except (ConnectionError, OSError) as exc:
            if isinstance(exc, http.client.HTTPException) or isinstance(exc, ConnectionError):
                raise BackendError(f"the connection to {host} broke ({type(exc).__name__})",
                                   transient=True) from None
            raise BackendError(f"cannot reach {host}: {exc}", transient=True) from None
        except http.client.HTTPException as exc:
            raise BackendError(f"malformed HTTP answer from {host} ({type(exc).__name__})",
                               transient=True) from None
        except ValueError as exc:
            text = str(exc)
            if "proxy" in text.lower():  # never echoed: it may hold the proxy's password
                raise UsageError("a proxy variable (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) is "
                                 "malformed: it must look like http://[user:password@]host:port"
                                 ) from None
            if "header" in text.lower():  # never echoed: it holds the credential
                raise AuthError("a token or key holds a line break or another control "
                                "character, so it cannot be sent: log in again or fix the "
                                "key") from None
            raise

    def _url_error(self, exc: Any, host: str, deadline: float, stall_timeout: float,
                   budget: float, url: str = "") -> ImagegenError:
        import socket
        import ssl
        import urllib.parse
        reason = exc.reason
        proxy = _proxy_for(url) if url else None
        if proxy and isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
            # the connection that failed is the proxy's: say so, or the user checks the backend
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            where = parts.hostname or "?"
            where += f":{parts.port}" if parts.port else ""  # never the proxy's password
            what = ("cannot resolve" if isinstance(reason, socket.gaierror)
                    else "connection refused by")
            return BackendError(f"{what} the proxy {where} (HTTP_PROXY/HTTPS_PROXY) on the way "
                                f"to {host}: is the proxy running, or should NO_PROXY name "
                                f"{host}?", transient=True)
        if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(
                reason):
            return BackendError(f"TLS certificate of {host} is not trusted ({reason}); behind "
                                f"a corporate proxy set SSL_CERT_FILE to its CA bundle")
        if isinstance(reason, ssl.SSLError):
            return BackendError(f"TLS failed with {host}: {reason}", transient=True)
        if isinstance(reason, socket.gaierror):
            return BackendError(f"cannot resolve {host}: no network or DNS (a sandbox without "
                                f"network access?)", transient=True)
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return self._timeout(deadline, stall_timeout, budget)
        if isinstance(reason, ConnectionRefusedError):
            return BackendError(f"cannot connect to {host}: connection refused",
                                transient=True)
        return BackendError(f"cannot reach {host}: {reason}", transient=True)

    def _timeout(self, deadline: float, stall_timeout: float, budget: float) -> BackendError:
        if self.clock() >= deadline - 0.05 or not stall_timeout:
            return self.timeout_error(budget)
        return BackendError(f"stalled: the server sent nothing for {stall_timeout:g} s "
                            f"(--stall-timeout)", transient=True)

    def fetch_json(self, request: _HttpRequest, deadline: float, stall_timeout: float = 0,
                   budget: float | None = None) -> tuple[Any, Response]:
        response = self.open(request, deadline, stall_timeout, budget)
        try:
            body = response.read_all()
        finally:
            response.close()
        try:
            return json.loads(body), response
        except (ValueError, RecursionError):
            raise BackendError(f"the answer from {request.url.split('?')[0]} is not JSON "
                               f"({len(body)} bytes)", transient=False) from None


def _backoff_delay(attempt: int, jitter: Callable[[], float]) -> float:
    """Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... capped at 8 s."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** attempt)) * (0.8 + 0.4 * jitter())


# Credentials: files ###############################################################################

def _codex_home(env: dict) -> str:
    home = env.get("CODEX_HOME") or os.path.join(os.path.expanduser("~"), ".codex")
    return os.path.abspath(os.path.expanduser(home))


def _auth_file_path(env: dict) -> str:
    if env.get("CODEX_AUTH_FILE"):
        return os.path.abspath(os.path.expanduser(env["CODEX_AUTH_FILE"]))
    if env.get("CODEX_AUTH_HOME"):
        return os.path.join(os.path.abspath(os.path.expanduser(env["CODEX_AUTH_HOME"])),
                            "auth.json")
    return os.path.join(_codex_home(env), "auth.json")


def _config_home(env: dict) -> str:
    return env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")


def _readable_by_others(path: str) -> bool:
    try:
        return os.name == "posix" and bool(os.stat(path).st_mode & 0o077)
    except OSError:
        return False


def _make_temporary(directory: str, prefix: str, suffix: str = "") -> tuple[int, str]:
    """A new file (mode 0600) with a random name, like tempfile.mkstemp but cheaper to
    import: every run that saves a file calls it. Returns (fd, path)."""
    flags = os.O_CREAT | os.O_EXCL | os.O_RDWR | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        path = os.path.join(directory, f"{prefix}{os.urandom(6).hex()}{suffix}")
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")


def _read_regular_file(path: str, cap: int) -> bytes:
    """The bytes of a regular file, refusing more than `cap` of them. /dev/zero, a FIFO or a
    directory raise OSError with a readable strerror instead of eating memory or hanging
    (a FIFO is opened without blocking, then refused)."""
    import errno
    import stat
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "it is a directory", path)
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, "not a regular file (a device, FIFO or socket)", path)
        chunks, total = [], 0
        while total <= cap:
            chunk = os.read(fd, min(1 << 20, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > cap:
        raise OSError(errno.EFBIG, f"larger than {_human_bytes(cap)}", path)
    return b"".join(chunks)


def _read_text_capped(stream: Any, cap: int, what: str) -> str:
    """A text stream (stdin) read to its end, refusing more than `cap` characters or text
    that is not UTF-8."""
    try:
        text = stream.read(cap + 1)
    except UnicodeDecodeError:
        raise UsageError(f"{what} is not UTF-8 text") from None
    if len(text) > cap:
        raise UsageError(f"{what} is larger than {_human_bytes(cap)}")
    return _check_utf8(text, what)


def _check_utf8(text: str, what: str) -> str:
    """text, unless it holds a lone surrogate (bytes that were not UTF-8 in argv, or an
    escaped "\\ud83d" in JSON), which no request body could carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text") from None
    return text


def _write_file_atomic(path: str, data: bytes, mode: int = 0o600, prefix: str = ".tmp-") -> None:
    """Write beside the target, fsync, rename over it: readers see old or new, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = _make_temporary(directory, prefix)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


class _AuthLocks:
    """The locks Codex takes around auth.json writes: auth.lock in its directory, then
    <auth file>.lock, both exclusive flock, in that order. No fcntl (Windows): no lock."""

    def __init__(self, auth_file: str, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, wait: float = LOCK_WAIT_S) -> None:
        self.paths = [os.path.join(os.path.dirname(auth_file), "auth.lock"), auth_file + ".lock"]
        self.clock, self.sleep, self.wait = clock, sleep, wait
        self._fds: list[int] = []

    def __enter__(self) -> _AuthLocks:
        try:
            import fcntl
        except ImportError:
            return self
        deadline = self.clock() + self.wait
        try:
            for path in self.paths:
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                except OSError as exc:
                    raise AuthError(f"cannot lock {path} ({exc.strerror}): the Codex home must be "
                                    f"writable to refresh the login") from None
                self._fds.append(fd)
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except OSError:
                        if self.clock() > deadline:
                            raise AuthError(f"{path} stayed locked for {self.wait:g} s (another "
                                            f"program is writing the login)") from None
                        self.sleep(0.05)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._fds:
            fd = self._fds.pop()
            try:
                os.close(fd)  # closing releases the flock
            except OSError:
                pass


# Credentials: the ChatGPT login ###################################################################

AUTH_CLAIM = "https://api.openai.com/auth"
PROFILE_CLAIM = "https://api.openai.com/profile"


def _jwt_claims(token: Any) -> dict:
    """The claims of a JWT, unverified; {} when it is not one."""
    if not isinstance(token, str) or token.count(".") < 2:
        return {}
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _shorten_id(value: str | None) -> str | None:
    if not value:
        return None
    return value if len(value) <= 10 else f"{value[:4]}…{value[-4:]}"


@dataclass(frozen=True)
class _ChatGPTLogin:
    auth_file: str
    access_token: str
    refresh_token: str | None
    id_token: str | None
    account_id: str | None
    last_refresh: str | None

    def secrets(self) -> tuple:
        return (self.access_token, self.refresh_token, self.id_token)


def _keyring_hint(env: dict) -> str | None:
    """When config.toml keeps Codex's login in the OS keyring, say how to get a file."""
    path = os.path.join(_codex_home(env), "config.toml")
    try:
        config = load_toml(path)
    except (OSError, UsageError):
        return None
    store = config.get("cli_auth_credentials_store")
    if store in ("keyring", "auto"):
        return (f"Codex keeps its login in the OS keyring (cli_auth_credentials_store = "
                f"\"{store}\" in {path}), which this tool cannot read: set it to \"file\" and run "
                f"`codex login` again, or run `imagegen auth login`")
    return None


def read_auth_json(path: str, env: dict, sleep: Callable[[float], None] = time.sleep) -> dict:
    """auth.json as a dict. Older Codex versions rewrite the file in place, so a read can
    find it empty or half written: such a read is tried again a few times before failing."""
    for attempt in range(AUTH_READ_ATTEMPTS):
        try:
            raw = _read_regular_file(path, MAX_CONFIG_BYTES)
        except FileNotFoundError:
            hint = _keyring_hint(env)
            raise AuthError(hint or f"no ChatGPT login: {path} does not exist; run "
                                    f"`imagegen auth login` (or `codex login`)") from None
        except OSError as exc:
            raise AuthError(f"cannot read {path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            if attempt + 1 < AUTH_READ_ATTEMPTS:
                sleep(AUTH_READ_PAUSE_S)
                continue
            raise AuthError(f"{path} is not valid JSON; it was left as it is: run `imagegen auth "
                            f"login` (or `codex login`) to replace it") from None
        except RecursionError:
            raise AuthError(f"{path} is nested too deeply to be a Codex login; it was left as "
                            f"it is") from None
        break
    if not isinstance(data, dict):
        raise AuthError(f"{path} does not hold a Codex login (not a JSON object)")
    return data


def _auth_json_bytes(data: dict) -> bytes:
    """auth.json's text as Codex writes it (pretty, UTF-8). A field holding a lone surrogate
    (valid JSON: "\\ud83d") cannot be UTF-8: then every non-ASCII character is escaped, which
    cannot fail and reads back the same."""
    try:
        return json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, indent=2).encode("ascii")


def _login_kind(data: dict) -> str:
    """Codex's resolution: auth_mode, else apikey when OPENAI_API_KEY is set, else chatgpt."""
    mode = data.get("auth_mode")
    if isinstance(mode, str) and mode:
        return mode.lower()
    if data.get("OPENAI_API_KEY"):
        return "apikey"
    return "chatgpt" if isinstance(data.get("tokens"), dict) else "none"


def _account_id_of(tokens: dict) -> str | None:
    account = tokens.get("account_id")
    if isinstance(account, str) and account:
        return account
    claim = _jwt_claims(tokens.get("id_token")).get(AUTH_CLAIM)
    if isinstance(claim, dict) and isinstance(claim.get("chatgpt_account_id"), str):
        return claim["chatgpt_account_id"]
    return None


def _chatgpt_login(data: dict, path: str) -> _ChatGPTLogin:
    kind = _login_kind(data)
    if kind == "apikey":
        raise AuthError(f"{path} holds an API key, not a ChatGPT login: run `imagegen auth login` "
                        f"(or `codex login`), or use --backend responses with that key")
    tokens = data.get("tokens")
    if kind not in ("chatgpt", "chatgptauthtokens") or not isinstance(tokens, dict) \
            or not isinstance(tokens.get("access_token"), str) or not tokens["access_token"]:
        raise AuthError(f"{path} holds no ChatGPT tokens: run `imagegen auth login` "
                        f"(or `codex login`)")
    refresh = tokens.get("refresh_token")
    return _ChatGPTLogin(
        auth_file=path, access_token=tokens["access_token"],
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        id_token=tokens.get("id_token") if isinstance(tokens.get("id_token"), str) else None,
        account_id=_account_id_of(tokens),
        last_refresh=data.get("last_refresh") if isinstance(data.get("last_refresh"), str)
        else None)


def _access_expiry(login: _ChatGPTLogin) -> float | None:
    exp = _jwt_claims(login.access_token).get("exp")
    return float(exp) if isinstance(exp, (int, float)) else None


def _needs_refresh(login: _ChatGPTLogin, now: float) -> bool:
    """Codex's rule: the access token's exp is less than 5 minutes away; with no exp,
    last_refresh is over 8 days old."""
    exp = _access_expiry(login)
    if exp is not None:
        return exp - REFRESH_SKEW_S <= now
    last = _parse_rfc3339(login.last_refresh)
    return last is None or now - last > REFRESH_INTERVAL_S


#: A refresh whose answer was complete but said no, and that nothing can have spent: 500 and
#: 503 from the issuer, 429. A 502 or 504 comes from a proxy that gave up waiting: the
#: issuer may have rotated the token behind it, so that is a lost answer, never re-sent.
REFRESH_RESEND_STATUSES = {429, 500, 503}
AUTH_READ_ATTEMPTS = 6  # one read and 5 more, AUTH_READ_PAUSE_S apart (a rewrite in place)
AUTH_READ_PAUSE_S = 0.05
REFRESH_TIMEOUT_S = 60.0  # the refresh's own limit, or --timeout when that is shorter
SIGNAL_GRACE_S = 5.0  # how long Ctrl-C or SIGTERM waits for a refresh in flight to be saved


def _refresh_error_code(body: Any) -> str:
    """The token endpoint's error code as Codex reads it: error.code, else error as a
    string, else the top-level code."""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"]
    if isinstance(error, str):
        return error
    return body["code"] if isinstance(body.get("code"), str) else ""


def _codex_version(env: dict) -> str:
    """The larger of version.json's latest_version and the floor (a stale value is refused)."""
    best = CODEX_VERSION_FLOOR
    try:
        with open(os.path.join(_codex_home(env), "version.json"), encoding="utf-8") as handle:
            latest = json.load(handle).get("latest_version")
        if isinstance(latest, str) and re.fullmatch(r"\d+\.\d+\.\d+", latest) \
                and _version_tuple(latest) > _version_tuple(best):
            best = latest
    except (OSError, ValueError, AttributeError):
        pass
    return best


def _user_agent() -> str:
    """`codex-imagegen/<version> (<os> <os version>; <arch>)`: this tool, by its own name
    (the Codex version goes in the `version` header, never in here)."""
    if hasattr(os, "uname") and sys.platform.startswith("linux"):
        # What platform would report on Linux, without importing it.
        system, release, machine = "Linux", os.uname().release, os.uname().machine
    else:
        import platform
        system = {"Darwin": "Mac OS"}.get(platform.system(), platform.system() or "Unknown")
        release = platform.mac_ver()[0] if system == "Mac OS" else platform.release()
        machine = platform.machine()
    return f"{ORIGINATOR}/{__version__} ({system} {release}; {machine or 'unknown'})"


class _DeferredSignals:
    """Ctrl-C and SIGTERM that arrive while a thread holds a refresh (from the moment the
    refresh token leaves until the answer is saved) wait until it is saved, then end the run
    as usual. The wait is bounded: SIGNAL_GRACE_S after the signal, the holders' requests
    are cut. Signals are process-wide, so this is the one process-wide object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[int, Any] = {}  # thread id -> its Transport
        self.pending = False
        self._timer: threading.Timer | None = None

    def hold(self, transport: Any) -> _SignalHold:
        return _SignalHold(self, transport)

    def signalled(self) -> bool:
        """For the signal handler: True when the signal is held for later."""
        with self._lock:
            if not self._holders:
                return False
            if not self.pending:
                self.pending = True
                holders = list(self._holders.items())

                def cut() -> None:
                    for ident, transport in holders:
                        transport.abort(ident)

                self._timer = threading.Timer(SIGNAL_GRACE_S, cut)
                self._timer.daemon = True
                self._timer.start()
            return True

    def _enter(self, transport: Any) -> None:
        with self._lock:
            self._holders[threading.get_ident()] = transport

    def _leave(self) -> None:
        with self._lock:
            self._holders.pop(threading.get_ident(), None)
            release = self.pending and not self._holders
            if release:
                self.pending = False
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
        if release:  # the held signal, now
            if threading.current_thread() is threading.main_thread():
                raise KeyboardInterrupt
            import _thread
            _thread.interrupt_main()


class _SignalHold:
    def __init__(self, owner: _DeferredSignals, transport: Any) -> None:
        self.owner, self.transport = owner, transport

    def __enter__(self) -> None:
        self.owner._enter(self.transport)

    def __exit__(self, *exc: Any) -> None:
        self.owner._leave()


SIGNALS = _DeferredSignals()


class _RefreshAnswerLost(BackendError):
    """The refresh request may have reached the issuer, but its answer did not arrive whole:
    the refresh token may be spent already, so it is never sent again."""


class _CodexAuth:
    """The ChatGPT login of one run, shared by its threads: read once, refreshed when the
    token is about to expire or a request got 401, serialized with other processes and Codex.

    A run sends at most one refresh: a backend that refuses every token would otherwise
    rotate the login again and again (and a failed refresh is never repeated with the same,
    possibly spent, refresh token)."""

    def __init__(self, env: dict, transport: Transport, secrets: Secrets,
                 clock: Callable[[], float] = time.time, retries: int = 2,
                 sleep: Callable[[float], None] = time.sleep,
                 warn: Callable[[str], None] | None = None) -> None:
        self.env, self.transport, self.secrets = env, transport, secrets
        self.clock, self.retries, self.sleep = clock, retries, sleep
        self.warn = warn
        self.path = _auth_file_path(env)
        self._lock = threading.Lock()
        self._login: _ChatGPTLogin | None = None
        self.refreshes = 0  # refresh requests this run sent (at most one)
        self._failure: ImagegenError | None = None  # how this run's refresh failed
        self._warned = False

    def token_url(self) -> str:
        override = self.env.get("CODEX_REFRESH_TOKEN_URL_OVERRIDE")
        if override:
            return override
        base = (self.env.get("IMAGEGEN_AUTH_BASE_URL") or DEFAULT_AUTH_BASE_URL).rstrip("/")
        return f"{base}/oauth/token"

    def _read_data(self) -> dict:
        data = read_auth_json(self.path, self.env, self.sleep)
        if not self._warned and self.warn is not None and _readable_by_others(self.path):
            self._warned = True
            self.warn(f"other users can read {self.path}, which holds your ChatGPT login: "
                      f"chmod 600 {self.path}")
        return data

    def _read(self) -> _ChatGPTLogin:
        login = _chatgpt_login(self._read_data(), self.path)
        self.secrets.add(*login.secrets())
        return login

    def peek(self) -> _ChatGPTLogin:
        """The login as the file holds it, without refreshing (for --dry-run)."""
        with self._lock:
            if self._login is None:
                self._login = self._read()
            return self._login

    def current(self, retries: int | None = None, timeout: float | None = None,
                ) -> _ChatGPTLogin:
        """A usable login, refreshed first when its access token is about to expire. A
        refresh keeps to the asking job's patience: re-sent up to `retries` times when it
        failed in transit, each try within `timeout` (at most REFRESH_TIMEOUT_S)."""
        with self._lock:
            if self._login is None:
                self._login = self._read()
            if _needs_refresh(self._login, self.clock()):
                reason = ("proactive_expiry" if _access_expiry(self._login) is not None
                          else "scheduled")
                self._login = self._refresh_once(self._login, None, reason, retries, timeout)
            return self._login

    def after_unauthorized(self, rejected: str, retries: int | None = None,
                           timeout: float | None = None) -> _ChatGPTLogin:
        """After a 401: another thread or program may have refreshed already; else refresh
        (once a run: when this run's refreshed login is refused too, it is returned as it
        is, and the caller gives up)."""
        with self._lock:
            if self._login is not None and self._login.access_token != rejected:
                return self._login
            on_disk = self._read()
            if on_disk.access_token != rejected and not _needs_refresh(on_disk, self.clock()):
                self._login = on_disk
            else:
                self._login = self._refresh_once(on_disk, rejected, "unauthorized_recovery",
                                                 retries, timeout)
            return self._login

    def _refresh_once(self, stale: _ChatGPTLogin, rejected: str | None, reason: str,
                      retries: int | None = None, timeout: float | None = None,
                      ) -> _ChatGPTLogin:
        if self._failure is not None or self.refreshes:
            # Another program may have saved a usable login since; else no second refresh.
            on_disk = self._read()
            if on_disk.access_token not in (stale.access_token, rejected) \
                    and not _needs_refresh(on_disk, self.clock()):
                return on_disk
            if self._failure is not None:
                raise type(self._failure)(self._failure.message)
            return stale
        try:
            return self._refresh(stale, rejected, reason,
                                 self.retries if retries is None else retries,
                                 REFRESH_TIMEOUT_S if timeout is None
                                 else min(REFRESH_TIMEOUT_S, timeout))
        except Interrupted:
            raise
        except ImagegenError as error:
            self._failure = error
            raise

    def _refresh(self, stale: _ChatGPTLogin, rejected: str | None, reason: str,
                 retries: int, timeout: float) -> _ChatGPTLogin:
        if self.transport.cancelled():
            raise Interrupted("interrupted")
        with _AuthLocks(self.path):
            data = self._read_data()
            fresh = _chatgpt_login(data, self.path)
            self.secrets.add(*fresh.secrets())
            if fresh.access_token not in (stale.access_token, rejected) \
                    and not _needs_refresh(fresh, self.clock()):
                return fresh  # another process refreshed while we waited for the lock
            if not fresh.refresh_token:
                raise AuthError(f"the access token in {self.path} has expired and there is no "
                                f"refresh token: run `imagegen auth login` (or `codex login`)")
            self._check_writable(data)
            request = self._refresh_request(fresh.refresh_token, reason)
            self.refreshes += 1
            error: ImagegenError = AuthError("could not refresh the login")
            for attempt in range(retries + 1):
                if attempt:
                    self.sleep(_backoff_delay(attempt - 1, lambda: 0.5))
                # From the moment the token leaves until the answer is saved, a Ctrl-C or
                # SIGTERM waits (a few seconds at most): the issuer rotates the token as it
                # answers, and an answer thrown away is a login destroyed.
                with SIGNALS.hold(self.transport):
                    try:
                        answer = self._send_refresh(request, timeout)
                    except _RefreshAnswerLost as lost:
                        adopted = self._adopt_saved_login(fresh)
                        if adopted is not None:
                            return adopted
                        raise BackendError(lost.message) from None
                    except ImagegenError as failure:
                        if not failure.transient:
                            raise
                        error = failure
                        continue
                    return self._save(data, answer)
            raise type(error)(error.message)

    def _check_writable(self, data: dict) -> None:
        """Prove the answer can be saved before spending the (rotating) refresh token: the
        file's text can be made, and a file of its size written beside it."""
        directory = os.path.dirname(self.path)
        payload = _auth_json_bytes(data) + b" " * 512  # the new tokens may be a little longer
        try:
            fd, probe = _make_temporary(directory, ".auth-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                os.unlink(probe)
        except OSError as exc:
            raise AuthError(f"the login needs a refresh but {directory} is not writable "
                            f"({exc.strerror}); nothing was sent") from None

    def _refresh_request(self, refresh_token: str, reason: str) -> _HttpRequest:
        return _json_request("POST", self.token_url(), {
            "Accept": "application/json", "originator": ORIGINATOR,
            "User-Agent": _user_agent()},
            {"client_id": CLIENT_ID, "grant_type": "refresh_token",
             "refresh_reason": reason, "refresh_token": refresh_token})

    def _send_refresh(self, request: _HttpRequest, limit: float) -> dict:
        """One refresh request. Raises AuthError when the issuer refused for good, a
        transient error when nothing can have been spent (a re-send is safe), and
        RefreshAnswerLost when the token may be spent but the answer is not known."""
        try:
            answer, _ = self.transport.fetch_json(request, self.transport.clock() + limit,
                                                  limit)
        except (Interrupted, UsageError):
            raise
        except ImagegenError as exc:
            status = getattr(exc, "status", None)
            code = _refresh_error_code(getattr(exc, "body_json", None)) \
                or str(getattr(exc, "server_code", "") or "")
            if code in LOGIN_OVER_CODES or status == 401:  # invalid_grant, *_reused...
                raise self._refresh_refused(code, status) from None
            if status is None and not getattr(exc, "delivered", True):
                # It never reached the issuer (DNS, refused, TLS): safe to send again.
                failure = BackendError if exc.message.startswith(("cannot", "TLS")) \
                    else AuthError
                raise failure(f"could not refresh the login: {exc.message}",
                              transient=exc.transient) from None
            if status in REFRESH_RESEND_STATUSES:
                raise AuthError(f"could not refresh the login: {exc.message}",
                                transient=True) from None
            if status is not None and status not in (502, 504):
                raise AuthError(f"could not refresh the login: {exc.message}") from None
            why = exc.message
            if why.startswith(("timed out", "stalled")):
                why = f"the token endpoint did not answer within {limit:g} s"
            raise self._lost(why) from None
        if not isinstance(answer, dict):
            raise self._lost("the token endpoint's answer is not a JSON object")
        return answer

    @staticmethod
    def _lost(why: str) -> _RefreshAnswerLost:
        return _RefreshAnswerLost(
            f"could not refresh the login: {why}. The refresh request may have reached the "
            f"server, so the refresh token was not sent again (it may be spent). Run the "
            f"command again; only if it then says the refresh token was already used, log in "
            f"again with `codex login` (or `imagegen auth login`)")

    def _adopt_saved_login(self, sent: _ChatGPTLogin) -> _ChatGPTLogin | None:
        """After a lost answer: a login another program saved meanwhile, if there is one."""
        try:
            login = self._read()
        except AuthError:
            return None
        if login.refresh_token != sent.refresh_token and not _needs_refresh(login, self.clock()):
            return login
        return None

    def _save(self, data: dict, answer: dict) -> _ChatGPTLogin:
        """Store whatever tokens came back (each is optional), then check the result."""
        came = {name: answer[name] for name in ("id_token", "access_token", "refresh_token")
                if isinstance(answer.get(name), str) and answer[name]}
        self.secrets.add(*came.values())
        if not came:
            raise AuthError("could not refresh the login: the token endpoint's answer has no "
                            "tokens")
        tokens = data.get("tokens")
        if not isinstance(tokens, dict):
            tokens = data["tokens"] = {}
        tokens.update(came)
        data["last_refresh"] = _utc_now_rfc3339(self.clock())
        try:
            _write_file_atomic(self.path, _auth_json_bytes(data), 0o600, prefix=".auth-")
        except OSError as exc:
            raise AuthError(f"the login was refreshed but {self.path} could not be written "
                            f"({exc.strerror}); run `codex login` again") from None
        if "access_token" not in came:
            raise AuthError("could not refresh the login: the token endpoint's answer has no "
                            "access_token (the new refresh token it sent was saved: run the "
                            "command again)")
        return _chatgpt_login(data, self.path)

    @staticmethod
    def _refresh_refused(code: str, status: int | None) -> AuthError:
        why = LOGIN_OVER_CODES.get(code)
        if why is not None:
            return AuthError(f"your access token could not be refreshed: {why} ({code}): log "
                             f"in again with `imagegen auth login` (or `codex login`)")
        shown = f"HTTP {status}" + (f", {code}" if code else "")
        return AuthError(f"your access token could not be refreshed ({shown}): log in again "
                         f"with `imagegen auth login` (or `codex login`)")


# Credentials: config.toml #########################################################################

def load_toml(path: str) -> dict:
    """config.toml as a dict: tomllib on 3.11+, else a reader for the subset Codex uses."""
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        import tomllib  # type: ignore[import-not-found]  # novermin (3.11+, guarded)
    except ImportError:
        try:
            return parse_toml_subset(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None


_TOML_KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'


def _toml_keys(text: str, line_no: int) -> list[str]:
    keys = re.findall(rf"\s*({_TOML_KEY})\s*(?:\.|$)", text)
    if not keys or not re.fullmatch(rf"\s*{_TOML_KEY}(\s*\.\s*{_TOML_KEY})*\s*", text):
        raise UsageError(f"config.toml line {line_no}: cannot read the key {text.strip()!r}")
    return [_toml_unescape(k[1:-1], line_no) if k.startswith('"') else k.strip("'")
            for k in keys]


_TOML_ESCAPES = {"\\b": "\b", "\\t": "\t", "\\n": "\n", "\\f": "\f", "\\r": "\r",
                 '\\"': '"', "\\\\": "\\"}


def _toml_unescape(body: str, line_no: int) -> str:
    """The inside of a TOML basic string with its escapes decoded (TOML has \\UXXXXXXXX and
    allows a literal tab, so json.loads is not the same thing)."""

    def decode(match: re.Match) -> str:
        escape = match.group(0)
        if escape in _TOML_ESCAPES:
            return _TOML_ESCAPES[escape]
        if len(escape) > 2:
            code = int(escape[2:], 16)
            if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code)
        raise UsageError(f"config.toml line {line_no}: bad escape {escape!r} in a string")

    return re.sub(r"\\(?:u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.?)", decode, body)


def _toml_value(text: str, line_no: int) -> tuple[Any, str]:
    """One value from the start of text; returns (value, rest)."""
    text = text.lstrip()
    if text.startswith('"""') or text.startswith("'''"):
        raise UsageError(f"config.toml line {line_no}: multi-line strings are not supported "
                         f"here (Python 3.11 or later reads them)")
    match = re.match(r'"((?:[^"\\]|\\.)*)"', text)
    if match:
        return _toml_unescape(match.group(1), line_no), text[match.end():]
    match = re.match(r"'([^']*)'", text)
    if match:
        return match.group(1), text[match.end():]
    match = re.match(r"(true|false)\b", text)
    if match:
        return match.group(1) == "true", text[match.end():]
    if re.match(r"\d{4}-\d\d-\d\d|\d\d:\d\d", text):
        raise UsageError(f"config.toml line {line_no}: dates and times are not supported here "
                         f"(Python 3.11 or later reads them)")
    if re.match(r"[+-]?0[xob]", text):
        raise UsageError(f"config.toml line {line_no}: hexadecimal, octal and binary numbers "
                         f"are not supported here (Python 3.11 or later reads them)")
    match = re.match(r"[+-]?(\d[\d_]*)(\.\d[\d_]*)?([eE][+-]?\d+)?", text)
    if match and match.group(0):
        number = match.group(0).replace("_", "")
        value: Any = float(number) if match.group(2) or match.group(3) else int(number)
        return value, text[match.end():]
    if text.startswith("["):
        items, rest = [], text[1:]
        while True:
            rest = rest.lstrip()
            if rest.startswith("]"):
                return items, rest[1:]
            item, rest = _toml_value(rest, line_no)
            items.append(item)
            rest = rest.lstrip()
            if rest.startswith(","):
                rest = rest[1:]
            elif not rest.startswith("]"):
                break
    if text.startswith("{"):
        table: dict = {}
        rest = text[1:].lstrip()
        if rest.startswith("}"):
            return table, rest[1:]
        while True:
            match = re.match(rf"\s*({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*=", rest)
            if not match:
                break
            keys = _toml_keys(match.group(1), line_no)
            value, rest = _toml_value(rest[match.end():], line_no)
            _toml_assign(table, keys, value, line_no)
            rest = rest.lstrip()
            if rest.startswith(","):
                rest = rest[1:]
                continue
            if rest.startswith("}"):
                return table, rest[1:]
            break
    raise UsageError(f"config.toml line {line_no}: cannot read the value {text.strip()[:40]!r} "
                     f"(Python 3.11 or later reads all of TOML)")


def _toml_assign(table: dict, keys: list[str], value: Any, line_no: int) -> None:
    """table[k1][k2]...[kn] = value for a dotted key; TOML forbids redefining a key."""
    for key in keys[:-1]:
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            raise UsageError(f"config.toml line {line_no}: {key} is not a table")
    if keys[-1] in table:
        raise UsageError(f"config.toml line {line_no}: {keys[-1]} is defined twice")
    table[keys[-1]] = value


def _toml_code(line: str) -> tuple[str, int]:
    """The line without its comment, and how many brackets it leaves open (strings skipped)."""
    depth, position, quote = 0, 0, ""
    while position < len(line):
        char = line[position]
        if quote:
            if char == "\\" and quote == '"':
                position += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:position], depth
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        position += 1
    return line, depth


def parse_toml_subset(text: str) -> dict:
    """Top-level keys, [tables] and [dotted.tables], quoted keys, strings, numbers, booleans,
    arrays (also over several lines) and inline tables, comments. Anything else is a
    UsageError."""
    root: dict = {}
    table = root
    # TOML ends lines with LF or CRLF only; splitlines() would also split at U+2028, U+0085...
    lines = text.split("\n")
    line_no = 0
    while line_no < len(lines):
        line = lines[line_no]
        line_no += 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("[["):
            raise UsageError(f"config.toml line {line_no}: arrays of tables are not supported "
                             f"here (Python 3.11 or later reads them)")
        if stripped.startswith("["):
            match = re.fullmatch(rf"\[\s*({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*\]\s*(#.*)?",
                                 stripped)
            if not match:
                raise UsageError(f"config.toml line {line_no}: cannot read {stripped!r}")
            table = root
            for key in _toml_keys(match.group(1), line_no):
                table = table.setdefault(key, {})
                if not isinstance(table, dict):
                    raise UsageError(f"config.toml line {line_no}: {key} is not a table")
            continue
        match = re.match(rf"({_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*)\s*=", stripped)
        if not match:
            raise UsageError(f"config.toml line {line_no}: cannot read {stripped[:40]!r}")
        keys = _toml_keys(match.group(1), line_no)
        value_text, depth = _toml_code(stripped[match.end():])
        first_line = line_no
        while depth > 0 and line_no < len(lines):  # an array that goes on over several lines
            more, opened = _toml_code(lines[line_no])
            value_text += " " + more.strip()
            depth += opened
            line_no += 1
        value, rest = _toml_value(value_text, first_line)
        rest = rest.strip()
        if rest and not rest.startswith("#"):
            raise UsageError(f"config.toml line {line_no}: unexpected {rest[:20]!r} after the "
                             f"value")
        _toml_assign(table, keys, value, line_no)
    return root


# Reference images #################################################################################

@dataclass(frozen=True)
class _Reference:
    """A reference image or mask, read and checked; `data` is None in a dry run of a URL."""

    source: str
    info: _ImageInfo | None
    data: bytes | None

    @property
    def mime(self) -> str:
        return MIME_OF_FORMAT[self.info.format] if self.info else "image/png"

    def data_url(self) -> str:
        if self.data is None:
            return f"<downloaded from {self.source}>"
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def _is_url(source: str) -> bool:
    return re.match(r"(?i)^https?://", source) is not None


def _load_reference(source: str, transport: Transport, what: str, download: bool = True,
                   ) -> _Reference:
    """Read a local image or download a URL (capped), and check it is PNG, JPEG or WebP."""
    if _is_url(source):
        if not download:
            return _Reference(source, None, None)
        request = _HttpRequest("GET", source, {"User-Agent": f"codex-imagegen/{__version__}",
                                              "Accept": "image/*"})
        try:
            response = transport.open(request, transport.clock() + DOWNLOAD_TIMEOUT_S,
                                      DOWNLOAD_TIMEOUT_S)
            try:
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > MAX_REFERENCE_BYTES:
                    raise UsageError(f"{what} {source} is larger than "
                                     f"{_human_bytes(MAX_REFERENCE_BYTES)}")
                data = response.read_all(MAX_REFERENCE_BYTES)
            finally:
                response.close()
        except BackendError as exc:
            if "larger than" in exc.message:
                raise UsageError(f"{what} {source} is larger than "
                                 f"{_human_bytes(MAX_REFERENCE_BYTES)}") from None
            raise UsageError(f"cannot download {what} {source}: {exc.message}") from None
        except (AuthError, RateLimitError, NoImageError) as exc:
            raise UsageError(f"cannot download {what} {source}: {exc.message}") from None
    else:
        path = os.path.expanduser(source)
        try:  # never more than the cap, never a device or FIFO (/dev/zero, a pipe: F31)
            data = _read_regular_file(path, MAX_REFERENCE_BYTES)
        except IsADirectoryError:
            raise UsageError(f"{what} {source} is a directory, not an image") from None
        except OSError as exc:
            raise UsageError(f"cannot read {what} {source}: {exc.strerror}") from None
    info = sniff_image(data)
    if info is None:
        raise UsageError(f"{what} {source} is not a PNG, JPEG or WebP image")
    return _Reference(source, info, data)


@dataclass(frozen=True)
class _Inputs:
    references: tuple[_Reference, ...] = ()
    mask: _Reference | None = None


def _load_inputs(job: _Job, transport: Transport) -> _Inputs:
    """All reference images and the mask, checked before any request is sent."""
    download = not job.dry_run
    references = tuple(_load_reference(source, transport, "image", download)
                       for source in job.images)
    mask = None
    if job.mask:
        mask = _load_reference(job.mask, transport, "mask", download)
        if mask.info and mask.info.format != "png":
            raise UsageError(f"mask {job.mask} must be a PNG (with alpha), not {mask.info.format}")
        first = references[0].info if references else None
        if mask.info and first and first.width and mask.info.width and (
                (mask.info.width, mask.info.height) != (first.width, first.height)):
            raise UsageError(f"mask {job.mask} is {mask.info.width}x{mask.info.height} but the "
                             f"first image is {first.width}x{first.height}; they must match")
    return _Inputs(references, mask)


def _png_is_opaque(data: bytes) -> bool:
    """True when a PNG surely has no transparent pixel: no alpha channel and no tRNS, or an
    alpha channel that is 100% opaque. False when it has one, or when this cheap check
    cannot tell (interlaced, a damaged file, a tRNS colour key). Reads the alpha bytes only:
    PNG filters work byte by byte, so given a fully opaque row above, a fully opaque row has
    exactly one filtered form, and the first row that differs has a transparent pixel."""
    import zlib
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 33:
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, interlace = data[24], data[25], data[28]
    channels = {4: 2, 6: 4}.get(colour)
    position, idat = 8, []
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind == b"tRNS":
            return False
        if kind == b"IDAT":
            idat.append(data[position + 8:position + 8 + length])
        if kind == b"IEND":
            break
        position += 12 + length
    if channels is None:
        return True  # no alpha channel, no tRNS: every pixel is opaque
    if interlace or depth not in (8, 16) or not width or not height:
        return False
    size = depth // 8
    bpp = channels * size
    lanes = [bpp - size + k for k in range(size)]  # the alpha bytes of a pixel
    row_bytes = 1 + width * bpp
    inflater = zlib.decompressobj()
    pending, rows = b"", 0
    compressed = b"".join(idat)
    while rows < height:
        try:  # a megabyte at a time: a 4K mask inflates to tens of megabytes
            more = inflater.decompress(compressed, 1 << 20)
        except zlib.error:
            return False
        compressed = inflater.unconsumed_tail
        if not more:
            break
        pending += more
        offset = 0
        while len(pending) - offset >= row_bytes and rows < height:
            row = pending[offset:offset + row_bytes]
            offset += row_bytes
            kind = row[0]
            first = rows == 0
            rest = width - 1
            # each alpha byte's filtered form when it and the row above are all 0xFF
            expected = {
                0: b"\xff" * width,
                1: b"\xff" + b"\x00" * rest,
                2: (b"\xff" if first else b"\x00") * width,
                3: (b"\xff" + b"\x80" * rest) if first else (b"\x80" + b"\x00" * rest),
                4: (b"\xff" + b"\x00" * rest) if first else b"\x00" * width,
            }.get(kind)
            if expected is None:
                return False
            for lane in lanes:
                if row[1 + lane::bpp] != expected:
                    return False
            rows += 1
        pending = pending[offset:]
    return rows == height


# Capabilities: what a route delivers ##############################################################

#: The canvases the codex backend makes (it ignores `size`; see CODEX_ASPECTS).
CODEX_CANVASES = ("1254x1254", "1536x1024", "1024x1536", "1672x941", "941x1672")
#: A flat background colour the subject is asked to stand on where a route cannot make
#: transparency: the first whose words the prompt does not use (a green frog gets magenta).
CHROMA_KEYS = (
    ("green", (0, 255, 0), ("green", "lime", "emerald", "olive", "mint", "jade", "chartreuse",
                            "grass", "leaf", "leaves", "forest", "frog")),
    ("magenta", (255, 0, 255), ("magenta", "pink", "purple", "violet", "fuchsia", "lilac")),
    ("blue", (0, 0, 255), ()),
)


@dataclass(frozen=True)
class _Capabilities:
    """What a route can deliver, declared once on the route: the driver asks this record
    (never the route's type) what it may send there and what it must do to the answer."""

    formats: tuple = FORMATS  # the file formats it sends back when asked
    transparency: bool = True  # a real alpha channel when asked for a transparent background
    exact_size: bool = True  # it makes the --size asked for
    canvases: tuple | None = None  # when not: the only sizes it makes (None: not known)
    aspect_line: bool = False  # --size reaches it as an aspect line in the prompt
    max_images: int = MAX_IMAGES  # reference images it takes
    mask: bool | None = True  # it honours --mask (None: sent, but whether it works is unknown)
    host_model: bool = False  # a chat model (--model) hands the prompt to the image tool

    def makes(self, size: str | None) -> bool | None:
        """Whether a file of `size` (WxH) comes back as asked: True, False, or None when
        that cannot be known before the answer."""
        if not size or size == "auto" or self.exact_size:
            return True
        return None if self.canvases is None else size in self.canvases


@dataclass(frozen=True)
class _Delivery:
    """How one route gives what the job asks for. `wire` is the job as the route gets it
    (the format it is asked for, the chroma-key line in the prompt where transparency is
    made here); `key` is the chroma key to remove from the answer (None: none); `local`
    lists what may be done here, for messages."""

    wire: _Job
    key: tuple | None = None
    key_name: str = ""
    local: tuple = ()


def _chroma_key_for(prompt: str) -> tuple[str, tuple]:
    """The key colour (name, (r, g, b)) for a prompt: one its subject is unlikely to use."""
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    for name, rgb, avoid in CHROMA_KEYS:
        if not words & set(avoid):
            return name, rgb
    return CHROMA_KEYS[-1][0], CHROMA_KEYS[-1][1]


def _chroma_key_line(name: str, rgb: tuple) -> str:
    """The prompt line asking for the subject on a flat, removable background."""
    return (f"Background: one perfectly flat, uniform pure {name} chroma-key colour "
            f"#{rgb[0]:02x}{rgb[1]:02x}{rgb[2]:02x} filling the whole background (no "
            f"gradient, shadow, texture, vignette or reflection on it); keep the subject "
            f"whole, inside the frame, with clean edges, and use no {name} in the subject: "
            f"the background will be removed afterwards.")


def _pillow_formats() -> frozenset:
    """The formats Pillow can both read and write here ("png", "jpeg", "webp"); empty when
    Pillow is not importable. Pillow is optional: it adds JPEG and WebP conversion and
    resizing; PNG is done by the standard-library core above."""
    try:
        from PIL import Image
        Image.init()
    except Exception:  # not installed (ImportError), or broken: the same to the user
        return frozenset()
    names = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
    return frozenset(fmt for fmt, name in names.items()
                     if name in Image.SAVE and name in Image.OPEN)


PILLOW_FIX = "pip install pillow"


def _plan_delivery(job: _Job, route: Any,
                  pillow: Callable[[], frozenset] = _pillow_formats) -> _Delivery:
    """How `route` (its name and capabilities) can deliver `job`: the request it gets and
    what is done to its answer here. UsageError (one line, with the fix) when it cannot,
    known before anything is sent: too many images, or a conversion or a resize of a JPEG
    or WebP without Pillow. A PNG under a .jpg or .webp name is never the answer."""
    caps: _Capabilities = route.capabilities
    where = f"the {job.backend} {route.name} route"
    if len(job.images) > caps.max_images:
        raise UsageError(f"{where} takes at most {caps.max_images} reference images "
                         f"(got {len(job.images)})")
    keyed = job.background == "transparent" and not caps.transparency
    # A route that makes the size it is asked for gets the nearest one its model makes
    wire_size = job.size
    if caps.exact_size and job.fit != "none" and job.size and job.size != "auto":
        wire_size = _model_size(job.size, route.model or job.image_model)
    resize = job.fit != "none" and (caps.makes(job.size) is False or wire_size != job.size)
    if job.format in caps.formats and not keyed and not resize:
        ask = job.format
    else:  # PNG when the answer is worked on here: lossless, and read without Pillow
        ask = "png" if "png" in caps.formats else caps.formats[0]
    wire = replace(job, format=ask, size=wire_size)
    if ask != job.format:
        wire = replace(wire, format_set=True,
                       compression=None if ask == "png" else job.compression)
    local: list[str] = []
    key, key_name = None, ""
    if keyed:
        key_name, key = _chroma_key_for(job.prompt)
        wire = replace(wire, background=None,
                       prompt=f"{job.prompt}\n\n{_chroma_key_line(key_name, key)}")
        local.append(f"chroma key {key_name}")
    if resize:
        local.append(f"fit {job.size}")
    if ask != job.format:
        local.append(f"{ask} to {job.format}")
    # Pillow reads and writes what is not PNG: needed when a JPEG or WebP is made or resized
    touched = {ask, job.format} if (ask != job.format or resize or keyed) else set()
    missing = sorted(touched - {"png"} - pillow()) if touched - {"png"} else []
    if missing:
        asked = f"{'a transparent ' if job.background == 'transparent' else ''}{job.format}"
        if job.format not in caps.formats:
            why = f"{where} only delivers {', '.join(f.upper() for f in caps.formats)}"
        elif keyed:
            why = f"{where} cannot make a transparent background (it is removed here)"
        elif caps.exact_size:
            why = f"{where} makes {wire_size}, not {job.size}"
        else:
            why = f"{where} picks the size itself"
        work = f"resizing it to {job.size}" if resize else "converting it"
        fixes = ["save as .png (or --format png)"] + (["pass --fit none"] if resize else []) \
            + ["use --backend api", f"install Pillow ({PILLOW_FIX})"]
        raise UsageError(f"{why} and {asked} was asked: {work} needs Pillow, which is not "
                         f"installed; {', '.join(fixes[:-1])}, or {fixes[-1]}")
    return _Delivery(wire, key, key_name, tuple(local))


# Routes: build a request, read its answer #########################################################

# `_Progress`: what a route reports while it reads, a phase ("generating"...) and the bytes
# received so far.
_Progress = Callable[[str, int], None]


class _Route:
    """What every route offers the driver: a name, a Capabilities record, the request for
    n images, and the images read from its answer."""

    name = ""
    where = ""  # the route as messages about its answer name it ("the images route answered")
    capabilities = _Capabilities()
    model: str | None = None  # the image model it always asks for (None: the job's)

    def ignored(self, job: _Job) -> list[str]:
        """The options this route leaves out, as the user gave them (for one warning)."""
        return []

    def build(self, job: _Job, inputs: _Inputs, n: int, base: str, headers: dict) -> _HttpRequest:
        raise NotImplementedError

    def read(self, response: Response, progress: _Progress,
             spills: Spills | None = None) -> list[_RawImage]:
        """The images in the answer, read from `response` alone (no other I/O): an image the
        answer names by URL comes back with `url` set, for fetch_image_urls."""
        raise NotImplementedError


def _aspect_line(size: str | None) -> str | None:
    """The codex backend's canvas nearest to WxH, as words for the prompt ("landscape 16:9");
    None for auto. The service ignores `size` and follows such a line instead (measured)."""
    width, height = _parse_size(size) or (0, 0)
    if not width or not height:
        return None
    asked = math.log(width / height)
    word, wide, high = min(CODEX_ASPECTS, key=lambda a: abs(math.log(a[1] / a[2]) - asked))
    return f"{word} {wide}:{high}"


def _codex_prompt(job: _Job) -> str:
    """The prompt as the codex backend gets it: with the aspect line when --size is WxH."""
    line = _aspect_line(job.size)
    return f"{job.prompt}\n\nAspect ratio: {line}." if line else job.prompt


def _tool_options(job: _Job, inputs: _Inputs, codex: bool = False) -> dict:
    """The image_generation tool. On the codex backend the server rewrites size, quality and
    the model to its own, and rejects input_fidelity and other models: those stay out."""
    tool: dict[str, Any] = {"type": "image_generation", "output_format": job.format}
    for key, value in (("size", None if codex else job.size),
                       ("quality", None if codex else job.quality),
                       ("background", job.background), ("output_compression", job.compression),
                       ("moderation", job.moderation),
                       ("input_fidelity", None if codex else job.input_fidelity),
                       ("action", job.action)):
        if value is not None:
            tool[key] = value
    if job.image_model_set and not codex:
        tool["model"] = job.image_model
    if inputs.mask is not None:
        tool["input_image_mask"] = {"image_url": inputs.mask.data_url()}
    return tool


class ResponsesRoute(_Route):
    """POST {base}/responses with the image_generation tool; the answer is an SSE stream.
    `codex`: the Codex backend's flavour (forced tool, session headers, aspect line)."""

    name = "responses"

    def __init__(self, codex: bool = False) -> None:
        self.codex = codex
        # The codex backend rewrites the tool's size and refuses transparent (measured).
        self.capabilities = _Capabilities(
            transparency=not codex, exact_size=not codex,
            canvases=CODEX_CANVASES if codex else None, aspect_line=codex, host_model=True)

    def ignored(self, job: _Job) -> list[str]:
        if not self.codex:
            return []
        model = job.image_model if job.image_model_set and job.image_model != CODEX_IMAGE_MODEL \
            else None
        return [f"--{name.replace('_', '-')} {value}" for name, value in (
            ("quality", job.quality), ("input_fidelity", job.input_fidelity),
            ("image_model", model)) if value is not None and value != "auto"]

    def build(self, job: _Job, inputs: _Inputs, n: int, base: str, headers: dict) -> _HttpRequest:
        session = _new_uuid()
        content: list[dict] = [{"type": "input_image", "image_url": ref.data_url(),
                                "detail": "high"} for ref in inputs.references]
        content.append({"type": "input_text",
                        "text": _codex_prompt(job) if self.codex else job.prompt})
        body = {
            "model": job.model,
            "instructions": INSTRUCTIONS,
            "input": [{"type": "message", "role": "user", "content": content}],
            "tools": [_tool_options(job, inputs, self.codex)],
            # Forced on the codex backend, where entitled plans take it (a plan without image
            # generation gets "Tool choice 'image_generation' not found"); other providers
            # may not know the form.
            "tool_choice": {"type": "image_generation"} if self.codex else "auto",
            "parallel_tool_calls": False,
            "store": False,
            "stream": True,
            "prompt_cache_key": session,
        }
        headers = dict(headers, Accept="text/event-stream")
        if self.codex:  # hyphens: proxies drop underscore headers (Codex changed in 2026-05)
            headers.update({"session-id": session, "thread-id": session,
                            "x-client-request-id": session})
        return _json_request("POST", f"{base}/responses", headers, body, route=self.name)

    def read(self, response: Response, progress: _Progress,
             spills: Spills | None = None) -> list[_RawImage]:
        decoder, reader = SSEDecoder(spills), _ResponsesReader(spills)
        phase = "waiting"
        progress(phase, 0)
        content_type = (response.headers.get("Content-Type") or "").lower()
        if "json" in content_type and "event-stream" not in content_type:
            # A proxy's answer, or a provider that ignored stream: true: read it as one
            # response object, rather than report a "truncated" stream.
            try:
                payload = json.loads(response.read_all(spills=spills))
            except ValueError:
                raise BackendError("the server answered with broken JSON instead of an event "
                                   "stream") from None
            if isinstance(payload, dict) and isinstance(payload.get("output"), list) \
                    and not payload.get("error"):
                reader.feed({"type": "response.completed", "response": payload})
                return reader.result()
            code, message = _error_fields(payload)
            if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                raise _failure_error(code, message[:MAX_ERROR_CHARS], "the image request")
            raise BackendError(f"the server answered with JSON instead of an event stream: "
                               f"{(message or code or 'no details')[:MAX_ERROR_CHARS]}")
        try:
            for chunk in response.chunks():
                for event in decoder.feed(chunk):
                    phase = self._take(event, reader) or phase
                progress(phase, response.received)
        except BackendError as exc:
            if reader.images:  # the image came before the connection broke: keep it
                return reader.images
            if reader.failure and not exc.transient:
                raise reader.failure from None
            raise
        for event in decoder.close():
            self._take(event, reader)
        return reader.result()

    @staticmethod
    def _take(event: SSEEvent, reader: _ResponsesReader) -> str | None:
        try:
            payload = json.loads(event.data)
        except ValueError:
            if event.data.strip() in (b"[DONE]", b""):
                return None
            raise BackendError("the stream holds an event that is not JSON (malformed answer)"
                               ) from None
        return reader.feed(payload) if isinstance(payload, dict) else None


class _CodexImagesRoute(_Route):
    """POST {base}/images/generations or /images/edits on the Codex backend (JSON), with
    the body Codex sends. Measured: only the prompt, the background and the images change
    the result; one PNG of about 1.5 MP comes back, shaped by the prompt's aspect line."""

    name = "images"
    capabilities = _Capabilities(formats=("png",), exact_size=False, canvases=CODEX_CANVASES,
                                aspect_line=True, max_images=MAX_IMAGES_CODEX_ROUTE, mask=None)

    def ignored(self, job: _Job) -> list[str]:
        model = job.image_model if job.image_model_set and job.image_model != CODEX_IMAGE_MODEL \
            else None
        return [f"--{name.replace('_', '-')} {value}" for name, value in (
            ("quality", job.quality), ("compression", job.compression),
            ("moderation", job.moderation), ("input_fidelity", job.input_fidelity),
            ("action", job.action), ("image_model", model))
            if value is not None and value != "auto"]

    def build(self, job: _Job, inputs: _Inputs, n: int, base: str, headers: dict) -> _HttpRequest:
        body: dict[str, Any] = {}
        endpoint = "generations"
        if inputs.references:
            endpoint = "edits"
            body["images"] = [{"image_url": ref.data_url()} for ref in inputs.references]
        body.update({"prompt": _codex_prompt(job), "background": job.background or "auto",
                     "model": CODEX_IMAGE_MODEL, "quality": "auto", "size": "auto"})
        if inputs.mask is not None:  # whether the service honours it is unknown (a warning)
            body["mask"] = {"image_url": inputs.mask.data_url()}
        headers = dict(headers, Accept="application/json")
        return _json_request("POST", f"{base}/images/{endpoint}", headers, body, route=self.name)

    where = "images route"

    def read(self, response: Response, progress: _Progress,
             spills: Spills | None = None) -> list[_RawImage]:
        payload = _read_json(response, progress, f"the {self.where}", spills)
        return read_images_payload(payload, self.where, spills)


def _read_json(response: Response, progress: _Progress, who: str,
               spills: Spills | None = None) -> Any:
    """A JSON answer, whole (long base64 strings streamed into spills when given)."""
    progress("generating", 0)
    try:
        return json.loads(response.read_all(spills=spills))
    except ValueError:
        raise BackendError(f"{who} answered with something that is not JSON") from None


def read_images_payload(payload: Any, where: str,
                        spills: Spills | None = None) -> list[_RawImage]:
    images = []
    model = payload.get("model") if isinstance(payload, dict) else None
    size = payload.get("size") if isinstance(payload, dict) else None
    for entry in _images_from_json(payload, where):
        spill = spills.claim(entry.get("b64_json")) if spills is not None else None
        if spill is not None:
            images.append(_image_from_spill(spill, f"{where} answer", model=model, size=size,
                                           revised_prompt=entry.get("revised_prompt")))
            continue
        if isinstance(entry.get("b64_json"), str) and entry["b64_json"]:
            data = decode_image_base64(entry["b64_json"], f"{where} answer")
        elif isinstance(entry.get("url"), str) and _is_url(entry["url"]):
            images.append(_RawImage(data=b"", info=None,  # type: ignore[arg-type]
                                   revised_prompt=entry.get("revised_prompt"), model=model,
                                   size=size, url=entry["url"]))
            continue
        else:
            continue
        images.append(_RawImage(data=data, info=sniff_image(data),  # type: ignore[arg-type]
                               revised_prompt=entry.get("revised_prompt"), model=model,
                               size=size))
    if not images:
        raise NoImageError(f"the {where} answer holds no image")
    return images


def fetch_image_urls(images: list[_RawImage], where: str, transport: Transport
                     ) -> list[_RawImage]:
    """The images an answer named by URL, downloaded (capped, checked like a reference);
    the others as they are. The one place an answer leads to another request."""
    fetched = []
    for image in images:
        if image.url is not None:
            try:
                data = _load_reference(image.url, transport, "image url").data or b""
            except UsageError as exc:
                raise BackendError(f"the {where} answered with a URL that failed: {exc.message}"
                                   ) from None
            image = replace(image, data=data, info=sniff_image(data), url=None)
        fetched.append(image)
    return fetched


class _ChatRoute(_Route):
    """The codex-api gateway: POST {base}/v1/chat/completions, stream false, data URI back."""

    name = "chat"
    # Options reach it as words; what comes back is known only then. It cannot make alpha.
    capabilities = _Capabilities(transparency=False, exact_size=False, host_model=True)

    def build(self, job: _Job, inputs: _Inputs, n: int, base: str, headers: dict) -> _HttpRequest:
        asks = [f"Output format: {job.format}."]
        if job.size and job.size != "auto":
            asks.append(f"Size: {job.size}.")
        if job.background == "transparent":
            asks.append("Transparent background.")
        text = (f"Use the image_generation tool to render the following. Request: {job.prompt}\n"
                f"{' '.join(asks)} Reply with the image only.")
        content: Any = text
        if inputs.references:
            content = [{"type": "image_url", "image_url": {"url": ref.data_url()}}
                       for ref in inputs.references] + [{"type": "text", "text": text}]
        body = {"model": job.model, "stream": False,
                "messages": [{"role": "user", "content": content}]}
        headers = dict(headers, Accept="application/json")
        return _json_request("POST", f"{base}/v1/chat/completions", headers, body,
                            route=self.name)

    where = "gateway"

    def read(self, response: Response, progress: _Progress,
             spills: Spills | None = None) -> list[_RawImage]:
        # spills are not used: the data URIs inside the text are kept in memory
        payload = _read_json(response, progress, "the gateway")
        images, said = images_from_chat(payload)
        if images:
            return images
        raise NoImageError(
            "the gateway answered without an image"
            + (f": {said[:MAX_ERROR_CHARS]}" if said else "")
            + " (image generation may be off on the gateway: start it with "
              "CODEX_ENABLE_IMAGE_GEN=1)")


class _ImagesApiRoute(_Route):
    """The OpenAI Images API: generations as JSON, edits as multipart/form-data."""

    name = "images"

    def __init__(self, extra_body: dict | None = None, model: str | None = None,
                 image_model: str = DEFAULT_IMAGE_MODEL) -> None:
        self.extra_body = extra_body or {}
        self.model = model  # the config file's model, when the user did not choose one
        # DALL-E models make no alpha; the others are asked, and the answer is checked.
        self.capabilities = _Capabilities(
            transparency=not (model or image_model).startswith("dall-e"))

    def fields(self, job: _Job, n: int) -> dict:
        model = self.model or job.image_model
        body: dict[str, Any] = {"model": model, "prompt": job.prompt, "n": n}
        if job.format_set or model.startswith("gpt-image"):
            body["output_format"] = job.format  # DALL-E models refuse the parameter
        for key, value in (("size", job.size), ("quality", job.quality),
                           ("background", job.background), ("output_compression", job.compression),
                           ("moderation", job.moderation)):
            if value is not None:
                body[key] = value
        if job.is_edit and job.input_fidelity is not None:
            body["input_fidelity"] = job.input_fidelity
        body.update(self.extra_body)
        return body

    def build(self, job: _Job, inputs: _Inputs, n: int, base: str, headers: dict) -> _HttpRequest:
        fields = self.fields(job, n)
        headers = dict(headers, Accept="application/json")
        if not inputs.references:
            return _json_request("POST", f"{base}/images/generations", headers, fields,
                                route=self.name)
        files = [("image[]", ref) for ref in inputs.references]
        if inputs.mask is not None:
            files.append(("mask", inputs.mask))
        body, content_type = _multipart(fields, files)
        shown = dict(fields, **{"files": [
            {"name": name, "filename": _file_name(ref, index), "content_type": ref.mime,
             "bytes": len(ref.data) if ref.data is not None else None,
             "source": ref.source} for index, (name, ref) in enumerate(files)]})
        headers["Content-Type"] = content_type
        return _HttpRequest("POST", f"{base}/images/edits", headers, body, shown, route=self.name)

    where = "Images API"

    def read(self, response: Response, progress: _Progress,
             spills: Spills | None = None) -> list[_RawImage]:
        payload = _read_json(response, progress, f"the {self.where}", spills)
        images = read_images_payload(payload, self.where, spills)
        # The Images API does not name its model: report the one asked for (--json, --meta).
        return [replace(image, model=image.model or self.model) for image in images]


def _file_name(ref: _Reference, index: int) -> str:
    stem = "mask" if index < 0 else f"image-{index + 1}"
    return stem + EXTENSIONS[ref.info.format if ref.info else "png"]


def _multipart(fields: dict, files: list[tuple[str, _Reference]]) -> tuple[bytes, str]:
    """multipart/form-data with text fields and file parts, built with the stdlib."""
    boundary = f"codex-imagegen-{os.urandom(16).hex()}"
    parts: list[bytes] = []
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{text}\r\n".encode())
    for index, (name, ref) in enumerate(files):
        filename = _file_name(ref, -1 if name == "mask" else index)
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: {ref.mime}\r\n\r\n'
                     .encode() + (ref.data or b"") + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode("ascii"))
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# Backends #########################################################################################

class _Backend:
    """What every backend offers the driver. Subclasses set name and routes."""

    name = ""
    keeps_quota = False  # its quota line is kept for `auth status` (quota_state_path)
    carries_login = False  # it sends the ChatGPT login: only to a base URL set outside a batch

    @staticmethod
    def configured_base_url(env: dict) -> str | None:
        """The base URL the environment sets for it (None: it is found in prepare)."""
        return None

    def __init__(self, ctx: _Context, job: _Job) -> None:
        self.ctx = ctx
        self.base_override = job.base_url
        self.warnings: list[str] = []  # what prepare() found; the Generator says it

    def prepare(self, job: _Job) -> None:
        """Find the credentials (AuthError when missing); in a dry run, never fail."""

    def routes(self, job: _Job) -> list:
        raise NotImplementedError

    def base_url(self, route: Any) -> str:
        raise NotImplementedError

    def headers(self, route: Any, dry_run: bool = False) -> dict:
        raise NotImplementedError

    def recover(self, headers: dict) -> bool:
        """After a 401: True when new credentials make one more try worthwhile."""
        return False

    def explain(self, error: ImagegenError) -> None:
        """Add to a failure's message what is peculiar to this backend (in place)."""

    def units(self, job: _Job) -> list[int]:
        """How many images each request asks for: one request per image by default."""
        return [1] * job.count

    def dry_run_requests(self) -> list[_HttpRequest]:
        """The requests of its own (a refresh of the login) that a real run would send."""
        return []


class _CodexBackend(_Backend):
    """The ChatGPT subscription through the Codex backend (the default)."""

    name = "codex"
    keeps_quota = True
    carries_login = True

    @staticmethod
    def configured_base_url(env: dict) -> str | None:
        return env.get("IMAGEGEN_CODEX_BASE_URL") or DEFAULT_CODEX_BASE_URL

    def __init__(self, ctx: _Context, job: _Job) -> None:
        super().__init__(ctx, job)
        self.auth = ctx.codex_auth()  # one login per run, shared by every job and thread
        self.patience = (job.retries, job.timeout)  # this job's, for a refresh it sets off
        self.version = _codex_version(ctx.env)
        self.login: _ChatGPTLogin | None = None

    def prepare(self, job: _Job) -> None:
        if job.dry_run:
            try:
                self.login = self.auth.peek()
            except AuthError:
                self.login = None
            return
        self.login = self.auth.current(*self.patience)

    def routes(self, job: _Job) -> list:
        images, responses = _CodexImagesRoute(), ResponsesRoute(codex=True)
        if job.route == "responses":
            return [responses]
        if job.route == "images":
            return [images]
        # auto: the images route first, as Codex itself does; the Responses route first
        # where it serves the request better (JPEG or WebP it sends as asked; a mask, whose
        # effect on the images route is unknown), or where the images route cannot serve it
        # (more than 5 images), or after the images route refused it at no cost.
        native = job.format in responses.capabilities.formats and job.format not in \
            images.capabilities.formats and job.background != "transparent"
        order = [responses, images] if job.mask or native else [images, responses]
        usable = []
        for route in order:
            try:
                _plan_delivery(job, route)
            except UsageError:
                continue
            usable.append(route)
        return usable or order  # none: _Generator.check_routes says why, before sending

    def base_url(self, route: Any) -> str:
        return (self.base_override or self.configured_base_url(self.ctx.env) or "").rstrip("/")

    def headers(self, route: Any, dry_run: bool = False) -> dict:
        login = self.login if dry_run else self.auth.current(*self.patience)
        token = login.access_token if login else "***"
        # `version` stays: the backend gates models on it (a stale one gets "requires a
        # newer version of Codex"). Nothing else of Codex's own headers is sent.
        headers = {"Authorization": f"Bearer {token}", "originator": ORIGINATOR,
                   "User-Agent": _user_agent(), "version": self.version}
        account = login.account_id if login else None
        if account:
            headers["ChatGPT-Account-ID"] = account
        return headers

    def explain(self, error: ImagegenError) -> None:
        if isinstance(error, AuthError) and getattr(error, "status", None) == 403 \
                and "plan or workspace" not in error.message:
            error.message += ("; your ChatGPT plan or workspace may not include image "
                              "generation in Codex (the Free plan does not, and a workspace "
                              "admin can turn it off); logging in again will not change that")

    def dry_run_requests(self) -> list[_HttpRequest]:
        if self.login is None or not _needs_refresh(self.login, self.ctx.clock()):
            return []
        return [_json_request("POST", self.auth.token_url(), {}, {
            "client_id": CLIENT_ID, "grant_type": "refresh_token",
            "refresh_reason": "proactive_expiry", "refresh_token": "***"})]

    def recover(self, headers: dict) -> bool:
        rejected = headers.get("Authorization", "").partition(" ")[2]
        before = rejected
        self.login = self.auth.after_unauthorized(rejected, *self.patience)
        return self.login.access_token != before


def _bearer_headers(token: str | None) -> dict:
    return {"Authorization": f"Bearer {token or '***'}", "User-Agent": _user_agent()}


def _read_text_file(path: str) -> str | None:
    try:
        return _read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class _GatewayBackend(_Backend):
    """A local or remote codex-api (agent-cli-to-api) gateway."""

    name = "gateway"

    def prepare(self, job: _Job) -> None:
        env = self.ctx.env
        folder = os.path.join(_config_home(env), "codex-api")
        token_file = os.path.join(folder, "token")
        self.token = env.get("CODEX_API_TOKEN") or _read_text_file(
            token_file) or DEFAULT_GATEWAY_TOKEN
        if not env.get("CODEX_API_TOKEN") and self.token != DEFAULT_GATEWAY_TOKEN \
                and _readable_by_others(token_file):
            self.warnings.append(f"{token_file} holds the gateway token and other users can "
                                 f"read it: chmod 600 {token_file}")
        self.base = (self.base_override or env.get("CODEX_API_BASE_URL")
                     or _read_text_file(os.path.join(folder, "base_url"))
                     or DEFAULT_GATEWAY_URL).rstrip("/")
        if self.base.endswith("/v1"):
            self.base = self.base[:-3]
        self.ctx.secrets.add(self.token if self.token != DEFAULT_GATEWAY_TOKEN else None)

    def routes(self, job: _Job) -> list:
        return [_ChatRoute()]

    def base_url(self, route: Any) -> str:
        return self.base

    def headers(self, route: Any, dry_run: bool = False) -> dict:
        return _bearer_headers(self.token)

    def explain(self, error: ImagegenError) -> None:
        # No HTTP status and no connection: the usual cause is a gateway that is not running.
        if isinstance(error, BackendError) and getattr(error, "status", None) is None \
                and error.message.startswith(("cannot connect", "cannot reach", "cannot resolve")) \
                and GATEWAY_START_HINT not in error.message:
            error.message += (f"; is the gateway running at {self.base}? start it with "
                              f"{GATEWAY_START_HINT}")


def _provider_settings(env: dict) -> tuple[str, str | None, str]:
    """(base_url, env_key, provider id) of the model provider in Codex's config.toml."""
    path = os.path.join(_codex_home(env), "config.toml")
    try:
        config = load_toml(path)
    except FileNotFoundError:
        config = {}
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    provider = config.get("model_provider") or "openai"
    if provider == "openai":
        base = config.get("openai_base_url") or DEFAULT_API_BASE_URL
        return str(base), "OPENAI_API_KEY", "openai"
    table = (config.get("model_providers") or {}).get(provider)
    if not isinstance(table, dict) or not table.get("base_url"):
        raise UsageError(f"{path} names model_provider \"{provider}\" but has no "
                         f"[model_providers.{provider}] with a base_url")
    env_key = table.get("env_key")
    return str(table["base_url"]), str(env_key) if env_key else None, str(provider)


class _ResponsesBackend(_Backend):
    """Any Responses-compatible provider from Codex's config.toml, with its API key."""

    name = "responses"

    def prepare(self, job: _Job) -> None:
        env = self.ctx.env
        base, env_key, self.provider = _provider_settings(env)
        self.base = (self.base_override or base).rstrip("/")
        self.key = env.get(env_key) if env_key else None
        if not self.key:
            try:
                stored = read_auth_json(_auth_file_path(env), env).get("OPENAI_API_KEY")
            except AuthError:
                stored = None
            self.key = stored if isinstance(stored, str) and stored else None
        self.ctx.secrets.add(self.key)
        if not self.key and not job.dry_run:
            where = f"${env_key}" if env_key else "an env_key"
            raise AuthError(f"no API key for provider \"{self.provider}\": set {where}, or keep "
                            f"OPENAI_API_KEY in {_auth_file_path(env)}")

    def routes(self, job: _Job) -> list:
        return [ResponsesRoute()]

    def base_url(self, route: Any) -> str:
        return self.base

    def headers(self, route: Any, dry_run: bool = False) -> dict:
        return _bearer_headers(self.key)


class _ApiBackend(_Backend):
    """The OpenAI Images API (or a compatible provider) with a dedicated key."""

    name = "api"

    def __init__(self, ctx: _Context, job: _Job) -> None:
        super().__init__(ctx, job)
        self.extra_body: dict = {}  # prepare() reads them from the config file
        self.model: str | None = None

    def config_path(self, job: _Job) -> tuple[str | None, bool]:
        env = self.ctx.env
        explicit = job.config or env.get("IMAGEGEN_API_CONFIG")
        if explicit:
            return os.path.expanduser(explicit), True
        for folder in ("codex-imagegen", "gpt-image-2-apikey"):
            path = os.path.join(_config_home(env), folder, "config.json")
            if os.path.exists(path):
                return path, False
        return None, False

    def prepare(self, job: _Job) -> None:
        env = self.ctx.env
        path, explicit = self.config_path(job)
        config: dict = {}
        if path:
            try:
                config = json.loads(_read_regular_file(path, MAX_CONFIG_BYTES))
            except FileNotFoundError:
                raise UsageError(f"--config {path} does not exist") from None
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror}") from None
            except (ValueError, RecursionError) as exc:
                raise UsageError(f"cannot read {path}: {exc}") from None
            if not isinstance(config, dict):
                raise UsageError(f"{path} must hold a JSON object")
            if _readable_by_others(path) and config.get("api_key"):
                self.warnings.append(f"{path} holds an API key and other users can read it: "
                                     f"chmod 600 {path}")
        file_key = config.get("api_key") if isinstance(config.get("api_key"), str) else None
        env_key = env.get("IMAGEGEN_API_KEY")
        self.key = (file_key or env_key) if explicit else (env_key or file_key)
        self.ctx.secrets.add(self.key)
        # The URL follows the key's precedence, so a named file's key goes to that file's host.
        file_base = config.get("base_url") if isinstance(config.get("base_url"), str) else None
        env_base = env.get("IMAGEGEN_API_BASE_URL")
        self.base = (self.base_override or ((file_base or env_base) if explicit
                                            else (env_base or file_base))
                     or DEFAULT_API_BASE_URL).rstrip("/")
        self.base = re.sub(r"/images/(generations|edits)$", "", self.base)
        extra = config.get("extra_body") or {}
        if not isinstance(extra, dict):
            raise UsageError(f"extra_body in {path} must be a JSON object")
        self.extra_body = extra
        self.model = config.get("model") if isinstance(config.get("model"), str) else None
        if not self.key and not job.dry_run:
            default = os.path.join(_config_home(env), "codex-imagegen", "config.json")
            raise AuthError(f"no API key for --backend api: set IMAGEGEN_API_KEY, or write "
                            f"{{\"api_key\": ...}} to {default} (OPENAI_API_KEY is never used "
                            f"by this backend)")

    def routes(self, job: _Job) -> list:
        # --image-model (or IMAGEGEN_IMAGE_MODEL) wins over the config file's "model".
        return [_ImagesApiRoute(self.extra_body, None if job.image_model_set else self.model,
                               job.image_model)]

    def base_url(self, route: Any) -> str:
        return self.base

    def headers(self, route: Any, dry_run: bool = False) -> dict:
        return _bearer_headers(self.key)

    def units(self, job: _Job) -> list[int]:
        return [job.count]  # the Images API makes n images in one request


BACKENDS: dict[str, type] = {
    "codex": _CodexBackend, "gateway": _GatewayBackend,
    "responses": _ResponsesBackend, "api": _ApiBackend,
}


# Delivery: the file made to match the request #####################################################

#: Pillow's quality for a JPEG or WebP it writes when --compression is not given.
CONVERT_QUALITY = 90
PREVIEW_PIXELS = 2_000_000  # a larger PNG is shown as a thumbnail (a megabyte or two of escapes)


@dataclass(frozen=True)
class _Finish:
    """What was done to one image between the server and the file (for the stderr line,
    --json and --meta): the size and format received, the fit, a conversion, and how a
    transparent background was made: "native" (the server's alpha), "chroma-key" (a flat
    key colour asked for and removed here), "border-key" (an opaque answer whose flat border
    was removed here) or "opaque" (neither worked: a warning says so)."""

    received: str | None
    received_format: str
    fitted: str | None = None
    converted: str | None = None
    transparency: str | None = None
    transparency_detail: str | None = None
    warnings: tuple = ()

    def line(self) -> str | None:
        """One line for stderr, or None when the image was saved as it came."""
        parts = []
        if self.fitted:
            parts.append(self.fitted)
        if self.converted:
            parts.append(f"converted {self.converted}")
        if self.transparency:
            parts.append("transparency: " + {
                "native": "the server's own alpha channel",
                "chroma-key": f"made here ({self.transparency_detail})",
                "border-key": f"it came back opaque; keyed out its flat border "
                              f"({self.transparency_detail})",
                "opaque": "none (saved opaque)"}[self.transparency])
        if not parts:
            return None
        return f"received {self.received or 'an image'} {self.received_format}; " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {"received": self.received, "received_format": self.received_format,
                "fitted": self.fitted, "converted": self.converted,
                "transparency": self.transparency,
                "transparency_detail": self.transparency_detail}


def pillow_decode(data: bytes) -> Raster:
    """Any image Pillow reads, as an 8-bit RGB or RGBA Raster (PixelsError when it cannot)."""
    import io
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            alpha = picture.mode in ("RGBA", "LA", "PA", "La", "RGBa") or \
                "transparency" in picture.info
            converted = picture.convert("RGBA" if alpha else "RGB")
    except Exception as error:  # Pillow raises many kinds for a damaged file
        raise PixelsError(f"cannot read the image: {error}") from None
    width, height = converted.size
    channels = 4 if alpha else 3
    raw, stride = converted.tobytes(), width * channels
    return Raster(width, height, channels,
                  tuple(raw[y * stride:(y + 1) * stride] for y in range(height)))


def _pillow_encode(raster: Raster, fmt: str, compression: int | None = None) -> bytes:
    """A JPEG or WebP (or PNG) of the raster, written by Pillow. A JPEG cannot hold alpha:
    see-through pixels are laid on white. `compression` is the API's output_compression
    (0-100, 100 the best quality), Pillow's quality here."""
    import io
    from PIL import Image
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[raster.channels]
    picture = Image.frombytes(mode, (raster.width, raster.height), b"".join(raster.rows))
    if fmt == "jpeg" and raster.has_alpha:
        rgba = picture.convert("RGBA")
        picture = Image.new("RGB", rgba.size, (255, 255, 255))
        picture.paste(rgba, mask=rgba.getchannel("A"))
    buffer = io.BytesIO()
    quality = CONVERT_QUALITY if compression is None else max(1, compression)
    options = {"quality": quality} if fmt in ("jpeg", "webp") else {}
    picture.save(buffer, format={"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt], **options)
    return buffer.getvalue()


def _decode_any(data: bytes, fmt: str) -> Raster:
    """PNG by the standard-library core; JPEG and WebP by Pillow (callers check it is there)."""
    return decode_png(data) if fmt == "png" else pillow_decode(data)


def _border_colour(raster: Raster) -> tuple:
    """The median colour of the image's edge: the opaque padding of --fit contain."""
    border = _border_pixels(raster)
    return tuple(sorted(pixel[c] for pixel in border)[len(border) // 2] for c in range(3))


def _finish_image(image: _RawImage, job: _Job, delivery: _Delivery,
                 pillow: Callable[[], frozenset] = _pillow_formats) -> tuple[_RawImage, _Finish]:
    """The image as the job asked for it, and what was done (pure: bytes in, bytes out).

    In order: a transparent background (the chroma key asked for is removed, or an opaque
    answer's flat border is keyed out), the fit to --size (cover, contain, none), the
    conversion to the format asked for. PNG is worked on by the standard-library core, JPEG
    and WebP by Pillow; without Pillow a JPEG or WebP that needed work is kept as it came,
    with a warning (its real extension: never PNG bytes under .jpg). The bytes are returned
    untouched when nothing had to be done. BackendError when the server's image is broken."""
    info = image.info
    received = (f"{info.width}x{info.height}" if info.width and info.height else image.size)
    target = _parse_size(job.size)
    fit = target is not None and job.fit != "none" and (info.width, info.height) != target
    keyed = delivery.key is not None
    check_alpha = job.background == "transparent" and not keyed
    transparency: str | None = None
    data = b""
    try:
        if check_alpha:
            data = image.content()
            if has_transparency(data):
                transparency = "native"
        if not (fit or keyed or info.format != job.format
                or (check_alpha and transparency is None)):
            return image, _Finish(received, info.format, transparency=transparency)
        data = data or image.content()
        formats = pillow() if {info.format, job.format} - {"png"} else frozenset()
        if info.format != "png" and info.format not in formats:
            work = [what for what, needed in (
                (f"fitting it to {job.size}", fit), (f"converting it to {job.format}",
                                                     info.format != job.format),
                ("removing its background", keyed or check_alpha and transparency is None))
                if needed]
            return image, _Finish(received, info.format, transparency=(
                "opaque" if keyed or check_alpha and transparency is None else transparency),
                warnings=(f"kept as received ({received} {info.format}): "
                          f"{' and '.join(work)} needs Pillow ({PILLOW_FIX})",))
        raster = _decode_any(data, info.format)
    except PixelsError as error:
        raise BackendError(f"the server's {info.format} image cannot be read: {error}") from None
    warnings: list[str] = []
    changed, detail = False, None
    if keyed or (check_alpha and transparency is None):
        try:
            raster, detail = remove_chroma_key(raster, delivery.key)
            transparency, changed = ("chroma-key" if keyed else "border-key"), True
        except PixelsError as error:
            transparency = "opaque"
            warnings.append(
                f"no transparent background: the {delivery.key_name} background asked for did "
                f"not come back flat ({error}); saved opaque" if keyed else
                "no transparent background: the image came back opaque and its border is not "
                "a flat colour to remove; saved opaque (try again, or --backend api)")
    fitted = None
    writes = job.format if job.format == "png" or job.format in formats else info.format
    if fit:
        assert target is not None
        if job.fit == "cover":
            raster, done = cover(raster, *target)
        else:
            clear = writes in ("png", "webp") and job.background != "opaque"
            raster, done = contain(raster, *target, None if clear else _border_colour(raster))
        fitted, changed = f"{job.fit}: {done}", True
    if writes != job.format:
        warnings.append(f"saved as {writes}: converting it to {job.format} needs Pillow "
                        f"({PILLOW_FIX})")
    if not changed and writes == info.format:
        return image, _Finish(received, info.format, fitted, None, transparency, detail,
                             tuple(warnings))
    try:
        encoded = encode_png(raster) if writes == "png" else _pillow_encode(
            raster, writes, job.compression)
    except Exception as error:  # Pillow without an encoder it claimed, a full disk...
        raise BackendError(f"cannot write the image as {writes}: {error}") from None
    converted = f"{info.format} to {writes} with Pillow" if writes != info.format else None
    finished = _RawImage(data=encoded, info=sniff_image(encoded),  # type: ignore[arg-type]
                        revised_prompt=image.revised_prompt, model=image.model, size=image.size)
    return finished, _Finish(received, info.format, fitted, converted, transparency, detail,
                            tuple(warnings))


def _thumbnail_png(data: bytes, long_side: int = THUMBNAIL_SIDE) -> bytes | None:
    """A small PNG of any saved image: PNG by the core, JPEG and WebP through Pillow when
    it is there; None when it cannot be made."""
    info = sniff_image(data)
    if info is None:
        return None
    try:
        if info.format == "png":
            return png_thumbnail(data, long_side)
        if info.format not in _pillow_formats():
            return None
        return encode_png(_shrunk(pillow_decode(data), long_side))
    except PixelsError:
        return None


def _preview_image(path: str, protocol: str) -> bytes | None:
    """What --preview sends for the saved file: a PNG as it is (a thumbnail when it is very
    large); iTerm2 takes JPEG and WebP as they are, kitty only PNG (a thumbnail through
    Pillow, else nothing)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RESPONSE_BYTES + 1)
    except OSError:
        return None
    info = sniff_image(data)
    if info is None or len(data) > MAX_RESPONSE_BYTES:
        return None
    if info.format == "png":
        if (info.width or 0) * (info.height or 0) <= PREVIEW_PIXELS:
            return data
        return _thumbnail_png(data, 1024)
    if protocol == "iterm":
        return data
    return _thumbnail_png(data, 1024)


# Saving ###########################################################################################

class _SavePolicy:
    """The contract's save-path policy: where each image goes, claimed atomically."""

    def __init__(self, job: _Job, cwd: str, env: dict) -> None:
        self.job = job
        self.codex_home = _codex_home(env)
        self.slug = _slugify(job.prompt)
        self.explicit: str | None = None
        out = os.path.expanduser(job.out) if job.out else None
        if out is None:
            self.directory = os.path.join(cwd, "assets", "generated")
        elif out.endswith(("/", os.sep)) or os.path.isdir(os.path.join(cwd, out)):
            self.directory = os.path.normpath(os.path.join(cwd, out))
        else:
            path = os.path.normpath(os.path.join(cwd, out))
            if os.path.splitext(path)[1].lower() not in FORMAT_OF_EXTENSION:
                path += EXTENSIONS[job.format]
            self.explicit = path
            self.directory = os.path.dirname(path)

    def explicit_path(self, index: int) -> str:
        assert self.explicit is not None
        if index == 0:
            return self.explicit
        stem, ext = os.path.splitext(self.explicit)
        return f"{stem}-{index + 1}{ext}"

    def done_already(self) -> str | None:
        """The -o file when it exists and --force is not given: a batch line skips it."""
        if self.explicit and not self.job.force and os.path.lexists(self.explicit):
            return self.explicit
        return None

    def preflight(self, count: int) -> None:
        """Refuse, before any request, what saving would refuse later."""
        if _is_inside(self.directory, self.codex_home):
            raise OutputError(f"will not write inside the Codex home ({self.codex_home}): "
                              f"choose another -o")
        existing = self.directory
        while not os.path.exists(existing):
            parent = os.path.dirname(existing)
            if parent == existing:
                break
            existing = parent
        if not os.path.isdir(existing):
            raise OutputError(f"cannot create {self.directory}: {existing} is a file")
        why = _writable(existing)
        if why is not None:
            raise OutputError(f"cannot write to {existing}: {why}; choose a writable -o")
        if self.explicit and not self.job.force:
            for index in range(count):
                path = self.explicit_path(index)
                if os.path.lexists(path):
                    raise OutputError(f"{path} already exists: pass --force to replace it, or "
                                      f"choose another -o")
                if self.job.meta and os.path.lexists(path + ".json"):
                    raise OutputError(f"{path}.json already exists (--meta would replace it): "
                                      f"pass --force, or choose another -o")
        _check_path_length(self.explicit_path(count - 1) if self.explicit else
                          os.path.join(self.directory, "x" * 60), existing,
                          ".json" if self.job.meta else "")

    def save(self, image: _RawImage, index: int, ctx: _Context) -> tuple[str, tuple[str, ...]]:
        """Write the image beside its final name, then link or rename it into place.
        Returns the path and what the user should be warned of (a changed name)."""
        real = image.info.format
        renamed = False  # an -o whose extension does not match the bytes: never kept
        warnings: tuple[str, ...] = ()
        if self.explicit:
            target = self.explicit_path(index)
            if real != self.job.format:
                named = os.path.basename(target)
                target, renamed = os.path.splitext(target)[0] + EXTENSIONS[real], True
                warnings = (f"the server sent {real} although {self.job.format} was asked; "
                            f"saved as {os.path.basename(target)} (its real extension) "
                            f"instead of {named}",)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.directory}: {exc.strerror}") from None
        if _is_inside(self.directory, self.codex_home):
            raise OutputError(f"will not write inside the Codex home ({self.codex_home})")
        spill = image.spill
        if spill is not None and spill.path and os.path.dirname(spill.path) == self.directory:
            temporary = spill.path  # streamed here already: no copy
        else:
            fd, temporary = ctx.temporary_file(self.directory)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(image.content())
            except OSError as exc:
                os.unlink(temporary)
                raise OutputError(f"cannot write {self.directory}: {exc.strerror}") from None
        try:
            try:
                os.chmod(temporary, 0o644)
            except OSError as exc:
                raise OutputError(f"cannot write {self.directory}: {exc.strerror}") from None
            if self.explicit:
                if self.job.force and not renamed:  # --force named the -o file, not this one
                    try:
                        os.replace(temporary, target)
                    except OSError as exc:
                        raise OutputError(f"cannot write {target}: {exc.strerror}") from None
                elif not _claim(temporary, target):
                    raise OutputError(f"{target} already exists: pass --force to replace it")
                return target, warnings
            ext = EXTENSIONS[real]
            for number in range(1, 100_000):
                name = self.slug + (f"-{number}" if number > 1 else "") + ext
                target = os.path.join(self.directory, name)
                if _claim(temporary, target):
                    return target, warnings
            raise OutputError(f"no free name for {self.slug}{ext} in {self.directory}")
        finally:
            ctx.drop_temporary_file(temporary)


def _check_path_length(path: str, existing: str, suffix: str = "") -> None:
    """Refuse, before the image is paid for, a name the filesystem would refuse (F15b)."""
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
        path_max = os.pathconf(existing, "PC_PATH_MAX")
    except (AttributeError, ValueError, OSError):
        name_max, path_max = 255, 4096
    for part in (path + suffix).split(os.sep):
        if len(part.encode("utf-8", "surrogateescape")) > name_max:
            raise OutputError(f"the file name {part[:40]}... is longer than this filesystem "
                              f"allows ({name_max} bytes): choose a shorter -o")
    if len((path + suffix).encode("utf-8", "surrogateescape")) >= path_max:
        raise OutputError(f"the path {path[:60]}... is longer than this system allows "
                          f"({path_max} bytes): choose a shorter -o")


def _claim(temporary: str, target: str) -> bool:
    """Put a complete file at target unless something is there; atomic across processes."""
    import errno
    try:
        os.link(temporary, target)  # fails with EEXIST; never replaces
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK,
                             errno.EXDEV, errno.ENOSYS, errno.EACCES):
            raise OutputError(f"cannot write {target}: {exc.strerror}") from None
    # A filesystem without hard links: claim the name with O_EXCL, then rename over it.
    try:
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror}") from None
    os.replace(temporary, target)
    return True


def _write_sidecar(path: str, meta: dict, ctx: _Context | None = None,
                  force: bool = False) -> str | None:
    """<image>.json beside the image, complete or not at all. An existing one is replaced
    only with --force (None when it was kept). The temporary file is the run's (pid-stamped,
    registered), so Ctrl-C's cleanup removes it too."""
    sidecar = path + ".json"
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    if ctx is None:
        _write_file_atomic(sidecar, text.encode("utf-8"), 0o644, prefix=".imagegen-")
        return sidecar
    directory = os.path.dirname(os.path.abspath(sidecar))
    fd, temporary = ctx.temporary_file(directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            if hasattr(os, "fchmod"):
                os.fchmod(handle.fileno(), 0o644)
            handle.write(text.encode("utf-8", "replace"))
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(temporary, sidecar)
        elif not _claim(temporary, sidecar):
            return None
        return sidecar
    finally:
        ctx.drop_temporary_file(temporary)


# Outcomes: what a job came to #####################################################################

@dataclass(frozen=True)
class _Saved:
    """One image saved: where, what came, by which route, and what was done to it here."""

    index: int
    path: str
    image: _RawImage
    route: str
    elapsed: float
    sidecar: str | None = None
    finish: _Finish | None = None  # what was done to the image after it arrived
    warnings: tuple[str, ...] = ()  # what saving it found (a name changed, a sidecar kept)


@dataclass(frozen=True)
class _Failed:
    """One image not made: its place in the job (0 for the first) and why."""

    index: int
    error: ImagegenError


#: An image (or batch line) not started because a usage limit was reached before its turn.
NOT_STARTED = "not started: the usage limit was reached"


@dataclass(frozen=True)
class _Outcome:
    """What one job (a generate, an MCP call, a batch line) came to: every image's result
    (the saved ones in name order, also those saved before a failure; the failed ones in
    index order), the -o file that was there already (a batch line, skipped), or why the job
    did not run at all. Reporting turns it into output."""

    job: _Job | None  # None: a batch line that is not a valid job (see error)
    saved: tuple[_Saved, ...] = ()
    failed: tuple[_Failed, ...] = ()
    skipped: str | None = None
    not_run: ImagegenError | None = None  # before any image was asked for (no login, ...)

    @property
    def error(self) -> ImagegenError | None:
        """Why the job did not run, else its first failed image's error: the exit code."""
        if self.not_run is not None:
            return self.not_run
        return self.failed[0].error if self.failed else None

    @property
    def paths(self) -> list[str]:
        return [self.skipped] if self.skipped else [item.path for item in self.saved]


# Reporting ########################################################################################

HEARTBEAT_S = 15.0  # a plain "still working" line this often when stderr is not a terminal
#: The order phases happen in, for the live line (several images may be in different ones).
PHASES = ("sending", "thinking", "queued", "generating", "receiving", "received", "done")


class _Reporter:
    """The only printing code: results on stdout, everything else on stderr, all redacted."""

    def __init__(self, stdout: Any, stderr: Any, secrets: Secrets, env: dict,
                 quiet: bool = False, json_mode: bool = False, progress: bool = True) -> None:
        self.stdout, self.stderr, self.secrets = stdout, stderr, secrets
        self.quiet, self.json_mode = quiet, json_mode
        self.env = env
        tty = _isatty(stderr)
        dumb = env.get("TERM") == "dumb"
        self.color = tty and not dumb and not env.get("NO_COLOR")
        self.chatty = not quiet and not json_mode
        self.live = self.chatty and progress and tty and not dumb
        # Without a live line (a pipe, a log, --no-progress, TERM=dumb): a plain line now
        # and then, so a CI log or an agent sees the run is alive during a long generation.
        self.heartbeat = self.chatty and not self.live
        # stdout prints each saved path; when it is the same terminal as stderr, the
        # "saved" note would print every path a second time.
        self.same_terminal = tty and _isatty(stdout) and _same_file(stdout, stderr)
        self._lock = threading.Lock()
        self._states: dict[Any, tuple[str, int]] = {}
        self._started = time.monotonic()
        self._last_beat = self._started
        self._drawn = False
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self.to_stdout = False  # -o -: the image itself goes to stdout, not its path
        self._total = 0  # images (generate -n) or lines (batch) this run makes
        self._finished = 0
        self._unit = "done"

    def expect(self, total: int, unit: str = "done") -> None:
        """The live line counts `k/total <unit>` (for more than one image or line)."""
        with self._lock:
            self._total, self._finished, self._unit = total, 0, unit

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self._finished += count

    # stdout
    def result(self, line: str, keep: Iterable[str] = ()) -> None:
        """A result line; `keep`: saved paths in it, printed as they are (see Secrets.redact)."""
        with self._lock:
            self._clear()
            self._write(self.stdout, self.secrets.redact(_as_invoked(line), keep) + "\n")

    def result_bytes(self, data: bytes) -> None:
        """An image itself on stdout (-o -), binary."""
        with self._lock:
            self._clear()
            stream = getattr(self.stdout, "buffer", self.stdout)
            try:
                self.stdout.flush()
            except (AttributeError, OSError, ValueError):
                pass
            stream.write(data)
            stream.flush()

    def result_json(self, payload: dict, keep: Iterable[str] = ()) -> None:
        escaped = [_json_text(path)[1:-1] for path in keep]
        program = _json_text(_program_name())[1:-1]
        text = self.secrets.redact(_as_invoked(_json_text(payload), program), escaped)
        with self._lock:
            self._clear()
            self._write(self.stdout, text + "\n")

    # stderr
    def note(self, message: str, keep: Iterable[str] = ()) -> None:
        """A plain progress line: not with --quiet or --json."""
        if self.chatty:
            self._err(f"imagegen: {_printable(message)}", keep)

    def saved(self, message: str, keep: Iterable[str] = ()) -> None:
        """The "saved PATH (size, bytes, time)" note: not when stdout, the same terminal,
        prints the path anyway."""
        if not self.same_terminal and not self.to_stdout:
            self.note(message, keep)

    def asking(self, job: _Job) -> None:
        """The note that a job's request goes out."""
        what = f"{job.count} images" if job.count > 1 else "an image"
        self.note(f"asking {job.backend} for {what}" + (" (an edit)" if job.is_edit else "")
                  + "...")

    def image_saved(self, saved: _Saved, job: _Job, cwd: str, label: str = "") -> None:
        """An image is saved: what saving it found, one step of the count, the "saved" note,
        what was done to it here and its warnings (`label`: "line N: " in a batch)."""
        for warning in saved.warnings:
            self.warn(warning)
        info, image = saved.image.info, saved.image
        shown = _relative_for_display(saved.path, cwd)
        size = f"{info.width}x{info.height}"
        asked = f", {job.size} asked" if job.size and job.size not in ("auto", size) else ""
        self.advance()
        self.saved(f"saved {shown} ({size} {info.format}{asked}, "
                   f"{_human_bytes(image.nbytes)}, {saved.elapsed:.1f} s)", keep=(shown,))
        finish = saved.finish
        done = finish.line() if finish is not None else ""
        if done:
            self.note(f"{label}{shown}: {done}", keep=(shown,))
        for warning in finish.warnings if finish is not None else ():
            self.warn(f"{label}{shown}: {warning}")

    def preview(self, sequence: str) -> None:
        """An inline image for the terminal on stderr (--preview): escapes made here from an
        image's bytes, so written as they are (redaction could only damage the base64)."""
        with self._lock:
            self._clear()
            self._write(self.stderr, sequence)

    def warn(self, message: str) -> None:
        if not self.quiet:
            self._err(f"imagegen: warning: {_printable(message)}")

    def say(self, message: str) -> None:
        """A line the user must see whatever the flags (the device login's code)."""
        self._err(f"imagegen: {_printable(message)}")

    def error(self, message: str) -> None:
        prefix = "\x1b[31merror\x1b[0m" if self.color else "error"
        self._err(f"imagegen: {prefix}: {_printable(message)}")

    def _err(self, line: str, keep: Iterable[str] = ()) -> None:
        line = " ".join(self.secrets.redact(_as_invoked(line), keep).splitlines())
        with self._lock:
            self._clear()
            self._write(self.stderr, line + "\n")
            self._draw()

    # the live line
    def phase(self, index: Any, phase: str, received: int = 0) -> None:
        """Image `index` (any key unique in this run) is in `phase`, `received` bytes in."""
        if not self.live and not self.heartbeat:
            return
        with self._lock:
            self._states[index] = (phase, received)
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()

    def done(self, index: Any) -> None:
        with self._lock:
            self._states.pop(index, None)
            if not self._states:
                self._clear()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._states.clear()
            self._clear()

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                if not self._states:
                    continue
                if self.live:
                    self._draw()
                elif time.monotonic() - self._last_beat >= HEARTBEAT_S:
                    self._last_beat = time.monotonic()
                    self._write(self.stderr, self.secrets.redact(
                        "imagegen: still " + self._status()) + "\n")

    def _status(self) -> str:
        """ "generating · 2/6 saved · 4 in flight · 8 s · 1.2 MB" (under the lock)."""
        elapsed = time.monotonic() - self._started
        seen = {phase for phase, _ in self._states.values()}
        phases = [p for p in PHASES if p in seen] + sorted(seen - set(PHASES))
        received = sum(count for _, count in self._states.values())
        count = len(self._states)
        parts = ["/".join(phases)]
        if self._total > 1:
            parts += [f"{self._finished}/{self._total} {self._unit}", f"{count} in flight"]
        else:
            parts.append(f"{count} image{'s' if count > 1 else ''}")
        parts.append(f"{elapsed:.0f} s")
        if received:
            parts.append(_human_bytes(received))
        return " · ".join(parts)

    def _draw(self) -> None:
        if not self.live or not self._states:
            return
        line = "imagegen: " + self._status()
        width = self._columns() - 1  # the last column would wrap on some terminals
        if len(line) > width:
            line = line[:max(width - 1, 0)] + "…"
        # \x1b[2K clears one screen row only: the line must never wrap onto a second one
        self._write(self.stderr, "\r\x1b[2K" + line)
        self._drawn = True

    def _columns(self) -> int:
        """The width of the terminal stderr is on (COLUMNS wins, as in shutil)."""
        try:
            columns = int(self.env.get("COLUMNS", ""))
            if columns > 0:
                return columns
        except ValueError:
            pass
        try:
            return os.get_terminal_size(self.stderr.fileno()).columns or 80
        except (AttributeError, ValueError, OSError):
            import shutil
            return shutil.get_terminal_size().columns

    def _clear(self) -> None:
        if self._drawn:
            self._write(self.stderr, "\r\x1b[2K")
            self._drawn = False

    @staticmethod
    def _write(stream: Any, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except BrokenPipeError:
            raise
        except (OSError, ValueError):
            pass


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _same_file(first: Any, second: Any) -> bool:
    """Both streams write to one file or terminal (stdout and stderr on one tty)."""
    try:
        return os.path.samestat(os.fstat(first.fileno()), os.fstat(second.fileno()))
    except (AttributeError, ValueError, OSError):
        return False


#: C0 and C1 controls, and the bidi overrides and isolates that would reorder what is read.
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _printable(text: str) -> str:
    """One line with no control characters: a server's text (an error, the model's answer)
    must not move the cursor, retitle or clear the user's terminal."""
    return _CONTROL_RE.sub("?", " ".join(str(text).splitlines()))


#: C1 controls and bidirectional overrides and isolates: a server's text holding them, shown
#: raw by `cat` or `jq -r`, could drive the terminal or reorder what the user reads.
_UNSAFE_IN_JSON = re.compile("[\u0080-\u009f\u202a-\u202e\u2066-\u2069]")


def _json_text(value: Any) -> str:
    """One line of JSON, other non-ASCII text kept readable, the characters that could
    drive or reorder a terminal written as \\uXXXX escapes."""
    return _UNSAFE_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}",
                               json.dumps(value, ensure_ascii=False))


def _image_entry(saved: _Saved, job: _Job, cwd: str) -> dict:
    """One saved image in --json (generate, batch, MCP)."""
    info = saved.image.info
    entry = {"path": _relative_for_display(saved.path, cwd), "bytes": saved.image.nbytes,
             "format": info.format, "width": info.width, "height": info.height,
             "sha256": saved.image.sha256(),
             "revised_prompt": saved.image.revised_prompt,
             "model": saved.image.model or job.image_model, "route": saved.route,
             "elapsed_s": round(saved.elapsed, 2)}
    if saved.finish is not None:
        finish = saved.finish.as_dict()
        entry.update(received=finish["received"], fitted=finish["fitted"],
                     converted=finish["converted"], transparency=finish["transparency"])
    return entry


def error_entry(error: ImagegenError) -> dict:
    """A failure in --json."""
    entry: dict[str, Any] = {"kind": error.kind, "message": error.message,
                             "exit_code": error.exit_code}
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        entry["retry_after_s"] = round(error.retry_after, 1)
    return entry


def _failed_entries(outcome: _Outcome) -> list[dict]:
    """Every image not made, in --json: its number (1 for the first, as on stderr) and why."""
    return [{"index": item.index + 1, "error": error_entry(item.error)}
            for item in outcome.failed]


def _failure_lines(outcome: _Outcome) -> list[str]:
    """Why each image was not made, one line a reason: "image 2 of 4: ...", "images 3-4 of 4
    not started: ..." for images that failed alike; just the reason when one image was
    asked."""
    count = outcome.job.count if outcome.job else 1
    if count <= 1 or not outcome.failed:
        return [outcome.error.message] if outcome.error else []
    reasons: dict[tuple[str, str], list[int]] = {}  # in the order of the first image
    for item in outcome.failed:
        reasons.setdefault((item.error.kind, item.error.message), []).append(item.index + 1)
    lines = []
    for (_, message), numbers in reasons.items():
        which = f"image {numbers[0]}" if len(numbers) == 1 else f"images {_ranges(numbers)}"
        joint = " " if message.startswith("not started: ") else ": "
        lines.append(f"{which} of {count}{joint}{message}")
    return lines


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 5] -> "1-3, 5"."""
    parts: list[str] = []
    start = previous = numbers[0]
    for number in numbers[1:] + [0]:
        if number == previous + 1:
            previous = number
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        start = previous = number
    return ", ".join(parts)


def _generate_json(outcome: _Outcome, ctx: _Context) -> dict:
    """generate's --json object (also the MCP tool's result)."""
    job, saved, error = outcome.job, outcome.saved, outcome.error
    assert job is not None
    payload: dict[str, Any] = {"ok": error is None, "backend": job.backend,
                               "route": saved[0].route if saved else None}
    if error is not None:
        payload["error"] = error_entry(error)
    payload["images"] = [_image_entry(item, job, ctx.cwd) for item in saved]
    if outcome.failed:
        payload["failed"] = _failed_entries(outcome)
    if ctx.quota:
        payload["quota"] = ctx.quota
    return payload


def _report_generate(ctx: _Context, outcome: _Outcome) -> int:
    """generate's results: the saved paths (or one --json object), the previews, then the
    failure; returns the exit code."""
    reporter, job, error = ctx.reporter, outcome.job, outcome.error
    assert job is not None
    if job.json:
        payload = _generate_json(outcome, ctx)
        reporter.result_json(payload, keep=[image["path"] for image in payload["images"]])
    else:
        for path in outcome.paths:
            shown = _relative_for_display(path, ctx.cwd)
            reporter.result(shown, keep=(shown,))
    if job.preview:
        _show_previews(ctx, outcome.paths)
    for line in _failure_lines(outcome):
        reporter.error(line)
    return error.exit_code if error is not None else 0


def _show_previews(ctx: _Context, paths: list[str]) -> None:
    """--preview: each saved image inline on stderr, when stderr is a terminal that shows
    images (kitty's graphics protocol, iTerm2's or WezTerm's inline images); else nothing."""
    protocol = preview_protocol(ctx.env, _isatty(ctx.reporter.stderr))
    if protocol is None:
        return
    for path in paths:
        image = _preview_image(path, protocol)
        shown = _relative_for_display(path, ctx.cwd)
        if image is None:
            ctx.reporter.note(f"no preview of {shown}: this terminal shows PNG only, and "
                              f"making one from it needs Pillow ({PILLOW_FIX})", keep=(shown,))
            continue
        ctx.reporter.preview(preview_sequence(image, protocol, os.path.basename(path)))


def _report_line(ctx: _Context, number: int, outcome: _Outcome, json_mode: bool) -> None:
    """A batch line's result on stdout: its path(s) (tab-separated), or ERROR <kind>:
    <message>; with --json one object (a failed line lists what it saved before failing)."""
    reporter, job, error = ctx.reporter, outcome.job, outcome.error
    # --json has no quota line on stderr: each object carries the latest values seen
    quota = {"quota": ctx.quota} if ctx.quota else {}
    if error is not None:
        if json_mode:
            images = [_image_entry(s, job, ctx.cwd) for s in outcome.saved] if job else []
            failed = {"failed": _failed_entries(outcome)} if outcome.failed else {}
            reporter.result_json({"line": number, "ok": False,
                                  "prompt": job.prompt if job else None,
                                  "error": error_entry(error), "images": images,
                                  **failed, **quota},
                                 keep=[image["path"] for image in images])
        else:
            message = " ".join(error.message.split())
            label = f"line {number}: "
            reporter.result(f"ERROR {error.kind}: " + _printable(
                message if message.startswith(label) else label + message))
        return
    assert job is not None
    if json_mode:
        payload = {"line": number, "ok": True, "prompt": job.prompt,
                   "skipped": bool(outcome.skipped)}
        if outcome.skipped:
            payload["images"] = [{"path": _relative_for_display(outcome.skipped, ctx.cwd)}]
        else:
            payload["images"] = [_image_entry(s, job, ctx.cwd) for s in outcome.saved]
        reporter.result_json(dict(payload, **quota),
                             keep=[image["path"] for image in payload["images"]])
    else:
        shown = [_relative_for_display(path, ctx.cwd) for path in outcome.paths]
        reporter.result("\t".join(shown), keep=shown)


def _report_batch_end(ctx: _Context, outcomes: list[_Outcome], seconds: float) -> int:
    """The batch's last words on stderr (why it stopped starting lines, the counts);
    returns the exit code: the first failed line's."""
    failures = [outcome.error for outcome in outcomes if outcome.error is not None]
    skipped = sum(1 for outcome in outcomes if outcome.skipped)
    done = len(outcomes) - len(failures) - skipped
    limit = next((f for f in failures if isinstance(f, RateLimitError) and not f.transient), None)
    if limit is not None:
        ctx.reporter.warn(f"stopped starting new lines: {limit.message}")
    ctx.reporter.note(f"batch: {done} done, {skipped} skipped, {len(failures)} failed in "
                      f"{seconds:.1f} s")
    return failures[0].exit_code if failures else 0


# Quota ############################################################################################

_QUOTA_FAMILY_RE = re.compile(r"(?i)^x-([a-z0-9][a-z0-9-]*?)-(primary|secondary)-used-percent$")


def _quota_number(value: Any) -> float | None:
    """A header's or JSON field's number; None when absent, unreadable, inf or NaN (which
    strict JSON, in --json and the state file, cannot carry)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if -1e15 < number < 1e15 else None


def _describe_reset(resets_at: float | None, now: float) -> str:
    """ "resets at 14:05 (in 2h 3m)" in local time."""
    if resets_at is None:
        return ""
    try:
        left = max(0, int(resets_at - now))
        local = time.localtime(resets_at)
    except (OverflowError, OSError, ValueError):
        return ""  # inf, NaN or a year no calendar holds: a broken server, not worth a crash
    when = time.strftime("%H:%M" if left < 20 * 3600 else "%a %d %b %H:%M", local)
    hours, minutes = divmod(left // 60, 60)
    days, day_hours = divmod(hours, 24)
    span = (f"{days}d {day_hours}h" if days >= 2 else f"{hours}h {minutes}m" if hours
            else f"{max(minutes, 1)}m" if left >= 60 else f"{left}s")
    return f"resets at {when} (in {span})"


def _is_image_limit(limit: str | None) -> bool:
    """The limit that image requests spend (image_gen, imagegen_premium): shown first."""
    return bool(limit) and "image" in str(limit).lower()


def _quota_window(limit: str, name: str, used: Any, minutes: Any, resets_at: Any,
                  reset_after: Any, now: float) -> dict | None:
    used_percent = _quota_number(used)
    if used_percent is None:
        return None
    minutes_number = _quota_number(minutes)
    if minutes_number is not None and int(minutes_number) == 0:
        return None  # a window of 0 minutes is no window (the images route sends one)
    at = _quota_number(resets_at)
    if at is None and _quota_number(reset_after) is not None:
        at = now + _quota_number(reset_after)  # type: ignore[operator]
    return {"limit": limit, "name": name, "used_percent": used_percent,
            "window_minutes": int(minutes_number) if minutes_number is not None else None,
            "resets_at": int(at) if at is not None else None}


def _quota(windows: list[dict], active: Any, plan: Any) -> dict | None:
    if not windows:
        return None
    # the image limit first, then the rest as the server listed them
    windows.sort(key=lambda window: not _is_image_limit(window["limit"]))
    quota: dict[str, Any] = {"windows": windows}
    if isinstance(active, str) and active:
        quota["active_limit"] = active
    if isinstance(plan, str) and plan:
        quota["plan_type"] = plan
    return quota


def quota_from_headers(headers: Any, now: float | None = None) -> dict | None:
    """Every rate-limit family in an answer's headers: x-codex-{primary,secondary}-*, and any
    x-<limit>-{primary,secondary}-* (x-image-gen-*, named by x-<limit>-limit-name), with
    x-codex-active-limit and x-codex-plan-type. Windows of 0 minutes are left out."""
    if headers is None:
        return None
    now = time.time() if now is None else now
    try:
        named = {str(key).lower(): str(value) for key, value in headers.items()}
    except (AttributeError, TypeError, ValueError):
        return None
    families = []
    for key in named:
        match = _QUOTA_FAMILY_RE.match(key)
        if match and match.group(1) not in families:
            families.append(match.group(1))
    families.sort(key=lambda family: family != "codex")
    active = named.get("x-codex-active-limit")
    limits = {family: named.get(f"x-{family}-limit-name") or family.replace("-", "_")
              for family in families}
    if "codex" in limits and active and active not in limits.values():
        limits["codex"] = active  # the default family describes the limit in force
    windows = []
    for family in families:
        for which in ("primary", "secondary"):
            prefix = f"x-{family}-{which}-"
            window = _quota_window(limits[family], which, named.get(prefix + "used-percent"),
                                   named.get(prefix + "window-minutes"),
                                   named.get(prefix + "reset-at"),
                                   named.get(prefix + "reset-after-seconds"), now)
            if window is not None:
                windows.append(window)
    return _quota(windows, active, named.get("x-codex-plan-type"))


def _chatgpt_base_url(codex_base: str) -> str:
    """The ChatGPT backend (wham/*) beside the Codex backend: the base without `/codex`."""
    base = codex_base.rstrip("/")
    return base[:-len("/codex")] if base.endswith("/codex") else base


def _fetch_usage(ctx: _Context, login: _ChatGPTLogin, codex_base: str) -> dict:
    """GET {chatgpt base}/wham/usage: live usage; costs no image quota."""
    headers = {"Authorization": f"Bearer {login.access_token}",
               "User-Agent": _user_agent(), "Accept": "*/*"}
    if login.account_id:
        headers["ChatGPT-Account-ID"] = login.account_id
    request = _HttpRequest("GET", _chatgpt_base_url(codex_base) + "/wham/usage", headers)
    answer, _ = ctx.transport.fetch_json(request, ctx.monotonic() + 30, 30)
    if not isinstance(answer, dict):
        raise BackendError("the wham/usage answer is not a JSON object")
    return answer


def _quota_from_usage(payload: Any, now: float) -> dict | None:
    """The answer of GET {chatgpt}/wham/usage in the shape quota_from_headers gives:
    rate_limit (the Codex limit) and additional_rate_limits[] (image_gen ...)."""
    if not isinstance(payload, dict):
        return None
    windows: list[dict] = []

    def read(limit: str, rate_limit: Any) -> None:
        if not isinstance(rate_limit, dict):
            return
        for which in ("primary", "secondary"):
            window = rate_limit.get(f"{which}_window")
            if not isinstance(window, dict):
                continue
            seconds = _quota_number(window.get("limit_window_seconds"))
            found = _quota_window(limit, which, window.get("used_percent"),
                                  None if seconds is None else seconds // 60,
                                  window.get("reset_at"), window.get("reset_after_seconds"), now)
            if found is not None:
                windows.append(found)

    read("codex", payload.get("rate_limit"))
    for extra in _listed(payload.get("additional_rate_limits")):
        if isinstance(extra, dict):
            name = extra.get("limit_name") or extra.get("metered_feature")
            read(str(name) if name else "other", extra.get("rate_limit"))
    return _quota(windows, None, payload.get("plan_type"))


def window_label(minutes: int | None, name: str) -> str:
    if not minutes:
        return f"{name} window"
    if minutes == 10080:
        return "weekly window"
    if minutes == 1440:
        return "daily window"
    if minutes % 60 == 0:
        return f"{minutes // 60}-hour window"
    return f"{minutes}-minute window"


def _span(seconds: float) -> str:
    left = max(0, int(seconds))
    hours, minutes = divmod(left // 60, 60)
    days, day_hours = divmod(hours, 24)
    return (f"{days}d {day_hours}h" if days >= 2 else f"{hours}h {minutes}m" if hours
            else f"{max(minutes, 1)}m" if left >= 60 else f"{left}s")


def describe_quota(quota: dict, now: float, width: int = 83) -> str:
    """One short line (at most `width` characters; the rest counted as "+N more"): the image
    limit first, e.g. "images daily: 34% used, resets in 2h 0m; codex weekly: 3% used..."."""
    parts = _quota_parts(quota, now)
    shown: list[str] = []
    for index, part in enumerate(parts):
        rest = len(parts) - index - 1
        candidate = "; ".join(shown + [part])
        if len(candidate) + (len(f" (+{rest} more)") if rest else 0) > width and shown:
            return "; ".join(shown) + f" (+{len(parts) - index} more)"
        shown.append(part)
    return "; ".join(shown)


def _quota_parts(quota: dict, now: float) -> list[str]:
    """Each window of a quota as a few words ("images daily: 34% used, resets in 2h 0m")."""
    windows = [w for w in quota.get("windows", ()) if isinstance(w, dict)]
    several = len({w.get("limit") for w in windows}) > 1
    parts: list[str] = []
    for window in windows:
        label = window_label(window.get("window_minutes"), window.get("name", "")).replace(
            " window", "")
        if several:
            limit = window.get("limit")
            owner = "images" if _is_image_limit(limit) else "codex" if limit in (
                "codex", quota.get("active_limit")) else str(limit)
            label = f"{owner} {label}"
        text = f"{label}: {window.get('used_percent', 0):g}% used"
        resets_at = window.get("resets_at")
        if isinstance(resets_at, (int, float)) and resets_at <= now:
            # `auth status` shows values kept from an earlier run: don't say "resets in 0s"
            text += " when last seen, has reset since"
        elif isinstance(resets_at, (int, float)):
            text += f", resets in {_span(resets_at - now)}"
        if text not in parts:  # two families may describe the same window
            parts.append(text)
    return parts


def _quota_state_path(env: dict) -> str:
    return os.path.join(os.path.dirname(_auth_file_path(env)), "codex-imagegen-quota.json")


# The run's context ################################################################################

class _Context:
    """What one command run shares: environment, clock, transport, secrets, reporter."""

    def __init__(self, env: dict, cwd: str, stdin: Any, stdout: Any, stderr: Any, *,
                 quiet: bool = False, json_mode: bool = False, progress: bool = True,
                 opener: Any = None,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 random: Callable[[], float] | None = None) -> None:
        import random as random_module
        self.env, self.cwd, self.stdin = env, cwd, stdin
        self.clock, self.monotonic = clock, monotonic
        self.random = random or random_module.random
        self.cancel = threading.Event()
        self.sleep = self._cancellable_sleep if sleep is time.sleep else sleep
        self.secrets = Secrets()
        self.transport = Transport(opener, monotonic, self.cancel)
        self.reporter = _Reporter(stdout, stderr, self.secrets, env, quiet, json_mode, progress)
        self.temporary_files: set[str] = set()
        self.temporary_dirs: set[str] = set()  # where this run may have a .part file
        self.temporary_prefix = f".imagegen-{os.getpid()}-"
        self.files_lock = threading.Lock()  # a .part file's creation vs Ctrl-C's cleanup
        self.quota: dict | None = None
        self.keep_quota = False  # the quota came from a backend that keeps it (codex)
        self.interrupted_images: list[dict] = []  # saved before Ctrl-C: still printed
        self._codex_auth: _CodexAuth | None = None
        self._lock = threading.Lock()

    def _cancellable_sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise Interrupted("interrupted")

    def codex_auth(self) -> _CodexAuth:
        with self._lock:
            if self._codex_auth is None:
                self._codex_auth = _CodexAuth(self.env, self.transport, self.secrets, self.clock,
                                             sleep=self.sleep, warn=self.reporter.warn)
            return self._codex_auth

    def see_headers(self, headers: Any, keep: bool = False) -> None:
        """Take the quota from a response's headers; `keep`: the backend keeps it on disk."""
        quota = quota_from_headers(headers)
        if quota:
            with self._lock:
                self.quota = dict(quota, seen_at=int(self.clock()))
                self.keep_quota = self.keep_quota or keep

    def temporary_file(self, directory: str) -> tuple[int, str]:
        """A new .part file in directory, registered for Ctrl-C's cleanup: (fd, path).
        Under files_lock, so the cleanup sees either no file or a registered one; the
        directory is registered first, so a signal between the file's creation and its
        registration still finds it by its pid-stamped prefix."""
        with self.files_lock:
            if self.cancel.is_set():
                raise Interrupted("interrupted")
            self.temporary_dirs.add(directory)
            try:
                fd, path = _make_temporary(directory, self.temporary_prefix, ".part")
            except OSError as exc:
                raise OutputError(f"cannot write in {directory}: {exc.strerror}") from None
            self.temporary_files.add(path)
        return fd, path

    def drop_temporary_file(self, path: str) -> None:
        """Remove one .part file of temporary_file's (gone already is fine) and forget it."""
        try:
            os.unlink(path)
        except OSError:
            pass
        self.temporary_files.discard(path)

    def remove_temporary_files(self) -> None:
        """After Ctrl-C (cancel is set): no save starts any more; remove what was begun."""
        import glob
        with self.files_lock:
            paths = set(self.temporary_files)
            for directory in self.temporary_dirs:
                paths.update(glob.glob(os.path.join(glob.escape(directory),
                                                    glob.escape(self.temporary_prefix)
                                                    + "*.part")))
            for path in paths:
                try:
                    os.unlink(path)
                except OSError:
                    pass
                self.temporary_files.discard(path)


# Generating #######################################################################################

class _Generator:
    """One Job: its requests (with retries, one refresh, route fallback), then its saves."""

    def __init__(self, ctx: _Context, job: _Job, label: str = "") -> None:
        self.ctx, self.job, self.label = ctx, job, label
        self.backend: _Backend = BACKENDS[job.backend](ctx, job)
        self.policy = _SavePolicy(job, ctx.cwd, ctx.env)
        self.saved: list[_Saved] = []
        self.failed: list[_Failed] = []
        self.stop_starting = threading.Event()
        self.prepared = False
        self.rejected_routes: set[str] = set()  # once a route gave no image, skip it after
        self.noted_routes: set[str] = set()  # routes whose ignored options were warned about
        self._lock = threading.Lock()

    def check_routes(self) -> None:
        """Refuse, before anything is sent, what no route of the job can deliver (exit 2),
        and say once what happens to --size where the backend picks the size itself."""
        job = self.job
        problems, usable = [], []
        for route in self.backend.routes(job):
            try:
                _plan_delivery(job, route)
            except UsageError as error:
                problems.append(error.message)
            else:
                usable.append(route)
        if not usable:  # the preferred route's reason: each one names every fix
            raise UsageError(problems[0])
        line = _aspect_line(job.size) if usable[0].capabilities.aspect_line else None
        if line:
            fitted = (f"; the image is fitted to {job.size} here (--fit {job.fit})"
                      if job.fit != "none" else "; --fit none keeps the size that comes")
            self.ctx.reporter.note(f"{self.label}--size {job.size}: the {job.backend} backend "
                                   f"picks the size itself; the prompt asks for {line}{fitted}")

    def note_route(self, route: Any) -> None:
        """One warning a route: the options it leaves out."""
        # what it is sent: a --compression used here for a conversion is not "left out"
        options = route.ignored(_plan_delivery(self.job, route).wire)
        with self._lock:
            if route.name in self.noted_routes:
                return
            self.noted_routes.add(route.name)
        if options:
            self.ctx.reporter.warn(f"{self.label}not sent on the {self.job.backend} {route.name} "
                                   f"route (the service ignores or refuses them): "
                                   f"{', '.join(options)}")
        if route.capabilities.mask is None and self.job.mask:
            self.ctx.reporter.warn(f"{self.label}whether the {self.job.backend} {route.name} "
                                   f"route honours --mask is unknown: check the result")

    # dry run
    def dry_requests(self, inputs: _Inputs) -> list[dict]:
        self.check_routes()
        try:
            self.backend.prepare(self.job)
        finally:
            self._forward_warnings()
        requests = [_HttpRequest("GET", source, {}).for_display()
                    for source in self.job.images + ((self.job.mask,) if self.job.mask else ())
                    if _is_url(source)]
        route = self.backend.routes(self.job)[0]
        self.note_route(route)
        requests.extend(request.for_display() for request in self.backend.dry_run_requests())
        wire = _plan_delivery(self.job, route).wire
        for n in self.backend.units(self.job):
            headers = self.backend.headers(route, dry_run=True)
            request = route.build(wire, inputs, n, self.backend.base_url(route), headers)
            requests.append(request.for_display())
        return requests

    # the real thing
    def prepare(self) -> None:
        """Check the routes, find the credentials once (AuthError when there are none)."""
        if not self.prepared:
            self.check_routes()
            try:
                self.backend.prepare(self.job)
            finally:
                self._forward_warnings()
            self.prepared = True

    def _forward_warnings(self) -> None:
        """What the backend found while preparing (a key file others can read), said once."""
        for warning in self.backend.warnings:
            self.ctx.reporter.warn(warning)
        self.backend.warnings.clear()

    def run(self, inputs: _Inputs, parallel: int | None = None) -> None:
        """Make and save every image; each image not made is collected in self.failed."""
        job = self.job
        self.prepare()
        tasks, first = [], 0
        for n in self.backend.units(job):
            tasks.append(lambda first=first, n=n: self._unit(inputs, first, n))
            first += n
        _run_pool(tasks, parallel or job.parallel, self.ctx)

    def _unit(self, inputs: _Inputs, first: int, n: int) -> None:
        job, reporter = self.job, self.ctx.reporter
        if self.stop_starting.is_set():
            self._fail(first, n, RateLimitError(NOT_STARTED))
            return
        started = self.ctx.monotonic()
        images: list[_RawImage] = []
        try:
            images, route = self._fetch(inputs, first, n)
            delivery = _plan_delivery(job, route)
            for offset, received in enumerate(images[:n]):
                image, finish = _finish_image(received, job, delivery)
                path, warnings = self.policy.save(image, first + offset, self.ctx)
                elapsed = self.ctx.monotonic() - started
                saved = _Saved(first + offset, path, image, route.name, elapsed, finish=finish,
                              warnings=warnings)
                if job.meta:
                    sidecar, more = self._write_meta(saved, route.capabilities)
                    saved = replace(saved, sidecar=sidecar, warnings=warnings + more)
                with self._lock:
                    self.saved.append(saved)
                reporter.image_saved(saved, job, self.ctx.cwd, self.label)
            if len(images) < n:
                raise NoImageError(f"asked for {n} images, the server sent {len(images)}")
        except Interrupted:
            raise
        except (ImagegenError, RecursionError) as error:
            if isinstance(error, RecursionError):  # json's C decoder on "[[[[..." (F4)
                error = BackendError("the answer is nested too deeply to read (malformed "
                                     "answer)")
            if isinstance(error, RateLimitError) and not error.transient:
                self.stop_starting.set()
            done = sum(1 for s in self.saved if first <= s.index < first + n)
            self._fail(first + done, n - done, error)
        finally:
            reporter.done((id(self), first))  # the key: unique across a batch's generators
            for image in images:  # streamed files of images that were not saved
                if image.spill is not None:
                    image.spill.discard()

    def _fail(self, index: int, count: int, error: ImagegenError) -> None:
        """Images index..index+count-1 were not made, all for the same reason."""
        with self._lock:
            self.failed.extend(_Failed(index + k, error) for k in range(max(count, 1)))

    def _fetch(self, inputs: _Inputs, first: int, n: int) -> tuple[list[_RawImage], Any]:
        routes = self.backend.routes(self.job)
        if len(routes) > 1:
            routes = [r for r in routes if r.name not in self.rejected_routes] or routes[-1:]
        deadline = self.ctx.monotonic() + self.job.timeout
        answered: ImagegenError | None = None  # a model's text answer on an earlier route
        for position, route in enumerate(routes):
            self.note_route(route)
            try:
                return self._with_retries(route, inputs, first, n, deadline), route
            except ImagegenError as error:
                if error.fallback and position + 1 < len(routes):
                    if isinstance(error, NoImageError) and answered is None:
                        answered = error
                    with self._lock:
                        first_switch = route.name not in self.rejected_routes
                        self.rejected_routes.add(route.name)
                    if first_switch:
                        self.ctx.reporter.warn(
                            f"the {route.name} route gave no image ({error.message[:160]}); "
                            f"switching to the {routes[position + 1].name} route")
                    continue
                if answered is not None and answered is not error:
                    raise self._with_earlier_answer(error, answered, route.name) from None
                raise
        raise BackendError("no route left")  # not reached

    @staticmethod
    def _with_earlier_answer(error: ImagegenError, answered: ImagegenError,
                             route: str) -> ImagegenError:
        """The last route's failure must not hide what the model said on an earlier one: a
        route problem gives way to the model's answer (exit 6); any other failure keeps its
        kind and carries the answer in its message."""
        if error.fallback:
            answered.message += f"; then the {route} route failed too: {error.message}"
            return answered
        error.message += f"; before that, {answered.message}"
        return error

    def _with_retries(self, route: Any, inputs: _Inputs, first: int, n: int,
                      deadline: float) -> list[_RawImage]:
        job = self.job
        for attempt in range(job.retries + 1):
            try:
                return self._attempt(route, inputs, first, n, deadline)
            except ImagegenError as error:
                if not error.transient or attempt >= job.retries:
                    raise
                delay = error.retry_after
                if delay is None:
                    delay = _backoff_delay(attempt, self.ctx.random)
                delay = min(delay, RETRY_AFTER_CAP_S)
                if self.ctx.monotonic() + delay >= deadline:
                    raise
                self.ctx.reporter.note(f"{error.message[:200]}; retrying in {delay:.1f} s "
                                       f"({attempt + 1}/{job.retries})")
                self.ctx.sleep(delay)
        raise BackendError("no attempt left")  # not reached

    def _attempt(self, route: Any, inputs: _Inputs, first: int, n: int,
                 deadline: float) -> list[_RawImage]:
        job, backend, ctx = _plan_delivery(self.job, route).wire, self.backend, self.ctx
        refreshed = False
        while True:
            headers = backend.headers(route)
            request = route.build(job, inputs, n, backend.base_url(route), headers)
            ctx.reporter.phase((id(self), first), "sending")
            try:
                response = ctx.transport.open(request, deadline, job.stall_timeout,
                                              self.job.timeout)
            except _Unauthorized as error:
                if not refreshed and backend.recover(headers):
                    refreshed = True
                    continue
                raise AuthError(error.message + ("; it survived a refresh of the login"
                                                 if refreshed else "")) from None
            except ImagegenError as error:
                headers_seen = getattr(error, "headers", None)
                ctx.see_headers(headers_seen, backend.keeps_quota)
                backend.explain(error)
                raise
            spills = Spills(self.policy.directory, ctx.temporary_file)
            try:
                ctx.see_headers(response.headers, backend.keeps_quota)
                def progress(phase: str, received: int) -> None:
                    ctx.reporter.phase((id(self), first), phase, received)

                images = route.read(response, progress, spills=spills)
            except BaseException:
                spills.claimed.clear()
                raise
            finally:
                spills.release()  # what no image claimed: partial images, unknown strings
                response.close()
            try:
                return fetch_image_urls(images, route.where, ctx.transport)
            except BaseException:
                for image in images:  # streamed before a URL failed: not saved
                    if image.spill is not None:
                        image.spill.discard()
                raise

    def _write_meta(self, saved: _Saved,
                    capabilities: _Capabilities) -> tuple[str | None, tuple[str, ...]]:
        """Write the --meta sidecar: its path (None when not written) and what to warn."""
        job = self.job
        info = saved.image.info
        meta = {
            "prompt": job.prompt, "revised_prompt": saved.image.revised_prompt,
            "backend": job.backend, "route": saved.route, "model": job.model
            if capabilities.host_model else None,
            "image_model": saved.image.model or job.image_model,
            "size_requested": job.size or "auto",
            "size_received": f"{info.width}x{info.height}" if info.width else saved.image.size,
            "format": info.format, "quality": job.quality or "auto",
            "background": job.background or "auto",
            "fit": job.fit,
            "reference_images": [s if _is_url(s) else os.path.basename(s) for s in job.images],
            "created_at": _utc_now_rfc3339(self.ctx.clock()),
            "elapsed_s": round(saved.elapsed, 2),
            "tool": f"codex-imagegen {__version__}",
        }
        if saved.finish is not None:  # what came, and what was done to it here
            finish = saved.finish.as_dict()
            meta.update(size_received=finish["received"], size_saved=f"{info.width}x{info.height}",
                        format_received=finish.pop("received_format"),
                        **{key: finish[key] for key in ("fitted", "converted", "transparency",
                                                        "transparency_detail")})
        meta = json.loads(self.ctx.secrets.redact(json.dumps(meta)))
        try:
            sidecar = _write_sidecar(saved.path, meta, self.ctx, job.force)
        except (OSError, OutputError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else exc.message
            return None, (f"could not write {saved.path}.json: {why}",)
        if sidecar is None:
            return None, (f"{saved.path}.json already exists: kept it (pass --force to "
                          f"replace it)",)
        return sidecar, ()

    def outcome(self) -> _Outcome:
        """The job's outcome so far: what was saved, in name order, and what failed, in
        index order."""
        with self._lock:
            saved = sorted(self.saved, key=lambda s: _name_order(s.path))
            failed = sorted(self.failed, key=lambda f: f.index)
        return _Outcome(self.job, tuple(saved), tuple(failed))


def _run_pool(tasks: list[Callable[[], None]], parallel: int, ctx: _Context) -> None:
    """Run tasks with at most `parallel` in flight; tasks record their own failures.
    The main thread keeps waiting interruptibly so Ctrl-C stops everything at once."""
    if parallel <= 1 or len(tasks) <= 1:
        for task in tasks:
            task()
        return
    import queue
    pending: queue.Queue = queue.Queue()
    for task in tasks:
        pending.put(task)
    crashes: list[BaseException] = []

    def worker() -> None:
        while not ctx.cancel.is_set():
            try:
                task = pending.get_nowait()
            except queue.Empty:
                return
            try:
                task()
            except Interrupted:
                return
            except BaseException as exc:  # a bug: surface it in the main thread
                crashes.append(exc)
                return

    threads = [threading.Thread(target=worker, daemon=True)
               for _ in range(min(parallel, len(tasks)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)
    except BaseException:
        # Ctrl-C, or a closed stdout: stop the workers and wait for them (briefly), so that
        # none is killed at exit half-way through writing a file (F9b/c).
        ctx.cancel.set()
        ctx.transport.abort()
        ends = time.monotonic() + SIGNAL_GRACE_S
        for thread in threads:
            thread.join(max(0.0, ends - time.monotonic()))
        raise
    if crashes:
        raise crashes[0]


def _cmd_generate(job: _Job, ctx: _Context) -> int:
    if job.out == "-" and not job.dry_run:
        return _generate_to_stdout(job, ctx)
    if job.dry_run:
        inputs = _load_inputs(job, ctx.transport)
        _warn_opaque_mask(job, inputs, ctx.reporter)
        generator = _Generator(ctx, job)
        ctx.reporter.result_json({"requests": generator.dry_requests(inputs),
                                  "saves": _planned_saves(generator.policy, job.count, ctx.cwd)})
        return 0
    outcome = _generate(job, ctx)
    _report_quota(ctx)
    return _report_generate(ctx, outcome)


def _generate(job: _Job, ctx: _Context) -> _Outcome:
    """Make and save one job's images (generate, and each MCP call). What fails before
    anything is sent (a reference, the output folder, the login) raises; a failure after
    that is in the outcome, with the images saved before it."""
    inputs = _load_inputs(job, ctx.transport)
    _warn_opaque_mask(job, inputs, ctx.reporter)
    generator = _Generator(ctx, job)
    generator.policy.preflight(job.count)
    generator.prepare()
    ctx.reporter.expect(job.count, "saved")
    ctx.reporter.asking(job)
    try:
        generator.run(inputs)
    except KeyboardInterrupt:
        # main prints what was saved before the interruption (the contract: saved images
        # are still printed)
        ctx.interrupted_images = [_image_entry(s, job, ctx.cwd)
                                  for s in generator.outcome().saved]
        raise
    finally:
        ctx.reporter.close()
    return generator.outcome()


def _warn_opaque_mask(job: _Job, inputs: _Inputs, reporter: _Reporter) -> None:
    if inputs.mask is not None and inputs.mask.data and _png_is_opaque(inputs.mask.data):
        reporter.warn(f"the mask {job.mask} has no transparent pixel, so the edit may change "
                      f"nothing: make transparent the area to repaint")


def _generate_to_stdout(job: _Job, ctx: _Context) -> int:
    """-o -: the image's bytes on stdout, for a pipe (one image; never onto a terminal).
    It is made in a private temporary folder like any other save, then copied out."""
    import shutil
    import tempfile
    reporter = ctx.reporter
    if job.count != 1:
        raise UsageError("-o - writes one image to stdout: use -n 1, or give -o a folder")
    if job.json or job.meta:
        raise UsageError(f"-o - puts the image itself on stdout: it cannot go with "
                         f"{'--json' if job.json else '--meta'}")
    if _isatty(reporter.stdout):
        raise UsageError("-o - writes image bytes to stdout, which is a terminal here: pipe "
                         "it (imagegen \"...\" -o - > image.png) or give -o a path")
    folder = tempfile.mkdtemp(prefix="imagegen-stdout-")
    try:
        staged = replace(job, out=folder + os.sep)
        inputs = _load_inputs(staged, ctx.transport)
        _warn_opaque_mask(job, inputs, reporter)
        generator = _Generator(ctx, staged)
        generator.prepare()
        reporter.asking(job)
        reporter.to_stdout = True
        try:
            generator.run(inputs)
        finally:
            reporter.close()
        _report_quota(ctx)
        outcome = generator.outcome()
        if outcome.error is not None or not outcome.saved:
            error = outcome.error or NoImageError("no image was made")
            reporter.error(error.message)
            return error.exit_code
        item = outcome.saved[0]
        with open(item.path, "rb") as handle:
            reporter.result_bytes(handle.read())
        info = item.image.info
        reporter.note(f"wrote {info.width}x{info.height} {info.format} "
                      f"({_human_bytes(item.image.nbytes)}) to stdout")
        return 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _planned_saves(policy: _SavePolicy, count: int, cwd: str) -> list[str]:
    """Where a real run would save each image now (for --dry-run), claiming nothing: the
    -o names, or the first free automatic names (a PNG's extension unless asked otherwise)."""
    if policy.job.out == "-":
        return ["-"]  # stdout
    if policy.explicit:
        paths = [policy.explicit_path(index) for index in range(count)]
    else:
        ext = EXTENSIONS[policy.job.format]
        paths, number = [], 1
        while len(paths) < count and number < 100_000:
            name = policy.slug + (f"-{number}" if number > 1 else "") + ext
            path = os.path.join(policy.directory, name)
            if not os.path.lexists(path):
                paths.append(path)
            number += 1
    return [_relative_for_display(path, cwd) for path in paths]


def _report_quota(ctx: _Context) -> None:
    if not ctx.quota:
        return
    if ctx.keep_quota:
        try:
            path = _quota_state_path(ctx.env)
            if os.path.isdir(os.path.dirname(path)):
                _write_file_atomic(path, json.dumps(ctx.quota).encode("utf-8"), 0o600,
                                  prefix=".imagegen-quota-")
        except OSError:
            pass
    ctx.reporter.note("quota: " + describe_quota(ctx.quota, ctx.clock()))


# Command: auth ####################################################################################

def _cmd_auth_status(ctx: _Context, json_mode: bool) -> int:
    env, reporter = ctx.env, ctx.reporter
    path = _auth_file_path(env)
    now = ctx.clock()
    status: dict[str, Any] = {"auth_file": path, "kind": "none", "usable": False}
    warnings: list[str] = []
    problem = None
    try:
        data = read_auth_json(path, env)
    except AuthError as error:
        data, problem = None, error.message
    if data is not None:
        status["kind"] = kind = _login_kind(data)
        if _readable_by_others(path):
            warnings.append(f"other users can read {path}: chmod 600 {path}")
        if kind == "apikey":
            problem = (f"{path} holds an API key, not a ChatGPT login: run `imagegen auth login`"
                       f" for the subscription, or use that key with --backend responses")
        else:
            try:
                login = _chatgpt_login(data, path)
            except AuthError as error:
                problem = error.message
            else:
                ctx.secrets.add(*login.secrets())
                claims = _jwt_claims(login.id_token)
                auth_claim = claims.get(AUTH_CLAIM) if isinstance(claims.get(AUTH_CLAIM),
                                                                   dict) else {}
                profile = claims.get(PROFILE_CLAIM) if isinstance(claims.get(PROFILE_CLAIM),
                                                                  dict) else {}
                expires = _access_expiry(login)
                expired = _needs_refresh(login, now)
                status.update({
                    "account_id": _shorten_id(login.account_id),
                    "plan": auth_claim.get("chatgpt_plan_type"),
                    "email": claims.get("email") or profile.get("email"),
                    "access_token_expires_at": (_utc_now_rfc3339(expires)[:19] + "Z"
                                                if expires else None),
                    "access_token_expired": expired,
                    "refresh_token": login.refresh_token is not None,
                    "last_refresh": login.last_refresh,
                })
                if expired and login.refresh_token:
                    warnings.append("the access token has expired; it will be refreshed on the "
                                    "next request (fine)")
                    status["usable"] = True
                elif expired:
                    problem = ("the access token has expired and there is no refresh token: "
                               "run `imagegen auth login`")
                else:
                    status["usable"] = True
                status.update(_live_usage(ctx, login, expired))
    try:
        with open(_quota_state_path(env), encoding="utf-8") as handle:
            status["quota"] = json.load(handle)
    except (OSError, ValueError):
        pass
    if problem:
        status["problem"] = problem
    status["warnings"] = warnings
    if json_mode:
        reporter.result_json(status)
    else:
        labels = (("auth file", "auth_file"), ("login", "kind"), ("account", "account_id"),
                  ("plan", "plan"), ("email", "email"),
                  ("access token expires", "access_token_expires_at"),
                  ("last refresh", "last_refresh"))
        for label, key in labels:
            if status.get(key) is not None:
                value = status[key]
                if key == "access_token_expires_at" and status.get("access_token_expired"):
                    value = f"{value} (expired)"
                reporter.result(f"{label + ':':22}{_printable(value)}")  # claims: no escapes
        if isinstance(status.get("usage"), dict):
            for number, part in enumerate(_quota_parts(status["usage"], now)):
                reporter.result(f"{'usage (live):' if number == 0 else '':22}{_printable(part)}")
        elif status.get("usage_problem"):
            reporter.result(f"{'usage (live):':22}{_printable(status['usage_problem'])}")
        if isinstance(status.get("quota"), dict) and status["quota"].get("windows"):
            reporter.result(f"{'quota:':22}{describe_quota(status['quota'], now, 78)}")
            seen = status["quota"].get("seen_at")
            if isinstance(seen, (int, float)):
                reporter.result(f"{'quota seen:':22}"
                                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(seen))}")
        reporter.result(f"{'usable:':22}{'yes' if status['usable'] else 'no'}")
        for warning in warnings:
            reporter.warn(warning)
        if problem:
            reporter.error(problem)
    return 0 if status["usable"] else AuthError.exit_code


def _live_usage(ctx: _Context, login: _ChatGPTLogin, expired: bool) -> dict:
    """{"usage": quota} from wham/usage, or {"usage_problem": why not} (never a refresh:
    status only looks)."""
    if expired:
        return {"usage_problem": "not asked: the access token has expired (the next image "
                                 "request refreshes it)"}
    base = ctx.env.get("IMAGEGEN_CODEX_BASE_URL") or DEFAULT_CODEX_BASE_URL
    try:
        quota = _quota_from_usage(_fetch_usage(ctx, login, base), ctx.clock())
    except ImagegenError as error:
        return {"usage_problem": f"could not read it from {_chatgpt_base_url(base)}/wham/usage: "
                                 f"{error.message[:200]}"}
    if quota is None:
        return {"usage_problem": "the wham/usage answer holds no rate limits"}
    return {"usage": quota}


def _form_request(url: str, fields: dict, headers: dict) -> _HttpRequest:
    import urllib.parse
    body = urllib.parse.urlencode(fields).encode("ascii")
    return _HttpRequest("POST", url, dict(headers, **{
        "Content-Type": "application/x-www-form-urlencoded"}), body, fields)


def _cmd_auth_login(ctx: _Context, open_browser: bool) -> int:
    """Codex's device-code login; writes auth.json in Codex's format."""
    env, reporter, transport = ctx.env, ctx.reporter, ctx.transport
    issuer = (env.get("IMAGEGEN_AUTH_BASE_URL") or DEFAULT_AUTH_BASE_URL).rstrip("/")
    headers = {"originator": ORIGINATOR, "User-Agent": _user_agent(),
               "Accept": "application/json"}
    try:
        answer, _ = transport.fetch_json(_json_request(
            "POST", f"{issuer}/api/accounts/deviceauth/usercode", headers,
            {"client_id": CLIENT_ID}), ctx.monotonic() + 60, 60)
    except ImagegenError as error:
        if getattr(error, "status", None) == 404:
            raise AuthError("device code login is not enabled for this server (HTTP 404); "
                            "use `codex login` in a browser instead") from None
        raise
    if not isinstance(answer, dict):
        raise BackendError("the device login answer is not a JSON object")
    device_auth_id = answer.get("device_auth_id")
    user_code = answer.get("user_code") or answer.get("usercode")
    if not isinstance(device_auth_id, str) or not isinstance(user_code, str):
        raise BackendError("the device login answer lacks device_auth_id or user_code")
    ctx.secrets.add(device_auth_id)
    try:
        interval = float(answer.get("interval", 5))
    except (TypeError, ValueError):
        interval = 5.0
    if not 0 <= interval < float("inf"):  # NaN, inf and negatives: the usual 5 s
        interval = 5.0
    interval = min(interval, DEVICE_POLL_MAX_S)  # "1e9" would sleep for decades
    url = f"{issuer}/codex/device"
    reporter.say(f"to log in, open {url} and enter the code {user_code} "
                  f"(it expires in 15 minutes)")
    reporter.say("device codes are a common phishing target: never share this code")
    if open_browser:
        import webbrowser
        try:
            webbrowser.open(url)
        except Exception:
            pass
    deadline = ctx.monotonic() + DEVICE_LOGIN_LIMIT_S
    grant = None
    while grant is None:
        if ctx.monotonic() >= deadline:
            raise AuthError("the device login was not completed within 15 minutes; run "
                            "`imagegen auth login` again")
        ctx.sleep(max(0.0, min(interval, deadline - ctx.monotonic())))
        try:
            grant, _ = transport.fetch_json(_json_request(
                "POST", f"{issuer}/api/accounts/deviceauth/token", headers,
                {"device_auth_id": device_auth_id, "user_code": user_code}),
                ctx.monotonic() + 60, 60)
        except ImagegenError as error:
            if getattr(error, "status", None) in (403, 404):
                continue
            raise AuthError(f"device login failed: {error.message}") from None
        if not isinstance(grant, dict) or not grant.get("authorization_code"):
            raise AuthError("device login failed: the answer has no authorization_code")
    ctx.secrets.add(grant.get("authorization_code"), grant.get("code_verifier"))
    try:
        tokens, _ = transport.fetch_json(_form_request(f"{issuer}/oauth/token", {
            "grant_type": "authorization_code", "code": grant["authorization_code"],
            "redirect_uri": f"{issuer}/deviceauth/callback", "client_id": CLIENT_ID,
            "code_verifier": grant.get("code_verifier") or ""}, headers),
            ctx.monotonic() + 60, 60)
    except ImagegenError as error:
        raise AuthError(f"device login failed at the token exchange: {error.message}") from None
    if not isinstance(tokens, dict) or not all(isinstance(tokens.get(name), str) and tokens[name]
                                               for name in ("id_token", "access_token",
                                                            "refresh_token")):
        raise AuthError("device login failed: the token answer lacks id, access or refresh "
                        "token")
    ctx.secrets.add(tokens["id_token"], tokens["access_token"], tokens["refresh_token"])
    path = _write_login(env, tokens, ctx.clock())
    claims = _jwt_claims(tokens["id_token"])
    plan = (claims.get(AUTH_CLAIM) or {}).get("chatgpt_plan_type") if isinstance(
        claims.get(AUTH_CLAIM), dict) else None
    who = claims.get("email") or "your ChatGPT account"
    reporter.say(f"logged in as {who}" + (f" ({plan})" if plan else "")
                  + f"; saved {path}")
    return 0


def _read_login_bytes(path: str) -> bytes | None:
    """auth.json as it is (None: there is none); AuthError when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthError(f"cannot read {path}: {exc.strerror}") from None


def _back_up_login(path: str, old: bytes) -> None:
    """auth.json.bak, before auth.json changes; AuthError (nothing changed) when it fails."""
    try:
        _write_file_atomic(path + ".bak", old, 0o600, prefix=".auth-bak-")
    except OSError as exc:
        raise AuthError(f"cannot back up {path}: {exc.strerror}; nothing was changed") from None


def _write_login(env: dict, tokens: dict, now: float) -> str:
    """Write auth.json like Codex, under Codex's locks, keeping a .bak of the old one."""
    path = _auth_file_path(env)
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise AuthError(f"cannot create {directory}: {exc.strerror}") from None
    account = _account_id_of({"id_token": tokens["id_token"]})
    with _AuthLocks(path):
        data: dict[str, Any] = {}
        old = _read_login_bytes(path)
        if old is not None:
            _back_up_login(path, old)
            try:
                previous = json.loads(old)
                if isinstance(previous, dict):  # keep fields this tool does not know
                    data.update({key: value for key, value in previous.items() if key not in (
                        "auth_mode", "OPENAI_API_KEY", "tokens", "last_refresh",
                        "agent_identity")})
            except ValueError:
                pass
        data.update({"auth_mode": "chatgpt", "OPENAI_API_KEY": None, "tokens": {
            "id_token": tokens["id_token"], "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"], "account_id": account},
            "last_refresh": _utc_now_rfc3339(now)})
        try:
            _write_file_atomic(path, json.dumps(data, indent=2).encode("utf-8"), 0o600,
                              prefix=".auth-")
        except OSError as exc:
            raise AuthError(f"cannot write {path}: {exc.strerror}") from None
    return path


def _cmd_auth_logout(ctx: _Context, force: bool) -> int:
    """Forget what this tool keeps. auth.json is Codex's login as much as ours (auth login
    writes it in Codex's format, for both): only --force removes the ChatGPT login from it,
    after a copy in auth.json.bak, and keeps an API key that is also there."""
    env, reporter = ctx.env, ctx.reporter
    path = _auth_file_path(env)
    removed = []
    cache = _quota_state_path(env)
    try:
        os.unlink(cache)
        removed.append(cache)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise AuthError(f"cannot remove {cache}: {exc.strerror}") from None
    if not force:
        for item in removed:
            reporter.result(f"removed {item}")
        if os.path.exists(path):
            reporter.say(f"kept {path}: it is Codex's login too (shared); `codex logout` or "
                         f"`imagegen auth logout --force` removes it, and logs out both")
        else:
            reporter.say("no login to remove")
        return 0
    with _AuthLocks(path, sleep=ctx.sleep):
        old = _read_login_bytes(path)
        data: Any = None
        if old is not None:
            try:
                data = json.loads(old)
            except ValueError:
                pass
        if isinstance(data, dict) and not isinstance(data.get("tokens"), dict):
            old = None  # an API key only: no ChatGPT login to remove
        if old is not None:
            _back_up_login(path, old)
            try:
                if isinstance(data, dict) and data.get("OPENAI_API_KEY"):
                    # An API key Codex also keeps here: not a ChatGPT login, so it stays.
                    kept = {key: value for key, value in data.items()
                            if key not in ("tokens", "last_refresh", "agent_identity")}
                    kept["auth_mode"] = "apikey"
                    _write_file_atomic(path, json.dumps(kept, indent=2).encode("utf-8"),
                                      0o600, prefix=".auth-")
                else:
                    os.unlink(path)
            except OSError as exc:
                raise AuthError(f"cannot change {path}: {exc.strerror}") from None
            removed.append(f"the ChatGPT login in {path} (a copy is in {path}.bak)")
    for item in removed:
        reporter.result(f"removed {item}")
    if not removed:
        reporter.say("no login to remove")
    return 0


# Command: batch ###################################################################################

def _read_batch_lines(source: str, stdin: Any, cwd: str) -> list[str]:
    """The lines of a batch file (or stdin), split at line feeds only: JSON text may hold
    U+2028, U+0085 and the like, which str.splitlines() would also split at (F5). A UTF-8
    byte-order mark (Notepad) is dropped; text that is not UTF-8 is a usage error."""
    if source == "-":
        buffer = getattr(stdin, "buffer", None)
        if buffer is not None:
            raw = buffer.read(MAX_BATCH_BYTES + 1)
            if len(raw) > MAX_BATCH_BYTES:
                raise UsageError(f"the batch on stdin is larger than "
                                 f"{_human_bytes(MAX_BATCH_BYTES)}")
            text = _batch_text(raw, "the batch on stdin")
        else:
            text = _read_text_capped(stdin, MAX_BATCH_BYTES, "the batch on stdin")
    else:
        try:
            raw = _read_regular_file(os.path.join(cwd, os.path.expanduser(source)),
                                    MAX_BATCH_BYTES)
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from None
        text = _batch_text(raw, source)
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _batch_text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        hint = " (it looks like UTF-16: save it as UTF-8)" if raw[:2] in (
            b"\xff\xfe", b"\xfe\xff") else ""
        raise UsageError(f"{name} is not UTF-8 text{hint}") from None


def _batch_job(line: str, defaults: dict, env: dict) -> _Job:
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"not a JSON object: {getattr(exc, 'msg', exc)}") from None
    except RecursionError:
        raise UsageError("not a JSON object: nested too deeply") from None
    if not isinstance(entry, dict):
        raise UsageError("not a JSON object")
    options = dict(defaults)
    for key, value in entry.items():
        name = str(key).replace("-", "_")
        if name == "output_format":
            name = "format"
        if name not in JOB_OPTIONS:
            known = [repr(option) for option in JOB_OPTIONS if option != "output_format"]
            raise UsageError(f"unknown key {key!r}" + _did_you_mean(repr(name), known))
        options[name] = value
    if "prompt" not in entry:
        raise UsageError('no "prompt" key')
    _check_utf8(json.dumps(entry, ensure_ascii=False), "the line")
    _check_batch_base_url(entry, defaults, env)
    if "image" in entry:
        options["image"] = entry["image"]
    return _make_job(options, env)


def _check_batch_base_url(entry: dict, defaults: dict, env: dict) -> None:
    """A batch file may come from untrusted text (an agent writes it): a line may not send
    the ChatGPT login anywhere but the codex base URL configured outside the file."""
    url = entry.get("base_url", entry.get("base-url"))
    if url is None:
        return
    backend = entry.get("backend") or defaults.get("backend") or env.get("IMAGEGEN_BACKEND") \
        or "codex"
    backend_class = BACKENDS.get(str(backend))
    if backend_class is None or not backend_class.carries_login:
        return
    configured = defaults.get("base_url") or backend_class.configured_base_url(env) or ""
    if not isinstance(url, str) or url.rstrip("/") != configured.rstrip("/"):
        raise UsageError("a batch line may not set base_url for the codex backend: the "
                         "ChatGPT login goes only to the codex base URL set outside the batch "
                         "file (--base-url or IMAGEGEN_CODEX_BASE_URL)")


@dataclass(frozen=True)
class _BatchLine:
    """One non-blank line of a batch: its number, and its job or why it has none."""

    number: int
    job: _Job | None
    error: ImagegenError | None = None


def _cmd_batch(source: str, defaults: dict, ctx: _Context, settings: dict) -> int:
    """`imagegen batch FILE`: every line's images, its result printed in input order."""
    started = ctx.monotonic()
    lines = _check_lines(_plan_lines(source, defaults, ctx), ctx)
    if settings.get("dry_run"):
        return _batch_dry_run(ctx, lines)
    json_mode = bool(settings.get("json"))
    runnable = [line for line in lines if line.job is not None]
    _warn_invalid(ctx.reporter, source, [line.number for line in lines if line.job is None])
    _warn_without_out(ctx.reporter, [line.number for line in runnable if not line.job.out])
    printer = _InOrder([line.number for line in lines],
                       lambda number, outcome: _report_line(ctx, number, outcome, json_mode))
    for line in lines:  # an invalid line's ERROR, in its place: it is never sent
        if line.job is None:
            printer.done(line.number, _Outcome(None, not_run=line.error))
    stop = threading.Event()  # a usage limit was reached: no new line starts
    ctx.reporter.expect(sum(line.job.count for line in runnable), "saved")
    parallel = settings.get("parallel") or min(len(runnable), PARALLEL_DEFAULT_CAP) or 1
    begun: set[int] = set()  # the lines started, for the count after Ctrl-C

    def run(line: _BatchLine) -> None:
        begun.add(line.number)
        printer.done(line.number, _run_line(ctx, line, stop))

    try:
        _run_pool([lambda line=line: run(line) for line in runnable], parallel, ctx)
    except KeyboardInterrupt:
        printer.flush()
        raise _BatchInterrupted(_interrupted_summary(lines, dict(printer.outcomes), begun)) \
            from None
    finally:
        ctx.reporter.close()
    outcomes = printer.in_order()
    if settings.get("gallery"):
        _write_gallery(ctx, _gallery_shots(outcomes))
    _report_quota(ctx)
    return _report_batch_end(ctx, outcomes, ctx.monotonic() - started)


def _plan_lines(source: str, defaults: dict, ctx: _Context) -> list[_BatchLine]:
    """The batch's non-blank lines, each made into a job (or the usage error why not)."""
    lines = []
    for number, text in enumerate(_read_batch_lines(source, ctx.stdin, ctx.cwd), 1):
        if not text.strip():
            continue
        if not lines and text.lstrip().startswith("["):  # no JSONL line starts so
            raise UsageError(f"{source} is a JSON array: a batch takes one JSON object per "
                             f"line (JSONL), not an array")
        try:
            lines.append(_BatchLine(number, _batch_job(text, defaults, ctx.env)))
        except UsageError as error:
            lines.append(_BatchLine(number, None, UsageError(f"line {number}: {error.message}")))
    if not lines:
        raise UsageError(f"{source} holds no prompts")
    return lines


def _check_lines(lines: list[_BatchLine], ctx: _Context) -> list[_BatchLine]:
    """Every line checked, before the first request, as far as can be without sending
    anything: its "out" (inside the Codex home, not writable, the same as another line's) and
    its local reference images and mask. A line that fails is never sent (its ERROR is
    printed in its place). A line whose "out" exists is not checked further: it is skipped."""
    checked: list[_BatchLine] = []
    claimed: dict[str, int] = {}  # an explicit output path: the line that names it
    for line in lines:
        job = line.job
        if job is None:
            checked.append(line)
            continue
        try:
            policy = _SavePolicy(job, ctx.cwd, ctx.env)
            for index in range(job.count if policy.explicit else 0):
                path = policy.explicit_path(index)
                first = claimed.setdefault(os.path.normcase(path), line.number)
                if first != line.number:
                    raise UsageError(f'"out" {_relative_for_display(path, ctx.cwd)} is also '
                                     f"line {first}'s")
            if not policy.done_already():
                policy.preflight(job.count)
                _load_inputs(replace(job, dry_run=True), ctx.transport)  # no download
        except ImagegenError as error:
            line = _BatchLine(line.number, None, type(error)(f"line {line.number}: "
                                                             f"{error.message}"))
        checked.append(line)
    return checked


def _lines_named(numbers: list[int], most: int = 5) -> str:
    """ "line 3", or "lines 2, 4, 7" (the first `most`, then "...")."""
    shown = ", ".join(map(str, numbers[:most])) + (", ..." if len(numbers) > most else "")
    return f"line{'s' if len(numbers) > 1 else ''} {shown}"


def _warn_invalid(reporter: _Reporter, source: str, numbers: list[int]) -> None:
    """Before the first request: which lines will not be sent, and how to check a file
    without sending anything (the valid lines still run, each line keeps its result line)."""
    if not numbers:
        return
    import shlex
    many = len(numbers) > 1
    name = "FILE" if source == "-" else shlex.quote(source)
    reporter.warn(f"{_lines_named(numbers, 10)} {'are' if many else 'is'} invalid and will "
                  f"not be sent ({'their' if many else 'its'} ERROR line{'s' if many else ''} "
                  f"say{'' if many else 's'} why); `imagegen batch {name} --dry-run` checks a "
                  f"file without sending anything")


def _batch_dry_run(ctx: _Context, lines: list[_BatchLine]) -> int:
    """batch --dry-run: one JSON object with every request and save of the lines a real run
    would start (not those whose out exists); the first invalid line's exit code."""
    requests: list[dict] = []
    saves: list[str] = []
    for line in lines:
        if line.job is None:
            continue
        job = replace(line.job, dry_run=True)
        policy = _SavePolicy(job, ctx.cwd, ctx.env)
        if policy.done_already():
            continue  # the real run would skip it and send nothing
        inputs = _load_inputs(job, ctx.transport)
        requests.extend(_Generator(ctx, job).dry_requests(inputs))
        saves.extend(path for path in _planned_saves(policy, job.count, ctx.cwd)
                     if path not in saves)  # (automatic names are claimed in turn)
    ctx.reporter.result_json({"requests": requests, "saves": saves})
    errors = [line.error for line in lines if line.error is not None]
    for error in errors:
        ctx.reporter.error(error.message)
    return errors[0].exit_code if errors else 0


def _warn_without_out(reporter: _Reporter, numbers: list[int]) -> None:
    """Lines without "out" are made again on every run of the batch: say so once."""
    if not numbers:
        return
    many = len(numbers) > 1
    reporter.warn(f"{_lines_named(numbers)} ha{'ve' if many else 's'} no \"out\": "
                  f"running this batch again makes {'them' if many else 'it'} again (give each "
                  f"line an \"out\" and a re-run skips what is done)")


def _run_line(ctx: _Context, line: _BatchLine, stop: threading.Event) -> _Outcome:
    """Make one batch line's images, one request at a time (the lines run in parallel)."""
    job = line.job
    assert job is not None
    generator = _Generator(ctx, job, label=f"line {line.number}: ")
    # A line already done is reported as done even after a usage limit: it costs nothing.
    existing = generator.policy.done_already()
    if existing:
        ctx.reporter.advance(job.count)
        return _Outcome(job, skipped=existing)
    if stop.is_set():
        return _Outcome(job, not_run=RateLimitError(f"{NOT_STARTED} earlier in this batch"))
    try:
        inputs = _load_inputs(job, ctx.transport)
        generator.policy.preflight(job.count)
        generator.run(inputs, parallel=1)
        outcome = generator.outcome()
    except Interrupted:
        raise
    except ImagegenError as error:
        outcome = _Outcome(job, not_run=error)
    if isinstance(outcome.error, RateLimitError) and not outcome.error.transient:
        stop.set()
    return outcome


class _BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C in a batch: `summary` says what was done and how to resume (main prints it)."""

    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


def _interrupted_summary(lines: list[_BatchLine], outcomes: dict[int, _Outcome],
                         begun: set[int]) -> str:
    """ "batch interrupted: 2 done, 1 failed, 1 cut off, 3 not started; ...how to resume";
    `outcomes`: the finished lines' by number; `begun`: the numbers of the lines started."""
    failed = sum(1 for outcome in outcomes.values() if outcome.error is not None)
    skipped = sum(1 for outcome in outcomes.values() if outcome.skipped)
    done = len(outcomes) - failed - skipped
    unfinished = [line.number for line in lines if line.number not in outcomes]
    cut = sum(1 for number in unfinished if number in begun)
    counts = [f"{done} done"] + ([f"{skipped} skipped"] if skipped else []) \
        + [f"{failed} failed"] + ([f"{cut} cut off"] if cut else []) \
        + [f"{len(unfinished) - cut} not started"]
    # What a re-run does: a line whose "out" exists is skipped; any other line is made again.
    numbers = sorted(number for number, outcome in outcomes.items()
                     if outcome.error is None and not outcome.skipped
                     and outcome.job is not None and not outcome.job.out)
    also = ""
    if numbers:
        also = (f"; {_lines_named(numbers)} ha{'ve' if len(numbers) > 1 else 's'} no \"out\" "
                f"and would be made again")
    return (f"batch interrupted: {', '.join(counts)}; no partial file was left; run the same "
            f"command again to resume (lines whose \"out\" file exists are skipped{also})")


class _InOrder:
    """Batch results in input order while the lines finish in any order: a line's result is
    reported once every line before it has one."""

    def __init__(self, numbers: list[int], report: Callable[[int, _Outcome], None]) -> None:
        self.numbers, self.report = numbers, report
        self.outcomes: dict[int, _Outcome] = {}
        self.reported = 0
        self.flushed = False
        self._lock = threading.Lock()

    def flush(self) -> None:
        """After Ctrl-C: report the lines that finished behind one that never will (in
        input order, the unfinished left out); later results are kept, not reported."""
        with self._lock:
            for number in self.numbers[self.reported:]:
                if number in self.outcomes:
                    self.report(number, self.outcomes[number])
            self.reported, self.flushed = len(self.numbers), True

    def done(self, number: int, outcome: _Outcome) -> None:
        with self._lock:
            self.outcomes[number] = outcome
            while not self.flushed and self.reported < len(self.numbers) \
                    and self.numbers[self.reported] in self.outcomes:
                number = self.numbers[self.reported]
                self.report(number, self.outcomes[number])
                self.reported += 1

    def in_order(self) -> list[_Outcome]:
        with self._lock:
            return [self.outcomes[number] for number in self.numbers if number in self.outcomes]


def _gallery_shots(outcomes: list[_Outcome]) -> list[tuple]:
    """(prompt, path, note) of every image a batch saved or found already there, and
    (prompt, None, why) of every line or image that failed, in input order, for --gallery."""
    shots: list[tuple] = []
    for outcome in outcomes:
        if outcome.job is None:
            continue
        if outcome.not_run is not None:
            shots.append((outcome.job.prompt, None, _gallery_error(outcome.not_run)))
            continue
        if outcome.skipped:
            shots.append((outcome.job.prompt, outcome.skipped, "already there"))
            continue
        for item in outcome.saved:
            fitted = item.finish is not None and item.finish.fitted
            shots.append((outcome.job.prompt, item.path,
                          f"received {item.finish.received}" if fitted else ""))
        shots.extend((outcome.job.prompt, None, _gallery_error(failed.error))
                     for failed in outcome.failed)
    return shots


def _gallery_error(error: ImagegenError) -> str:
    return f"{error.kind}: " + _printable(" ".join(error.message.split()))[:300]


GALLERY_TITLE = "imagegen gallery"


def _write_gallery(ctx: _Context, shots: list[tuple]) -> str | None:
    """batch --gallery: index.html in the outputs' common folder inside the workspace (the
    workspace itself when they have none there), a contact sheet with a thumbnail, the
    prompt, the size and the path of each. An index.html this tool did not write is left
    alone. Says where on stderr (also with --json: stdout holds only the lines' results)."""
    reporter = ctx.reporter
    if not any(path for _, path, _ in shots):
        reporter.note("no gallery: the batch saved no image")
        return None
    folders = [os.path.dirname(os.path.abspath(path)) for _, path, _ in shots if path]
    try:
        directory = os.path.commonpath(folders)
    except ValueError:  # different drives
        directory = ctx.cwd
    if not _is_inside(directory, ctx.cwd):
        directory = ctx.cwd
    index = os.path.join(directory, "index.html")
    shown = _relative_for_display(index, ctx.cwd)
    try:
        with open(index, encoding="utf-8", errors="replace") as handle:
            theirs = f"<title>{GALLERY_TITLE}" not in handle.read(4096)
    except OSError:
        theirs = False
    if theirs:
        reporter.warn(f"no gallery: {shown} exists and was not written by imagegen")
        return None
    items = []
    for prompt, path, note in shots:
        if path is None:
            items.append(GalleryItem("", prompt, failed=note))
            continue
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_RESPONSE_BYTES + 1)
        except OSError:
            continue
        info = sniff_image(data)
        items.append(GalleryItem(os.path.relpath(path, directory), prompt,
                                 info.width if info else None, info.height if info else None,
                                 _thumbnail_png(data) if len(data) <= MAX_RESPONSE_BYTES
                                 else None, note))
    try:
        _write_file_atomic(index, gallery_html(items, GALLERY_TITLE).encode("utf-8"), 0o644,
                          prefix=".imagegen-")
    except OSError as exc:
        reporter.warn(f"could not write {shown}: {exc.strerror}")
        return None
    made = sum(1 for item in items if item.path)
    failed = len(items) - made
    line = (f"gallery of {made} image{'s' if made != 1 else ''}"
            + (f" and {failed} failed" if failed else "") + f": {shown}")
    if reporter.json_mode and not reporter.quiet:
        reporter.say(line)
    else:
        reporter.note(line, keep=(shown,))
    return index


# MCP server #######################################################################################

#: The newest revision first. 2026-07-28 is stateless (a _meta envelope on every request,
#: server/discover, no initialize); the older ones open with the initialize handshake.
MCP_MODERN_VERSIONS = ("2026-07-28",)
MCP_HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
#: Before structuredContent, outputSchema and tool titles (2025-06-18).
MCP_PLAIN_VERSIONS = ("2025-03-26", "2024-11-05")
MCP_META_VERSION = "io.modelcontextprotocol/protocolVersion"
MCP_META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
MCP_HEARTBEAT_S = 2.0  # progress while an image is made; clients reset time-outs on it
MCP_TOOL_TIMEOUT_S = 900  # what --print-config asks clients to allow: retries and -n 10 fit
MCP_MAX_PREVIEWS = 4
MCP_PARSE_ERROR, MCP_INVALID_REQUEST, MCP_METHOD_NOT_FOUND = -32700, -32600, -32601
MCP_INVALID_PARAMS, MCP_INTERNAL_ERROR, MCP_UNSUPPORTED_VERSION = -32602, -32603, -32022
MCP_INSTRUCTIONS = (
    "Makes bitmap images (PNG, JPEG, WebP) with the user's ChatGPT subscription and saves them "
    "in the workspace (default assets/generated/<slug>.png); results give the saved paths, "
    "relative to the workspace. A generation takes 20 s to a few minutes. Existing files are "
    "never replaced unless force is true. To change an existing picture use edit_image.")


class _McpProtocolError(Exception):
    """A JSON-RPC error answer: the call itself was malformed, not the image job."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def _mcp_string(description: str, **more: Any) -> dict:
    return dict({"type": "string", "description": description}, **more)


def _mcp_tool_schemas() -> list[dict]:
    """The three tools: JSON Schema in (named as the CLI's long options) and out."""
    image_options: dict[str, Any] = {
        "prompt": _mcp_string("What to draw, or for an edit what to change.", minLength=1),
        "out": _mcp_string("Where to save, relative to the workspace: a file (.png, .jpg, "
                           ".webp) or a directory ending in /. Default: assets/generated/"
                           "<slug>.<ext>, never replacing a file."),
        "force": {"type": "boolean", "description": "Allow out to replace an existing file."},
        "size": _mcp_string("auto or WIDTHxHEIGHT, e.g. 1536x1024 (gpt-image-2: sides "
                            "divisible by 16, ratio 1:3..3:1, 655,360..8,294,400 pixels).",
                            pattern="^(auto|[0-9]{2,5}x[0-9]{2,5})$"),
        "quality": _mcp_string("Rendering quality.", enum=list(CHOICES["quality"])),
        "background": _mcp_string("transparent needs png or webp.",
                                  enum=list(CHOICES["background"])),
        "format": _mcp_string("File format; default from out's extension, else png.",
                              enum=list(FORMATS)),
        "compression": {"type": "integer", "minimum": 0, "maximum": MAX_COMPRESSION,
                        "description": "jpeg and webp only."},
        "moderation": _mcp_string("Moderation level.", enum=list(CHOICES["moderation"])),
        "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT,
                  "description": "How many images (default 1)."},
        "parallel": {"type": "integer", "minimum": 1, "maximum": MAX_PARALLEL,
                     "description": f"Requests in flight at once (default min(count, "
                                    f"{PARALLEL_DEFAULT_CAP}))."},
        "images": {"type": "array", "items": {"type": "string", "minLength": 1},
                   "maxItems": MAX_IMAGES,
                   "description": "Reference images: paths relative to the workspace, or "
                                  "http(s) URLs. Given, the request is an edit."},
        "mask": _mcp_string("Edit mask: a PNG with alpha, the size of the first image."),
        "input_fidelity": _mcp_string("How closely to keep the input images.",
                                      enum=list(CHOICES["input_fidelity"])),
        "action": _mcp_string("The Responses tool's action.", enum=list(CHOICES["action"])),
        "backend": _mcp_string("Default codex (the ChatGPT login).",
                               enum=list(CHOICES["backend"])),
        "route": _mcp_string("codex backend only.", enum=list(CHOICES["route"])),
        "model": _mcp_string("Host chat model for the Responses route."),
        "image_model": _mcp_string("Image model (default gpt-image-2)."),
        "base_url": _mcp_string("Override the backend's base URL."),
        "config": _mcp_string("The api backend's key file."),
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS,
                    "description": f"Total seconds for one image ({DEFAULT_TIMEOUT_S:g})."},
        "stall_timeout": {"type": "number", "minimum": 0, "maximum": MAX_SECONDS,
                          "description": f"Longest silence from the server, seconds "
                                         f"({DEFAULT_STALL_TIMEOUT_S:g}; 0 = none)."},
        "retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES,
                    "description": f"Re-sends after transient failures ({DEFAULT_RETRIES})."},
        "meta": {"type": "boolean", "description": "Also write <image>.json beside each image."},
        "fit": _mcp_string("With size WxH the saved image is exactly WxH: cover (scale, crop "
                           "the centre; default), contain (fit inside, padded), none (as it "
                           "came).", enum=list(CHOICES["fit"])),
    }
    edit_options = dict(image_options, images=dict(image_options["images"], minItems=1,
                                                   description="The image(s) to edit, "
                                                   "first one first: paths relative to the "
                                                   "workspace, or http(s) URLs."))
    nullable_string = {"type": ["string", "null"]}
    image_entry_schema = {"type": "object", "required": ["path", "bytes", "format"],
                          "properties": {
                              "path": {"type": "string"}, "bytes": {"type": "integer"},
                              "format": {"type": "string"},
                              "width": {"type": ["integer", "null"]},
                              "height": {"type": ["integer", "null"]},
                              "sha256": {"type": "string"}, "revised_prompt": nullable_string,
                              "model": nullable_string, "route": nullable_string,
                              "elapsed_s": {"type": "number"}, "received": nullable_string,
                              "fitted": nullable_string, "converted": nullable_string,
                              "transparency": nullable_string}}
    error_schema = {"type": "object", "required": ["kind", "message", "exit_code"],
                    "properties": {"kind": {"type": "string"}, "message": {"type": "string"},
                                   "exit_code": {"type": "integer"},
                                   "retry_after_s": {"type": "number"}}}
    image_output = {"type": "object", "required": ["ok", "images"], "properties": {
        "ok": {"type": "boolean"}, "backend": nullable_string, "route": nullable_string,
        "images": {"type": "array", "items": image_entry_schema}, "error": error_schema,
        "quota": {"type": "object"}, "quota_line": {"type": "string"},
        "warnings": {"type": "array", "items": {"type": "string"}},
        "workspace": {"type": "string"}}}
    auth_output = {"type": "object", "required": ["kind", "usable"], "properties": {
        "auth_file": {"type": "string"}, "kind": {"type": "string"},
        "usable": {"type": "boolean"}, "problem": {"type": "string"},
        "warnings": {"type": "array", "items": {"type": "string"}}}}
    writes = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False,
              "openWorldHint": True}
    return [
        {"name": "generate_image", "title": "Generate an image",
         "description": "Make image(s) from a prompt and save them in the workspace. Takes "
                        "the imagegen CLI's options; with images it edits them (edit_image "
                        "reads better for that). Returns the saved paths, sizes, formats, "
                        "the revised prompt and the quota left.",
         "inputSchema": {"type": "object", "properties": image_options,
                         "required": ["prompt"], "additionalProperties": False},
         "outputSchema": image_output, "annotations": dict(writes, title="Generate an image")},
        {"name": "edit_image", "title": "Edit an image",
         "description": "Change existing image(s) as the prompt says (optionally only where "
                        "a mask is transparent), or use them as references for a new one; "
                        "saves the result in the workspace, never over the input.",
         "inputSchema": {"type": "object", "properties": edit_options,
                         "required": ["prompt", "images"], "additionalProperties": False},
         "outputSchema": image_output, "annotations": dict(writes, title="Edit an image")},
        {"name": "auth_status", "title": "Login status",
         "description": "Is there a usable ChatGPT login for image generation? Shows the "
                        "plan, when the token expires and the last quota seen. Never a "
                        "secret; costs no quota.",
         "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
         "outputSchema": auth_output,
         "annotations": {"title": "Login status", "readOnlyHint": True,
                         "openWorldHint": False}},
    ]


_MCP_JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float),
                   "boolean": (bool,), "array": (list,), "object": (dict,)}


def _mcp_check_arguments(schema: dict, arguments: dict) -> None:
    """Names, presence and JSON types against a tool's input schema (UsageError); the
    values themselves are checked by make_job, with the CLI's messages."""
    properties = schema.get("properties", {})
    for name in arguments:
        if name not in properties:
            raise UsageError(f"unknown argument {_printable(name)[:60]!r}; the tool takes "
                             f"{', '.join(properties) or 'no arguments'}")
    for name in schema.get("required", ()):
        if arguments.get(name) is None:
            raise UsageError(f"the argument {name!r} is required")
    for name, value in arguments.items():
        if value is None:
            continue
        expected = properties[name].get("type")
        ok = isinstance(value, _MCP_JSON_TYPES.get(expected, (object,)))
        if expected in ("integer", "number") and isinstance(value, bool):
            ok = False
        if ok and expected == "array":
            ok = all(isinstance(item, str) for item in value)
            if not value and properties[name].get("minItems"):
                raise UsageError(f"{name} needs at least one item")
        if not ok:
            raise UsageError(f"the argument {name!r} must be "
                             f"{'a list of strings' if expected == 'array' else 'a ' + expected}")


def _mcp_job_options(arguments: dict, cwd: str) -> dict:
    """Tool arguments as make_job's options: reference paths are the workspace's."""
    options = {name: value for name, value in arguments.items() if value is not None}
    images = options.pop("images", None)
    if images is not None:
        options["image"] = list(images)
    for name in ("image", "mask", "config"):
        value = options.get(name)
        values = value if isinstance(value, list) else [value] if value else []
        joined = [item if _is_url(item) else os.path.join(cwd, os.path.expanduser(item))
                  for item in values]
        if values:
            options[name] = joined if isinstance(value, list) else joined[0]
    return options


def _mcp_generate(job: _Job, ctx: _Context) -> dict:
    """Make and save one tool call's images as generate does; returns what `--json` prints
    ({"ok", "backend", "route", "images", "error"?, "quota"?}), a failure before the
    request included."""
    try:
        outcome = _generate(job, ctx)
    except ImagegenError as error:
        ctx.reporter.close()
        outcome = _Outcome(job, not_run=error)
    _report_quota(ctx)
    return _generate_json(outcome, ctx)


def _mcp_preview(path: str) -> bytes | None:
    """A small PNG of the image at path (a few hundred pixels on its long side) for the
    client to show, or None when none can be made (a JPEG or WebP without Pillow)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_RESPONSE_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_RESPONSE_BYTES:
        return None
    return _thumbnail_png(data, THUMBNAIL_SIDE)


class _McpReporter(_Reporter):
    """The Reporter of one tool call: never stdout (that is the protocol's); log lines go
    to stderr, warnings into the result, the phases to the progress heartbeat."""

    def __init__(self, stderr: Any, secrets: Secrets, env: dict) -> None:
        super().__init__(stderr, stderr, secrets, env, progress=False)
        self.warnings: list[str] = []
        self.payloads: list[dict] = []
        self.last_note = ""
        self.phases: dict[int, tuple[str, int]] = {}
        self.saved_count = 0

    def result(self, line: str, keep: Iterable[str] = ()) -> None:
        self._err(f"imagegen: {_printable(line)}", keep)

    def result_json(self, payload: dict, keep: Iterable[str] = ()) -> None:
        escaped = [json.dumps(path, ensure_ascii=False)[1:-1] for path in keep]
        self.payloads.append(json.loads(self.secrets.redact(json.dumps(payload), escaped)))

    def note(self, message: str, keep: Iterable[str] = ()) -> None:
        super().note(message, keep)
        with self._lock:
            self.last_note = self.secrets.redact(_printable(message), keep)[:200]
            if message.startswith("saved "):
                self.saved_count += 1

    def warn(self, message: str) -> None:
        super().warn(message)
        with self._lock:
            self.warnings.append(self.secrets.redact(_printable(message)))

    def phase(self, index: int, phase: str, received: int = 0) -> None:
        with self._lock:
            self.phases[index] = (phase, received)

    def done(self, index: int) -> None:
        with self._lock:
            self.phases.pop(index, None)

    def progress_line(self, elapsed: float) -> str:
        with self._lock:
            phases = sorted({phase for phase, _ in self.phases.values()})
            received = sum(count for _, count in self.phases.values())
            last = self.last_note
        if not phases:
            return f"{last or 'working'} · {elapsed:.0f} s"
        return (f"{'/'.join(phases)} · {elapsed:.0f} s"
                + (f" · {_human_bytes(received)}" if received else ""))


class _McpCall:
    """One tools/call in flight: its own Context (cancel event, secrets, temporary files),
    its thread, and its progress heartbeat."""

    def __init__(self, server: _McpServer, request_id: Any, tool: str, arguments: dict,
                 progress_token: Any, version: str) -> None:
        self.server, self.request_id, self.tool = server, request_id, tool
        self.arguments, self.progress_token, self.version = arguments, progress_token, version
        seams = dict(server.runtime.get("seams") or {})
        self.ctx = _Context(server.env, server.cwd, None, server.stderr, server.stderr, **seams)
        self.reporter = _McpReporter(server.stderr, self.ctx.secrets, server.env)
        self.ctx.reporter = self.reporter
        self.cancelled = False
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"mcp-call-{request_id}")
        self._progress = 0.0
        count = arguments.get("count")
        self._total = count if isinstance(count, int) and 1 <= count <= 10 else 1
        self._started = time.monotonic()

    def start(self) -> None:
        self.thread.start()

    def cancel(self, reason: str = "") -> None:
        """notifications/cancelled: stop at once, leave no partial file, answer nothing."""
        self.cancelled = True
        self.ctx.cancel.set()
        # Cuts its requests at once, also one still waiting for the status line: the
        # call's own Transport watches every connection it opens (see _Watch).
        self.ctx.transport.abort()
        self.ctx.remove_temporary_files()
        self.server.log(f"call {self.request_id} cancelled" + (f" ({_printable(reason)[:80]})"
                                                                if reason else ""))

    def _run(self) -> None:
        heartbeat: threading.Thread | None = None
        try:
            if self.progress_token is not None and self.tool != "auth_status":
                heartbeat = threading.Thread(target=self._beat, daemon=True)
                heartbeat.start()
            result = self.server.call_tool(self)
        except Exception as error:  # a bug: an internal error result, the server lives on
            if self.server.env.get("IMAGEGEN_DEBUG") == "1":
                import traceback
                traceback.print_exc()
            crash = ImagegenError(f"internal error: {type(error).__name__}: {error} (set "
                                  f"IMAGEGEN_DEBUG=1 for a traceback; please report it)")
            self.reporter.error(crash.message)
            try:
                result = self.server.tool_result(self, {"ok": False, "backend": None,
                                                        "route": None,
                                                        "error": error_entry(crash),
                                                        "images": []})
            except Exception:
                result = {"content": [{"type": "text", "text": "internal error"}],
                          "isError": True}
        finally:
            self.finished.set()
            if heartbeat is not None:
                heartbeat.join()
            if self.cancelled:
                self.ctx.remove_temporary_files()
        self.server.forget(self)  # first: the client may reuse the id once it has the answer
        if not self.cancelled:
            self.server.respond(self.request_id, result)

    def _beat(self) -> None:
        self.send_progress(None)
        while not self.finished.wait(MCP_HEARTBEAT_S):
            self.send_progress(None)

    def set_total(self, count: int) -> None:
        self._total = max(1, count)

    def send_progress(self, message: str | None) -> None:
        """notifications/progress: progress grows every time (the spec's rule) and stays
        below the total until the result says it is done."""
        if self.progress_token is None or self.finished.is_set() or self.cancelled:
            return
        elapsed = time.monotonic() - self._started
        saved = min(self.reporter.saved_count, self._total)
        ahead = (self._total - saved) * (1 - 1 / (1 + elapsed / 60))  # creeps, never done
        value = round(max(saved + ahead, self._progress + 1e-6), 6)
        self._progress = value
        params = {"progressToken": self.progress_token, "progress": value,
                  "total": self._total,
                  "message": message or self.reporter.progress_line(elapsed)}
        self.server.notify("notifications/progress", params)


class _McpServer:
    """`imagegen mcp`: JSON-RPC 2.0 over stdio, one message a line; tool calls run in
    threads, everything else is answered at once on the reading thread."""

    def __init__(self, runtime: dict, cwd: str) -> None:
        self.runtime, self.env, self.cwd = runtime, runtime["env"], cwd
        self.stdin, self.stdout, self.stderr = (runtime["stdin"], runtime["stdout"],
                                                runtime["stderr"])
        self.tools = {tool["name"]: tool for tool in _mcp_tool_schemas()}
        self.era: str | None = None  # "legacy" after initialize, "modern" after an envelope
        self.legacy_version = MCP_HANDSHAKE_VERSIONS[0]
        self.calls: dict[Any, _McpCall] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.secrets = Secrets()

    # output
    def send(self, message: dict) -> None:
        line = json.dumps(message, ensure_ascii=True, separators=(",", ":")) + "\n"
        with self._write_lock:
            try:
                self.stdout.write(line)
                self.stdout.flush()
            except (OSError, ValueError):
                pass  # the client has gone; the reading loop ends on its own

    def respond(self, request_id: Any, result: dict) -> None:
        self.send({"jsonrpc": "2.0", "id": request_id, "result": result})

    def fail(self, request_id: Any, error: _McpProtocolError) -> None:
        body: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.data is not None:
            body["data"] = error.data
        self.send({"jsonrpc": "2.0", "id": request_id, "error": body})

    def notify(self, method: str, params: dict) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def log(self, message: str) -> None:
        line = self.secrets.redact(f"imagegen: mcp: {_printable(message)}")
        try:
            self.stderr.write(line + "\n")
            self.stderr.flush()
        except (OSError, ValueError):
            pass

    # input
    def serve(self) -> int:
        stream = getattr(self.stdin, "buffer", self.stdin)
        self.log(f"serving on stdio in {self.cwd} (MCP {MCP_MODERN_VERSIONS[0]}, and "
                 f"{', '.join(MCP_HANDSHAKE_VERSIONS)} after initialize)")
        try:
            while True:
                line = stream.readline()
                if not line:
                    break
                if isinstance(line, bytes):
                    try:
                        line = line.decode("utf-8")
                    except UnicodeDecodeError:
                        self.fail(None, _McpProtocolError(MCP_PARSE_ERROR,
                                                         "Parse error: not UTF-8"))
                        continue
                if line.strip():
                    self.handle_line(line)
        finally:
            self.stop_all("the client closed the connection")
        return 0

    def stop_all(self, reason: str) -> None:
        """Cancel what is in flight (no partial file stays) and wait a little for it."""
        with self._lock:
            calls = list(self.calls.values())
        for call in calls:
            call.cancel(reason)
        deadline = time.monotonic() + 5
        for call in calls:
            call.thread.join(max(0.0, deadline - time.monotonic()))
            call.ctx.remove_temporary_files()

    def forget(self, call: _McpCall) -> None:
        with self._lock:
            if self.calls.get(call.request_id) is call:
                del self.calls[call.request_id]

    def handle_line(self, line: str) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            self.fail(None, _McpProtocolError(MCP_PARSE_ERROR, "Parse error: not JSON"))
            self.log("protocol error: a line that is not JSON")
            return
        if isinstance(message, dict) and "method" not in message and (
                "result" in message or "error" in message):
            return  # an answer to a request of ours: we send none
        request_id = message.get("id") if isinstance(message, dict) else None
        if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
            request_id = None
        notification = False
        try:
            if isinstance(message, list):
                raise _McpProtocolError(MCP_INVALID_REQUEST, "Invalid Request: batches are "
                                       "not supported; send one message a line")
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or \
                    not isinstance(message.get("method"), str):
                raise _McpProtocolError(MCP_INVALID_REQUEST, "Invalid Request: not a JSON-RPC "
                                       "2.0 request or notification")
            method, params = message["method"], message.get("params")
            notification = "id" not in message
            if params is not None and not isinstance(params, dict):
                raise _McpProtocolError(MCP_INVALID_PARAMS, "Invalid params: not an object")
            if notification:
                self.handle_notification(method, params or {})
                return
            if request_id is None:
                raise _McpProtocolError(MCP_INVALID_REQUEST,
                                       "Invalid Request: id must be a string or a number")
            result = self.handle_request(request_id, method, params or {})
            if result is not None:
                self.respond(request_id, result)
        except _McpProtocolError as error:
            self.log(f"protocol error {error.code}: {error.message}")
            if not notification:
                self.fail(request_id, error)
        except Exception as error:  # a bug: answer it and keep serving
            if self.env.get("IMAGEGEN_DEBUG") == "1":
                import traceback
                traceback.print_exc()
            self.log(f"internal error: {type(error).__name__}: {error}")
            if not notification:
                self.fail(request_id, _McpProtocolError(
                    MCP_INTERNAL_ERROR, f"Internal error: {type(error).__name__}"))

    def handle_notification(self, method: str, params: dict) -> None:
        if method == "notifications/cancelled":
            with self._lock:
                call = self.calls.get(params.get("requestId"))
            if call is not None:
                call.cancel(str(params.get("reason") or ""))
        # notifications/initialized and anything else: nothing to do

    def era_of(self, method: str, params: dict) -> str:
        """Which protocol this request speaks; checks the 2026 envelope (protocol errors)."""
        meta = params.get("_meta")
        enveloped = isinstance(meta, dict) and MCP_META_VERSION in meta
        if method == "initialize":
            if self.era == "modern":
                raise _McpProtocolError(MCP_UNSUPPORTED_VERSION, "Unsupported protocol "
                                       "version: this connection speaks per-request _meta",
                                       {"supported": list(MCP_MODERN_VERSIONS),
                                        "requested": str(params.get("protocolVersion"))})
            return "legacy"
        if not enveloped and method != "server/discover":
            if self.era == "modern":
                raise _McpProtocolError(MCP_INVALID_PARAMS, f"Invalid params: _meta must "
                                       f"carry {MCP_META_VERSION} and "
                                       f"{MCP_META_CAPABILITIES}")
            return "legacy"
        if self.era == "legacy":
            raise _McpProtocolError(MCP_INVALID_REQUEST, f"Invalid Request: this connection "
                                   f"began with initialize (protocol {self.legacy_version}); "
                                   f"per-request _meta versions belong to a new connection")
        meta = meta if isinstance(meta, dict) else {}
        version = meta.get(MCP_META_VERSION)
        if not isinstance(version, str) or not isinstance(meta.get(MCP_META_CAPABILITIES),
                                                          dict):
            raise _McpProtocolError(MCP_INVALID_PARAMS, f"Invalid params: _meta must carry "
                                   f"{MCP_META_VERSION} and {MCP_META_CAPABILITIES}")
        if version not in MCP_MODERN_VERSIONS:
            raise _McpProtocolError(MCP_UNSUPPORTED_VERSION, "Unsupported protocol version",
                                   {"supported": list(MCP_MODERN_VERSIONS
                                                      + MCP_HANDSHAKE_VERSIONS),
                                    "requested": _printable(version)[:40]})
        return "modern"

    def server_info(self) -> dict:
        return {"name": "codex-imagegen", "title": "codex-imagegen", "version": __version__}

    def handle_request(self, request_id: Any, method: str, params: dict) -> dict | None:
        era = self.era_of(method, params)
        if era == "modern":
            self.era = "modern"
        version = MCP_MODERN_VERSIONS[0] if era == "modern" else self.legacy_version
        done = {"resultType": "complete"} if era == "modern" else {}
        cached = dict(done, ttlMs=3_600_000, cacheScope="public") if done else {}
        if method == "initialize":
            asked = params.get("protocolVersion")
            self.legacy_version = (asked if asked in MCP_HANDSHAKE_VERSIONS
                                   else MCP_HANDSHAKE_VERSIONS[0])
            self.era = "legacy"
            self.log(f"initialize: protocol {self.legacy_version}")
            return {"protocolVersion": self.legacy_version,
                    "capabilities": {"tools": {"listChanged": False}},
                    "serverInfo": self.server_info(), "instructions": MCP_INSTRUCTIONS}
        if method == "server/discover":
            return dict(cached, supportedVersions=list(MCP_MODERN_VERSIONS),
                        capabilities={"tools": {}}, serverInfo=self.server_info(),
                        instructions=MCP_INSTRUCTIONS)
        if method == "ping" and era == "legacy":
            return {}
        if method == "tools/list":
            structured = version not in MCP_PLAIN_VERSIONS
            tools = [tool if structured else {k: v for k, v in tool.items()
                                              if k not in ("outputSchema", "title")}
                     for tool in self.tools.values()]
            return dict(cached, tools=tools)
        if method == "tools/call":
            self.start_call(request_id, params, version)
            return None
        raise _McpProtocolError(MCP_METHOD_NOT_FOUND,
                               f"Method not found: {_printable(method)[:80]}")

    def start_call(self, request_id: Any, params: dict, version: str) -> None:
        name, arguments = params.get("name"), params.get("arguments")
        if not isinstance(name, str) or name not in self.tools:
            raise _McpProtocolError(MCP_INVALID_PARAMS, "Invalid params: unknown tool "
                                   f"{_printable(str(name))[:60]!r}; the tools are "
                                   f"{', '.join(self.tools)}")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise _McpProtocolError(MCP_INVALID_PARAMS,
                                   "Invalid params: arguments must be an object")
        meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
        token = meta.get("progressToken")
        if not isinstance(token, (str, int)) or isinstance(token, bool):
            token = None
        with self._lock:
            if request_id in self.calls:
                raise _McpProtocolError(MCP_INVALID_REQUEST,
                                       "Invalid Request: this id is already in flight")
            call = _McpCall(self, request_id, name, arguments, token, version)
            self.calls[request_id] = call
        call.start()

    # the tools
    def call_tool(self, call: _McpCall) -> dict:
        ctx, reporter = call.ctx, call.reporter
        tool = self.tools[call.tool]
        if call.tool == "auth_status":
            try:
                _mcp_check_arguments(tool["inputSchema"], call.arguments)
                _cmd_auth_status(ctx, True)
            except ImagegenError as error:
                return self.tool_result(call, {"ok": False, "error": error_entry(error),
                                               "images": []})
            status = reporter.payloads[-1] if reporter.payloads else {"kind": "none",
                                                                        "usable": False}
            return self.auth_result(call, status)
        try:
            _mcp_check_arguments(tool["inputSchema"], call.arguments)
            job = _make_job(_mcp_job_options(call.arguments, self.cwd), self.env)
        except ImagegenError as error:
            reporter.error(error.message)
            return self.tool_result(call, {"ok": False, "backend": None, "route": None,
                                           "error": error_entry(error), "images": []})
        call.set_total(job.count)
        payload = _mcp_generate(job, ctx)
        if payload.get("error"):
            reporter.error(payload["error"]["message"])
        return self.tool_result(call, payload)

    def tool_result(self, call: _McpCall, payload: dict) -> dict:
        """structuredContent (the --json object plus the quota line, warnings and the
        workspace), a summary a model can read, and previews when there are any."""
        ctx = call.ctx
        structured = dict(payload)
        if ctx.quota:
            structured["quota_line"] = describe_quota(ctx.quota, ctx.clock())
        structured["warnings"] = list(call.reporter.warnings)
        structured["workspace"] = self.cwd
        paths = [image["path"] for image in structured.get("images", ())]
        escaped = [json.dumps(path, ensure_ascii=False)[1:-1] for path in paths]
        structured = json.loads(ctx.secrets.redact(json.dumps(structured, ensure_ascii=False),
                                                   escaped))
        content: list[dict] = [{"type": "text", "text": self.summary(structured)}]
        for path in paths[:MCP_MAX_PREVIEWS]:
            preview = _mcp_preview(os.path.join(self.cwd, path))
            if preview:
                content.append({"type": "image", "mimeType": "image/png",
                                "data": base64.b64encode(preview).decode("ascii")})
        return self.finish(call, content, structured, not structured.get("ok", False))

    def auth_result(self, call: _McpCall, status: dict) -> dict:
        lines = [f"login: {status.get('kind', 'none')}"
                 + (f", plan {status['plan']}" if status.get("plan") else "")
                 + (f", account {status['account_id']}" if status.get("account_id") else ""),
                 f"auth file: {status.get('auth_file')}",
                 f"usable: {'yes' if status.get('usable') else 'no'}"]
        if status.get("access_token_expires_at"):
            lines.append(f"access token expires: {status['access_token_expires_at']}")
        quota = status.get("quota")
        if isinstance(quota, dict) and quota.get("windows"):
            lines.append(f"quota (last seen): {describe_quota(quota, call.ctx.clock())}")
        if status.get("problem"):
            lines.append(f"problem: {status['problem']}")
        lines.extend(f"warning: {warning}" for warning in status.get("warnings", ()))
        text = call.ctx.secrets.redact("\n".join(lines))
        return self.finish(call, [{"type": "text", "text": text}], status, False)

    def finish(self, call: _McpCall, content: list, structured: dict, is_error: bool) -> dict:
        result: dict[str, Any] = {"content": content, "isError": is_error}
        if call.version not in MCP_PLAIN_VERSIONS:
            result["structuredContent"] = structured
        else:  # older clients read only content: give them the object as text as well
            content.append({"type": "text", "text": json.dumps(structured, ensure_ascii=False)})
        if call.version in MCP_MODERN_VERSIONS:
            result["resultType"] = "complete"
        # the commands hints name, as this server was started (python3 .../imagegen.py ...)
        program = json.dumps(_program_name(), ensure_ascii=False)[1:-1]
        text = json.dumps(result, ensure_ascii=False)
        return json.loads(_as_invoked(text, program)) if HINT_PROGRAM in text else result

    @staticmethod
    def summary(structured: dict) -> str:
        images, error = structured.get("images", []), structured.get("error")
        lines = []
        if images:
            route = f", {structured['route']} route" if structured.get("route") else ""
            lines.append(f"Saved {len(images)} image{'s' if len(images) > 1 else ''} "
                         f"({structured.get('backend')}{route}), paths relative to "
                         f"{structured.get('workspace')}:")
            for image in images:
                size = (f"{image['width']}x{image['height']} " if image.get("width") else "")
                lines.append(f"- {image['path']} ({size}{image['format']}, "
                             f"{_human_bytes(image['bytes'])})")
                if image.get("revised_prompt"):
                    lines.append(f"  revised prompt: {image['revised_prompt']}")
        if error:
            lines.append(f"{'Then failed' if images else 'Failed'} ({error['kind']}, exit code "
                         f"{error['exit_code']}): {error['message']}")
            if error.get("retry_after_s") is not None:
                lines.append(f"Retry after {error['retry_after_s']:g} s.")
        reasons: dict[str, list[int]] = {}
        for item in structured.get("failed", ()):
            reasons.setdefault(item["error"]["message"], []).append(item["index"])
        if len(reasons) > 1:  # one reason is the line above
            lines.append("Not made:")
            lines.extend(f"- image{'s' if len(numbers) > 1 else ''} {_ranges(numbers)}: "
                         f"{message}" for message, numbers in reasons.items())
        for warning in structured.get("warnings", ()):
            lines.append(f"warning: {warning}")
        if structured.get("quota_line"):
            lines.append(f"quota: {structured['quota_line']}")
        return "\n".join(lines)


MCP_CONFIG_PLACES = {
    "codex": "~/.codex/config.toml (or .codex/config.toml in a trusted project)",
    "claude-code": "a shell: the server starts in the project, so images go under it; for "
                   "long calls start Claude Code with "
                   f"MCP_TOOL_TIMEOUT={MCP_TOOL_TIMEOUT_S * 1000}",
    "claude-desktop": "claude_desktop_config.json (Settings > Developer > Edit Config); "
                      "--workspace is where images go",
    "cursor": ".cursor/mcp.json in the project (or ~/.cursor/mcp.json)",
    "vscode": ".vscode/mcp.json in the project",
    "gemini": "~/.gemini/settings.json (or .gemini/settings.json in the project)",
}


def _mcp_config_snippet(client: str, python: str, script: str, workspace: str) -> str:
    """The registration snippet for one MCP client, with this file's real path: exactly
    what goes into the file (MCP_CONFIG_PLACES says which), so it can be redirected."""
    command = [python, script, "mcp"]
    if client == "codex":
        def toml(value: str) -> str:
            return json.dumps(value, ensure_ascii=False)
        return ("[mcp_servers.imagegen]\n"
                f"command = {toml(python)}\n"
                f"args = [{', '.join(toml(arg) for arg in command[1:])}]\n"
                "startup_timeout_sec = 20\n"
                f"tool_timeout_sec = {MCP_TOOL_TIMEOUT_S}  # an image takes minutes; the "
                "default 60 s is too short\n")
    if client == "claude-code":
        import shlex
        return (f"claude mcp add --scope user imagegen -- "
                f"{' '.join(shlex.quote(arg) for arg in command)}\n")
    in_project = command[1:] + ["--workspace", "${workspaceFolder}"]
    if client == "claude-desktop":
        document: dict[str, Any] = {"mcpServers": {"imagegen": {
            "command": python, "args": command[1:] + ["--workspace", workspace]}}}
    elif client == "cursor":
        document = {"mcpServers": {"imagegen": {"command": python, "args": in_project}}}
    elif client == "vscode":
        document = {"servers": {"imagegen": {"type": "stdio", "command": python,
                                             "args": in_project}}}
    elif client == "gemini":
        document = {"mcpServers": {"imagegen": {"command": python, "args": command[1:],
                                                "timeout": MCP_TOOL_TIMEOUT_S * 1000}}}
    else:
        raise UsageError(f"--print-config takes one of {', '.join(MCP_CLIENTS)} "
                         f"(got {_printable(client)[:40]!r})")
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


MCP_CLIENTS = tuple(MCP_CONFIG_PLACES)
MCP_HELP = f"""\
usage: imagegen mcp [--workspace DIR]
       imagegen mcp --print-config CLIENT

Run an MCP server on stdio (JSON-RPC 2.0, one message a line) with the tools generate_image,
edit_image and auth_status. Images are saved under the workspace (default: the current
directory) by the same rules as the command line. Logs go to stderr.

  --workspace DIR         where images are saved and relative paths start (default .)
  --print-config CLIENT   print the registration snippet for CLIENT, with this file's path:
                          {', '.join(MCP_CLIENTS)}
"""


def _cmd_mcp(args: list[str], runtime: dict) -> int:
    """`imagegen mcp [--workspace DIR] | --print-config CLIENT`."""
    cwd, client = runtime["cwd"], None
    rest = list(args)
    while rest:
        option = rest.pop(0)
        name, _, value = option.partition("=")
        if option in ("-h", "--help"):
            runtime["stdout"].write(MCP_HELP)
            return 0
        if name not in ("--workspace", "--print-config"):
            shown = "extra words" if not option.startswith("-") else _printable(name)[:40]
            raise UsageError(f"imagegen mcp takes no {shown} (see imagegen mcp --help)")
        if not value:
            if not rest:
                raise UsageError(f"{name} needs a value (see imagegen mcp --help)")
            value = rest.pop(0)
        if name == "--print-config":
            client = value
        else:
            cwd = os.path.abspath(os.path.join(cwd, os.path.expanduser(value)))
            if not os.path.isdir(cwd):
                raise UsageError(f"--workspace {value}: no such directory")
    if client is not None:
        client = client.lower()
        script = os.path.abspath(__file__)
        runtime["stdout"].write(_mcp_config_snippet(client, sys.executable or "python3",
                                                    script, cwd))
        runtime["stderr"].write(f"imagegen: for {MCP_CONFIG_PLACES[client]}\n")
        return 0
    server = _McpServer(runtime, cwd)
    saved_stdout = sys.stdout
    sys.stdout = runtime["stderr"]  # a stray print() must not corrupt the protocol stream
    try:
        return server.serve()
    except KeyboardInterrupt:
        server.stop_all("interrupted")
        raise
    finally:
        sys.stdout = saved_stdout


# Doctor ###########################################################################################

DOCTOR_NETWORK_TIMEOUT_S = 10.0  # each of name lookup, connect and handshake
#: What Pillow adds when it is importable (the tool itself needs only the standard library).
PILLOW_ADDS = ("optional: it adds JPEG and WebP conversion and resizing (--size, --format, "
               "previews); PNG needs only the standard library")


class Probes:
    """The network steps of `imagegen doctor`, one method each, so a test can replace one
    (a resolver that fails, say) and point the rest at its own server."""

    def resolve(self, host: str, port: int, timeout: float) -> list[tuple]:
        """getaddrinfo bounded by timeout (it has none of its own): the socket addresses."""
        import socket
        found: list = []
        failure: list[BaseException] = []

        def lookup() -> None:
            try:
                found.extend(info[4] for info in socket.getaddrinfo(
                    host, port, type=socket.SOCK_STREAM))
            except BaseException as exc:  # handed to the caller
                failure.append(exc)

        worker = threading.Thread(target=lookup, daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise socket.timeout(f"no answer within {timeout:g} s")
        if failure:
            raise failure[0]
        return found

    def connect(self, address: tuple, timeout: float) -> Any:
        import socket
        return socket.create_connection(address[:2], timeout=timeout)

    def handshake(self, sock: Any, host: str, timeout: float) -> Any:
        """TLS as the transport does it: the default context (so SSL_CERT_FILE counts)."""
        import ssl
        sock.settimeout(timeout)
        return ssl.create_default_context().wrap_socket(sock, server_hostname=host)


@dataclass
class _Check:
    """One line of the doctor's report. status: ok, warn, fail (the default backend is not
    ready: kind auth or network), or "-" (not used, nothing to do)."""

    name: str
    status: str
    detail: str
    fix: str | None = None
    kind: str | None = None  # "auth" or "network" when a failure blocks the backend
    timings_ms: dict | None = None

    def as_dict(self) -> dict:
        entry: dict[str, Any] = {"name": self.name, "status": self.status,
                                 "detail": self.detail}
        if self.fix:
            entry["fix"] = self.fix
        if self.timings_ms:
            entry["timings_ms"] = self.timings_ms
        return entry

    def line(self) -> str:
        text = f"{self.status:5} {self.name:12} {self.detail}"
        return text + (f"; fix: {self.fix}" if self.fix else "")


def _severity(backend: str, default_backend: str) -> str:
    """A problem blocks the default backend (fail) or only another one (warn)."""
    return "fail" if backend == default_backend else "warn"


def _ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


def _doctor_network(name: str, url: str, probes: Probes, monotonic: Callable[[], float],
                   bad: str, fix: str) -> _Check:
    """Name lookup, TCP and (for https) TLS to url's host, each timed; through the proxy
    the transport would use. `bad` is the status when it fails (fail or warn)."""
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return _Check(name, bad, f"{url} has no valid port", fix, "network")
    proxy = _proxy_for(url)
    target_host, target_port, via = host, port, ""
    if proxy:
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        try:
            target_host = proxy_parts.hostname or ""
            target_port = proxy_parts.port or 80
        except ValueError:
            return _Check(name, bad, f"the proxy for {host} is not a valid URL", fix, "network")
        via = f" via proxy {target_host}:{target_port}"
    where = f"{host}:{port}{via}"
    timings: dict[str, int] = {}
    step = "DNS"
    sock = None
    try:
        started = monotonic()
        addresses = probes.resolve(target_host, target_port, DOCTOR_NETWORK_TIMEOUT_S)
        timings["dns"] = _ms(monotonic() - started)
        if not addresses:
            raise OSError("no address")
        step, started = "TCP", monotonic()
        sock = probes.connect(addresses[0], DOCTOR_NETWORK_TIMEOUT_S)
        timings["tcp"] = _ms(monotonic() - started)
        if proxy and parts.scheme == "https":
            step, started = "proxy CONNECT", monotonic()
            _proxy_connect(sock, host, port)
            timings["connect"] = _ms(monotonic() - started)
        tls = ""
        if parts.scheme == "https":
            step, started = "TLS", monotonic()
            sock = probes.handshake(sock, host, DOCTOR_NETWORK_TIMEOUT_S)
            timings["tls"] = _ms(monotonic() - started)
            version = sock.version() if hasattr(sock, "version") else None
            tls = f", TLS {timings['tls']} ms" + (f" ({version})" if version else "")
        detail = (f"{where}: DNS {timings['dns']} ms, TCP {timings['tcp']} ms" + tls
                  + ("" if parts.scheme == "https" else " (plain http: no TLS)"))
        return _Check(name, "ok", detail, timings_ms=timings)
    except Exception as exc:
        return _Check(name, bad, f"{where}: {step} failed: {_network_reason(exc)}",
                     _network_fix(exc, step, fix), "network", timings or None)
    finally:
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def _proxy_connect(sock: Any, host: str, port: int) -> None:
    """Open an HTTPS tunnel through an HTTP proxy (what urllib does for https URLs)."""
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode("ascii"))
    answer = b""
    while b"\r\n\r\n" not in answer and len(answer) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    status = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if not re.match(r"HTTP/\d(\.\d)? 2\d\d", status):
        raise OSError(f"the proxy answered {status.strip() or 'nothing'!r}")


def _network_reason(exc: BaseException) -> str:
    import socket
    import ssl
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY" in str(exc):
        return f"the certificate is not trusted ({getattr(exc, 'verify_message', None) or exc})"
    if isinstance(exc, socket.gaierror):
        return "the name does not resolve (no network or DNS)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return " ".join(str(exc).split()) or type(exc).__name__


def _network_fix(exc: BaseException, step: str, fix: str) -> str:
    import ssl
    if isinstance(exc, ssl.SSLError) or step == "TLS":
        return ("behind a corporate proxy or TLS inspection, set SSL_CERT_FILE to its CA "
                "bundle")
    if step == "DNS":
        return "check the network (a sandbox without network access?) or HTTPS_PROXY"
    return fix


def _describe_usage(usage: dict, now: float) -> str:
    """ "plan plus; images daily: 34% used, resets in 2h 0m; ..." from a wham/usage answer,
    in the words of the quota line (0-minute windows hidden)."""
    quota = _quota_from_usage(usage, now) or {}
    plan = usage.get("plan_type")
    parts = ([f"plan {plan}"] if isinstance(plan, str) else []) + _quota_parts(quota, now)
    return "; ".join(parts if quota.get("windows") else parts + ["no usage windows reported"])

def _writable(directory: str) -> str | None:
    """None when directory can be written to, else why not (read-only file system,
    permission denied, missing)."""
    if not os.path.isdir(directory):
        return "does not exist"
    try:
        if os.statvfs(directory).f_flag & getattr(os, "ST_RDONLY", 1):
            return "read-only file system"
    except (AttributeError, OSError):
        pass  # no statvfs (Windows)
    if not os.access(directory, os.W_OK | os.X_OK):
        return "permission denied"
    return None


def _doctor_checks(ctx: _Context, probes: Probes) -> tuple[list[_Check], str]:
    """Every check, in the order shown, and the default backend's name."""
    env, now = ctx.env, ctx.clock()
    default = env.get("IMAGEGEN_BACKEND") or "codex"
    checks: list[_Check] = []
    add = checks.append
    version = sys.version.split()[0]
    add(_Check("python", "ok" if sys.version_info >= (3, 9) else "fail",
              f"{version} ({sys.executable or 'python'})",
              None if sys.version_info >= (3, 9) else "use Python 3.9 or newer"))
    if default not in CHOICES["backend"]:
        add(_Check("backend", "fail", f"IMAGEGEN_BACKEND={default!r} is not a backend",
                  f"use one of {', '.join(CHOICES['backend'])}", "auth"))

    # the ChatGPT login (codex backend)
    bad = _severity("codex", default)
    path = _auth_file_path(env)
    login: _ChatGPTLogin | None = None
    try:
        data = read_auth_json(path, env)
    except AuthError as error:
        hint = _keyring_hint(env)
        add(_Check("auth file", bad, error.message if hint else f"{path}: none",
                  None if hint else "run `imagegen auth login` (or `codex login`)", "auth"))
        data = None
    if data is not None:
        kind = _login_kind(data)
        mode = ""
        try:
            mode = f", mode {os.stat(path).st_mode & 0o777:04o}"
        except OSError:
            pass
        try:
            login = _chatgpt_login(data, path)
        except AuthError as error:
            add(_Check("auth file", bad, f"{path}: {kind} login{mode}: {error.message}",
                      "run `imagegen auth login` (or `codex login`)", "auth"))
        else:
            ctx.secrets.add(*login.secrets())
            expires = _access_expiry(login)
            expiry = ""
            if expires is not None:
                left = _describe_reset(expires, now).replace("resets at", "expires")
                expiry = f", access token {left}" if expires > now else ", access token expired"
            status, fix = "ok", None
            if _needs_refresh(login, now) and not login.refresh_token:
                status, fix = bad, "run `imagegen auth login` (or `codex login`)"
                expiry += " and no refresh token"
            elif _needs_refresh(login, now):
                expiry += " (refreshed on the next request)"
            if _readable_by_others(path) and status == "ok":
                status, fix = "warn", f"chmod 600 {path}"
            hint = _keyring_hint(env)
            if hint and status == "ok":
                status = "warn"
                fix = ("Codex's config.toml keeps new logins in the OS keyring, so this file "
                       "may go stale: set cli_auth_credentials_store = \"file\"")
            add(_Check("auth file", status, f"{path}: {kind} login{mode}{expiry}", fix,
                      "auth" if status == "fail" else None))

    # the Codex home must be writable: a refresh rotates the refresh token and saves it
    directory = os.path.dirname(path)
    why = _writable(directory)
    refresh_soon = login is not None and _needs_refresh(login, now + 3600)
    if why is None:
        add(_Check("codex home", "ok", f"{directory} is writable (refreshed logins can be "
                                      f"saved)"))
    else:
        add(_Check("codex home", bad if refresh_soon else "warn",
                  f"{directory}: {why}; a login refresh could not be saved",
                  f"make {directory} writable (in a sandbox, allow writes to it)",
                  "auth" if refresh_soon else None))

    # the network
    codex_base = (env.get("IMAGEGEN_CODEX_BASE_URL") or DEFAULT_CODEX_BASE_URL).rstrip("/")
    auth_base = (env.get("IMAGEGEN_AUTH_BASE_URL") or DEFAULT_AUTH_BASE_URL).rstrip("/")
    token_url = env.get("CODEX_REFRESH_TOKEN_URL_OVERRIDE") or auth_base + "/oauth/token"
    codex_net = _doctor_network("codex host", codex_base, probes, ctx.monotonic, bad,
                               "check the network, HTTPS_PROXY and NO_PROXY")
    add(codex_net)
    add(_doctor_network("auth host", token_url, probes, ctx.monotonic,
                       bad if refresh_soon else "warn",
                       "check the network, HTTPS_PROXY and NO_PROXY"))

    # live usage: costs no image quota
    if login is None:
        add(_Check("usage", "-", "not checked: no ChatGPT login"))
    elif _needs_refresh(login, now):
        add(_Check("usage", "-", "not checked: the access token needs a refresh first (the "
                                "doctor changes nothing)"))
    elif codex_net.status != "ok":
        add(_Check("usage", "-", "not checked: the codex host cannot be reached"))
    else:
        try:
            usage = _fetch_usage(ctx, login, codex_base)
        except ImagegenError as error:
            refused = getattr(error, "status", None) in (401, 403) or isinstance(
                error, AuthError)
            add(_Check("usage", bad if refused else "warn", f"wham/usage: {error.message}",
                      "run `imagegen auth login` (or `codex login`)" if refused else None,
                      "auth" if refused else None))
        else:
            add(_Check("usage", "ok", _describe_usage(usage, now)))

    # the other backends
    probe_ctx = _Context(env, ctx.cwd, ctx.stdin, ctx.reporter.stdout, ctx.reporter.stderr,
                        quiet=True, monotonic=ctx.monotonic, clock=ctx.clock)
    probe_job = _Job(prompt="doctor", dry_run=True)
    gateway = _GatewayBackend(probe_ctx, probe_job)
    gateway.prepare(probe_job)
    ctx.secrets.add(gateway.token if gateway.token != DEFAULT_GATEWAY_TOKEN else None)
    checked = _doctor_network("gateway", gateway.base, probes, ctx.monotonic,
                             _severity("gateway", default), f"start it: {GATEWAY_START_HINT}")
    if checked.status != "ok" and default != "gateway":
        checked = _Check("gateway", "-", f"{checked.detail} (needed only for --backend "
                                        f"gateway)")
    add(checked)

    api = _ApiBackend(probe_ctx, probe_job)
    try:
        api.prepare(probe_job)
    except UsageError as error:
        add(_Check("api key", _severity("api", default), error.message,
                  "fix the config file (a JSON object with api_key and base_url)",
                  "auth"))
    else:
        ctx.secrets.add(api.key)
        config_path, _ = api.config_path(probe_job)
        source = ("IMAGEGEN_API_KEY" if api.key and api.key == env.get("IMAGEGEN_API_KEY")
                  else config_path)
        if not api.key:
            status = _severity("api", default) if default == "api" else "-"
            add(_Check("api key", status, "none configured (needed only for --backend api)",
                      "set IMAGEGEN_API_KEY or write ~/.config/codex-imagegen/config.json"
                      if status != "-" else None, "auth" if status == "fail" else None))
        elif source == config_path and config_path and _readable_by_others(config_path):
            mode = os.stat(config_path).st_mode & 0o777
            add(_Check("api key", "warn", f"in {config_path}, mode {mode:04o}: other users can "
                                         f"read it", f"chmod 600 {config_path}"))
        else:
            mode = ""
            if source == config_path and config_path:
                mode = f", mode {os.stat(config_path).st_mode & 0o777:04o}"
            add(_Check("api key", "ok", f"from {source}{mode}; base {api.base}"))
        if default == "api" and api.key:
            add(_doctor_network("api host", api.base, probes, ctx.monotonic, "fail",
                               "check the network, HTTPS_PROXY and NO_PROXY"))

    if default == "responses":
        responses = _ResponsesBackend(probe_ctx, probe_job)
        try:
            responses.prepare(probe_job)
        except ImagegenError as error:
            add(_Check("provider", "fail", error.message, "fix model_provider in config.toml",
                      "auth"))
        else:
            ctx.secrets.add(responses.key)
            if responses.key:
                add(_Check("provider", "ok", f"{responses.provider} at {responses.base}"))
                add(_doctor_network("provider", responses.base, probes, ctx.monotonic, "fail",
                                   "check the network, HTTPS_PROXY and NO_PROXY"))
            else:
                add(_Check("provider", "fail", f"no API key for provider "
                          f"\"{responses.provider}\"", "set its env_key variable", "auth"))

    # the rest of the machine
    try:
        import PIL
        add(_Check("pillow", "ok", f"{getattr(PIL, '__version__', '?')} importable "
                                  f"({PILLOW_ADDS})"))
    except ImportError:
        add(_Check("pillow", "-", f"not installed ({PILLOW_ADDS})"))
    why = _writable(ctx.cwd)
    if why is None:
        add(_Check("directory", "ok", f"{ctx.cwd} is writable (images go to "
                                     f"assets/generated/ unless -o says otherwise)"))
    else:
        add(_Check("directory", "warn", f"{ctx.cwd}: {why}",
                  "run from your project, or give -o a writable path"))
    return checks, default


def _cmd_doctor(ctx: _Context, json_mode: bool, probes: Probes | None = None) -> int:
    """`imagegen doctor`: one line a check; exit 0 when the default backend is ready, 3 when
    its login or key is not, 5 when the network is not. Changes nothing; prints no secret."""
    checks, default = _doctor_checks(ctx, probes or Probes())
    failed = next((check for check in checks if check.status == "fail"), None)
    code = 0 if failed is None else (AuthError.exit_code if failed.kind == "auth"
                                     else BackendError.exit_code)
    if json_mode:
        ctx.reporter.result_json({"ok": failed is None, "backend": default,
                                  "exit_code": code, "checks": [c.as_dict() for c in checks]})
        return code
    for check in checks:
        ctx.reporter.result(_printable(check.line()))
    ctx.reporter.result(f"the {default} backend is ready" if failed is None else
                        f"the {default} backend is not ready: see the fail line"
                        + ("s" if sum(c.status == "fail" for c in checks) > 1 else "")
                        + " above")
    return code


# CLI ##############################################################################################

def _build_parser() -> Any:
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(message)

    parser = Parser(prog="imagegen", add_help=False, allow_abbrev=False)
    add = parser.add_argument
    add("words", nargs="*")
    add("-h", "--help", action="store_true")
    add("-p", "--prompt")
    add("--prompt-file")
    add("-o", "--out")
    add("--force", action="store_true", default=None)
    add("--size")
    add("--quality")
    add("--background")
    add("--format", "--output-format", dest="format")
    add("--compression")
    add("--moderation")
    add("-i", "--image", action="append")
    add("--mask")
    add("--input-fidelity")
    add("--action")
    add("-n", "--count")
    add("--parallel")
    add("--backend")
    add("--route")
    add("--model")
    add("--image-model")
    add("--base-url")
    add("--config")
    add("--timeout")
    add("--stall-timeout")
    add("--retries")
    add("-q", "--quiet", action="store_true", default=None)
    add("--json", action="store_true", default=None)
    add("--no-progress", action="store_true", default=None)
    add("--dry-run", action="store_true", default=None)
    add("--meta", action="store_true", default=None)
    add("--fit")
    add("--preview", action="store_true", default=None)
    add("--gallery", action="store_true", default=None)
    add("--open-browser", action="store_true", default=None)
    return parser


_SECRET_OPTION = re.compile(r"(?i)^--?[\w-]*(token|key|secret|password|auth)")


def _parse_options(args: list[str]) -> dict:
    """argv to a dict of long option names; unknown options are named, never echoed."""
    parser = _build_parser()
    namespace, extras = parser.parse_known_args(args)
    unknown = [item.split("=", 1)[0] for item in extras if item.startswith("-")]
    if any(_SECRET_OPTION.match(item) for item in unknown):
        raise UsageError("secrets are never taken from the command line: use CODEX_HOME/"
                         "auth.json, IMAGEGEN_API_KEY, CODEX_API_TOKEN or a config file")
    if unknown:
        known = [option for action in parser._actions for option in action.option_strings]
        raise UsageError(f"unknown option {unknown[0]}" + (_did_you_mean(unknown[0], known)
                                                            or f" (see {_program_name()} --help)"))
    if extras:
        raise UsageError("give the prompt as one quoted argument")
    return vars(namespace)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean --size?" for a near miss, else ""."""
    import difflib
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _read_prompt(options: dict, words: list[str], stdin: Any, cwd: str) -> str | None:
    given = [name for name, present in (("PROMPT", bool(words)),
                                        ("-p/--prompt", options.get("prompt") is not None),
                                        ("--prompt-file", options.get("prompt_file") is not None))
             if present]
    if len(words) > 1:
        raise UsageError("give the prompt as one quoted argument (got several words: "
                         "quote it, or use -p)")
    if len(given) > 1:
        raise UsageError(f"give the prompt one way only (got {' and '.join(given)})")
    if words:
        return _check_utf8(words[0], "the prompt")
    if options.get("prompt") is not None:
        return _check_utf8(options["prompt"], "the prompt")
    source = options.get("prompt_file")
    if source is None:
        return None
    if source == "-":
        return _read_text_capped(stdin, MAX_CONFIG_BYTES, "the prompt on stdin").strip()
    try:
        raw = _read_regular_file(os.path.join(cwd, os.path.expanduser(source)),
                                MAX_CONFIG_BYTES)
        return raw.decode("utf-8-sig").strip()
    except OSError as exc:
        raise UsageError(f"cannot read --prompt-file {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--prompt-file {source} is not UTF-8 text") from None


COMMANDS = ("generate", "auth", "batch", "doctor")
AUTH_COMMANDS = ("status", "login", "logout")


def _prompt_hint(word: str, prog: str) -> str:
    """For a command name that may have been meant as a one-word prompt."""
    return f'; to make an image of the word "{word}": {prog} generate "{word}"'


def _dispatch(args: list[str], runtime: dict) -> int:
    env, cwd = runtime["env"], runtime["cwd"]
    prog = _program_name()

    def context(options: dict) -> _Context:
        ctx = _Context(env, cwd, runtime["stdin"], runtime["stdout"], runtime["stderr"],
                      quiet=bool(options.get("quiet")), json_mode=bool(options.get("json")),
                      progress=not options.get("no_progress"), **runtime.get("seams", {}))
        runtime["contexts"].append(ctx)
        return ctx

    if not args:
        raise UsageError(f"no prompt: {prog} \"a red fox\" (see {prog} --help)")
    # `imagegen help` alone prints the help; "help" followed by options is a prompt like any
    # other word that is not a command name (`imagegen "help" -q` makes an image of it): an
    # agent reading stdout for a path must never get the help text with exit 0.
    if args[0] in ("-h", "--help") or args == ["help"]:
        runtime["stdout"].write(HELP)
        return 0
    if args[0] in ("-V", "--version") or (
            set(args) & {"-V", "--version"} and set(args) <= {"-V", "--version", "--json"}):
        return _cmd_version(runtime["stdout"], "--json" in args)
    if args[0] == "mcp":
        return _cmd_mcp(args[1:], runtime)
    command = args[0] if args[0] in COMMANDS else "generate"
    rest = args[1:] if args[0] in COMMANDS else args
    if command == "auth":
        if not rest:
            raise UsageError(f"{prog} auth status | login | logout (see {prog} auth --help)"
                             + _prompt_hint("auth", prog))
        if rest[0] in ("-h", "--help", "help"):
            runtime["stdout"].write(AUTH_HELP)
            return 0
        if rest[0] not in AUTH_COMMANDS:
            raise UsageError(f"unknown auth command {rest[0]!r} ({', '.join(AUTH_COMMANDS)})"
                             + (_did_you_mean(rest[0], AUTH_COMMANDS)
                                or _prompt_hint("auth", prog)))
        options = _parse_options(rest[1:])
        if options["help"]:
            runtime["stdout"].write(AUTH_HELP)
            return 0
        allowed = {"status": {"json"}, "login": {"open_browser"}, "logout": {"force"}}[rest[0]]
        used = [name for name, value in options.items()
                if value not in (None, [], False) and name not in allowed | {"help"}]
        if used:
            shown = "extra words" if used[0] == "words" else "--" + used[0].replace("_", "-")
            raise UsageError(f"{prog} auth {rest[0]} takes no {shown}")
        ctx = context(options)
        if rest[0] == "status":
            return _cmd_auth_status(ctx, bool(options["json"]))
        if rest[0] == "logout":
            return _cmd_auth_logout(ctx, bool(options["force"]))
        return _cmd_auth_login(ctx, bool(options["open_browser"]))
    if command == "doctor":
        options = _parse_options(rest)
        if options["help"]:
            runtime["stdout"].write(HELP)
            return 0
        used = [name for name, value in options.items()
                if value not in (None, [], False) and name not in ("json", "help")]
        if used:
            shown = "extra words" if used[0] == "words" else "--" + used[0].replace("_", "-")
            raise UsageError(f"{prog} doctor takes no {shown} (only --json)"
                             + _prompt_hint("doctor", prog))
        return _cmd_doctor(context(options), bool(options["json"]),
                          runtime.get("probes"))
    options = _parse_options(rest)
    if options["help"]:
        runtime["stdout"].write(BATCH_HELP if command == "batch" else HELP)
        return 0
    if options.pop("open_browser"):
        raise UsageError(f"--open-browser belongs to {prog} auth login")
    gallery = options.pop("gallery")
    if gallery and command != "batch":
        raise UsageError(f"--gallery belongs to {prog} batch (one image: --preview)")
    if options.get("preview") and command == "batch":
        raise UsageError("--preview shows one generate's images: for a batch, use --gallery")
    ctx = context(options)
    if command == "batch":
        words = options.pop("words")
        if len(words) != 1:
            raise UsageError(f"{prog} batch FILE.jsonl (or - for stdin) [options]"
                             + (_prompt_hint("batch", prog) if not words else ""))
        if options.get("prompt") is not None or options.get("prompt_file") is not None:
            raise UsageError("batch takes its prompts from the file, not -p/--prompt-file")
        settings = {"json": bool(options.get("json")), "dry_run": bool(options.get("dry_run")),
                    "parallel": None, "gallery": bool(gallery)}
        if options.get("parallel") is not None:
            settings["parallel"] = _as_int("parallel", options["parallel"], 1, MAX_PARALLEL)
        defaults = {name: value for name, value in options.items()
                    if value is not None and name not in ("help", "prompt", "prompt_file",
                                                          "no_progress", "quiet", "json",
                                                          "dry_run", "parallel", "preview")}
        if "image" in defaults:
            defaults["image"] = list(defaults["image"])
        return _cmd_batch(words[0], defaults, ctx, settings)
    options["prompt"] = _read_prompt(options, options.pop("words"), ctx.stdin, cwd)
    job = _make_job(options, env)
    return _cmd_generate(job, ctx)


def _version_facts() -> dict:
    """What a bug report needs: this program's name as started and version, the Python that
    runs it, the file's path, the platform."""
    name = _program_name()
    system, machine = _user_agent().split(" (", 1)[1][:-1].split("; ")  # the one source
    platform = f"{system} ({machine})"
    return {"program": name if " " not in name else "imagegen", "version": __version__,
            "python": ".".join(map(str, sys.version_info[:3])),
            "python_implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(
                sys.implementation.name, sys.implementation.name),
            "python_executable": sys.executable or None,
            "path": os.path.abspath(__file__), "platform": platform}


def _cmd_version(stdout: Any, json_mode: bool) -> int:
    """`--version`: the one line "imagegen 0.2.0" (the conventional form, which scripts
    parse); with --json one object that adds the Python, the file and the platform, for a
    bug report."""
    facts = _version_facts()
    if json_mode:
        stdout.write(json.dumps(facts, ensure_ascii=False) + "\n")
        return 0
    stdout.write(f"{facts['program']} {facts['version']}\n")
    return 0


def main(argv: list[str] | None = None, *, opener: Any = None,
         clock: Callable[[], float] | None = None,
         monotonic: Callable[[], float] | None = None,
         sleep: Callable[[float], None] | None = None,
         random: Callable[[], float] | None = None,
         probes: Probes | None = None) -> int:
    """Run the command line. Returns the exit code (see the exit-code table in --help).

    The keyword-only parameters are for tests: the HTTP opener, the wall clock, the
    monotonic clock, sleep, the random source of retry back-off, and the doctor's network
    probes; None keeps the real one."""
    args = [str(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    env = dict(os.environ)
    # `>&-` leaves sys.stdout None: results then meet a closed pipe (F10)
    stdout = sys.stdout if sys.stdout is not None else _ClosedStream()
    stderr = sys.stderr if sys.stderr is not None else _ClosedStream(quiet=True)
    seams = {name: value for name, value in (("opener", opener), ("clock", clock),
                                             ("monotonic", monotonic), ("sleep", sleep),
                                             ("random", random)) if value is not None}
    runtime = {"env": env, "cwd": os.getcwd(), "stdin": sys.stdin, "stdout": stdout,
               "stderr": stderr, "seams": seams, "contexts": [], "probes": probes}
    json_mode = "--json" in args
    fallback = _Reporter(stdout, stderr, Secrets(), env, json_mode=json_mode)

    def reporter() -> _Reporter:
        # The run's own reporter knows its secrets by value (a refresh token need not look
        # like one); the fallback, for errors before any run, only knows their shapes.
        return runtime["contexts"][-1].reporter if runtime["contexts"] else fallback

    previous = _install_sigterm()
    try:
        return _dispatch(args, runtime)
    except ImagegenError as error:
        _report_failure(reporter(), error, json_mode)
        return error.exit_code
    except KeyboardInterrupt as stop:
        saved: list[dict] = []
        for ctx in runtime["contexts"]:
            ctx.cancel.set()
            ctx.transport.abort()
            ctx.reporter.close()
            ctx.remove_temporary_files()
            saved.extend(ctx.interrupted_images)
        try:
            message = stop.summary if isinstance(stop, _BatchInterrupted) else \
                "interrupted; no partial file was left"
            _report_failure(reporter(), Interrupted(message), json_mode, saved)
        except BrokenPipeError:
            pass
        return Interrupted.exit_code
    except BrokenPipeError:
        # stdout was closed (`| head -1`): stop, clean up, and say so where it can be seen.
        for ctx in runtime["contexts"]:
            ctx.cancel.set()
            ctx.transport.abort()
            ctx.remove_temporary_files()
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        try:
            stderr.write("imagegen: error: stdout was closed before every result was "
                         "printed; stopped\n")
            stderr.flush()
        except (OSError, ValueError):
            pass
        return BROKEN_PIPE_EXIT
    except RecursionError:  # json's C decoder on "[[[[...": a malformed answer, not a bug
        _report_failure(reporter(), BackendError("an answer or file is nested too deeply to "
                                                 "read (malformed)"), json_mode)
        return BackendError.exit_code
    except Exception as error:  # a bug: one line, the traceback only when asked for
        if env.get("IMAGEGEN_DEBUG") == "1":
            import traceback
            traceback.print_exc()
        internal = ImagegenError(f"internal error: {type(error).__name__}: {error} "
                                 f"(set IMAGEGEN_DEBUG=1 for a traceback; please report it)")
        try:
            _report_failure(reporter(), internal, json_mode)
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    finally:
        _restore_sigterm(previous)


def _report_failure(reporter: _Reporter, error: ImagegenError, json_mode: bool,
                    saved: list[dict] | None = None) -> None:
    """The failure on stderr; with --json also on stdout. `saved`: images saved before it
    (an interrupted run), printed like any result."""
    saved = saved or []
    if json_mode:
        reporter.result_json({"ok": False, "error": error_entry(error), "images": saved},
                             keep=[image["path"] for image in saved])
    else:
        for image in saved:
            reporter.result(image["path"], keep=(image["path"],))
    reporter.error(error.message)


BROKEN_PIPE_EXIT = 141  # what a shell reports for a command killed by SIGPIPE (128 + 13)


class _ClosedStream:
    """sys.stdout or sys.stderr when the process started with it closed."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def write(self, text: str) -> int:
        if self.quiet:
            return len(text)
        raise BrokenPipeError(32, "stdout is closed")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def _install_sigterm() -> Any:
    """SIGTERM ends a run like Ctrl-C: cleanup runs, no temporary file is left. Both wait
    while a refresh is between sending the refresh token and saving the answer (SIGNALS)."""
    import signal
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        if SIGNALS.signalled():
            return  # raised again once the refresh is saved
        raise KeyboardInterrupt

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, interrupt)
        except (ValueError, OSError):
            pass
    return previous or None


def _restore_sigterm(previous: Any) -> None:
    if previous is None:
        return
    import signal
    for signum, handler in previous.items():
        try:
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        except (ValueError, OSError, TypeError):
            pass


if __name__ == "__main__":
    sys.exit(main())

"""Property tests of the SSE decoder and the Responses stream reader (hypothesis).

The decoder must give the same events however the stream is cut into chunks and whatever
mix of LF, CR and CRLF, comment lines, `event:` lines and unknown fields it holds; the events
must be the ones the WHATWG framing rules say. Bytes a hostile or broken server could send
must never raise anything from the decoder, and only the tool's own errors (ImagegenError)
from the reader that turns events into images.
"""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imagegen
from fakeserver import png_bytes

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NEWLINES = (b"\n", b"\r", b"\r\n")
BOM = b"\xef\xbb\xbf"

# A field value: any bytes but CR and LF (a colon, leading spaces, invalid UTF-8 included).
value_bytes = st.binary(max_size=24).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))
event_name = st.text(max_size=16).map(
    lambda text: text.replace("\r", "").replace("\n", "").encode("utf-8"))


@st.composite
def sse_lines(draw: st.DrawFn) -> tuple[list[bytes], list[imagegen.SSEEvent]]:
    """A stream as a list of lines (without their endings) and the events the WHATWG rules
    say it holds."""
    lines: list[bytes] = []
    expected: list[imagegen.SSEEvent] = []
    for _ in range(draw(st.integers(0, 6))):
        data: list[bytes] = []
        name = b""
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(["data", "data", "event", "comment", "other", "bare"]))
            space = draw(st.booleans())
            if kind == "data":
                value = draw(value_bytes)
                raw = (b" " if space else b"") + value
                lines.append(b"data:" + raw)
                data.append(raw[1:] if raw[:1] == b" " else raw)
            elif kind == "bare":  # "data" with no colon: a data line with an empty value
                lines.append(b"data")
                data.append(b"")
            elif kind == "event":
                value = draw(event_name)
                raw = (b" " if space else b"") + value
                lines.append(b"event:" + raw)
                name = raw[1:] if raw[:1] == b" " else raw
            elif kind == "comment":
                lines.append(b":" + draw(value_bytes))
            else:  # fields a client must ignore (the names are case-sensitive)
                field = draw(st.sampled_from([b"id", b"retry", b"DATA", b"Event", b"x-data",
                                              b"data ", b" data"]))
                lines.append(field + b":" + draw(value_bytes))
        if data:
            expected.append(imagegen.SSEEvent(name.decode("utf-8", "replace"), b"\n".join(data)))
        lines.append(b"")  # the blank line that dispatches
    if lines and draw(st.booleans()):
        lines.pop()  # the last event not followed by a blank line is still read at the end
    return lines, expected


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[imagegen.SSEEvent]]:
    """A whole stream (random line endings per line, maybe a BOM) and its events."""
    lines, expected = draw(sse_lines())
    parts = [BOM] if draw(st.booleans()) else []
    previous = b""
    for line in lines:
        choices = NEWLINES
        if previous == b"\r" and not line:
            # CR then LF is one line ending: an empty line ending in LF right after a CR
            # would vanish into it, so it gets a CR of its own.
            choices = (b"\r", b"\r\n")
        previous = draw(st.sampled_from(choices))
        parts += [line, previous]
    return b"".join(parts), expected


def split_points(data: bytes) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, len(data)), max_size=12).map(sorted)


def chunks_of(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def decode(chunks: list[bytes]) -> list[imagegen.SSEEvent]:
    decoder = imagegen.SSEDecoder()
    events: list[imagegen.SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


@SETTINGS
@given(st.data())
def test_any_split_and_any_line_endings_give_the_events_the_framing_rules_say(data):
    stream, expected = data.draw(sse_streams())
    assert decode([stream]) == expected
    points = data.draw(split_points(stream))
    assert decode(chunks_of(stream, points)) == expected


@SETTINGS
@given(sse_streams())
def test_one_byte_at_a_time_gives_the_same_events(case):
    stream, expected = case
    assert decode([stream[i:i + 1] for i in range(len(stream))]) == expected


@SETTINGS
@given(st.binary(max_size=400), st.data())
def test_random_bytes_never_make_the_decoder_raise_and_splitting_changes_nothing(raw, data):
    whole = decode([raw])
    assert decode(chunks_of(raw, data.draw(split_points(raw)))) == whole
    for event in whole:
        assert isinstance(event.event, str) and isinstance(event.data, bytes)


class CannedResponse:
    """Stands in for imagegen.Response: the body in the given chunks, no socket."""

    def __init__(self, chunks: list[bytes], content_type: str = "text/event-stream") -> None:
        self._chunks = chunks
        self.headers = {"Content-Type": content_type}
        self.status = 200
        self.received = 0

    def chunks(self, size: int = 65536):
        for chunk in self._chunks:
            self.received += len(chunk)
            yield chunk

    def read_all(self, *args, **kwargs) -> bytes:
        return b"".join(self.chunks())

    def close(self) -> None:
        pass


def read_stream(chunks: list[bytes], content_type: str = "text/event-stream") -> list:
    """ResponsesRoute.read, the stream reader the tool uses, on a canned body."""
    return imagegen.ResponsesRoute().read(CannedResponse(chunks, content_type),
                                          lambda phase, received: None)


def read_images_answer(payload, where, transport):
    """An Images answer as the tool takes it: read, then the URLs it names fetched."""
    return imagegen.fetch_image_urls(imagegen.read_images_payload(payload, where), where, transport)


def only_tool_errors(function, *args):
    """Call function; an ImagegenError is an allowed outcome, anything else fails the test."""
    try:
        return function(*args)
    except imagegen.ImagegenError as error:
        assert error.exit_code in (2, 4, 5, 6), error
        return None


@SETTINGS
@given(st.binary(max_size=400), st.data())
def test_random_bytes_through_the_stream_reader_raise_only_the_tools_errors(raw, data):
    only_tool_errors(read_stream, chunks_of(raw, data.draw(split_points(raw))))


# Events that look almost right: real events with some of their fields replaced by any JSON.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
VALID_PNG_B64 = base64.b64encode(png_bytes(16, 16)).decode("ascii")
IMAGE_ITEM = {"type": "image_generation_call", "status": "completed", "result": VALID_PNG_B64,
              "revised_prompt": "a red square", "model": "gpt-image-2", "size": "16x16"}
MESSAGE_ITEM = {"type": "message", "content": [{"type": "output_text", "text": "hello"},
                                               {"type": "refusal", "refusal": "no"}]}
TEMPLATES = [
    {"type": "response.created", "response": {"model": "gpt-5.5", "tools": [
        {"type": "image_generation", "model": "gpt-image-2"}]}},
    {"type": "response.output_item.done", "item": IMAGE_ITEM},
    {"type": "response.output_item.done", "item": MESSAGE_ITEM},
    {"type": "response.output_item.done", "item": {"type": "image_generation_call",
                                                   "status": "failed", "result": None}},
    {"type": "response.output_text.delta", "delta": "hel"},
    {"type": "response.image_generation_call.partial_image", "partial_image_b64": VALID_PNG_B64,
     "partial_image_index": 0},
    {"type": "response.completed", "response": {"output": [IMAGE_ITEM, MESSAGE_ITEM]}},
    {"type": "response.failed", "response": {"error": {
        "code": "rate_limit_exceeded", "message": "Please try again in 1.5s."}}},
    {"type": "response.incomplete", "response": {"incomplete_details": {"reason": "content_filter"}}},
    {"type": "error", "code": "server_error", "message": "boom"},
]


def paths_of(value, prefix=()):
    """Every place in a JSON document (but the event type) a mutation may replace."""
    found = [prefix] if prefix and prefix != ("type",) else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths_of(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths_of(item, (*prefix, index))
    return found


def replaced(document, path, value):
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = replaced(copy[path[0]], path[1:], value)
    return copy


@st.composite
def mutated(draw: st.DrawFn, templates: list) -> dict:
    """One template with one to three of its fields replaced; the first place is drawn
    uniformly from every place of every template, so each is tried in a few hundred runs."""
    sites = [(document, path) for document in templates for path in paths_of(document)]
    document, path = draw(st.sampled_from(sites))
    document = replaced(document, path, draw(json_values))
    for _ in range(draw(st.integers(0, 2))):
        paths = paths_of(document)
        if paths:
            document = replaced(document, draw(st.sampled_from(paths)), draw(json_values))
    return document


@SETTINGS
@given(st.lists(mutated(TEMPLATES), min_size=1, max_size=2))
def test_events_with_fields_of_the_wrong_shape_raise_only_the_tools_errors(events):
    stream = b"".join(b"data: " + json.dumps(event).encode("utf-8") + b"\n\n" for event in events)
    only_tool_errors(read_stream, [stream])


WRONG_VALUES = [None, True, 0, -1, 1.5, 1e308, -1e308, float("inf"), float("nan"), "", "x", [],
                [1], {}, {"a": 1}, [None], [[]]]


def test_every_field_of_every_event_replaced_by_every_kind_of_value_raises_only_the_tools_errors():
    # Exhaustive where hypothesis would rely on luck: each place, each wrong type.
    for document in TEMPLATES:
        for path in paths_of(document):
            for value in WRONG_VALUES:
                event = replaced(document, path, value)
                stream = b"data: " + json.dumps(event).encode("utf-8") + b"\n\n"
                only_tool_errors(read_stream, [stream])


@SETTINGS
@given(st.lists(json_values, max_size=6))
def test_data_that_is_json_but_not_an_object_raises_only_the_tools_errors(values):
    stream = b"".join(b"data: " + json.dumps(value).encode("utf-8") + b"\n\n" for value in values)
    only_tool_errors(read_stream, [stream])


RESPONSE_TEMPLATES = [
    {"id": "resp_1", "status": "completed", "output": [IMAGE_ITEM, MESSAGE_ITEM]},
    {"error": {"code": "rate_limit_exceeded", "message": "Please try again in 2s."}},
    {"detail": "Instructions are required"},
]


@SETTINGS
@given(mutated(RESPONSE_TEMPLATES) | json_values)
def test_a_json_body_instead_of_a_stream_raises_only_the_tools_errors(payload):
    body = json.dumps(payload).encode("utf-8")
    only_tool_errors(read_stream, [body], "application/json")


def test_every_field_of_a_json_body_replaced_by_every_kind_of_value_raises_only_the_tools_errors():
    for document in RESPONSE_TEMPLATES:
        for path in paths_of(document):
            for value in WRONG_VALUES:
                body = json.dumps(replaced(document, path, value)).encode("utf-8")
                only_tool_errors(read_stream, [body], "application/json")


# The JSON answers (images routes, Images API, gateway) and HTTP errors, just as hostile.
class NoNetwork:
    def open(self, *args, **kwargs):
        raise OSError("no network in this test")


JSON_TEMPLATES = [
    {"created": 1, "data": [{"b64_json": VALID_PNG_B64, "revised_prompt": "r"}], "model": "m",
     "size": "16x16"},
    {"data": [{"url": "http://127.0.0.1:9/files/a.png"}]},
    {"error": {"message": "bad", "code": "invalid_image"}, "detail": "bad"},
    {"choices": [{"message": {"content": [{"type": "text", "text": "here"}, {
        "type": "image_url", "image_url": {"url": "data:image/png;base64," + VALID_PNG_B64}}]}}]},
    {"choices": [{"message": {"content": "![i](data:image/png;base64," + VALID_PNG_B64 + ")"}}]},
]


@SETTINGS
@given(mutated(JSON_TEMPLATES))
def test_json_answers_of_the_wrong_shape_raise_only_the_tools_errors(payload):
    transport = imagegen.Transport(opener=NoNetwork())
    only_tool_errors(read_images_answer, payload, "images route", transport)
    only_tool_errors(imagegen.images_from_chat, payload)


def test_every_field_of_every_json_answer_replaced_by_every_kind_of_value_raises_only_the_tools_errors():
    transport = imagegen.Transport(opener=NoNetwork())
    for document in JSON_TEMPLATES:
        for path in paths_of(document):
            for value in WRONG_VALUES:
                payload = replaced(document, path, value)
                only_tool_errors(read_images_answer, payload, "images route", transport)
                only_tool_errors(imagegen.images_from_chat, payload)


ERROR_TEMPLATES = [
    {"error": {"type": "usage_limit_reached", "message": "limit", "plan_type": "plus",
               "resets_at": 1_900_000_000, "resets_in_seconds": 60}},
    {"error": {"code": "rate_limit_exceeded", "message": "Please try again in 20ms."}},
    {"detail": "The model requires a newer version of Codex."},
    {"detail": {"code": "invalid_image", "message": "bad image"}},
    {"error": "invalid_grant", "error_description": "nope"},
]
header_values = st.sampled_from(["0", "1e300", "-1e300", "inf", "-inf", "nan", "NaN", "",
                                 "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT",
                                 "Mon, 01 Jan 9999 00:00:00 GMT", "12.5", "x"]) | st.text(max_size=8)
HEADER_NAMES = ["Retry-After", "x-codex-primary-used-percent", "x-codex-primary-window-minutes",
                "x-codex-primary-reset-at", "x-codex-secondary-used-percent",
                "x-codex-secondary-reset-at", "x-request-id", "cf-ray"]


@SETTINGS
@given(st.sampled_from([400, 401, 403, 404, 429, 500, 503]),
       mutated(ERROR_TEMPLATES) | json_values,
       st.dictionaries(st.sampled_from(HEADER_NAMES), header_values, max_size=5))
def test_http_errors_of_any_shape_map_to_the_tools_errors_and_quota_never_crashes(
        code, payload, headers):
    body = json.dumps(payload).encode("utf-8")
    error = imagegen.error_from_http(code, headers, body, now=1_800_000_000)
    assert isinstance(error, imagegen.ImagegenError) and isinstance(error.message, str)
    json.dumps(imagegen.error_entry(error), allow_nan=False)  # --json must stay strict JSON
    quota = imagegen.quota_from_headers(headers)
    if quota:
        assert isinstance(imagegen.describe_quota(quota, 1_800_000_000), str)
        json.dumps(quota, allow_nan=False)  # it goes into --json output and the state file


def good_stream(newline: bytes) -> bytes:
    item = {"type": "image_generation_call", "status": "completed", "result": VALID_PNG_B64,
            "revised_prompt": "a tiny red square"}
    events = [{"type": "response.created", "response": {"model": "gpt-5.5", "tools": []}},
              {"type": "response.output_item.done", "item": item},
              {"type": "response.completed", "response": {"output": []}}]
    return b"".join(b"event: " + e["type"].encode() + newline + b": noise" + newline
                    + b"data: " + json.dumps(e).encode() + newline + newline for e in events)


@SETTINGS
@given(st.sampled_from(NEWLINES), st.data())
def test_a_good_stream_gives_its_image_however_it_is_cut(newline, data):
    stream = good_stream(newline)
    images = read_stream(chunks_of(stream, data.draw(split_points(stream))))
    assert [image.data for image in images] == [png_bytes(16, 16)]
    assert images[0].revised_prompt == "a tiny red square"


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_byte_order_mark_split_across_chunks_is_still_dropped(cut):
    stream = BOM + b"data: {}\n\n"
    assert decode([stream[:cut], stream[cut:]]) == [imagegen.SSEEvent("", b"{}")]


def test_every_field_of_every_error_answer_replaced_by_every_kind_of_value_maps_to_a_tools_error():
    for code in (400, 401, 403, 404, 429, 500):
        for document in ERROR_TEMPLATES:
            for path in paths_of(document):
                for value in WRONG_VALUES:
                    body = json.dumps(replaced(document, path, value)).encode("utf-8")
                    error = imagegen.error_from_http(code, {}, body, now=1_800_000_000)
                    assert isinstance(error, imagegen.ImagegenError)
                    json.dumps(imagegen.error_entry(error), allow_nan=False)

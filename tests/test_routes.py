"""The Codex images route, the automatic route choice, and edits (reference images, masks),
checked by what reached the fake server and what was saved."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fakeserver import (FORBIDDEN_BODIES, cloudflare, content_policy, data_url, decode_data_url,
                        detail, error_event, forbidden, insufficient_quota, jpeg_bytes, overloaded,
                        png_bytes, stall, status, text_only, usage_limit, webp_bytes)

GENERATED = Path("assets") / "generated"
RESPONSES = "/backend-api/codex/responses"
GENERATIONS = "/backend-api/codex/images/generations"
EDITS = "/backend-api/codex/images/edits"


# helpers ###################################################################################

def paths(fake) -> list[str]:
    return [request.path for request in fake.requests]


def codex_paths(fake) -> list[str]:
    return [path for path in paths(fake) if path.startswith("/backend-api/codex/")]


def switch_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if re.search(r"(?i)switch", line)]


@pytest.fixture
def pictures(env):
    """Reference images and masks on disk, with their bytes."""
    made = {
        "a.png": png_bytes(64, 48),
        "b.jpg": jpeg_bytes(32, 32),
        "c.webp": webp_bytes(40, 40),
        "mask.png": png_bytes(64, 48, rgba=True),
        "small-mask.png": png_bytes(32, 32, rgba=True),
        "mask.jpg": jpeg_bytes(64, 48),
        "notes.txt": b"this is not an image at all\n" * 3,
    }
    for name, data in made.items():
        (env.work / name).write_bytes(data)
    return made


# --route images ############################################################################

def test_images_route_generate_request(env, fake, run):
    result = run("a lighthouse at dusk", "--route", "images")
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS]
    request = fake.last_request
    # exactly the body Codex itself sends, in its order
    assert list(request.json.items()) == [("prompt", "a lighthouse at dusk"), ("background", "auto"),
                                          ("model", "gpt-image-2"), ("quality", "auto"), ("size", "auto")]
    assert request.bearer == fake.auth.tokens["access_token"]
    assert request.header("ChatGPT-Account-ID") == fake.auth.account_id
    assert request.header("originator") == "codex-imagegen"
    assert (request.header("User-Agent") or "").startswith("codex-imagegen/")
    assert request.header("version")
    for header in ("session_id", "session-id", "thread-id", "x-client-request-id", "x-codex-image-turn-id",
                   "x-codex-turn-metadata"):
        assert request.header(header) is None, header
    assert "text/event-stream" not in (request.header("Accept") or "")
    assert request.content_type == "application/json"
    saved = env.work / GENERATED / "a-lighthouse-at-dusk.png"
    assert result.lines == [str(GENERATED / "a-lighthouse-at-dusk.png")]
    assert saved.read_bytes() == fake.images_sent[0]
    assert fake.errors == []


def test_images_route_sends_what_codex_sends_and_says_what_it_ignores(env, fake, run):
    # Measured: the service ignores size, quality and model; the prompt's aspect line shapes the canvas.
    result = run("a lighthouse", "--route", "images", "--size", "1536x1024", "--quality", "high",
                 "--background", "opaque", "--image-model", "gpt-image-1.5", "--action", "generate",
                 "--json")
    assert result.code == 0, result
    body = fake.last_request.json
    assert "action" not in body
    assert (body["size"], body["quality"], body["background"], body["model"]) == ("auto", "auto", "opaque",
                                                                                  "gpt-image-2")
    assert body["prompt"] == "a lighthouse\n\nAspect ratio: landscape 3:2."
    assert result.json["route"] == "images"
    assert (result.json["images"][0]["width"], result.json["images"][0]["height"]) == (1536, 1024)
    warnings = [line for line in result.err.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.err
    assert "--quality high" in warnings[0] and "--image-model gpt-image-1.5" in warnings[0]
    assert "--action generate" in warnings[0]


@pytest.mark.parametrize("size, line, shape", [
    ("1920x1088", "landscape 16:9", (1672, 941)),
    ("1088x1920", "portrait 9:16", (941, 1672)),
    ("1024x1024", "square 1:1", (1254, 1254)),
    ("1024x1536", "portrait 2:3", (1024, 1536)),
    ("1152x1024", "square 1:1", (1254, 1254)),
    ("1280x1024", "landscape 3:2", (1536, 1024)),
])
def test_size_becomes_an_aspect_line_and_the_size_received_is_reported(env, fake, run, size, line, shape):
    result = run("a harbour", "--size", size, "--meta", "-o", "harbour.png")
    assert result.code == 0, result
    assert fake.last_request.json["prompt"] == f"a harbour\n\nAspect ratio: {line}."
    assert fake.last_request.json["size"] == "auto"
    received = f"{shape[0]}x{shape[1]}"
    saved = [text for text in result.err.splitlines() if "saved harbour.png" in text]
    assert len(saved) == 1 and f"({size} png" in saved[0], result.err  # fitted: the size asked
    fitted = [text for text in result.err.splitlines() if text.startswith("imagegen: harbour.png: ")]
    assert (len(fitted) == 1 and f"received {received} png; cover: " in fitted[0]) == (received != size)
    assert line in result.err  # said before the request: the backend picks the size itself
    meta = json.loads((env.work / "harbour.png.json").read_text())
    assert (meta["size_requested"], meta["size_received"], meta["size_saved"]) == (size, received, size)
    as_json = run("a harbour", "--size", size, "--json")
    image = as_json.json["images"][0]
    assert (image["width"], image["height"]) == tuple(map(int, size.split("x")))
    assert image["received"] == received
    assert (image["fitted"] or "").startswith("cover: scaled ") == (received != size)
    kept = run("a harbour", "--size", size, "--json", "--fit", "none").json["images"][0]
    assert (kept["width"], kept["height"], kept["fitted"]) == (*shape, None)
    assert kept["received"] == received


def test_images_route_from_the_environment(env, fake, run):
    result = run("a lighthouse", env_vars={"IMAGEGEN_ROUTE": "images"})
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS]


def test_images_route_count_2_saves_two_images(env, fake, run):
    result = run("a lighthouse", "--route", "images", "-n", "2", "-o", "lh.png")
    assert result.code == 0, result
    assert result.lines == ["lh.png", "lh-2.png"]
    saved = sorted((env.work / line).read_bytes() for line in result.lines)
    assert saved == sorted(fake.images_sent)
    assert set(codex_paths(fake)) == {GENERATIONS}
    assert all("n" not in request.json for request in fake.requests)  # one request an image


def test_images_route_refreshes_after_a_401_and_sends_again(env, fake, run):
    fake.queue("/images/generations", status(401, {"error": {"message": "expired", "code": "token_expired"}}))
    result = run("a lighthouse", "--route", "images")
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS, "/oauth/token", GENERATIONS]
    assert fake.requests[-1].bearer == fake.auth.tokens["access_token"] != fake.requests[0].bearer
    assert (env.work / result.lines[0]).read_bytes() == fake.images_sent[0]


def test_images_route_retries_a_503(env, fake, run):
    fake.queue("/images/generations", overloaded(retry_after=0))
    result = run("a lighthouse", "--route", "images", "--retries", "1")
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS, GENERATIONS]


def test_images_route_usage_limit_is_exit_4_without_retry(env, fake, run):
    fake.queue("/images/generations", usage_limit())
    result = run("a lighthouse", "--route", "images")
    assert result.code == 4, result
    assert result.out == ""
    assert re.search(r"usage limit reached on the plus plan; resets at \d\d:\d\d \(in 59m\)",
                     result.err), result.err
    assert paths(fake) == [GENERATIONS]


def test_images_route_edit_request(env, fake, run, pictures):
    result = run("make it night", "--route", "images", "-i", "a.png", "-i", "b.jpg",
                 "-i", "c.webp", "--mask", "mask.png")
    assert result.code == 0, result
    assert paths(fake) == [EDITS]
    body = fake.last_request.json
    assert list(body)[0] == "images"  # first, as Codex puts them
    assert body["images"] == [{"image_url": data_url(pictures["a.png"], "image/png")},
                              {"image_url": data_url(pictures["b.jpg"], "image/jpeg")},
                              {"image_url": data_url(pictures["c.webp"], "image/webp")}]
    assert body["mask"] == {"image_url": data_url(pictures["mask.png"], "image/png")}
    assert body["prompt"] == "make it night" and body["model"] == "gpt-image-2"
    assert fake.last_request.header("session-id") is None
    assert (env.work / GENERATED / "make-it-night.png").read_bytes() == fake.images_sent[0]
    assert re.search(r"warning: .*--mask is unknown", result.err), result.err


def test_transparent_background_goes_straight_to_the_images_route(env, fake, run):
    result = run("a sticker of a cat", "--background", "transparent", "--json")
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS]
    assert fake.last_request.json["background"] == "transparent"
    assert result.json["route"] == "images"
    assert result.json["images"][0]["route"] == "images"


def test_transparent_edit_goes_straight_to_images_edits(env, fake, run, pictures):
    result = run("cut it out", "--background", "transparent", "-i", "a.png")
    assert result.code == 0, result
    assert paths(fake) == [EDITS]
    assert fake.last_request.input_images() == [pictures["a.png"]]


# formats a route cannot deliver ############################################################

@pytest.mark.parametrize("argv, fmt", [
    (("-o", "fox.jpg"), "jpeg"), (("--format", "webp"), "webp"), (("-o", "fox.jpeg"), "jpeg"),
])
def test_the_images_route_refuses_jpeg_and_webp_before_sending(env, fake, run, argv, fmt, no_pillow):
    # without Pillow (with it, the PNG is converted: tests/test_exact.py)
    result = run("a fox", "--route", "images", *argv)
    assert_refused_before_sending(result, fake, "PNG", ".png", "--backend api", "Pillow")
    assert fmt in result.err
    assert list(env.work.rglob("*.*")) == []
    dry = run("a fox", "--route", "images", *argv, "--dry-run")
    assert dry.code == 2 and dry.out == "", dry


def test_auto_sends_jpeg_to_the_responses_route(env, fake, run):
    result = run("a fox", "-o", "fox.jpg", "--json")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES]
    assert fake.last_request.json["tools"][0]["output_format"] == "jpeg"
    data = (env.work / "fox.jpg").read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data == fake.images_sent[0]
    assert result.json["route"] == "responses" and result.json["images"][0]["format"] == "jpeg"


def test_transparent_webp_on_the_codex_backend_without_pillow_is_refused_before_sending(
        env, fake, run, no_pillow):
    result = run("a sticker", "--background", "transparent", "-o", "sticker.webp")
    assert_refused_before_sending(result, fake, "PNG", "transparent", "Pillow")


def test_transparent_on_the_forced_responses_route_asks_for_a_chroma_key(env, fake, run):
    # the route refuses background transparent: it is asked for a flat key colour instead
    result = run("a sticker", "--route", "responses", "--background", "transparent", "--json")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES]
    tool = fake.last_request.json["tools"][0]
    assert "background" not in tool and tool["output_format"] == "png"
    assert "chroma-key colour #00ff00" in fake.last_request.json["input"][0]["content"][-1]["text"]
    assert result.json["images"][0]["transparency"] == "chroma-key"


# --route auto: when it falls back #########################################################

@pytest.mark.parametrize("behaviour, why", [
    (status(404, {"detail": "Not Found"}), "404"),
    (detail("Model not supported"), "Model not supported"),
    (detail("Unsupported parameter: 'background' is not supported here."), "not supported"),
    (status(400, {"error": {"message": "The model 'gpt-image-2' does not support the 'input_fidelity' parameter.",
                            "code": "invalid_input_fidelity_model", "type": "invalid_request_error"}}),
     "input_fidelity"),
], ids=["404", "model", "parameter", "route-refusal"])
def test_auto_falls_back_to_responses_after_a_free_rejection(env, fake, run, behaviour, why):
    fake.queue("/images/generations", behaviour)
    result = run("a fox", "--json")
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS, RESPONSES]
    lines = switch_lines(result.err)
    assert len(lines) == 1, result.err
    assert "responses" in lines[0] and why in lines[0]
    assert result.json["route"] == "responses"
    assert [image["route"] for image in result.json["images"]] == ["responses"]
    saved = env.work / result.json["images"][0]["path"]
    assert saved.read_bytes() == fake.images_sent[0]
    assert len(fake.images_sent) == 1


def test_an_edit_with_a_mask_starts_on_responses_and_falls_back_to_images_edits(env, fake, run, pictures):
    fake.queue("/codex/responses", status(404, {"detail": "Not Found"}))
    result = run("make it night", "-i", "a.png", "--mask", "mask.png")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES, EDITS]
    first, second = fake.requests
    assert first.input_images() == second.input_images() == [pictures["a.png"]]
    assert first.mask() == second.mask() == pictures["mask.png"]
    assert len(switch_lines(result.err)) == 1


def test_a_server_refusal_of_transparent_moves_to_the_images_route(env, fake, run, pictures):
    # sent as opaque-or-auto, refused as a route problem (never a content-policy exit 6)
    fake.queue("/codex/responses", status(400, {"error": {
        "message": "Transparent background is not supported for this model.",
        "type": "image_generation_user_error", "code": "image_generation_user_error"}}))
    result = run("make it night", "-i", "a.png", "--mask", "mask.png")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES, EDITS]


def test_auto_when_neither_route_gives_an_image_keeps_the_models_words(env, fake, run):
    fake.queue("/images/generations", status(404, {"detail": "Not Found"}))
    fake.queue("/codex/responses", text_only("I only talk about foxes."))
    result = run("a fox", "--json")
    assert result.code == 6, result
    assert paths(fake) == [GENERATIONS, RESPONSES]
    assert result.json["ok"] is False and result.json["error"]["kind"] == "no_image"
    assert "I only talk about foxes." in result.json["error"]["message"]
    assert "I only talk about foxes." in result.err
    assert list((env.work).rglob("*.png")) == []


def test_the_models_words_survive_a_failure_of_the_next_route(env, fake, run, pictures):
    # a mask starts on the Responses route: the model talks, then the images route is not there
    fake.queue("/codex/responses", text_only("A mask? I would rather describe it."))
    fake.queue("/images/edits", status(404, {"detail": "Not Found"}))
    result = run("make it night", "-i", "a.png", "--mask", "mask.png", "--json")
    assert result.code == 6, result
    assert paths(fake) == [RESPONSES, EDITS]
    message = result.json["error"]["message"]
    assert "I would rather describe it." in message and "404" in message


def test_auto_without_trouble_stays_on_images(env, fake, run):
    result = run("a fox", "--json")
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS]
    assert result.json["route"] == "images"
    assert switch_lines(result.err) == []


# --route auto: when it must not fall back ##################################################

@pytest.mark.parametrize("behaviour, argv, code", [
    (cloudflare(403), (), 5),
    (usage_limit(), (), 4),
    (content_policy(), (), 6),
    (status(500), ("--retries", "0"), 5),
    (status(502, "Bad Gateway"), ("--retries", "0"), 5),
    (error_event("server_error"), ("--retries", "0"), 5),
    (detail("Invalid prompt: the prompt is too long."), (), 5),
    (status(429, {"error": {"code": "rate_limit_exceeded", "message": "Please try again in 0.01s."}},
            headers={"Retry-After": "0"}), ("--retries", "0"), 4),
    (insufficient_quota(), (), 4),
    (stall(seconds=5, after=1), ("--retries", "0", "--stall-timeout", "0.5"), 5),
    (forbidden("plan"), (), 3),
    (forbidden("misalignment"), (), 6),
], ids=["403-html", "429-usage-limit", "content-policy", "500", "502", "error-event",
        "400-prompt", "429-rate-limit", "insufficient-quota", "stall", "403-plan", "403-policy"])
def test_auto_does_not_fall_back(env, fake, run, behaviour, argv, code):
    fake.queue("/images/generations", behaviour)
    result = run("a fox", *argv)
    assert result.code == code, result
    assert paths(fake) == [GENERATIONS]
    assert switch_lines(result.err) == []
    assert list((env.work).rglob("*.png")) == []


def test_auto_does_not_fall_back_after_a_400_about_the_images(env, fake, run, pictures):
    fake.queue("/images/edits", detail("Invalid image: the file could not be decoded."))
    result = run("make it night", "-i", "a.png")
    assert result.code in (2, 5), result
    assert paths(fake) == [EDITS]
    assert switch_lines(result.err) == []


def test_auto_does_not_fall_back_after_a_401_that_survives_a_refresh(env, fake, run):
    refused = {"error": {"message": "Unauthorized", "code": "token_expired"}}
    fake.queue("/images/generations", status(401, refused), status(401, refused))
    result = run("a fox")
    assert result.code == 3, result
    assert fake.auth.refresh_count == 1
    assert codex_paths(fake) == [GENERATIONS, GENERATIONS]  # the first try, and one after the refresh
    assert switch_lines(result.err) == []


@pytest.mark.parametrize("kind", ["plan", "workspace"])
@pytest.mark.parametrize("route", ["images", "responses"])
def test_a_json_403_is_exit_3_without_a_refresh(env, fake, run, kind, route):
    # Codex never refreshes after a 403: it is the plan or the workspace, not the login
    fake.queue("/images/generations" if route == "images" else "/codex/responses", forbidden(kind))
    result = run("a fox", "--route", route, "--json")
    assert result.code == 3, result
    assert fake.auth.refresh_attempts == 0
    assert len(codex_paths(fake)) == 1
    message = result.json["error"]["message"]
    assert "403" in message and "plan or workspace" in message
    said = FORBIDDEN_BODIES[kind].get("detail") or FORBIDDEN_BODIES[kind]["error"]["message"]
    assert said in message
    assert list((env.work).rglob("*.png")) == []


@pytest.mark.parametrize("kind", ["misalignment", "bio", "cyber"])
def test_a_policy_403_is_a_refusal(env, fake, run, kind):
    fake.queue("/images/generations", forbidden(kind))
    result = run("a fox", "--retries", "3")
    assert result.code == 6, result
    assert fake.auth.refresh_attempts == 0 and len(codex_paths(fake)) == 1
    assert "content policy" in result.err


def test_a_plan_without_image_generation(env, fake, run):
    fake.image_generation = False
    result = run("a fox")
    assert result.code == 3, result
    assert codex_paths(fake) == [GENERATIONS] and fake.auth.refresh_attempts == 0
    assert "plan" in result.err
    forced = run("a fox", "--route", "responses")  # the forced tool is "not found" in the tools
    assert forced.code == 3, forced
    (line,) = [text for text in forced.err.splitlines() if "error" in text]
    assert "does not include image generation" in line and "Tool choice" in line
    assert fake.auth.refresh_attempts == 0


@pytest.mark.parametrize("code, said", [
    ("moderation_blocked", "Your request was rejected by the safety system."),
    ("image_content_policy_violation", "This request has been blocked by our content filters."),
], ids=["moderation-blocked", "policy-code-only"])
@pytest.mark.parametrize("route", ["auto", "images"])
def test_a_content_policy_400_on_the_images_route_is_exit_6_not_retried_nor_rerouted(
        env, fake, run, route, code, said):
    fake.queue("/images/generations", status(400, {"error": {
        "message": said, "type": "image_generation_user_error", "code": code, "param": None}}))
    result = run("a fox", "--route", route, "--retries", "3")
    assert result.code == 6, result
    assert result.out == ""
    (line,) = [text for text in result.err.splitlines() if text.startswith("imagegen: error: ")]
    assert "content policy" in line and said in line
    assert paths(fake) == [GENERATIONS]  # once: not again, not on the Responses route
    assert switch_lines(result.err) == []
    assert list((env.work).rglob("*.png")) == []


@pytest.mark.parametrize("code", ["invalid_prompt"])
def test_an_invalid_prompt_is_not_retried(env, fake, run, code):
    fake.default("/images/generations", status(400, {"error": {"message": "Invalid prompt.", "code": code}}))
    result = run("a fox", "--retries", "3")
    assert result.code == 5, result
    assert "HTTP 400" in result.err and "Invalid prompt." in result.err
    assert codex_paths(fake) == [GENERATIONS]


def test_the_request_id_of_the_images_route_is_in_the_error(env, fake, run):
    fake.queue("/images/generations", status(500, {"error": {"message": "boom"}}))
    result = run("a fox", "--retries", "0")
    assert result.code == 5, result
    assert re.search(r"x-codex-imagegen-request-id imgreq_[0-9a-f]+", result.err), result.err
    assert re.search(r"x-oai-request-id req_[0-9a-f]+", result.err), result.err
    assert "x-request-id" not in result.err  # the same id as x-oai-request-id: shown once


def test_explicit_route_responses_never_falls_back(env, fake, run):
    fake.queue("/codex/responses", text_only("No."))
    result = run("a fox", "--route", "responses")
    assert result.code == 6, result
    assert "No." in result.err
    assert paths(fake) == [RESPONSES]


@pytest.mark.parametrize("body, words", [
    ({"error": {"message": "The model 'gpt-image-2-codex' does not support the 'input_fidelity' parameter.",
                "type": "invalid_request_error", "code": "invalid_input_fidelity_model"}}, "--input-fidelity"),
    ({"error": {"message": "Transparent background is not supported for this model.",
                "type": "image_generation_user_error", "code": "image_generation_user_error"}}, "--route images"),
], ids=["input-fidelity", "transparent"])
def test_a_route_refusal_on_a_forced_route_is_exit_2_with_the_fix(env, fake, run, body, words):
    fake.queue("/codex/responses", status(400, body))
    result = run("a fox", "--route", "responses", "--json")
    assert result.code == 2, result
    assert paths(fake) == [RESPONSES]
    assert words in result.json["error"]["message"]
    assert "content policy" not in result.json["error"]["message"]


def test_explicit_route_images_failure_is_reported_as_is(env, fake, run):
    fake.queue("/images/generations", status(404, {"detail": "Not Found"}))
    result = run("a fox", "--route", "images", "--json")
    assert result.code == 5, result
    assert paths(fake) == [GENERATIONS]
    assert result.json["ok"] is False and result.json["error"]["exit_code"] == 5


# the Responses route with references #######################################################

def test_responses_edit_puts_images_before_the_text_and_the_mask_in_the_tool(env, fake, run, pictures):
    result = run("make it night", "--route", "responses", "-i", "a.png", "-i", "b.jpg",
                 "--mask", "mask.png", "--action", "edit", "--input-fidelity", "high")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES]
    body = fake.last_request.json
    content = body["input"][0]["content"]
    assert content == [
        {"type": "input_image", "image_url": data_url(pictures["a.png"], "image/png"), "detail": "high"},
        {"type": "input_image", "image_url": data_url(pictures["b.jpg"], "image/jpeg"), "detail": "high"},
        {"type": "input_text", "text": "make it night"},
    ]
    tool = body["tools"][0]
    assert tool["type"] == "image_generation"
    assert tool["input_image_mask"] == {"image_url": data_url(pictures["mask.png"], "image/png")}
    assert tool["action"] == "edit"
    assert "input_fidelity" not in tool  # the route refuses it (400 invalid_input_fidelity_model)
    assert re.search(r"warning: .*--input-fidelity high", result.err), result.err
    assert (env.work / GENERATED / "make-it-night.png").read_bytes() == fake.images_sent[0]


def test_responses_edit_without_action_or_fidelity_leaves_them_out(env, fake, run, pictures):
    result = run("make it night", "--route", "responses", "-i", "c.webp")
    assert result.code == 0, result
    body = fake.last_request.json
    tool = body["tools"][0]
    for key in ("action", "input_fidelity", "input_image_mask"):
        assert key not in tool
    assert [part["type"] for part in body["input"][0]["content"]] == ["input_image", "input_text"]
    assert fake.last_request.input_images() == [pictures["c.webp"]]


@pytest.mark.parametrize("chunked", [False, True])
def test_reference_from_a_url_is_downloaded_and_sent_as_a_data_url(env, fake, run, chunked):
    picture = png_bytes(80, 60, color=(1, 2, 3))
    url = fake.add_file("ref.png", picture, chunked=chunked)
    result = run("make it night", "-i", url)
    assert result.code == 0, result
    assert paths(fake) == ["/files/ref.png", EDITS]
    image_url = fake.last_request.json["images"][0]["image_url"]
    assert decode_data_url(image_url) == ("image/png", picture)


def test_reference_url_sniffed_by_its_bytes_not_its_content_type(env, fake, run):
    picture = jpeg_bytes(48, 48)
    url = fake.add_file("photo", picture, content_type="application/octet-stream")
    result = run("make it night", "--route", "images", "-i", url)
    assert result.code == 0, result
    assert fake.last_request.json["images"] == [{"image_url": data_url(picture, "image/jpeg")}]


# refused before any request ################################################################

def assert_refused_before_sending(result, fake, *words):
    assert result.code == 2, result
    assert codex_paths(fake) == [], "a request reached the image backend"
    assert fake.auth.refresh_attempts == 0
    assert result.out == ""
    for word in words:
        assert word in result.err, result


def test_a_reference_that_is_not_an_image_is_named(env, fake, run, pictures):
    result = run("x", "-i", "a.png", "-i", "notes.txt")
    assert_refused_before_sending(result, fake, "notes.txt")
    assert fake.requests == []


def test_a_missing_reference_is_named(env, fake, run):
    result = run("x", "-i", "no-such-file.png")
    assert_refused_before_sending(result, fake, "no-such-file.png")
    assert fake.requests == []


def test_a_reference_file_over_20_mb_is_refused(env, fake, run):
    with open(env.work / "huge.png", "wb") as handle:
        handle.write(png_bytes(64, 48)[:64])
        handle.truncate(21 * 1024 * 1024)
    result = run("x", "-i", "huge.png")
    assert_refused_before_sending(result, fake, "huge.png")
    assert fake.requests == []


def test_a_directory_as_reference_is_refused(env, fake, run):
    (env.work / "folder.png").mkdir()
    result = run("x", "-i", "folder.png")
    assert_refused_before_sending(result, fake, "folder.png")


def test_a_url_that_is_not_an_image_is_refused(env, fake, run):
    url = fake.add_file("page.png", b"<html>not an image</html>", content_type="image/png")
    result = run("x", "-i", url)
    assert_refused_before_sending(result, fake, "page.png")


def test_a_url_that_is_not_found_is_refused(env, fake, run):
    result = run("x", "-i", fake.url + "/files/missing.png")
    assert_refused_before_sending(result, fake, "missing.png")


@pytest.mark.parametrize("declare_length", [True, False])
def test_an_oversize_download_is_refused(env, fake, run, declare_length):
    url = fake.add_oversize_file("huge.png", 21 * 1024 * 1024, declare_length=declare_length)
    result = run("x", "-i", url)
    assert_refused_before_sending(result, fake, "huge.png")
    assert paths(fake) == ["/files/huge.png"]


def test_a_mask_of_the_wrong_size_is_refused(env, fake, run, pictures):
    result = run("x", "-i", "a.png", "--mask", "small-mask.png")
    assert_refused_before_sending(result, fake, "small-mask.png", "32x32", "64x48")


def test_a_mask_that_is_not_png_is_refused(env, fake, run, pictures):
    result = run("x", "-i", "a.png", "--mask", "mask.jpg")
    assert_refused_before_sending(result, fake, "mask.jpg")


def test_a_mask_without_an_image_is_refused(env, fake, run, pictures):
    result = run("x", "--mask", "mask.png")
    assert_refused_before_sending(result, fake, "--mask")


def test_more_than_5_images_on_the_images_route_is_refused(env, fake, run, pictures):
    images = [arg for _ in range(6) for arg in ("-i", "a.png")]
    result = run("x", "--route", "images", *images)
    assert_refused_before_sending(result, fake, "5")


def test_more_than_5_images_with_a_transparent_background_use_a_chroma_key(env, fake, run, pictures):
    images = [arg for _ in range(6) for arg in ("-i", "a.png")]
    result = run("x", "--background", "transparent", *images, "--json")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES]  # the images route takes 5; the other keys it out
    assert result.json["images"][0]["transparency"] == "chroma-key"


def test_6_images_on_auto_use_the_responses_route(env, fake, run, pictures):
    images = [arg for _ in range(6) for arg in ("-i", "a.png")]
    result = run("x", *images)
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES]
    assert fake.last_request.input_images() == [pictures["a.png"]] * 6


def test_more_than_16_images_is_refused(env, fake, run, pictures):
    images = [arg for _ in range(17) for arg in ("-i", "a.png")]
    result = run("x", "--route", "responses", *images)
    assert_refused_before_sending(result, fake, "16")


# --dry-run #################################################################################

def test_dry_run_shows_the_first_route_auto_would_try(env, fake, run, pictures):
    result = run("a fox", "-i", "a.png", "--dry-run")
    assert result.code == 0, result
    assert fake.requests == []
    requests = result.json["requests"]
    assert len(requests) == 1
    assert requests[0]["method"] == "POST"
    assert requests[0]["url"] == fake.codex_base_url + "/images/edits"
    image_url = requests[0]["body"]["images"][0]["image_url"]
    assert image_url.startswith("data:image/png;base64,")
    assert f"<base64: {len(pictures['a.png'])} bytes>" in image_url


def test_dry_run_of_a_plain_prompt_shows_the_images_route_with_honest_headers(env, fake, run):
    result = run("x", "--dry-run")
    assert result.code == 0, result
    assert fake.requests == []
    (request,) = result.json["requests"]
    assert request["url"] == fake.codex_base_url + "/images/generations"
    headers = request["headers"]
    assert headers["originator"] == "codex-imagegen"
    assert re.fullmatch(r"codex-imagegen/\S+ \(\S[^;()]* [^;()]*; [^;()]+\)", headers["User-Agent"]), headers
    assert headers["version"] == "0.169.0"
    assert headers["Authorization"] == "Bearer ***" and headers["ChatGPT-Account-ID"] == fake.auth.account_id
    assert set(headers) == {"Authorization", "ChatGPT-Account-ID", "originator", "User-Agent", "version",
                            "Accept", "Content-Type"}
    assert request["body"] == {"prompt": "x", "background": "auto", "model": "gpt-image-2",
                               "quality": "auto", "size": "auto"}


def test_dry_run_of_the_responses_route_shows_hyphenated_session_headers(env, fake, run):
    result = run("x", "--route", "responses", "--dry-run")
    assert result.code == 0, result
    (request,) = result.json["requests"]
    headers = request["headers"]
    assert headers["session-id"] == headers["thread-id"] == headers["x-client-request-id"]
    assert "session_id" not in headers
    assert request["body"]["tool_choice"] == {"type": "image_generation"}


def test_dry_run_of_the_images_route_shows_the_edit_request(env, fake, run, pictures):
    result = run("a fox", "--route", "images", "-i", "a.png", "--mask", "mask.png", "--dry-run")
    assert result.code == 0, result
    assert fake.requests == []
    (request,) = result.json["requests"]
    assert request["url"] == fake.codex_base_url + "/images/edits"
    body = request["body"]
    assert f"<base64: {len(pictures['a.png'])} bytes>" in body["images"][0]["image_url"]
    assert f"<base64: {len(pictures['mask.png'])} bytes>" in body["mask"]["image_url"]
    assert request["headers"]["Authorization"] == "Bearer ***"
    assert "session_id" not in request["headers"]
    assert not re.search(r"[A-Za-z0-9+/]{65,}", result.out), "a base64 payload was printed whole"


def test_dry_run_of_transparent_shows_the_images_generation(env, fake, run):
    result = run("a sticker", "--background", "transparent", "--dry-run")
    assert result.code == 0, result
    (request,) = result.json["requests"]
    assert request["url"] == fake.codex_base_url + "/images/generations"
    assert request["body"]["background"] == "transparent"


def test_dry_run_without_credentials_still_shows_the_images_request(env, fake, run):
    env.auth_file.unlink()
    result = run("a fox", "--route", "images", "--dry-run")
    assert result.code == 0, result
    (request,) = result.json["requests"]
    assert request["url"].endswith("/images/generations")
    assert request["body"] == {"prompt": "a fox", "model": "gpt-image-2", "background": "auto",
                               "quality": "auto", "size": "auto"}
    assert fake.requests == []


def test_a_rejected_route_is_not_tried_again_for_the_next_images(env, fake, run):
    fake.queue("/images/generations", status(404, {"detail": "Not Found"}))
    result = run("a fox", "-n", "3", "--parallel", "1")
    assert result.code == 0, result
    assert paths(fake) == [GENERATIONS, RESPONSES, RESPONSES, RESPONSES]
    assert len(switch_lines(result.err)) == 1
    assert len(result.lines) == 3

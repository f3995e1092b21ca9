"""The Codex images route, the automatic route choice, and edits (reference images, masks),
checked by what reached the fake server and what was saved."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from fakeserver import (cloudflare, content_policy, data_url, decode_data_url, detail,
                        error_event, insufficient_quota, jpeg_bytes, overloaded, png_bytes,
                        stall, status, text_only, usage_limit, webp_bytes)

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
    assert request.json == {"prompt": "a lighthouse at dusk", "model": "gpt-image-2",
                            "background": "auto", "quality": "auto", "size": "auto"}
    assert request.bearer == fake.auth.tokens["access_token"]
    assert request.header("ChatGPT-Account-ID") == fake.auth.account_id
    assert request.header("originator") == "codex_cli_rs"
    assert (request.header("User-Agent") or "").startswith("codex_cli_rs/")
    assert request.header("version")
    assert request.header("session_id") is None
    assert "text/event-stream" not in (request.header("Accept") or "")
    assert request.content_type == "application/json"
    saved = env.work / GENERATED / "a-lighthouse-at-dusk.png"
    assert result.lines == [str(GENERATED / "a-lighthouse-at-dusk.png")]
    assert saved.read_bytes() == fake.images_sent[0]


def test_images_route_carries_the_users_options(env, fake, run):
    result = run("a lighthouse", "--route", "images", "--size", "1536x1024", "--quality", "high",
                 "--background", "opaque", "--json")
    assert result.code == 0, result
    body = fake.last_request.json
    assert (body["size"], body["quality"], body["background"]) == ("1536x1024", "high", "opaque")
    assert body["model"] == "gpt-image-2"
    assert result.json["route"] == "images"
    assert result.json["images"][0]["width"] == 1536


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
    assert paths(fake) == [GENERATIONS]


def test_images_route_edit_request(env, fake, run, pictures):
    result = run("make it night", "--route", "images", "-i", "a.png", "-i", "b.jpg",
                 "-i", "c.webp", "--mask", "mask.png")
    assert result.code == 0, result
    assert paths(fake) == [EDITS]
    body = fake.last_request.json
    assert body["images"] == [{"image_url": data_url(pictures["a.png"], "image/png")},
                              {"image_url": data_url(pictures["b.jpg"], "image/jpeg")},
                              {"image_url": data_url(pictures["c.webp"], "image/webp")}]
    assert body["mask"] == {"image_url": data_url(pictures["mask.png"], "image/png")}
    assert body["prompt"] == "make it night" and body["model"] == "gpt-image-2"
    assert fake.last_request.header("session_id") is None
    assert (env.work / GENERATED / "make-it-night.png").read_bytes() == fake.images_sent[0]


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


# --route auto: when it falls back #########################################################

@pytest.mark.parametrize("behaviour, why", [
    (status(404, {"detail": "Not Found"}), "404"),
    (detail("Model not supported"), "Model not supported"),
    (detail("Tool 'image_generation' is not supported with gpt-5.5."), "not supported"),
    (text_only("I would rather describe a fox than draw one."), "rather describe a fox"),
])
def test_auto_falls_back_to_images_after_a_free_rejection(env, fake, run, behaviour, why):
    fake.queue("/codex/responses", behaviour)
    result = run("a fox", "--json")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES, GENERATIONS]
    lines = switch_lines(result.err)
    assert len(lines) == 1, result.err
    assert "images" in lines[0] and why in lines[0]
    assert result.json["route"] == "images"
    assert [image["route"] for image in result.json["images"]] == ["images"]
    saved = env.work / result.json["images"][0]["path"]
    assert saved.read_bytes() == fake.images_sent[0]
    assert len(fake.images_sent) == 1


def test_auto_fallback_of_an_edit_goes_to_images_edits_with_the_same_images(env, fake, run, pictures):
    fake.queue("/codex/responses", text_only("No."))
    result = run("make it night", "-i", "a.png", "--mask", "mask.png")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES, EDITS]
    first, second = fake.requests
    assert first.input_images() == second.input_images() == [pictures["a.png"]]
    assert first.mask() == second.mask() == pictures["mask.png"]
    assert len(switch_lines(result.err)) == 1


def test_auto_when_neither_route_gives_an_image_is_exit_6(env, fake, run):
    fake.queue("/codex/responses", text_only("I only talk."))
    fake.queue("/images/generations", text_only())
    result = run("a fox", "--json")
    assert result.code == 6, result
    assert paths(fake) == [RESPONSES, GENERATIONS]
    assert result.json["ok"] is False and result.json["error"]["kind"] == "no_image"
    assert list((env.work).rglob("*.png")) == []


def test_auto_without_trouble_stays_on_responses(env, fake, run):
    result = run("a fox", "--json")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES]
    assert result.json["route"] == "responses"
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
], ids=["403-html", "429-usage-limit", "content-policy", "500", "502", "error-event",
        "400-prompt", "429-rate-limit", "insufficient-quota", "stall"])
def test_auto_does_not_fall_back(env, fake, run, behaviour, argv, code):
    fake.queue("/codex/responses", behaviour)
    result = run("a fox", *argv)
    assert result.code == code, result
    assert paths(fake) == [RESPONSES]
    assert switch_lines(result.err) == []
    assert list((env.work).rglob("*.png")) == []


def test_auto_does_not_fall_back_after_a_400_about_the_images(env, fake, run, pictures):
    fake.queue("/codex/responses", detail("Invalid image: the file could not be decoded."))
    result = run("make it night", "-i", "a.png")
    assert result.code in (2, 5), result
    assert paths(fake) == [RESPONSES]
    assert switch_lines(result.err) == []


def test_auto_does_not_fall_back_after_a_401_that_survives_a_refresh(env, fake, run):
    refused = {"error": {"message": "Unauthorized", "code": "token_expired"}}
    fake.queue("/codex/responses", status(401, refused), status(401, refused))
    result = run("a fox")
    assert result.code == 3, result
    assert fake.auth.refresh_count == 1
    assert codex_paths(fake) == [RESPONSES, RESPONSES]  # the first try, and one after the refresh
    assert switch_lines(result.err) == []


def test_auto_does_not_fall_back_after_a_json_403_that_survives_a_refresh(env, fake, run):
    refused = {"error": {"message": "You do not have access to this resource."}}
    fake.queue("/codex/responses", status(403, refused), status(403, refused))
    result = run("a fox")
    assert result.code == 3, result
    assert fake.auth.refresh_count == 1  # exit 3 is "a 401/403 that survives one refresh"
    assert codex_paths(fake) == [RESPONSES, RESPONSES]
    assert switch_lines(result.err) == []
    assert list((env.work).rglob("*.png")) == []


def test_a_json_403_is_cured_by_one_refresh(env, fake, run):
    fake.queue("/codex/responses", status(403, {"error": {"message": "Forbidden"}}))
    result = run("a fox")
    assert result.code == 0, result
    assert fake.auth.refresh_count == 1
    assert codex_paths(fake) == [RESPONSES, RESPONSES]
    assert (env.work / result.lines[0]).read_bytes() == fake.images_sent[-1]


def test_explicit_route_responses_never_falls_back(env, fake, run):
    fake.queue("/codex/responses", text_only("No."))
    result = run("a fox", "--route", "responses")
    assert result.code == 6, result
    assert "No." in result.err
    assert paths(fake) == [RESPONSES]


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
    assert tool["input_fidelity"] == "high"
    assert (env.work / GENERATED / "make-it-night.png").read_bytes() == fake.images_sent[0]


def test_responses_edit_without_action_or_fidelity_leaves_them_out(env, fake, run, pictures):
    result = run("make it night", "-i", "c.webp")
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
    assert paths(fake) == ["/files/ref.png", RESPONSES]
    image_url = fake.last_request.json["input"][0]["content"][0]["image_url"]
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


def test_more_than_5_images_with_a_transparent_background_is_refused(env, fake, run, pictures):
    images = [arg for _ in range(6) for arg in ("-i", "a.png")]
    result = run("x", "--background", "transparent", *images)
    assert result.code == 2, result
    assert codex_paths(fake) == []
    assert "5" in result.err


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
    assert requests[0]["url"] == fake.codex_base_url + "/responses"
    image_url = requests[0]["body"]["input"][0]["content"][0]["image_url"]
    assert image_url.startswith("data:image/png;base64,")
    assert f"<base64: {len(pictures['a.png'])} bytes>" in image_url


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
    fake.queue("/codex/responses", status(404, {"detail": "Not Found"}))
    result = run("a fox", "-n", "3", "--parallel", "1")
    assert result.code == 0, result
    assert paths(fake) == [RESPONSES, GENERATIONS, GENERATIONS, GENERATIONS]
    assert len(switch_lines(result.err)) == 1
    assert len(result.lines) == 3

"""The three other backends against the fake server: gateway, responses, api.

Each test runs imagegen in-process (the `run` fixture) and asserts what a user would notice:
the saved bytes (compared with what the fake sent), the exit code, the message, and what
reached the server. Secrets the tests make up are added to env.secrets, so the autouse scan
fails any test whose output holds one.
"""
from __future__ import annotations

import email.parser
import importlib.util
import email.policy
import json
import re
import socket
from pathlib import Path

import pytest

from fakeserver import (decode_data_url, echo_secrets, jpeg_bytes, make_secret, ok, png_bytes, status,
                        text_only)

# Headers that belong to the Codex backend's conversation and must never reach other hosts.
CODEX_ONLY_HEADERS = ("ChatGPT-Account-ID", "originator", "version", "session_id", "session-id",
                      "thread-id", "x-client-request-id", "OpenAI-Beta")


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def saved_files(env) -> list[Path]:
    return sorted(p for p in env.work.rglob("*") if p.is_file())


def saved_bytes(env, result) -> list[bytes]:
    """The bytes of the files whose paths the run printed, in order."""
    return [(env.work / line).read_bytes() for line in result.lines]


def decoy(env, prefix: str = "decoy-") -> str:
    """A made-up secret that must be neither used nor printed."""
    value = make_secret(prefix)
    env.secrets.add(value)
    return value


def prompt_text(request) -> str:
    """The text of a chat completion request's user message."""
    content = request.json["messages"][0]["content"]
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in content if part.get("type") == "text")


def write_refs(env) -> tuple[Path, Path, Path]:
    """Two reference images (a PNG and a JPEG) and a mask the size of the first."""
    first, second, mask = env.work / "ref-a.png", env.work / "ref-b.jpg", env.work / "mask.png"
    first.write_bytes(png_bytes(64, 48, color=(10, 200, 30)))
    second.write_bytes(jpeg_bytes(32, 32))
    mask.write_bytes(png_bytes(64, 48, rgba=True))
    return first, second, mask


def dry_run_requests(result) -> list[dict]:
    assert result.code == 0, result
    return result.json["requests"]


# Gateway ####################################################################################

@pytest.fixture
def gateway(env, fake):
    """A gateway whose token is a secret (in CODEX_API_TOKEN), at CODEX_API_BASE_URL."""
    fake.gateway_token = make_secret("gw-")
    env.set(CODEX_API_BASE_URL=fake.url, CODEX_API_TOKEN=fake.gateway_token)
    return fake


@pytest.mark.parametrize("where", ["env", "file", "default"])
def test_gateway_token_lookup_order(env, fake, run, where):
    """CODEX_API_TOKEN, then $XDG_CONFIG_HOME/codex-api/token, then "devtoken"; a lower place
    is never used when a higher one has a token."""
    env.set(CODEX_API_BASE_URL=fake.url)
    if where == "env":
        fake.gateway_token = make_secret("gw-")
        env.set(CODEX_API_TOKEN=fake.gateway_token)
        env.write_gateway_files(token=decoy(env))
    elif where == "file":
        fake.gateway_token = make_secret("gw-")
        env.write_gateway_files(token=fake.gateway_token)
    else:
        assert fake.gateway_token == "devtoken"
    result = run("a red circle", "--backend", "gateway", "--retries", "0")
    assert result.code == 0, result
    assert [r.bearer for r in fake.requests_to("/chat/completions")] == [fake.gateway_token]
    assert saved_bytes(env, result) == fake.images_sent


@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_gateway_url_lookup_order(env, fake, run, where):
    """--base-url, then CODEX_API_BASE_URL, then $XDG_CONFIG_HOME/codex-api/base_url; the lower
    places point at a closed port, so using one of them would fail."""
    nowhere = closed_port_url()
    argv = ["a red circle", "--backend", "gateway", "--retries", "0"]
    if where == "flag":
        argv += ["--base-url", fake.url]
        env.set(CODEX_API_BASE_URL=nowhere)
        env.write_gateway_files(base_url=nowhere)
    elif where == "env":
        env.set(CODEX_API_BASE_URL=fake.url)
        env.write_gateway_files(base_url=nowhere)
    else:
        env.write_gateway_files(base_url=fake.url + "/v1")  # a base ending in /v1 is accepted
    result = run(*argv)
    assert result.code == 0, result
    assert len(fake.requests_to("/v1/chat/completions")) == 1
    assert saved_bytes(env, result) == fake.images_sent


def test_gateway_default_url_and_token_in_dry_run(env, fake, run):
    """With nothing configured the gateway is http://127.0.0.1:8000 (seen in --dry-run; nothing
    is sent)."""
    result = run("a red circle", "--backend", "gateway", "--dry-run")
    (request,) = dry_run_requests(result)
    assert request["method"] == "POST"
    assert request["url"] == "http://127.0.0.1:8000/v1/chat/completions"
    assert request["headers"]["Authorization"].startswith("Bearer ")
    assert fake.requests == []


def test_gateway_request_shape(env, gateway, run):
    """POST {base}/v1/chat/completions, Bearer token, a non-Python User-Agent (a CDN blocks
    Python-urllib), stream false, the prompt with size and format in its text, and the
    reference images as image_url parts."""
    gateway.block_python_user_agent = True
    first, second, _ = write_refs(env)
    result = run("a lighthouse at dusk", "--backend", "gateway", "--size", "1024x1536",
                 "--format", "webp", "-i", first, "-i", second, "--retries", "0")
    assert result.code == 0, result
    (request,) = gateway.requests_to("/chat/completions")
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.bearer == gateway.gateway_token
    agent = request.header("User-Agent") or ""
    assert agent.startswith("codex-imagegen/") and not agent.startswith("Python-urllib")
    body = request.json
    assert body["stream"] is False
    (message,) = body["messages"]
    assert message["role"] == "user"
    text = prompt_text(request)
    assert "a lighthouse at dusk" in text
    assert "1024x1536" in text and "webp" in text
    parts = [p for p in message["content"] if p.get("type") == "image_url"]
    decoded = [decode_data_url(p["image_url"]["url"]) for p in parts]
    assert [d[1] for d in decoded] == [first.read_bytes(), second.read_bytes()]
    assert [d[0] for d in decoded] == ["image/png", "image/jpeg"]
    for header in CODEX_ONLY_HEADERS:
        assert request.header(header) is None, header
    # the gateway sent a PNG for the WebP asked: converted (Pillow), never PNG bytes in .webp
    (saved,) = saved_bytes(env, result)
    assert gateway.images_sent[0][:8] == b"\x89PNG\r\n\x1a\n"
    if importlib.util.find_spec("PIL") is not None:
        assert saved[:4] == b"RIFF" and saved[8:12] == b"WEBP"
        assert "converted png to webp" in result.err
    else:
        assert saved == gateway.images_sent[0] and result.lines[0].endswith(".png")


def test_gateway_transparent_background_is_asked_for_in_the_prompt(env, gateway, run):
    """The gateway takes no image options, so transparency can only be asked for in the prompt
    text (PROTOCOL.md): a flat key colour, removed from the answer here; a run without
    --background transparent asks for no such thing (test_exact.py has the pixels)."""
    result = run("a teapot", "--backend", "gateway", "--background", "transparent", "--retries", "0")
    assert result.code == 0, result
    (request,) = gateway.requests_to("/chat/completions")
    text = prompt_text(request)
    assert "a teapot" in text and "chroma-key colour" in text, text
    (path,) = result.lines
    assert imagegen.has_transparency((env.work / path).read_bytes())
    plain = run("a teapot", "--backend", "gateway", "--retries", "0")
    assert plain.code == 0, plain
    asked = prompt_text(gateway.last_request).lower()
    assert "chroma" not in asked and "transparent" not in asked, asked


def test_gateway_without_prompt_options_asks_nothing_odd(env, gateway, run):
    """Without -i the message content is the prompt text (a plain string or text parts)."""
    result = run("a plain square", "--backend", "gateway")
    assert result.code == 0, result
    (request,) = gateway.requests_to("/chat/completions")
    assert "a plain square" in prompt_text(request)
    content = request.json["messages"][0]["content"]
    assert isinstance(content, str) or all(p.get("type") == "text" for p in content)


@pytest.mark.parametrize("content", ["markdown", "list", "bare"])
def test_gateway_answer_shapes(env, gateway, run, content):
    """The image is found as a data URI in markdown text, in a list of parts, or bare."""
    gateway.queue("/chat/completions", ok(content=content))
    result = run("a blue square", "--backend", "gateway", "-o", "out/square.png")
    assert result.code == 0, result
    assert result.lines == ["out/square.png"]
    assert (env.work / "out" / "square.png").read_bytes() == gateway.images_sent[0]
    assert len(gateway.images_sent) == 1


def test_gateway_count_sends_one_request_per_image(env, gateway, run):
    result = run("a green square", "--backend", "gateway", "-n", "2", "--parallel", "1")
    assert result.code == 0, result
    assert len(gateway.requests_to("/chat/completions")) == 2
    assert sorted(saved_bytes(env, result)) == sorted(gateway.images_sent)


@pytest.mark.parametrize("behaviour", [text_only("I cannot draw right now."), ok(content="text")])
def test_gateway_text_only_answer_is_exit_6_with_the_switch(env, gateway, run, behaviour):
    gateway.queue("/chat/completions", behaviour)
    result = run("a cat", "--backend", "gateway", "--retries", "0")
    assert result.code == 6, result
    assert "CODEX_ENABLE_IMAGE_GEN=1" in result.err
    assert saved_files(env) == []


def test_gateway_text_only_shows_the_models_text(env, gateway, run):
    gateway.queue("/chat/completions", text_only("I cannot draw right now."))
    result = run("a cat", "--backend", "gateway", "--retries", "0", "--json")
    assert result.code == 6, result
    error = result.json["error"]
    assert error["kind"] == "no_image" and error["exit_code"] == 6
    assert "I cannot draw right now." in error["message"]
    assert "CODEX_ENABLE_IMAGE_GEN=1" in error["message"]


def test_gateway_not_running_says_how_to_start_it(env, fake, run):
    result = run("a cat", "--backend", "gateway", "--base-url", closed_port_url(),
                 "--retries", "0")
    assert result.code == 5, result
    assert "agent-cli-to-api" in result.err
    assert saved_files(env) == []


def test_gateway_not_running_json_error(env, fake, run):
    result = run("a cat", "--backend", "gateway", "--base-url", closed_port_url(),
                 "--retries", "0", "--json")
    assert result.code == 5, result
    error = result.json["error"]
    assert error["kind"] == "backend" and "agent-cli-to-api" in error["message"]


def test_gateway_wrong_token_is_exit_3(env, gateway, run):
    env.set(CODEX_API_TOKEN=decoy(env, "gw-"))
    result = run("a cat", "--backend", "gateway", "--retries", "0")
    assert result.code == 3, result
    assert result.out == "" and "refused the login (HTTP 401)" in result.err
    assert saved_files(env) == []


def test_gateway_secret_token_never_printed_even_when_echoed(env, gateway, run):
    """The gateway echoes the Authorization header in its error: the token is still hidden
    (the autouse scan checks both streams)."""
    gateway.queue("/chat/completions", echo_secrets(code=500, in_header=True))
    result = run("a cat", "--backend", "gateway", "--retries", "0")
    assert result.code == 5, result
    assert gateway.gateway_token not in result.err + result.out
    (request,) = gateway.requests_to("/chat/completions")
    assert request.bearer == gateway.gateway_token


def test_gateway_dry_run_redacts_the_token(env, gateway, run):
    result = run("a cat", "--backend", "gateway", "--dry-run")
    (request,) = dry_run_requests(result)
    assert request["url"] == gateway.url + "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer ***"
    assert gateway.gateway_token not in result.out
    assert gateway.requests == []


# Responses provider #########################################################################

PROVIDER_CONFIG = """\
# Codex's config, as a user would write it
model = "gpt-5.5"
model_provider = "x"   # the provider below

[model_providers.x]
name = "X"
base_url = "{base}"
env_key = "X_KEY"
wire_api = "responses"
"""


@pytest.fixture
def provider(env, fake):
    env.write_codex_config(PROVIDER_CONFIG.format(base=fake.api_base_url))
    return fake


def test_responses_provider_from_config_toml(env, provider, run):
    env.set(X_KEY=provider.provider_key)
    result = run("a yellow star", "--backend", "responses", "--size", "1024x1024")
    assert result.code == 0, result
    (request,) = provider.requests
    assert request.method == "POST" and request.path == "/v1/responses"
    assert request.bearer == provider.provider_key
    for header in CODEX_ONLY_HEADERS:
        assert request.header(header) is None, header
    body = request.json
    assert body["stream"] is True and body["store"] is False
    assert body["model"] == "gpt-5.5"
    (tool,) = body["tools"]
    assert tool["type"] == "image_generation" and tool["size"] == "1024x1024"
    (message,) = body["input"]
    texts = [c["text"] for c in message["content"] if c["type"] == "input_text"]
    assert texts == ["a yellow star"]
    assert saved_bytes(env, result) == provider.images_sent


def test_responses_sends_reference_images_and_mask(env, provider, run):
    env.set(X_KEY=provider.provider_key)
    first, second, mask = write_refs(env)
    result = run("make it blue", "--backend", "responses", "-i", first, "-i", second,
                 "--mask", mask)
    assert result.code == 0, result
    (request,) = provider.requests_to("/v1/responses")
    assert request.input_images() == [first.read_bytes(), second.read_bytes()]
    assert request.mask() == mask.read_bytes()
    assert saved_bytes(env, result) == provider.images_sent


def test_responses_key_from_auth_json_when_the_variable_is_unset(env, provider, run):
    """An API-key-mode auth.json (as `codex login --with-api-key` writes it) gives the key."""
    env.write_auth(doc={"auth_mode": "apikey", "OPENAI_API_KEY": provider.provider_key,
                        "tokens": None, "last_refresh": None})
    env.set(X_KEY=None)
    result = run("a yellow star", "--backend", "responses")
    assert result.code == 0, result
    assert [r.bearer for r in provider.requests] == [provider.provider_key]
    assert saved_bytes(env, result) == provider.images_sent


def test_responses_variable_wins_over_auth_json(env, provider, run):
    env.write_auth(doc={"auth_mode": "apikey", "OPENAI_API_KEY": decoy(env, "sk-"),
                        "tokens": None})
    env.set(X_KEY=provider.provider_key)
    result = run("a yellow star", "--backend", "responses")
    assert result.code == 0, result
    assert [r.bearer for r in provider.requests] == [provider.provider_key]


def test_responses_openai_base_url_for_the_builtin_provider(env, fake, run):
    env.write_codex_config(f'openai_base_url = "{fake.api_base_url}"\nmodel = "gpt-5.5"\n')
    env.set(OPENAI_API_KEY=fake.provider_key)
    result = run("a yellow star", "--backend", "responses")
    assert result.code == 0, result
    (request,) = fake.requests
    assert request.path == "/v1/responses" and request.bearer == fake.provider_key
    assert request.header("ChatGPT-Account-ID") is None
    assert saved_bytes(env, result) == fake.images_sent


def test_responses_base_url_flag_overrides_the_config(env, fake, run):
    env.write_codex_config(PROVIDER_CONFIG.format(base=closed_port_url() + "/v1"))
    env.set(X_KEY=fake.provider_key)
    result = run("a yellow star", "--backend", "responses", "--base-url", fake.api_base_url,
                 "--retries", "0")
    assert result.code == 0, result
    assert len(fake.requests_to("/v1/responses")) == 1


def test_responses_401_from_the_provider_is_exit_3(env, provider, run):
    env.set(X_KEY=decoy(env, "sk-"))
    result = run("a yellow star", "--backend", "responses", "--retries", "0")
    assert result.code == 3, result
    assert "HTTP 401" in result.err and "Incorrect API key provided." in result.err
    assert len(provider.requests) == 1  # no refresh dance for an API key
    assert saved_files(env) == []


def test_responses_missing_key_names_the_variable(env, provider, run):
    env.set(X_KEY=None)
    result = run("a yellow star", "--backend", "responses", "--json")
    assert result.code == 3, result
    assert result.json["error"]["kind"] == "auth"
    assert "X_KEY" in result.json["error"]["message"]
    assert "X_KEY" in result.err
    assert provider.requests == []


def test_responses_provider_without_a_table_is_a_usage_error(env, fake, run):
    env.write_codex_config('model_provider = "nowhere"\n\n[model_providers.other]\n'
                           f'base_url = "{fake.api_base_url}"\n')
    env.set(X_KEY=fake.provider_key)
    result = run("a yellow star", "--backend", "responses")
    assert result.code == 2, result
    assert "nowhere" in result.err
    assert fake.requests == []


def test_responses_model_flag_and_image_model(env, provider, run):
    env.set(X_KEY=provider.provider_key)
    result = run("a yellow star", "--backend", "responses", "--model", "host-model-1",
                 "--image-model", "gpt-image-1", "--size", "1024x1536")
    assert result.code == 0, result
    body = provider.last_request.json
    assert body["model"] == "host-model-1"
    assert body["tools"][0]["model"] == "gpt-image-1"


def test_responses_dry_run_redacts_the_key(env, provider, run):
    env.set(X_KEY=provider.provider_key)
    result = run("a yellow star", "--backend", "responses", "--dry-run")
    (request,) = dry_run_requests(result)
    assert request["url"] == provider.api_base_url + "/responses"
    assert request["headers"]["Authorization"] == "Bearer ***"
    assert provider.provider_key not in result.out
    assert provider.requests == []


# Images API #################################################################################

@pytest.fixture
def openai_key(env):
    """A distinctive OPENAI_API_KEY in the environment and in auth.json: never to be sent."""
    key = decoy(env, "sk-openai-")
    env.set(OPENAI_API_KEY=key)
    return key


def assert_never_sent(fake, secret: str) -> None:
    for request in fake.requests:
        assert secret not in str(request.headers), request
        assert secret.encode() not in request.body, request


LEVELS = ["flag", "env_config", "env_key", "default_file", "old_file"]


@pytest.mark.parametrize("level", LEVELS)
def test_api_config_lookup_order(env, fake, run, level):
    """--config, IMAGEGEN_API_CONFIG, IMAGEGEN_API_KEY/IMAGEGEN_API_BASE_URL,
    $XDG_CONFIG_HOME/codex-imagegen/config.json, .../gpt-image-2-apikey/config.json: the key at
    `level` is the right one, every lower place holds a wrong one, every higher place is empty."""
    right, argv = fake.api_key, ["a teapot", "--backend", "api", "--retries", "0"]
    places = LEVELS[LEVELS.index(level):]
    for place in places:
        key = right if place == level else decoy(env, "sk-")
        if place == "flag":
            argv += ["--config", env.write_api_config(key, path=env.tmp / "chosen.json")]
        elif place == "env_config":
            env.set(IMAGEGEN_API_CONFIG=env.write_api_config(key, path=env.tmp / "named.json"))
        elif place == "env_key":
            env.set(IMAGEGEN_API_KEY=key, IMAGEGEN_API_BASE_URL=fake.api_base_url)
        elif place == "default_file":
            env.write_api_config(key)
        else:
            env.write_api_config(key, path=env.config_home / "gpt-image-2-apikey" / "config.json")
    result = run(*argv)
    assert result.code == 0, result
    assert [r.bearer for r in fake.requests] == [right]
    assert saved_bytes(env, result) == fake.images_sent


def test_api_named_config_file_wins_over_the_environment_for_the_url_too(env, fake, run):
    """A file named on purpose wins over the environment (README): its key is not sent to the
    environment's base URL."""
    path = env.write_api_config(fake.api_key, base_url=fake.api_base_url,
                                path=env.tmp / "chosen.json")
    env.set(IMAGEGEN_API_BASE_URL=closed_port_url() + "/v1", IMAGEGEN_API_KEY=decoy(env, "sk-"))
    result = run("a teapot", "--backend", "api", "--config", path, "--retries", "0")
    assert result.code == 0, result
    assert [r.bearer for r in fake.requests] == [fake.api_key]


def test_api_environment_url_with_the_default_file_key(env, fake, run):
    """The environment wins over the default files: IMAGEGEN_API_BASE_URL with a key from
    ~/.config/codex-imagegen/config.json."""
    env.write_api_config(fake.api_key, base_url=closed_port_url() + "/v1")
    env.set(IMAGEGEN_API_BASE_URL=fake.api_base_url)
    result = run("a teapot", "--backend", "api", "--retries", "0")
    assert result.code == 0, result
    assert [r.bearer for r in fake.requests] == [fake.api_key]


def test_api_missing_named_config_is_a_usage_error(env, fake, run):
    result = run("a teapot", "--backend", "api", "--config", env.tmp / "missing.json")
    assert result.code == 2, result
    assert "missing.json" in result.err
    assert fake.requests == []


def test_api_never_sends_openai_api_key(env, fake, run, openai_key):
    """OPENAI_API_KEY in the environment or in auth.json is never used: even if the server
    would accept it, the run stops with exit 3 before sending anything."""
    fake.api_key = openai_key
    env.write_auth(doc={"auth_mode": "apikey", "OPENAI_API_KEY": openai_key, "tokens": None})
    env.set(IMAGEGEN_API_BASE_URL=fake.api_base_url)
    result = run("a teapot", "--backend", "api", "--retries", "0", "--json")
    assert result.code == 3, result
    assert result.json["error"]["kind"] == "auth"
    assert "IMAGEGEN_API_KEY" in result.json["error"]["message"]
    assert fake.requests == []


def test_api_with_its_own_key_still_never_sends_openai_api_key(env, fake, run, openai_key):
    env.write_api_config(fake.api_key)
    first, _, _ = write_refs(env)
    assert run("a teapot", "--backend", "api").code == 0
    assert run("a teapot on a table", "--backend", "api", "-i", first).code == 0
    assert len(fake.requests) == 2
    assert_never_sent(fake, openai_key)


def test_api_generation_request(env, fake, run):
    env.write_api_config(fake.api_key, model="gpt-image-2")
    result = run("a teapot", "--backend", "api")
    assert result.code == 0, result
    (request,) = fake.requests
    assert request.method == "POST" and request.path == "/v1/images/generations"
    assert request.content_type == "application/json"
    assert request.bearer == fake.api_key
    for header in CODEX_ONLY_HEADERS:
        assert request.header(header) is None, header
    body = request.json
    assert body["model"] == "gpt-image-2" and body["prompt"] == "a teapot" and body["n"] == 1
    for unset in ("size", "quality", "background", "output_compression", "moderation",
                  "input_fidelity"):
        assert unset not in body, unset
    assert saved_bytes(env, result) == fake.images_sent


def test_api_generation_sends_the_options_that_were_set(env, fake, run):
    env.write_api_config(fake.api_key)
    result = run("a teapot", "--backend", "api", "--size", "1536x1024", "--quality", "high",
                 "--background", "opaque", "--format", "webp", "--compression", "80",
                 "--moderation", "low")
    assert result.code == 0, result
    body = fake.last_request.json
    assert body["size"] == "1536x1024" and body["quality"] == "high"
    assert body["background"] == "opaque" and body["output_format"] == "webp"
    assert body["output_compression"] == 80 and body["moderation"] == "low"
    (data,) = saved_bytes(env, result)
    assert data == fake.images_sent[0] and data[8:12] == b"WEBP"


def test_api_model_from_config_and_image_model_flag(env, fake, run):
    env.write_api_config(fake.api_key, model="gpt-image-1.5")
    result = run("a teapot", "--backend", "api", "--json")
    assert result.code == 0, result
    assert fake.last_request.json["model"] == "gpt-image-1.5"
    assert [image["model"] for image in result.json["images"]] == ["gpt-image-1.5"]
    assert run("a teapot", "--backend", "api", "--image-model", "gpt-image-2").code == 0
    assert fake.last_request.json["model"] == "gpt-image-2"


def test_api_count_is_one_request_with_n(env, fake, run):
    env.write_api_config(fake.api_key)
    result = run("a teapot", "--backend", "api", "-n", "3")
    assert result.code == 0, result
    (request,) = fake.requests
    assert request.json["n"] == 3
    assert len(result.lines) == 3 and len(set(result.lines)) == 3
    assert saved_bytes(env, result) == fake.images_sent
    assert len(fake.images_sent) == 3


def test_api_answer_with_fewer_images_than_asked_keeps_them_and_says_how_many_came(env, fake, run):
    """-n 3 answered with 2 images: both are saved and printed, the run ends with exit 6 and
    a message naming how many came, and the request is not sent again."""
    env.write_api_config(fake.api_key)
    fake.queue("/v1/images/generations", ok(n=2))
    result = run("a teapot", "--backend", "api", "-n", "3", "--retries", "2")
    assert result.code == 6, result
    assert len(fake.requests) == 1 and fake.last_request.json["n"] == 3
    assert result.lines == ["assets/generated/a-teapot.png", "assets/generated/a-teapot-2.png"]
    assert saved_bytes(env, result) == fake.images_sent and len(fake.images_sent) == 2
    assert saved_files(env) == sorted(env.work / line for line in result.lines)
    (line,) = [text for text in result.err.splitlines() if text.startswith("imagegen: error: ")]
    assert re.search(r"asked for 3 images.*\b2\b", line), line


def test_api_answer_with_fewer_images_than_asked_in_json(env, fake, run):
    env.write_api_config(fake.api_key)
    fake.queue("/v1/images/generations", ok(n=2))
    result = run("a teapot", "--backend", "api", "-n", "3", "--json")
    assert result.code == 6, result
    payload = result.json
    assert payload["ok"] is False
    assert payload["error"]["kind"] == "no_image" and payload["error"]["exit_code"] == 6
    assert re.search(r"asked for 3 images.*\b2\b", payload["error"]["message"])
    paths = [image["path"] for image in payload["images"]]
    assert paths == ["assets/generated/a-teapot.png", "assets/generated/a-teapot-2.png"]
    assert [(env.work / path).read_bytes() for path in paths] == fake.images_sent


@pytest.mark.parametrize("code, said", [
    ("moderation_blocked", "Your request was rejected by the safety system."),
    ("image_content_policy_violation", "This request has been blocked by our content filters."),
], ids=["moderation-blocked", "policy-code-only"])
def test_api_content_policy_400_is_exit_6_with_the_servers_words_and_not_retried(
        env, fake, run, code, said):
    env.write_api_config(fake.api_key)
    fake.queue("/v1/images/generations", status(400, {"error": {
        "message": said, "type": "image_generation_user_error", "code": code, "param": None}}))
    result = run("a teapot", "--backend", "api", "--retries", "3")
    assert result.code == 6, result
    assert result.out == ""
    (line,) = [text for text in result.err.splitlines() if text.startswith("imagegen: error: ")]
    assert "content policy" in line and said in line
    assert len(fake.requests) == 1
    assert saved_files(env) == []


def test_api_extra_body_is_merged_last(env, fake, run):
    env.write_api_config(fake.api_key, extra_body={"quality": "low", "user": "me-123",
                                                   "partner": {"tier": 2}})
    result = run("a teapot", "--backend", "api", "--quality", "high")
    assert result.code == 0, result
    body = fake.last_request.json
    assert body["quality"] == "low"  # extra_body overrides the option
    assert body["user"] == "me-123" and body["partner"] == {"tier": 2}
    assert body["prompt"] == "a teapot"


def parse_form(request) -> list:
    """The multipart body parsed by the standard library's MIME parser (independently of the
    fake's own parser): a list of email.message.Message parts."""
    head = f"Content-Type: {request.header('Content-Type')}\r\nMIME-Version: 1.0\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        head.encode("latin-1") + request.body)
    assert message.is_multipart(), request.header("Content-Type")
    assert not message.defects, message.defects
    return list(message.iter_parts())


def test_api_edit_is_multipart_with_images_and_mask(env, fake, run):
    env.write_api_config(fake.api_key, extra_body={"user": "me-123"})
    first, second, mask = write_refs(env)
    result = run("put a hat on it", "--backend", "api", "-i", first, "-i", second,
                 "--mask", mask, "--size", "1024x1024", "--input-fidelity", "high")
    assert result.code == 0, result
    (request,) = fake.requests
    assert request.method == "POST" and request.path == "/v1/images/edits"
    assert request.content_type == "multipart/form-data"
    assert request.bearer == fake.api_key
    parts = parse_form(request)
    files = [(p.get_param("name", header="content-disposition"), p.get_filename(),
              p.get_content_type(), p.get_payload(decode=True)) for p in parts if p.get_filename()]
    fields = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
              .decode("utf-8") for p in parts if not p.get_filename()}
    assert [f[0] for f in files] == ["image[]", "image[]", "mask"]
    assert [f[3] for f in files] == [first.read_bytes(), second.read_bytes(), mask.read_bytes()]
    assert [f[2] for f in files] == ["image/png", "image/jpeg", "image/png"]
    assert all(f[1] for f in files)
    assert fields["prompt"] == "put a hat on it"
    assert fields["model"] == "gpt-image-2"
    assert fields["n"] == "1"
    assert fields["size"] == "1024x1024"
    assert fields["input_fidelity"] == "high"
    assert fields["user"] == "me-123"
    assert "quality" not in fields and "background" not in fields
    # the fake's byte-exact parser agrees
    assert request.input_images() == [first.read_bytes(), second.read_bytes()]
    assert request.mask() == mask.read_bytes()
    assert saved_bytes(env, result) == fake.images_sent


def test_api_edit_from_url_reference(env, fake, run):
    env.write_api_config(fake.api_key)
    picture = png_bytes(40, 40, color=(1, 2, 3))
    url = fake.add_file("ref.png", picture)
    result = run("put a hat on it", "--backend", "api", "-i", url)
    assert result.code == 0, result
    (edit,) = fake.requests_to("/images/edits")
    assert edit.input_images() == [picture]


@pytest.mark.parametrize("how", ["knob", "behaviour"])
def test_api_url_answers_are_downloaded(env, fake, run, how):
    env.write_api_config(fake.api_key)
    if how == "knob":
        fake.api_answer_url = True
    else:
        fake.queue("/images/generations", ok(url=True, n=2))
    result = run("a teapot", "--backend", "api", "-n", "2")
    assert result.code == 0, result
    assert len(fake.requests_to("/images/generations")) == 1
    downloads = [r for r in fake.requests if r.path.startswith("/files/")]
    assert len(downloads) == 2 and all(r.method == "GET" for r in downloads)
    assert all(r.bearer is None for r in downloads)  # the key is not sent to the download host
    assert saved_bytes(env, result) == fake.images_sent


def test_api_config_readable_by_others_draws_a_warning(env, fake, run):
    path = env.write_api_config(fake.api_key, mode=0o644)
    result = run("a teapot", "--backend", "api")
    assert result.code == 0, result
    assert str(path) in result.err and "chmod 600" in result.err
    assert result.lines == [line for line in result.out.splitlines() if line]  # stdout: paths


def test_api_private_config_draws_no_warning(env, fake, run):
    path = env.write_api_config(fake.api_key, mode=0o600)
    result = run("a teapot", "--backend", "api")
    assert result.code == 0, result
    assert str(path) not in result.err and "chmod" not in result.err


def test_api_401_is_exit_3(env, fake, run):
    env.write_api_config(decoy(env, "sk-"))
    result = run("a teapot", "--backend", "api", "--retries", "0", "--json")
    assert result.code == 3, result
    assert result.json["error"]["kind"] == "auth"
    assert len(fake.requests) == 1
    assert saved_files(env) == []


def test_api_dry_run_redacts_the_key(env, fake, run):
    env.write_api_config(fake.api_key)
    first, _, mask = write_refs(env)
    result = run("a teapot", "--backend", "api", "-i", first, "--mask", mask, "--dry-run")
    (request,) = dry_run_requests(result)
    assert request["url"] == fake.api_base_url + "/images/edits"
    assert request["headers"]["Authorization"] == "Bearer ***"
    assert fake.api_key not in result.out
    assert fake.requests == []


# --dry-run everywhere #######################################################################

@pytest.mark.parametrize("backend", ["codex", "gateway", "responses", "api"])
def test_dry_run_redacts_every_secret(env, fake, run, backend):
    """Each backend's --dry-run shows the request with the credential as ***, sends nothing."""
    fake.gateway_token = make_secret("gw-")
    env.set(CODEX_API_TOKEN=fake.gateway_token, CODEX_API_BASE_URL=fake.url,
            X_KEY=fake.provider_key, IMAGEGEN_API_KEY=fake.api_key,
            IMAGEGEN_API_BASE_URL=fake.api_base_url)
    env.write_codex_config(PROVIDER_CONFIG.format(base=fake.api_base_url))
    result = run("a dry teapot", "--backend", backend, "--dry-run", "-n", "2")
    requests = dry_run_requests(result)
    assert requests
    for request in requests:
        assert request["headers"]["Authorization"] == "Bearer ***"
        assert "a dry teapot" in json.dumps(request["body"])
    for secret in fake.secrets | env.auth_secrets():
        assert secret not in result.out and secret not in result.err
    assert fake.requests == []


def test_api_sends_no_output_format_to_a_dall_e_model_unless_asked(env, fake, run):
    env.write_api_config(api_key=fake.api_key)
    result = run("a fox", "--backend", "api", "--image-model", "dall-e-3", "--size", "1024x1024")
    assert result.code == 0, result
    assert "output_format" not in fake.requests_to("/v1/images/generations")[-1].json
    result = run("a fox", "--backend", "api", "--image-model", "dall-e-3", "--size", "1024x1024",
                 "--format", "png")
    assert fake.requests_to("/v1/images/generations")[-1].json["output_format"] == "png"
    default = run("a fox", "--backend", "api")
    assert default.code == 0, default
    assert fake.requests_to("/v1/images/generations")[-1].json["output_format"] == "png"


# the codex backend: quota, live usage, answers of the token endpoint ########################

import http.client  # noqa: E402

import imagegen  # noqa: E402
from fakeserver import refresh_error  # noqa: E402


def _message(pairs: dict) -> http.client.HTTPMessage:
    message = http.client.HTTPMessage()
    for name, value in pairs.items():
        message[name] = value
    return message


def test_every_quota_family_is_read_the_image_limit_first_and_empty_windows_hidden():
    now = 1_800_000_000
    quota = imagegen.quota_from_headers(_message({
        "x-codex-primary-used-percent": "12", "x-codex-primary-window-minutes": "300",
        "x-codex-primary-reset-after-seconds": "600",
        "x-codex-secondary-used-percent": "0", "x-codex-secondary-window-minutes": "0",
        "x-image-gen-primary-used-percent": "34", "x-image-gen-primary-window-minutes": "1440",
        "x-image-gen-primary-reset-at": str(now + 7200), "x-image-gen-limit-name": "image_gen",
        "x-codex-active-limit": "image_gen", "x-codex-plan-type": "plus",
    }), now)
    assert quota == {"windows": [
        {"limit": "image_gen", "name": "primary", "used_percent": 34.0, "window_minutes": 1440,
         "resets_at": now + 7200},
        {"limit": "codex", "name": "primary", "used_percent": 12.0, "window_minutes": 300,
         "resets_at": now + 600},
    ], "active_limit": "image_gen", "plan_type": "plus"}
    line = imagegen.describe_quota(quota, now)
    assert line == "images daily: 34% used, resets in 2h 0m; codex 5-hour: 12% used, resets in 10m"


def test_the_codex_family_is_the_image_limit_when_the_server_says_so():
    # live, the images route sends only x-codex-* with x-codex-active-limit: imagegen_premium
    quota = imagegen.quota_from_headers({
        "x-codex-primary-used-percent": "40", "x-codex-primary-window-minutes": "1440",
        "x-codex-secondary-used-percent": "0", "x-codex-secondary-window-minutes": "0",
        "x-codex-active-limit": "imagegen_premium"}, 0)
    assert [(w["limit"], w["name"]) for w in quota["windows"]] == [("imagegen_premium", "primary")]
    assert imagegen.describe_quota(quota, 0) == "daily: 40% used"


def test_a_quota_line_never_passes_100_columns():
    now = 1_800_000_000
    windows = [{"limit": name, "name": which, "used_percent": 99.5, "window_minutes": minutes,
                "resets_at": now + 300_000}
               for name in ("image_gen", "codex", "codex_other_model_with_a_long_name")
               for which, minutes in (("primary", 300), ("secondary", 10080))]
    line = "imagegen: quota: " + imagegen.describe_quota({"windows": windows}, now)
    assert len(line) <= 100, line
    assert line.startswith("imagegen: quota: images 5-hour: 99.5% used") and "more)" in line


@pytest.mark.parametrize("seconds, span", [
    (86400 + 60, "24h 1m"),
    (2 * 86400 - 60, "47h 59m"),   # under two days: still in hours
    (2 * 86400, "2d 0h"),          # two days or more: in days
    (6 * 86400 + 23 * 3600, "6d 23h"),
])
def test_the_quota_line_tells_a_reset_in_hours_under_two_days(seconds, span):
    now = 1_800_000_000
    quota = {"windows": [{"limit": "image_gen", "name": "secondary", "used_percent": 3.0,
                          "window_minutes": 10080, "resets_at": now + seconds}]}
    assert imagegen.describe_quota(quota, now) == f"weekly: 3% used, resets in {span}"


def test_the_run_ends_with_the_image_limit_first_in_one_short_line(env, fake, run):
    result = run("a fox", "-o", "fox.png")
    assert result.code == 0, result
    (line,) = [text for text in result.err.splitlines() if "quota:" in text]
    assert line.startswith("imagegen: quota: images daily: 34% used, resets in ")
    assert len(line) <= 100 and "0% used" not in line  # the 0-minute window is hidden
    as_json = run("a fox", "-o", "fox2.png", "--json")
    quota = as_json.json["quota"]
    assert quota["windows"][0]["limit"] == "image_gen" and quota["active_limit"] == "image_gen"
    assert quota["plan_type"] == "plus"
    assert all(w["window_minutes"] != 0 for w in quota["windows"])


def test_auth_status_reads_the_live_usage_without_spending_quota(env, fake, run):
    shown = run("auth", "status")
    assert shown.code == 0, shown
    lines = shown.out.splitlines()
    first = next(i for i, text in enumerate(lines) if text.startswith("usage (live):"))
    usage = lines[first:first + 3]  # one window a line, the image limit first
    assert "images daily: 34% used" in usage[0]
    assert usage[1].strip().startswith("codex 5-hour: 12.5% used") and usage[1].startswith(" " * 22)
    assert usage[2].strip().startswith("codex weekly: 3% used")
    assert all(len(text) <= 100 for text in usage)
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/backend-api/wham/usage")
    assert request.bearer == fake.auth.tokens["access_token"]
    assert request.header("ChatGPT-Account-ID") == fake.auth.account_id
    assert (request.header("User-Agent") or "").startswith("codex-imagegen/")
    assert request.header("version") is None
    as_json = run("auth", "status", "--json")
    usage = as_json.json["usage"]
    assert usage["plan_type"] == "plus"
    assert [w["limit"] for w in usage["windows"]] == ["image_gen", "codex", "codex"]


@pytest.mark.parametrize("problem", ["unreachable", "refused", "expired"])
def test_auth_status_says_when_it_cannot_read_the_live_usage(env, fake, run, problem):
    if problem == "unreachable":
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env.set(IMAGEGEN_CODEX_BASE_URL=f"http://127.0.0.1:{port}/backend-api/codex")
    elif problem == "refused":
        fake.queue("/wham/usage", status(403, {"detail": "nope"}), status(403, {"detail": "nope"}))
    else:
        env.write_auth(expired=True)
    shown = run("auth", "status")
    assert shown.code == 0, shown  # the login itself is usable: status exits on that
    (line,) = [text for text in shown.out.splitlines() if text.startswith("usage (live):")]
    assert ("expired" if problem == "expired" else "could not read it") in line, line
    as_json = run("auth", "status", "--json")
    assert "usage" not in as_json.json and as_json.json["usage_problem"]
    assert fake.auth.refresh_attempts == 0


@pytest.mark.parametrize("answer, why", [
    (status(400, {"error": "invalid_grant", "error_description": "Refresh token not found."}),
     "revoked or has expired"),
    (refresh_error("refresh_token_reused", status_code=400), "already used"),
])
def test_a_refresh_answer_that_ends_the_login_says_log_in_again(env, fake, run, answer, why):
    env.write_auth(expired=True)
    fake.queue("/oauth/token", answer)
    result = run("a fox", "--retries", "3")
    assert result.code == 3, result
    assert len(fake.requests_to("/oauth/token")) == 1  # permanent: never retried
    assert fake.requests_to("/images/generations") == []
    (line,) = [text for text in result.err.splitlines() if "error" in text]
    assert why in line and "log in again" in line


def test_a_key_file_others_can_read_is_warned_of_once_a_run(env, fake, run):
    """The warning about a readable key file comes once, also for -n 2, in a dry run, and when
    the same file then turns out to be unusable (exit 2)."""
    path = env.write_api_config(mode=0o644)
    said = f"imagegen: warning: {path} holds an API key and other users can read it: chmod 600 {path}"
    for argv in (("-n", "2"), ("--dry-run",)):
        result = run("a teapot", "--backend", "api", *argv)
        assert result.code == 0, result
        assert [line for line in result.err.splitlines() if "other users" in line] == [said]
    env.write_api_config(mode=0o644, extra_body="not an object")
    result = run("a teapot", "--backend", "api")
    assert result.code == 2, result
    assert "extra_body" in result.err
    assert [line for line in result.err.splitlines() if "other users" in line] == [said]
    assert len(fake.requests) == 1  # the -n 2 run's one request; nothing after

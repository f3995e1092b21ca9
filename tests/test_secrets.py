"""No secret ever leaves the tool: every error path, every output, every file it writes.

Each scenario drives one error path (or a success with hostile content) with distinctive
made-up secrets: the fake's tokens and keys, a gateway token, a provider key, an API key, an
API-key-only auth.json, passwords in URLs. Servers echo the secrets back in error bodies, in
stream events, in headers, in the model's text and in revised prompts. Then everything the
tool wrote is scanned: stdout and stderr of every run (conftest does that for each Result),
and every file under the test's directories other than the inputs the test itself wrote
(auth.json, auth.json.bak, config files): images, sidecars, the quota state file, and the
names of all files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from conftest import dead_port
from fakeserver import (cloudflare, echo_secrets, find_secrets, make_secret, ok,
                        refresh_error, status, text_only, usage_limit)

SCENARIOS: dict[str, Callable] = {}
FAST = ("--no-progress", "--retries", "0")


def scenario(function: Callable) -> Callable:
    SCENARIOS[function.__name__] = function
    return function


class Stage:
    """What a scenario works with; inputs() marks files the test wrote (not scanned)."""

    def __init__(self, fake, env, run, run_cli):
        self.fake, self.env, self.run, self.run_cli = fake, env, run, run_cli
        self.inputs: set[Path] = {env.auth_file, Path(str(env.auth_file) + ".bak")}

    def secret(self, prefix: str) -> str:
        value = make_secret(prefix)
        self.env.secrets.add(value)
        return value

    def input(self, path: Path) -> Path:
        self.inputs.add(Path(path))
        return path

    def expect(self, code: int, *argv, **kwargs):
        result = self.run(*argv, **kwargs)
        assert result.code == code, result
        return result

    def dead_port(self) -> int:
        return dead_port()


# The Codex login ############################################################################

@scenario
def auth_missing(t: Stage) -> None:
    t.env.auth_file.unlink()
    t.expect(3, "a fox", *FAST)
    t.expect(3, "a fox", *FAST, "--json")
    t.expect(3, "auth", "status")
    t.expect(3, "auth", "status", "--json")


@scenario
def auth_api_key_only(t: Stage) -> None:
    key = t.secret("sk-")
    t.env.write_auth(doc={"auth_mode": "apikey", "OPENAI_API_KEY": key, "tokens": None})
    t.expect(3, "a fox", *FAST)
    t.expect(3, "a fox", *FAST, "--json")
    t.expect(3, "auth", "status")
    t.expect(3, "auth", "status", "--json")
    t.expect(0, "a fox", "--dry-run")


@scenario
def auth_keyring_and_odd_files(t: Stage) -> None:
    t.env.auth_file.unlink()
    t.input(t.env.write_codex_config('cli_auth_credentials_store = "keyring"\n'))
    t.expect(3, "a fox", *FAST)
    token = t.secret("rt_")
    t.env.write_auth(doc={"auth_mode": "chatgpt", "tokens": {"refresh_token": token}})
    t.expect(3, "a fox", *FAST)
    t.expect(3, "auth", "status", "--json")


@scenario
def auth_status_and_dry_run_with_an_expired_token(t: Stage) -> None:
    t.env.write_auth(expired=True)
    t.expect(0, "auth", "status")
    t.expect(0, "auth", "status", "--json")
    t.expect(0, "a fox", "--dry-run")
    t.expect(0, "batch", "-", "--dry-run", input='{"prompt": "a"}\n{"prompt": "b"}\n')


@scenario
def refresh_refused(t: Stage) -> None:
    for code in ("refresh_token_expired", "refresh_token_reused", "refresh_token_invalidated", "x"):
        t.env.write_auth(expired=True)
        t.fake.queue("/oauth/token", refresh_error(code))
        t.expect(3, "a fox", *FAST)


@scenario
def refresh_echoes_the_tokens(t: Stage) -> None:
    t.env.write_auth(expired=True)
    t.fake.queue("/oauth/token", echo_secrets(500), echo_secrets(500, in_header=True))
    t.expect(3, "a fox", "--no-progress", "--retries", "1")
    t.fake.queue("/oauth/token", echo_secrets(401))
    t.expect(3, "a fox", *FAST, "--json")
    t.fake.queue("/oauth/token", echo_secrets(400, in_header=True))
    t.expect(3, "batch", "-", *FAST, input='{"prompt": "a fox"}\n')
    assert t.fake.pending("/oauth/token") == 0


@scenario
def refresh_unreachable(t: Stage) -> None:
    t.env.write_auth(expired=True)
    t.expect(5, "a fox", *FAST, env_vars={
        "CODEX_REFRESH_TOKEN_URL_OVERRIDE": f"http://127.0.0.1:{t.dead_port()}/oauth/token"})


@scenario
def a_401_that_survives_the_refresh(t: Stage) -> None:
    t.fake.queue("/responses", echo_secrets(401), echo_secrets(401, in_header=True))
    t.expect(3, "a fox", *FAST, "--route", "responses")
    t.fake.queue("/images/generations", echo_secrets(401), echo_secrets(401))
    t.expect(3, "a fox", *FAST, "--route", "images", "--json")
    assert t.fake.auth.refresh_count == 2


# The Codex backend's answers ################################################################

@scenario
def http_errors_that_echo_the_tokens(t: Stage) -> None:
    for behaviour, code in ((cloudflare(), 5), (echo_secrets(403), 3), (echo_secrets(403, in_header=True), 3),
                            (usage_limit(), 4), (echo_secrets(429), 4), (echo_secrets(500, in_header=True), 5),
                            (echo_secrets(502), 5), (status(500, "Bearer " + t.fake.auth.tokens["access_token"]), 5)):
        # A JSON 403 is final (no refresh, no second try), like every other answer here.
        tries = 1
        t.fake.queue("/responses", *[behaviour] * tries)
        t.expect(code, "a fox", *FAST, "--route", "responses")
        t.fake.queue("/responses", *[behaviour] * tries)
        t.expect(code, "a fox", *FAST, "--route", "responses", "--json")
    assert t.fake.pending("/responses") == 0


@scenario
def a_retried_5xx_and_a_stream_error_echo_the_tokens(t: Stage) -> None:
    t.fake.queue("/responses", echo_secrets(500), echo_secrets(503), echo_secrets(500))
    # The retries' back-off does not sleep: what is printed is the same, 1.5 s sooner.
    t.expect(5, "a fox", "--no-progress", "--retries", "2", "--route", "responses",
             seams={"sleep": lambda seconds: None})
    t.fake.queue("/responses", echo_secrets(in_stream=True), echo_secrets(in_stream=True))
    t.expect(5, "a fox", *FAST, "--route", "responses")
    t.expect(5, "a fox", *FAST, "--route", "responses", "--json")
    t.fake.queue("/images/generations", echo_secrets(500), echo_secrets(400, in_header=True))
    t.expect(5, "a fox", *FAST, "--route", "images")
    t.expect(5, "a fox", *FAST, "--route", "images", "--json")


@scenario
def the_route_fallback_warning_echoes_the_tokens(t: Stage) -> None:
    t.fake.queue("/images/generations", echo_secrets(404, in_header=True))  # the first route tried
    result = t.expect(0, "a fox", *FAST)
    assert "switching" in result.err


@scenario
def the_model_repeats_the_tokens(t: Stage) -> None:
    tokens = t.fake.auth.tokens
    said = f"Sure. Your token is {tokens['access_token']} and {tokens['refresh_token']}."
    t.fake.queue("/responses", text_only(said), text_only(said))
    t.expect(6, "a fox", *FAST, "--route", "responses")
    t.expect(6, "a fox", *FAST, "--route", "responses", "--json")
    revised = f"A fox. id_token={tokens['id_token']} Bearer {tokens['access_token']}"
    t.fake.queue("/responses", ok(revised_prompt=revised), ok(revised_prompt=revised))
    t.expect(0, "a fox", *FAST, "--route", "responses", "--json", "--meta")
    t.expect(0, "a fox", *FAST, "--route", "responses", "--meta", "-o", "out/")
    t.fake.queue("/images/generations", status(400, {"error": {"message": said, "code": "x"}}))
    t.expect(5, "a fox", *FAST, "--route", "images")


@scenario
def a_batch_with_errors(t: Stage) -> None:
    t.fake.queue("/codex/responses", echo_secrets(500), echo_secrets(in_stream=True), usage_limit())
    lines = "".join(f'{{"prompt": "fox {n}", "route": "responses"}}\n' for n in range(4))
    t.expect(5, "batch", "-", *FAST, "--parallel", "1", input=lines)
    t.fake.queue("/codex/responses", echo_secrets(500), echo_secrets(in_stream=True))
    t.expect(5, "batch", "-", *FAST, "--parallel", "1", "--json", "--meta", input=lines)


@scenario
def a_login_that_fails_and_one_that_works(t: Stage) -> None:
    t.fake.queue("/oauth/token", echo_secrets(500))
    t.expect(3, "auth", "login")
    t.fake.queue("/api/accounts/deviceauth/token", echo_secrets(500))
    t.expect(3, "auth", "login")
    t.expect(0, "auth", "login")
    t.expect(0, "auth", "status", "--json")


@scenario
def secrets_given_on_the_command_line_are_never_echoed(t: Stage) -> None:
    key = t.secret("sk-")
    for argv in (("--api-key", key), (f"--api-key={key}",), ("--token", key), (f"--auth-token={key}",),
                 (f"--x-api-key={key}",), (f"--password={key}",), (f"--unknown={key}",)):
        t.expect(2, "a fox", *argv)
        t.expect(2, "a fox", *argv, "--json")


# Other backends #############################################################################

@scenario
def the_gateway_echoes_its_token(t: Stage) -> None:
    t.fake.gateway_token = make_secret("gw-")
    env = {"CODEX_API_TOKEN": t.fake.gateway_token, "CODEX_API_BASE_URL": t.fake.url}
    t.fake.queue("/chat/completions", echo_secrets(500), echo_secrets(403, in_header=True),
                 text_only(f"no image, but here is {t.fake.gateway_token}"))
    for code in (5, 3, 6):
        t.expect(code, "a fox", *FAST, "--backend", "gateway", env_vars=env)
    t.expect(0, "a fox", "--backend", "gateway", "--dry-run", env_vars=env)
    wrong = t.secret("gw-")
    t.expect(3, "a fox", *FAST, "--backend", "gateway", env_vars={**env, "CODEX_API_TOKEN": wrong})
    t.env.write_gateway_files(token=t.fake.gateway_token, base_url=t.fake.url)
    t.input(t.env.config_home / "codex-api" / "token")
    t.input(t.env.config_home / "codex-api" / "base_url")
    t.fake.queue("/chat/completions", echo_secrets(500))
    t.expect(5, "a fox", *FAST, "--backend", "gateway", "--json")


@scenario
def the_responses_provider_echoes_its_key(t: Stage) -> None:
    t.input(t.env.write_codex_config(
        f'model_provider = "x"\n\n[model_providers.x]\nname = "X"\nbase_url = "{t.fake.api_base_url}"\n'
        'env_key = "X_KEY"\nwire_api = "responses"\n'))
    env = {"X_KEY": t.fake.provider_key}
    t.fake.queue("/v1/responses", echo_secrets(500, in_header=True), echo_secrets(in_stream=True),
                 echo_secrets(401))
    for code in (5, 5, 3):
        t.expect(code, "a fox", *FAST, "--backend", "responses", env_vars=env)
    t.expect(0, "a fox", "--backend", "responses", "--dry-run", env_vars=env)
    wrong = t.secret("sk-proj-")
    t.expect(3, "a fox", *FAST, "--backend", "responses", env_vars={"X_KEY": wrong})
    # The key kept in auth.json as OPENAI_API_KEY, as Codex's API-key login does.
    t.env.write_auth(doc={"auth_mode": "apikey", "OPENAI_API_KEY": t.fake.provider_key})
    t.fake.queue("/v1/responses", echo_secrets(500))
    t.expect(5, "a fox", *FAST, "--backend", "responses", "--json")


@scenario
def the_images_api_echoes_its_key(t: Stage) -> None:
    env = {"IMAGEGEN_API_KEY": t.fake.api_key, "IMAGEGEN_API_BASE_URL": t.fake.api_base_url}
    t.fake.queue("/v1/images/generations", echo_secrets(500, in_header=True), echo_secrets(401),
                 echo_secrets(429), status(400, {"error": {"message": f"bad key {t.fake.api_key}"}}))
    for code in (5, 3, 4, 5):
        t.expect(code, "a fox", *FAST, "--backend", "api", env_vars=env)
    t.expect(0, "a fox", "--backend", "api", "--dry-run", env_vars=env)
    t.expect(0, "a fox", "--backend", "api", "--json", "--meta", env_vars=env)
    wrong = t.secret("sk-")
    t.expect(3, "a fox", *FAST, "--backend", "api", env_vars={**env, "IMAGEGEN_API_KEY": wrong})
    # A key file other users can read: a warning that names the file, not the key.
    path = t.input(t.env.write_api_config(mode=0o644))
    result = t.expect(0, "a fox", *FAST, "--backend", "api")
    assert str(path) in result.err
    t.input(t.env.write_api_config(path=t.env.tmp / "other.json", extra_body={"note": t.fake.api_key}))
    t.fake.queue("/v1/images/edits", echo_secrets(500))
    t.env.work.joinpath("in.png").write_bytes(t.fake.images_sent[-1])
    t.input(t.env.work / "in.png")
    t.expect(5, "a fox", *FAST, "--backend", "api", "--config", t.env.tmp / "other.json", "-i", "in.png")
    t.expect(0, "a fox", "--backend", "api", "--config", t.env.tmp / "other.json", "--dry-run")


@scenario
def passwords_in_urls_are_not_shown(t: Stage) -> None:
    password = t.secret("pw-")
    dead = t.dead_port()
    t.expect(5, "a fox", *FAST, "--backend", "gateway",
             env_vars={"CODEX_API_BASE_URL": f"http://user:{password}@127.0.0.1:{dead}"})
    t.expect(5, "a fox", *FAST, "--backend", "gateway", "--json",
             env_vars={"CODEX_API_BASE_URL": f"http://user:{password}@127.0.0.1:{dead}"})
    t.expect(5, "a fox", *FAST, "--route", "responses",
             env_vars={"IMAGEGEN_CODEX_BASE_URL": f"http://user:{password}@127.0.0.1:{dead}/codex"})
    t.expect(5, "a fox", *FAST, "--route", "responses", env_vars={
        "HTTP_PROXY": f"http://user:{password}@127.0.0.1:{dead}", "NO_PROXY": None, "no_proxy": None})
    t.expect(0, "a fox", "--backend", "gateway", "--dry-run",
             env_vars={"CODEX_API_BASE_URL": f"http://user:{password}@127.0.0.1:{dead}"})


# Redirects ##################################################################################

class Elsewhere:
    """Another origin (127.0.0.1, another port) that records every request's headers."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append((self.command, self.path, dict(self.headers)))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere():
    server = Elsewhere()
    yield server
    server.close()


REDIRECTED = {
    "codex-responses": ("/codex/responses", ("--route", "responses"), {}),
    "codex-images": ("/codex/images/generations", ("--route", "images"), {}),
    "gateway": ("/v1/chat/completions", ("--backend", "gateway"), {"CODEX_API_TOKEN": "gateway"}),
    "api": ("/v1/images/generations", ("--backend", "api"), {"IMAGEGEN_API_KEY": "api"}),
}


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("where", sorted(REDIRECTED))
def test_a_redirect_to_another_host_never_carries_the_credentials(fake, env, run, elsewhere, where, code):
    suffix, argv, variables = REDIRECTED[where]
    fake.gateway_token = make_secret("gw-")
    keys = {"gateway": fake.gateway_token, "api": fake.api_key}
    variables = {name: keys[value] for name, value in variables.items()}
    variables.update(CODEX_API_BASE_URL=fake.url, IMAGEGEN_API_BASE_URL=fake.api_base_url)
    fake.queue(suffix, status(code, "", headers={"Location": f"{elsewhere.url}/collect"}))
    result = run("a fox", *FAST, *argv, env_vars=variables)
    assert result.code != 0, result
    for method, path, headers in elsewhere.seen:
        names = {name.lower() for name in headers}
        assert not names & {"authorization", "chatgpt-account-id", "cookie"}, (method, path, headers)
        assert find_secrets(repr(headers), fake.secrets | env.auth_secrets()) == []


def test_a_redirect_to_the_same_host_keeps_working(fake, env, run):
    # Only another origin loses the credentials: a same-origin redirect is still followed
    # with them (it lands on the images route's answer here, as a GET that the fake refuses
    # with 405: what matters is that the Authorization header came along).
    fake.queue("/codex/images/generations", status(302, "", headers={
        "Location": f"{fake.codex_base_url}/images/generations"}))
    run("a fox", *FAST, "--route", "images")
    followed = [r for r in fake.requests_to("/images/generations") if r.method == "GET"]
    assert followed and followed[0].bearer == fake.auth.tokens["access_token"]


# Secrets that match no pattern #############################################################

@scenario
def tokens_of_no_known_shape_are_still_hidden(t: Stage) -> None:
    # Real tokens need not look like a JWT, rt_... or sk-...: the run's own secrets must be
    # hidden by value, whichever part of the tool reports the error.
    refresh = t.secret("")  # no prefix: only its value can identify it
    doc = t.env.write_auth(expired=True)
    doc["tokens"]["refresh_token"] = refresh
    t.env.write_auth(doc=doc)
    t.fake.queue("/oauth/token", status(500, {"error": {"message": f"token {refresh} is bad"}}))
    t.expect(3, "a fox", *FAST)
    t.fake.queue("/oauth/token", status(400, f"bad {refresh}"))
    t.expect(3, "a fox", *FAST, "--json")
    t.fake.queue("/oauth/token", status(401, {"error": {"code": "x", "message": refresh}}))
    t.expect(3, "batch", "-", *FAST, input='{"prompt": "a fox"}\n')
    t.fake.queue("/oauth/token", status(400, f"bad {refresh}"))
    t.expect(0, "auth", "status")
    gateway = t.secret("")
    t.fake.gateway_token = gateway
    t.fake.queue("/chat/completions", status(500, f"token {gateway} is bad"),
                 status(401, f"token {gateway} is bad"))
    env = {"CODEX_API_TOKEN": gateway, "CODEX_API_BASE_URL": t.fake.url}
    t.expect(5, "a fox", *FAST, "--backend", "gateway", env_vars=env)
    t.expect(3, "a fox", *FAST, "--backend", "gateway", "--json", env_vars=env)
    key = t.secret("")
    t.expect(3, "a fox", *FAST, "--backend", "api", env_vars={
        "IMAGEGEN_API_KEY": key, "IMAGEGEN_API_BASE_URL": t.fake.api_base_url})


# The scan ###################################################################################

def scan_files(t: Stage) -> list[str]:
    """Secrets in any file (but the test's own inputs) or in any file's name."""
    secrets = t.fake.secrets | t.env.auth_secrets() | t.env.secrets
    problems = []
    for folder, dirs, names in os.walk(t.env.tmp):
        for name in dirs + names:
            for secret in find_secrets(name, secrets):
                problems.append(f"a file name holds {secret[:12]}...: {Path(folder, name)}")
        for name in names:
            path = Path(folder, name)
            if path in t.inputs or path.is_symlink():
                continue
            text = path.read_bytes().decode("latin-1")
            for secret in find_secrets(text, secrets):
                where = text.find(secret)
                problems.append(f"{path.relative_to(t.env.tmp)} holds {secret[:12]}... in "
                                f"{text[max(0, where - 60):where].strip()!r}")
    return problems


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_secret_reaches_any_output_or_file(fake, env, run, run_cli, name):
    stage = Stage(fake, env, run, run_cli)
    SCENARIOS[name](stage)
    assert scan_files(stage) == []
    assert fake.errors == []


def test_the_scan_itself_finds_a_leak(fake, env, run):
    # The scanner must not be blind: a secret written into a sidecar-like file is found.
    stage = Stage(fake, env, run, None)
    (env.work / "leak.json").write_text(f'{{"note": "{fake.auth.tokens["refresh_token"]}"}}')
    assert len(scan_files(stage)) == 1
    (env.work / "leak.json").unlink()

"""The December adversarial findings (shared/reference/adversarial-2026-12.md): each test
reproduces one finding (F1, F2, ...) and asserts what a user must get instead.

Tests that need a slow server, a signal or many seconds carry the `fault` marker: they run in
the default `python -m pytest -q`; `-m "not fault"` skips them while working.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from conftest import Result
from fakeserver import make_auth_json, ok, stall, status, write_auth_file

PROMPT = "a paper plane"
# What a Codex home may hold after a run: the login, Codex's two lock files, our quota note.
EXPECTED_IN_CODEX_HOME = {"auth.json", "auth.lock", "auth.json.lock", "codex-imagegen-quota.json"}


def generate(run, *extra: str, **kwargs) -> Result:
    return run(PROMPT, "--no-progress", "--retries", "2", *extra, **kwargs)


def codex_requests(fake) -> list:
    return [r for r in fake.requests if r.path.startswith("/backend-api/codex/")]


def assert_no_stray_files(folder: Path) -> None:
    assert set(os.listdir(folder)) <= EXPECTED_IN_CODEX_HOME, sorted(os.listdir(folder))


def saved_refresh_token(env) -> str:
    return env.read_auth()["tokens"]["refresh_token"]


# F1, F7: a refresh whose answer is lost is never sent again ####################################

def test_f1_a_lost_refresh_answer_is_never_sent_again_and_says_what_to_do(env, fake, run):
    env.write_auth(expired=True)
    fake.queue("/oauth/token", ok(truncate_after=0))  # the issuer rotates, the answer is cut

    result = generate(run)

    assert result.code == 5, result
    assert len(fake.requests_to("/oauth/token")) == 1  # the spent token was not re-sent
    assert codex_requests(fake) == []
    assert "not sent again" in result.err and "codex login" in result.err
    assert "already used" in result.err  # log in again only if the server later says so
    assert_no_stray_files(env.codex_home)


def test_f1_a_lost_answer_adopts_tokens_another_program_saved_meanwhile(env, fake, run):
    """The answer is lost, but Codex saved a new login while ours was in flight: use it."""
    env.write_auth(expired=True)
    fake.queue("/oauth/token", ok(truncate_after=0))
    import urllib.request
    inner = urllib.request.build_opener()
    saved: list[dict] = []

    class CodexSavesDuringTheRefresh:
        def open(self, request, timeout=None):
            try:
                return inner.open(request, timeout=timeout)
            finally:
                if request.full_url.endswith("/oauth/token") and not saved:
                    tokens = fake.auth.issue()
                    write_auth_file(env.auth_file, make_auth_json(tokens))
                    saved.append(tokens)

    result = generate(run, seams={"opener": CodexSavesDuringTheRefresh()})

    assert result.code == 0, result
    assert len(fake.requests_to("/oauth/token")) == 1
    assert [r.bearer for r in codex_requests(fake)] == [saved[0]["access_token"]]


def test_f1_a_refresh_that_never_left_is_sent_again(env, fake, run):
    """A complete 503 from the issuer: nothing was spent, so a re-send is safe."""
    env.write_auth(expired=True)
    fake.queue("/oauth/token", status(503))  # the issuer itself said no: nothing was spent

    result = generate(run)

    assert result.code == 0, result
    assert len(fake.requests_to("/oauth/token")) == 2


@pytest.mark.parametrize("code", [502, 504])
def test_f1_a_gateway_error_on_the_refresh_is_not_resent(env, fake, run, code):
    """A proxy or load balancer that gave up may have let the issuer act: no re-send."""
    env.write_auth(expired=True)
    fake.queue("/oauth/token", status(code))

    result = generate(run)

    assert result.code == 5, result
    assert f"could not refresh the login: the server failed (HTTP {code})" in result.err
    assert "the refresh token was not sent again" in result.err
    assert len(fake.requests_to("/oauth/token")) == 1


@pytest.mark.fault
def test_f7_a_stalled_refresh_keeps_to_timeout_and_names_the_refresh(env, fake, run):
    env.write_auth(expired=True)
    fake.queue("/oauth/token", stall(seconds=20))

    started = time.monotonic()
    result = generate(run, "--timeout", "0.5")
    elapsed = time.monotonic() - started

    assert result.code == 5, result
    assert len(fake.requests_to("/oauth/token")) == 1
    assert "token endpoint" in result.err and "0.5 s" in result.err
    assert elapsed < 15, elapsed  # not the old fixed 60 s (a bound, not a speed claim)


# F25, F3: the rotated token is always saved ####################################################

def test_f25_a_refresh_answer_without_access_token_still_saves_the_new_refresh_token(env, fake, run):
    env.write_auth(expired=True)
    fake.auth.refresh_returns = ("id_token", "refresh_token")

    result = generate(run)

    assert result.code == 3, result
    assert saved_refresh_token(env) == fake.auth.current_refresh_token
    fake.auth.refresh_returns = ("id_token", "access_token", "refresh_token")
    again = generate(run)
    assert again.code == 0, again


def test_f3_an_auth_file_with_a_lone_surrogate_is_still_written_back(env, fake, run):
    doc = make_auth_json(fake.auth.issue(expired=True))
    text = json.dumps(doc, indent=2)[:-1] + ',\n  "profile_note": "Jo\\ud83d"\n}'
    env.auth_file.write_text(text, encoding="ascii")

    result = generate(run)

    assert result.code == 0, result
    assert fake.auth.refresh_count == 1
    after = env.read_auth()
    assert after["tokens"]["refresh_token"] == fake.auth.current_refresh_token
    assert after["profile_note"] == "Jo\ud83d"


# Refresh like Codex 0.169 (issue 12, item 6) ##################################################

def test_refresh_body_says_why_before_a_request_and_after_a_401(env, fake, run):
    env.write_auth(expired=True)
    assert generate(run).code == 0
    fake.auth.revoke_access_tokens()
    assert generate(run).code == 0

    reasons = [r.json.get("refresh_reason") for r in fake.requests_to("/oauth/token")]
    assert reasons == ["proactive_expiry", "unauthorized_recovery"]


@pytest.mark.parametrize("seconds_left, refreshed", [(240, True), (420, False)])
def test_refresh_within_five_minutes_of_exp(env, fake, run, seconds_left, refreshed):
    env.write_auth(exp=time.time() + seconds_left)

    assert generate(run).code == 0
    assert fake.auth.refresh_count == (1 if refreshed else 0)


@pytest.mark.parametrize("state", ["empty", "half"])
def test_an_auth_file_caught_mid_rewrite_is_read_again(env, fake, run, state):
    """Older Codex rewrites auth.json in place: a read can find it empty or half written."""
    whole = env.auth_file.read_bytes()
    env.auth_file.write_bytes(b"" if state == "empty" else whole[:len(whole) // 2])
    timer = threading.Timer(0.08, env.auth_file.write_bytes, (whole,))
    timer.start()
    try:
        result = generate(run)
    finally:
        timer.join()

    assert result.code == 0, result


def test_an_auth_file_that_stays_empty_is_exit_3(env, fake, run):
    env.auth_file.write_bytes(b"")

    result = generate(run)

    assert result.code == 3, result
    assert f"{env.auth_file} is not valid JSON; it was left as it is" in result.err
    assert "imagegen auth login" in result.err
    assert env.auth_file.read_bytes() == b""


@pytest.mark.parametrize("answer, permanent", [
    (status(400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}), True),
    (status(400, {"error": {"code": "refresh_token_reused", "message": "used"}}), True),
    (status(403, {"error": {"code": "refresh_token_invalidated"}}), True),
    (status(400, {"error": "invalid_request", "error_description": "bad"}), False),
])
def test_refresh_failures_say_log_in_again_only_when_permanent(env, fake, run, answer, permanent):
    env.write_auth(expired=True)
    fake.queue("/oauth/token", answer)

    result = generate(run)

    assert result.code == 3, result
    assert ("log in again" in result.err) is permanent, result
    assert len(fake.requests_to("/oauth/token")) == 1


# F33: one refresh per run ######################################################################

def test_f33_a_backend_refusing_every_token_gets_one_refresh_per_run(env, fake, run):
    for route in ("/codex/responses", "/codex/images/generations"):
        fake.default(route, status(401, {"error": {"message": "nope"}}))
    lines = "".join(json.dumps({"prompt": f"icon {n}"}) + "\n" for n in range(6))
    (env.work / "b.jsonl").write_text(lines)

    result = run("batch", "b.jsonl", "--parallel", "1", "--no-progress", "--retries", "0")

    assert result.code == 3, result
    assert len(result.lines) == 6
    assert fake.auth.refresh_attempts == 1


# F2: a signal during the refresh never destroys the login ######################################

def _wait_for_refresh(fake, proc) -> None:
    deadline = time.monotonic() + 20
    while not fake.requests_to("/oauth/token"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no refresh request arrived"
        time.sleep(0.02)


@pytest.mark.fault
@pytest.mark.parametrize("how", ["generate", "batch"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_f2_a_signal_during_the_refresh_lets_it_finish_and_be_saved(env, fake, run_cli, how, signum):
    env.write_auth(expired=True)
    fake.auth.refresh_delay = 1.0  # the issuer rotates only after this
    if how == "generate":
        args = [PROMPT, "--no-progress"]
    else:
        (env.work / "b.jsonl").write_text('{"prompt": "one"}\n{"prompt": "two"}\n')
        args = ["batch", "b.jsonl", "--parallel", "2", "--no-progress"]
    proc = run_cli.popen(*args)
    _wait_for_refresh(fake, proc)
    time.sleep(0.3)
    proc.send_signal(signum)

    result = run_cli.wait(proc, timeout=30)

    assert result.code == 130, result
    assert fake.auth.refresh_count == 1
    assert saved_refresh_token(env) == fake.auth.current_refresh_token  # the login survives
    assert_no_stray_files(env.codex_home)
    assert not [p for p in env.work.rglob("*") if p.name.startswith(".")]


# F11, F12, F26: redaction ######################################################################

def squeezed(text: str) -> str:
    """text without the whitespace and JSON escapes an echo may put inside a secret."""
    import re
    return re.sub(r"(?:\s|\\[nrt])+", "", text)


def assert_not_recoverable(secret: str, result: Result) -> None:
    for stream in (result.out, result.err):
        flat = squeezed(stream)
        assert secret[:16] not in flat, result
        assert secret[-16:] not in flat, result


@pytest.mark.parametrize("shape", ["space", "newline", "prefix", "base64", "hex"])
@pytest.mark.parametrize("mode", ["text", "json"])
def test_f11_an_api_key_echoed_in_any_shape_is_never_printed(env, fake, run, shape, mode):
    import base64
    env.write_api_config()
    key = fake.api_key
    echoed = {"space": f"{key[:6]} {key[6:]}", "newline": f"{key[:6]}\n{key[6:]}",
              "prefix": key[:20] + "…", "hex": key.encode().hex(),
              "base64": base64.b64encode(f"user:{key}".encode()).decode()}[shape]
    fake.queue("/v1/images/generations", status(400, {"error": {
        "message": f"Incorrect API key provided: {echoed} is not allowed"}}))

    result = run(PROMPT, "--backend", "api", "--no-progress", "--retries", "0",
                 *(["--json"] if mode == "json" else []))

    assert result.code == 5, result
    assert "Incorrect API key provided" in (result.out + result.err)
    assert_not_recoverable(key, result)
    if shape in ("base64", "hex"):  # the encoded key, recoverable by decoding it
        assert echoed[4:-4] not in squeezed(result.out + result.err), result


def test_f11_a_refresh_token_echoed_with_a_line_break_is_never_printed(env, fake, run):
    refresh_token = env.write_auth(expired=True)["tokens"]["refresh_token"]
    fake.queue("/oauth/token", status(400, {"error": {
        "message": f"upstream error for grant refresh_token rt={refresh_token[:10]}\n"
                   f"{refresh_token[10:]}"}}))

    result = generate(run, "--json")

    assert result.code == 3, result
    assert_not_recoverable(refresh_token, result)


def test_f11_a_gateway_token_echoed_with_a_space_is_never_printed(env, fake, run):
    token = "gw_" + fake.api_key[3:]  # a secret the fake does not know as the gateway's
    env.secrets.add(token)
    fake.gateway_token = token
    env.write_gateway_files(token=token, base_url=fake.url)
    fake.queue("/v1/chat/completions", status(401, {"error": {
        "message": f"token {token[:5]} {token[5:]} rejected"}}))

    result = run(PROMPT, "--backend", "gateway", "--no-progress", "--retries", "0")

    assert result.code == 3, result
    assert_not_recoverable(token, result)


def test_f12_a_malformed_proxy_variable_is_a_usage_error_that_hides_its_password(env, fake, run):
    password = "Pr0xyPassw0rd-never-shown"
    env.secrets.add(password)

    result = run(PROMPT, "--no-progress", "--json", env_vars={
        "HTTPS_PROXY": f"http:/alice:{password}@127.0.0.1:3128",
        "HTTP_PROXY": f"http:/alice:{password}@127.0.0.1:3128",
        "NO_PROXY": None, "no_proxy": None})

    assert result.code == 2, result
    assert password not in result.out + result.err
    assert result.json["error"]["kind"] == "usage"
    assert "proxy" in result.json["error"]["message"]


def _finishes_within(code: str, seconds: float) -> bool:
    """Runs code (with imagegen importable) in a child process: True when it ends in time.
    A thread cannot bound it: a regular expression holds the GIL until it is done."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parent.parent
    try:
        subprocess.run([sys.executable, "-c", code], cwd=repo, timeout=seconds, check=True,
                       env={**os.environ, "PYTHONPATH": str(repo)})
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize("text", [
    '("eyJ" + "a" * 10) * 80_000',       # the JWT pattern, once for every eyJ
    '"a." * 180_000',                    # the URL-password pattern's scheme
    '"token " * 60_000 + "x"',           # the key=value pattern
], ids=["jwt", "url", "key-value"])
def test_f26_redaction_takes_linear_time_on_hostile_text(text):
    code = ("import imagegen\nsecrets = imagegen.Secrets()\nsecrets.add('sk-' + 'k' * 40)\n"
            f"secrets.redact({text})\n")
    # a bound far above linear time (milliseconds), far below quadratic (minutes)
    assert _finishes_within(code, 20), "redaction did not finish within 20 s"


def test_f26_the_gateways_markdown_cleanup_takes_linear_time():
    code = ("import imagegen\nimagegen.images_from_chat("
            "{'choices': [{'message': {'content': '![' * 150_000}}]})\n")
    assert _finishes_within(code, 20), "the markdown cleanup did not finish within 20 s"


# F6: --timeout holds while a server dribbles the headers or the chunk framing ##################

class DribblingServer:
    """An HTTP server on 127.0.0.1 that answers every request with `head` at once, then
    `dribble` one byte every `interval` seconds, and gives up by itself after `limit` s."""

    def __init__(self, head: bytes, dribble: bytes, interval: float = 0.2, limit: float = 25):
        import socket
        self.head, self.dribble, self.interval, self.limit = head, dribble, interval, limit
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        import socket
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn) -> None:
        ends = time.monotonic() + self.limit
        try:
            conn.settimeout(2)
            conn.recv(65536)
            conn.sendall(self.head)
            for byte in self.dribble:
                if self.stop.wait(self.interval) or time.monotonic() > ends:
                    break
                conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(5)


@pytest.mark.fault
@pytest.mark.parametrize("where", ["headers", "chunk-size", "trailers"])
def test_f6_timeout_holds_while_a_server_dribbles(env, fake, run, where):
    forever = b"x" * 1000
    head, dribble = {
        "headers": (b"HTTP/1.1 200 OK\r\nX-Slow: ", forever),
        "chunk-size": (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n5;ext=", forever),
        "trailers": (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n", b"X-T: 1\r\n" * 200),
    }[where]
    # A byte every 50 ms never lets the 0.5 s stall timeout fire: only the total one can end it.
    server = DribblingServer(head, dribble, interval=0.05)
    try:
        started = time.monotonic()
        result = run(PROMPT, "--no-progress", "--retries", "0", "--timeout", "1",
                     "--stall-timeout", "0.5", "--route", "responses",
                     "--base-url", server.url + "/backend-api/codex")
        elapsed = time.monotonic() - started
    finally:
        server.close()

    assert result.code == 5, result
    assert "1 s" in result.err, result
    assert elapsed < 15, elapsed  # the server would go on for 25 s (a bound, not a speed claim)


# F29, F4: misconfiguration and deep JSON are exit 2 and 5, and --json stays JSON ###############

@pytest.mark.parametrize("variable, value", [
    ("IMAGEGEN_CODEX_BASE_URL", "chatgpt.com/backend-api/codex"),
    ("CODEX_REFRESH_TOKEN_URL_OVERRIDE", "auth.openai.com/oauth/token"),
])
def test_f29_a_url_without_a_scheme_is_a_usage_error_and_json_stays_json(env, fake, run, variable, value):
    env.write_auth(expired=True)
    before = env.auth_file.read_bytes()

    result = run(PROMPT, "--no-progress", "--json", env_vars={variable: value})

    assert result.code == 2, result
    assert result.json["ok"] is False and result.json["error"]["kind"] == "usage"
    assert value in result.json["error"]["message"]
    assert fake.requests_to("/oauth/token") == [] or env.auth_file.read_bytes() != before


def test_f29_a_base_url_with_a_space_is_a_usage_error(env, fake, run):
    result = run(PROMPT, "--no-progress", "--base-url", fake.url + "/backend api/codex")

    assert result.code == 2, result
    assert result.out == "" and "is not valid" in result.err, result
    assert codex_requests(fake) == []


def test_f29_an_internal_error_with_json_still_prints_one_json_object(env, fake, run):
    class Broken:
        def open(self, request, timeout=None):
            raise RuntimeError("a bug")

    result = run(PROMPT, "--no-progress", "--json", seams={"opener": Broken()})

    assert result.code == 1, result
    assert result.json["ok"] is False and result.json["error"]["kind"] == "internal"


DEEP = "[" * 20_000


@pytest.mark.parametrize("route, answer", [
    ("/codex/images/generations", status(500, DEEP, content_type="application/json")),
    ("/codex/images/generations", status(200, DEEP, content_type="application/json")),
    ("/codex/responses", status(200, f"data: {DEEP}\n\n", content_type="text/event-stream")),
], ids=["error-body", "json-answer", "sse-event"])
def test_f4_deeply_nested_json_from_the_server_is_exit_5(env, fake, run, route, answer):
    fake.default(route, answer)
    which = "images" if "images" in route else "responses"

    result = run(PROMPT, "--no-progress", "--retries", "0", "--json", "--route", which)

    assert result.code == 5, result
    assert result.json["error"]["kind"] == "backend"


def test_f4_a_deeply_nested_refresh_answer_is_exit_3(env, fake, run):
    env.write_auth(expired=True)
    fake.queue("/oauth/token", status(500, DEEP, content_type="application/json"))
    assert generate(run, "--retries", "0").code == 3


def test_f4_a_deeply_nested_auth_file_is_an_auth_error(tmp_path):
    import imagegen
    path = tmp_path / "auth.json"
    path.write_text(DEEP)
    with pytest.raises(imagegen.AuthError):
        imagegen.read_auth_json(str(path), {}, sleep=lambda seconds: None)


def test_f4_a_deeply_nested_batch_line_fails_alone(env, fake, run):
    (env.work / "b.jsonl").write_text(json.dumps({"prompt": "one", "out": "one.png"}) + "\n"
                                      + DEEP + "\n"
                                      + json.dumps({"prompt": "three", "out": "three.png"}) + "\n")

    result = run("batch", "b.jsonl", "--no-progress")

    assert result.code == 2, result
    assert result.lines[0] == "one.png" and result.lines[2] == "three.png"
    assert result.lines[1].startswith("ERROR usage: line 2")


# F8: the SSE decoder holds an event in about its own size ######################################

def test_f8_an_event_of_many_short_data_lines_is_held_in_about_its_size():
    import tracemalloc
    import imagegen
    decoder = imagegen.SSEDecoder()
    block = b"data:ab\n" * 50_000  # 400 KB on the wire
    tracemalloc.start()
    try:
        for _ in range(6):  # 2.4 MB, 300,000 lines
            assert decoder.feed(block) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    events = decoder.feed(b"\n")
    assert len(events) == 1 and events[0].data == b"\n".join([b"ab"] * 300_000)
    assert peak < 6 * 1024 * 1024, peak  # the old list of line objects took over 12 MB


def test_f8_a_huge_event_name_line_is_not_kept():
    import tracemalloc
    import imagegen
    decoder = imagegen.SSEDecoder()
    tracemalloc.start()
    try:
        assert decoder.feed(b"event: ") == []
        for _ in range(40):
            decoder.feed(b"e" * 1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    events = decoder.feed(b'\ndata: {"type": "x"}\n\n')
    assert [e.data for e in events] == [b'{"type": "x"}']
    assert peak < 16 * 1024 * 1024, peak


# F31: special files as inputs ##################################################################

def _memory_limit() -> None:
    import resource
    limit = 1024 * 1024 * 1024  # 1 GiB: the old code ran out of it reading /dev/zero
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.fault
@pytest.mark.parametrize("args", [
    ["-i", "/dev/zero"],
    ["-i", "img.png", "--mask", "/dev/zero"],
    ["--prompt-file", "/dev/zero"],
    ["--backend", "api", "--config", "/dev/zero"],
], ids=["image", "mask", "prompt-file", "config"])
def test_f31_a_device_as_an_input_file_is_a_usage_error(env, fake, run_cli, args):
    from fakeserver import png_bytes
    (env.work / "img.png").write_bytes(png_bytes(64, 64))
    if args[0] != "--prompt-file":
        args = [PROMPT, *args]
    proc = run_cli.popen(*args, "--no-progress", "--retries", "0", preexec_fn=_memory_limit)

    result = run_cli.wait(proc, timeout=60)

    assert result.code == 2, result
    assert "/dev/zero" in result.err
    assert codex_requests(fake) == []


@pytest.mark.fault
def test_f31_a_prompt_on_an_endless_stdin_is_a_usage_error(env, fake, run_cli):
    with open("/dev/zero", "rb") as zero:
        proc = run_cli.popen("--prompt-file", "-", "--no-progress", stdin=zero,
                             preexec_fn=_memory_limit)
        result = run_cli.wait(proc, timeout=60)

    assert result.code == 2, result
    assert result.out == "" and "the prompt on stdin is larger than" in result.err, result
    assert fake.requests == []


@pytest.mark.fault
def test_f31_a_fifo_as_an_image_is_refused_at_once(env, fake, run_cli):
    fifo = env.work / "pipe.png"
    os.mkfifo(fifo)

    result = run_cli(PROMPT, "-i", "pipe.png", "--no-progress", timeout=30)

    assert result.code == 2, result
    assert "pipe.png" in result.err


@pytest.mark.fault
def test_f31_a_batch_line_naming_a_device_fails_alone(env, fake, run_cli):
    (env.work / "b.jsonl").write_text(
        json.dumps({"prompt": "one", "out": "one.png", "image": ["/dev/zero"]}) + "\n"
        + json.dumps({"prompt": "two", "out": "two.png"}) + "\n")
    proc = run_cli.popen("batch", "b.jsonl", "--no-progress", preexec_fn=_memory_limit)

    result = run_cli.wait(proc, timeout=60)

    assert result.code == 2, result
    assert result.lines[0].startswith("ERROR usage:") and "/dev/zero" in result.lines[0]
    assert result.lines[1] == "two.png"


@pytest.mark.fault
def test_f31_a_batch_file_that_is_a_device_is_a_usage_error(env, fake, run_cli):
    proc = run_cli.popen("batch", "/dev/zero", "--no-progress", preexec_fn=_memory_limit)

    result = run_cli.wait(proc, timeout=60)

    assert result.code == 2, result
    assert result.out == "" and "cannot read /dev/zero: not a regular file" in result.err, result
    assert fake.requests == []


# F5, F18, batch base_url: batch files ##########################################################

def test_f5_unicode_line_separators_inside_a_prompt_do_not_split_the_line(env, fake, run):
    prompts = ["one\u2028two", "three", "four\u0085five\u2029"]
    lines = [json.dumps({"prompt": p, "out": f"{n}.png"}, ensure_ascii=False)
             for n, p in enumerate(prompts)]
    (env.work / "b.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = run("batch", "b.jsonl", "--no-progress")

    assert result.code == 0, result
    assert result.out.split("\n")[:-1] == ["0.png", "1.png", "2.png"]


def test_f18_a_batch_file_with_a_byte_order_mark_works(env, fake, run):
    (env.work / "b.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(
        {"prompt": "one", "out": "one.png"}).encode() + b"\r\n")

    result = run("batch", "b.jsonl", "--no-progress")

    assert result.code == 0, result
    assert result.lines == ["one.png"]


@pytest.mark.parametrize("how", ["utf16-file", "latin1-stdin"])
def test_f18_a_batch_that_is_not_utf8_is_a_usage_error(env, fake, run, how):
    text = json.dumps({"prompt": "caf\u00e9"}, ensure_ascii=False) + "\n"
    if how == "utf16-file":
        (env.work / "b.jsonl").write_bytes(text.encode("utf-16"))
        result = run("batch", "b.jsonl", "--no-progress")
    else:
        result = run("batch", "-", "--no-progress", input=text.encode("latin-1"))

    assert result.code == 2, result
    assert "UTF-8" in result.err
    assert codex_requests(fake) == []


def test_f18_a_prompt_that_is_not_utf8_is_a_usage_error(env, fake, run):
    result = run("caf\udce9", "--no-progress")

    assert result.code == 2, result
    assert result.out == "" and "the prompt is not valid UTF-8 text" in result.err, result
    assert codex_requests(fake) == []


def test_a_batch_line_never_sends_the_chatgpt_login_to_another_host(env, fake, run):
    from fakeserver import FakeServer
    other = FakeServer().start()
    try:
        lines = [{"prompt": "elsewhere", "out": "a.png", "base_url": other.codex_base_url},
                 {"prompt": "here", "out": "b.png", "base_url": fake.codex_base_url},
                 {"prompt": "gateway", "out": "c.png", "backend": "gateway",
                  "base_url": other.url}]
        (env.work / "b.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

        result = run("batch", "b.jsonl", "--no-progress")

        assert result.code == 2, result
        assert result.lines[0].startswith("ERROR usage:") and "base_url" in result.lines[0]
        assert result.lines[1:] == ["b.png", "c.png"]
        assert not [r for r in other.requests if r.path.startswith("/backend-api/")]
    finally:
        other.stop()


# F9, F10: signals and a closed stdout ##########################################################

def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.png")) if folder.exists() else []


@pytest.mark.fault
def test_f9a_ctrl_c_after_some_images_prints_the_saved_ones(env, fake, run_cli):
    fake.queue("/codex/images/generations", ok(), ok(), ok(), stall(seconds=30))
    proc = run_cli.popen(PROMPT, "-n", "4", "--parallel", "4", "--route", "images",
                         "--no-progress")
    deadline = time.monotonic() + 20
    while len(_pngs(env.work / "assets")) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)

    result = run_cli.wait(proc, timeout=30)

    assert result.code == 130, result
    saved = _pngs(env.work / "assets")
    assert len(saved) == 3
    assert sorted(result.lines) == sorted(str(p.relative_to(env.work)) for p in saved)


@pytest.mark.fault
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_f9b_a_signal_during_a_meta_write_leaves_no_temporary_file(env, fake, run_cli, tmp_path, signum):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        "import os, time\n"
        "_fsync = os.fsync\n"
        "def fsync(fd):\n"
        "    time.sleep(1.0)  # a slow disk\n"
        "    _fsync(fd)\n"
        "os.fsync = fsync\n")
    proc = run_cli.popen(PROMPT, "-n", "2", "--parallel", "2", "--meta", "--no-progress",
                         env_vars={"PYTHONPATH": str(hooks)})
    deadline = time.monotonic() + 20
    while not _pngs(env.work / "assets"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signum)

    result = run_cli.wait(proc, timeout=30)

    assert result.code == 130, result
    folder = env.work / "assets" / "generated"
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    for sidecar in folder.glob("*.json"):
        json.loads(sidecar.read_text())  # complete, or not there at all


@pytest.mark.fault
def test_f10_stdout_closed_before_the_start_is_exit_141_not_a_bug(env, fake, run_cli):
    import subprocess
    proc = run_cli.popen(PROMPT, "--no-progress", stdout=subprocess.DEVNULL,
                         preexec_fn=lambda: os.close(1))

    result = run_cli.wait(proc, timeout=60)

    assert result.code == 141, result
    assert "internal error" not in result.err and "stdout" in result.err


@pytest.mark.fault
def test_f10_a_batch_piped_into_head_stops_with_141(env, fake, run_cli):
    lines = "".join(json.dumps({"prompt": f"icon {n}"}) + "\n" for n in range(8))
    (env.work / "b.jsonl").write_text(lines)
    fake.delay = 0.2
    proc = run_cli.popen("batch", "b.jsonl", "--parallel", "1", "--no-progress")
    proc.stdout.read(1)
    proc.stdout.close()
    proc.stdout = None

    result = run_cli.wait(proc, timeout=60)

    assert result.code == 141, result
    assert "internal error" not in result.err
    folder = env.work / "assets" / "generated"
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


# F15, F17, F27, F28 ############################################################################

def test_f15_meta_never_replaces_an_existing_sidecar_without_force(env, fake, run):
    (env.work / "fox.png.json").write_text("my notes")

    refused = run(PROMPT, "-o", "fox.png", "--meta", "--no-progress")

    assert refused.code == 7, refused
    assert codex_requests(fake) == []  # refused before anything was paid for
    assert (env.work / "fox.png.json").read_text() == "my notes"
    forced = run(PROMPT, "-o", "fox.png", "--meta", "--force", "--no-progress")
    assert forced.code == 0, forced
    assert json.loads((env.work / "fox.png.json").read_text())["prompt"] == PROMPT


def test_f15_meta_keeps_an_orphan_sidecar_beside_an_automatic_name(env, fake, run):
    folder = env.work / "assets" / "generated"
    folder.mkdir(parents=True)
    (folder / "a-paper-plane.png.json").write_text("my notes")

    result = run(PROMPT, "--meta", "--no-progress")

    assert result.code == 0, result
    assert result.lines == ["assets/generated/a-paper-plane.png"]
    assert (folder / "a-paper-plane.png.json").read_text() == "my notes"
    assert "already exists" in result.err
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_f15b_an_impossible_out_name_is_refused_before_the_request(env, fake, run):
    result = run(PROMPT, "-o", "x" * 300 + ".png", "--no-progress")

    assert result.code == 7, result
    assert "is longer than this filesystem allows" in result.err and "shorter -o" in result.err
    assert codex_requests(fake) == []


def test_f17_auth_status_never_prints_terminal_escapes(env, fake, run):
    from fakeserver import make_jwt
    tokens = dict(fake.auth.tokens)
    tokens["id_token"] = make_jwt({
        "email": "eve@example.com\x1b]0;owned-title\x07\x1b[2J",
        "https://api.openai.com/auth": {"chatgpt_plan_type": "plus\x1b[31mRED\n",
                                        "chatgpt_account_id": "acc\x1b[5m"}})
    env.secrets.add(tokens["id_token"])
    env.write_auth(doc=make_auth_json(tokens, last_refresh="2026-01-01T00:00:00Z\x1b[5m"))

    result = run("auth", "status")

    assert result.code == 0, result
    for char in "\x1b\x07":
        assert char not in result.out + result.err, result


@pytest.mark.parametrize("interval", ["1e9", "inf", "nan", "-5"])
def test_f27_the_device_login_interval_is_bounded(env, fake, run, interval):
    fake.auth.device_interval = interval
    fake.auth.device_pending = 2
    clock = {"now": 1000.0, "sleeps": []}

    def sleep(seconds):
        clock["sleeps"].append(seconds)
        clock["now"] += seconds

    result = run("auth", "login", seams={"monotonic": lambda: clock["now"], "sleep": sleep})

    assert result.code == 0, result
    assert clock["sleeps"] and all(0 <= s <= 60 for s in clock["sleeps"]), clock["sleeps"]


def test_f28_an_auth_file_others_can_read_draws_a_warning(env, fake, run):
    env.auth_file.chmod(0o644)

    result = run(PROMPT, "--no-progress")

    assert result.code == 0, result
    assert "other users can read" in result.err and "chmod 600" in result.err


def test_f28_a_gateway_token_file_others_can_read_draws_a_warning(env, fake, run):
    token = "gw_" + fake.api_key[3:]
    env.secrets.add(token)
    fake.gateway_token = token
    env.write_gateway_files(token=token, base_url=fake.url)
    (env.config_home / "codex-api" / "token").chmod(0o644)

    result = run(PROMPT, "--backend", "gateway", "--no-progress")

    assert result.code == 0, result
    assert "other users can read" in result.err and "chmod 600" in result.err

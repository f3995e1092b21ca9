"""Fault injection: the network and the server misbehave on purpose, one way per test.

Each test checks what a user would notice: the exit code, the message, that no file (and no
partial file) is left when the run failed, and the exact bytes when it succeeded. The TLS and
proxy tests put small relays of their own in front of the fake server.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

import imagegen
from conftest import dead_port
from fakeserver import (CLOUDFLARE_HTML, disconnect, ok, png_bytes, status, stall, trickle,
                        truncated)

RESPONSES = ("--route", "responses", "--retries", "0", "--no-progress")
IMAGES = ("--route", "images", "--retries", "0", "--no-progress")


def generated(env) -> list[str]:
    """Every entry of assets/generated (hidden ones too), or [] when it does not exist."""
    folder = env.work / "assets" / "generated"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def saved_bytes(env, result) -> list[bytes]:
    return [(env.work / line).read_bytes() for line in result.lines]


# Connection faults ##########################################################################

@pytest.mark.parametrize("behaviour, words", [
    (truncated(after=3), "connection broke"),          # reset in the middle of the stream
    (truncated(after=3, clean=True), "truncated"),     # a clean end before the image
    (disconnect(), "broke"),                           # hung up before any answer
])
def test_a_connection_cut_mid_stream_is_a_backend_error_and_leaves_no_file(
        fake, env, run, behaviour, words):
    fake.queue("/responses", behaviour)
    result = run("a red fox", *RESPONSES)
    assert result.code == 5, result
    assert words in result.err
    assert generated(env) == []


def test_a_cut_stream_is_sent_again_and_the_second_answer_is_saved_whole(fake, env, run):
    fake.queue("/responses", truncated(after=5))
    result = run("a red fox", "--route", "responses", "--retries", "1", "--no-progress")
    assert result.code == 0, result
    assert len(fake.requests_to("/responses")) == 2
    assert saved_bytes(env, result) == [fake.images_sent[-1]]
    assert generated(env) == ["a-red-fox.png"]


def test_a_server_trickling_one_byte_every_fifth_of_a_second_loses_to_the_total_timeout(
        fake, env, run):
    # Every byte comes well within --stall-timeout, so only the total budget can end it.
    fake.queue("/responses", trickle(interval=0.2))
    result = run("a red fox", *RESPONSES, "--timeout", "1", "--stall-timeout", "0.5")
    assert result.code == 5, result
    assert "timed out" in result.err
    assert generated(env) == []


def test_a_trickled_json_answer_loses_to_the_total_timeout_too(fake, env, run):
    fake.queue("/images/generations", trickle(interval=0.2))
    result = run("a red fox", *IMAGES, "--timeout", "1", "--stall-timeout", "0.5")
    assert result.code == 5, result
    assert "timed out" in result.err
    assert generated(env) == []


def test_a_stall_after_the_headers_is_reported_as_a_stall(fake, env, run):
    fake.queue("/responses", stall(seconds=5, after=2))
    result = run("a red fox", *RESPONSES, "--stall-timeout", "0.3")
    assert result.code == 5, result
    assert "stalled" in result.err
    assert generated(env) == []


def test_a_server_that_does_not_speak_http_is_a_backend_error(env, run):
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\nthis is not HTTP\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        result = run("a red fox", *RESPONSES,
                     env_vars={"IMAGEGEN_CODEX_BASE_URL": f"http://127.0.0.1:{port}/codex"})
    finally:
        listener.close()
        thread.join(5)
    assert result.code == 5, result
    assert "malformed HTTP answer" in result.err, result
    assert generated(env) == []


def test_an_html_page_with_status_200_on_the_stream_route_is_a_backend_error_not_a_dump(
        fake, env, run):
    fake.queue("/responses", status(200, CLOUDFLARE_HTML, content_type="text/html"))
    result = run("a red fox", *RESPONSES)
    assert result.code == 5, result
    assert "<html" not in result.err.lower() and "&nbsp;" not in result.err
    assert generated(env) == []


# Size and encoding ##########################################################################

def oversized_png(extra: int) -> bytes:
    """A real PNG header and IHDR followed by `extra` bytes of noise: sniffs as a PNG."""
    return png_bytes(16, 16) + os.urandom(extra)


@pytest.mark.parametrize("route, suffix", [("responses", "/responses"),
                                           ("images", "/images/generations")])
def test_an_answer_larger_than_the_cap_is_refused_and_nothing_is_saved(
        fake, env, run, monkeypatch, route, suffix):
    monkeypatch.setattr(imagegen, "MAX_RESPONSE_BYTES", 64 * 1024)
    fake.queue(suffix, ok(image=oversized_png(120_000)))
    result = run("a red fox", "--route", route, "--retries", "0", "--no-progress")
    assert result.code == 5, result
    assert "larger than" in result.err
    assert generated(env) == []


@pytest.mark.parametrize("route, suffix", [("responses", "/responses"),
                                           ("images", "/images/generations")])
def test_gzip_the_client_did_not_ask_for_is_decoded_and_the_image_saved_exactly(
        fake, env, run, route, suffix):
    fake.queue(suffix, ok(gzip=True))
    result = run("a red fox", "--route", route, "--retries", "0", "--no-progress")
    assert result.code == 0, result
    request = fake.requests_to(suffix)[-1]
    assert "gzip" not in (request.header("Accept-Encoding") or "")
    assert saved_bytes(env, result) == fake.images_sent


def test_a_gzip_bomb_is_stopped_at_the_cap(fake, env, run, monkeypatch):
    # 3 MB of zeros in base64 packs into a few KB of gzip: the cap must count inflated bytes.
    monkeypatch.setattr(imagegen, "MAX_RESPONSE_BYTES", 256 * 1024)
    fake.queue("/responses", ok(image=png_bytes(16, 16) + bytes(3_000_000), gzip=True))
    result = run("a red fox", *RESPONSES)
    assert result.code == 5, result
    assert "more than" in result.err
    assert generated(env) == []


def test_a_body_that_claims_gzip_but_is_not_is_a_backend_error(fake, env, run):
    fake.queue("/images/generations", status(200, b'{"data": []}', content_type="application/json",
                                             headers={"Content-Encoding": "gzip"}))
    result = run("a red fox", *IMAGES)
    assert result.code == 5, result
    assert "corrupt" in result.err
    assert generated(env) == []


@pytest.mark.parametrize("delta, said", [(1000, "1000 bytes short of its Content-Length"),
                                         (-20, "not JSON")])
def test_a_wrong_content_length_on_a_json_route_is_a_backend_error_and_leaves_no_file(
        fake, env, run, delta, said):
    # +1000: the whole JSON arrives, then the server hangs up 1000 bytes short of its promise;
    # -20: the body is cut where the server said it ends.
    fake.queue("/images/generations", ok(content_length_delta=delta))
    result = run("a red fox", *IMAGES)
    assert result.code == 5, result
    assert result.out == "" and said in result.err, result
    assert generated(env) == []


# Hostile numbers ############################################################################

def strict_json(text: str):
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_a_usage_limit_that_resets_at_infinity_is_exit_4_and_the_json_stays_json(fake, env, run):
    body = '{"error": {"type": "usage_limit_reached", "message": "limit", "resets_at": Infinity}}'
    fake.queue("/responses", status(429, body, content_type="application/json"))
    result = run("a red fox", *RESPONSES, "--json")
    assert result.code == 4, result
    assert strict_json(result.out)["error"]["kind"] == "rate_limit"


@pytest.mark.parametrize("value", ["inf", "1e300", "-1e300", "nan", "99999999999999999999"])
def test_rate_limit_headers_with_absurd_numbers_never_crash_the_run(fake, env, run, value):
    headers = {"x-codex-primary-used-percent": value, "x-codex-primary-reset-at": value,
               "x-codex-secondary-used-percent": "5", "x-codex-secondary-reset-at": value,
               "x-codex-secondary-window-minutes": value}
    fake.queue("/responses", status(500, {"error": {"message": "boom"}}, headers=headers))
    result = run("a red fox", *RESPONSES, "--json")
    assert result.code == 5, result
    strict_json(result.out)
    assert generated(env) == []


# TLS ########################################################################################

def pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def relay(client: socket.socket, upstream: socket.socket, first: bytes = b"") -> None:
    """Copy bytes both ways until either side hangs up."""
    if first:
        upstream.sendall(first)
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join(5)
    client.close()
    upstream.close()


class Listener:
    """A thread accepting connections on 127.0.0.1 and handing each to handle()."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.errors: list[str] = []
        self.closing = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            if self.closing:
                connection.close()
                return
            threading.Thread(target=self._guarded, args=(connection,), daemon=True).start()

    def _guarded(self, connection: socket.socket) -> None:
        try:
            self.handle(connection)
        except (OSError, ValueError) as exc:
            self.errors.append(repr(exc))
            connection.close()

    def handle(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closing = True
        try:  # wake the accept() call: closing the socket alone does not
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()


class TLSRelay(Listener):
    """https://127.0.0.1:port in front of the (plain http) fake, with a self-signed cert."""

    def __init__(self, cert: Path, key: Path, target_port: int) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.target_port = target_port
        self.handshakes_failed = 0
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1  # the client refused our certificate
            connection.close()
            return
        relay(tls, socket.create_connection(("127.0.0.1", self.target_port)))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: no certificate to test TLS with")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        capture_output=True, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr.decode()[-300:]}")
    return cert, key


@pytest.fixture
def tls_relay(fake, certificate):
    server = TLSRelay(*certificate, fake.port)
    yield server
    server.close()


def test_a_self_signed_certificate_is_refused_with_a_hint_about_ssl_cert_file(
        fake, env, run_cli, tls_relay):
    url = f"https://127.0.0.1:{tls_relay.port}/backend-api/codex"
    result = run_cli("a red fox", *RESPONSES,
                     env_vars={"IMAGEGEN_CODEX_BASE_URL": url, "SSL_CERT_FILE": None,
                               "SSL_CERT_DIR": None})
    assert result.code == 5, result
    assert "SSL_CERT_FILE" in result.err
    assert "not trusted" in result.err
    assert fake.requests_to("/responses") == []  # nothing got through
    assert generated(env) == []


def test_ssl_cert_file_naming_that_certificate_makes_the_same_server_work(
        fake, env, run_cli, tls_relay, certificate):
    url = f"https://127.0.0.1:{tls_relay.port}/backend-api/codex"
    result = run_cli("a red fox", *RESPONSES,
                     env_vars={"IMAGEGEN_CODEX_BASE_URL": url, "SSL_CERT_FILE": certificate[0]})
    assert result.code == 0, result
    assert len(fake.requests_to("/responses")) == 1
    assert saved_bytes(env, result) == fake.images_sent


# Proxies ####################################################################################

class Proxy(Listener):
    """A forwarding HTTP proxy that records what passes: absolute-URI requests for http://
    and CONNECT tunnels for https://."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        super().__init__()

    def handle(self, connection: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = connection.recv(65536)
            if not data:
                connection.close()
                return
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        request_line, _, headers = head.partition(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ")
        self.seen.append((method, target))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            upstream = socket.create_connection((host, int(port)))
            connection.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            relay(connection, upstream, rest)
            return
        url = target.split("://", 1)[1]
        authority, _, path = url.partition("/")
        host, _, port = authority.rpartition(":")
        upstream = socket.create_connection((host, int(port or 80)))
        first = f"{method} /{path} {version}\r\n".encode("latin-1") + headers + b"\r\n\r\n" + rest
        relay(connection, upstream, first)


@pytest.fixture
def proxy():
    server = Proxy()
    yield server
    server.close()


NO_PROXY_UNSET = {"NO_PROXY": None, "no_proxy": None}


def test_http_proxy_carries_the_requests_to_an_http_backend(fake, env, run, proxy):
    result = run("a red fox", *RESPONSES, env_vars={
        **NO_PROXY_UNSET, "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}"})
    assert result.code == 0, result
    assert ("POST", f"{fake.codex_base_url}/responses") in proxy.seen
    assert saved_bytes(env, result) == fake.images_sent


def test_https_proxy_tunnels_the_requests_to_an_https_backend(
        fake, env, run_cli, proxy, tls_relay, certificate):
    result = run_cli("a red fox", *RESPONSES, env_vars={
        **NO_PROXY_UNSET, "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}",
        "IMAGEGEN_CODEX_BASE_URL": f"https://127.0.0.1:{tls_relay.port}/backend-api/codex",
        "SSL_CERT_FILE": certificate[0]})
    assert result.code == 0, result
    assert proxy.seen == [("CONNECT", f"127.0.0.1:{tls_relay.port}")]
    assert len(fake.requests_to("/responses")) == 1
    assert saved_bytes(env, result) == fake.images_sent


def test_the_token_refresh_goes_through_the_proxy_too(fake, env, run, proxy):
    env.write_auth(expired=True)
    result = run("a red fox", *RESPONSES, env_vars={
        **NO_PROXY_UNSET, "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}"})
    assert result.code == 0, result
    assert ("POST", f"{fake.url}/oauth/token") in proxy.seen
    assert fake.auth.refresh_count == 1


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "*"])
def test_no_proxy_sends_the_requests_around_the_proxy(fake, env, run, proxy, no_proxy):
    result = run("a red fox", *RESPONSES, env_vars={
        "NO_PROXY": no_proxy, "no_proxy": no_proxy,
        "HTTP_PROXY": f"http://127.0.0.1:{proxy.port}",
        "HTTPS_PROXY": f"http://127.0.0.1:{proxy.port}"})
    assert result.code == 0, result
    assert proxy.seen == []
    assert len(fake.requests_to("/responses")) == 1


def test_a_proxy_that_is_down_is_a_backend_error(fake, env, run):
    port = dead_port()
    result = run("a red fox", *RESPONSES, env_vars={
        **NO_PROXY_UNSET, "HTTP_PROXY": f"http://127.0.0.1:{port}"})
    assert result.code == 5, result
    assert result.out == "" and "connection refused by the proxy" in result.err
    assert fake.requests_to("/responses") == []
    assert generated(env) == []


def test_a_proxy_that_is_down_is_named_in_the_message(fake, env, run):
    port = dead_port()
    result = run("a red fox", *RESPONSES, env_vars={
        **NO_PROXY_UNSET, "HTTP_PROXY": f"http://proxyuser:pr0xy-pa55word@127.0.0.1:{port}"})
    assert result.code == 5, result
    assert f"127.0.0.1:{port}" in result.err and "proxy" in result.err.lower(), result
    assert "pr0xy-pa55word" not in result.err and "proxyuser" not in result.err


# Files ######################################################################################

@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KB tmpfs (root only; skipped where mounting is not allowed)."""
    folder = tmp_path / "full"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here: {done.stderr.decode().strip()[:100]}")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.mark.parametrize("out", ["full/fox.png", "full/"])
def test_a_full_disk_is_exit_7_and_leaves_no_partial_file(fake, env, run, tiny_disk, out):
    fake.queue("/responses", ok(image=oversized_png(200_000)))
    result = run("a red fox", *RESPONSES, "-o", str(tiny_disk.parent / out))
    assert result.code == 7, result
    assert "cannot write" in result.err and "No space left" in result.err, result
    assert os.listdir(tiny_disk) == []


HOSTILE_PROMPTS = [
    "../../../etc/passwd", "..", "/", "a/b\\c/../d", "~/.codex/auth.json", "C:\\Windows\\win.ini",
    "\x1b[31mred\x1b[0m\x07 bell", "tab\there\nnew line\r\n", "\x00nul", "🦊🦊🦊", "名前 の 画像",
    "Ünïcödé façade", "CON", ".hidden", "--force", "x" * 3000, "word " * 600, "-" * 100,
]


@pytest.mark.parametrize("prompt", HOSTILE_PROMPTS, ids=range(len(HOSTILE_PROMPTS)))
def test_a_hostile_prompt_makes_a_safe_name_directly_in_assets_generated(fake, env, run, prompt):
    import re
    result = run(f"--prompt={prompt}", *RESPONSES)
    assert result.code == 0, result
    folder = (env.work / "assets" / "generated").resolve()
    [line] = result.lines
    path = (env.work / line).resolve()
    assert path.parent == folder
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*\.png", path.name), path.name
    assert len(path.stem) <= 48
    assert path.read_bytes() == fake.images_sent[-1]
    # Nothing else appeared anywhere in the test's directories.
    made = sorted(str(p.relative_to(env.tmp)) for p in env.tmp.rglob("*") if p.is_file())
    assert made == sorted(["home/.codex/auth.json", "home/.codex/codex-imagegen-quota.json",
                           str(path.relative_to(env.tmp.resolve()))]), made


def test_o_naming_a_symlink_never_writes_through_it(fake, env, run, tmp_path):
    victim = tmp_path / "elsewhere" / "victim.png"
    victim.parent.mkdir()
    victim.write_bytes(b"precious")
    link = env.work / "fox.png"
    link.symlink_to(victim)
    refused = run("a red fox", *RESPONSES, "-o", "fox.png")
    assert refused.code == 7, refused
    assert fake.requests_to("/responses") == []
    replaced = run("a red fox", *RESPONSES, "-o", "fox.png", "--force")
    assert replaced.code == 0, replaced
    assert victim.read_bytes() == b"precious"
    assert not link.is_symlink() and link.read_bytes() == fake.images_sent[-1]


@pytest.mark.parametrize("out", ["codex-link/fox.png", "codex-link/", "codex-link/sub/fox.png"])
def test_a_symlink_into_the_codex_home_is_refused(fake, env, run, out):
    (env.work / "codex-link").symlink_to(env.codex_home)
    before = sorted(os.listdir(env.codex_home))
    result = run("a red fox", *RESPONSES, "-o", out)
    assert result.code == 7, result
    assert "Codex home" in result.err
    assert sorted(os.listdir(env.codex_home)) == before
    assert fake.requests_to("/responses") == []


# What the server says reaches the terminal ##################################################

ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[1A\rfake: saved /etc/passwd\x08\x08\u202egnp.exe\u2066"
CONTROLS = ("\x1b", "\x07", "\x08", "\r", "\u202e", "\u2066")  # the last two reorder what is read


@pytest.mark.parametrize("behaviour", [
    "text_only", "error_body", "failed_event"])
def test_terminal_escapes_from_the_server_never_reach_stderr(fake, env, run, behaviour):
    from fakeserver import failed, text_only
    fake.queue("/responses", {
        "text_only": text_only(f"I won't {ESCAPES} draw that"),
        "error_body": status(400, {"error": {"message": f"bad {ESCAPES} request"}}),
        "failed_event": failed("weird_code", f"went {ESCAPES} wrong"),
    }[behaviour])
    result = run("a red fox", *RESPONSES)
    assert result.code in (5, 6), result
    for control in CONTROLS:
        assert control not in result.err, repr(result.err)
    assert "owned" in result.err  # the text itself is shown, only defanged


def test_terminal_escapes_from_the_server_never_reach_a_batch_error_line(fake, env, run):
    from fakeserver import text_only
    fake.queue("/responses", text_only(f"I won't {ESCAPES} draw that"))
    result = run("batch", "-", *RESPONSES, input='{"prompt": "a red fox"}\n')
    assert result.code == 6, result
    for control in CONTROLS:
        assert control not in result.out + result.err, repr(result.out)
    assert result.out.startswith("ERROR no_image:")

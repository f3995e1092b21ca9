"""`imagegen doctor`: one line a check with its fix, exit 0 / 3 / 5, never a secret, changes
nothing; and `imagegen auth logout` / `auth --help`, its neighbours on the command line."""
from __future__ import annotations

import json
import os
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from test_faults import TLSRelay, certificate  # noqa: F401 (a fixture)

USAGE = {
    "plan_type": "plus",
    "rate_limit": {
        "primary_window": {"used_percent": 12.5, "limit_window_seconds": 18000,
                           "reset_after_seconds": 3600, "reset_at": 4102444800},
        "secondary_window": {"used_percent": 3, "limit_window_seconds": 604800,
                             "reset_after_seconds": 86400, "reset_at": 4102444800},
    },
    "credits": None,
    "additional_rate_limits": [
        {"limit_name": "image_gen", "metered_feature": "image_gen",
         "rate_limit": {"primary_window": {"used_percent": 40, "limit_window_seconds": 86400,
                                           "reset_after_seconds": 600, "reset_at": 4102444800},
                        # a 0-minute window means "none": never shown
                        "secondary_window": {"used_percent": 0, "limit_window_seconds": 0,
                                             "reset_after_seconds": 0, "reset_at": 0}}},
    ],
}


def check(result, name: str) -> str:
    """The report line of one check (stdout), e.g. 'ok    auth file    ...'."""
    for line in result.out.splitlines():
        if line[6:].startswith(name + " ") or line[6:] == name:
            return line
    raise AssertionError(f"no {name!r} line in:\n{result.out}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UsageServer:
    """A ChatGPT backend that answers GET /backend-api/wham/usage and records the headers."""

    def __init__(self, status: int = 200, body: dict | None = None) -> None:
        self.seen: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                owner.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                data = json.dumps(body if body is not None else USAGE).encode()
                self.send_response(status if self.path == "/backend-api/wham/usage" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def codex_base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/backend-api/codex"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def usage_server():
    servers: list[UsageServer] = []

    def start(**kwargs) -> UsageServer:
        servers.append(UsageServer(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def tree(path) -> dict:
    """Every file under path with its bytes and mode: to show the doctor changed nothing."""
    found = {}
    for folder, _, names in os.walk(path):
        for name in names:
            full = os.path.join(folder, name)
            found[full] = (open(full, "rb").read(), os.stat(full).st_mode)
    return found


# ready ######################################################################################

def test_ready_with_a_login_and_the_server_reachable(fake, env, run):
    before = tree(env.tmp)
    result = run("doctor")
    assert result.code == 0, result
    assert result.err == ""
    assert check(result, "python").startswith("ok ")
    auth = check(result, "auth file")
    assert auth.startswith("ok ") and str(env.auth_file) in auth
    assert "chatgpt login" in auth and "mode 0600" in auth and "expires" in auth
    assert check(result, "codex home").startswith("ok ")
    host = check(result, "codex host")
    assert host.startswith("ok ") and f"127.0.0.1:{fake.port}" in host
    assert "DNS" in host and "TCP" in host and " ms" in host
    assert check(result, "auth host").startswith("ok ")
    assert check(result, "directory").startswith("ok ") and str(env.work) in check(result, "directory")
    assert check(result, "pillow")
    assert result.lines[-1] == "the codex backend is ready"
    # nothing was sent that costs quota, and nothing was written
    assert fake.requests_to("/responses") == [] and fake.requests_to("/images/generations") == []
    assert fake.requests_to("/oauth/token") == []
    assert tree(env.tmp) == before


def test_json_has_one_object_with_every_check(fake, env, run):
    result = run("doctor", "--json")
    assert result.code == 0, result
    payload = result.json
    assert payload["ok"] is True and payload["backend"] == "codex" and payload["exit_code"] == 0
    names = [c["name"] for c in payload["checks"]]
    for name in ("python", "auth file", "codex home", "codex host", "auth host", "usage",
                 "gateway", "api key", "pillow", "directory"):
        assert name in names
    host = next(c for c in payload["checks"] if c["name"] == "codex host")
    assert set(host["timings_ms"]) == {"dns", "tcp"}
    assert all(c["status"] in ("ok", "warn", "fail", "-") for c in payload["checks"])


def test_live_usage_comes_from_wham_usage_with_the_login(fake, env, run, usage_server):
    server = usage_server()
    result = run("doctor", env_vars={"IMAGEGEN_CODEX_BASE_URL": server.codex_base_url})
    assert result.code == 0, result
    line = check(result, "usage")
    assert line.startswith("ok "), result
    # the quota line's words, the image limit first
    assert line.split("usage", 1)[1].split()[:4] == ["plan", "plus;", "images", "daily:"], line
    assert "images daily: 40% used" in line
    assert "codex 5-hour: 12.5% used" in line and "codex weekly: 3% used" in line
    assert line.count("% used") == 3 and " 0% used" not in line  # the 0-minute window is hidden
    (seen,) = [s for s in server.seen if s["path"] == "/backend-api/wham/usage"]
    assert seen["authorization"] == f"Bearer {fake.auth.tokens['access_token']}"
    assert seen["chatgpt-account-id"] == env.read_auth()["tokens"]["account_id"]
    assert "originator" not in seen and "version" not in seen


def test_usage_refused_with_401_is_an_auth_failure(fake, env, run, usage_server):
    server = usage_server(status=401, body={"detail": "Unauthorized"})
    result = run("doctor", env_vars={"IMAGEGEN_CODEX_BASE_URL": server.codex_base_url})
    assert result.code == 3, result
    line = check(result, "usage")
    assert line.startswith("fail ") and "fix: run `imagegen auth login`" in line


def test_an_expired_token_is_not_refreshed_by_the_doctor(fake, env, run):
    env.write_auth(expired=True)
    before = env.auth_file.read_bytes()
    result = run("doctor")
    assert result.code == 0, result
    assert "refreshed on the next request" in check(result, "auth file")
    assert check(result, "usage").startswith("-")
    assert fake.requests_to("/oauth/token") == []
    assert env.auth_file.read_bytes() == before


# auth #######################################################################################

def test_no_login_is_exit_3_with_the_fix(fake, env, run):
    env.auth_file.unlink()
    result = run("doctor")
    assert result.code == 3, result
    line = check(result, "auth file")
    assert line.startswith("fail ") and "fix: run `imagegen auth login` (or `codex login`)" in line
    assert check(result, "usage").startswith("-")
    assert "not ready" in result.lines[-1]
    assert run("doctor", "--json").json["exit_code"] == 3


def test_keyring_only_config_is_named(fake, env, run):
    env.auth_file.unlink()
    env.write_codex_config('cli_auth_credentials_store = "keyring"\n')
    result = run("doctor")
    assert result.code == 3, result
    line = check(result, "auth file")
    assert line.startswith("fail ") and "keyring" in line and '"file"' in line


def test_an_api_key_auth_json_is_not_a_chatgpt_login(fake, env, run):
    env.secrets.add("sk-SECRETxdoctorapikey0123456789")
    env.write_auth(doc={"OPENAI_API_KEY": "sk-SECRETxdoctorapikey0123456789"})
    result = run("doctor")
    assert result.code == 3, result
    assert "apikey login" in check(result, "auth file")


def test_an_auth_file_others_can_read_is_a_warning(fake, env, run):
    env.auth_file.chmod(0o644)
    result = run("doctor")
    assert result.code == 0, result
    line = check(result, "auth file")
    assert line.startswith("warn ") and "mode 0644" in line and f"chmod 600 {env.auth_file}" in line


def test_when_the_backend_is_api_a_missing_login_is_only_a_warning(fake, env, run):
    env.auth_file.unlink()
    result = run("doctor", env_vars={"IMAGEGEN_BACKEND": "api", "IMAGEGEN_API_KEY": None})
    assert result.code == 3, result  # the api backend has no key either
    assert check(result, "auth file").startswith("warn ")
    assert check(result, "api key").startswith("fail ")
    env.write_api_config(mode=0o600)
    result = run("doctor", env_vars={"IMAGEGEN_BACKEND": "api"})
    assert result.code == 0, result
    assert check(result, "api key").startswith("ok ") and "mode 0600" in check(result, "api key")
    assert check(result, "api host").startswith("ok ")


def test_an_api_key_file_others_can_read_is_a_warning_without_the_key(fake, env, run):
    path = env.write_api_config(mode=0o644)
    result = run("doctor")
    line = check(result, "api key")
    assert line.startswith("warn ") and f"chmod 600 {path}" in line
    assert fake.api_key not in result.out + result.err


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root can write into a read-only directory")
def test_a_codex_home_that_cannot_be_written_is_said(fake, env, run):
    env.codex_home.chmod(0o500)
    try:
        result = run("doctor")
    finally:
        env.codex_home.chmod(0o700)
    line = check(result, "codex home")
    assert line.startswith("warn ") and "permission denied" in line and "fix: make" in line


# network ####################################################################################

def test_a_refused_connection_is_exit_5(fake, env, run):
    port = closed_port()
    result = run("doctor", env_vars={"IMAGEGEN_CODEX_BASE_URL": f"http://127.0.0.1:{port}/backend-api/codex"})
    assert result.code == 5, result
    line = check(result, "codex host")
    assert line.startswith("fail ") and "TCP failed: connection refused" in line and "fix:" in line
    assert check(result, "auth file").startswith("ok ")


def test_a_name_that_does_not_resolve_is_exit_5(fake, env, run):
    import imagegen

    class NoDNS(imagegen.Probes):
        def resolve(self, host, port, timeout):
            if host == "chatgpt.example":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return super().resolve(host, port, timeout)

    result = run("doctor", env_vars={"IMAGEGEN_CODEX_BASE_URL": "https://chatgpt.example/backend-api/codex"},
                 seams={"probes": NoDNS()})
    assert result.code == 5, result
    line = check(result, "codex host")
    assert "chatgpt.example:443" in line and "DNS failed" in line and "does not resolve" in line
    assert check(result, "auth host").startswith("ok ")  # the rest still ran


def test_localhost_resolves(fake, env, run):
    result = run("doctor", env_vars={"IMAGEGEN_CODEX_BASE_URL": f"http://localhost:{fake.port}/backend-api/codex"})
    assert result.code == 0, result
    assert check(result, "codex host").startswith("ok ")


def test_the_proxy_the_transport_would_use_is_the_one_checked(fake, env, run):
    port = closed_port()
    result = run("doctor", env_vars={"HTTP_PROXY": f"http://127.0.0.1:{port}", "http_proxy": None,
                                     "NO_PROXY": "", "no_proxy": None})
    assert result.code == 5, result
    line = check(result, "codex host")
    assert f"via proxy 127.0.0.1:{port}" in line and "connection refused" in line


@pytest.fixture
def tls_server(fake, certificate):  # noqa: F811 (the fixture imported above)
    """A TLS relay to the fake server, with a self-signed certificate (test_faults')."""
    cert, key = certificate
    server = TLSRelay(cert, key, fake.port)
    yield server, cert
    server.close()


def test_an_untrusted_certificate_fails_with_the_ssl_cert_file_fix(fake, env, run, tls_server):
    server, _ = tls_server
    result = run("doctor", env_vars={
        "IMAGEGEN_CODEX_BASE_URL": f"https://127.0.0.1:{server.port}/backend-api/codex",
        "SSL_CERT_FILE": None, "SSL_CERT_DIR": None})
    assert result.code == 5, result
    line = check(result, "codex host")
    assert line.startswith("fail ") and "TLS failed" in line and "not trusted" in line
    assert "fix: behind a corporate proxy or TLS inspection, set SSL_CERT_FILE" in line


def test_ssl_cert_file_makes_the_handshake_pass(fake, env, run, tls_server):
    server, cert = tls_server
    result = run("doctor", "--json", env_vars={
        "IMAGEGEN_CODEX_BASE_URL": f"https://127.0.0.1:{server.port}/backend-api/codex",
        "SSL_CERT_FILE": str(cert)})
    host = next(c for c in result.json["checks"] if c["name"] == "codex host")
    assert host["status"] == "ok", result
    assert set(host["timings_ms"]) == {"dns", "tcp", "tls"} and "TLS" in host["detail"]


def test_a_gateway_that_is_not_running_is_not_a_failure_unless_chosen(fake, env, run):
    port = closed_port()
    result = run("doctor", env_vars={"CODEX_API_BASE_URL": f"http://127.0.0.1:{port}"})
    assert result.code == 0, result
    assert check(result, "gateway").startswith("- ") and "only for --backend gateway" in check(result, "gateway")
    result = run("doctor", env_vars={"CODEX_API_BASE_URL": f"http://127.0.0.1:{port}",
                                     "IMAGEGEN_BACKEND": "gateway"})
    assert result.code == 5, result
    line = check(result, "gateway")
    assert line.startswith("fail ") and "agent-cli-to-api" in line


def test_doctor_takes_only_json(fake, env, run):
    result = run("doctor", "--size", "1024x1024")
    assert result.code == 2 and "imagegen doctor takes no --size" in result.err


# auth logout and auth --help ################################################################

def test_auth_help_is_help(fake, env, run):
    result = run("auth", "--help")
    assert result.code == 0 and "imagegen auth logout" in result.out
    assert run("auth", "status", "--help").code == 0


def test_an_unknown_auth_command_is_named_with_a_suggestion(fake, env, run):
    result = run("auth", "statsu")
    assert result.code == 2
    assert "unknown auth command 'statsu' (status, login, logout); did you mean status?" in result.err


def test_logout_keeps_codex_login_and_removes_the_quota_cache(fake, env, run):
    cache = env.codex_home / "codex-imagegen-quota.json"
    cache.write_text("{}")
    before = env.auth_file.read_bytes()
    result = run("auth", "logout")
    assert result.code == 0, result
    assert not cache.exists()
    assert env.auth_file.read_bytes() == before
    assert "kept" in result.err and "--force" in result.err


def test_logout_force_removes_the_login_after_a_backup(fake, env, run):
    before = env.auth_file.read_bytes()
    result = run("auth", "logout", "--force")
    assert result.code == 0, result
    assert not env.auth_file.exists()
    backup = env.codex_home / "auth.json.bak"
    assert backup.read_bytes() == before
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert run("auth", "status").code == 3


def test_logout_force_keeps_an_api_key_in_the_same_file(fake, env, run):
    env.secrets.add("sk-SECRETxkeptapikey0123456789ab")
    doc = env.write_auth(OPENAI_API_KEY="sk-SECRETxkeptapikey0123456789ab", auth_mode="chatgpt")
    result = run("auth", "logout", "--force")
    assert result.code == 0, result
    kept = env.read_auth()
    assert kept["OPENAI_API_KEY"] == doc["OPENAI_API_KEY"] and "tokens" not in kept
    assert kept["auth_mode"] == "apikey"

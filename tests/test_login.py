"""`imagegen auth status` and `imagegen auth login` (the device-code flow), against the fake.

What is asserted is what a user sees and keeps: the exit code, the lines on stdout and stderr
(and the --json object), what reached the fake issuer, and auth.json as written (field by
field, its mode, its backup). The autouse secret scan fails any test that prints a token.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import stat
import sys
import time
from pathlib import Path

import pytest

from conftest import Result
from fakeserver import (
    AUTH_CLAIM, CLIENT_ID, SECRET_MARKER, jwt_claims, make_auth_json, make_secret, status,
)

RFC3339_Z_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def short(account_id: str) -> str:
    return f"{account_id[:4]}…{account_id[-4:]}"


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def field(result: Result, label: str) -> str | None:
    """The value printed after `label:` on stdout, or None when the line is missing."""
    for line in result.out.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == label:
            return value.strip()
    return None


def text_and_json(run, *extra: str) -> tuple[Result, Result]:
    return run("auth", "status", *extra), run("auth", "status", "--json", *extra)


class FakeClock:
    """monotonic() and sleep() for one run: sleeping advances the clock at once."""

    def __init__(self, interrupt_on: int | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.interrupt_on = interrupt_on

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.interrupt_on is not None and len(self.sleeps) >= self.interrupt_on:
            raise KeyboardInterrupt
        self.now += seconds



# auth status ##################################################################################

def test_status_of_a_chatgpt_login(env, fake, run):
    fake.auth.email, fake.auth.plan = "ada@example.org", "pro"
    doc = env.write_auth(doc=make_auth_json(fake.auth.issue()))
    tokens = doc["tokens"]
    account = tokens["account_id"]
    expires = utc(jwt_claims(tokens["access_token"])["exp"])

    text, as_json = text_and_json(run)

    assert text.code == 0, text
    assert field(text, "auth file") == str(env.auth_file)
    assert field(text, "login") == "chatgpt"
    assert field(text, "account") == short(account)
    assert field(text, "plan") == "pro"
    assert field(text, "email") == "ada@example.org"
    assert expires in field(text, "access token expires")
    assert field(text, "last refresh") == doc["last_refresh"]
    assert field(text, "usable") == "yes"
    assert text.err == ""

    assert as_json.code == 0, as_json
    facts = as_json.json
    assert facts["auth_file"] == str(env.auth_file)
    assert facts["kind"] == "chatgpt"
    assert facts["usable"] is True
    assert facts["account_id"] == short(account)
    assert facts["plan"] == "pro"
    assert facts["email"] == "ada@example.org"
    assert facts["access_token_expires_at"] == expires
    assert facts["access_token_expired"] is False
    assert facts["last_refresh"] == doc["last_refresh"]
    assert facts["warnings"] == []

    for result in (text, as_json):
        assert account not in result.out + result.err  # only the shortened form
    # status never refreshes: its only call is the live usage (GET wham/usage, no quota spent)
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/backend-api/wham/usage")] * 2
    assert fake.auth.refresh_attempts == 0


def test_status_reads_the_account_id_from_the_id_token_claim(env, fake, run):
    doc = make_auth_json(fake.auth.tokens)
    del doc["tokens"]["account_id"]
    env.write_auth(doc=doc)
    account = jwt_claims(doc["tokens"]["id_token"])[AUTH_CLAIM]["chatgpt_account_id"]

    result = run("auth", "status", "--json")

    assert result.code == 0, result
    assert result.json["account_id"] == short(account)


def test_status_of_an_expired_token_with_a_refresh_token_is_fine(env, fake, run):
    doc = env.write_auth(expired=True)
    before = env.auth_file.read_bytes()
    expires = utc(jwt_claims(doc["tokens"]["access_token"])["exp"])

    text, as_json = text_and_json(run)

    assert text.code == 0, text
    assert "expired" in field(text, "access token expires")
    assert expires in field(text, "access token expires")
    assert field(text, "usable") == "yes"
    assert "refresh" in text.err and "error" not in text.err
    assert as_json.code == 0, as_json
    facts = as_json.json
    assert facts["usable"] is True
    assert facts["access_token_expired"] is True
    assert facts["access_token_expires_at"] == expires
    assert any("refresh" in warning for warning in facts["warnings"])
    assert fake.requests == []
    assert env.auth_file.read_bytes() == before


def test_status_of_an_expired_token_without_refresh_token_is_exit_3(env, fake, run):
    doc = make_auth_json(fake.auth.issue(expired=True))
    doc["tokens"]["refresh_token"] = None
    env.write_auth(doc=doc)

    text, as_json = text_and_json(run)

    assert text.code == 3, text
    assert field(text, "usable") == "no"
    assert "imagegen auth login" in text.err
    assert as_json.code == 3, as_json
    assert as_json.json["usable"] is False
    assert "imagegen auth login" in as_json.json["problem"]


def test_status_without_a_login_file_is_exit_3(env, fake, run):
    env.auth_file.unlink()

    text, as_json = text_and_json(run)

    assert text.code == 3, text
    assert field(text, "auth file") == str(env.auth_file)
    assert field(text, "login") == "none"
    assert field(text, "usable") == "no"
    assert "imagegen auth login" in text.err
    assert as_json.code == 3, as_json
    facts = as_json.json
    assert facts["auth_file"] == str(env.auth_file)
    assert facts["kind"] == "none"
    assert facts["usable"] is False
    assert "imagegen auth login" in facts["problem"]
    assert not env.auth_file.exists()


def test_status_follows_codex_auth_file(env, fake, run, tmp_path):
    elsewhere = tmp_path / "other" / "auth.json"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(env.auth_file.read_bytes())
    elsewhere.chmod(0o600)
    env.auth_file.unlink()

    result = run("auth", "status", "--json", env_vars={"CODEX_AUTH_FILE": str(elsewhere)})

    assert result.code == 0, result
    assert result.json["auth_file"] == str(elsewhere)


@pytest.mark.parametrize("doc", [
    {"auth_mode": "apikey", "OPENAI_API_KEY": "KEY", "tokens": None},
    {"OPENAI_API_KEY": "KEY"},
], ids=["auth_mode-apikey", "old-file-with-key"])
def test_status_of_an_api_key_file_is_exit_3_and_points_at_the_responses_backend(env, fake, run, doc):
    api_key = make_secret("sk-")
    env.secrets.add(api_key)
    env.write_auth(doc=dict(doc, OPENAI_API_KEY=api_key))

    text, as_json = text_and_json(run)

    assert text.code == 3, text
    assert field(text, "login") == "apikey"
    assert field(text, "usable") == "no"
    assert "--backend responses" in text.err
    assert "imagegen auth login" in text.err
    assert as_json.code == 3, as_json
    facts = as_json.json
    assert facts["kind"] == "apikey"
    assert facts["usable"] is False
    assert "--backend responses" in facts["problem"]


def test_status_of_a_keyring_login_is_exit_3_with_the_fix(env, fake, run):
    env.auth_file.unlink()
    env.write_codex_config('cli_auth_credentials_store = "keyring"\n')

    text, as_json = text_and_json(run)

    assert text.code == 3, text
    for message in (text.err, as_json.json["problem"]):
        assert "keyring" in message
        assert 'cli_auth_credentials_store' in message and '"file"' in message
        assert "imagegen auth login" in message
    assert as_json.code == 3
    assert as_json.json["usable"] is False


def test_status_of_a_file_that_is_not_json_is_exit_3(env, fake, run):
    env.auth_file.write_bytes(b"{not json")

    text, as_json = text_and_json(run)

    assert text.code == 3 and as_json.code == 3
    assert "not valid JSON" in text.err
    assert as_json.json["usable"] is False
    assert env.auth_file.read_bytes() == b"{not json"


@pytest.mark.parametrize("mode, warned", [(0o644, True), (0o640, True), (0o600, False)])
def test_status_warns_when_others_can_read_the_file(env, fake, run, mode, warned):
    env.auth_file.chmod(mode)

    text, as_json = text_and_json(run)

    assert text.code == 0 and as_json.code == 0
    assert ("warning" in text.err and "chmod 600" in text.err) is warned
    assert any("chmod 600" in w for w in as_json.json["warnings"]) is warned
    assert mode_of(env.auth_file) == mode  # a status never changes the file


def test_status_takes_no_other_option(env, fake, run):
    result = run("auth", "status", "--force")

    assert result.code == 2, result
    assert result.out == ""
    assert result.err == "imagegen: error: imagegen auth status takes no --force\n"
    assert fake.requests == []


# auth login ###################################################################################

def test_device_login_end_to_end(env, fake, run):
    env.auth_file.unlink()
    fake.auth.device_pending = 2

    result = run("auth", "login")

    assert result.code == 0, result
    steps = [r.path for r in fake.requests]
    assert steps == ["/api/accounts/deviceauth/usercode"] + ["/api/accounts/deviceauth/token"] * 3 \
        + ["/oauth/token"]
    first = fake.requests[0]
    assert first.json == {"client_id": CLIENT_ID}
    polls = fake.requests_to("/deviceauth/token")
    user_code = polls[0].json["user_code"]
    assert all(set(p.json) == {"device_auth_id", "user_code"} for p in polls)
    assert fake.auth.device_polls == 3

    # What the user is told: where to go, the code, and never to share it (all on stderr).
    assert f"{fake.url}/codex/device" in result.err
    assert user_code in result.err
    assert "never share" in result.err.lower()
    assert user_code not in result.out

    # The code exchange: form-encoded, as Codex sends it.
    exchange = fake.requests_to("/oauth/token")[0]
    assert exchange.content_type == "application/x-www-form-urlencoded"
    form = exchange.form
    assert set(form) == {"grant_type", "code", "redirect_uri", "client_id", "code_verifier"}
    assert form["grant_type"] == "authorization_code"
    assert form["redirect_uri"] == f"{fake.url}/deviceauth/callback"
    assert form["client_id"] == CLIENT_ID
    assert form["code"].startswith("ac_" + SECRET_MARKER)
    assert form["code_verifier"].startswith("cv_" + SECRET_MARKER)
    assert fake.auth.login_count == 1  # the issuer accepted code and verifier

    # auth.json in Codex's format, field by field.
    assert mode_of(env.auth_file) == 0o600
    doc = env.read_auth()
    assert set(doc) == {"auth_mode", "OPENAI_API_KEY", "tokens", "last_refresh"}
    assert doc["auth_mode"] == "chatgpt"
    assert doc["OPENAI_API_KEY"] is None
    issued = fake.auth.tokens
    assert doc["tokens"] == {"id_token": issued["id_token"], "access_token": issued["access_token"],
                             "refresh_token": issued["refresh_token"],
                             "account_id": fake.auth.account_id}
    claim = jwt_claims(issued["id_token"])[AUTH_CLAIM]["chatgpt_account_id"]
    assert doc["tokens"]["account_id"] == claim
    assert re.match(RFC3339_Z_PATTERN, doc["last_refresh"]), doc["last_refresh"]
    stamp = datetime.datetime.strptime(doc["last_refresh"][:19], "%Y-%m-%dT%H:%M:%S")
    age = time.time() - stamp.replace(tzinfo=datetime.timezone.utc).timestamp()
    assert -5 < age < 300
    assert not (env.codex_home / "auth.json.bak").exists()
    leftovers = set(os.listdir(env.codex_home)) - {"auth.json", "auth.lock", "auth.json.lock"}
    assert leftovers == set()


def test_device_login_then_status_and_an_image(env, fake, run):
    env.auth_file.unlink()

    login = run("auth", "login")
    status_after = run("auth", "status", "--json")
    image = run("a paper plane", "--no-progress")

    assert login.code == 0, login
    assert status_after.code == 0 and status_after.json["kind"] == "chatgpt"
    assert image.code == 0, image
    sent = [r for r in fake.requests if r.path.startswith("/backend-api/codex/")]
    assert sent[0].bearer == fake.auth.tokens["access_token"]
    assert sent[0].header("ChatGPT-Account-ID") == fake.auth.account_id


def test_device_login_accepts_usercode_spelling(env, fake, run):
    fake.auth.device_user_code_key = "usercode"

    result = run("auth", "login")

    assert result.code == 0, result
    polls = fake.requests_to("/deviceauth/token")
    assert polls and polls[0].json["user_code"] in result.err
    assert env.read_auth()["tokens"]["access_token"] == fake.auth.tokens["access_token"]


@pytest.mark.parametrize("pending_status", [403, 404])
def test_device_login_treats_403_and_404_as_pending(env, fake, run, pending_status):
    fake.auth.device_pending = 2
    fake.auth.device_pending_status = pending_status

    result = run("auth", "login")

    assert result.code == 0, result
    assert fake.auth.device_polls == 3
    assert fake.auth.login_count == 1


def test_device_login_backs_up_an_existing_login(env, fake, run):
    old_doc = env.read_auth()
    old_doc["some_future_setting"] = {"kept": True}
    env.write_auth(doc=old_doc)
    env.auth_file.chmod(0o644)
    before = env.auth_file.read_bytes()

    result = run("auth", "login")

    assert result.code == 0, result
    backup = env.codex_home / "auth.json.bak"
    assert backup.read_bytes() == before
    assert mode_of(backup) == 0o600
    assert mode_of(env.auth_file) == 0o600
    doc = env.read_auth()
    assert doc["tokens"]["access_token"] == fake.auth.tokens["access_token"]
    assert doc["tokens"]["access_token"] != old_doc["tokens"]["access_token"]


def test_device_login_creates_a_missing_codex_home_0700(env, fake, run):
    codex_home = env.tmp / "fresh-home" / ".codex"

    result = run("auth", "login", env_vars={"CODEX_HOME": str(codex_home)})

    assert result.code == 0, result
    assert mode_of(codex_home) == 0o700
    auth_file = codex_home / "auth.json"
    assert mode_of(auth_file) == 0o600
    assert json.loads(auth_file.read_text())["tokens"]["account_id"] == fake.auth.account_id


@pytest.mark.parametrize("interval, seconds", [("3", 3.0), (3, 3.0), ("2.5", 2.5), (7, 7.0)],
                         ids=["string", "number", "string-fraction", "another-number"])
def test_device_login_polls_at_the_servers_interval(env, fake, run, interval, seconds):
    fake.auth.device_interval = interval
    fake.auth.device_pending = 2
    clock = FakeClock()

    result = run("auth", "login",
                 seams={"monotonic": clock.monotonic, "sleep": clock.sleep})

    assert result.code == 0, result
    assert fake.auth.device_polls == 3
    assert len(clock.sleeps) >= 2  # at least between the polls
    assert set(clock.sleeps) == {seconds}


def test_device_login_not_enabled_is_exit_3(env, fake, run):
    before = env.auth_file.read_bytes()
    fake.queue("/deviceauth/usercode", status(404))

    result = run("auth", "login")

    assert result.code == 3, result
    assert "not enabled" in result.err
    assert fake.requests_to("/deviceauth/token") == []
    assert env.auth_file.read_bytes() == before
    assert not (env.codex_home / "auth.json.bak").exists()


@pytest.mark.parametrize("code", [500, 400, 401])
def test_device_login_failure_while_polling_is_exit_3_and_writes_nothing(env, fake, run, code):
    env.auth_file.unlink()
    fake.queue("/deviceauth/token", status(403), status(code))

    result = run("auth", "login")

    assert result.code == 3, result
    assert "device login failed" in result.err
    assert len(fake.requests_to("/deviceauth/token")) == 2
    assert fake.requests_to("/oauth/token") == []
    assert not env.auth_file.exists()
    assert set(os.listdir(env.codex_home)) <= {"auth.lock", "auth.json.lock"}


def test_device_login_failed_exchange_is_exit_3_and_keeps_the_old_login(env, fake, run):
    before = env.auth_file.read_bytes()
    fake.queue("/oauth/token", status(400, {"error": "invalid_grant"}))

    result = run("auth", "login")

    assert result.code == 3, result
    assert "device login failed at the token exchange" in result.err
    assert "invalid_grant" in result.err
    assert env.auth_file.read_bytes() == before
    assert not (env.codex_home / "auth.json.bak").exists()


def test_device_login_gives_up_after_15_minutes(env, fake, run):
    env.auth_file.unlink()
    fake.auth.device_pending = 10 ** 6  # the user never enters the code
    fake.auth.device_interval = "30"
    clock = FakeClock()
    start = clock.now

    result = run("auth", "login",
                 seams={"monotonic": clock.monotonic, "sleep": clock.sleep})

    assert result.code == 3, result
    assert "15 minutes" in result.err
    assert 15 * 60 <= clock.now - start <= 15 * 60 + 30
    assert 28 <= fake.auth.device_polls <= 31  # every 30 s for 15 minutes, then stop
    assert fake.requests_to("/oauth/token") == []
    assert not env.auth_file.exists()


def test_device_login_interrupted_is_exit_130_and_touches_nothing(env, fake, run):
    before = env.auth_file.read_bytes()
    fake.auth.device_pending = 10 ** 6
    clock = FakeClock(interrupt_on=3)

    result = run("auth", "login",
                 seams={"monotonic": clock.monotonic, "sleep": clock.sleep})

    assert result.code == 130, result
    assert env.auth_file.read_bytes() == before
    assert set(os.listdir(env.codex_home)) <= {"auth.json", "auth.lock", "auth.json.lock"}


def test_device_login_opens_the_browser_when_asked(env, fake, run_cli, tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text("import sys\nopen(sys.argv[2], 'w').write(sys.argv[1])\n")
    command = f"{sys.executable} {browser} %s {opened}"

    result = run_cli("auth", "login", "--open-browser", env_vars={"BROWSER": command})

    assert result.code == 0, result
    assert opened.read_text() == f"{fake.url}/codex/device"


def test_device_login_does_not_open_a_browser_unless_asked(env, fake, run_cli, tmp_path):
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.py"
    browser.write_text("import sys\nopen(sys.argv[2], 'w').write(sys.argv[1])\n")

    result = run_cli("auth", "login", env_vars={"BROWSER": f"{sys.executable} {browser} %s {opened}"})

    assert result.code == 0, result
    assert not opened.exists()


def test_auth_login_refuses_other_options(env, fake, run):
    result = run("auth", "login", "--json", "--force")

    assert result.code == 2, result
    assert result.json["error"]["kind"] == "usage"
    assert "imagegen auth login takes no --force" in result.json["error"]["message"]
    assert fake.requests == []

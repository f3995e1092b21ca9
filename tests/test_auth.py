"""The ChatGPT login of the codex backend: where it is read from, when it is refused, and how
it is refreshed (before a request, after a 401, under Codex's locks, across processes).

Each test drives imagegen as a user would (in-process with `run`, or as subprocesses with
`run_cli` where processes must race) and asserts what a user would notice: the exit code and
message, what reached the fake server and in which order, and auth.json as it is left on disk
(its bytes, its mode, its fields). The autouse secret scan fails any test whose output holds a
token.
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import Result
from fakeserver import (
    CLIENT_ID, make_auth_json, make_secret, refresh_error, status, write_auth_file,
)

PROMPT = "a paper plane"
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
# What a Codex home may hold after a run: the login, Codex's two lock files, our quota note.
EXPECTED_IN_CODEX_HOME = {"auth.json", "auth.lock", "auth.json.lock", "codex-imagegen-quota.json"}


def generate(run, *extra: str, **kwargs) -> Result:
    return run(PROMPT, "--no-progress", "--retries", "0", *extra, **kwargs)


def codex_requests(fake) -> list:
    """Every request that reached the Codex backend (either route), in order."""
    return [r for r in fake.requests if r.path.startswith("/backend-api/codex/")]


def error_lines(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if "error" in line]


def assert_saved_what_was_sent(env, fake, result: Result, count: int = 1) -> None:
    assert result.code == 0, result
    assert len(result.lines) == count, result
    saved = sorted((env.work / line).read_bytes() for line in result.lines)
    assert saved == sorted(fake.images_sent[-count:])


def assert_no_stray_files(folder: Path) -> None:
    """No temporary file (.auth-XXXXXX and the like) left beside auth.json."""
    assert set(os.listdir(folder)) <= EXPECTED_IN_CODEX_HOME, sorted(os.listdir(folder))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def seconds_since(stamp: str) -> float:
    when = datetime.datetime.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")
    return time.time() - when.replace(tzinfo=datetime.timezone.utc).timestamp()


def doc_with_unknown_fields(tokens: dict) -> dict:
    """auth.json as a newer Codex might write it: fields this tool does not know, top level
    and inside tokens, and an old last_refresh."""
    doc = make_auth_json(tokens, last_refresh="2020-01-02T03:04:05.000000Z")
    doc["tokens"]["token_kind_from_the_future"] = {"nested": [1, 2, 3]}
    doc["agent_identity"] = {"name": "kept", "since": 42}
    doc["some_future_setting"] = True
    return doc


# Where the login is read from #################################################################

def test_codex_auth_file_wins_over_codex_home(env, fake, run, tmp_path):
    api_key = make_secret("sk-")
    env.secrets.add(api_key)
    env.write_auth(doc={"auth_mode": "apikey", "OPENAI_API_KEY": api_key})
    elsewhere = tmp_path / "elsewhere" / "auth.json"
    elsewhere.parent.mkdir()
    tokens = fake.auth.issue()
    write_auth_file(elsewhere, make_auth_json(tokens))

    result = generate(run, env_vars={"CODEX_AUTH_FILE": str(elsewhere)})

    assert_saved_what_was_sent(env, fake, result)
    sent = codex_requests(fake)
    assert [r.bearer for r in sent] == [tokens["access_token"]]
    assert sent[0].header("ChatGPT-Account-ID") == tokens["account_id"]


def test_codex_auth_file_is_refreshed_in_its_own_folder(env, fake, run, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "login.json"
    elsewhere.parent.mkdir()
    old = fake.auth.issue(expired=True)
    write_auth_file(elsewhere, make_auth_json(old))
    codex_home_before = env.auth_file.read_bytes()

    result = generate(run, env_vars={"CODEX_AUTH_FILE": str(elsewhere)})

    assert_saved_what_was_sent(env, fake, result)
    assert fake.auth.refresh_count == 1
    rewritten = json.loads(elsewhere.read_text())
    assert rewritten["tokens"]["access_token"] == fake.auth.tokens["access_token"]
    assert mode_of(elsewhere) == 0o600
    assert env.auth_file.read_bytes() == codex_home_before
    # Codex's locks live beside the file they protect.
    assert (elsewhere.parent / "auth.lock").exists()
    assert (elsewhere.parent / "login.json.lock").exists()


def test_missing_auth_file_is_exit_3_with_the_fix_and_sends_nothing(env, fake, run):
    env.auth_file.unlink()

    result = generate(run)

    assert result.code == 3, result
    assert result.out == ""
    lines = error_lines(result)
    assert len(lines) == 1, result
    assert "imagegen auth login" in lines[0]
    assert str(env.auth_file) in lines[0]
    assert fake.requests == []
    assert not (env.work / "assets").exists()


def test_missing_auth_file_in_json_mode(env, fake, run):
    env.auth_file.unlink()

    result = generate(run, "--json")

    assert result.code == 3, result
    payload = result.json
    assert payload["ok"] is False
    assert payload["error"]["kind"] == "auth"
    assert payload["error"]["exit_code"] == 3
    assert "imagegen auth login" in payload["error"]["message"]
    assert fake.requests == []


@pytest.mark.parametrize("doc", [
    {"auth_mode": "apikey", "OPENAI_API_KEY": "KEY", "tokens": None, "last_refresh": None},
    {"OPENAI_API_KEY": "KEY"},  # an older Codex: no auth_mode, the key decides
    {"OPENAI_API_KEY": "KEY", "tokens": "TOKENS"},  # the key wins even beside ChatGPT tokens
], ids=["auth_mode-apikey", "old-file-with-key", "old-file-with-key-and-tokens"])
def test_api_key_only_login_is_exit_3_and_sends_nothing(env, fake, run, doc):
    api_key = make_secret("sk-")
    env.secrets.add(api_key)
    doc = dict(doc, OPENAI_API_KEY=api_key)
    if doc.get("tokens") == "TOKENS":
        doc["tokens"] = dict(fake.auth.tokens)
    env.write_auth(doc=doc)
    before = env.auth_file.read_bytes()

    result = generate(run)

    assert result.code == 3, result
    lines = error_lines(result)
    assert len(lines) == 1, result
    assert "API key" in lines[0]
    assert "imagegen auth login" in lines[0]
    assert "--backend responses" in lines[0]
    assert fake.requests == []
    assert env.auth_file.read_bytes() == before


@pytest.mark.parametrize("garbage", [
    b'{"auth_mode": "chatgpt", "tokens": {',  # cut short by a crash mid-write
    b"",
    b"\xff\xfe not even text",
    b"[1, 2, 3]",
], ids=["truncated", "empty", "binary", "a-list"])
def test_auth_file_that_is_not_a_login_is_exit_3_and_left_alone(env, fake, run, garbage):
    env.auth_file.write_bytes(garbage)
    env.auth_file.chmod(0o600)

    result = generate(run)

    assert result.code == 3, result
    lines = error_lines(result)
    assert len(lines) == 1, result
    assert str(env.auth_file) in lines[0]
    assert fake.requests == []
    assert env.auth_file.read_bytes() == garbage
    assert mode_of(env.auth_file) == 0o600
    assert not (env.codex_home / "auth.json.bak").exists()


@pytest.mark.parametrize("store", ["keyring", "auto"])
def test_keyring_login_is_exit_3_and_explains_the_fix(env, fake, run, store):
    env.auth_file.unlink()
    env.write_codex_config(f'model = "gpt-5.5"\ncli_auth_credentials_store = "{store}"\n')

    result = generate(run)

    assert result.code == 3, result
    lines = error_lines(result)
    assert len(lines) == 1, result
    message = lines[0]
    assert "keyring" in message
    assert "cli_auth_credentials_store" in message
    assert '"file"' in message  # the setting that makes Codex write auth.json
    assert "imagegen auth login" in message
    assert fake.requests == []


def test_account_id_falls_back_to_the_id_token_claim_never_sub(env, fake, run):
    doc = make_auth_json(fake.auth.tokens)
    del doc["tokens"]["account_id"]
    env.write_auth(doc=doc)

    result = generate(run)

    assert_saved_what_was_sent(env, fake, result)
    assert codex_requests(fake)[0].header("ChatGPT-Account-ID") == fake.auth.account_id


# Refresh before the request ###################################################################

def test_expired_access_token_is_refreshed_once_before_the_request(env, fake, run):
    old = fake.auth.issue(expired=True)
    env.write_auth(doc=doc_with_unknown_fields(old))

    result = generate(run)

    assert_saved_what_was_sent(env, fake, result)
    refreshes = fake.requests_to("/oauth/token")
    assert len(refreshes) == 1
    assert refreshes[0].content_type == "application/json"
    assert refreshes[0].json == {"client_id": CLIENT_ID, "grant_type": "refresh_token",
                                 "refresh_reason": "proactive_expiry",
                                 "refresh_token": old["refresh_token"]}
    assert fake.requests[0] is refreshes[0]  # before anything reaches the backend
    new = fake.auth.tokens
    assert new["access_token"] != old["access_token"]
    assert [r.bearer for r in codex_requests(fake)] == [new["access_token"]]

    assert mode_of(env.auth_file) == 0o600
    doc = env.read_auth()
    assert doc["tokens"]["access_token"] == new["access_token"]
    assert doc["tokens"]["refresh_token"] == new["refresh_token"]
    assert doc["tokens"]["id_token"] == new["id_token"]
    assert doc["tokens"]["account_id"] == old["account_id"]
    assert doc["tokens"]["token_kind_from_the_future"] == {"nested": [1, 2, 3]}
    assert doc["agent_identity"] == {"name": "kept", "since": 42}
    assert doc["some_future_setting"] is True
    assert doc["auth_mode"] == "chatgpt"
    assert "OPENAI_API_KEY" in doc and doc["OPENAI_API_KEY"] is None
    assert RFC3339_Z.match(doc["last_refresh"]), doc["last_refresh"]
    assert abs(seconds_since(doc["last_refresh"])) < 300
    assert_no_stray_files(env.codex_home)


@pytest.mark.parametrize("seconds_left, refreshed", [(-5, True), (30, True), (240, True), (420, False),
                                                    (600, False)])
def test_refresh_when_exp_is_within_5_minutes(env, fake, run, seconds_left, refreshed):
    old = env.write_auth(exp=time.time() + seconds_left)
    fake.auth.check_expiry = False  # the fake would still take a token about to expire

    result = generate(run)

    assert_saved_what_was_sent(env, fake, result)
    assert fake.auth.refresh_count == (1 if refreshed else 0)
    expected = fake.auth.tokens["access_token"] if refreshed else old["tokens"]["access_token"]
    assert [r.bearer for r in codex_requests(fake)] == [expected]


@pytest.mark.parametrize("days, refreshed", [(1, False), (9, True)])
def test_token_without_exp_is_refreshed_when_last_refresh_is_over_8_days_old(env, fake, run, days, refreshed):
    opaque = make_secret("at_")  # not a JWT: no exp to read
    fake.auth.valid_access_tokens.add(opaque)
    env.secrets.add(opaque)
    doc = make_auth_json(fake.auth.tokens)
    doc["tokens"]["access_token"] = opaque
    doc["last_refresh"] = (datetime.datetime.now(datetime.timezone.utc)
                           - datetime.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    env.write_auth(doc=doc)

    result = generate(run)

    assert_saved_what_was_sent(env, fake, result)
    assert fake.auth.refresh_count == (1 if refreshed else 0)
    expected = fake.auth.tokens["access_token"] if refreshed else opaque
    assert [r.bearer for r in codex_requests(fake)] == [expected]


def test_refresh_answer_with_only_an_access_token_keeps_the_other_tokens(env, fake, run):
    old = env.write_auth(expired=True)["tokens"]
    fake.auth.refresh_returns = ("access_token",)

    result = generate(run)

    assert_saved_what_was_sent(env, fake, result)
    doc = env.read_auth()
    assert doc["tokens"]["access_token"] == fake.auth.tokens["access_token"] != old["access_token"]
    assert doc["tokens"]["refresh_token"] == old["refresh_token"]
    assert doc["tokens"]["id_token"] == old["id_token"]
    assert doc["tokens"]["account_id"] == old["account_id"]
    assert [r.bearer for r in codex_requests(fake)] == [doc["tokens"]["access_token"]]


def test_refresh_token_url_override_is_the_full_token_url(env, fake, run):
    env.write_auth(expired=True)
    dead_issuer = closed_port_url()  # the refresh would fail if this were used

    result = generate(run, env_vars={
        "CODEX_REFRESH_TOKEN_URL_OVERRIDE": f"{fake.url}/oauth/token?from=override",
        "IMAGEGEN_AUTH_BASE_URL": dead_issuer})

    assert_saved_what_was_sent(env, fake, result)
    refreshes = fake.requests_to("/oauth/token")
    assert len(refreshes) == 1
    assert refreshes[0].query == {"from": "override"}


def test_expired_token_without_refresh_token_is_exit_3(env, fake, run):
    doc = make_auth_json(fake.auth.issue(expired=True))
    doc["tokens"]["refresh_token"] = None
    env.write_auth(doc=doc)
    before = env.auth_file.read_bytes()

    result = generate(run)

    assert result.code == 3, result
    assert "imagegen auth login" in result.err
    assert fake.requests == []
    assert env.auth_file.read_bytes() == before


# Refresh after a 401 ##########################################################################

def test_401_rereads_refreshes_and_retries_once(env, fake, run):
    old = env.read_auth()["tokens"]
    fake.auth.revoke_access_tokens()  # the token still looks valid, the server disagrees

    result = generate(run)

    assert_saved_what_was_sent(env, fake, result)
    new = fake.auth.tokens
    sent = codex_requests(fake)
    assert [r.bearer for r in sent] == [old["access_token"], new["access_token"]]
    assert sent[0].path == sent[1].path  # a retry, not a route fallback
    refreshes = fake.requests_to("/oauth/token")
    assert len(refreshes) == 1
    assert refreshes[0].json["refresh_token"] == old["refresh_token"]
    assert fake.requests.index(refreshes[0]) == 1  # between the two attempts
    assert env.read_auth()["tokens"]["access_token"] == new["access_token"]
    assert_no_stray_files(env.codex_home)


def test_queued_401_refreshes_and_retries_once(env, fake, run):
    fake.queue("/codex/images/generations", status(401))  # the first route tried

    result = generate(run)

    assert_saved_what_was_sent(env, fake, result)
    assert fake.auth.refresh_count == 1
    assert len(codex_requests(fake)) == 2


@pytest.mark.parametrize("route", ["responses", "images"])
def test_401_that_survives_the_refresh_is_exit_3(env, fake, run, route):
    suffix = "/codex/responses" if route == "responses" else "/codex/images/generations"
    fake.default(suffix, status(401))

    result = generate(run, "--route", route)

    assert result.code == 3, result
    assert result.out == ""
    assert fake.auth.refresh_count == 1
    assert len(codex_requests(fake)) == 2  # the first try and exactly one retry
    assert "401" in result.err
    assert list(env.work.rglob("*.png")) == []


def test_401_on_route_auto_never_falls_back_to_the_responses_route(env, fake, run):
    fake.default("/codex/images/generations", status(401))

    result = generate(run)

    assert result.code == 3, result
    (line,) = error_lines(result)
    assert "refused the login (HTTP 401)" in line and "survived a refresh" in line
    assert len(fake.requests_to("/codex/images/generations")) == 2  # once more after the refresh
    assert fake.requests_to("/codex/responses") == []


def test_401_when_another_program_already_refreshed_sends_no_refresh(env, fake, run):
    """The file is read at start (token A); while the request is on its way, Codex refreshes
    and writes token B (killing the old refresh token); the server answers 401 to A. The
    retry must use B from the file, and no refresh may be sent (it would fail: reused)."""
    old = env.read_auth()["tokens"]
    fake.queue("/codex/images/generations", status(401))
    inner = urllib.request.build_opener()
    written: list[dict] = []

    class CodexRefreshesMeanwhile:
        def open(self, request, timeout=None):
            if "/backend-api/codex/" in request.full_url and not written:
                tokens = fake.auth.issue()  # the old refresh token stops working
                write_auth_file(env.auth_file, make_auth_json(tokens))
                written.append(tokens)
            return inner.open(request, timeout=timeout)

    result = run(PROMPT, "--no-progress",
                 seams={"opener": CodexRefreshesMeanwhile()})

    assert_saved_what_was_sent(env, fake, result)
    assert fake.auth.refresh_attempts == 0
    assert fake.requests_to("/oauth/token") == []
    assert [r.bearer for r in codex_requests(fake)] == [old["access_token"],
                                                       written[0]["access_token"]]
    assert env.read_auth()["tokens"] == {**written[0]}


def test_parallel_requests_share_one_refresh_after_401(env, fake, run):
    fake.auth.revoke_access_tokens()

    result = generate(run, "-n", "3", "--parallel", "3")

    assert_saved_what_was_sent(env, fake, result, count=3)
    assert fake.auth.refresh_attempts == 1


def test_parallel_requests_share_one_refresh_of_an_expired_token(env, fake, run):
    env.write_auth(expired=True)

    result = generate(run, "-n", "3", "--parallel", "3")

    assert_saved_what_was_sent(env, fake, result, count=3)
    assert fake.auth.refresh_attempts == 1
    assert {r.bearer for r in codex_requests(fake)} == {fake.auth.tokens["access_token"]}


# Refresh failures ##############################################################################

@pytest.mark.parametrize("code, meaning", [
    ("refresh_token_expired", "expired"),
    ("refresh_token_reused", "already used"),
    ("refresh_token_invalidated", "revoked"),
    ("something_else", "could not be refreshed"),
])
def test_refresh_refused_is_exit_3_with_codex_meaning(env, fake, run, code, meaning):
    env.write_auth(expired=True)
    before = env.auth_file.read_bytes()
    fake.queue("/oauth/token", refresh_error(code))

    result = generate(run)

    assert result.code == 3, result
    lines = error_lines(result)
    assert len(lines) == 1, result
    assert meaning in lines[0]
    assert "imagegen auth login" in lines[0]
    assert len(fake.requests_to("/oauth/token")) == 1  # a 401 from the token endpoint is final
    assert codex_requests(fake) == []
    assert env.auth_file.read_bytes() == before
    assert_no_stray_files(env.codex_home)


def test_refresh_refused_in_json_mode(env, fake, run):
    env.write_auth(expired=True)
    fake.queue("/oauth/token", refresh_error("refresh_token_reused"))

    result = generate(run, "--json")

    assert result.code == 3, result
    error = result.json["error"]
    assert error["kind"] == "auth" and error["exit_code"] == 3
    assert "already used" in error["message"]


def test_refresh_token_already_used_for_real_is_exit_3(env, fake, run):
    """Not scripted: the fake's own rule (a rotated refresh token is dead)."""
    stale = env.write_auth(expired=True)
    fake.auth.used_refresh_tokens.add(stale["tokens"]["refresh_token"])
    before = env.auth_file.read_bytes()

    result = generate(run)

    assert result.code == 3, result
    assert "already used" in result.err
    assert env.auth_file.read_bytes() == before


def test_refresh_error_that_echoes_the_token_is_not_printed(env, fake, run):
    env.write_auth(expired=True)
    token = fake.auth.current_refresh_token
    fake.queue("/oauth/token", status(400, {"error": {"message": f"bad refresh_token {token}"}}))

    result = generate(run)

    assert result.code == 3, result
    assert result.out == ""
    (line,) = error_lines(result)
    # what the user sees: the server's words, with the token replaced by the redaction marker
    assert "could not refresh the login" in line and "bad refresh_token ***" in line, line
    assert token not in result.err and token[:12] not in result.err


def test_refresh_500_is_retried_then_succeeds(env, fake, run):
    env.write_auth(expired=True)
    fake.queue("/oauth/token", status(500))

    result = run(PROMPT, "--no-progress", "--retries", "1")

    assert_saved_what_was_sent(env, fake, result)
    assert len(fake.requests_to("/oauth/token")) == 2
    assert fake.auth.refresh_count == 1
    assert env.read_auth()["tokens"]["access_token"] == fake.auth.tokens["access_token"]


def test_refresh_500_every_time_is_exit_3_and_leaves_the_file(env, fake, run):
    env.write_auth(expired=True)
    before = env.auth_file.read_bytes()
    fake.default("/oauth/token", status(500))

    result = run(PROMPT, "--no-progress", "--retries", "1")

    assert result.code == 3, result
    assert len(fake.requests_to("/oauth/token")) == 2
    assert "refresh" in " ".join(error_lines(result))
    assert codex_requests(fake) == []
    assert env.auth_file.read_bytes() == before
    assert_no_stray_files(env.codex_home)


def test_unreachable_token_endpoint_is_a_backend_error_and_leaves_the_file(env, fake, run):
    """README: a token endpoint that does not answer at all is exit 5 (network), not 3."""
    env.write_auth(expired=True)
    before = env.auth_file.read_bytes()

    result = generate(run, env_vars={"CODEX_REFRESH_TOKEN_URL_OVERRIDE":
                                     closed_port_url() + "/oauth/token"})

    assert result.code == 5, result
    assert "refresh" in result.err and "connection refused" in result.err
    assert codex_requests(fake) == []
    assert env.auth_file.read_bytes() == before
    assert_no_stray_files(env.codex_home)


def test_refresh_answer_without_access_token_is_exit_3_and_leaves_the_file(env, fake, run):
    env.write_auth(expired=True)
    before = env.auth_file.read_bytes()
    fake.queue("/oauth/token", status(200, {"token_type": "bearer"}))

    result = generate(run)

    assert result.code == 3, result
    assert codex_requests(fake) == []
    assert env.auth_file.read_bytes() == before


# Several processes, and Codex's locks ###########################################################

def test_processes_refreshing_at_once_send_one_refresh(env, fake, run_cli):
    env.write_auth(expired=True)
    fake.auth.refresh_delay = 0.3
    count = 5

    procs = [run_cli.popen(PROMPT, "--no-progress", "--retries", "0") for _ in range(count)]
    results = [run_cli.wait(proc, timeout=60) for proc in procs]

    assert [r.code for r in results] == [0] * count, results
    assert fake.auth.refresh_attempts == 1
    assert fake.auth.refresh_count == 1
    doc = env.read_auth()  # valid JSON
    assert doc["tokens"]["access_token"] == fake.auth.tokens["access_token"]
    assert {r.bearer for r in codex_requests(fake)} == {fake.auth.tokens["access_token"]}
    paths = [line for r in results for line in r.lines]
    assert len(set(paths)) == count
    assert sorted((env.work / p).read_bytes() for p in paths) == sorted(fake.images_sent)
    assert mode_of(env.auth_file) == 0o600
    assert_no_stray_files(env.codex_home)


@pytest.mark.parametrize("lock_name", ["auth.lock", "auth.json.lock"])
def test_refresh_waits_for_codex_lock(env, fake, run_cli, lock_name):
    env.write_auth(expired=True)
    lock_path = env.codex_home / lock_name
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = run_cli.popen(PROMPT, "--no-progress", "--retries", "0")
        time.sleep(1.0)
        assert fake.auth.refresh_attempts == 0, "refreshed while Codex held its lock"
        released = time.time()
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

    result = run_cli.wait(proc, timeout=60)

    assert result.code == 0, result
    assert fake.auth.refresh_count == 1
    assert fake.requests_to("/oauth/token")[0].time >= released
    assert env.read_auth()["tokens"]["access_token"] == fake.auth.tokens["access_token"]


# Drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set, so that root obeys file
# modes like any user after the next exec; that exec checks the folder (exit 99 when it is still
# writable) and then execs the command.
_CHECK_THEN_EXEC = r"""
import os, sys, tempfile
try:
    os.close(tempfile.mkstemp(dir=sys.argv[1])[0])
except PermissionError:
    os.execv(sys.argv[2], sys.argv[2:])
sys.exit(99)
"""
_OBEY_MODES = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for capability in (1, 2):
    libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1]] + sys.argv[2:])
"""


@pytest.mark.parametrize("locks_exist", [False, True], ids=["no-lock-files", "lock-files-exist"])
def test_read_only_codex_home_refuses_to_refresh(env, fake, run, run_cli, locks_exist):
    env.write_auth(expired=True)
    before = env.auth_file.read_bytes()
    if locks_exist:  # left by an earlier Codex run, writable themselves
        for name in ("auth.lock", "auth.json.lock"):
            (env.codex_home / name).touch(mode=0o600)
    env.codex_home.chmod(0o500)
    try:
        if not os.access(env.codex_home, os.W_OK):
            result = generate(run)
        elif sys.platform.startswith("linux") and os.geteuid() == 0:
            # Root ignores modes: run the CLI as root without the capabilities that do that.
            command = [sys.executable, "-c", _OBEY_MODES, _CHECK_THEN_EXEC, str(env.codex_home),
                       *run_cli.command(PROMPT, "--no-progress", "--retries", "0")]
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=str(env.work), env=env.environ())
            result = run_cli.wait(proc)
            if result.code == 99:
                pytest.skip("running as root, and the capabilities that let root write a 0500 "
                            "folder could not be dropped: cannot make the Codex home read-only")
        else:
            pytest.skip("this user can write a 0500 folder: cannot make the Codex home read-only")
    finally:
        env.codex_home.chmod(0o700)

    assert result.code == 3, result
    assert fake.requests_to("/oauth/token") == []
    assert codex_requests(fake) == []
    assert str(env.codex_home) in result.err
    assert "writable" in result.err
    assert env.auth_file.read_bytes() == before
    assert_no_stray_files(env.codex_home)


# Helpers #####################################################################################


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"

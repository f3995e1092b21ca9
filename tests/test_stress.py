"""The login and the files under stress: many processes, kills, signals, broken files.

These run imagegen.py as real processes (run_cli), because locks, signals and SIGKILL are
process matters. What is checked is what a user cannot afford to lose: auth.json must be the
old or the new login and valid JSON at every instant, the refresh token must be spent once,
and an interrupted run must leave no partial or temporary file.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fakeserver import ok, png_bytes, stall, trickle

FAST = ("--no-progress", "--retries", "0", "--route", "responses")


class AuthWatcher:
    """Re-reads auth.json in a tight loop in a thread; remembers every read that was not a
    complete JSON object (a torn or missing file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reads = 0
        self.bad: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                self.bad.append("auth.json was missing")
                continue
            self.reads += 1
            try:
                doc = json.loads(raw)
            except ValueError:
                self.bad.append(f"invalid JSON: {raw[:60]!r}... ({len(raw)} bytes)")
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), dict):
                self.bad.append(f"not a login: {raw[:60]!r}")

    def __enter__(self) -> AuthWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)


def temporaries(folder: Path) -> list[str]:
    """Leftovers of an interrupted atomic write (Codex's and ours: .auth-*, .tmp-*)."""
    return sorted(name for name in os.listdir(folder) if name.startswith((".auth-", ".tmp-")))


# The login ##################################################################################

def test_eight_processes_with_an_expired_token_refresh_once_and_all_succeed(fake, env, run_cli):
    old = env.write_auth(expired=True, extra_field={"kept": True})
    fake.auth.refresh_delay = 0.2  # hold the one refresh open while the others queue up
    with AuthWatcher(env.auth_file) as watcher:
        procs = [run_cli.popen("a red fox", *FAST) for _ in range(8)]
        results = [run_cli.wait(proc, timeout=60) for proc in procs]
    assert [r.code for r in results] == [0] * 8, "\n".join(map(repr, results))
    assert fake.auth.refresh_attempts == 1 and fake.auth.refresh_count == 1
    assert watcher.reads > 0 and watcher.bad == []
    doc = env.read_auth()
    assert doc["tokens"]["refresh_token"] == fake.auth.current_refresh_token
    assert doc["tokens"]["refresh_token"] != old["tokens"]["refresh_token"]
    assert doc["extra_field"] == {"kept": True}
    assert (env.auth_file.stat().st_mode & 0o777) == 0o600
    # Every process got a name of its own, and every image arrived whole.
    paths = sorted(line for r in results for line in r.lines)
    assert len(set(paths)) == 8
    assert sorted((env.work / p).read_bytes() for p in paths) == sorted(fake.images_sent)
    assert temporaries(env.codex_home) == []


def test_a_refresh_killed_at_any_moment_leaves_the_old_or_the_new_login(fake, env, run_cli):
    """SIGKILL at random moments while the token endpoint holds the refresh open (and just
    after it answers). Findings: auth.json is always the old or the new file; a kill can at
    most strand the one temporary file being written at that instant (nothing can clean up
    after SIGKILL), and the locks die with the process, so the next run never waits."""
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    fake.auth.refresh_delay = 0.3
    outcomes = []
    with AuthWatcher(env.auth_file) as watcher:
        for _ in range(8):
            old = env.write_auth(expired=True, extra_field="kept")
            before = set(temporaries(env.codex_home))
            proc = run_cli.popen("a red fox", *FAST)
            fake.wait_for("/oauth/token", count=len(fake.requests_to("/oauth/token")) + 1,
                          timeout=10)
            time.sleep(chance.uniform(0, 0.45))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            doc = env.read_auth()
            assert doc["extra_field"] == "kept", f"seed {seed}"
            if doc["tokens"] == old["tokens"]:
                outcomes.append("old")
            else:
                assert doc["tokens"]["refresh_token"] == fake.auth.current_refresh_token, f"seed {seed}"
                assert fake.auth.access_ok(doc["tokens"]["access_token"]), f"seed {seed}"
                outcomes.append("new")
            stranded = set(temporaries(env.codex_home)) - before
            assert len(stranded) <= 1, f"seed {seed}: {stranded}"
    assert watcher.bad == [], f"seed {seed}: {watcher.bad[:3]}"
    # The locks died with the killed processes: a fresh login refreshes at once.
    env.write_auth(expired=True)
    fake.auth.refresh_delay = 0
    result = run_cli("a red fox", *FAST, timeout=30)
    assert result.code == 0, result
    assert set(outcomes) <= {"old", "new"}


@pytest.mark.parametrize("content", [
    b"", b"{", b'{"tokens": {"access_token": "abc', b"\x00\xff\xfe garbage", b"not json at all\n",
    b'["a", "list"]',
], ids=["empty", "brace", "cut", "binary", "text", "list"])
def test_an_auth_json_that_is_not_json_is_exit_3_and_left_untouched(fake, env, run, content):
    env.auth_file.write_bytes(content)
    os.chmod(env.auth_file, 0o600)
    before = os.stat(env.auth_file)
    for argv in (("a red fox", *FAST), ("auth", "status")):
        result = run(*argv)
        assert result.code == 3, result
        assert str(env.auth_file) in result.err, result
    after = os.stat(env.auth_file)
    assert env.auth_file.read_bytes() == content
    assert (after.st_mtime_ns, after.st_mode, after.st_ino) == (
        before.st_mtime_ns, before.st_mode, before.st_ino)
    assert not (env.codex_home / "auth.json.bak").exists()
    assert fake.requests == []


@pytest.fixture
def read_only(tmp_path):
    """make(folder): remount folder read-only (a bind mount: root ignores chmod)."""
    mounted: list[Path] = []

    def make(folder: Path) -> None:
        steps = (["mount", "--bind", str(folder), str(folder)],
                 ["mount", "-o", "remount,ro,bind", str(folder)])
        for step in steps:
            done = subprocess.run(step, capture_output=True)
            if done.returncode != 0:
                if mounted or step is steps[1]:
                    subprocess.run(["umount", str(folder)], capture_output=True)
                pytest.skip(f"cannot make a read-only folder here ({' '.join(step[:3])}: "
                            f"{done.stderr.decode().strip()[:100]})")
        mounted.append(folder)

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_codex_home_spends_no_refresh_token(fake, env, run, read_only):
    old = env.write_auth(expired=True)
    read_only(env.codex_home)
    result = run("a red fox", *FAST)
    assert result.code == 3, result
    assert "writable" in result.err
    assert fake.requests_to("/oauth/token") == []
    assert fake.auth.current_refresh_token == old["tokens"]["refresh_token"]
    assert env.read_auth() == old


def test_a_read_only_codex_home_with_a_valid_token_still_makes_the_image(fake, env, run, read_only):
    read_only(env.codex_home)
    result = run("a red fox", *FAST)
    assert result.code == 0, result
    assert [(env.work / p).read_bytes() for p in result.lines] == fake.images_sent


@pytest.mark.parametrize("out", ["locked/fox.png", "locked/", "locked/deeper/fox.png"])
def test_a_read_only_target_directory_is_exit_7_before_anything_is_sent(
        fake, env, run, read_only, out):
    (env.work / "locked").mkdir()
    read_only(env.work / "locked")
    result = run("a red fox", *FAST, "-o", out)
    assert result.code == 7, result
    assert fake.requests_to("/responses") == []
    assert os.listdir(env.work / "locked") == []


# Interrupted runs ###########################################################################

def leftovers(work: Path) -> list[str]:
    """Everything in the work dir that is not a complete image: temporaries, empty files."""
    found = []
    for folder, _, names in os.walk(work):
        for name in names:
            path = Path(folder) / name
            if name.startswith(".") or name.endswith(".part") or path.stat().st_size == 0:
                found.append(str(path.relative_to(work)))
    return found


SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("signum", SIGNALS, ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("moment", ["waiting", "trickling", "saving"])
def test_a_signal_at_a_random_moment_leaves_no_partial_file(fake, env, run_cli, signum, moment):
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    big = png_bytes(64, 64) + os.urandom(4_000_000)  # a long write and a long base64 decode
    behaviour = {"waiting": stall(seconds=10, after=2),
                 "trickling": trickle(interval=0.01, chunk=256),
                 "saving": ok(image=big)}[moment]
    fake.queue("/responses", behaviour)
    proc = run_cli.popen("a red fox", *FAST, "--meta", "--stall-timeout", "30")
    fake.wait_for("/responses", timeout=10)
    time.sleep(chance.uniform(0.0, 0.4))
    proc.send_signal(signum)
    result = run_cli.wait(proc, timeout=30)
    # -signum: the signal came after main() had returned, while Python shut down; a shell
    # shows that as 130 (SIGINT) or 143 (SIGTERM). The work was done by then.
    assert result.code in (0, 130, -signum), f"seed {seed}\n{result!r}"
    assert leftovers(env.work) == [], f"seed {seed}"
    saved = sorted((env.work / "assets" / "generated").glob("*.png")) if (
        env.work / "assets" / "generated").is_dir() else []
    if result.code == 130:
        assert "interrupted" in result.err
        assert result.out == ""
        # Nothing, or (a signal right after the rename) the complete image and nothing else.
        assert all(path.read_bytes() in fake.images_sent for path in saved), f"seed {seed}"
    else:
        assert [path.read_bytes() for path in saved] == fake.images_sent


@pytest.mark.parametrize("signum", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_several_images_are_saved_in_parallel_leaves_no_partial_file(
        fake, env, run_cli, signum):
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    fake.default("/responses", ok(image=png_bytes(64, 64) + os.urandom(3_000_000)))
    proc = run_cli.popen("a red fox", *FAST, "-n", "4", "--parallel", "4")
    fake.wait_for("/responses", count=4, timeout=10)
    time.sleep(chance.uniform(0.0, 0.5))
    proc.send_signal(signum)
    result = run_cli.wait(proc, timeout=30)
    assert result.code in (0, 130, -signum), f"seed {seed}\n{result!r}"
    assert leftovers(env.work) == [], f"seed {seed}"
    folder = env.work / "assets" / "generated"
    for path in folder.glob("*") if folder.is_dir() else []:
        assert path.read_bytes() in fake.images_sent, f"seed {seed}: {path.name} is partial"


# A slow filesystem: creating the temporary file takes a while (NFS, a busy disk). The hook
# marks the moment the .part file exists, so the signal lands exactly in that window.
SLOW_CREATE = '''
import os, time
_real_open = os.open
def _slow_open(path, flags, *args, **kwargs):
    made = _real_open(path, flags, *args, **kwargs)
    if str(path).endswith(".part") and flags & os.O_CREAT:
        os.close(_real_open(os.environ["IMAGEGEN_TEST_MARK"], os.O_CREAT | os.O_WRONLY, 0o600))
        time.sleep(1.5)
    return made
os.open = _slow_open
'''


@pytest.mark.parametrize("signum", SIGNALS, ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("count", [1, 2])
def test_a_signal_while_the_temporary_file_is_being_created_leaves_nothing(
        fake, env, run_cli, tmp_path, signum, count):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SLOW_CREATE)
    mark = tmp_path / "part-created"
    proc = run_cli.popen("a red fox", *FAST, "-n", count, "--parallel", count, env_vars={
        "PYTHONPATH": hooks, "IMAGEGEN_TEST_MARK": mark})
    deadline = time.monotonic() + 20
    while not mark.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert mark.exists(), "the run never reached its save"
    proc.send_signal(signum)
    result = run_cli.wait(proc, timeout=30)
    assert result.code == 130, result
    assert leftovers(env.work) == []
    # A worker that was past its link when the signal came leaves a complete image.
    for path in (env.work / "assets" / "generated").iterdir():
        assert path.read_bytes() in fake.images_sent, f"{path.name} is partial"

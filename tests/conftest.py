"""Fixtures shared by every test.

    fake        a started FakeServer (tests/fakeserver.py), stopped after the test
    env         a private HOME / CODEX_HOME / XDG_CONFIG_HOME / work dir, with a valid auth.json
                the fake accepts, and an environment pointing imagegen at the fake
                (alias: workspace)
    run         run(*argv, input=None, env_vars=None) -> Result: imagegen.main(argv) in-process
    no_pillow   Pillow cannot be imported during the test (imagegen must do without it)
    run_cli     run_cli(*argv, input=None, timeout=60, env_vars=None) -> Result: a subprocess;
                run_cli.popen(*argv) / run_cli.wait(proc) for tests that signal the process

Every Result is scanned for secrets (everything the fake issued or was configured with, the
tokens in the test's auth.json, env.secrets): a leak fails the test at once, and all results
are scanned again at teardown.
"""
from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_DIR = TESTS_DIR.parent
for _path in (str(REPO_DIR), str(TESTS_DIR)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from fakeserver import FakeServer, find_secrets, make_auth_json, write_auth_file  # noqa: E402

# Hypothesis keeps its database in ./.hypothesis unless told otherwise: keep the checkout
# clean, since `npx skills add ./checkout` copies every file in it (see pyproject.toml).
try:
    from hypothesis.configuration import set_hypothesis_home_dir
except ImportError:
    pass
else:
    set_hypothesis_home_dir(os.path.join(os.path.expanduser("~"), ".cache", "codex-imagegen",
                                         "hypothesis"))

# Variables that would send imagegen somewhere else than the fake, or change its output.
REMOVED_VARIABLES = (
    "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
    "CODEX_AUTH_FILE", "CODEX_AUTH_HOME", "CODEX_REFRESH_TOKEN_URL_OVERRIDE",
    "CODEX_API_TOKEN", "CODEX_API_BASE_URL", "OPENAI_API_KEY", "NO_COLOR",
)
KEPT_IMAGEGEN_VARIABLES = ("IMAGEGEN_CODEX_BASE_URL", "IMAGEGEN_AUTH_BASE_URL")


class Result:
    """What one imagegen run gave: exit code, stdout, stderr."""

    def __init__(self, code: int, out: str, err: str, argv: list[str]):
        self.code, self.out, self.err, self.argv = code, out, err, argv

    @property
    def json(self) -> Any:
        """stdout parsed as one JSON object."""
        return json.loads(self.out)

    @property
    def lines(self) -> list[str]:
        """The non-empty lines of stdout."""
        return [line for line in self.out.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return (f"Result(code={self.code}, argv={self.argv!r})\n--- stdout ---\n{self.out}"
                f"--- stderr ---\n{self.err}--- end ---")


class SecretScanner:
    """Collects the results of one test and the places secrets are known from."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.sources: list[Callable[[], Iterable[str]]] = []

    def secrets(self) -> set[str]:
        found: set[str] = set()
        for source in self.sources:
            found.update(s for s in source() if s)
        return found

    def leaks(self, result: Result) -> list[str]:
        secrets = self.secrets()
        problems = []
        for stream, text in (("stdout", result.out), ("stderr", result.err)):
            for secret in find_secrets(text, secrets):
                where = text.find(secret)
                context = text[max(0, where - 60):where + len(secret) + 20].replace(secret, "<<SECRET>>")
                problems.append(f"{stream} contains the secret {secret[:12]}... in: {context!r}")
        return problems

    def check(self, result: Result) -> None:
        problems = self.leaks(result)
        if problems:
            pytest.fail(f"imagegen {result.argv!r} printed a secret:\n  " + "\n  ".join(problems), pytrace=False)
        self.results.append(result)

    def check_all(self) -> None:
        problems = [p for result in self.results for p in self.leaks(result)]
        if problems:
            pytest.fail("a secret was printed:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _secret_scan() -> Iterable[SecretScanner]:
    scanner = SecretScanner()
    yield scanner
    scanner.check_all()


@pytest.fixture
def fake(_secret_scan: SecretScanner) -> Iterable[FakeServer]:
    server = FakeServer().start()
    _secret_scan.sources.append(lambda: server.secrets)
    try:
        yield server
    finally:
        server.stop()


class Env:
    """The test's private directories and environment (all set with monkeypatch)."""

    def __init__(self, tmp: Path, fake: FakeServer, monkeypatch: pytest.MonkeyPatch):
        self.tmp = tmp
        self.home = tmp / "home"
        self.codex_home = self.home / ".codex"
        self.auth_file = self.codex_home / "auth.json"
        self.config_home = self.home / ".config"
        self.work = tmp / "work"
        self.fake = fake
        self.secrets: set[str] = set()   # add any secret a test makes up itself
        self._monkeypatch = monkeypatch

    def set(self, **variables: str | None) -> None:
        """Set environment variables for the rest of the test (None deletes one)."""
        for name, value in variables.items():
            if value is None:
                self._monkeypatch.delenv(name, raising=False)
            else:
                self._monkeypatch.setenv(name, str(value))

    def write_auth(self, expired: bool = False, doc: dict | None = None, exp: float | None = None,
                   **extra: Any) -> dict:
        """Rewrite auth.json (0600): with `doc` as given, else with a fresh token set from the
        fake (expired=True: an access token whose exp has passed; exp: that exact expiry, in
        Unix seconds); extra sets top-level fields (e.g. last_refresh=...)."""
        if doc is None:
            doc = make_auth_json(self.fake.auth.issue(expired=expired, exp=exp), **extra)
        write_auth_file(self.auth_file, doc)
        return doc

    def read_auth(self) -> dict:
        return json.loads(self.auth_file.read_text(encoding="utf-8"))

    def auth_secrets(self) -> set[str]:
        """The secrets in auth.json as it is now, plus env.secrets."""
        found = set(self.secrets)
        try:
            doc = self.read_auth()
        except (OSError, ValueError):
            return found
        tokens = doc.get("tokens") if isinstance(doc, dict) else None
        if isinstance(tokens, dict):
            found.update(v for k, v in tokens.items() if k != "account_id" and isinstance(v, str))
        if isinstance(doc, dict) and isinstance(doc.get("OPENAI_API_KEY"), str):
            found.add(doc["OPENAI_API_KEY"])
        return found

    def write_api_config(self, api_key: str | None = None, base_url: str | None = None, path: Path | None = None,
                         mode: int = 0o600, **fields: Any) -> Path:
        """The api backend's config.json (default: $XDG_CONFIG_HOME/codex-imagegen/config.json)."""
        path = path or self.config_home / "codex-imagegen" / "config.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"api_key": api_key or self.fake.api_key, "base_url": base_url or self.fake.api_base_url, **fields}
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        path.chmod(mode)
        return path

    def write_gateway_files(self, token: str | None = None, base_url: str | None = None) -> None:
        """$XDG_CONFIG_HOME/codex-api/token and base_url (the gateway's file settings)."""
        folder = self.config_home / "codex-api"
        folder.mkdir(parents=True, exist_ok=True)
        if token is not None:
            (folder / "token").write_text(token + "\n", encoding="utf-8")
            (folder / "token").chmod(0o600)
        if base_url is not None:
            (folder / "base_url").write_text(base_url + "\n", encoding="utf-8")

    def write_codex_config(self, text: str) -> Path:
        """$CODEX_HOME/config.toml."""
        path = self.codex_home / "config.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def environ(self, extra: dict | None = None) -> dict:
        """The environment a subprocess gets: the test's, plus extra (None deletes)."""
        environ = dict(os.environ)
        for name, value in (extra or {}).items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = str(value)
        return environ


@pytest.fixture
def env(tmp_path: Path, fake: FakeServer, monkeypatch: pytest.MonkeyPatch, _secret_scan: SecretScanner) -> Env:
    environment = Env(tmp_path, fake, monkeypatch)
    for folder in (environment.home, environment.config_home, environment.work):
        folder.mkdir(parents=True, exist_ok=True)
    environment.codex_home.mkdir(mode=0o700)
    environment.codex_home.chmod(0o700)
    write_auth_file(environment.auth_file, make_auth_json(fake.auth.tokens))
    for name in list(os.environ):
        if name in REMOVED_VARIABLES or (name.startswith("IMAGEGEN_") and name not in KEPT_IMAGEGEN_VARIABLES):
            monkeypatch.delenv(name, raising=False)
    environment.set(
        HOME=str(environment.home),
        CODEX_HOME=str(environment.codex_home),
        XDG_CONFIG_HOME=str(environment.config_home),
        IMAGEGEN_CODEX_BASE_URL=fake.codex_base_url,
        IMAGEGEN_AUTH_BASE_URL=fake.url,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    monkeypatch.chdir(environment.work)
    _secret_scan.sources.append(environment.auth_secrets)
    return environment


@pytest.fixture
def workspace(env: Env) -> Env:
    return env


def _argv(args: tuple) -> list[str]:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    return [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _text_stream(data: bytes = b"") -> io.TextIOWrapper:
    """A text stream like sys.stdout under a pipe: has .buffer, is not a tty, has no fileno."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", write_through=True)


def dead_port() -> int:
    """A port on 127.0.0.1 where nothing listens (it was free a moment ago)."""
    import socket
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _import_imagegen() -> Any:
    try:
        return importlib.import_module("imagegen")
    except ImportError as error:
        if "imagegen" not in sys.modules and not (REPO_DIR / "imagegen.py").exists():
            pytest.fail(f"imagegen.py is missing from {REPO_DIR}", pytrace=False)
        raise error


class TerminalStream(io.TextIOWrapper):
    """A captured text stream that says it is a terminal (for the live progress line)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def run(env: Env, monkeypatch: pytest.MonkeyPatch, _secret_scan: SecretScanner) -> Callable[..., Result]:
    """run(*argv, input=None, env_vars=None, seams=None, tty=False): imagegen.main(argv) in-process,
    in env.work, stdin from `input` (str or bytes; empty by default), stdout/stderr captured
    (stderr a pretend terminal with tty=True); `seams` go to main(argv, **seams) (a fake
    clock, a recording sleep, an opener)."""

    def run_main(*args: Any, input: str | bytes | None = None, env_vars: dict | None = None,
                 seams: dict | None = None, tty: bool = False) -> Result:
        argv = _argv(args)
        imagegen = _import_imagegen()
        data = input.encode("utf-8") if isinstance(input, str) else (input or b"")
        stdin, stdout = _text_stream(data), _text_stream()
        stderr = TerminalStream(io.BytesIO(), encoding="utf-8", write_through=True) if tty else _text_stream()
        with monkeypatch.context() as patch:
            patch.chdir(env.work)
            for name, value in (env_vars or {}).items():
                if value is None:
                    patch.delenv(name, raising=False)
                else:
                    patch.setenv(name, str(value))
            patch.setattr(sys, "argv", ["imagegen", *argv])
            patch.setattr(sys, "stdin", stdin)
            patch.setattr(sys, "stdout", stdout)
            patch.setattr(sys, "stderr", stderr)
            try:
                code = _exit_code(imagegen.main(argv, **(seams or {})))
            except SystemExit as stop:
                code = _exit_code(stop.code)
            except KeyboardInterrupt:
                code = None
        out = stdout.buffer.getvalue().decode("utf-8", "replace")
        err = stderr.buffer.getvalue().decode("utf-8", "replace")
        result = Result(code if code is not None else -1, out, err, argv)
        if code is None:
            pytest.fail(f"KeyboardInterrupt escaped imagegen.main({argv!r})\n{result!r}", pytrace=False)
        _secret_scan.check(result)
        return result

    return run_main


class CLIRunner:
    """Runs imagegen.py as a user would: [sys.executable, imagegen.py, *argv] in env.work."""

    def __init__(self, env: Env, scanner: SecretScanner):
        self.env, self.scanner = env, scanner
        self.script = REPO_DIR / "imagegen.py"

    def command(self, *args: Any) -> list[str]:
        return [sys.executable, str(self.script), *_argv(args)]

    def __call__(self, *args: Any, input: str | bytes | None = None, timeout: float = 60,
                 env_vars: dict | None = None) -> Result:
        proc = self.popen(*args, env_vars=env_vars)
        return self.wait(proc, timeout=timeout, input=input)

    def popen(self, *args: Any, env_vars: dict | None = None, **kwargs: Any) -> subprocess.Popen:
        """Start imagegen; pipes on all three streams unless kwargs say otherwise."""
        options = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
                   "cwd": str(self.env.work), "env": self.env.environ(env_vars), **kwargs}
        proc = subprocess.Popen(self.command(*args), **options)
        proc.argv = _argv(args)  # type: ignore[attr-defined]
        return proc

    def wait(self, proc: subprocess.Popen, timeout: float = 60, input: str | bytes | None = None) -> Result:
        """Finish a popen()ed run and check its output like any other result."""
        data = input.encode("utf-8") if isinstance(input, str) else input
        argv = getattr(proc, "argv", [])
        try:
            out, err = proc.communicate(data, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            result = Result(-9, (out or b"").decode("utf-8", "replace"), (err or b"").decode("utf-8", "replace"), argv)
            self.scanner.check(result)
            pytest.fail(f"imagegen {argv!r} did not finish within {timeout} s\n{result!r}", pytrace=False)
        result = Result(proc.returncode, (out or b"").decode("utf-8", "replace"),
                        (err or b"").decode("utf-8", "replace"), argv)
        self.scanner.check(result)
        return result


@pytest.fixture
def run_cli(env: Env, _secret_scan: SecretScanner) -> CLIRunner:
    return CLIRunner(env, _secret_scan)


@pytest.fixture
def no_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow cannot be imported for the rest of the test, as on a machine without it."""
    for name in [name for name in sys.modules if name == "PIL" or name.startswith("PIL.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "PIL", None)

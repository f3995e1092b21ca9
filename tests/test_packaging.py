"""The release files and the four ways users install the tool.

SKILL.md and agents/openai.yaml are checked against the rules of the skill loaders (Codex's
quick_validate, the Agent Skills spec) with the standard library only, so these checks run
everywhere. The install tests use the real installers (pip, `npx skills add`, pipx, uv) on a
copy of the checkout and then run the installed commands as a user would.

A test skips only when its installer is really absent. With CI=true a missing installer, or
a registry that cannot be reached, is a failure instead, so that CI cannot pass by skipping;
`npx skills` still skips when Node itself is missing, and pipx and uv are optional.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKILL_NAME = "codex-imagegen"
COMMANDS = ("imagegen", "codex-imagegen")
IN_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")

# What a user's checkout holds and an installer may need; the copy leaves out caches,
# venvs and .git so that installers never write into the checkout.
RELEASE_FILES = (
    "imagegen.py",
    "pyproject.toml",
    "README.md",
    "LICENSE",
    "SKILL.md",
    "CHANGELOG.md",
    "agents",
    "tests",
)
COPY_IGNORE = shutil.ignore_patterns(
    "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis", ".ruff_cache"
)

# Words in an installer's output that mean the registry could not be reached.
NETWORK_TROUBLE = re.compile(
    r"ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|ENOTCACHED"
    r"|Could not find a version|No matching distribution|Failed to establish a new connection"
    r"|Temporary failure in name resolution|Name or service not known|Network is unreachable"
    r"|Failed to fetch|error sending request|dns error",
    re.IGNORECASE,
)

INSTALL_TIMEOUT_S = 600


# Helpers ####################################################################################


def missing(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, where every installer must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: CI must install it)", pytrace=False)
    pytest.skip(reason)


def run(
    cmd: list[str], log: Path | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run cmd, print its output (pytest shows it when the test fails), append it to log."""
    kwargs.setdefault("timeout", INSTALL_TIMEOUT_S)
    proc = subprocess.run(
        cmd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        **kwargs,  # type: ignore[arg-type]
    )
    report = (
        f"$ {' '.join(str(part) for part in cmd)}\n"
        f"exit status {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
    )
    print(report)
    if log is not None:
        with log.open("a", encoding="utf-8") as file:
            file.write(report + "\n")
    return proc


def check_network(proc: subprocess.CompletedProcess[str], what: str) -> None:
    """Skip (fail under CI) when a failed install failed because the registry was out of reach."""
    if proc.returncode != 0 and NETWORK_TROUBLE.search(proc.stdout + proc.stderr):
        missing(f"{what}: the package registry cannot be reached")


def module_version() -> str:
    """imagegen.__version__, read from the source as flit reads it (without importing)."""
    source = ROOT / "imagegen.py"
    if not source.exists():
        pytest.skip("imagegen.py is not there yet")
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__version__" for t in targets):
            value = getattr(node, "value", None)
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
    raise AssertionError("imagegen.py has no literal __version__ = '...'")


def copy_release(dest: Path) -> Path:
    """Copy the checkout's release files into dest (a new directory) and return dest."""
    dest.mkdir(parents=True)
    for name in RELEASE_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=COPY_IGNORE)
        elif source.exists():
            shutil.copy2(source, dest / name)
    return dest


def bin_dir(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin")


def check_commands(command_dir: Path, log: Path | None = None) -> None:
    """Both console commands exist in command_dir and print the module's version."""
    version = module_version()
    for command in COMMANDS:
        executable = command_dir / command
        if os.name == "nt":
            executable = executable.with_suffix(".exe")
        assert executable.exists(), f"{command} was not installed in {command_dir}"
        proc = run([str(executable), "--version"], log=log, cwd=str(command_dir), timeout=60)
        assert proc.returncode == 0, f"{command} --version exited {proc.returncode}"
        assert version in proc.stdout, f"{command} --version printed {proc.stdout!r}"


def credential_free_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user with no login at all: empty HOME, CODEX_HOME, config dir."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IMAGEGEN_", "CODEX_", "OPENAI_", "XDG_"))
    }
    home = tmp_path / "empty-home"
    for path in (home / ".codex", home / ".config"):
        path.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        CODEX_HOME=str(home / ".codex"),
        XDG_CONFIG_HOME=str(home / ".config"),
        NO_COLOR="1",
    )
    return env


# SKILL.md: the rules of Codex's quick_validate and the Agent Skills spec ###################

ALLOWED_KEYS = {"name", "description", "license", "metadata"}
NAME_PATTERN = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
KEY_LINE = re.compile(r"^([A-Za-z0-9_-]+):(?:\s+(.*))?$")
NESTED_KEY_LINE = re.compile(r"^\s+([A-Za-z0-9_-]+):(?:\s+(.*))?$")


def yaml_scalar(raw: str) -> str:
    """A one-line YAML scalar as a loader reads it; reject plain scalars YAML would misread."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return json.loads(raw)
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'")
    assert ": " not in raw, f"unquoted value with ': ' is invalid YAML: {raw!r}"
    assert " #" not in raw, f"unquoted value with ' #' loses its end as a comment: {raw!r}"
    assert not raw.startswith(tuple("[]{}&*!|>%@`'\"")), f"quote this value: {raw!r}"
    return raw


def read_skill() -> tuple[dict[str, object], list[str]]:
    """SKILL.md's frontmatter (top-level keys; `metadata` as a dict) and its body lines."""
    lines = (ROOT / "SKILL.md").read_text(encoding="utf-8").splitlines()
    assert lines and lines[0] == "---", "SKILL.md must start with '---' on line 1"
    assert "---" in lines[1:], "SKILL.md's frontmatter has no closing '---'"
    end = lines.index("---", 1)
    fields: dict[str, object] = {}
    parent = None
    for line in lines[1:end]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        nested = NESTED_KEY_LINE.match(line)
        if nested:
            assert isinstance(fields.get(parent), dict), f"indented line outside a map: {line!r}"
            fields[parent][nested[1]] = yaml_scalar(nested[2] or "")  # type: ignore[index]
            continue
        top = KEY_LINE.match(line)
        assert top, f"not a one-line 'key: value' in the frontmatter: {line!r}"
        assert top[1] not in fields, f"key {top[1]!r} given twice"
        parent = top[1]
        fields[parent] = yaml_scalar(top[2]) if top[2] else {}
    return fields, lines[end + 1 :]


def test_skill_frontmatter_passes_codex_quick_validate() -> None:
    fields, _ = read_skill()
    unexpected = set(fields) - ALLOWED_KEYS
    assert not unexpected, f"Codex's quick_validate rejects these keys: {sorted(unexpected)}"
    assert fields.get("name") == SKILL_NAME
    assert NAME_PATTERN.match(SKILL_NAME) and len(SKILL_NAME) <= 64
    description = fields.get("description")
    assert isinstance(description, str) and description.strip(), "description is empty"
    assert "\n" not in description
    assert "<" not in description and ">" not in description, "no '<' or '>' in description"
    assert len(description) <= 1024, "the spec's limit"
    # Older Codex loaders cut at 500, and the skills list is shortened when many are installed.
    assert len(description) <= 500, f"description is {len(description)} characters"
    assert fields.get("license") == "MIT"


def test_skill_metadata_has_short_description_and_the_module_version() -> None:
    fields, _ = read_skill()
    metadata = fields.get("metadata")
    assert isinstance(metadata, dict), "metadata must be a map"
    assert set(metadata) <= {"short-description", "version"}
    short = metadata.get("short-description", "")
    assert 0 < len(short) <= 500 and "<" not in short and ">" not in short
    assert metadata.get("version") == module_version(), "SKILL.md and imagegen.py disagree"


def test_skill_body_is_short_and_covers_every_exit_code() -> None:
    _, body = read_skill()
    assert len(body) < 500, "the spec asks for a SKILL.md body under 500 lines"
    text = "\n".join(body)
    for code in (0, 1, 2, 3, 4, 5, 6, 7, 130):
        assert re.search(rf"^\| {code} \|", text, re.MULTILINE), f"exit code {code} is missing"
    for needle in ("--quiet", "--json", "--dry-run", "batch", "--mask", "--force", "imagegen.py"):
        assert needle in text, f"SKILL.md does not mention {needle}"


def test_skill_md_fits_an_agents_context() -> None:
    # Loaded whole into an agent's context each time the skill is used: kept under 120 lines.
    lines = (ROOT / "SKILL.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 120, f"SKILL.md has {len(lines)} lines"


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped,
    spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_links_to_its_own_sections_resolve() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    outside_code = re.sub(r"(?ms)^```.*?^```", "", text)
    anchors = {github_anchor(h) for h in re.findall(r"(?m)^#{1,6} (.+)$", outside_code)}
    links = re.findall(r"\]\(#([^)]+)\)", outside_code)
    assert links, "the README links to none of its sections"
    broken = sorted(set(links) - anchors)
    assert not broken, f"README links to sections that do not exist: {broken}"


def test_no_file_named_skill_md_under_tests() -> None:
    # Codex scans an installed skill's folder several levels deep: any SKILL.md in tests/
    # would show up as a second skill once the repo is installed.
    found = [
        os.path.join(folder, name)
        for folder, _, names in os.walk(ROOT / "tests")
        for name in names
        if name.lower() == "skill.md"
    ]
    assert not found, f"build fixture SKILL.md files at test time instead: {found}"


def test_openai_yaml_has_codex_interface_fields() -> None:
    text = (ROOT / "agents" / "openai.yaml").read_text(encoding="utf-8")
    interface: dict[str, str] = {}
    section = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        top = KEY_LINE.match(line)
        if top:
            section = top[1]
            continue
        nested = NESTED_KEY_LINE.match(line)
        if nested and section == "interface":
            value = (nested[2] or "").strip()
            assert value.startswith('"') and value.endswith('"'), f"quote every string: {line}"
            interface[nested[1]] = json.loads(value)
    assert interface.get("display_name")
    assert len(interface["display_name"]) <= 64
    assert 25 <= len(interface.get("short_description", "")) <= 64
    assert f"${SKILL_NAME}" in interface.get("default_prompt", "")
    assert re.search(r"^policy:\s*\n\s+allow_implicit_invocation: true\s*$", text, re.MULTILINE)


# Installs ##################################################################################


@pytest.fixture(scope="module")
def build_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv, once the build backend is known to be reachable on the package index."""
    venv = tmp_path_factory.mktemp("pip") / "venv"
    proc = run([sys.executable, "-m", "venv", str(venv)], timeout=300)
    assert proc.returncode == 0, "python -m venv failed"
    wheels = venv.parent / "wheels"
    probe = run(
        [str(bin_dir(venv) / "python"), "-m", "pip", "download", "--disable-pip-version-check",
         "--no-deps", "--only-binary=:all:", "-d", str(wheels), "flit_core>=3.12,<5"],
    )
    if probe.returncode != 0:
        missing("pip cannot fetch flit_core, the build backend")
    return venv


@pytest.mark.slow
def test_pip_install_exposes_both_commands(build_venv: Path, tmp_path: Path) -> None:
    module_version()  # skips while imagegen.py is not there
    source = copy_release(tmp_path / SKILL_NAME)
    log = tmp_path / "pip-install.log"
    python = str(bin_dir(build_venv) / "python")
    proc = run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", str(source)], log=log
    )
    check_network(proc, "pip install")
    assert proc.returncode == 0, f"pip install failed; see {log}"
    check_commands(bin_dir(build_venv), log=log)
    # The wheel holds the one module: no `tests` package lands in site-packages.
    proc = run([python, "-c", "import imagegen, sysconfig; print(imagegen.__file__); "
                "print(sysconfig.get_paths()['purelib'])"], cwd=str(tmp_path), timeout=60)
    module_file, site_packages = proc.stdout.split()
    assert Path(module_file).parent == Path(site_packages)
    assert not (Path(site_packages) / "tests").exists()


@pytest.mark.slow
def test_sdist_carries_the_skill_files(build_venv: Path, tmp_path: Path) -> None:
    module_version()  # skips while imagegen.py is not there
    source = copy_release(tmp_path / SKILL_NAME)
    # A checkout that has run its tests holds bytecode, which must stay out of the sdist.
    (source / "tests" / "__pycache__").mkdir(parents=True, exist_ok=True)
    (source / "tests" / "__pycache__" / "stale.cpython-39.pyc").write_bytes(b"")
    python = str(bin_dir(build_venv) / "python")
    wheels = build_venv.parent / "wheels"
    proc = run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-index",
                "--find-links", str(wheels), "flit_core"])
    assert proc.returncode == 0
    dist = tmp_path / "dist"
    dist.mkdir()
    proc = run([python, "-c", "import sys; from flit_core import buildapi; "
                "print(buildapi.build_sdist(sys.argv[1]))", str(dist)], cwd=str(source))
    assert proc.returncode == 0, "flit_core could not build the sdist"
    with tarfile.open(dist / proc.stdout.split()[-1]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for wanted in ("imagegen.py", "SKILL.md", "LICENSE", "README.md", "CHANGELOG.md",
                   "agents/openai.yaml", "pyproject.toml"):
        assert wanted in names, f"the sdist lacks {wanted}"
    assert any(name.startswith("tests/") for name in names), "the sdist lacks tests/"
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def skills_package(node: str) -> str:
    """The `skills` release to run: 1.7 needs Node 22.20 or later, 1.5.18 runs on Node 18."""
    proc = run([node, "--version"], timeout=60)
    found = re.match(r"v(\d+)\.(\d+)", proc.stdout.strip())
    assert found, f"cannot read the Node version from {proc.stdout!r}"
    version = (int(found[1]), int(found[2]))
    if version < (18, 0):
        pytest.skip(f"Node {proc.stdout.strip()} is older than 18, which `skills` needs")
    return "skills@1.7.4" if version >= (22, 20) else "skills@1.5.18"


@contextlib.contextmanager
def npm_cache_lock(cache: str) -> Iterator[None]:
    """Hold an exclusive lock on the npm cache: .ci/run runs two suites at once over one shared
    cache, and two npx runs filling its _npx folder for the same package at once can fail."""
    try:
        import fcntl
    except ImportError:  # not on Windows; nothing to share there
        yield
        return
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, "imagegen-tests.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.mark.slow
def test_npx_skills_add_installs_a_skill_that_runs(tmp_path: Path) -> None:
    module_version()  # skips while imagegen.py is not there
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed, so `npx skills add` cannot be tried")
    npx = shutil.which("npx")
    if npx is None:
        missing("node is installed but npx is not")
    package = skills_package(node)
    source = copy_release(tmp_path / "src" / SKILL_NAME)
    home = tmp_path / "home"
    workdir = tmp_path / "work"
    for path in (home, workdir):
        path.mkdir(parents=True)
    log = tmp_path / "npx-skills-add.log"

    env = {key: value for key, value in os.environ.items()
           if key not in ("CODEX_HOME", "CLAUDE_CONFIG_DIR") and not key.startswith("XDG_")}
    user_npmrc = Path.home() / ".npmrc"
    if user_npmrc.exists():
        # Keep the user's registry, proxy and CA settings although HOME moves.
        env.setdefault("npm_config_userconfig", str(user_npmrc))
    npm_cache = os.environ.get("IMAGEGEN_TEST_NPM_CACHE") or str(tmp_path / "npm")
    env.update(
        HOME=str(home),
        npm_config_cache=npm_cache,
        npm_config_update_notifier="false",
        npm_config_fund="false",
        DISABLE_TELEMETRY="1",
        DO_NOT_TRACK="1",
        NO_COLOR="1",
        FORCE_COLOR="0",
    )
    with npm_cache_lock(npm_cache):
        proc = run(
            [npx, "-y", package, "add", str(source), "-g", "-a", "codex", "claude-code", "-y"],
            log=log, cwd=str(workdir), env=env,
        )
    check_network(proc, f"npx {package}")
    assert proc.returncode == 0, f"npx {package} add failed; see {log}"

    installed = home / ".agents" / "skills" / SKILL_NAME
    assert (installed / "SKILL.md").is_file(), f"no SKILL.md in {installed}; see {log}"
    assert (installed / "imagegen.py").is_file()
    claude = home / ".claude" / "skills" / SKILL_NAME
    assert claude.exists(), f"{claude} was not created"
    assert claude.resolve() == installed.resolve(), "Claude Code's entry is not the same skill"
    assert not list(installed.glob("*/**/SKILL.md")), "a second SKILL.md was installed"

    # The installed copy runs as an agent would run it, with no login anywhere.
    script = str(installed / "imagegen.py")
    env = credential_free_env(tmp_path)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    proc = run([sys.executable, script, "--help"], log=log, cwd=str(workspace), env=env,
               timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip(), "--help failed"
    proc = run([sys.executable, script, "a red fox", "--dry-run"], log=log,
               cwd=str(workspace), env=env, timeout=60)
    assert proc.returncode == 0, f"--dry-run without credentials exited {proc.returncode}"
    answer = json.loads(proc.stdout)
    assert isinstance(answer, dict) and isinstance(answer.get("requests"), list)
    assert answer["requests"], "--dry-run described no request"
    assert not list(workspace.iterdir()), "--dry-run wrote files"


def optional_tool(name: str) -> str:
    """The path of an optional installer (on PATH or beside this Python), or skip."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (optional)")
    return found


@pytest.mark.slow
def test_pipx_install_exposes_both_commands(tmp_path: Path) -> None:
    pipx = optional_tool("pipx")
    module_version()
    source = copy_release(tmp_path / SKILL_NAME)
    log = tmp_path / "pipx-install.log"
    env = dict(os.environ)
    env.update(
        PIPX_HOME=str(tmp_path / "pipx-home"),
        PIPX_BIN_DIR=str(tmp_path / "bin"),
        PIPX_MAN_DIR=str(tmp_path / "man"),
        USE_EMOJI="0",
    )
    proc = run([pipx, "install", "--python", sys.executable, str(source)], log=log, env=env)
    check_network(proc, "pipx install")
    assert proc.returncode == 0, f"pipx install failed; see {log}"
    check_commands(tmp_path / "bin", log=log)


@pytest.mark.slow
def test_uv_tool_install_exposes_both_commands(tmp_path: Path) -> None:
    uv = optional_tool("uv")
    module_version()
    source = copy_release(tmp_path / SKILL_NAME)
    log = tmp_path / "uv-tool-install.log"
    env = dict(os.environ)
    env.update(
        UV_TOOL_DIR=str(tmp_path / "uv-tools"),
        UV_TOOL_BIN_DIR=str(tmp_path / "bin"),
        UV_CACHE_DIR=str(tmp_path / "uv-cache"),
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
    )
    proc = run([uv, "tool", "install", "--python", sys.executable, str(source)],
               log=log, env=env)
    check_network(proc, "uv tool install")
    assert proc.returncode == 0, f"uv tool install failed; see {log}"
    check_commands(tmp_path / "bin", log=log)

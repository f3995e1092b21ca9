"""What a person sees on the terminal: a live line that never wraps, counts that add up, each
path once, a heartbeat in logs; and the small things a newcomer hits on the way."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest


CODEX = "/codex/responses"
PROMPT = "a paper plane over a blue sea"
DEFAULT_PATH = "assets/generated/a-paper-plane-over-a-blue-sea.png"


def drawn(err: str) -> list[str]:
    """Every state of the live line (the text after each \\r\\x1b[2K up to the next one)."""
    return [piece for piece in err.split("\r\x1b[2K")[1:] if piece and "\n" not in piece]


# the live line ##############################################################################

def test_the_live_line_never_wraps_a_narrow_terminal(fake, env, run):
    fake.delay = 0.8
    result = run(PROMPT, "-n", "3", "-o", "out/", tty=True, env_vars={"COLUMNS": "40"})
    assert result.code == 0, result
    states = drawn(result.err)
    assert states, result
    assert all(len(state) <= 39 for state in states), states
    assert any(state.endswith("…") for state in states), states


def test_a_wide_terminal_shows_the_whole_line(fake, env, run):
    fake.delay = 0.8
    result = run(PROMPT, "-n", "2", "-o", "out/", tty=True, env_vars={"COLUMNS": "200"})
    states = drawn(result.err)
    assert any(re.fullmatch(r"imagegen: [a-z/]+ · \d/2 saved · \d in flight · \d+ s( · .*)?", s)
               for s in states), states
    assert not any("…" in state for state in states)


def test_batch_progress_counts_every_line_in_flight(fake, env, run):
    fake.delay = 1.0
    (env.work / "three.jsonl").write_text("".join(
        json.dumps({"prompt": f"icon {n}", "out": f"icons/{n}.png"}) + "\n" for n in range(3)))
    result = run("batch", "three.jsonl", "--parallel", "3", tty=True, env_vars={"COLUMNS": "200"})
    assert result.code == 0, result
    states = drawn(result.err)
    assert any("0/3 saved · 3 in flight" in state for state in states), states
    assert not any("1 image" in state for state in states), states


# a heartbeat where there is no live line ####################################################

@pytest.fixture
def quick_heartbeat(monkeypatch):
    import imagegen
    monkeypatch.setattr(imagegen, "HEARTBEAT_S", 0.3)


def test_a_heartbeat_line_when_stderr_is_not_a_terminal(fake, env, run, quick_heartbeat):
    fake.delay = 1.2
    result = run(PROMPT)
    assert result.code == 0, result
    beats = [line for line in result.err.splitlines() if line.startswith("imagegen: still ")]
    assert beats, result
    assert all(re.fullmatch(r"imagegen: still [a-z/]+ · 1 image · \d+ s( · .*)?", b) for b in beats), beats
    assert "\r" not in result.err and "\x1b" not in result.err


@pytest.mark.parametrize("flag", ["--quiet", "--json"])
def test_no_heartbeat_with_quiet_or_json(fake, env, run, quick_heartbeat, flag):
    fake.delay = 1.0
    result = run(PROMPT, flag)
    assert result.code == 0, result
    assert "still" not in result.err


def test_no_progress_gives_heartbeat_lines_instead_of_the_live_line(fake, env, run, quick_heartbeat):
    fake.delay = 1.0
    result = run(PROMPT, "--no-progress", tty=True)
    assert result.code == 0, result
    assert "\r" not in result.err
    assert any(line.startswith("imagegen: still ") for line in result.err.splitlines())


# each path once in a terminal ###############################################################

@pytest.mark.skipif(not hasattr(os, "openpty"), reason="no pseudo-terminals here")
def test_one_terminal_shows_each_path_once(fake, env, run_cli):
    controller, terminal = os.openpty()
    try:
        proc = subprocess.Popen(run_cli.command(PROMPT, "-n", "2", "-o", "coins/", "--no-progress"),
                                stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                                cwd=str(env.work), env=env.environ())
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(60) == 0, output
    finally:
        os.close(controller)
    text = output.decode("utf-8", "replace")
    for path in ("coins/a-paper-plane-over-a-blue-sea.png", "coins/a-paper-plane-over-a-blue-sea-2.png"):
        assert len(re.findall(re.escape(path) + r"(?![-\w])", text)) == 1, text
    assert "saved" not in text


def test_a_pipe_keeps_the_saved_lines_on_stderr(fake, env, run_cli):
    result = run_cli(PROMPT)
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert f"saved {DEFAULT_PATH}" in result.err

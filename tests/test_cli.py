"""The command line of `generate`: how the prompt is given, option validation before any
request, usage errors (exit 2), --version and --help, and a few runs as a subprocess."""
from __future__ import annotations

import importlib
import json
import os
import platform
import re
import shlex
import shutil
import struct
import subprocess
import sys

import pytest

from fakeserver import make_secret, stall, status

PROMPT = "a paper plane over a blue sea"
DEFAULT_PATH = "assets/generated/a-paper-plane-over-a-blue-sea.png"


def sent_prompt(fake) -> str:
    """The prompt text that reached the Codex backend in the last request (either route)."""
    body = fake.last_request.json
    if "prompt" in body:  # the images route (the default)
        return body["prompt"]
    content = body["input"][0]["content"]
    return [part["text"] for part in content if part["type"] == "input_text"][0]


def usage_error(result, fake, pattern: str | None = None) -> str:
    """Exit 2, nothing on stdout, one error line, no request sent; returns that line."""
    assert result.code == 2, result
    assert result.out == "", result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imagegen: error: "), result
    if pattern is not None:
        assert re.search(pattern, lines[0], re.I), result
    assert fake.requests == [], result
    return lines[0]


# how the prompt is given ###################################################################

@pytest.mark.parametrize("argv", [
    [PROMPT],
    ["generate", PROMPT],
    ["-p", PROMPT],
    ["--prompt", PROMPT],
    ["generate", "--prompt", PROMPT],
    ["--quiet", PROMPT],                    # options before the prompt
    [PROMPT, "--quiet"],
], ids=["bare", "generate", "-p", "--prompt", "generate--prompt", "option-first", "option-last"])
def test_the_prompt_reaches_the_server(fake, env, run, argv):
    result = run(*argv)
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert sent_prompt(fake) == PROMPT
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]


@pytest.mark.parametrize("word", ["auth", "batch", "generate"])
def test_a_command_word_after_generate_is_the_prompt(fake, env, run, word):
    result = run("generate", word, "--quiet")
    assert result.code == 0, result
    assert sent_prompt(fake) == word


def test_prompt_that_starts_with_a_dash_via_p(fake, env, run):
    result = run("-p", "-- a dash first", "--quiet")
    assert result.code == 0, result
    assert sent_prompt(fake) == "-- a dash first"


def test_prompt_file(fake, env, run):
    (env.work / "prompt.txt").write_text("a lighthouse at dusk,\nwarm light\n", encoding="utf-8")
    result = run("--prompt-file", "prompt.txt", "--quiet")
    assert result.code == 0, result
    assert sent_prompt(fake) == "a lighthouse at dusk,\nwarm light"
    assert result.out == "assets/generated/a-lighthouse-at-dusk-warm-light.png\n"


def test_prompt_file_from_stdin(fake, env, run):
    result = run("--prompt-file", "-", "--quiet", input="a cactus in a pot\n")
    assert result.code == 0, result
    assert sent_prompt(fake) == "a cactus in a pot"
    assert result.out == "assets/generated/a-cactus-in-a-pot.png\n"


def test_prompt_file_that_does_not_exist(fake, env, run):
    usage_error(run("--prompt-file", "missing.txt"), fake, "missing.txt")


def test_empty_prompt_from_stdin(fake, env, run):
    usage_error(run("--prompt-file", "-", input="  \n"), fake, "prompt")


@pytest.mark.parametrize("argv", [[], ["--quiet"], ["generate"], ["-n", "2"], ["-p", ""]],
                         ids=["nothing", "only-an-option", "only-generate", "count", "empty-p"])
def test_no_prompt_is_a_usage_error(fake, env, run, argv):
    usage_error(run(*argv), fake, "prompt")


@pytest.mark.parametrize("argv", [
    [PROMPT, "-p", "another"],
    ["-p", PROMPT, "--prompt-file", "prompt.txt"],
    [PROMPT, "--prompt-file", "-"],
], ids=["word-and-p", "p-and-file", "word-and-stdin"])
def test_two_prompt_sources_is_a_usage_error(fake, env, run, argv):
    (env.work / "prompt.txt").write_text("x", encoding="utf-8")
    usage_error(run(*argv, input="from stdin"), fake, "one way|prompt")


def test_several_unquoted_words_is_a_usage_error(fake, env, run):
    line = usage_error(run("a", "red", "fox"), fake, "quot")
    assert "one" in line


# sizes #####################################################################################

@pytest.mark.parametrize("size, why", [
    ("1000x1000", "divisible by 16"),
    ("2400x768", "1:3"),                   # ratio 3.125
    ("768x2400", "1:3"),
    ("3840x2176", "pixels"),               # 8,355,840 > 3840x2160
    ("3856x1296", "3840"),                 # long edge 3856, ratio and pixels fine
    ("800x800", "at least"),               # 640,000 < 655,360
    ("big", "WIDTHxHEIGHT"),
    ("1024", "WIDTHxHEIGHT"),
    ("1024x", "WIDTHxHEIGHT"),
    ("-1024x1024", ""),
    ("0x0", ""),
])
def test_bad_sizes_for_gpt_image_2(fake, env, run, size, why):
    # --fit none: the file is what the model makes, so the model's rules apply
    usage_error(run(PROMPT, "--size", size, "--fit", "none"), fake,
                re.escape(why) if why else None)


@pytest.mark.parametrize("size, why", [
    ("1000x8", "from 16"),
    ("3856x1296", "3840"),
    ("3840x2176", "pixels"),
    ("big", "WIDTHxHEIGHT"),
    ("0x0", ""),
])
def test_sizes_no_fit_can_deliver(fake, env, run, size, why):
    usage_error(run(PROMPT, "--size", size), fake, re.escape(why) if why else None)


@pytest.mark.parametrize("size, asked", [("1200x630", "1200x624"), ("1000x1000", "1008x1008"),
                                         ("800x800", "816x816"), ("1536x1024", "1536x1024")])
def test_a_size_the_model_does_not_make_asks_the_nearest_and_is_fitted(fake, env, run, size,
                                                                        asked):
    # An Open Graph card (1200x630) is a size no image model makes: the api backend asks
    # for the nearest size gpt-image-2 makes, and the file is fitted to exactly 1200x630.
    env.write_api_config()
    result = run(PROMPT, "--size", size, "--backend", "api", "-o", "card.png", "--json")
    assert result.code == 0, result
    (request,) = fake.requests_to("/v1/images/generations")
    assert request.json["size"] == asked
    image = result.json["images"][0]
    assert f'{image["width"]}x{image["height"]}' == size
    data = (env.work / "card.png").read_bytes()
    assert struct.unpack(">II", data[16:24]) == tuple(int(side) for side in size.split("x"))


@pytest.mark.parametrize("size", ["auto", "1024x1024", "1536x1024", "1024x1536", "3840x2160",
                                  "2160x3840", "1024x640", "2048x2048", "1280x720", "3072x1024",
                                  "1024X1024"])
def test_good_sizes_for_gpt_image_2(fake, env, run, size):
    # the api backend sends the size as given (the codex backend turns it into an aspect line)
    result = run(PROMPT, "--size", size, "--dry-run", "--backend", "api")
    assert result.code == 0, result
    assert result.json["requests"][0]["body"]["size"] == size.lower()


@pytest.mark.parametrize("size", ["2048x2048", "1024x640", "1280x720", "1536x1536", "512x512"])
def test_bad_sizes_for_another_image_model(fake, env, run, size):
    line = usage_error(run(PROMPT, "--image-model", "gpt-image-1", "--size", size, "--fit", "none"),
                       fake)
    assert "1024x1024" in line and "1536x1024" in line and "1024x1536" in line


def test_bad_size_for_an_image_model_from_the_environment(fake, env, run):
    usage_error(run(PROMPT, "--size", "2048x2048", "--fit", "none",
                    env_vars={"IMAGEGEN_IMAGE_MODEL": "gpt-image-1"}), fake)


@pytest.mark.parametrize("size", ["1024x1024", "1536x1024", "1024x1536", "auto"])
def test_classic_sizes_for_another_image_model(fake, env, run, size):
    result = run(PROMPT, "--image-model", "gpt-image-1", "--size", size, "--dry-run", "--backend", "api")
    assert result.code == 0, result
    body = result.json["requests"][0]["body"]
    assert body["size"] == size and body["model"] == "gpt-image-1"


# other option values #######################################################################

@pytest.mark.parametrize("argv, pattern", [
    (["--compression", "50"], "jpeg and webp"),                         # png by default
    (["--compression", "50", "--format", "png"], "jpeg and webp"),
    (["--compression", "50", "-o", "x.png"], "jpeg and webp"),
    (["--compression", "101", "--format", "jpeg"], "0 to 100|0.*100"),
    (["--compression", "-1", "--format", "webp"], "0 to 100|0.*100"),
    (["--compression", "high", "--format", "webp"], "compression"),
    (["--background", "transparent", "--format", "jpeg"], "transparent"),
    (["--background", "transparent", "-o", "logo.jpg"], "transparent"),
    (["--background", "clear"], "background"),
    (["--quality", "ultra"], "quality"),
    (["--moderation", "none"], "moderation"),
    (["--format", "gif"], "format"),
    (["-n", "0"], "count"),
    (["-n", "11"], "count"),
    (["--count", "two"], "count"),
    (["--parallel", "9"], "parallel"),
    (["--parallel", "0"], "parallel"),
    (["--retries", "6"], "retries"),
    (["--retries", "-1"], "retries"),
    (["--timeout", "0"], "timeout"),
    (["--timeout", "soon"], "timeout"),
    (["--stall-timeout", "-3"], "stall-timeout"),
    (["--timeout", "86401"], "timeout"),                               # the cap is a day
    (["--timeout", "1e9"], "timeout"),
    (["--timeout", "inf"], "timeout"),
    (["--timeout", "nan"], "timeout"),
    (["--stall-timeout", "86401"], "stall-timeout"),
    (["--backend", "bogus"], "backend"),
    (["--route", "sideways"], "route"),
    (["--base-url", "ftp://example.com"], "base-url"),
])
def test_bad_values_are_usage_errors_before_any_request(fake, env, run, argv, pattern):
    usage_error(run(PROMPT, *argv), fake, pattern)


@pytest.mark.parametrize("option", ["--timeout", "--stall-timeout"])
def test_a_timeout_over_the_cap_names_the_cap(fake, env, run, option):
    usage_error(run(PROMPT, option, "86401"), fake, "86400|a day|24 h")


TOOL = ["--route", "responses"]  # the route that takes output_format and compression (PROTOCOL.md)


@pytest.mark.parametrize("argv, where, sent, saves", [
    (["--compression", "0", "--format", "jpeg", *TOOL], "tool",
     {"output_format": "jpeg", "output_compression": 0}, [DEFAULT_PATH[:-4] + ".jpg"]),
    (["--compression", "100", "--format", "webp", *TOOL], "tool",
     {"output_format": "webp", "output_compression": 100}, [DEFAULT_PATH[:-4] + ".webp"]),
    (["--compression", "70", "-o", "photo.jpg", *TOOL], "tool",
     {"output_format": "jpeg", "output_compression": 70}, ["photo.jpg"]),
    (["--output-format", "jpeg", *TOOL], "tool", {"output_format": "jpeg"},
     [DEFAULT_PATH[:-4] + ".jpg"]),
    (["--background", "transparent", "--format", "webp", "--backend", "api"], "body",
     {"background": "transparent", "output_format": "webp"}, [DEFAULT_PATH[:-4] + ".webp"]),
    (["-n", "10", "--parallel", "8"], "body", {"prompt": PROMPT},
     [DEFAULT_PATH] + [DEFAULT_PATH[:-4] + f"-{n}.png" for n in range(2, 11)]),
], ids=["compression-0", "compression-100", "compression-from-o", "output-format-alias",
        "api-transparent-webp", "count-10-parallel-8"])
def test_edge_values_are_accepted_and_reach_the_request(fake, env, run, argv, where, sent, saves):
    """--dry-run prints what would be sent: the edge values are in every request (in the
    image tool on the Responses route, in the body on the images routes), and the saves are
    named for them; nothing is sent."""
    result = run(PROMPT, *argv, "--dry-run")
    assert result.code == 0, result
    plan = result.json
    assert len(plan["requests"]) == len(saves)
    for request in plan["requests"]:
        fields = request["body"]["tools"][0] if where == "tool" else request["body"]
        assert {name: fields.get(name) for name in sent} == sent, request
    assert plan["saves"] == saves
    assert fake.requests == []
    assert not (env.work / "assets").exists()


def test_retries_5_and_a_timeout_of_a_day_are_accepted_and_used(fake, env, run):
    """Five failures, then the image: --retries 5 sends six times."""
    fake.queue("/images/generations", *[status(502, headers={"Retry-After": "0"})] * 5)
    result = run(PROMPT, "--retries", "5", "--timeout", "86400", "-q", seams={"sleep": lambda s: None})
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert len(fake.requests) == 6


def test_retries_0_sends_once(fake, env, run):
    fake.queue("/images/generations", status(502, headers={"Retry-After": "0"}))
    result = run(PROMPT, "--retries", "0", "-q")
    assert result.code == 5, result
    assert result.out == "" and "HTTP 502" in result.err
    assert len(fake.requests) == 1


def test_stall_timeout_0_waits_through_a_silence(fake, env, run):
    fake.queue("/images/generations", stall(seconds=1.0))  # silent, then the answer
    result = run(PROMPT, "--stall-timeout", "0", "--retries", "0", "-q")
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]
    assert len(fake.requests) == 1


def test_environment_backend_is_checked(fake, env, run):
    usage_error(run(PROMPT, env_vars={"IMAGEGEN_BACKEND": "bogus"}), fake, "IMAGEGEN_BACKEND")


def test_environment_route_is_checked(fake, env, run):
    usage_error(run(PROMPT, env_vars={"IMAGEGEN_ROUTE": "nowhere"}), fake, "IMAGEGEN_ROUTE")


def test_unknown_option_is_named(fake, env, run):
    usage_error(run(PROMPT, "--colour", "red"), fake, "--colour")


def test_unknown_option_with_equals_is_named_without_its_value(fake, env, run):
    line = usage_error(run(PROMPT, "--style=watercolour"), fake, "--style")
    assert "watercolour" not in line


@pytest.mark.parametrize("template", [
    ["--api-key", "{}"],
    ["--api-key={}"],
    ["--token", "{}"],
    ["--access-token={}"],
    ["--openai-api-key", "{}"],
    ["--key", "{}"],
    ["--password", "{}"],
    ["--bearer", "{}"],          # not a known option: named, its value never echoed
])
def test_a_secret_on_the_command_line_is_refused_and_not_echoed(fake, env, run, template):
    secret = make_secret("sk-proj-")
    env.secrets.add(secret)
    argv = [part.format(secret) for part in template]
    for args in ([PROMPT, *argv], [*argv, PROMPT], ["--json", PROMPT, *argv]):
        result = run(*args)
        assert result.code == 2, result
        assert secret not in result.out and secret not in result.err
        assert "SECRETx" not in result.out + result.err
        assert fake.requests == []
        if template[0] != "--bearer":   # says why: secrets come from files or the environment
            assert re.search(r"never taken from the command line", result.err), result


def test_a_secret_given_as_the_value_of_a_known_option_is_not_echoed(fake, env, run):
    # The value lands where it does not belong; the error must not print it back.
    secret = make_secret("sk-")
    env.secrets.add(secret)
    result = run(PROMPT, "--size", secret)
    assert result.code == 2, result
    assert secret not in result.err and "SECRETx" not in result.err
    assert fake.requests == []


# --json on usage errors #####################################################################

@pytest.mark.parametrize("argv", [
    ["--json"],
    ["--json", "a", "b"],
    ["--json", PROMPT, "--size", "15x15"],
    ["--json", PROMPT, "--frobnicate"],
    ["--json", PROMPT, "-n", "0"],
    [PROMPT, "--json", "--backend", "nope"],
])
def test_json_prints_one_object_even_on_usage_errors(fake, env, run, argv):
    result = run(*argv)
    assert result.code == 2, result
    assert result.out.count("\n") == 1
    payload = json.loads(result.out)
    assert payload["ok"] is False
    assert payload["images"] == []
    assert payload["error"]["kind"] == "usage"
    assert payload["error"]["exit_code"] == 2
    assert payload["error"]["message"]
    assert fake.requests == []


# --version and --help ######################################################################

def test_version(fake, env, run):
    imagegen = importlib.import_module("imagegen")
    result = run("--version")
    assert result.code == 0, result
    assert result.out == f"imagegen {imagegen.__version__}\n"  # one line: scripts parse it
    assert fake.requests == []


EXIT_CODE_TABLE = {0: "saved", 1: "internal", 2: "usage", 3: "auth", 4: "rate limit",
                   5: "backend", 6: "no image", 7: "output", 130: "interrupted"}


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["generate", "--help"], [PROMPT, "--help"]])
def test_help(fake, env, run, argv):
    result = run(*argv)
    assert result.code == 0, result
    text = result.out
    assert "usage:" in text.lower()
    for option in ("--prompt-file", "--size", "--quality", "--background", "--format",
                   "--compression", "--moderation", "--count", "--parallel", "--model",
                   "--image-model", "--base-url", "--timeout", "--stall-timeout", "--retries",
                   "--quiet", "--json", "--no-progress", "--dry-run", "--force", "--out"):
        assert option in text, option
    assert "exit codes" in text.lower()
    for code, word in EXIT_CODE_TABLE.items():
        assert re.search(rf"(?m)(^|\s){code}\s+[^\n]*{word}", text, re.I), (code, word)
    assert fake.requests == []


# as a subprocess ###########################################################################

def test_cli_help(fake, env, run_cli):
    result = run_cli("--help")
    assert result.code == 0, result
    assert "exit codes" in result.out.lower()
    assert result.err == ""


def test_cli_version(fake, env, run_cli):
    imagegen = importlib.import_module("imagegen")
    result = run_cli("--version")
    assert result.code == 0, result
    assert result.out == f"imagegen {imagegen.__version__}\n"
    details = run_cli("--version", "--json")
    assert details.code == 0, details
    assert json.loads(details.out)["path"] == str(run_cli.script)


def test_cli_generate(fake, env, run_cli):
    result = run_cli(PROMPT)
    assert result.code == 0, result
    assert result.out == DEFAULT_PATH + "\n"
    assert (env.work / DEFAULT_PATH).read_bytes() == fake.images_sent[-1]
    assert "\r" not in result.err and "\x1b" not in result.err
    assert len(fake.requests) == 1


def test_cli_without_a_login_is_exit_3_with_the_fix(fake, env, run_cli):
    env.auth_file.unlink()
    result = run_cli(PROMPT)
    assert result.code == 3, result
    assert result.out == ""
    lines = [line for line in result.err.splitlines() if line.startswith("imagegen: error: ")]
    assert len(lines) == 1, result
    # the hint names the command as it was started: the script, by the path it was given
    script = shlex.quote(str(run_cli.script))
    assert f"run `python3 {script} auth login`" in lines[0] and "`codex login`" in lines[0]
    assert str(env.auth_file) in lines[0]
    assert "Traceback" not in result.err
    assert fake.requests == []
    assert not (env.work / "assets").exists()


def test_cli_prompt_from_stdin(fake, env, run_cli):
    result = run_cli("--prompt-file", "-", "-q", input="a snail on a leaf\n")
    assert result.code == 0, result
    assert result.out == "assets/generated/a-snail-on-a-leaf.png\n"
    assert result.err == ""
    assert sent_prompt(fake) == "a snail on a leaf"
    assert (env.work / "assets/generated/a-snail-on-a-leaf.png").read_bytes() == fake.images_sent[-1]


def test_cli_usage_error(fake, env, run_cli):
    result = run_cli("two", "words")
    assert result.code == 2, result
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "Traceback" not in result.err


# hints name the program as it was started ##################################################

@pytest.mark.parametrize("argv0, expected", [
    ("imagegen", "imagegen"),
    ("/home/me/.local/bin/imagegen", "imagegen"),
    ("/home/me/.local/bin/codex-imagegen", "codex-imagegen"),
    ("codex-imagegen.exe", "codex-imagegen"),
    ("/usr/lib/python3/site-packages/pytest/__main__.py", "imagegen"),  # not this program
    ("", "imagegen"),
])
def test_program_name_from_argv0(argv0, expected):
    imagegen = importlib.import_module("imagegen")
    assert imagegen._program_name(argv0, windows=False) == expected


def test_program_name_of_the_script_is_how_to_run_it_again(tmp_path, monkeypatch):
    imagegen = importlib.import_module("imagegen")
    folder = tmp_path / "my skills"
    folder.mkdir()
    copy = folder / "imagegen.py"
    shutil.copyfile(imagegen.__file__, copy)
    monkeypatch.setattr(imagegen, "__file__", str(copy))
    monkeypatch.chdir(folder)
    assert imagegen._program_name("imagegen.py", windows=False) == "python3 imagegen.py"
    assert imagegen._program_name(str(copy), windows=False) == f"python3 '{copy}'"
    assert imagegen._program_name(str(copy), windows=True) == f'python "{copy}"'
    assert imagegen._as_invoked("run `imagegen auth login` (or `codex login`)",
                               "python3 imagegen.py") == \
        "run `python3 imagegen.py auth login` (or `codex login`)"


def test_a_script_copied_into_a_folder_names_itself_in_its_hints(fake, env, run_cli):
    """A skill's copy, run as `python3 imagegen.py`: the login hint is a command that works
    there, on stderr and in --json; `imagegen` is not a command on this machine."""
    env.auth_file.unlink()
    shutil.copyfile(run_cli.script, env.work / "imagegen.py")
    for extra in ([], ["--json"]):
        proc = subprocess.run([sys.executable, "imagegen.py", PROMPT, *extra],
                              cwd=str(env.work), env=env.environ(), capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 3, proc
        assert "run `python3 imagegen.py auth login`" in proc.stderr, proc
        assert "`imagegen auth login`" not in proc.stderr + proc.stdout
        if extra:
            message = json.loads(proc.stdout)["error"]["message"]
            assert "`python3 imagegen.py auth login`" in message
    assert fake.requests == []


def test_in_process_runs_keep_the_plain_name(fake, env, run):
    env.auth_file.unlink()
    result = run(PROMPT)
    assert result.code == 3, result
    assert "run `imagegen auth login`" in result.err


# a command name as a one-word prompt ########################################################

@pytest.mark.parametrize("argv, word", [
    (["batch", "-q"], "batch"),
    (["batch", "--json"], "batch"),
    (["auth", "-q"], "auth"),
    (["doctor", "--quiet"], "doctor"),
])
def test_a_command_word_with_options_that_do_not_fit_it_is_a_usage_error(fake, env, run, argv,
                                                                           word):
    """`imagegen "help" -q` must not print the help on stdout and exit 0: an agent reading
    stdout for a path would take it for a result."""
    result = run(*argv)
    assert result.code == 2, result
    hint = f'to make an image of the word "{word}": imagegen generate "{word}"'
    if "--json" in argv:
        assert result.json["ok"] is False and hint in result.json["error"]["message"]
    else:
        assert result.out == ""
    assert hint in result.err
    assert "usage:" not in result.out + result.err
    assert fake.requests == []


@pytest.mark.parametrize("options", [["-q"], ["--json"], ["--size", "1024x1024", "-q"]])
def test_help_with_options_is_a_prompt_like_any_word_that_is_not_a_command(fake, env, run,
                                                                          options):
    # the contract: "when the first argument is not a command name or an option, it is the
    # prompt"; `help` alone is the help, with options it is what to draw
    result = run("help", *options)
    assert result.code == 0, result
    path = result.json["images"][0]["path"] if "--json" in options else result.out.strip()
    assert path == os.path.join("assets", "generated", "help.png")
    assert (env.work / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r.json.get("prompt", "") for r in fake.requests_to("/images/generations")][0].startswith("help")
    assert "usage:" not in result.out


def test_help_and_batch_still_work_as_commands(fake, env, run):
    assert run("help").out.startswith("usage: imagegen")
    assert run("help").code == 0
    (env.work / "b.jsonl").write_text('{"prompt": "a fox", "out": "fox.png"}\n')
    result = run("batch", "b.jsonl", "-q")
    assert result.code == 0, result
    assert result.out == "fox.png\n"


#: what --version says of the platform (macOS: its product version, as in the User-Agent)
PLATFORM = (f"{'Mac OS' if sys.platform == 'darwin' else platform.system()} "
            f"{platform.mac_ver()[0] if sys.platform == 'darwin' else platform.release()} "
            f"({platform.machine()})")


@pytest.mark.parametrize("argv", [["--version", "--json"], ["--json", "--version"], ["-V", "--json"]])
def test_version_json_is_one_object_with_the_facts_of_a_bug_report(fake, env, run, argv):
    imagegen = importlib.import_module("imagegen")
    result = run(*argv)
    assert result.code == 0, result
    assert result.json == {
        "program": "imagegen", "version": imagegen.__version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "python_executable": sys.executable, "path": os.path.abspath(imagegen.__file__),
        "platform": PLATFORM}


def test_version_names_the_entry_point_it_was_started_by(monkeypatch, capsys):
    imagegen = importlib.import_module("imagegen")
    monkeypatch.setattr(sys, "argv", ["/home/me/.local/bin/codex-imagegen", "--version"])
    assert imagegen.main() == 0
    assert capsys.readouterr().out.splitlines()[0] == f"codex-imagegen {imagegen.__version__}"

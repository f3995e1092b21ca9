"""The save-path policy (CONTRACT.md "Save-path policy"), rule by rule, as a user sees it:
which file appears, with which bytes, what the server was (not) asked, what is left on disk."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fakeserver import (bad_base64, image_info, jpeg_bytes, not_an_image, ok, other_format,
                        png_bytes, stall, status, trickle, truncated)

GENERATED = Path("assets") / "generated"


# helpers ###################################################################################

def files_under(root: Path) -> list[Path]:
    """Every file (and symlink) below root, hidden ones included."""
    found = []
    for folder, _dirs, names in os.walk(root):
        found += [Path(folder) / name for name in names]
    return sorted(found)


def assert_no_debris(root: Path) -> None:
    """No temporary, partial or empty file anywhere below root."""
    for path in files_under(root):
        assert not path.name.endswith(".part"), f"a temporary file was left: {path}"
        assert not path.name.startswith(".imagegen-"), f"a temporary file was left: {path}"
        if not path.is_symlink():
            assert path.stat().st_size > 0, f"an empty file was left: {path}"


def generated(env) -> Path:
    return env.work / GENERATED


def refused_before_sending(result, fake, code: int, *words: str) -> str:
    """Exit `code`, nothing on stdout, one error line holding every word, nothing sent;
    returns that line."""
    assert result.code == code, result
    assert result.out == "", result
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("imagegen: error: "), result
    for word in words:
        assert word in lines[0], result
    assert fake.requests == [], result
    return lines[0]


def saved_paths(result, env) -> list[Path]:
    """The paths printed on stdout, resolved against the working directory."""
    return [env.work / line for line in result.lines]


# rule 1: the automatic name ################################################################

def test_automatic_name_under_assets_generated_with_the_servers_bytes(env, fake, run):
    result = run("A red fox, in the snow!")
    assert result.code == 0, result
    assert result.lines == [str(GENERATED / "a-red-fox-in-the-snow.png")]
    saved = generated(env) / "a-red-fox-in-the-snow.png"
    assert saved.read_bytes() == fake.images_sent[0]
    assert files_under(env.work) == [saved]


@pytest.mark.parametrize("prompt, slug", [
    ("Hello World", "hello-world"),
    ("Café crème brûlée", "cafe-creme-brulee"),                      # NFKD, then ASCII
    ("ﬁne ① ＡＢＣ", "fine-1-abc"),                                   # compatibility forms
    ("🎉 party time 🎉", "party-time"),                                # emoji vanish
    ("🎉🦊🌈", "image"),                                               # nothing left
    ("日本語のプロンプト", "image"),
    ("../../etc/passwd", "etc-passwd"),                               # no path escapes
    ("..", "image"),
    ("a\\b/c", "a-b-c"),
    ("tab\there\x00nul\x07bell\nnewline", "tab-here-nul-bell-newline"),  # control characters
    ("--- UPPER___case ---", "upper-case"),
    ("the quick brown fox jumps over the lazy dog and runs far away",
     "the-quick-brown-fox-jumps-over-the-lazy-dog-and"),              # 48 max, at a word
    ("supercalifragilisticexpialidocious" * 3, ("supercalifragilisticexpialidocious" * 3)[:48]),
])
def test_slug_rules(env, fake, run, prompt, slug):
    result = run(prompt)
    assert result.code == 0, result
    assert len(slug) <= 48
    assert result.lines == [str(GENERATED / f"{slug}.png")]
    assert (generated(env) / f"{slug}.png").read_bytes() == fake.images_sent[0]
    # nothing was written outside assets/generated, whatever the prompt held
    assert files_under(env.work) == [generated(env) / f"{slug}.png"]
    assert fake.last_request.json["prompt"] == prompt


def test_a_3000_character_prompt_gives_a_short_slug_and_is_sent_whole(env, fake, run):
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    prompt = " ".join(words[i % len(words)] for i in range(600))[:3000]
    assert len(prompt) == 3000
    result = run(prompt)
    assert result.code == 0, result
    name = Path(result.lines[0]).name
    slug = name[:-len(".png")]
    assert len(slug) <= 48
    assert slug == "alpha-bravo-charlie-delta-echo-foxtrot-golf"  # cut where a word ends
    assert fake.last_request.json["prompt"] == prompt


def test_taken_names_get_2_then_3_and_earlier_files_are_kept(env, fake, run):
    for _ in range(3):
        assert run("a blue whale").code == 0
    names = sorted(p.name for p in generated(env).iterdir())
    assert names == ["a-blue-whale-2.png", "a-blue-whale-3.png", "a-blue-whale.png"]
    sent = fake.images_sent
    assert (generated(env) / "a-blue-whale.png").read_bytes() == sent[0]
    assert (generated(env) / "a-blue-whale-2.png").read_bytes() == sent[1]
    assert (generated(env) / "a-blue-whale-3.png").read_bytes() == sent[2]


def test_a_name_taken_by_a_directory_or_a_dangling_link_is_skipped(env, fake, run):
    folder = generated(env)
    folder.mkdir(parents=True)
    (folder / "owl.png").mkdir()
    (folder / "owl-2.png").symlink_to(env.tmp / "nowhere.png")
    result = run("owl")
    assert result.code == 0, result
    assert result.lines == [str(GENERATED / "owl-3.png")]
    assert (folder / "owl-3.png").read_bytes() == fake.images_sent[0]
    assert not (env.tmp / "nowhere.png").exists()


def test_parallel_processes_never_write_the_same_file(env, fake, run_cli):
    fake.delay = 0.3  # hold the answers so that the processes save at about the same time
    procs = [run_cli.popen("the same prompt", "--no-progress") for _ in range(5)]
    results = [run_cli.wait(proc, timeout=60) for proc in procs]
    assert all(r.code == 0 for r in results), results
    printed = [r.lines[0] for r in results]
    assert len(set(printed)) == 5, printed
    expected = {str(GENERATED / "the-same-prompt.png")} | {
        str(GENERATED / f"the-same-prompt-{n}.png") for n in range(2, 6)}
    assert set(printed) == expected
    on_disk = sorted(p.read_bytes() for p in generated(env).iterdir())
    assert len(on_disk) == 5
    assert on_disk == sorted(fake.images_sent)  # every image kept, none overwritten
    assert_no_debris(env.work)


# rule 2: -o DIR/ ###########################################################################

def test_out_with_trailing_slash_is_a_directory_and_is_created(env, fake, run):
    result = run("a green frog", "-o", "art/frogs/")
    assert result.code == 0, result
    assert result.lines == [os.path.join("art", "frogs", "a-green-frog.png")]
    assert (env.work / "art" / "frogs" / "a-green-frog.png").read_bytes() == fake.images_sent[0]


def test_count_4_into_a_directory_numbers_the_automatic_names(env, fake, run):
    result = run("pixel-art coin sprite", "-n", "4", "-o", "sprites/")
    assert result.code == 0, result
    names = ["pixel-art-coin-sprite.png"] + [f"pixel-art-coin-sprite-{n}.png" for n in (2, 3, 4)]
    assert sorted(result.lines) == sorted(os.path.join("sprites", name) for name in names)
    saved = sorted((env.work / line).read_bytes() for line in result.lines)
    assert saved == sorted(fake.images_sent) and len(set(saved)) == 4


def test_out_an_existing_directory_gets_the_automatic_name_and_numbering(env, fake, run):
    (env.work / "pics").mkdir()
    (env.work / "pics" / "a-green-frog.png").write_bytes(b"mine")
    result = run("a green frog", "-o", "pics")
    assert result.code == 0, result
    assert result.lines == [os.path.join("pics", "a-green-frog-2.png")]
    assert (env.work / "pics" / "a-green-frog.png").read_bytes() == b"mine"
    assert (env.work / "pics" / "a-green-frog-2.png").read_bytes() == fake.images_sent[0]


def test_out_an_absolute_directory_outside_the_workspace_prints_an_absolute_path(env, fake, run):
    outside = env.tmp / "elsewhere"
    outside.mkdir()
    result = run("a green frog", "-o", str(outside))
    assert result.code == 0, result
    assert result.lines == [str(outside / "a-green-frog.png")]
    assert (outside / "a-green-frog.png").read_bytes() == fake.images_sent[0]


# rule 3: -o FILE ###########################################################################

def test_out_file_is_exact_and_missing_parents_are_created(env, fake, run):
    result = run("a cat", "-o", "deep/er/cat.png")
    assert result.code == 0, result
    assert result.lines == [os.path.join("deep", "er", "cat.png")]
    assert (env.work / "deep" / "er" / "cat.png").read_bytes() == fake.images_sent[0]
    assert files_under(env.work) == [env.work / "deep" / "er" / "cat.png"]


def test_out_existing_file_is_exit_7_untouched_and_no_request_is_sent(env, fake, run):
    target = env.work / "cat.png"
    target.write_bytes(b"precious bytes")
    result = run("a cat", "-o", "cat.png")
    assert result.code == 7, result
    assert "cat.png" in result.err and "--force" in result.err
    assert target.read_bytes() == b"precious bytes"
    assert fake.requests == []
    assert result.out == ""


def test_force_replaces_an_existing_file(env, fake, run):
    target = env.work / "cat.png"
    target.write_bytes(b"old bytes")
    result = run("a cat", "-o", "cat.png", "--force")
    assert result.code == 0, result
    assert target.read_bytes() == fake.images_sent[0]
    assert_no_debris(env.work)


def test_count_3_with_out_file_numbers_the_stem(env, fake, run):
    result = run("a dog", "-n", "3", "-o", "dogs/dog.png")
    assert result.code == 0, result
    assert result.lines == [os.path.join("dogs", name) for name in ("dog.png", "dog-2.png", "dog-3.png")]
    contents = [(env.work / line).read_bytes() for line in result.lines]
    assert sorted(contents) == sorted(fake.images_sent)
    assert len(set(contents)) == 3


def test_an_existing_file_is_refused_before_the_login_is_even_refreshed(env, fake, run):
    env.write_auth(expired=True)
    (env.work / "cat.png").write_bytes(b"mine")
    result = run("a cat", "-o", "cat.png")
    refused_before_sending(result, fake, 7, "cat.png already exists", "--force")
    assert fake.auth.refresh_attempts == 0
    assert (env.work / "cat.png").read_bytes() == b"mine"


def test_two_processes_racing_for_the_same_out_file(env, fake, run_cli):
    fake.delay = 0.3  # both pass the early check; only one may then claim the name
    procs = [run_cli.popen("a cat", "-o", "cat.png", "--no-progress") for _ in range(2)]
    results = sorted((run_cli.wait(proc) for proc in procs), key=lambda r: r.code)
    assert [r.code for r in results] == [0, 7], results
    assert results[0].lines == ["cat.png"]
    assert (env.work / "cat.png").read_bytes() in fake.images_sent
    assert files_under(env.work) == [env.work / "cat.png"]


def test_count_3_refuses_when_a_numbered_name_exists_before_any_request(env, fake, run):
    (env.work / "dog-2.png").write_bytes(b"second")
    result = run("a dog", "-n", "3", "-o", "dog.png")
    assert result.code == 7, result
    assert "dog-2.png" in result.err
    assert fake.requests == []
    assert (env.work / "dog-2.png").read_bytes() == b"second"
    assert not (env.work / "dog.png").exists()


# rule 4: the extension #####################################################################

@pytest.mark.parametrize("name, fmt", [("cat.jpg", "jpeg"), ("cat.JPEG", "jpeg"), ("cat.webp", "webp"),
                                       ("cat.png", "png")])
def test_the_extension_chooses_the_format_asked_and_saved(env, fake, run, name, fmt):
    result = run("a cat", "-o", name)
    assert result.code == 0, result
    assert result.lines == [name]
    body = fake.last_request.json
    if fmt == "png":  # the codex images route, which only makes PNG
        assert fake.last_request.path.endswith("/images/generations") and "output_format" not in body
    else:  # JPEG and WebP go to the Responses route, which is asked for them
        assert body["tools"][0]["output_format"] == fmt
    data = (env.work / name).read_bytes()
    assert data == fake.images_sent[0]
    assert image_info(data)[0] == fmt


def test_webp_extension_with_format_webp_is_fine(env, fake, run):
    result = run("a cat", "-o", "cat.webp", "--format", "webp")
    assert result.code == 0, result
    assert fake.last_request.json["tools"][0]["output_format"] == "webp"
    data = (env.work / "cat.webp").read_bytes()
    assert data == fake.images_sent[0] and image_info(data)[0] == "webp"


@pytest.mark.parametrize("argv, words", [
    (("-o", "cat.png", "--format", "jpeg"), ("-o cat.png says png but --format says jpeg",)),
    (("-o", "cat.jpg", "--output-format", "webp"), ("-o cat.jpg says jpeg but --format says webp",)),
    (("-o", "cat.gif"), ("cannot write .gif files", ".png, .jpg or .webp")),
    (("-o", "cat.GIF"), ("cannot write .gif files", "-o cat.GIF")),
    (("-o", "cat.jpg", "--background", "transparent"), ("transparent needs png or webp",)),
])
def test_extension_conflicts_and_unwritable_formats_are_usage_errors(env, fake, run, argv, words):
    result = run("a cat", *argv)
    refused_before_sending(result, fake, 2, *words)
    assert files_under(env.work) == []


def test_no_extension_gets_one(env, fake, run):
    result = run("a cat", "-o", "cat")
    assert result.code == 0, result
    assert result.lines == ["cat.png"]
    assert (env.work / "cat.png").read_bytes() == fake.images_sent[0]
    assert not (env.work / "cat").exists()


def test_another_suffix_is_kept_and_the_image_extension_added(env, fake, run):
    result = run("a report chart", "-o", "report.v2")
    assert result.code == 0, result
    assert result.lines == ["report.v2.png"]
    assert (env.work / "report.v2.png").read_bytes() == fake.images_sent[0]


def test_no_extension_with_format_gets_that_formats_extension(env, fake, run):
    result = run("a cat", "-o", "cat", "--format", "jpeg")
    assert result.code == 0, result
    assert result.lines == ["cat.jpg"]
    assert fake.last_request.json["tools"][0]["output_format"] == "jpeg"
    assert (env.work / "cat.jpg").read_bytes() == fake.images_sent[0]


# rule 5: never inside the Codex home #######################################################

@pytest.mark.parametrize("where", ["file", "dir", "dotdot", "force"])
def test_inside_codex_home_is_exit_7_and_no_request(env, fake, run, where):
    out = {"file": [str(env.codex_home / "x.png")], "dir": [str(env.codex_home) + "/"],
           "dotdot": ["elsewhere/../../home/.codex/sessions/x.png"],
           "force": [str(env.codex_home / "auth.json"), "--force"]}[where]
    before = {p: p.read_bytes() for p in files_under(env.codex_home)}
    result = run("a cat", "-o", *out)
    refused_before_sending(result, fake, 7, "will not write inside the Codex home")
    assert {p: p.read_bytes() for p in files_under(env.codex_home)} == before


@pytest.mark.parametrize("out", ["link/x.png", "link/", "link"])
def test_a_symlinked_directory_into_codex_home_is_exit_7(env, fake, run, out):
    (env.work / "link").symlink_to(env.codex_home, target_is_directory=True)
    before = files_under(env.codex_home)
    result = run("a cat", "-o", out)
    refused_before_sending(result, fake, 7, "will not write inside the Codex home")
    assert files_under(env.codex_home) == before


def test_a_custom_codex_home_is_protected_too(env, fake, run):
    custom = env.work / "my-codex"
    custom.mkdir()
    os.replace(env.auth_file, custom / "auth.json")
    env.set(CODEX_HOME=str(custom))
    result = run("a cat", "-o", "my-codex/cat.png")
    refused_before_sending(result, fake, 7, f"will not write inside the Codex home ({custom})")
    assert not (custom / "cat.png").exists()


def test_the_default_codex_home_is_protected_when_codex_home_is_unset(env, fake, run):
    env.set(CODEX_HOME=None)  # the default, ~/.codex, is where the fixture keeps auth.json
    result = run("a cat", "-o", "~/.codex/cat.png")
    refused_before_sending(result, fake, 7, f"will not write inside the Codex home ({env.codex_home})")
    assert not (env.codex_home / "cat.png").exists()


def test_tilde_in_out_is_the_home_directory_and_printed_absolute(env, fake, run):
    result = run("a cat", "-o", "~/pics/cat.png")
    assert result.code == 0, result
    assert result.lines == [str(env.home / "pics" / "cat.png")]
    assert (env.home / "pics" / "cat.png").read_bytes() == fake.images_sent[0]


def test_automatic_name_when_the_workspace_is_the_codex_home_is_exit_7(env, fake, run):
    env.work = env.codex_home  # run() changes into env.work
    result = run("a cat")
    refused_before_sending(result, fake, 7, "will not write inside the Codex home")
    assert not (env.codex_home / "assets").exists()


# rule 6: complete files only, nothing left after a failure #################################

@pytest.mark.parametrize("behaviour, argv, code", [
    (truncated(after=4), ("--retries", "0"), 5),
    (bad_base64(), ("--retries", "0"), 5),
    (not_an_image(), ("--retries", "0"), 5),
    (stall(seconds=5, after=3), ("--retries", "0", "--stall-timeout", "0.5"), 5),
    (status(500), ("--retries", "0"), 5),
])
@pytest.mark.parametrize("out", [None, "shots/cat.png"])
def test_no_partial_or_temporary_file_after_a_failure(env, fake, run, behaviour, argv, code, out):
    fake.queue("/images/generations", behaviour)
    result = run("a cat", *(("-o", out) if out else ()), *argv)
    assert result.code == code, result
    assert result.out == ""
    assert_no_debris(env.work)
    assert [p for p in files_under(env.work)] == []


def test_with_count_2_one_failure_keeps_the_other_image_only(env, fake, run):
    fake.queue("/images/generations", ok(), truncated(after=4))
    result = run("a cat", "-n", "2", "--parallel", "1", "--retries", "0", "-o", "cat.png")
    assert result.code == 5, result
    assert result.lines == ["cat.png"]
    assert (env.work / "cat.png").read_bytes() == fake.images_sent[0]
    assert files_under(env.work) == [env.work / "cat.png"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_no_file(env, fake, run_cli, signum):
    fake.queue("/images/generations", stall(seconds=10, after=3))
    proc = run_cli.popen("a cat", "-o", "shots/cat.png", "--no-progress")
    assert fake.wait_for("/images/generations", 1, timeout=20)
    time.sleep(0.3)  # let the first events arrive
    proc.send_signal(signum)
    result = run_cli.wait(proc, timeout=20)
    assert result.code == 130, result
    assert result.out == ""
    assert files_under(env.work) == []


def test_the_final_file_only_ever_appears_complete(env, fake, run_cli):
    image = png_bytes(640, 480)
    fake.queue("/images/generations", trickle(interval=0.005, chunk=64).plus(image=image))
    target = env.work / "slow.png"
    proc = run_cli.popen("a slow cat", "-o", "slow.png", "--no-progress")
    while proc.poll() is None:
        if target.exists():
            data = target.read_bytes()
            assert data == image, f"the final path held {len(data)} of {len(image)} bytes"
        time.sleep(0.002)
    result = run_cli.wait(proc)
    assert result.code == 0, result
    assert target.read_bytes() == image == fake.images_sent[0]
    assert_no_debris(env.work)


# rule 7: the format the server really sent #################################################
# Without Pillow, a file that cannot be converted keeps its real format and gets its real
# extension; with Pillow it is converted to the format asked (tests/test_exact.py).

def test_server_sends_jpeg_for_png_automatic_name_gets_jpg(env, fake, run, no_pillow):
    fake.queue("/images/generations", other_format("jpeg"))
    result = run("a cat")
    assert result.code == 0, result
    assert result.lines == [str(GENERATED / "a-cat.jpg")]
    data = (generated(env) / "a-cat.jpg").read_bytes()
    assert data == fake.images_sent[0] and image_info(data)[0] == "jpeg"
    assert not (generated(env) / "a-cat.png").exists()


def test_server_sends_jpeg_for_png_explicit_out_gets_its_real_extension_and_warns(
        env, fake, run, no_pillow):
    fake.queue("/images/generations", other_format("jpeg"))
    result = run("a cat", "-o", "cat.png")
    assert result.code == 0, result
    assert result.lines == ["cat.jpg"]  # never JPEG bytes under .png
    assert (env.work / "cat.jpg").read_bytes() == fake.images_sent[0]
    assert not (env.work / "cat.png").exists()
    warning = [line for line in result.err.splitlines() if "warning" in line.lower()]
    assert warning and "jpeg" in warning[0] and "png" in warning[0]
    assert any("Pillow" in line for line in warning), result.err


def test_server_sends_webp_when_jpeg_asked_into_a_directory(env, fake, run, no_pillow):
    fake.queue("/codex/responses", other_format("webp"))  # jpeg: the Responses route
    result = run("a cat", "--format", "jpeg", "-o", "out/")
    assert result.code == 0, result
    assert result.lines == [os.path.join("out", "a-cat.webp")]
    assert (env.work / "out" / "a-cat.webp").read_bytes() == fake.images_sent[0]


# symlinks and unwritable places ############################################################

def test_out_an_existing_symlink_is_exit_7_without_force(env, fake, run):
    victim = env.tmp / "victim.png"
    victim.write_bytes(b"do not touch")
    (env.work / "cat.png").symlink_to(victim)
    result = run("a cat", "-o", "cat.png")
    refused_before_sending(result, fake, 7, "cat.png already exists", "--force")
    assert victim.read_bytes() == b"do not touch"
    assert os.readlink(env.work / "cat.png") == str(victim)


def test_out_a_dangling_symlink_is_exit_7_without_force(env, fake, run):
    (env.work / "cat.png").symlink_to(env.tmp / "missing.png")
    result = run("a cat", "-o", "cat.png")
    refused_before_sending(result, fake, 7, "cat.png already exists", "--force")
    assert not (env.tmp / "missing.png").exists()


def test_force_replaces_the_symlink_itself_and_leaves_its_target_alone(env, fake, run):
    victim = env.tmp / "victim.png"
    victim.write_bytes(b"do not touch")
    link = env.work / "cat.png"
    link.symlink_to(victim)
    result = run("a cat", "-o", "cat.png", "--force")
    assert result.code == 0, result
    assert victim.read_bytes() == b"do not touch"
    assert not link.is_symlink()
    assert link.read_bytes() == fake.images_sent[0]


def test_force_on_a_symlink_into_codex_home_replaces_only_the_link(env, fake, run):
    auth_before = env.auth_file.read_bytes()
    link = env.work / "cat.png"
    link.symlink_to(env.auth_file)
    assert run("a cat", "-o", "cat.png").code == 7
    assert fake.requests == []
    result = run("a cat", "-o", "cat.png", "--force")
    assert result.code == 0, result
    assert env.auth_file.read_bytes() == auth_before
    assert not link.is_symlink() and link.read_bytes() == fake.images_sent[0]


def test_read_only_directory_is_exit_7_and_no_request(env, fake, run):
    folder = env.work / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user can write into a read-only directory (root)")
        result = run("a cat", "-o", "locked/cat.png")
        refused_before_sending(result, fake, 7, f"cannot write to {folder}: permission denied")
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("out", ["notes.txt/cat.png", "notes.txt/sub/cat.png", "notes.txt/"])
def test_a_parent_that_is_a_regular_file_is_exit_7_and_no_request(env, fake, run, out):
    (env.work / "notes.txt").write_text("just text\n")
    result = run("a cat", "-o", out)
    refused_before_sending(result, fake, 7, "notes.txt is a file")
    assert (env.work / "notes.txt").read_text() == "just text\n"
    assert files_under(env.work) == [env.work / "notes.txt"]


def test_a_jpeg_reference_does_not_change_the_saved_format(env, fake, run):
    (env.work / "ref.jpg").write_bytes(jpeg_bytes(64, 64))
    result = run("make it blue", "-i", "ref.jpg", "--route", "responses")
    assert result.code == 0, result
    assert result.lines == [str(GENERATED / "make-it-blue.png")]
    assert image_info((generated(env) / "make-it-blue.png").read_bytes())[0] == "png"

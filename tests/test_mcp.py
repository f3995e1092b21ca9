"""`imagegen mcp`: the MCP server on stdio.

Two kinds of client drive it as a subprocess against the fake server:
- raw JSON-RPC over pipes (no SDK needed, so Python 3.9 covers the basics and the protocol
  errors a real client would never send);
- the official `mcp` Python SDK's stdio client (skipped when it is not installed), which
  nobody here wrote: list tools, generate, progress, cancel, an error, concurrent calls.
"""
from __future__ import annotations

import base64
import json
import os
import queue
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Result
from fakeserver import _png_chunk, content_policy, ok, png_bytes, rate_limited, stall

MODERN = "2026-07-28"
ENVELOPE = {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {}}


def debris(folder: Path) -> list[Path]:
    """Every file under folder (temporary ones included)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def big_png() -> bytes:
    """A valid PNG whose base64 is far over the 64 KB that makes imagegen stream an image
    into a .part file beside its final name (random bytes in a private chunk)."""
    small = png_bytes(64, 64)
    return small[:-12] + _png_chunk(b"rnDm", os.urandom(400_000)) + small[-12:]


class RawClient:
    """`imagegen.py mcp` as a subprocess, spoken to line by line. Every stdout line must be
    a JSON-RPC message; close() checks the output for secrets like any other run."""

    def __init__(self, run_cli: Any, *args: str, env_vars: dict | None = None):
        self.run_cli = run_cli
        self.proc = run_cli.popen("mcp", *args, env_vars=env_vars)
        self.lines: queue.Queue = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.notifications: list[dict] = []
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False), daemon=True)]
        for reader in self._readers:
            reader.start()
        self._next_id = 0

    def _read(self, stream: Any, sink: list, is_stdout: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace")
            sink.append(line)
            if is_stdout:
                self.lines.put(line)

    def send(self, message: Any) -> None:
        data = message if isinstance(message, (str, bytes)) else json.dumps(message)
        data = data.encode("utf-8") if isinstance(data, str) else data
        self.proc.stdin.write(data + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 30) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no message from the server within {timeout} s; stderr:\n{''.join(self.err)}")
        message = json.loads(line)  # stdout carries nothing but protocol messages
        assert message.get("jsonrpc") == "2.0", line
        return message

    def answer(self, request_id: Any, timeout: float = 30) -> dict:
        """The response to request_id; notifications on the way are kept."""
        while True:
            message = self.receive(timeout)
            if "id" not in message:
                self.notifications.append(message)
                continue
            assert message["id"] == request_id, message
            return message

    def request(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._next_id += 1
        message: dict = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return self.answer(self._next_id, timeout)

    def initialize(self, version: str = "2025-11-25") -> dict:
        answer = self.request("initialize", {"protocolVersion": version, "capabilities": {},
                                             "clientInfo": {"name": "raw-test", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def close(self, timeout: float = 30) -> Result:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"imagegen mcp did not exit within {timeout} s after stdin closed")
        for reader in self._readers:
            reader.join(5)
        result = Result(self.proc.returncode, "".join(self.out), "".join(self.err), ["mcp"])
        self.run_cli.scanner.check(result)
        for line in result.out.splitlines():
            json.loads(line)
        return result


@pytest.fixture
def raw(run_cli: Any) -> Any:
    clients: list[RawClient] = []

    def start(*args: str, env_vars: dict | None = None) -> RawClient:
        client = RawClient(run_cli, *args, env_vars=env_vars)
        clients.append(client)
        return client

    yield start
    for client in clients:
        if client.proc.poll() is None:
            client.close()


# raw JSON-RPC ###############################################################################

def test_initialize_negotiates_the_clients_version_or_offers_the_newest(raw):
    for asked, agreed in (("2025-06-18", "2025-06-18"), ("2024-11-05", "2024-11-05"),
                          ("1999-01-01", "2025-11-25"), (MODERN, "2025-11-25")):
        client = raw()
        answer = client.initialize(asked)
        assert answer["result"]["protocolVersion"] == agreed
        assert answer["result"]["capabilities"]["tools"] is not None
        assert answer["result"]["serverInfo"]["name"] == "codex-imagegen"
        assert client.close().code == 0


def test_tools_list_on_a_handshake_connection(raw):
    client = raw()
    client.initialize("2025-11-25")
    tools = {tool["name"]: tool for tool in client.request("tools/list")["result"]["tools"]}
    assert set(tools) == {"generate_image", "edit_image", "auth_status"}
    generate, edit = tools["generate_image"], tools["edit_image"]
    assert generate["inputSchema"]["required"] == ["prompt"]
    assert edit["inputSchema"]["required"] == ["prompt", "images"]
    for name in ("out", "size", "quality", "background", "format", "count", "images", "mask",
                 "backend", "route", "timeout"):
        assert name in generate["inputSchema"]["properties"], name
    assert generate["outputSchema"]["properties"]["images"]["type"] == "array"
    assert "resultType" not in client.request("ping")["result"]


def test_an_old_revision_gets_no_output_schema_and_the_result_as_text(raw, env, fake):
    client = raw()
    client.initialize("2025-03-26")
    tools = client.request("tools/list")["result"]["tools"]
    assert all("outputSchema" not in tool for tool in tools)
    answer = client.request("tools/call", {"name": "generate_image",
                                           "arguments": {"prompt": "a red fox", "out": "fox.png"}})
    result = answer["result"]
    assert "structuredContent" not in result
    assert result["isError"] is False
    as_text = json.loads(result["content"][-1]["text"])
    assert as_text["images"][0]["path"] == "fox.png"
    assert (env.work / "fox.png").read_bytes() == fake.images_sent[0]


def test_protocol_errors_get_json_rpc_errors_and_the_server_keeps_answering(raw):
    client = raw()
    client.initialize()
    client.send("{this is not json")
    assert client.receive() == {"jsonrpc": "2.0", "id": None,
                                "error": {"code": -32700, "message": "Parse error: not JSON"}}
    client.send(b"\xff\xfe not utf-8")
    assert client.receive()["error"]["code"] == -32700
    client.send([{"jsonrpc": "2.0", "id": 7, "method": "ping"}])
    assert client.receive()["error"]["code"] == -32600
    client.send({"jsonrpc": "1.0", "id": 8, "method": "ping"})
    assert client.answer(8)["error"]["code"] == -32600
    assert client.request("no/such/method")["error"]["code"] == -32601
    assert client.request("tools/call", {"name": "paint", "arguments": {}})["error"]["code"] == -32602
    bad_arguments = client.request("tools/call", {"name": "generate_image", "arguments": ["a cat"]})
    assert bad_arguments["error"]["code"] == -32602
    client.send({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": "all"})
    assert client.answer(9)["error"]["code"] == -32602
    client.send({"jsonrpc": "2.0", "method": "notifications/whatever"})  # ignored, no answer
    assert client.request("ping") == {"jsonrpc": "2.0", "id": client._next_id, "result": {}}
    assert len(client.request("tools/list")["result"]["tools"]) == 3
    result = client.close()
    assert result.code == 0
    assert "Method not found: no/such/method" in result.err


def test_the_2026_revision_needs_its_envelope_and_names_the_versions(raw):
    client = raw()
    discovered = client.request("server/discover", {"_meta": ENVELOPE})["result"]
    assert discovered["supportedVersions"] == [MODERN]
    assert discovered["resultType"] == "complete"
    assert "tools" in discovered["capabilities"]
    listed = client.request("tools/list", {"_meta": ENVELOPE})["result"]
    assert listed["resultType"] == "complete" and "ttlMs" in listed and "cacheScope" in listed
    assert len(listed["tools"]) == 3
    old = dict(ENVELOPE, **{"io.modelcontextprotocol/protocolVersion": "2030-01-01"})
    unsupported = client.request("tools/list", {"_meta": old})["error"]
    assert unsupported["code"] == -32022
    assert MODERN in unsupported["data"]["supported"]
    assert unsupported["data"]["requested"] == "2030-01-01"
    no_capabilities = {"io.modelcontextprotocol/protocolVersion": MODERN}
    assert client.request("tools/list", {"_meta": no_capabilities})["error"]["code"] == -32602
    assert client.request("tools/list")["error"]["code"] == -32602  # no envelope at all
    late = client.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {}})
    assert late["error"]["code"] == -32022
    assert client.request("ping", {"_meta": ENVELOPE})["error"]["code"] == -32601  # removed in 2026
    assert client.close().code == 0


def test_a_handshake_connection_refuses_the_2026_envelope(raw):
    client = raw()
    client.initialize("2025-06-18")
    assert client.request("tools/list", {"_meta": ENVELOPE})["error"]["code"] == -32600
    assert client.request("tools/list")["result"]["tools"]


def test_generate_with_progress_over_raw_pipes(raw, env, fake):
    fake.delay = 4.5  # a slow server: the heartbeat must fill the silence
    client = raw()
    client.initialize()
    answer = client.request("tools/call", {"name": "generate_image", "_meta": {"progressToken": "p1"},
                                           "arguments": {"prompt": "a red fox", "out": "art/fox.png"}})
    result = answer["result"]
    assert result["isError"] is False, result
    image = result["structuredContent"]["images"][0]
    assert image["path"] == os.path.join("art", "fox.png")
    assert (env.work / "art" / "fox.png").read_bytes() == fake.images_sent[0]
    assert image["bytes"] == len(fake.images_sent[0])
    assert (image["width"], image["height"]) == (1254, 1254)  # the codex images route's square
    assert "revised_prompt" in image  # None there: the images route revises nothing
    assert result["structuredContent"]["quota_line"].startswith("images daily: 34% used")
    assert os.path.join("art", "fox.png") in result["content"][0]["text"]
    previews = [block for block in result["content"] if block["type"] == "image"]
    assert len(previews) == 1 and previews[0]["mimeType"] == "image/png"
    thumbnail = base64.b64decode(previews[0]["data"])
    assert thumbnail.startswith(b"\x89PNG") and thumbnail != fake.images_sent[0]
    width, height = struct.unpack(">II", thumbnail[16:24])
    assert max(width, height) == 256  # a downscaled preview, never the full image
    progress = [n["params"] for n in client.notifications if n["method"] == "notifications/progress"]
    assert len(progress) >= 2, client.notifications
    assert all(p["progressToken"] == "p1" and p["total"] == 1 for p in progress)
    values = [p["progress"] for p in progress]
    assert values == sorted(set(values)) and values[-1] < 1
    client.request("ping")
    assert not [n for n in client.notifications[len(progress):] if n["method"] == "notifications/progress"]


def test_bad_tool_arguments_are_usage_results_the_model_can_fix(raw, env, fake):
    client = raw()
    client.initialize()
    for arguments, words in (({"prompt": "a cat", "colour": "red"}, "unknown argument 'colour'"),
                             ({"prompt": "a cat", "count": "two"}, "'count' must be a integer"),
                             ({"prompt": "a cat", "quality": "ultra"}, "--quality must be one of"),
                             ({"prompt": "a cat", "size": "1000x1000", "fit": "none"}, "divisible by 16"),
                             ({"prompt": "a cat", "size": "9000x1000"}, "from 16 to 3840"),
                             ({"out": "cat.png"}, "'prompt' is required")):
        result = client.request("tools/call", {"name": "generate_image", "arguments": arguments})["result"]
        assert result["isError"] is True, result
        error = result["structuredContent"]["error"]
        assert (error["kind"], error["exit_code"]) == ("usage", 2), error
        assert words in error["message"], error
    edit = client.request("tools/call", {"name": "edit_image", "arguments": {"prompt": "bluer"}})
    assert edit["result"]["structuredContent"]["error"]["kind"] == "usage"
    assert fake.requests_to("/codex/responses") == [] and debris(env.work) == []


def test_edit_image_sends_the_reference_from_the_workspace(raw, env, fake):
    reference = png_bytes(512, 512, color=(10, 200, 10))
    (env.work / "photo.png").write_bytes(reference)
    client = raw()
    client.initialize()
    result = client.request("tools/call", {"name": "edit_image", "arguments": {
        "prompt": "make it night", "images": ["photo.png"], "out": "night.png"}})["result"]
    assert result["isError"] is False, result
    assert fake.last_request.input_images() == [reference]
    assert (env.work / "night.png").read_bytes() == fake.images_sent[0]


def test_workspace_option_moves_where_images_go(raw, env, fake, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    client = raw("--workspace", str(project))
    client.initialize()
    result = client.request("tools/call", {"name": "generate_image",
                                           "arguments": {"prompt": "a red fox"}})["result"]
    assert result["structuredContent"]["images"][0]["path"] == os.path.join("assets", "generated", "a-red-fox.png")
    assert result["structuredContent"]["workspace"] == str(project)
    assert (project / "assets" / "generated" / "a-red-fox.png").read_bytes() == fake.images_sent[0]
    assert debris(env.work) == []


def test_generate_image_takes_fit_and_reports_what_was_done(raw, env, fake):
    client = raw()
    client.initialize()
    schema = {tool["name"]: tool for tool in client.request("tools/list", {})["result"]["tools"]}
    assert schema["generate_image"]["inputSchema"]["properties"]["fit"]["enum"] == [
        "cover", "contain", "none"]
    result = client.request("tools/call", {"name": "generate_image", "arguments": {
        "prompt": "a banner", "size": "1200x640", "fit": "contain", "out": "banner.png"}})["result"]
    (image,) = result["structuredContent"]["images"]
    assert (image["width"], image["height"], image["received"]) == (1200, 640, "1672x941")
    assert image["fitted"].startswith("contain: scaled 1672x941")
    assert (env.work / "banner.png").read_bytes()[16:24] == (1200).to_bytes(4, "big") + (640).to_bytes(4, "big")


def test_a_call_where_some_images_fail_lists_each_failure(raw, env, fake):
    """count 3: image 2 refused, image 3 rate-limited. The result keeps the --json shape (ok,
    error = the first failure, images = what was saved) and adds "failed", one entry an image;
    the text a model reads names both reasons."""
    fake.queue("/images/generations", ok(), content_policy(), rate_limited())
    client = raw()
    client.initialize()
    result = client.request("tools/call", {"name": "generate_image", "arguments": {
        "prompt": "three foxes", "out": "fox.png", "count": 3, "parallel": 1,
        "retries": 0}})["result"]
    assert result["isError"] is True, result
    structured = result["structuredContent"]
    assert structured["ok"] is False
    assert (structured["error"]["kind"], structured["error"]["exit_code"]) == ("no_image", 6)
    assert [image["path"] for image in structured["images"]] == ["fox.png"]
    assert [(item["index"], item["error"]["kind"]) for item in structured["failed"]] == [
        (2, "no_image"), (3, "rate_limit")]
    assert structured["failed"][0]["error"] == structured["error"]
    text = result["content"][0]["text"]
    assert "- image 2: the request was refused" in text and "- image 3: rate limited" in text, text
    assert (env.work / "fox.png").read_bytes() == fake.images_sent[0]
    assert sorted(p.name for p in env.work.iterdir()) == ["fox.png"]


def test_auth_status_tool_never_shows_a_secret(raw, env, fake):
    client = raw()
    client.initialize()
    result = client.request("tools/call", {"name": "auth_status", "arguments": {}})["result"]
    assert result["isError"] is False
    status = result["structuredContent"]
    assert status["kind"] == "chatgpt" and status["usable"] is True
    assert "usable: yes" in result["content"][0]["text"]
    env.auth_file.unlink()
    status = client.request("tools/call", {"name": "auth_status"})["result"]["structuredContent"]
    assert status["usable"] is False and "imagegen.py auth login`" in status["problem"]  # as the server was started
    client.close()  # scans stdout and stderr for the login's tokens


def _a_call_streaming_into_a_part_file(raw: Any, env: Any, fake: Any) -> Any:
    """A raw client whose generate_image call is half-way: its .part file exists."""
    fake.default("/images/generations", stall(seconds=30, after=1).plus(image=big_png()))
    client = raw()
    client.initialize()
    client.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "generate_image", "arguments": {"prompt": "a cat", "route": "images"}}})
    assert wait_until(lambda: any(p.suffix == ".part" for p in debris(env.work)), 20), debris(env.work)
    return client


def test_closing_stdin_cancels_a_call_in_flight_and_leaves_no_file(raw, env, fake):
    client = _a_call_streaming_into_a_part_file(raw, env, fake)
    assert client.close(timeout=20).code == 0
    assert debris(env.work) == []


def test_a_cancel_while_the_server_has_not_answered_yet_ends_the_call_at_once(raw, env, fake):
    # The request is sent; the server holds back even the status line for a minute. The
    # cancel must cut that connection: the server then exits as soon as stdin closes,
    # instead of waiting for the stalled request.
    fake.delay = 60
    client = raw()
    client.initialize()
    client.send({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "generate_image", "arguments": {"prompt": "a cat", "route": "images",
                                                "stall_timeout": 0}}})
    assert wait_until(lambda: any(r.path.endswith("/images/generations") for r in fake.requests), 20)
    client.send({"jsonrpc": "2.0", "method": "notifications/cancelled",
                 "params": {"requestId": 7, "reason": "the user changed their mind"}})
    assert wait_until(lambda: "cancelled" in "".join(client.err), 10), client.err
    # the backend sees the connection closed (not held until a time-out, a minute later)
    assert wait_until(lambda: any(p.endswith("/images/generations") for p in fake.hung_up), 10), \
        fake.hung_up
    result = client.close(timeout=15)
    assert result.code == 0, result
    assert '"id": 7' not in result.out and '"id":7' not in result.out  # a cancelled call gets no answer
    assert debris(env.work) == []


def test_sigterm_stops_the_server_and_leaves_no_file(raw, env, fake):
    import signal
    client = _a_call_streaming_into_a_part_file(raw, env, fake)
    client.proc.send_signal(signal.SIGTERM)
    result = client.close(timeout=20)
    assert result.code == 130, result
    assert "interrupted" in result.err
    assert debris(env.work) == []


# --print-config and usage ##################################################################

@pytest.mark.parametrize("client", ["codex", "claude-code", "claude-desktop", "cursor", "vscode", "gemini"])
def test_print_config_names_this_file_and_python(run, client):
    result = run("mcp", "--print-config", client)
    assert result.code == 0, result
    assert result.err.startswith("imagegen: for ")
    script = str(Path(__file__).resolve().parent.parent / "imagegen.py")
    if client == "codex":
        assert "[mcp_servers.imagegen]" in result.out
        assert f"command = {json.dumps(sys.executable)}" in result.out
        assert f"args = [{json.dumps(script)}, \"mcp\"]" in result.out
        timeout = [line for line in result.out.splitlines() if line.startswith("tool_timeout_sec")]
        assert int(timeout[0].split("=")[1].split("#")[0]) >= 600
    elif client == "claude-code":
        assert "claude mcp add" in result.out and f"{script} mcp" in result.out
    else:
        document = json.loads(result.out)  # nothing else on stdout: it can be redirected
        servers = document.get("mcpServers") or document["servers"]
        entry = servers["imagegen"]
        assert entry["command"] == sys.executable
        assert entry["args"][:2] == [script, "mcp"]


def test_mcp_usage_errors(run):
    assert run("mcp", "--print-config", "notepad").code == 2
    assert run("mcp", "--verbose").code == 2
    assert run("mcp", "--workspace", "no/such/dir").code == 2
    help_text = run("mcp", "--help")
    assert help_text.code == 0 and "--print-config" in help_text.out
    assert "imagegen mcp" in run("--help").out


# the official MCP SDK ######################################################################

def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class SdkServer:
    """StdioServerParameters for `imagegen.py mcp` in the test's workspace; the server's
    stderr goes to a file that is scanned for secrets at the end."""

    def __init__(self, env: Any, run_cli: Any, tmp_path: Path):
        from mcp import StdioServerParameters
        self.run_cli = run_cli
        self.errlog_path = tmp_path / "mcp-stderr.txt"
        self.params = StdioServerParameters(command=sys.executable, args=[str(run_cli.script), "mcp"],
                                            env={k: v for k, v in env.environ().items()}, cwd=str(env.work))

    def client(self, **options: Any) -> Any:
        from mcp import Client
        from mcp.client.stdio import stdio_client
        self._errlog = open(self.errlog_path, "a", encoding="utf-8")
        return Client(stdio_client(self.params, errlog=self._errlog), **options)

    def call_tool(self, name: str, arguments: dict, **options: Any) -> Any:
        """One tools/call from a fresh client session, run to its result."""
        async def main() -> Any:
            async with self.client() as client:
                return await client.call_tool(name, arguments, **options)
        return run_async(main)

    def check(self) -> str:
        if getattr(self, "_errlog", None):
            self._errlog.close()
        err = self.errlog_path.read_text(encoding="utf-8") if self.errlog_path.exists() else ""
        self.run_cli.scanner.check(Result(0, "", err, ["mcp", "(sdk)"]))
        return err


@pytest.fixture
def sdk(env, run_cli, tmp_path):
    pytest.importorskip("mcp")
    server = SdkServer(env, run_cli, tmp_path)
    yield server
    server.check()


def run_async(function: Any) -> Any:
    import anyio
    return anyio.run(function)


def test_sdk_lists_the_tools_in_both_eras(sdk):
    async def main() -> None:
        async with sdk.client() as client:
            assert client.protocol_version == MODERN
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"generate_image", "edit_image", "auth_status"}
            assert tools["generate_image"].input_schema["required"] == ["prompt"]
            assert tools["generate_image"].output_schema["required"] == ["ok", "images"]
        async with sdk.client(mode="legacy") as client:
            assert client.protocol_version == "2025-11-25"
            assert len((await client.list_tools()).tools) == 3

    run_async(main)


def test_sdk_generates_an_image(sdk, env, fake):
    result = sdk.call_tool("generate_image", {"prompt": "a red fox", "out": "fox.webp",
                                              "quality": "high"})
    assert result.is_error is False, result
    data = result.structured_content
    assert data["ok"] is True and data["backend"] == "codex"
    image = data["images"][0]
    assert image["path"] == "fox.webp" and image["format"] == "webp"
    assert (env.work / "fox.webp").read_bytes() == fake.images_sent[0]
    assert image["bytes"] == len(fake.images_sent[0])
    assert "fox.webp" in result.content[0].text
    assert "saved fox.webp" in sdk.check()  # the log went to stderr


def test_sdk_receives_progress_while_the_server_is_slow(sdk, env, fake):
    fake.delay = 4.5
    seen: list[tuple] = []

    async def on_progress(progress: float, total: Any, message: Any) -> None:
        seen.append((progress, total, message))

    result = sdk.call_tool("generate_image", {"prompt": "a slow fox"},
                           progress_callback=on_progress)
    assert result.is_error is False, result
    assert len(seen) >= 2, seen
    values = [progress for progress, _, _ in seen]
    assert values == sorted(set(values)) and all(total == 1 for _, total, _ in seen)
    assert all(message for _, _, message in seen)


def test_sdk_cancel_stops_the_call_and_leaves_no_partial_file(sdk, env, fake):
    import anyio
    fake.default("/images/generations", stall(seconds=60, after=1).plus(image=big_png()))
    parts: list[list[Path]] = []

    async def main() -> Any:
        async with sdk.client() as client:
            async with anyio.create_task_group() as group:
                async def call() -> None:
                    await client.call_tool("generate_image", {"prompt": "a cat", "route": "images",
                                                              "out": "cat.png"})
                group.start_soon(call)
                for _ in range(400):  # the image is half-way through: a .part file exists
                    parts.append([p for p in debris(env.work) if p.suffix == ".part"])
                    if parts[-1]:
                        break
                    await anyio.sleep(0.05)
                group.cancel_scope.cancel()  # the SDK sends notifications/cancelled
            gone = False
            for _ in range(200):
                if not debris(env.work):
                    gone = True
                    break
                await anyio.sleep(0.05)
            still = await client.call_tool("auth_status", {})  # the server still answers
            return gone, still

    gone, still = run_async(main)
    assert parts and parts[-1], "the image never started streaming into a .part file"
    assert gone, debris(env.work)
    assert still.structured_content["usable"] is True
    assert "cancelled" in sdk.check()


def test_sdk_error_result_without_a_login(sdk, env, fake):
    env.auth_file.unlink()

    result = sdk.call_tool("generate_image", {"prompt": "a red fox"})
    assert result.is_error is True
    error = result.structured_content["error"]
    assert (error["kind"], error["exit_code"]) == ("auth", 3)
    assert "login" in error["message"]
    assert "auth, exit code 3" in result.content[0].text
    assert result.structured_content["images"] == []
    assert fake.requests_to("/codex") == [] and debris(env.work) == []


def test_sdk_rate_limit_result_says_when_to_retry(sdk, env, fake):
    from fakeserver import usage_limit
    fake.default("/codex/responses", usage_limit(resets_in_seconds=120))
    fake.default("/images/generations", usage_limit(resets_in_seconds=120))

    result = sdk.call_tool("generate_image", {"prompt": "a red fox"})
    assert result.is_error is True
    error = result.structured_content["error"]
    assert (error["kind"], error["exit_code"]) == ("rate_limit", 4)
    assert error["retry_after_s"] > 0


def test_sdk_two_calls_at_once(sdk, env, fake):
    import anyio
    fake.delay = 2
    results: dict[str, Any] = {}

    async def main() -> None:
        async with sdk.client() as client:
            async def call(name: str) -> None:
                results[name] = await client.call_tool("generate_image", {"prompt": f"a {name}",
                                                                          "out": f"{name}.png"})
            async with anyio.create_task_group() as group:
                group.start_soon(call, "fox")
                group.start_soon(call, "owl")

    run_async(main)
    assert fake.max_in_flight >= 2  # both were at the server together
    for name in ("fox", "owl"):
        assert results[name].is_error is False, results[name]
        assert results[name].structured_content["images"][0]["path"] == f"{name}.png"
        assert (env.work / f"{name}.png").read_bytes() in fake.images_sent
    assert sorted(p.name for p in debris(env.work)) == ["fox.png", "owl.png"]

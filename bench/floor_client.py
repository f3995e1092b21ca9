#!/usr/bin/env python3
"""The floor client: the shortest honest stdlib script that does imagegen's job on the
Responses route, as a baseline for bench.py. POST, read the stream line by line,
json.loads the image event, b64decode, write the file. No retries, no checks.

    python3 bench/floor_client.py PROMPT OUT
"""
import base64
import json
import os
import sys
import urllib.request
import uuid

prompt, out = sys.argv[1], sys.argv[2]
home = os.environ.get("CODEX_HOME") or os.path.expanduser("~/.codex")
with open(os.path.join(home, "auth.json")) as handle:
    tokens = json.load(handle)["tokens"]
session = str(uuid.uuid4())
body = {
    "model": "gpt-5.5", "instructions": "Generate the image.", "store": False, "stream": True,
    "input": [{"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": prompt}]}],
    "tools": [{"type": "image_generation", "output_format": "png"}], "tool_choice": "auto",
}
request = urllib.request.Request(
    os.environ["IMAGEGEN_CODEX_BASE_URL"] + "/responses", data=json.dumps(body).encode(),
    headers={"Authorization": "Bearer " + tokens["access_token"],
             "ChatGPT-Account-ID": tokens.get("account_id") or "", "originator": "codex-imagegen",
             "User-Agent": "codex-imagegen-floor/0", "version": "0.169.0",
             "session-id": session, "thread-id": session,
             "Accept": "text/event-stream", "Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=300) as response:
    for line in response:
        if line.startswith(b"data:") and b'"image_generation_call"' in line:
            event = json.loads(line[5:])
            item = event.get("item") or {}
            if event.get("type") == "response.output_item.done" and item.get("result"):
                with open(out, "wb") as handle:
                    handle.write(base64.b64decode(item["result"]))
                print(out)
                break

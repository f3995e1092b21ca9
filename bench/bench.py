#!/usr/bin/env python3
"""How much imagegen.py adds on top of the server, measured against baselines in the same run.

    python3 bench/bench.py           # the full table (several interleaved rounds; a few minutes)
    python3 bench/bench.py --quick   # one quick pass with small images (the CI smoke test)

Everything runs against the project's fake server (tests/fakeserver.py) on 127.0.0.1, with
images delivered instantly unless a row says otherwise. These machines are shared and noisy,
so every figure is the median of interleaved runs and is reported as a ratio to a baseline
measured in the same run:

1. start-up: `imagegen.py --help` and `--version` against `python3 -c pass`;
2. one image of ~2 MB and ~20 MB of base64 on the Responses route: wall time and peak memory
   (max RSS of the child) against bench/floor_client.py, the shortest honest client;
3. parallel: `-n 4` and a batch of 8 lines with `--parallel 4`, 1 s of server latency,
   against one image with the same latency;
4. the SSE decoder alone: MB/s over one 20 MB event fed in 16 KiB and 1 KiB chunks, against
   splitting the same bytes into lines with io.BytesIO;
5. the image core (bench/pixels.py): decode + cover + encode of a 1672x941 PNG to 1200x630,
   against Pillow and against a 15-45 s generation; thumbnail and chroma key.

Standard library only. It asserts nothing: it prints a table.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import fakeserver  # noqa: E402
import imagegen  # noqa: E402

IMAGEGEN = os.path.join(ROOT, "imagegen.py")
FLOOR = os.path.join(ROOT, "bench", "floor_client.py")
# What the server and the interpreter cost on their own: the same POST, the answer read to
# the end and thrown away. Subtracted from each client's wall time to get its overhead.
NULL_CLIENT = """
import json, os, urllib.request
home = os.environ["CODEX_HOME"]
tokens = json.load(open(os.path.join(home, "auth.json")))["tokens"]
body = json.dumps({"model": "gpt-5.5", "instructions": "x", "store": False, "stream": True,
    "input": [{"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "a red fox"}]}],
    "tools": [{"type": "image_generation", "output_format": "png"}]}).encode()
request = urllib.request.Request(os.environ["IMAGEGEN_CODEX_BASE_URL"] + "/responses", body,
    {"Authorization": "Bearer " + tokens["access_token"], "version": "0.169.0",
     "Content-Type": "application/json"})
with urllib.request.urlopen(request) as response:
    while response.read(1 << 20):
        pass
"""


def png_of_base64_size(size: int) -> bytes:
    """A valid PNG whose base64 is about `size` bytes: random data in a private chunk, so
    neither side can take a compression shortcut."""
    small = fakeserver.png_bytes(64, 64)
    payload = os.urandom(max(0, size * 3 // 4 - len(small) - 12))
    chunk = struct.pack(">I", len(payload)) + b"prVt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"prVt" + payload) & 0xFFFFFFFF)
    return small[:33] + chunk + small[33:]  # after the signature and IHDR


def run(command: list[str], env: dict, cwd: str, peak: bool = False) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one child process.

    ru_maxrss is no use here: it counts the forked child before exec, that is a copy of this
    process with the fake server and its 20 MB answers. With `peak`, the child runs under
    this script's --child-peak mode, which reports its own high-water mark after exec."""
    report = None
    if peak:
        fd, report = tempfile.mkstemp(prefix="peak-")
        os.close(fd)
        command = [sys.executable, os.path.abspath(__file__), "--child-peak", report, "--",
                   *command[1:]]
    started = time.perf_counter()
    child = subprocess.run(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"bench: {' '.join(command[:4])}... failed ({child.returncode}): "
                         f"{child.stderr.decode('utf-8', 'replace').strip()[-500:]}")
    rss = 0
    if report:
        with open(report, encoding="ascii") as handle:
            rss = int(handle.read() or 0)
        os.unlink(report)
    return elapsed, rss


def child_peak(report: str, argv: list[str]) -> None:
    """Run a script (or -m module) as __main__, then write this process's VmHWM in KiB."""
    import runpy
    sys.argv = argv
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    peak_kib = 0
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak_kib = int(line.split()[1])
    except OSError:
        import resource
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open(report, "w", encoding="ascii") as handle:
        handle.write(str(peak_kib))
    sys.exit(code)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    def __init__(self, rounds: int) -> None:
        self.rounds = rounds
        self.tmp = tempfile.mkdtemp(prefix="imagegen-bench-")
        self.fake = fakeserver.FakeServer()
        self.fake.start()
        self.fake.rate_limits = None
        home = os.path.join(self.tmp, "home")
        codex_home = os.path.join(home, ".codex")
        os.makedirs(codex_home, mode=0o700)
        self.auth = fakeserver.make_auth_json(self.fake.auth.tokens)
        fakeserver.write_auth_file(os.path.join(codex_home, "auth.json"), self.auth)
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.work)
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith(("IMAGEGEN_", "CODEX_")) and "proxy" not in key.lower()}
        self.env.update({
            "HOME": home, "CODEX_HOME": codex_home,
            "XDG_CONFIG_HOME": os.path.join(home, ".config"),
            "IMAGEGEN_CODEX_BASE_URL": self.fake.codex_base_url,
            "IMAGEGEN_AUTH_BASE_URL": self.fake.url, "NO_PROXY": "127.0.0.1,localhost",
        })
        self.rows: list[tuple[str, str, str, str]] = []

    def close(self) -> None:
        self.fake.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def clean_outputs(self) -> None:
        shutil.rmtree(os.path.join(self.work, "assets"), ignore_errors=True)
        for name in os.listdir(self.work):
            if name.endswith((".png", ".jsonl")):
                os.unlink(os.path.join(self.work, name))

    def interleave(self, variants: dict, peak: bool = False) -> dict:
        """Run each variant once per round, in turn; medians of wall time and peak RSS."""
        times: dict = {name: [] for name in variants}
        memory: dict = {name: [] for name in variants}
        for _ in range(self.rounds):
            for name, (command, prepare) in variants.items():
                if prepare:
                    prepare()
                elapsed, rss = run(command, self.env, self.work, peak)
                times[name].append(elapsed)
                memory[name].append(rss)
                self.clean_outputs()
        return {name: (median(times[name]), median(memory[name])) for name in variants}

    def installed_copy(self) -> str:
        """imagegen.py compiled to bytecode on PYTHONPATH, as an installer leaves it."""
        folder = os.path.join(self.tmp, "site")
        if not os.path.isdir(folder):
            import py_compile
            os.makedirs(folder)
            shutil.copy(IMAGEGEN, folder)
            py_compile.compile(os.path.join(folder, "imagegen.py"), doraise=True)
            self.env["PYTHONPATH"] = folder
        return folder

    def startup(self) -> None:
        python = sys.executable
        self.installed_copy()
        result = self.interleave({
            "python3 -c pass": ([python, "-c", "pass"], None),
            "imagegen.py --help": ([python, IMAGEGEN, "--help"], None),
            "imagegen.py --version": ([python, IMAGEGEN, "--version"], None),
            "installed imagegen --help": ([python, "-m", "imagegen", "--help"], None),
        })
        base = result["python3 -c pass"][0]
        self.rows.append(("start-up: python3 -c pass", f"{base * 1000:.0f} ms", "1.00x",
                          "baseline"))
        for name in ("imagegen.py --help", "imagegen.py --version", "installed imagegen --help"):
            self.rows.append((f"start-up: {name}", f"{result[name][0] * 1000:.0f} ms",
                              f"{result[name][0] / base:.2f}x", "target <= 1.3x"))

    def one_image(self, base64_size: int, label: str) -> None:
        image = png_of_base64_size(base64_size)
        self.fake.default("/codex/responses", fakeserver.ok(image=image))
        python = sys.executable
        self.installed_copy()
        result = self.interleave({
            "null": ([python, "-c", NULL_CLIENT], None),
            "floor": ([python, FLOOR, "a red fox", "fox.png"], None),
            "imagegen": ([python, IMAGEGEN, "a red fox", "-o", "fox.png", "--quiet"], None),
            "installed": ([python, "-m", "imagegen", "a red fox", "-o", "fox.png", "--quiet"],
                          None),
        }, peak=False)
        memory = self.interleave({
            "floor": ([python, FLOOR, "a red fox", "fox.png"], None),
            "imagegen": ([python, IMAGEGEN, "a red fox", "-o", "fox.png", "--quiet"], None),
        }, peak=True)
        self.fake.default("/codex/responses", None)
        null = result["null"][0]
        floor = result["floor"][0] - null
        ours = result["imagegen"][0] - null
        installed = result["installed"][0] - null
        floor_rss, ours_rss = memory["floor"][1], memory["imagegen"][1]
        target_time, target_memory = ("1.0x", "") if base64_size < 10_000_000 else (
            "0.8x", "0.6x")
        self.rows.append((f"one image {label}: server and interpreter alone (null client)",
                          f"{null:.3f} s", "", "subtracted from the rows below"))
        self.rows.append((f"one image {label}: floor client overhead", f"{floor:.3f} s",
                          "1.00x", "baseline"))
        self.rows.append((f"one image {label}: imagegen.py overhead", f"{ours:.3f} s",
                          f"{ours / floor:.2f}x", f"target <= {target_time}"))
        self.rows.append((f"one image {label}: imagegen overhead, installed (bytecode)",
                          f"{installed:.3f} s", f"{installed / floor:.2f}x",
                          "what pip, pipx and uv install"))
        self.rows.append((f"one image {label}: floor client peak memory",
                          f"{floor_rss / 1024:.0f} MiB", "1.00x", "baseline"))
        self.rows.append((f"one image {label}: imagegen peak memory",
                          f"{ours_rss / 1024:.0f} MiB", f"{ours_rss / floor_rss:.2f}x",
                          f"target <= {target_memory}" if target_memory else ""))

    def parallel(self, latency: float) -> None:
        self.fake.delay = latency
        python = sys.executable
        batch = os.path.join(self.work, "lines.jsonl")

        def write_batch() -> None:
            with open(batch, "w", encoding="utf-8") as handle:
                for number in range(8):
                    handle.write(json.dumps({"prompt": f"icon number {number}"}) + "\n")

        result = self.interleave({
            "one": ([python, IMAGEGEN, "a red fox", "--quiet"], None),
            "n4": ([python, IMAGEGEN, "a red fox", "-n", "4", "--quiet"], None),
            "batch": ([python, IMAGEGEN, "batch", "lines.jsonl", "--parallel", "4", "--quiet"],
                      write_batch),
        })
        self.fake.delay = 0.0
        base = result["one"][0]
        self.rows.append((f"parallel: one image ({latency:g} s latency)", f"{base:.2f} s",
                          "1.00x", "baseline"))
        self.rows.append(("parallel: -n 4", f"{result['n4'][0]:.2f} s",
                          f"{result['n4'][0] / base:.2f}x", "target <= 1.3x"))
        self.rows.append(("parallel: batch of 8, --parallel 4", f"{result['batch'][0]:.2f} s",
                          f"{result['batch'][0] / base:.2f}x", "target <= 2.6x"))

    def decoder(self, size: int) -> None:
        payload = json.dumps({"type": "response.output_item.done", "item": {
            "type": "image_generation_call", "result": "A" * size}}).encode()
        stream = b"event: response.output_item.done\ndata: " + payload + b"\n\n"
        megabytes = len(stream) / 1e6

        def baseline() -> float:
            started = time.perf_counter()
            for _ in io.BytesIO(stream):
                pass
            return time.perf_counter() - started

        def decode(chunk: int) -> float:
            started = time.perf_counter()
            decoder = imagegen.SSEDecoder()
            events = []
            for offset in range(0, len(stream), chunk):
                events += decoder.feed(stream[offset:offset + chunk])
            events += decoder.close()
            assert len(events) == 1 and len(events[0].data) == len(payload)
            return time.perf_counter() - started

        base = median([baseline() for _ in range(max(3, self.rounds))])
        self.rows.append((f"SSE decoder: io.BytesIO lines, {megabytes:.0f} MB event",
                          f"{megabytes / base:.0f} MB/s", "1.00x", "baseline"))
        for chunk, label in ((16384, "16 KiB"), (1024, "1 KiB")):
            spent = median([decode(chunk) for _ in range(max(3, self.rounds))])
            self.rows.append((f"SSE decoder: {label} chunks", f"{megabytes / spent:.0f} MB/s",
                              f"{base / spent:.2f}x", "target >= 200 MB/s" if chunk == 16384
                              else ""))

    def table(self) -> str:
        header = ("measure", "median", "ratio", "note")
        widths = [max(len(row[i]) for row in self.rows + [header]) for i in range(4)]
        lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(header)) + " |",
                 "|" + "|".join("-" * (width + 2) for width in widths) + "|"]
        for row in self.rows:
            lines.append("| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
                         + " |")
        return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one quick pass, small images")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (7)")
    parser.add_argument("--child-peak", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.child_peak:
        child_peak(args.child_peak, rest[1:] if rest[:1] == ["--"] else rest)
    rounds = 1 if args.quick else args.rounds
    bench = Bench(rounds)
    try:
        print(f"python {sys.version.split()[0]}, {rounds} round(s), "
              f"{os.cpu_count()} cpus", flush=True)
        bench.startup()
        bench.one_image(2_000_000, "2 MB")
        if not args.quick:
            bench.one_image(20_000_000, "20 MB")
        bench.parallel(0.2 if args.quick else 1.0)
        bench.decoder(2_000_000 if args.quick else 20_000_000)
        import pixels  # bench/pixels.py, beside this script
        bench.rows += pixels.rows(1 if args.quick else max(3, rounds))
        print(bench.table())
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

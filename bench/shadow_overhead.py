"""What a candidate in shadow costs `vigil serve`: requests/s through
POST /v1/score (batches of 1,024) with the bundled set alone, with a Rust
candidate for velocity in shadow (the bundled build, budget patched to 5),
and with the Python port of velocity (examples/python-detector) in shadow;
each run a fresh server and state, rounds interleaved.

    python3 bench/shadow_overhead.py LOG.ndjson [ROUNDS]

Needs target/release/vigil (cargo build --release) and, for the Python
row, componentize-py on PATH (the row is skipped without it). Standard
library only; outside CI.
"""

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VIGIL = ROOT / "target" / "release" / "vigil"
TOKEN = "bench"


def admin(base: str, path: str) -> dict:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {TOKEN}"})
    return json.load(urllib.request.urlopen(req))


def run(plugins: Path, lines: list[str], work: Path) -> tuple[float, dict | None]:
    state = Path(tempfile.mkdtemp(dir=work))
    err = open(state / "serve.err", "w+")
    proc = subprocess.Popen([VIGIL, "serve", "--plugins", plugins, "--listen", "127.0.0.1:0", "--state-dir", state],
                            stderr=err, env={"VIGIL_ADMIN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"})
    try:
        deadline = time.time() + 120
        while "listening on" not in (text := (state / "serve.err").read_text()):
            assert time.time() < deadline and proc.poll() is None, text
            time.sleep(0.1)
        base = "http://" + text.split("listening on ")[1].split()[0]
        shadow = (plugins / "shadow").is_dir()
        while shadow and not admin(base, "/v1/plugins/velocity/shadow")["candidate"].get("digest"):
            assert time.time() < deadline, "the candidate never loaded"
            time.sleep(0.2)
        started = time.time()
        for i in range(0, len(lines), 1024):
            body = ("\n".join(lines[i:i + 1024]) + "\n").encode()
            urllib.request.urlopen(urllib.request.Request(base + "/v1/score", data=body)).read()
        rate = len(lines) / (time.time() - started)
        return rate, (admin(base, "/v1/plugins/velocity/shadow?examples=0")["scored"] if shadow else None)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    lines = Path(sys.argv[1]).read_text().splitlines()
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    work = Path(tempfile.mkdtemp())
    live = work / "live"
    subprocess.run([VIGIL, "bundled", "--out", live], check=True, capture_output=True)
    sets = {"bundled set alone": live}
    rust = work / "rust"
    shutil.copytree(live, rust)
    (rust / "shadow").mkdir()
    shutil.copy(live / "velocity.wasm", rust / "shadow")
    manifest = (live / "velocity.toml").read_text()
    (rust / "shadow" / "velocity.toml").write_text(manifest.replace("account_requests = 240", "account_requests = 5"))
    sets["+ Rust velocity (budget 5) in shadow"] = rust
    if shutil.which("componentize-py"):
        py = work / "python"
        shutil.copytree(live, py)
        (py / "shadow").mkdir()
        example = ROOT / "examples" / "python-detector"
        subprocess.run(["componentize-py", "-d", ROOT / "wit", "-w", "detector", "componentize", "app",
                        "-o", py / "shadow" / "velocity.wasm"], cwd=example, check=True, capture_output=True)
        shutil.copy(example / "velocity-py.toml", py / "shadow" / "velocity.toml")
        sets["+ Python velocity in shadow"] = py
    else:
        print("componentize-py is not on PATH: no Python row", file=sys.stderr)
    results: dict[str, list[float]] = {name: [] for name in sets}
    for r in range(rounds):
        for name, plugins in sets.items():
            rate, scored = run(plugins, lines, work)
            results[name].append(rate)
            changed = "" if scored is None else "; candidate: " + ", ".join(
                f"{row['what']} {row['baseline']} -> {row['candidate']}" for row in scored["comparison"]["rows"]
                if row["what"] in ("flagged accounts", "velocity"))
            print(f"round {r + 1}: {name}: {rate:,.0f} requests/s{changed}", file=sys.stderr)
    alone = sum(results["bundled set alone"]) / rounds
    print(f"| {len(lines):,} records, batches of 1,024 | requests/s (mean of {rounds}) | vs alone |")
    print("|---|---:|---:|")
    for name, rates in results.items():
        mean = sum(rates) / rounds
        print(f"| {name} | {mean:,.0f} | {mean / alone:.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

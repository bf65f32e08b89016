"""Reference peer for the DKLs23 benchmark: Silence Labs' DKLs23 compiled to WebAssembly, run by
node with every party in one thread (shared/peers/dkls23-wasm, next to the repository).

The peer folder is copied into the git-ignored bench/peer/dkls23-wasm, `npm install` runs there once
(when node_modules is missing), and `node bench.js --shapes ...` prints one JSON line per shape
(`dkg_ms`, `sign_ms`, `signatures_verified`). Nothing of the peer is imported into the product.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCE = REPO_ROOT.parent / "shared/peers/dkls23-wasm"
WORKDIR = REPO_ROOT / "bench/peer/dkls23-wasm"


def measure(shapes: list[tuple[int, int]], timeout: float = 900,
            runs: tuple[int, int] | None = None) -> tuple[dict[tuple[int, int], dict], str]:
    """Peer figures per (n, t), or ({}, why not); `runs` = (DKG runs, signing runs) if not the peer's own."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return {}, "node/npm not installed: no reference peer measured"
    if not (SOURCE / "bench.js").is_file():
        return {}, f"reference peer not found at {SOURCE}"
    WORKDIR.mkdir(parents=True, exist_ok=True)
    shutil.copytree(SOURCE, WORKDIR, dirs_exist_ok=True, ignore=shutil.ignore_patterns("node_modules"))
    if not (WORKDIR / "node_modules").is_dir():
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=WORKDIR, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            return {}, f"npm install failed: {done.stderr.strip()[-300:]}"
    spec = ",".join(f"{n}x{t}" for n, t in shapes)
    extra = ["--dkg-runs", str(runs[0]), "--sign-runs", str(runs[1])] if runs else []
    try:
        done = subprocess.run([node, "bench.js", "--shapes", spec, *extra], cwd=WORKDIR, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {}, f"peer did not finish {spec} within {timeout:.0f} s"
    if done.returncode != 0:
        return {}, f"peer run failed: {done.stderr.strip()[-300:]}"
    figures = {}
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            row = json.loads(line)
            figures[(int(row["n"]), int(row["t"]))] = row
    missing = [s for s in shapes if s not in figures]
    return figures, f"peer printed no figures for {missing}" if missing else ""


if __name__ == "__main__":
    rows, why = measure([(3, 2), (5, 3)])
    for shape, row in rows.items():
        print(shape, row)
    if why:
        print(why, file=sys.stderr)

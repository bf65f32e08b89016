"""Run every benchmark module and write bench/out/results.json.

Each `bench/bench_*.py` exposes `run() -> list[Result]`. Usage: `python -m bench.run [NAME ...]`
where NAME filters modules by substring (e.g. `hsm`, `frost`).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
OUT_FILE = BENCH_DIR / "out" / "results.json"


def discover(filters: list[str]) -> list[str]:
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    return [n for n in names if not filters or any(f in n for f in filters)]


def main(argv: list[str] | None = None) -> int:
    filters = list(sys.argv[1:] if argv is None else argv)
    results: list[dict] = []
    failed = []
    for name in discover(filters):
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{name}")
            for result in module.run():
                row = result.as_dict()
                results.append(row)
                extra = f"  peer={row['peer']} ratio={row['ratio']}" if "peer" in row else ""
                print(f"   {row['name']:<44} {row['ours']:>12.3f} {row['unit']}{extra}", flush=True)
        except Exception:
            failed.append(name)
            traceback.print_exc()
        print(f"   ({time.perf_counter() - start:.1f} s)", flush=True)
    OUT_FILE.parent.mkdir(parents=True, exist_ok=True)
    OUT_FILE.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {len(results)} figures to {OUT_FILE}")
    if failed:
        print(f"benchmark modules that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

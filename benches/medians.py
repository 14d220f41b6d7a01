#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench -p benches` run as a
Markdown table, with each round trip's ratio to the OS pipe baseline."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
rows = {}
for est in sorted(root.glob("**/new/estimates.json")):
    bench = json.loads((est.parent / "benchmark.json").read_text())
    rows[bench["full_id"]] = json.loads(est.read_text())["median"]["point_estimate"]

def fmt(ns):
    return f"{ns / 1000:.1f} µs" if ns >= 10_000 else f"{ns:.1f} ns"

base = rows.get("rtt/os_pipe")
print("| benchmark | median | vs OS pipe round trip / throughput |")
print("|---|---:|---:|")
for name, ns in rows.items():
    ratio = f"{base / ns:.0f}× faster" if base and name.startswith("rtt/") and name != "rtt/os_pipe" else ""
    if name.startswith("throughput/"):
        ratio = f"{4096 / ns:.1f} GB/s"
    print(f"| `{name}` | {fmt(ns)} | {ratio} |")
fut = rows.get("rtt_sleeping/raw_futex")
for k in ("rtt_sleeping/ipc_pipe", "rtt_sleeping/ipc_queue"):
    if fut and k in rows:
        print(f"\n`{k}` / `rtt_sleeping/raw_futex` = {rows[k] / fut:.2f}", end="")
print()

"""Per-crate seconds of one or two `cargo build --timings` reports, as a Markdown table.

    python3 tools/build_timings.py AFTER.html [BEFORE.html] [--top N]

A crate's seconds add up its units (build script, its run, the library, each binary or test),
so a build script compiling C shows as the crate's own time. With two reports, the crates are
set side by side (before, after), the largest difference first.
"""

import argparse
import json
import re
from collections import defaultdict


def load(path):
    html = open(path, encoding="utf-8").read()
    units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
    total = re.search(r"<td>Total time:</td><td>([^<]*)</td>", html)
    per = defaultdict(float)
    for u in units:
        per[f"{u['name']} {u['version']}"] += u["duration"]
    wall = total.group(1).strip() if total else "?"
    return per, wall, sum(u["duration"] for u in units)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("after")
    parser.add_argument("before", nargs="?")
    parser.add_argument("--top", type=int, default=25)
    opts = parser.parse_args()
    args, top = [a for a in (opts.after, opts.before) if a], opts.top
    after, after_wall, after_cpu = load(args[0])
    if len(args) == 1:
        print(f"wall {after_wall}, {after_cpu:.0f} CPU-seconds in all\n")
        print("| crate | s |\n|---|---:|")
        for name, s in sorted(after.items(), key=lambda x: -x[1])[:top]:
            print(f"| {name} | {s:.1f} |")
        return
    before, before_wall, before_cpu = load(args[1])
    print(f"before: wall {before_wall}, {before_cpu:.0f} CPU-s; "
          f"after: wall {after_wall}, {after_cpu:.0f} CPU-s\n")
    print("| crate | before s | after s |\n|---|---:|---:|")
    names = set(after) | set(before)
    rows = sorted(names, key=lambda n: -abs(before.get(n, 0) - after.get(n, 0)))
    for name in rows[:top]:
        b = f"{before[name]:.1f}" if name in before else "—"
        a = f"{after[name]:.1f}" if name in after else "—"
        print(f"| {name} | {b} | {a} |")


if __name__ == "__main__":
    main()

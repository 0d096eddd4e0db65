"""Write ``gpu_check.md``, the summary of a ``tools/gpu_check.sh`` run, from its folder.

Reads ``steps.tsv`` (one line per step: name, status, seconds, limit, log file, note) and the
step logs, in which each step's output follows a ``=== step <name>`` line; collects the
``BENCH <name> <value>`` lines by step; and writes a Markdown summary (machine, steps, every
measure, and the last lines of each step that did not pass) that docs/BENCHMARKS.md can take
over. Also prints it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile

BENCH = re.compile(r"^BENCH (\S+) (\S+)\s*$")
HEADER = re.compile(r"^=== step (\S+)")
TITLES = {
    "tests": "GPU-marked tests",
    "bench_throughput": "ResNet-50 training throughput, fp32 vs bf16 + channels_last (`salfmix.bench.throughput`)",
    "bench_mixing": "Mixing library (`salfmix.bench.mixing`)",
    "bench_pretrain": "Pretraining step ratios, loader, projected 300-epoch runs (`salfmix.bench.pretrain`)",
    "bench_suspects": "Per-step costs besides training (`salfmix.bench.pretrain --suspects`)",
    "bench_compile": "torch.compile (`salfmix.bench.throughput --compile`)",
    "detection": "Detectron2 Faster R-CNN R50-C4, the paper's recipe for a short run (`salfmix.bench.detection`)",
}


def get_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the run's folder (holds steps.tsv and the logs)")
    p.add_argument("--title", default="GPU check", help="first heading")
    p.add_argument("--tail", type=int, default=12, help="log lines shown for a step that did not pass")
    p.add_argument("--note", default="", help="a paragraph under the title")
    return p


def read_steps(out: str) -> list[dict[str, str]]:
    """The rows of ``steps.tsv``, in order."""
    rows = []
    path = os.path.join(out, "steps.tsv")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.rstrip("\n").split("\t") + [""] * 6
                if fields[0]:
                    rows.append(dict(zip(("name", "status", "seconds", "limit", "log", "note"), fields)))
    return rows


def read_sections(path: str) -> dict[str, list[str]]:
    """Lines of a log file by step (the ``=== step <name>`` headers split it)."""
    sections: dict[str, list[str]] = {}
    current = ""
    if not os.path.isfile(path):
        return sections
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            found = HEADER.match(line)
            if found:
                current = found.group(1)
                sections.setdefault(current, [])
            else:
                sections.setdefault(current, []).append(line.rstrip("\n"))
    return sections


def bench_lines(lines: list[str]) -> list[tuple[str, str]]:
    """The (name, value) of every BENCH line."""
    return [(m.group(1), m.group(2)) for m in map(BENCH.match, lines) if m]


def summary(out: str, title: str = "GPU check", tail: int = 12, note: str = "") -> str:
    """The Markdown summary of the run in ``out``."""
    steps = read_steps(out)
    logs = {row["log"] for row in steps if row["log"]}
    sections: dict[str, list[str]] = {}
    for log in sorted(logs):
        for name, lines in read_sections(os.path.join(out, log)).items():
            sections.setdefault(name, []).extend(lines)
    md = [f"# {title}", ""] + ([note, ""] if note else [])
    env = os.path.join(out, "env.txt")
    if os.path.isfile(env):
        with open(env, encoding="utf-8", errors="replace") as f:
            md += ["```", *[line.rstrip("\n") for line in f if line.strip()], "```", ""]
    md += ["## Steps", "", "| step | status | seconds | limit (s) | note |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {r['name']} | {r['status']} | {r['seconds']} | {r['limit']} | {r['note']} |" for r in steps]
    if not steps:
        md.append("| (no step ran) | | | | |")
    for row in steps:
        found = bench_lines(sections.get(row["name"], []))
        if found:
            md += ["", f"## {TITLES.get(row['name'], row['name'])}", "", "| measure | value |", "| --- | --- |"]
            md += [f"| `{name}` | {value} |" for name, value in found]
        extra = [
            line
            for line in sections.get(row["name"], [])
            if line.startswith(("settings:", "sync in ", "amp: skipped", "bf16: skipped"))
            or re.match(r"^\w+: left out", line)
        ]
        if found and extra:
            md += ["", *[f"- {line}" for line in extra]]
        if row["name"] == "tests":
            outcome = [
                line for line in sections.get("tests", []) if re.search(r"\d+ (passed|failed|skipped|error)", line)
            ]
            if outcome:
                md += ["", f"## {TITLES['tests']}", "", f"`{outcome[-1].strip('= ')}`"]
    bad = [row for row in steps if row["status"] not in ("ok", "skipped")]
    for row in bad:
        lines = [line for line in sections.get(row["name"], []) if line.strip()][-tail:]
        md += ["", f"## {row['name']}: {row['status']} (last lines of {row['log']})", "", "```", *lines, "```"]
    return "\n".join(md) + "\n"


def main(args: argparse.Namespace) -> str:
    """Write ``<out>/gpu_check.md`` atomically, print it, return its path."""
    text = summary(args.out, args.title, args.tail, args.note)
    path = os.path.join(args.out, "gpu_check.md")
    fd, tmp = tempfile.mkstemp(dir=args.out, prefix=".gpu_check.md.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    sys.stdout.write(text)
    return path


def run(argv: list[str] | None = None) -> None:
    """The command line: parse ``argv`` (default ``sys.argv``), run, exit with the status."""
    main(get_parser().parse_args(argv))


if __name__ == "__main__":
    run()

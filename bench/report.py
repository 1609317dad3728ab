"""Render docs/benchmarks.md from result files: ``python -m bench.report results/*.json``.

A small generic renderer: for each result file (bench/results.py) a section with the machine
facts and the run's load, one table per ``table`` of its series (median, min – max, the samples),
and its ratios. Statistics follow hyperfine/pyperf: warm-up samples are shown but never counted;
median with min – max; a ratio is of the medians, and when the two series' ranges overlap the
page says the difference is not significant.

The interpretation is written by people: text between ``<!-- people: NAME -->`` and
``<!-- /people: NAME -->`` in the existing page is kept as it is, never generated.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

PAGE = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
TITLE = "# Benchmarks: chatops-deploy against a hand-written fabric script"
HUMAN = re.compile(r"<!-- people: (\S+) -->\n(.*?)<!-- /people: \1 -->", re.S)
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes some tools print
UNWRITTEN = "_(not interpreted yet)_\n"
TIMES = ("started", "finished")
LIST_UP_TO = 12  # samples listed in full up to this many


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def overlap(a: list[float], b: list[float]) -> bool:
    """Whether the min – max ranges of two samples overlap (then: no significant difference)."""
    return min(a) <= max(b) and min(b) <= max(a)


def num(value: float, unit: str) -> str:
    """Three significant digits or so: what a benchmark on a shared machine can tell."""
    digits = 0 if unit == "count" or abs(value) >= 100 else 2 if abs(value) >= 1 else 3
    return f"{value:.{digits}f}"


def spread(samples: list[float], unit: str) -> str:
    return f"{num(min(samples), unit)} – {num(max(samples), unit)}"


def row(series: dict[str, Any]) -> str:
    samples, unit = series["samples"], series["unit"]
    if not samples:
        return f"| {series['name']} | 0 | – | – | no sample |"
    if len(samples) <= LIST_UP_TO:
        listed = ", ".join(num(v, unit) for v in samples)
    else:
        listed = f"p99 {num(percentile(samples, 99), unit)}"
    if series["warmup"]:
        listed += f" (warm-up: {', '.join(num(v, unit) for v in series['warmup'])})"
    median = num(statistics.median(samples), unit)
    return f"| {series['name']} | {len(samples)} | {median} | {spread(samples, unit)} | {listed} |"


def tables(result: dict[str, Any]) -> list[str]:
    order: dict[str, list[dict]] = {}
    for series in result["series"]:
        order.setdefault(series["table"], []).append(series)
    out = []
    for table, rows in order.items():
        out += [
            f"### {table}",
            "",
            "|  | n | median | min – max | samples |",
            "|---|---:|---:|---:|---|",
        ]
        out += [row(s) for s in rows] + [""]
    return out


def ratios(result: dict[str, Any]) -> list[str]:
    found = {(s["table"], s["name"]): s["samples"] for s in result["series"]}
    out = []
    for c in result["comparisons"]:
        a, b = found.get(tuple(c["a"])), found.get(tuple(c["b"]))
        if not a or not b:
            continue
        ratio = statistics.median(a) / statistics.median(b)
        note = "ranges overlap: not significantly different" if overlap(a, b) else "ranges apart"
        if min(len(a), len(b)) < 3:
            note = "too few samples to tell"
        each = " ÷ ".join(f"{num(statistics.median(v), 's')} ({spread(v, 's')})" for v in (a, b))
        out.append(f"| {c['name']} | {ratio:.2f}× | {each} | {note} |")
    if not out:
        return []
    head = "### Ratios (of the medians)\n\n|  | ratio | median (min – max) | |\n|---|---:|---|---|"
    return [head, *out, ""]


def facts(result: dict[str, Any]) -> list[str]:
    """When, how, on what, under which load; what failed; whether it was cut short."""
    m = {k: ANSI.sub("", v) if isinstance(v, str) else v for k, v in result["machine"].items()}
    load = m.get("load_during") or [m["load_start"][0]]
    start, end = (time.strftime("%Y-%m-%d %H:%M", time.gmtime(result[k])) for k in TIMES)
    params = ", ".join(f"{k} {v}" for k, v in result["parameters"].items())
    versions = ", ".join(f"{k} {m[k]}" for k in ("prefect", "fabric", "ansible-core") if m.get(k))
    three = {k: " / ".join(f"{v:.2f}" for v in m[k]) for k in ("load_start", "load_end")}
    cut = result.get("cut_short")
    cut = f" **Cut short** ({cut}): the rows hold what it measured until then." if cut else ""
    return [
        f"Measured {start} – {end[11:]} UTC with `{result['command']}` at commit {m['commit']}; "
        f"parameters: {params}.",
        "",
        f"Machine (read while it ran): {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}, Python {m['python']}, {versions}, {m['java']}, {m['mvn']}.",
        f"Load average (1 min) during the run, every 5 s: median {statistics.median(load):.2f}, "
        f"{min(load):.2f} – {max(load):.2f} ({len(load)} samples); 1/5/15 min at the start "
        f"{three['load_start']}, at the end {three['load_end']}.",
        "",
        f"Failures: {'; '.join(result['failures']) or 'none'}.{cut}",
        "",
    ]


def render(results: list[dict[str, Any]], kept: dict[str, str], command: str) -> str:
    def people(name: str) -> list[str]:
        text = kept.get(name, UNWRITTEN).rstrip("\n")
        return [f"<!-- people: {name} -->\n{text}\n<!-- /people: {name} -->", ""]

    note = f"<!-- Tables: `{command}` from the committed results; people write the rest. -->"
    out = [TITLE, "", note, ""]
    out += people("intro")
    for result in results:
        out += [f"## {result['title']}", ""] + facts(result) + tables(result) + ratios(result)
        out += people(result["scenario"])
    out += people("end")
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path, help="result files (results/*.json)")
    p.add_argument("--page", type=Path, default=PAGE, help="the page to write (docs/benchmarks.md)")
    args = p.parse_args(argv)
    results = [json.loads(path.read_text()) for path in args.results]
    order = {"deploy": 0, "sweep": 1, "burst": 2}
    results.sort(key=lambda r: (order.get(r["scenario"], 9), r["scenario"]))
    old = args.page.read_text() if args.page.exists() else ""
    kept = {name: text for name, text in HUMAN.findall(old)}
    args.page.write_text(render(results, kept, "python -m bench.report results/*.json"))
    print(f"wrote {args.page} from {len(results)} result file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

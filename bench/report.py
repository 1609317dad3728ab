"""Turn the bench's raw numbers into docs/benchmarks.md (and a short summary for the terminal).

``render(results)`` is pure: ``python -m bench.report results.json > page.md`` re-renders a
report from the raw numbers that ``bench/run.sh --json`` kept.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

GROUPS = [
    "health check",
    "finish",
    "run task on",
    "checkout",
    "check",
    "recover",
    "upload",
    "activate",
    "build",
]
COLD_TARGETS = {1: 1.1, 4: 0.9, 8: 0.6}


# --------------------------------------------------------------------------- small helpers
def med(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def samples(values: Iterable[float | None], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values if v is not None) or "–"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*names: str, left: int = 1) -> list[str]:
    return [row(*names), "|" + "---|" * left + "---:|" * (len(names) - left)]


def group(name: str) -> str:
    for key in GROUPS:
        if name == key or name.startswith(key + " "):
            return key
    return name


def union(intervals: list[tuple[float, float]]) -> float:
    """Total length covered by the intervals."""
    total, end = 0.0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


# --------------------------------------------------------------------------- selections
def deploys(r: dict, kind: str, hosts: int | None = None, via: str | None = None) -> list[dict]:
    """The successful, measured chatops deploys of one kind."""
    return [
        d
        for d in r["deploys"]
        if d["kind"] == kind
        and d.get("ok")
        and d.get("measured", True)
        and (hosts is None or d["hosts"] == hosts)
        and (via is None or d["via"] == via)
    ]


def baselines(r: dict, hosts: int, extra: bool = False) -> list[dict]:
    """The script's successful deploys to ``hosts`` hosts: those of the cold rounds, or (``extra``)
    those run beside the built-commit deploys."""
    return [
        b
        for b in r["baselines"]
        if b["hosts"] == hosts and b.get("ok") and bool(b.get("extra")) == extra
    ]


def paired(r: dict, hosts: int) -> list[float]:
    """chatops ÷ script per round of cold deploys (the two ran back to back)."""
    ours = [d for d in r["deploys"] if d["kind"] == "cold" and d["hosts"] == hosts]
    base = [b for b in r["baselines"] if b["hosts"] == hosts and not b.get("extra")]
    return [
        d["wall"] / b["wall"]
        for d, b in zip(ours, base, strict=False)
        if d.get("ok") and b.get("ok") and b["wall"]
    ]


def latency(d: dict) -> float | None:
    """Request sent → first task running."""
    return d["first_task"] - d["sent"] if d.get("first_task") and d.get("sent") else None


def cli_overhead(d: dict) -> float | None:
    """The CLI's wall time minus the flow run's own duration."""
    if d.get("wall") is None or not d.get("start") or not d.get("end"):
        return None
    return d["wall"] - (d["end"] - d["start"])


def segments(d: dict) -> dict[str, float]:
    """Where one deploy's seconds went, from the request to the CLI's exit."""
    tasks = [t for t in d["tasks"] if t.get("start") and t.get("end")]
    out: dict[str, float] = {}
    if not tasks or not d.get("created"):
        return out
    first = min(t["start"] for t in tasks)
    last = max(t["end"] for t in tasks)
    out["request → flow run created (CLI, gateway, intake)"] = d["created"] - d["sent"]
    out["created → flow running (runner, fork)"] = d["start"] - d["created"]
    out["flow start → first task (config, lock, slot)"] = first - d["start"]
    by_group: dict[str, list[tuple[float, float]]] = {}
    for t in tasks:
        by_group.setdefault(group(t["name"]), []).append((t["start"], t["end"]))
    for key in sorted(by_group, key=lambda k: min(a for a, _ in by_group[k])):
        out[f"task: {key}"] = union(by_group[key])
    busy = union([(t["start"], t["end"]) for t in tasks])
    out["between tasks (flow code, hooks, Prefect)"] = (last - first) - busy
    out["last task → flow end (report, engine)"] = d["end"] - last
    if d.get("cli_exit"):
        out["flow end → CLI exit (follow)"] = d["cli_exit"] - d["end"]
    return out


def baseline_segments(b: dict) -> dict[str, float]:
    s = b["steps"]
    hosts = s["hosts"]
    return {
        "python + fabric start": s["start"] - b["sent"],
        "git clone + checkout": s["cloned"] - s["start"],
        "mvn -B clean package": s["built"] - s["cloned"],
        "ssh connect + mkdir + put (all hosts)": sum(h["put"] - h["start"] for h in hosts),
        "switch (all hosts)": sum(h["switched"] - h["put"] for h in hosts),
        "restart command (all hosts)": sum(h["restarted"] - h["switched"] for h in hosts),
        "health until new sha (all hosts)": sum(h["healthy"] - h["restarted"] for h in hosts),
        "exit": b["sent"] + b["wall"] - s["end"],
    }


def median_segments(rows: list[dict[str, float]]) -> dict[str, float | None]:
    keys: list[str] = []
    for one in rows:
        keys += [k for k in one if k not in keys]
    return {k: med(one.get(k) for one in rows) for k in keys}


def segment_table(columns: dict[str, dict[str, float | None]], total: dict[str, str]) -> list[str]:
    keys: list[str] = []
    for table in columns.values():
        keys += [k for k in table if k not in keys]
    lines = header("seconds", *columns)
    for key in keys:
        lines.append(row(key, *(f(t.get(key)) for t in columns.values())))
    lines.append(row("**wall time (median)**", *total.values()))
    return lines


# --------------------------------------------------------------------------- the targets
def headline(r: dict) -> list[dict[str, Any]]:
    """One row per target: what, measured, result, target, met."""
    rows: list[dict[str, Any]] = []

    def add(what: str, measured: str, value: float | None, shown: str, target: str, limit: float):
        ok = None if value is None else value <= limit
        rows.append(dict(what=what, measured=measured, shown=shown, target=target, ok=ok))

    hosts = r["args"]["hosts"]
    base = {n: med(b["wall"] for b in baselines(r, n)) for n in hosts}
    for n in hosts:
        ours = med(d["wall"] for d in deploys(r, "cold", n))
        ratio = ours / base[n] if ours and base[n] else None
        limit = COLD_TARGETS.get(n)
        add(
            f"cold deploy, {n} host{'s' if n > 1 else ''}: chatops ÷ script",
            f"{f(ours)} s ÷ {f(base[n])} s",
            ratio if limit else None,
            f"{f(ratio)}×",
            f"≤ {limit}×" if limit else "–",
            limit or 0,
        )
    beside = med(b["wall"] for b in baselines(r, 1, extra=True)) or base.get(1)
    for kind, label in (("redeploy", "redeploy"), ("promote", "promote")):
        ours = med(d["wall"] for d in deploys(r, kind))
        one = beside
        ratio = ours / one if ours and one else None
        add(
            f"{label} of a built commit, 1 host: chatops ÷ script's deploy",
            f"{f(ours)} s ÷ {f(one)} s",
            ratio,
            f"{f(ratio)}×",
            "≤ 0.5×",
            0.5,
        )
    for via, label in (
        ("cli", "CLI (`chatops deploy`, built commit)"),
        ("slack", "Slack slash command"),
        ("webhook", "GitHub `deployment` webhook"),
    ):
        chosen = (
            deploys(r, "redeploy") + deploys(r, "promote")
            if via == "cli"
            else deploys(r, "trigger", via=via)
        )
        values = [latency(d) for d in chosen]
        value = med(values)
        add(
            f"request → first task running: {label}",
            samples(values),
            value,
            f"{f(value)} s",
            "≤ 1 s median",
            1.0,
        )
    value = med(r["help"])
    add("`chatops --help`", samples(r["help"]), value, f"{f(value, 3)} s", "≤ 0.5 s", 0.5)
    overhead = [
        cli_overhead(d)
        for d in r["deploys"]
        if d.get("ok") and d["via"] == "cli" and d.get("measured", True)
    ]
    value = med(overhead)
    add(
        "`chatops deploy` adds on top of the flow run's duration",
        f"median of {len([o for o in overhead if o is not None])} CLI deploys",
        value,
        f"{f(value)} s",
        "≤ 1 s",
        1.0,
    )
    cold = (r["up"].get("cold") or {}).get("deployments")
    add(
        "`chatops up` first start (new CHATOPS_HOME) → deployments served",
        "once",
        cold,
        f"{f(cold, 1)} s",
        "≤ 15 s",
        15.0,
    )
    warm = r["up"].get("warm") or []
    for key, what, limit in (
        ("first_task", "`chatops up` (restart) → a deploy's first task running", 15.0),
        ("stop", "`chatops up` stops on Ctrl-C (SIGINT → every process gone)", 5.0),
    ):
        values = [m.get(key) for m in warm]
        value = med(values)
        add(what, samples(values, 1), value, f"{f(value, 1)} s", f"≤ {limit:.0f} s", limit)
    return rows


def burst_headline(bursts: list[dict]) -> list[dict[str, Any]]:
    """The burst targets, per database: nothing lost, ack p99 within Slack's and GitHub's."""
    rows: list[dict[str, Any]] = []
    for database in dict.fromkeys(b["database"] for b in bursts):
        mine = [b for b in bursts if b["database"] == database]
        lost = sum(b["sent"] - b["runs"] for b in mine)
        sent = sum(b["sent"] for b in mine)
        rows.append(
            dict(
                what=f"burst on {database}: requests without exactly one run",
                measured=f"{len(mine)} × {mine[0]['sent']} requests",
                shown=f"{lost} of {sent}",
                target="0",
                ok=lost == 0,
            )
        )
        for source, limit in (("slack", 1.0), ("github", 0.5)):
            acks = [a for b in mine for a in b["acks"][source]]
            value = percentile(acks, 99)
            rows.append(
                dict(
                    what=f"burst on {database}: {source} ack p99",
                    measured=f"{len(acks)} answers",
                    shown=f"{f(value, 3)} s",
                    target=f"≤ {limit} s",
                    ok=None if value is None else value <= limit,
                )
            )
    return rows


def percentile(values: list[float], q: int) -> float | None:
    """The q-th percentile (inclusive method); None without values."""
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


BURST_INTRO = """\
For each database, a fresh `chatops up` (its SQLite default, then `--database` on a throwaway
PostgreSQL 15 started as a plain process) gets `bench/burst.py`'s burst, {rounds} time(s): {each}
signed `/deploy` slash commands and {each} signed GitHub `deployment` webhooks for ten apps, all
sent at the same instant from {threads} threads. The apps' repositories do not exist, so every
run fails at checkout: this measures the way from request to flow run, not deploys. A request
counts when it got a 2xx answer and Prefect has exactly one flow run with its idempotency key.
Times are seconds after the burst was released; "last run started" waits for every run to leave
Scheduled/Pending, which the runner's limit of 8 runs at once and the one-deploy-at-a-time rule
per app environment pace."""


def render_burst(bursts: list[dict], measured: str = "") -> list[str]:
    """The burst section of the page (empty without bursts); ``measured``: when and how, if
    not with the rest of the page."""
    if not bursts:
        return []
    first = [b for b in bursts if b["database"] == bursts[0]["database"]]
    each = first[0]["sent"] // 2
    intro = BURST_INTRO.format(rounds=len(first), each=each, threads=2 * each)
    out = ["## A burst of requests", "", intro, ""] + ([measured, ""] if measured else [])
    out += header(
        "database",
        "answered 2xx",
        "one run each",
        "missing / doubled",
        "Slack ack median / p99 / max (ms)",
        "GitHub ack median / p99 / max (ms)",
        "last run created",
        "last run started",
        "Slack run links",
    )

    def ms(values: list[float]) -> str:
        if not values:
            return "–"
        points = (statistics.median(values), percentile(values, 99), max(values))
        return " / ".join(f"{v * 1000:.0f}" for v in points)

    for b in bursts:
        slack = sum(1 for _ in b["acks"]["slack"])
        out.append(
            row(
                b["database"],
                f"{b['accepted']} of {b['sent']}",
                b["runs"],
                f"{b['missing']} / {b['doubled']}",
                ms(b["acks"]["slack"]),
                ms(b["acks"]["github"]),
                f"{f(b['last_created'], 1)} s",
                f"{f(b['last_started'], 1)} s",
                f"{b['slack_links']} of {slack}",
            )
        )
    out.append("")
    notes = [n for b in bursts for n in b.get("notes", [])]
    errors = {k: v for b in bursts for k, v in b["errors"].items()}
    if errors:
        out += [f"Requests not answered 2xx: {errors}.", ""]
    if notes:
        out += ["Notes: " + "; ".join(notes), ""]
    return out


def verdict(ok: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "–"}[ok]


def summary(r: dict) -> str:
    """The targets as plain text, for the terminal."""
    lines = ["", f"{'target':<66} {'result':>9}  {'wanted':<13}"]
    deploys_measured = headline(r) if r["deploys"] else []
    for item in deploys_measured + burst_headline(r.get("burst") or []):
        mark = verdict(item["ok"]).strip("*")
        lines.append(f"{item['what'][:66]:<66} {item['shown']:>9}  {item['target']:<13} {mark}")
    if r["failures"]:
        errors = "; ".join(str(x.get("error"))[:120] for x in r["failures"])
        lines.append(f"{len(r['failures'])} failure(s): {errors}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the page
INTRO = """\
The machine has 2 cores and 24 GiB; nothing else ran on it during the measurement (the load
figures are the bench's own work). Absolute times still move by a few tenths of a second from
run to run, so ratios compare runs interleaved within the same minutes, which is why the
baseline runs in the same session.

## How it is measured

As a user meets it: `chatops up --port <free>` with its own `CHATOPS_HOME` and no `PREFECT_*`
variables; `chatops config apply` of a `chatops.yaml`; then `chatops deploy demo@<sha> to
staging-N` run as a command (a fresh process, timed from spawn to exit), with a fresh
`git commit --allow-empty` before every cold deploy so that each one builds. The hosts are
network namespaces with OpenSSH and Tomcat 10.1 (tests/testbed), configured with
`batch_size: N`. The baseline, `bench/baseline_fabric.py`, is a plain sequential fabric script:
fresh `git clone`, `mvn -B clean package`, then per host in turn put the war in a new release
folder, switch `current`, run the restart command, poll the health URL until it serves the sha;
it is timed the same way (spawn to exit) on the same hosts. For each host count: one unmeasured
warm-up deploy, then rounds that each run the script and chatops once, each on its own fresh
commit, alternating which goes first. Medians; ratios are chatops ÷ script. Between two deploys
the bench waits until the last run's process has exited and the hosts' JVMs are idle (a JVM
keeps compiling for a while after it first answers), then 1 s.

"Request → first task running" runs from just before the request is sent (the CLI spawned; the
signed Slack slash-command form or GitHub `deployment` event POSTed to the gateway) to the
`start_time` of the run's first task run in the Prefect API. Runs are found from the CLI's
output, the Slack answer, or (webhooks) by the request's idempotency key in Prefect.
Redeploys and promotions are compared with script deploys run between them, in the same
minutes.
"""


def target_row(item: dict[str, Any]) -> str:
    """One row of the targets table."""
    return row(item["what"], item["measured"], item["shown"], item["target"], verdict(item["ok"]))


def splice_burst(page: str, r: dict) -> str:
    """``page`` with its burst section, and the burst rows of its targets, replaced by (or
    ended with) this run's bursts."""
    lines = page.split("\n")
    stale = [i for i, line in enumerate(lines) if line.startswith("| burst on ")]
    if stale:
        lines[stale[0] : stale[-1] + 1] = [target_row(i) for i in burst_headline(r["burst"])]
        page = "\n".join(lines)
    section = "\n".join(render_burst(r.get("burst") or [], r.get("burst_measured", "")))
    before, found, after = page.partition("## A burst of requests")
    if not found:
        before, found, after = page.partition("## Re-running")
        return f"{before}{section}\n{found}{after}"
    rest = after.partition("\n## ")
    return f"{before}{section}\n## {rest[2]}" if rest[1] else f"{before}{section}"


def render(r: dict) -> str:
    meta, end = r["meta"], r.get("meta_end", {})
    hosts = r["args"]["hosts"]
    out: list[str] = []
    add = out.append
    lines = out.extend

    add("# Benchmarks: chatops-deploy against a hand-written fabric script")
    add("")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(meta["time"]))
    command = f"bench/run.sh --hosts {','.join(map(str, hosts))} --rounds {r['args']['rounds']}"
    if r["args"].get("quick"):
        command += " --quick"
    add(
        f"Measured {when} with `{command}` ({r.get('duration', 0) / 60:.0f} min), "
        f"{meta['cores']} cores, {meta.get('java', 'java ?')}, Tomcat 10.1, Maven offline."
    )
    start_load = " / ".join(f"{x:.2f}" for x in meta["loadavg"])
    end_load = " / ".join(f"{x:.2f}" for x in end.get("loadavg", []))
    add(
        f"Load average (1/5/15 min) {start_load} at the start, {end_load or '?'} at the end; "
        f"CPU pressure at the start: `{meta.get('cpu_pressure', '?')}`."
    )
    add("")
    add(INTRO)

    add("## Targets")
    add("")
    lines(header("", "measured", "result", "target", "", left=2))
    for item in headline(r) + burst_headline(r.get("burst") or []):
        add(target_row(item))
    add("")
    if r["failures"]:
        add(f"**{len(r['failures'])} failed deploy(s)**, left out of the medians:")
        add("")
        for fail in r["failures"]:
            what = f"{fail.get('kind')} via {fail.get('via')} ({fail.get('run_id')})"
            add(f"- {what}: `{str(fail.get('error'))[:300].strip()}`")
        add("")

    render_misses(r, add)

    add("## Cold deploys, every sample")
    add("")
    lines(
        header(
            "hosts",
            "chatops deploy (s)",
            "median",
            "script (s)",
            "median",
            "ratio",
            "paired ratio",
            left=0,
        )
    )
    for n in hosts:
        ours = [d["wall"] for d in deploys(r, "cold", n)]
        base = [b["wall"] for b in baselines(r, n)]
        ratio = med(ours) / med(base) if ours and base else None
        pairs = paired(r, n)
        add(
            row(
                n,
                samples(ours),
                f(med(ours)),
                samples(base),
                f(med(base)),
                f(ratio),
                f"{f(med(pairs))} ({samples(pairs)})",
            )
        )
    add("")
    add(
        "Ratio: of the medians (the target's definition). Paired ratio: the median of each "
        "round's chatops ÷ script, the two deploys of a round running back to back, which is "
        "less sensitive to load that comes and goes during the run."
    )
    add("")
    loads = [e.get("load1") for e in r["deploys"] + r["baselines"] if e.get("load1") is not None]
    if loads:
        add(
            f"The 1-minute load average as the samples ended: median {med(loads):.1f}, "
            f"{min(loads):.1f} to {max(loads):.1f}, on 2 cores."
        )
        add("")

    add("## Built commits, triggers, the CLI")
    add("")
    lines(header("seconds", "samples", "median"))

    def line(label: str, values: list[float | None], digits: int = 2) -> None:
        add(row(label, samples(values, digits), f(med(values), digits)))

    line(
        "redeploy of a built commit, 1 host (CLI wall)", [d["wall"] for d in deploys(r, "redeploy")]
    )
    line(
        "promote a built commit to `qa-1`, 1 host (CLI wall)",
        [d["wall"] for d in deploys(r, "promote")],
    )
    line(
        "the script's deploy, 1 host, run between those (their baseline)",
        [b["wall"] for b in baselines(r, 1, extra=True)],
    )
    for n in hosts:
        line(
            f"request → first task running, CLI, cold deploy, {n} host(s)",
            [latency(d) for d in deploys(r, "cold", n)],
        )
    for via, what in (("slack", "the slash command"), ("webhook", "the webhook")):
        line(
            f"HTTP answer to {what}",
            [d.get("answered") for d in deploys(r, "trigger", via=via)],
            3,
        )
    for n in hosts:
        line(
            f"`chatops deploy` wall − flow run duration, cold, {n} host(s)",
            [cli_overhead(d) for d in deploys(r, "cold", n)],
        )
    line(
        "`chatops deploy` wall − flow run duration, built commit",
        [cli_overhead(d) for d in deploys(r, "redeploy") + deploys(r, "promote")],
    )
    line("`chatops --help`", r["help"], 3)
    line("`chatops --help`, its own CPU time (user+sys)", r.get("help_cpu") or [], 3)
    line(
        "`chatops deploy` process, its own CPU time",
        [d.get("cli_cpu") for d in r["deploys"] if d.get("ok") and d["via"] == "cli"],
    )
    line(
        "a deploy run's process outlives the run's final state by",
        [d.get("process_linger") for d in r["deploys"] if d.get("ok")],
    )
    line("`chatops config apply`", r.get("config_apply") or [])
    line(
        "after `chatops config apply`: until the gateway has the new configuration",
        r.get("config_visible") or [],
    )
    add("")

    render_up(r, add, lines)
    render_memory(r, add, lines)
    render_profile(r, add, lines)
    render_cpu(r, add, lines)
    render_cpu_use(r, add, lines)

    lines(render_burst(r.get("burst") or [], r.get("burst_measured", "")))

    add("## Re-running")
    add("")
    add("```console")
    add("# as root on the test bed (scripts/install-deps.sh: sshd, Tomcat, the offline Maven repo)")
    add("bench/run.sh                              # 1, 4 and 8 hosts, 3 rounds: about 8 min,")
    add("                                          # then the bursts on both databases: 20 more")
    add("bench/run.sh --write docs/benchmarks.md   # ... and rewrite this page")
    add("bench/run.sh --burst-each 0               # the deploys only")
    add("bench/run.sh --hosts 1 --rounds 1 --quick # smoke run, about 1.5 min, no bursts")
    add("bench/run.sh --burst-only --write docs/benchmarks.md  # the bursts alone; rewrites")
    add("                                          # their section of this page")
    add("```")
    add("")
    add(
        "`--json FILE` keeps the raw numbers (`python -m bench.report FILE` renders this page from "
        "them), `--keep` the work directory (chatops up's log, the hosts' logs), `--timeout S` "
        "bounds the whole run (3600 s). Everything the bench starts (chatops up and its children, "
        "the hosts' namespaces with their sshd and Tomcat) is stopped when it ends, fails, or gets "
        "Ctrl-C or SIGTERM. `tests/test_bench_smoke.py` (`-m e2e`) runs the quick mode on 1 host "
        "and a small burst (4 + 4, one round) on both databases, and asserts no timings."
    )
    add("")
    return "\n".join(out)


def render_misses(r: dict, add: Callable[[str], None]) -> None:
    """For each missed deploy target: where its time goes, and the floor this machine sets."""
    missed = [i["what"] for i in headline(r) if i["ok"] is False]
    if not missed:
        return
    add("### Why the missed targets are missed")
    add("")
    cores = r["meta"].get("cores") or 2
    for n in r["args"]["hosts"]:
        if not any(w.startswith(f"cold deploy, {n} host") for w in missed):
            continue
        ours, theirs = deploys(r, "cold", n), baselines(r, n)
        use = {name: med(read(e) for e in ours if e.get("cpu")) for name, read in CPU_ROWS.items()}
        idle = med(e["cpu"].get("server") for e in theirs if e.get("cpu"))
        total = sum(v for v in use.values() if v)
        if not total:
            continue
        goal = COLD_TARGETS[n] * (med(b["wall"] for b in theirs) or 0)
        add(
            f"- **Cold deploy to {n} host(s)**: the target is {goal:.1f} s. The deploy used "
            f"{total:.1f} CPU seconds ({'; '.join(f'{k}: {f(v)}' for k, v in use.items())}), "
            f"which {cores} cores cannot deliver in less than {total / cores:.1f} s even with "
            f"nothing waiting on anything. The Tomcat starts alone need "
            f"{(use['new Tomcat JVMs on the hosts'] or 0) / cores:.1f} s of both cores; the "
            f"Prefect server's share above its idle {f(idle)} s is the cost of recording every "
            "step of every host (three state events per task run, plus the logs), which keeps "
            "each step and host visible in the UI. See the CPU tables below."
        )
    for kind in ("redeploy", "promote"):
        if not any(w.startswith(kind) for w in missed):
            continue
        rows = [segments(d) for d in deploys(r, kind)]
        seg = median_segments(rows)
        before = sum(
            seg.get(k) or 0
            for k in (
                "request → flow run created (CLI, gateway, intake)",
                "created → flow running (runner, fork)",
                "flow start → first task (config, lock, slot)",
            )
        )
        host = (seg.get("task: activate") or 0) + (seg.get("task: health check") or 0)
        script = med(b["wall"] for b in baselines(r, 1, extra=True)) or 0
        add(
            f"- **{kind.capitalize()} of a built commit**: the target is {script * 0.5:.2f} s "
            f"(half the script's {f(script)} s deploy). Switching and restarting Tomcat until it "
            f"serves the commit (activate + health check) takes {host:.2f} s, and getting from the "
            f"request to the first task {before:.2f} s (creating the run, forking it from the "
            f"warm runner, loading the configuration and taking the environment's slot): "
            f"{host + before:.2f} s together, without the host check ("
            f"{f(seg.get('task: check'))} s, which a deploy must do before it touches a host) "
            f"and the upload of a new release folder ({f(seg.get('task: upload'))} s)."
        )
    if any(w.startswith("request → first task running: CLI") for w in missed):
        seg = median_segments([segments(d) for d in deploys(r, "redeploy") + deploys(r, "promote")])
        parts = [
            ("the CLI, the gateway and the intake creating the run", "request → flow run created"),
            ("the runner noticing it and forking its process", "created → flow running"),
            ("loading the configuration and taking the environment's slot", "flow start → first"),
        ]
        found = [
            (text, next((v for k, v in seg.items() if k.startswith(key)), None))
            for text, key in parts
        ]
        add(
            "- **Request → first task from the CLI**: "
            + "; ".join(f"{text} {f(value)} s" for text, value in found)
            + ". The runner is woken by the server's event for the new run (not by its 1 s "
            "poll); between the event and the flow's first line it reads the run, proposes "
            "Pending and Running, and forks: a handful of writes to the Prefect API on SQLite."
        )
    if any(w.startswith("`chatops up` first start") for w in missed):
        first = (r["up"].get("cold") or {}).get("deployments") or 0
        again = med(m.get("deployments") for m in r["up"].get("warm") or []) or 0
        add(
            f"- **`chatops up` on a new CHATOPS_HOME**: {first:.1f} s until the deployments are "
            f"served, against {again:.1f} s when it starts again on the same home. The "
            f"difference, {first - again:.1f} s, is the Prefect server creating and migrating "
            "its empty database (Prefect's own Alembic migrations) before it answers; it happens "
            "once per machine, and the services start side by side so nothing else waits on "
            "it longer than it must."
        )
    add("")


def render_up(r: dict, add: Callable[[str], None], lines: Callable[[list[str]], None]) -> None:
    cold = r["up"].get("cold", {})
    warm = r["up"].get("warm") or []
    add("## `chatops up` start")
    add("")
    add(
        'Seconds from spawning `chatops up` until: it prints "chatops is up"; the gateway '
        'answers `/healthz` (until then `chatops deploy` fails: "the gateway did not answer"); '
        "the deploy/rollback/verify deployments are registered and not paused; the first task of "
        "a `chatops deploy` (a built commit, 1 host), sent the moment the gateway answered, is "
        "running. The first start creates and migrates a fresh database; restarts reuse it, "
        'after a Ctrl-C whose duration is "stop".'
    )
    add("")
    lines(header("", '"chatops is up"', "gateway answers", "deployments", "first task", "stop"))

    def cells(m: dict) -> list[str]:
        keys = ("up_line", "gateway", "deployments", "first_task", "stop")
        return [f(m.get(k), 1) for k in keys]

    add(row("first start", *cells(cold)))
    for i, m in enumerate(warm, 1):
        add(row(f"restart {i}", *cells(m)))
    if warm:
        keys = ("up_line", "gateway", "deployments", "first_task", "stop")
        medians = {k: med(m.get(k) for m in warm) for k in keys}
        add(row("**median of the restarts**", *cells(medians)))
    add("")


def render_memory(r: dict, add: Callable[[str], None], lines: Callable[[list[str]], None]) -> None:
    add("## Peak memory")
    add("")
    add(
        "VmHWM (peak resident set) from /proc/<pid>/status: for the services (children of `chatops "
        "up`) read at the end of the run, after every deploy above; for each deploy run's process "
        "(pid from `$CHATOPS_HOME/runs/<flow run id>.pid`) and its children (the Maven JVM) "
        "sampled every 0.25 s. A run forks from the runner's warm forkserver, so its VmHWM counts "
        "the pages it shares with it; PSS counts each shared page once, split among its sharers."
    )
    add("")
    lines(header("process", "peak RSS (MB)", "notes", left=1))
    for name, value in (r["rss"].get("services") or {}).items():
        now = f((value.get("rss_kb") or 0) / 1024, 0)
        add(row(name, f((value.get("hwm_kb") or 0) / 1024, 0), f"RSS at the end {now} MB"))
    kinds = [("cold", n) for n in r["args"]["hosts"]] + [("redeploy", None)]
    for kind, n in kinds:
        runs = [d for d in deploys(r, kind, n) if d.get("rss")]
        if not runs:
            continue
        hwm = max(d["rss"]["hwm_kb"] for d in runs) / 1024
        pss = max(d["rss"]["pss_kb"] for d in runs) / 1024
        child = max(runs, key=lambda d: d["rss"]["child_hwm_kb"])["rss"]
        label = f"deploy run, cold, {n} host(s)" if n else "deploy run, built commit (no build)"
        note = f"max PSS {pss:.0f} MB"
        if child["child_hwm_kb"]:
            note += f"; its largest child: {child['child']}, {child['child_hwm_kb'] / 1024:.0f} MB"
        add(row(label, f"{hwm:.0f}", note))
    add("")


def render_profile(r: dict, add: Callable[[str], None], lines: Callable[[list[str]], None]) -> None:
    hosts = r["args"]["hosts"]
    add("## Where a deploy's seconds go")
    add("")
    add(
        "Medians over the measured deploys of each kind, from the Prefect API: the flow run's "
        "`created`, `start_time` and `end_time`, its task runs' `start_time` and `end_time`. "
        "A task group counts the wall time during which at least one of its task runs ran "
        "(hosts run in parallel); the rows add up to the CLI's wall time."
    )
    add("")
    chosen = {f"cold, {n} host(s)": deploys(r, "cold", n) for n in hosts}
    chosen["redeploy, 1 host"] = deploys(r, "redeploy")
    chosen["promote, 1 host"] = deploys(r, "promote")
    chosen = {name: runs for name, runs in chosen.items() if runs}
    columns = {name: median_segments([segments(d) for d in runs]) for name, runs in chosen.items()}
    totals = {name: f(med(d["wall"] for d in runs)) for name, runs in chosen.items()}
    lines(segment_table(columns, totals))
    add("")
    for name, table in columns.items():
        add(f"- {overhead_reading(name, table, totals[name])}")
    add("")
    add("The script, for comparison (medians; the host steps summed over its hosts):")
    add("")
    bcols = [n for n in hosts if baselines(r, n)]
    columns = {
        f"{n} host(s)": median_segments([baseline_segments(b) for b in baselines(r, n)])
        for n in bcols
    }
    totals = {f"{n} host(s)": f(med(b["wall"] for b in baselines(r, n))) for n in bcols}
    lines(segment_table(columns, totals))
    add("")
    for n in sorted({min(hosts), max(hosts)}):
        runs = deploys(r, "cold", n)
        if not runs:
            continue
        middle = sorted(runs, key=lambda d: d["wall"])[len(runs) // 2]
        c = middle["created"]
        add(f"### Timeline of one cold deploy to {n} host(s) (the median, {middle['wall']:.2f} s)")
        add("")
        add("Seconds from the flow run's creation (its `created` in the Prefect API).")
        add("")
        lines(header("", "start", "end", "took"))
        add(row("request sent (`chatops deploy` spawned)", f"{middle['sent'] - c:+.2f}", "", ""))
        add(row("flow run created", "0.00", "", ""))
        took = middle["end"] - middle["start"]
        add(row("flow run", f"{middle['start'] - c:+.2f}", f"{middle['end'] - c:+.2f}", f(took)))
        for t in sorted((t for t in middle["tasks"] if t.get("start")), key=lambda t: t["start"]):
            finished = t["end"] - c if t.get("end") else None
            took = t["end"] - t["start"] if t.get("end") else None
            name = t["name"] if len(t["name"]) < 30 else t["name"][:20] + "…"
            add(row(name, f"{t['start'] - c:+.2f}", f(finished), f(took)))
        add(row("`chatops deploy` exited", f"{middle['cli_exit'] - c:+.2f}", "", ""))
        add("")


WORK = ("task: build", "task: upload", "task: activate", "task: health check")


def overhead_reading(name: str, table: dict[str, float | None], wall: str) -> str:
    """What, besides building and shipping, the deploy's wall time is made of."""
    work = sum(table.get(k) or 0.0 for k in WORK)
    rest = {k: v for k, v in table.items() if k not in WORK and v}
    total = sum(rest.values())
    top = sorted(rest.items(), key=lambda kv: kv[1], reverse=True)[:4]
    listed = ", ".join(f"{k.removeprefix('task: ')} {v:.2f}" for k, v in top)
    return (
        f"{name}: {wall} s, of which {work:.2f} s build, upload, restart and health check, and "
        f"{total:.2f} s around them (largest: {listed})."
    )


def render_cpu(r: dict, add: Callable[[str], None], lines: Callable[[list[str]], None]) -> None:
    add("## How much of restart → healthy is CPU-bound")
    add("")
    add(
        "Sampled every 50 ms from /proc during the measured deploys, per host: the new Tomcat "
        "JVM's CPU time (utime+stime, /proc/<pid>/stat) from its start until the host was seen "
        "healthy; how long its threads waited on a run queue for a CPU (summed over threads, "
        "/proc/<pid>/task/*/schedstat); the share of both CPUs the machine kept busy (/proc/stat) "
        "and the share of time some task was waiting for a CPU (/proc/pressure/cpu) in that "
        'interval. "restart → healthy": for chatops from its `activate` task\'s start (switch and '
        "restart over SSH) to its `health check` task's end, for the script from issuing the "
        'restart command to seeing the new sha; "JVM → healthy" from the new JVM\'s start. '
        '"CPU floor" is the shortest JVM → healthy the cores allow: the CPU time of the JVMs '
        "starting together (chatops: the whole batch, the script: one) spread over all cores; "
        "floor ÷ wall near 1 means that interval is CPU-bound. Medians over hosts and rounds."
    )
    add("")
    lines(
        header(
            "who",
            "hosts",
            "restart → healthy (s)",
            "old JVM stopped after (s)",
            "JVM → healthy (s)",
            "JVM CPU (s)",
            "cores it used (CPU ÷ wall)",
            "CPU floor ÷ wall",
            "run-queue wait (s)",
            "machine busy",
            "CPU pressure",
            left=1,
        )
    )
    found: list[tuple[str, int, float | None, float | None, float | None]] = []
    cores = r["meta"].get("cores") or 2
    for n in r["args"]["hosts"]:
        for who, entries in (("chatops", deploys(r, "cold", n)), ("script", baselines(r, n))):
            profiles = [p for e in entries for p in (e.get("restarts") or {}).values() if p]
            if not profiles:
                continue
            m = {k: med(p.get(k) for p in profiles) for k in profiles[0]}
            cpu, wall = m["jvm_cpu"], m["jvm_to_healthy"]
            share = cpu / wall if cpu and wall else None
            together = n if who == "chatops" else 1  # JVMs starting at the same time
            floor = together * cpu / cores / wall if cpu and wall else None
            found.append((who, n, cpu, wall, m["machine_busy"]))
            add(
                row(
                    who,
                    n,
                    f(m["restart_to_healthy"]),
                    f(m["stop_old"]),
                    f(wall),
                    f(cpu),
                    f(share),
                    f(floor),
                    f(m["jvm_runqueue_wait"]),
                    f"{f((m['machine_busy'] or 0) * 100, 0)} %",
                    f"{f((m['cpu_pressure'] or 0) * 100, 0)} %",
                )
            )
    add("")
    own = [e.get("watch_cpu") for e in r["deploys"] + r["baselines"] if e.get("watch_cpu")]
    if own:
        add(
            f"The sampler itself used {med(own):.2f} CPU-seconds per deploy (median): part of the "
            "load it measures."
        )
        add("")
    add(cpu_reading(found, r["meta"].get("cores") or 2))
    add("")


CPU_ROWS = {
    "Prefect server": lambda e: e["cpu"].get("server"),
    "the deploy's own process (with `mvn`)": lambda e: (
        e["cpu"].get("forkserver") or e["cpu"].get("script")
    ),
    "runner + gateway": lambda e: e["cpu"].get("runner", 0) + e["cpu"].get("gateway", 0),
    "new Tomcat JVMs on the hosts": lambda e: (
        sum(p.get("jvm_cpu") or 0 for p in (e.get("restarts") or {}).values()) or None
    ),
}


def render_cpu_use(r: dict, add: Callable[[str], None], lines: Callable[[list[str]], None]) -> None:
    """Who used the machine's CPU during one cold deploy, chatops beside the script."""
    columns: dict[str, list[dict]] = {}
    for n in r["args"]["hosts"]:
        for who, entries in (("chatops", deploys(r, "cold", n)), ("script", baselines(r, n))):
            measured = [e for e in entries if e.get("cpu")]
            if measured:
                columns[f"{who}, {n} host(s)"] = measured
    if not columns:
        return
    add("### Who uses the CPU during a cold deploy")
    add("")
    add(
        "CPU seconds (utime + stime from /proc, children included once reaped) from the request "
        "until the hosts are idle again, medians. The deploy's own process is, for chatops, the "
        "flow run's process (forked by the runner) with the build it started; for the script, the "
        "script with its build. The Prefect server's row includes its background services, which "
        "run whether or not a deploy does (the script's column shows how much that is). Two "
        "cores give 2 CPU seconds per second."
    )
    add("")
    lines(header("CPU seconds", *columns))
    for name, read in CPU_ROWS.items():
        add(row(name, *(f(med(read(e) for e in entries)) for entries in columns.values())))
    add(row("wall time", *(f(med(e.get("wall") for e in entries)) for entries in columns.values())))
    add("")


def cpu_reading(
    found: list[tuple[str, int, float | None, float | None, float | None]], cores: int
) -> str:
    """What the numbers mean for restarting N hosts at once on this machine."""
    single = next((cpu for who, n, cpu, _, _ in found if who == "script" and n == 1 and cpu), None)
    parts = []
    for who, n, cpu, wall, busy in found:
        if who == "chatops" and n > 1 and cpu and wall:
            parts.append(
                f"with {n} hosts at once, each JVM needed {cpu:.1f} CPU-s and took {wall:.1f} s "
                f"to become healthy: {n} × {cpu:.1f} = {n * cpu:.1f} CPU-s, at least "
                f"{n * cpu / cores:.1f} s on {cores} cores (machine busy "
                f"{(busy or 0) * 100:.0f} %)"
            )
    text = (
        "Reading: starting Tomcat with the app is CPU work (class loading, JIT, unpacking the war)"
    )
    if single:
        text += (
            f"; one JVM alone needs about {single:.1f} CPU-s (script, 1 host), so N hosts "
            f"restarted in parallel on this machine cannot all be healthy sooner than "
            f"N × {single:.1f} ÷ {cores} s after the restart, whatever the deploy tool does"
        )
    if parts:
        text += "; " + "; ".join(parts)
    return text + ". On this shared 2-core machine, parallel restarts are CPU-bound."


if __name__ == "__main__":
    with open(sys.argv[1]) as raw:
        print(render(json.load(raw)))

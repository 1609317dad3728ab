"""The host sweep: what each added host costs, on light hosts (tests/testbed/light.py: sshd and
a tiny HTTP health server), so that the orchestration's cost shows, not the JVM's.

Per host count N (``--hosts``), all hosts in one batch, ``--rounds`` rounds (one from 32 hosts
on) of the sequential fabric script, ``chatops deploy`` and, when ``ansible-playbook`` is beside
the bench's Python, bench/sweep-playbook.yml with forks = N, each of a fresh commit, the first
changing every round. Measured from /proc: wall time (spawn to exit); the control plane's CPU
(``chatops up``'s processes: Prefect server, its PostgreSQL, the runner with the flow runs it
forked, the gateway); the deploying command's own CPU; the hosts' CPU (every process in their
namespaces). The slope per added host is the least-squares fit of the medians over host counts.
"""

from __future__ import annotations

import functools
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import DeployBench, log
from bench.results import Result, command_line
from bench.system import cpu_seconds as cpu
from tests.testbed import hosts as testbed
from tests.testbed.light import RESTART, make_light

ANSIBLE = Path(sys.executable).with_name("ansible-playbook")
PLAYBOOK = Path(__file__).with_name("sweep-playbook.yml")
WALL, CONTROL = "Host sweep: wall time, spawn to exit (s)", "Host sweep: control-plane CPU (CPU-s)"
OWN, HOSTS = "Host sweep: the deploying command's own CPU (CPU-s)", "Host sweep: hosts' CPU (CPU-s)"
SLOPE = "Host sweep: each added host costs (least-squares slope of the medians)"
WRITES = "Host sweep: what one chatops deploy writes to Prefect, per host"


def own_cpu() -> float:
    return (usage := resource.getrusage(resource.RUSAGE_CHILDREN)).ru_utime + usage.ru_stime


def slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of y over x (None with fewer than two host counts)."""
    if len({x for x, _ in points}) < 2:
        return None
    mx, my = (sum(v) / len(points) for v in zip(*points, strict=True))
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


class SweepBench(DeployBench):
    """The ``sweep`` scenario: one ``chatops up``, N light hosts, the script, Ansible."""

    def __init__(self, args, work: Path, result: Result) -> None:
        super().__init__(args, work, result)
        self.restart = RESTART
        self.medians: dict[str, list[tuple[int, float]]] = {}

    def ansible(self, hosts: list[testbed.TestHost], sha: str) -> dict[str, Any]:
        """The playbook's deploy of ``sha``, timed from spawn to exit."""
        work = self.work / "ansible"
        work.mkdir(exist_ok=True)
        (work / "known_hosts").write_text("".join(h.known_hosts_line + "\n" for h in hosts))
        python = "[app:vars]\nansible_python_interpreter=/usr/bin/python3\n"  # the hosts' own
        (work / "hosts").write_text("[app]\n" + "".join(h.address + "\n" for h in hosts) + python)
        ssh = "-C -o ControlMaster=auto -o ControlPersist=60s -o StrictHostKeyChecking=yes"
        ssh += f" -o UserKnownHostsFile={work}/known_hosts"  # Ansible's default, keys pinned
        env = {"ANSIBLE_FORKS": str(len(hosts)), "ANSIBLE_SSH_ARGS": ssh}
        env |= {"ANSIBLE_PRIVATE_KEY_FILE": str(self.key.private), "ANSIBLE_REMOTE_USER": "root"}
        extra = {"repo": self.repo.url, "sha": sha, "work": str(work), "restart": self.restart}
        argv = [str(ANSIBLE), "-i", str(work / "hosts"), str(PLAYBOOK), "-e"]
        argv.append(json.dumps({**extra, "path": testbed.DEPLOY_PATH}))
        return self.baseline("ansible", argv, hosts, sha, **env)

    def measured(self, who: str, count: int, hosts: list, sha: str) -> None:
        """One deploy, and the CPU it cost the control plane, the command and the hosts."""
        label = f"{who}, {count} host{'s' if count > 1 else ''}"
        pids = lambda: [p for h in hosts for p in h.pids()]  # noqa: E731 - sessions end
        control, own, host = self.up.services_cpu(), own_cpu(), cpu(before := pids())
        deploy = {"script": self.script, "ansible": self.ansible}.get(who)
        entry = (deploy or functools.partial(self.chatops, f"light-{count}"))(hosts, sha)
        if who == "chatops" and entry["ok"]:  # the server records a run's last events later
            self.writes(entry["run_id"], count)
        spent = {k: v - control.get(k, 0.0) for k, v in self.up.services_cpu().items()}
        everyone = sorted(set(before + pids()))  # who ran during it, each counted once
        own, host, entry["control_cpu"] = own_cpu() - own, cpu(everyone) - host, spent
        if not entry["ok"]:
            return
        for table, value in ((WALL, entry["wall"]), (OWN, own), (HOSTS, host)):
            self.result.add(table, label, value, unit="s" if table == WALL else "CPU-s")
        name = label if who == "chatops" else f"idle chatops up, during the {label}"
        self.result.add(CONTROL, name, sum(spent.values()), unit="CPU-s")
        if who == "chatops":
            for service, seconds in spent.items():
                self.result.add(CONTROL, f"{label}: {service}", seconds, unit="CPU-s")

    def writes(self, run_id: str, count: int) -> None:
        """Task runs and log lines of the run, per host, once the count stays put for 1 s."""
        of_run, logs, runs, seen = {"any_": [run_id]}, 0, 0, -1
        while runs != seen:
            seen, runs = runs, self.up.api_post("/task_runs/count", {"flow_runs": {"id": of_run}})
            time.sleep(1.0)
        while page := self.up.api_post(
            "/logs/filter", {"logs": {"flow_run_id": of_run}, "limit": 200, "offset": logs}
        ):
            logs += len(page)
        for what, number in (("task runs", runs), ("log lines", logs)):
            self.result.add(WRITES, f"{what}, {count} hosts", number / count, unit="per host")

    def sweep(self, count: int, hosts: list[testbed.TestHost]) -> None:
        """The rounds at one host count; the medians the slopes are fitted to."""
        whos = ["script", "chatops"] + (["ansible"] if ANSIBLE.exists() else [])
        for number in range(self.args.rounds if count < 32 else 1):
            for who in whos[number % len(whos) :] + whos[: number % len(whos)]:
                self.measured(who, count, hosts, self.fresh_commit())
            log(f"{count} hosts, round {number} done")
        label = f"{count} host{'s' if count > 1 else ''}"
        found = {(s["table"], s["name"]): s["samples"] for s in self.result.data["series"]}
        for table, what in ((WALL, "wall time (s)"), (HOSTS, "hosts' CPU (CPU-s)"), (CONTROL, "")):
            for who in whos if what else ["chatops"]:
                if samples := found.get((table, f"{who}, {label}")):
                    key = f"{who}: {what or 'control-plane CPU (CPU-s)'}"
                    self.medians.setdefault(key, []).append((count, statistics.median(samples)))
            a, b = (table, f"chatops, {label}"), (table, f"script, {label}")
            if what:
                self.result.compare(f"{what.split(' (')[0]}, {label}: chatops ÷ script", a, b)


def sweep_scenario(args, work: Path, stack) -> Result:
    params = {"hosts": args.hosts, "rounds": args.rounds, "ansible": ANSIBLE.exists()}
    title = "The host sweep: light hosts, all in one batch"
    result = Result("sweep", title, command_line(), params)
    stack.callback(result.write, args.out / "sweep.json")
    bench = SweepBench(args, work, result)
    stack.callback(bench.up.stop)
    bench.start()
    for count in args.hosts:
        log(f"{count} light host(s): bringing them up")
        with testbed.netns_hosts(count, bench.key, work / f"hosts-{count}") as hosts:
            for host in hosts:
                make_light(host)
            bench.apply_config(f"light-{count}", hosts)
            bench.sweep(count, hosts)
    for key, points in bench.medians.items():
        result.add(SLOPE, key, slope(points), unit="per host")
    return result

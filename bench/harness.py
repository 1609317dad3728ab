"""The benchmark: chatops-deploy as a user meets it, against a hand-written fabric script.

``bench/run.sh [deploy] [burst] [sweep]`` (as root, on the test bed) writes one
``results/<scenario>.json`` per scenario (bench/results.py); ``python -m bench.report`` renders.
``deploy``: ``chatops up`` in a fresh CHATOPS_HOME, timed to its milestones; ``chatops --help``;
per host count N (sshd + Tomcat 10.1, ``batch_size: N``) a warm-up round, then ``--rounds`` of
the script (bench/baseline_fabric.py) and ``chatops deploy`` of fresh commits, alternating which
goes first, then ``chatops deploy`` of a built commit (warm) (Slack commands and GitHub webhooks:
``burst``). A deploy is timed spawn to exit; then the bench waits until the JVMs idle (they
compile after the first answer), and 1 s. Everything it starts is
stopped when it ends, fails or is interrupted.
``burst``: bench/burst.py; ``sweep``: bench/sweep.py.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import burst
from bench.results import Result, command_line
from bench.signed import SECRETS
from bench.system import BenchError, Up, cpu_seconds, state, ts, wait_for
from tests.testbed import hosts as testbed
from tests.testbed.gitrepo import AppRepo, make_app_repo
from tests.testbed.hosts import DEPLOY_PATH, TestHost, make_ssh_key

KEY_VAR = "DEMO_SSH_KEY"
HEALTH_URL = "http://{host}:8080/demo/health"
RESTART = f"{DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}"
DEPLOY_TIMEOUT = 600.0
WALL, FIRST = "Deploy wall time, spawn to exit (s)", "Request → first task running (s)"
UP, CLI = "`chatops up` (s after spawn)", "CLI commands (s)"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Interrupted(BaseException):
    """SIGTERM/SIGHUP or the overall timeout: stop, clean up, keep what was measured."""


class DeployBench:
    """The ``deploy`` scenario: one ``chatops up``, the CLI, N real hosts, the script."""

    def __init__(self, args: argparse.Namespace, work: Path, result: Result) -> None:
        self.args, self.work, self.result = args, work, result
        self.key = make_ssh_key(work / "key")
        self.repo: AppRepo = make_app_repo(work / "demo")
        self.up = Up(work / "home", extra_env=SECRETS)
        self.built: list[str] = []  # commits chatops built, newest last
        self.serving: dict[str, str] = {}  # environment -> the commit it serves
        self.restart = RESTART  # the hosts' restart command (the sweep's light hosts have theirs)

    # ------------------------------------------------------------------ commits and config
    def fresh_commit(self) -> str:
        self.repo.git("commit", "-q", "--allow-empty", "-m", "bench commit")
        return self.repo.git("rev-parse", "HEAD")

    def built_commit(self, env: str) -> str:
        """The newest commit chatops built that ``env`` does not serve: a warm deploy."""
        for sha in reversed(self.built):
            if sha != self.serving.get(env):
                return sha
        raise BenchError("no built commit to deploy again")

    def apply_config(self, env: str, hosts: list[TestHost]) -> None:
        """``chatops config apply`` of ``env`` on ``hosts``; wait until the gateway has it."""
        ssh = {"user": "root", "private_key_env": KEY_VAR, "connect_timeout": 3}
        ssh["known_hosts"] = [h.known_hosts_line for h in hosts]
        environment = {"hosts": [h.address for h in hosts], "ssh": ssh, "health_timeout": 120}
        environment.update(deploy_path=DEPLOY_PATH, health_url=HEALTH_URL)
        environment["restart_command"] = self.restart
        app = {"repository": "acme/demo", "clone_url": self.repo.url, "default_environment": env}
        app["environments"] = {env: {**environment, "batch_size": len(hosts)}}
        wall = self.up.apply_config({"apps": {"demo": app}}, {KEY_VAR: self.key.private_text})
        self.result.add(CLI, "`chatops config apply`", wall)
        sees = lambda: env in (t := self.up.ask("where demo")) and hosts[0].address in t  # noqa: E731
        wait_for("the gateway to see the configuration", sees, 60)

    # ------------------------------------------------------------------ one deploy
    def chatops(self, env: str, hosts: list[TestHost], sha: str) -> dict[str, Any]:
        """``chatops deploy demo@sha to env`` as a command; the run as Prefect recorded it,
        once it ended; then the hosts settle."""
        cli = self.up.cli("deploy", f"demo@{sha}", "to", env, timeout=DEPLOY_TIMEOUT)
        entry: dict[str, Any] = {"who": "chatops", "via": "cli", "env": env, "hosts": len(hosts)}
        entry.update(sha=sha, sent=cli.started, run_id=cli.run_id, ok=False, rc=cli.rc)
        entry.update(wall=cli.wall, exited=cli.started + cli.wall)
        if cli.run_id is not None:
            run = self.up.wait_final(cli.run_id, DEPLOY_TIMEOUT)
            times = lambda t: {k: ts(t.get(f"{k}_time")) for k in ("start", "end")}  # noqa: E731
            tasks = [{"name": t["name"], **times(t)} for t in self.up.task_runs(cli.run_id)]
            entry.update(state=state(run), ok=state(run) == "COMPLETED" and cli.rc == 0)
            entry.update(created=ts(run.get("created")), start=ts(run.get("start_time")))
            entry.update(end=ts(run.get("end_time")), tasks=tasks)
            starts = [t["start"] for t in tasks if t["start"]]
            entry["first_task"] = min(starts) if starts else None
        if entry["ok"]:
            self.serving[env] = sha
            self.built += [sha] if sha not in self.built else []
        else:
            tail = (cli.stdout + cli.stderr)[-800:]
            self.fail(f"chatops deploy {sha[:7]} to {env}: {entry.get('state')} {tail}")
        self.result.data["raw"].append(entry)
        self.settle(hosts)
        return entry

    def script(self, hosts: list[TestHost], sha: str) -> dict[str, Any]:
        """The baseline's deploy of ``sha``, timed from spawn to exit."""
        known = self.work / "known_hosts"
        known.write_text("".join(h.known_hosts_line + "\n" for h in hosts))
        argv = [sys.executable, str(Path(__file__).with_name("baseline_fabric.py"))]
        argv += ["--repo", self.repo.url, "--sha", sha, "--key", str(self.key.private)]
        argv += ["--hosts", ",".join(h.address for h in hosts), "--known-hosts", str(known)]
        argv += ["--deploy-path", DEPLOY_PATH, "--restart", self.restart]
        argv += ["--health-url", HEALTH_URL, "--workdir", str(self.work)]
        return self.baseline("script", argv, hosts, sha)

    def baseline(self, who: str, argv: list, hosts: list, sha: str, **env: str) -> dict[str, Any]:
        """A baseline's deploy (``who``: script, ansible) of ``sha``, timed spawn to exit."""
        env |= {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
        sent, t0 = time.time(), time.monotonic()
        kw = {"capture_output": True, "text": True, "stdin": subprocess.DEVNULL}
        proc = subprocess.run(argv, env=env, timeout=DEPLOY_TIMEOUT, **kw)
        entry = {"who": who, "hosts": len(hosts), "sha": sha, "sent": sent}
        entry.update(wall=time.monotonic() - t0, ok=proc.returncode == 0)
        if not entry["ok"]:
            self.fail(f"the {who}'s deploy of {sha[:7]}: {(proc.stderr + proc.stdout)[-800:]}")
        self.result.data["raw"].append(entry)
        self.settle(hosts)
        return entry

    def settle(self, hosts: list[TestHost]) -> None:
        """Wait (at most 15 s) until the hosts' JVMs are idle, then 1 s, as between two
        commands a person types."""
        idle = lambda: tomcat_cores(hosts) < 0.05 + 0.02 * len(hosts)  # noqa: E731
        with contextlib.suppress(BenchError):  # --quick: no numbers to keep clean
            wait_for("the JVMs to be idle", idle, 0 if self.args.quick else 15, interval=0)
        time.sleep(1.0)

    def fail(self, error: str) -> None:
        self.result.data["failures"].append(error)
        log(f"FAILED: {error}")
        if len(self.result.data["failures"]) > self.args.max_failures:
            raise BenchError("too many failed deploys; see the failures above")

    # ------------------------------------------------------------------ the phases
    def start(self) -> None:
        milestones = self.up.start(wait_deployments=True, timeout=240)
        for what, seconds in milestones.items():
            self.result.add(UP, f"first start (new CHATOPS_HOME): {MILESTONES[what]}", seconds)
        log(f"chatops up: {milestones}")

    def help(self) -> None:
        for number in range(1 + (1 if self.args.quick else 7)):
            shown = self.up.cli("--help", timeout=30)
            self.result.add(CLI, "`chatops --help`", shown.wall, warmup=number == 0)

    def hosts_phase(self, count: int, hosts: list[TestHost], env: str) -> None:
        """Cold deploys against the script, and warm deploys, to ``count`` hosts."""
        label = f"{count} host{'s' if count > 1 else ''}"
        rounds = [True] * (0 if self.args.quick else 1) + [False] * self.args.rounds
        for number, warmup in enumerate(rounds):
            order = ("script", "chatops") if number % 2 == 0 else ("chatops", "script")
            for who in order:
                if who == "script":
                    entry = self.script(hosts, self.fresh_commit())
                    self.result.add(WALL, f"script, {label}", ok_wall(entry), warmup=warmup)
                else:
                    self.sample(
                        "cold", label, self.chatops(env, hosts, self.fresh_commit()), warmup
                    )
            if len(self.built) > 1:
                entry = self.chatops(env, hosts, self.built_commit(env))
                self.sample("warm", label, entry, warmup)
            log(f"{label}, round {number}{' (warm-up)' if warmup else ''} done")
        for kind in ("cold", "warm"):
            a, b = (WALL, f"chatops {kind}, {label}"), (WALL, f"script, {label}")
            self.result.compare(f"{kind} deploy, {label}: chatops ÷ script", a, b)

    def sample(self, kind: str, label: str, entry: dict[str, Any], warmup: bool) -> None:
        """A chatops deploy's wall time, its latency to the first task, and where it went."""
        self.result.add(WALL, f"chatops {kind}, {label}", ok_wall(entry), warmup=warmup)
        if not entry["ok"]:
            return
        first = entry["first_task"] - entry["sent"]
        self.result.add(FIRST, f"CLI, {kind}, {label}", first, warmup=warmup)
        table = f"Where a chatops deploy's seconds go: {kind}, {label} (s)"
        for phase, seconds in phases(entry).items():
            self.result.add(table, phase, seconds, warmup=warmup)


MILESTONES = {"up_line": 'prints "chatops is up"', "gateway": "the gateway answers /healthz"}
MILESTONES["deployments"] = "the deployments are served"


def ok_wall(entry: dict[str, Any]) -> float | None:
    return entry["wall"] if entry["ok"] else None  # a failed deploy is not a sample


def phases(entry: dict[str, Any]) -> dict[str, float]:
    """A deploy's seconds by phase, from Prefect's timestamps; a task group counts the wall
    time during which at least one of its task runs ran (hosts run side by side)."""
    out = {
        "request → flow run created": entry["created"] - entry["sent"],
        "created → flow running (runner, fork)": entry["start"] - entry["created"],
        "flow start → first task": entry["first_task"] - entry["start"],
    }
    groups: dict[str, list[tuple[float, float]]] = {}
    for task in entry["tasks"]:
        if task["start"] and task["end"]:
            group = task["name"].rsplit(" ", 1)[0]  # "health check 10.213.1.2": per host
            groups.setdefault(f"task: {group}", []).append((task["start"], task["end"]))
    out.update({group: union(spans) for group, spans in groups.items()})
    if entry.get("exited"):
        out["flow end → CLI exit"] = entry["exited"] - entry["end"]
    return out


def union(spans: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        total += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return total


def tomcat_cores(hosts: list[TestHost], window: float = 0.5) -> float:
    """Cores the hosts' Tomcat JVMs used over the next ``window`` seconds."""
    pids = []
    for host in hosts:
        with contextlib.suppress(OSError, ValueError):
            pids.append(int((host.root / "tomcat" / "tomcat.pid").read_text().strip()))
    before = cpu_seconds(pids)
    time.sleep(window)
    return (cpu_seconds(pids) - before) / window


# ---------------------------------------------------------------------- the scenarios
def deploy_scenario(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> Result:
    params = {k: getattr(args, k) for k in ("hosts", "rounds", "quick")}
    result = Result("deploy", "Deploys: chatops against the script", command_line(), params)
    stack.callback(result.write, args.out / "deploy.json")  # what it has, even if interrupted
    bench = DeployBench(args, work, result)
    stack.callback(bench.up.stop)
    bench.start()
    bench.help()
    for count in args.hosts:
        log(f"{count} host(s): bringing up the test hosts")
        with testbed.netns_hosts(count, bench.key, work / f"hosts-{count}") as hosts:
            bench.apply_config(f"staging-{count}", hosts)
            bench.hosts_phase(count, hosts[:count], f"staging-{count}")
    return result


def burst_scenario(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> Result:
    params = {"each": args.burst_each, "rounds": args.burst_rounds, "databases": args.databases}
    title = f"A burst of {args.burst_each} slash commands and {args.burst_each} webhooks at once"
    result = Result("burst", title, command_line(), params)
    stack.callback(result.write, args.out / "burst.json")
    burst.measure(result, work, args.databases, args.burst_each, args.burst_rounds, log)
    return result


def sweep_scenario(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> Result:
    return importlib.import_module("bench.sweep").sweep_scenario(args, work, stack)  # a subclass


SCENARIOS = {"deploy": deploy_scenario, "burst": burst_scenario, "sweep": sweep_scenario}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.splitlines()[0])
    p.add_argument("scenarios", nargs="*", default=["deploy", "burst"], choices=[[], *SCENARIOS])
    p.add_argument("--hosts", default="1,4,8", type=lambda s: sorted(map(int, s.split(","))))
    p.add_argument("--rounds", type=int, default=5, help="measured rounds per host count (5)")
    p.add_argument("--burst-each", type=int, default=50, help="slash commands, as many webhooks")
    p.add_argument("--burst-rounds", type=int, default=1)
    burst_on = "burst on: embedded (chatops up's default), sqlite, postgresql (an external one)"
    p.add_argument(
        "--databases", default="sqlite,postgresql", type=lambda s: s.split(","), help=burst_on
    )
    p.add_argument("--out", type=Path, default=Path("results"), help="result directory")
    p.add_argument("--timeout", type=float, default=3600, help="for the whole run, seconds")
    p.add_argument("--max-failures", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="no warm-up")
    args = p.parse_args(argv)
    if args.rounds < 1 or min(args.hosts) < 1:
        p.error("need --rounds >= 1 and host counts >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if missing := testbed.missing_requirements():
        sys.exit(f"bench: this machine lacks: {', '.join(missing)}")

    def interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, interrupted)
    signal.alarm(int(args.timeout))
    testbed.preclean()  # hosts of earlier runs whose owner is gone (a killed bench)
    failed = 0
    for name in args.scenarios:
        work = Path(tempfile.mkdtemp(prefix=f"chatops-bench-{name}-"))
        try:
            with contextlib.ExitStack() as stack:
                result = SCENARIOS[name](args, work, stack)
            failed += len(result.data["failures"])
            log(f"{name}: wrote {args.out / f'{name}.json'}")
        except (KeyboardInterrupt, Interrupted) as exc:
            log(f"interrupted ({type(exc).__name__} {exc}); cleaned up")
            return 130
        except BenchError as exc:
            log(f"{name} failed: {exc}")
            return 1
        finally:
            subprocess.run(["rm", "-rf", str(work)], check=False, timeout=120)
    signal.alarm(0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

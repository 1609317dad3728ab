"""The benchmark: chatops-deploy as a user meets it, against a hand-written fabric script.

Run it with ``bench/run.sh`` (as root, on the test bed). What it does, in order:

1. starts ``chatops up --port <free>`` in a fresh CHATOPS_HOME (no PREFECT_* variables), timing
   "chatops is up", the gateway answering and the three deployments being served;
2. times ``chatops --help``;
3. for each host count N (``--hosts``, default 1,4,8): N network-namespace hosts (sshd + Tomcat
   10.1), ``chatops config apply`` of an environment ``staging-N`` with ``batch_size: N``, one
   warm-up deploy, then ``--rounds`` rounds, each with a fresh commit for the baseline
   (bench/baseline_fabric.py) and another for ``chatops deploy demo@<sha> to staging-N``,
   interleaved and alternating which goes first; while they run, the Tomcat JVMs and the
   machine's CPU are sampled (bench/probes.py);
4. on the 1-host environment: redeploys of built commits (CLI), promotions of built commits to
   a second environment ``qa-1`` (CLI), and the same deploy sent as a signed Slack slash command
   and as a signed GitHub ``deployment`` webhook, each timed from the request to the first task
   running;
5. peak memory (VmHWM) of the server, the runner and the gateway; then ``--rounds`` restarts of
   ``chatops up`` (same home), each timed until a deploy sent as soon as the gateway answers has
   its first task running;
6. writes the report (bench/report.py) and, with ``--json``, the raw numbers.

Everything it starts is stopped when it ends, fails or is interrupted (Ctrl-C, SIGTERM, or the
``--timeout`` for the whole run): ``chatops up`` is stopped like a person does (Ctrl-C) and
whatever is left is killed; the hosts' namespaces (with their sshd and Tomcat) are deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import burst, report
from bench.probes import JvmWatch, RunMemory, quiesce, restart_profile
from bench.signed import SECRETS, ResponseSink, deployment_webhook, slash_command
from bench.system import (
    CHATOPS,
    ROOT,
    RUN_ID,
    BenchError,
    CliResult,
    Up,
    cmdline,
    http,
    status_kb,
    ts,
    wait_for,
)
from tests.testbed.gitrepo import AppRepo, make_app_repo
from tests.testbed.hosts import (
    DEPLOY_PATH,
    SshKey,
    TestHost,
    make_ssh_key,
    missing_requirements,
    netns_hosts,
    preclean,
)

KEY_VAR = "DEMO_SSH_KEY"
HEALTH_URL = "http://{host}:8080/demo/health"
RESTART = f"{DEPLOY_PATH}/bin/restart-tomcat {DEPLOY_PATH}"
DEPLOY_TIMEOUT = 600.0
HELP_SAMPLES = 7


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Interrupted(BaseException):
    """SIGTERM/SIGHUP or the overall timeout: stop, clean up, report nothing."""


# --------------------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.key: SshKey = make_ssh_key(work / "key")
        self.repo: AppRepo = make_app_repo(work / "demo")
        self.up = Up(
            work / "home",
            extra_env=SECRETS,
        )
        self.sink = ResponseSink()
        self.memory = RunMemory(self.up.home)
        self.results: dict[str, Any] = {
            "meta": machine_meta("start"),
            "args": {"hosts": args.hosts, "rounds": args.rounds, "quick": args.quick},
            "deploys": [],
            "baselines": [],
            "up": {},
            "help": [],
            "rss": {},
            "failures": [],
        }
        self.commits = 0
        self.served: dict[str, str] = {}  # environment -> sha chatops deployed there last
        self.deployed: dict[str, set[str]] = {}  # environment -> shas chatops deployed there
        self.built: list[str] = []  # shas chatops has built (in its artifact cache)
        self._deliveries = 0
        self.kept: dict[str, list[TestHost]] = {}  # environments configured in every phase

    # ---------------------------------------------------------------- commits and config
    def fresh_commit(self) -> str:
        self.commits += 1
        self.repo.git("commit", "-q", "--allow-empty", "-m", f"bench commit {self.commits}")
        return self.repo.git("rev-parse", "HEAD")

    def apply_config(self, environments: dict[str, list[TestHost]]) -> float:
        """Write chatops.yaml for these environments and ``chatops config apply`` it."""
        lines = [
            "apps:",
            "  demo:",
            "    repository: acme/demo",
            f"    clone_url: {self.repo.url}",
            f"    default_environment: {next(iter(environments))}",
            "    environments:",
        ]
        for name, hosts in environments.items():
            known = ", ".join(json.dumps(h.known_hosts_line) for h in hosts)
            lines += [
                f"      {name}:",
                f"        hosts: [{', '.join(h.address for h in hosts)}]",
                "        ssh:",
                "          user: root",
                f"          private_key_env: {KEY_VAR}",
                f"          known_hosts: [{known}]",
                "          connect_timeout: 3",
                f"        deploy_path: {DEPLOY_PATH}",
                f"        restart_command: {RESTART}",
                f"        health_url: {HEALTH_URL}",
                "        health_timeout: 120",
                f"        batch_size: {len(hosts)}",
            ]
        path = self.work / "chatops.yaml"
        path.write_text("\n".join(lines) + "\n")
        result = self.up.cli(
            "config", "apply", str(path), timeout=120, env={KEY_VAR: self.key.private_text}
        )
        if result.rc != 0:
            raise BenchError(f"chatops config apply failed:\n{result.stdout}\n{result.stderr}")
        # The gateway reads the configuration every few seconds: deploy once it has it (a
        # deploy sent at once can be refused while it holds a half-applied one).
        seen = wait_for(
            "the gateway to see the new configuration",
            lambda: self.gateway_sees(environments),
            60,
            interval=0.2,
        )
        self.results.setdefault("config_visible", []).append(seen - result.started - result.wall)
        return result.wall

    def gateway_sees(self, environments: dict[str, list[TestHost]]) -> float | None:
        """When ``where demo`` lists every environment with its hosts (None: not yet)."""
        body = json.dumps({"text": "where demo"}).encode()
        headers = {"Authorization": f"Bearer {self.up.token}", "Content-Type": "application/json"}
        status, answer = http("POST", f"{self.up.gateway}/cli/commands", body, headers)
        if status != 200:
            return None
        text = json.loads(answer).get("text", "")
        lines = {line.split("*")[1]: line for line in text.splitlines() if line.count("*") >= 2}
        for name, hosts in environments.items():
            line = lines.get(name, "")
            if not all(h.address in line for h in hosts):
                return None
        return time.time()

    # ---------------------------------------------------------------- one chatops deploy
    def record(
        self,
        *,
        kind: str,
        via: str,
        env: str,
        hosts: list[TestHost],
        sha: str,
        sent: float,
        run_id: str | None,
        cli: CliResult | None = None,
        answered: float | None = None,
        watch: JvmWatch | None = None,
        measured: bool = True,
    ) -> dict[str, Any]:
        """Wait for the run to end and keep what it says about itself."""
        entry: dict[str, Any] = {
            "kind": kind,
            "via": via,
            "env": env,
            "hosts": len(hosts),
            "sha": sha,
            "sent": sent,
            "run_id": run_id,
            "measured": measured,
            "ok": False,
            "load1": os.getloadavg()[0],
        }
        if cli is not None:
            entry.update(wall=cli.wall, rc=cli.rc, cli_exit=sent + cli.wall, cli_cpu=cli.cpu)
        if answered is not None:
            entry["answered"] = answered
        if run_id is None:
            entry["error"] = "no run id" + (
                f": {cli.stdout[-500:]} {cli.stderr[-500:]}" if cli else ""
            )
            self.fail(entry)
            return entry
        flow = self.up.wait_final(run_id, DEPLOY_TIMEOUT)
        tasks = self.up.task_runs(run_id)
        state = (flow.get("state") or {}).get("type")
        entry.update(
            ok=state == "COMPLETED" and (cli is None or cli.rc == 0),
            state=state,
            created=ts(flow.get("created")),
            start=ts(flow.get("start_time")),
            end=ts(flow.get("end_time")),
            tasks=[
                {
                    "name": t["name"],
                    "state": t.get("state_type"),
                    "start": ts(t.get("start_time")),
                    "end": ts(t.get("end_time")),
                }
                for t in tasks
            ],
        )
        starts = [t["start"] for t in entry["tasks"] if t["start"]]
        entry["first_task"] = min(starts) if starts else None
        if watch is not None:
            entry["restarts"] = self.chatops_restarts(entry, hosts, watch)
        self.settle(run_id, entry, hosts)
        peak = self.memory.peaks.get(run_id)
        if peak:
            entry["rss"] = {
                "hwm_kb": peak.hwm_kb,
                "pss_kb": peak.pss_kb,
                "child_hwm_kb": peak.child_hwm_kb,
                "child": peak.child,
            }
        if not entry["ok"]:
            entry["error"] = f"state {state}; {cli.stdout[-800:] if cli else ''}"
            self.fail(entry)
        else:
            self.served[env] = sha
            self.deployed.setdefault(env, set()).add(sha)
        self.results["deploys"].append(entry)
        return entry

    def settle(self, run_id: str, entry: dict[str, Any], hosts: list[TestHost]) -> None:
        """Wait (bounded) until the run's process has exited, note how long it outlived its
        final state, wait until the hosts' JVMs are idle, then pause like a person between two
        commands."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            peak = self.memory.peaks.get(run_id)
            if peak is None or peak.exited is not None:
                break
            time.sleep(0.1)
        peak = self.memory.peaks.get(run_id)
        if peak and peak.exited and entry.get("end"):
            entry["process_linger"] = peak.exited - entry["end"]
        entry["quiesce"] = quiesce([h.root for h in hosts])
        time.sleep(self.args.pause)

    def chatops_restarts(
        self, entry: dict[str, Any], hosts: list[TestHost], watch: JvmWatch
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        by_name = {t["name"]: t for t in entry["tasks"]}
        for host in hosts:
            activate = by_name.get(f"activate {host.address}")
            healthy = by_name.get(f"health check {host.address}")
            if activate and healthy and activate["start"] and healthy["end"]:
                out[host.address] = restart_profile(
                    watch, host.address, activate["start"], healthy["end"]
                )
        return out

    def fail(self, entry: dict[str, Any]) -> None:
        self.results["failures"].append(
            {k: entry.get(k) for k in ("kind", "via", "env", "sha", "run_id", "error")}
        )
        log(f"FAILED: {entry.get('kind')} via {entry.get('via')}: {entry.get('error')}")
        if len(self.results["failures"]) > self.args.max_failures:
            raise BenchError("too many failed deploys; see the failures above")

    def cli_deploy(
        self,
        kind: str,
        env: str,
        hosts: list[TestHost],
        sha: str,
        measured: bool = True,
        watch_jvms: bool = False,
    ) -> dict[str, Any]:
        watch = JvmWatch({h.address: h.root for h in hosts}) if watch_jvms else None
        before = self.up.service_cpu()
        with watch if watch else contextlib.nullcontext():
            cli = self.up.cli("deploy", f"demo@{sha}", "to", env, timeout=DEPLOY_TIMEOUT)
            entry = self.record(
                kind=kind,
                via="cli",
                env=env,
                hosts=hosts,
                sha=sha,
                sent=cli.started,
                run_id=cli.run_id,
                cli=cli,
                watch=watch,
                measured=measured,
            )
        if watch is not None:
            entry["watch_cpu"] = watch.own_cpu
        after = self.up.service_cpu()  # the run's process has exited (see settle)
        entry["cpu"] = {k: after[k] - before[k] for k in after if k in before}
        if kind in ("cold", "warmup") and entry["ok"]:
            self.built.append(sha)
        return entry

    def baseline(
        self, hosts: list[TestHost], sha: str, watch_jvms: bool = True, extra: bool = False
    ) -> dict[str, Any]:
        """The script's deploy of ``sha``; ``extra``: one run beside the built-commit deploys."""
        known = self.work / "known_hosts"
        known.write_text("".join(h.known_hosts_line + "\n" for h in hosts))
        argv = [
            sys.executable,
            str(ROOT / "bench" / "baseline_fabric.py"),
            "--repo",
            self.repo.url,
            "--sha",
            sha,
            "--hosts",
            ",".join(h.address for h in hosts),
            "--key",
            str(self.key.private),
            "--known-hosts",
            str(known),
            "--deploy-path",
            DEPLOY_PATH,
            "--restart",
            RESTART,
            "--health-url",
            HEALTH_URL,
            "--workdir",
            str(self.work),
            "--json",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
        watch = JvmWatch({h.address: h.root for h in hosts}) if watch_jvms else None
        before = self.up.service_cpu()
        script_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        with watch if watch else contextlib.nullcontext():
            started = time.time()
            t0 = time.monotonic()
            proc = subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                timeout=DEPLOY_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
            wall = time.monotonic() - t0
        script = resource.getrusage(resource.RUSAGE_CHILDREN)
        entry: dict[str, Any] = {
            "hosts": len(hosts),
            "sha": sha,
            "sent": started,
            "wall": wall,
            "ok": proc.returncode == 0,
            "load1": os.getloadavg()[0],
            "extra": extra,
        }
        if watch is not None:
            entry["watch_cpu"] = watch.own_cpu
        if proc.returncode == 0:
            steps = json.loads(proc.stdout.strip().splitlines()[-1])
            entry["steps"] = steps
            if watch is not None:
                entry["restarts"] = {
                    step["host"]: restart_profile(
                        watch, step["host"], step["switched"], step["healthy"]
                    )
                    for step in steps["hosts"]
                }
        else:
            entry["error"] = proc.stderr[-1500:]
            self.results["failures"].append({"kind": "baseline", "error": entry["error"]})
            log(f"FAILED: baseline: {entry['error']}")
        self.results["baselines"].append(entry)
        entry["quiesce"] = quiesce([h.root for h in hosts])
        after = self.up.service_cpu()
        entry["cpu"] = {k: after[k] - before[k] for k in after if k in before}
        entry["cpu"]["script"] = (script.ru_utime + script.ru_stime) - (
            script_before.ru_utime + script_before.ru_stime
        )
        time.sleep(self.args.pause)
        return entry

    # ---------------------------------------------------------------- the phases
    def start(self) -> None:
        log(f"starting chatops up (CHATOPS_HOME={self.up.home})")
        milestones = self.up.start(wait_deployments=True, timeout=240)
        self.results["up"]["cold"] = milestones
        log(f"chatops up: {fmt_milestones(milestones)}")
        self.memory.start()

    def help_times(self) -> None:
        for _ in range(3 if self.args.quick else HELP_SAMPLES):
            result = self.up.cli("--help", timeout=30)
            if result.rc != 0:
                raise BenchError(f"chatops --help failed: {result.stderr}")
            self.results["help"].append(result.wall)
            self.results.setdefault("help_cpu", []).append(result.cpu)
            time.sleep(0.2)
        log(f"chatops --help: median {statistics.median(self.results['help']):.3f} s")

    def phase(self, count: int, hosts: list[TestHost]) -> None:
        """Cold deploys to ``count`` hosts against the baseline; extras on 1 host."""
        env = f"staging-{count}"
        targets = hosts[:count]
        environments = {env: targets}
        if count == 1 and len(hosts) > 1:
            environments["qa-1"] = hosts[1:2]
        if count == 1:
            self.kept = dict(environments)  # its hosts live until the end (restarts)
        environments = {**self.kept, **environments}
        log(f"{count} host(s): chatops config apply ({', '.join(environments)})")
        self.results.setdefault("config_apply", []).append(self.apply_config(environments))
        if not self.args.quick:
            warm = self.fresh_commit()
            log(f"{count} host(s): warm-up deploy of {warm[:7]} (not measured)")
            self.cli_deploy("warmup", env, targets, warm, measured=False)
            if count == 1 and "qa-1" in environments:
                self.cli_deploy("warmup", "qa-1", environments["qa-1"], warm, measured=False)
        for number in range(self.args.rounds):
            order = ["baseline", "chatops"] if number % 2 == 0 else ["chatops", "baseline"]
            for who in order:
                sha = self.fresh_commit()
                if who == "baseline":
                    entry = self.baseline(targets, sha)
                else:
                    entry = self.cli_deploy("cold", env, targets, sha, watch_jvms=True)
                log(
                    f"{count} host(s) round {number + 1}: {who:8} {sha[:7]} "
                    f"{entry.get('wall', 0):6.2f} s {'ok' if entry['ok'] else 'FAILED'}"
                )

    def log_baseline(self, entry: dict[str, Any]) -> None:
        state = "ok" if entry["ok"] else "FAILED"
        log(f"script, 1 host, {entry['sha'][:7]}: {entry['wall']:.2f} s {state}")

    def built_sha(self, env: str) -> str:
        """A commit chatops built already that ``env`` does not serve right now: one never
        deployed there if there is one (a promotion), else the newest other (a redeploy)."""
        newest_first = list(dict.fromkeys(reversed(self.built)))
        done = self.deployed.get(env, set())
        fresh = [s for s in newest_first if s not in done]
        other = [s for s in newest_first if s != self.served.get(env)]
        if not newest_first:
            raise BenchError("no built commit to deploy again")
        return (fresh or other or newest_first)[0]

    def extras(self, hosts: list[TestHost]) -> None:
        """Redeploy, promote, and the Slack and webhook triggers, on the 1-host environments."""
        staging, qa = hosts[:1], hosts[1:2]
        for number in range(self.args.rounds):
            # The script's deploy again, in the same minutes as the deploys it is compared with.
            if number % 2 == 0 or self.args.quick:
                self.log_baseline(self.baseline(staging, self.fresh_commit(), extra=True))
            sha = self.built_sha("staging-1")
            entry = self.cli_deploy("redeploy", "staging-1", staging, sha)
            log(f"redeploy {sha[:7]}: {entry.get('wall', 0):.2f} s")
            if qa:
                sha = self.built_sha("qa-1")
                entry = self.cli_deploy("promote", "qa-1", qa, sha)
                log(f"promote {sha[:7]} to qa-1: {entry.get('wall', 0):.2f} s")
            if number % 2 == 1 and not self.args.quick:
                self.log_baseline(self.baseline(staging, self.fresh_commit(), extra=True))
        for number in range(self.args.rounds):
            entry = self.slack_deploy("staging-1", staging, self.built_sha("staging-1"), number)
            log(f"slack deploy: first task {lat(entry)}")
            entry = self.webhook_deploy("staging-1", staging, self.built_sha("staging-1"))
            log(f"webhook deploy: first task {lat(entry)}")

    def slack_deploy(self, env: str, hosts: list[TestHost], sha: str, number: int) -> dict:
        body, headers = slash_command(
            f"deploy demo@{sha} to {env}",
            f"U0BENCH{number:03d}",
            self.sink.url(),
            f"{time.time_ns()}.{number}.bench",
        )
        seen = len(self.sink.messages)
        sent = time.time()
        status, answer = http("POST", f"{self.up.gateway}/slack/commands", body, headers)
        answered = time.time()
        if status != 200:
            raise BenchError(f"slash command: HTTP {status} {answer[:300]!r}")
        text = json.loads(answer).get("text", "")
        run_id = _run_id(text)
        if run_id is None:  # queued: the link follows on the response_url
            run_id = wait_for(
                "the Slack follow-up with the run link",
                lambda: next((r for *_, m in self.sink.messages[seen:] if (r := _run_id(m))), None),
                60,
            )
        return self.record(
            kind="trigger",
            via="slack",
            env=env,
            hosts=hosts,
            sha=sha,
            sent=sent,
            run_id=run_id,
            answered=answered - sent,
        )

    def webhook_deploy(self, env: str, hosts: list[TestHost], sha: str) -> dict:
        self._deliveries += 1
        deployment_id = 7_000_000 + int(time.time()) % 1_000_000 * 10 + self._deliveries
        body, headers = deployment_webhook(deployment_id, sha, env, "acme/demo")
        sent = time.time()
        status, answer = http("POST", f"{self.up.gateway}/github/webhook", body, headers)
        answered = time.time()
        if status != 202:
            raise BenchError(f"deployment webhook: HTTP {status} {answer[:300]!r}")
        if not json.loads(answer).get("queued"):
            raise BenchError(f"deployment webhook: nothing queued: {answer[:300]!r}")
        # The intake's idempotency key for a GitHub deployment (chatops/github/events.py).
        run_id = self.up.request_run(f"github-deployment-{deployment_id}")
        return self.record(
            kind="trigger",
            via="webhook",
            env=env,
            hosts=hosts,
            sha=sha,
            sent=sent,
            run_id=run_id,
            answered=answered - sent,
        )

    def service_memory(self) -> None:
        children = self.up.children()
        rss: dict[str, Any] = {}
        for name, pid in children.items():
            rss[name] = {"hwm_kb": status_kb(pid, "VmHWM"), "rss_kb": status_kb(pid, "VmRSS")}
        if self.up.process:
            pid = self.up.process.pid
            rss["chatops up"] = {
                "hwm_kb": status_kb(pid, "VmHWM"),
                "rss_kb": status_kb(pid, "VmRSS"),
            }
        self.results["rss"]["services"] = rss
        log(
            "peak RSS: "
            + ", ".join(f"{k} {(v['hwm_kb'] or 0) / 1024:.0f} MB" for k, v in rss.items())
        )

    def restarts(self, hosts: list[TestHost]) -> None:
        """Stop and start ``chatops up`` again; time until a deploy sent right away runs."""
        samples = self.results["up"].setdefault("warm", [])
        for number in range(self.args.rounds):
            stop_started = time.monotonic()
            self.up.stop()
            stopped = time.monotonic() - stop_started
            sha = self.built_sha("staging-1")
            milestones = self.up.start(wait_deployments=False, timeout=240)
            cli_argv = ["deploy", f"demo@{sha}", "to", "staging-1"]
            # Sent as soon as the gateway answers, as a user who types right away would.
            env = self.up.cli_env(USER="bench", LOGNAME="bench")
            sent = time.time()
            t0 = time.monotonic()
            proc = subprocess.Popen(
                [str(CHATOPS), *cli_argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            try:
                wait_for("the deployments", self.up._deployments_ok, 120, interval=0.05)
                milestones["deployments"] = time.time() - self.up.spawned
                out, err = proc.communicate(timeout=DEPLOY_TIMEOUT)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            cli = CliResult(cli_argv, proc.returncode, out, err, sent, time.monotonic() - t0)
            entry = self.record(
                kind="after-restart",
                via="cli",
                env="staging-1",
                hosts=hosts[:1],
                sha=sha,
                sent=sent,
                run_id=cli.run_id,
                cli=cli,
            )
            if entry.get("first_task"):
                milestones["first_task"] = entry["first_task"] - self.up.spawned
            milestones["stop"] = stopped
            samples.append(milestones)
            log(f"chatops up restart {number + 1}: {fmt_milestones(milestones)}")


# --------------------------------------------------------------------------- helpers
def _run_id(text: str) -> str | None:
    match = RUN_ID.search(text)
    return match.group(1) if match else None


def lat(entry: dict[str, Any]) -> str:
    if entry.get("first_task") and entry.get("sent"):
        return f"{entry['first_task'] - entry['sent']:.2f} s after the request"
    return "?"


def fmt_milestones(milestones: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f} s" for k, v in milestones.items())


def machine_meta(when: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"when": when, "time": time.time(), "loadavg": os.getloadavg()}
    with contextlib.suppress(OSError):
        meta["cpu_pressure"] = Path("/proc/pressure/cpu").read_text().split("\n", 1)[0]
    meta["cores"] = os.cpu_count()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        meta["java"] = subprocess.run(
            ["java", "-version"], capture_output=True, text=True, timeout=30
        ).stderr.splitlines()[0]
    return meta


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.splitlines()[0])
    p.add_argument(
        "--hosts",
        default="1,4,8",
        type=lambda s: sorted({int(x) for x in s.split(",") if x.strip()}),
        help="host counts for the cold deploys (default 1,4,8); the redeploy, trigger and "
        "restart measurements need 1 among them",
    )
    p.add_argument("--rounds", type=int, default=3, help="samples of each measurement (3)")
    p.add_argument("--write", type=Path, help="write the Markdown report here")
    p.add_argument("--json", type=Path, help="write the raw numbers here")
    p.add_argument("--timeout", type=float, default=3600, help="for the whole run, seconds")
    p.add_argument("--max-failures", type=int, default=3)
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="seconds between two deploys, once the last one's process has exited (1.0)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--no-restarts", action="store_true", help="skip the chatops up restarts")
    p.add_argument(
        "--burst-each",
        type=int,
        default=50,
        help="the burst's slash commands, and as many webhooks (50; 0: no burst)",
    )
    p.add_argument(
        "--burst-databases",
        default="sqlite,postgresql",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="databases the burst runs on (sqlite,postgresql)",
    )
    p.add_argument("--burst-only", action="store_true", help="only the bursts (bench/burst.py)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: no warm-up deploys, no promotion, no restarts, 3 --help samples "
        "(numbers are not comparable with a full run)",
    )
    args = p.parse_args(argv)
    if args.rounds < 1 or not args.hosts or min(args.hosts) < 1:
        p.error("need --rounds >= 1 and host counts >= 1")
    if set(args.burst_databases) - {"sqlite", "postgresql"}:
        p.error("--burst-databases: sqlite and/or postgresql")
    if args.quick:
        args.burst_each = 0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_requirements()
    if missing:
        print(f"bench: this machine lacks: {', '.join(missing)}", file=sys.stderr)
        return 2

    def interrupted(signum: int, frame: object) -> None:
        raise Interrupted(signal.Signals(signum).name)

    # Ctrl-C even when started in the background of a script (which sets SIGINT to ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, interrupted)
    signal.alarm(int(args.timeout))
    preclean()  # hosts of earlier runs whose owner is gone (a killed bench)
    work = Path(tempfile.mkdtemp(prefix="chatops-bench-"))
    bench: Bench | None = None
    started = time.monotonic()
    try:
        bench = Bench(args, work)
        run(bench)
        bench.results["meta_end"] = machine_meta("end")
        bench.results["duration"] = time.monotonic() - started
    except (KeyboardInterrupt, Interrupted) as exc:
        log(f"interrupted ({type(exc).__name__} {exc}); cleaning up")
        return 130
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # cleaning up is bounded; let it finish
        if bench is not None:
            cleanup(bench)
        if args.keep:
            log(f"kept {work}")
        else:
            subprocess.run(["rm", "-rf", str(work)], check=False, timeout=120)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
    results = bench.results
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if args.write and args.burst_only:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results["meta"]["time"]))
        results["burst_measured"] = (
            f"Measured {when} on its own: `bench/run.sh --burst-only --burst-each "
            f"{args.burst_each} --rounds {args.rounds}`."
        )
        args.write.write_text(report.splice_burst(args.write.read_text(), results))
        log(f"wrote the burst section of {args.write}")
    elif args.write:
        args.write.write_text(report.render(results))
        log(f"wrote {args.write}")
    print(report.summary(results))
    log(f"done in {results['duration']:.0f} s")
    return 0 if not results["failures"] else 1


_hosts_stack = contextlib.ExitStack()


def run(bench: Bench) -> None:
    if not bench.args.burst_only:
        deploys(bench)
    if bench.args.burst_each:
        bench.up.stop()  # the bursts get the machine to themselves, each on a fresh chatops up
        bench.results["burst"] = burst.measure(
            bench.work,
            bench.args.burst_databases,
            bench.args.burst_each,
            bench.args.rounds,
            log,
        )
        for done in bench.results["burst"]:
            if done["runs"] != done["sent"]:
                lost = done["sent"] - done["runs"]
                error = f"{lost} of {done['sent']} requests did not become exactly one run"
                bench.results["failures"].append(
                    {"kind": "burst", "via": done["database"], "error": error}
                )


def deploys(bench: Bench) -> None:
    bench.start()
    bench.help_times()
    one: list[TestHost] | None = None
    for count in bench.args.hosts:
        log(f"{count} host(s): bringing up the test hosts")
        if count == 1:
            size = 1 if bench.args.quick else 2  # the second one is qa-1, for promotions
            one = _hosts_stack.enter_context(netns_hosts(size, bench.key, bench.work / "hosts"))
            bench.phase(1, one)
            bench.extras(one)
        else:
            with netns_hosts(count, bench.key, bench.work / "hosts") as hosts:
                bench.phase(count, hosts)
    bench.service_memory()
    if one is not None and not (bench.args.no_restarts or bench.args.quick):
        bench.restarts(one)


def cleanup(bench: Bench) -> None:
    with contextlib.suppress(Exception):
        bench.memory.stop()
    try:
        bench.up.stop()
    except Exception as exc:  # noqa: BLE001 - keep cleaning
        log(f"stopping chatops up: {exc}")
    try:
        _hosts_stack.close()
    except Exception as exc:  # noqa: BLE001
        log(f"removing the test hosts: {exc}")
    with contextlib.suppress(Exception):
        bench.sink.close()
    left = [pid for pid in _our_processes(bench.work)]
    if left:
        log(f"left running after cleanup (killed now): {left}")
        for pid in left:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _our_processes(work: Path) -> list[int]:
    """Processes whose command line names the bench's work directory."""
    mine = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid() and str(work) in cmdline(int(entry)):
            mine.append(int(entry))
    return mine


if __name__ == "__main__":
    sys.exit(main())

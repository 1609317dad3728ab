"""The hand-written baseline: how a person deploys the example app without chatops-deploy.

A plain sequential fabric script, the way one is usually written: a fresh ``git clone`` of the
repository at the commit, ``mvn -B clean package`` (with ``GIT_COMMIT`` set, so the app reports
the commit), then for each host in turn: upload the war and a REVISION file (the sha, as chatops
writes one) into a new release folder, switch the ``current`` symlink, run the restart command,
and poll the health URL until it answers 200 with the commit. No build cache, no parallelism, no
bookkeeping.

    python bench/baseline_fabric.py --repo /path/to/repo --sha <sha> --hosts 10.213.1.2,... \\
        --key id_ed25519 --known-hosts known_hosts

It pins host keys like chatops does (``--known-hosts``: any other key is refused). The bench
times its whole run from the outside, Python start-up included, as it times ``chatops deploy``.
"""

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import paramiko
from fabric import Connection

_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy(url: str, sha: str) -> bool:
    try:
        with _opener.open(url, timeout=2) as response:
            return response.status == 200 and sha in response.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(url: str, sha: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url, sha):
        if time.monotonic() > deadline:
            raise SystemExit(f"{url} did not serve {sha[:7]} within {timeout:.0f} s")
        time.sleep(0.1)


def connect(host: str, user: str, key: str, known_hosts: str, timeout: float) -> Connection:
    conn = Connection(
        host,
        user=user,
        connect_timeout=timeout,
        connect_kwargs={"key_filename": key, "look_for_keys": False, "allow_agent": False},
    )
    conn.client.load_host_keys(known_hosts)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repo", required=True, help="what git clone accepts")
    p.add_argument("--sha", required=True, help="the commit to deploy")
    p.add_argument("--hosts", required=True, help="comma-separated")
    p.add_argument("--user", default="root")
    p.add_argument("--key", required=True, help="private key file")
    p.add_argument("--known-hosts", required=True, help="known_hosts file pinning the host keys")
    p.add_argument("--deploy-path", default="/srv/app")
    p.add_argument("--restart", default="/srv/app/bin/restart-tomcat /srv/app")
    p.add_argument("--health-url", default="http://{host}:8080/demo/health")
    p.add_argument("--health-timeout", type=float, default=120)
    p.add_argument("--connect-timeout", type=float, default=3)
    p.add_argument("--workdir", help="where to clone (default: a new temporary directory)")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="baseline-", dir=args.workdir)
    try:
        src = os.path.join(work, "src")
        subprocess.run(["git", "clone", "-q", args.repo, src], check=True)
        checkout = ["git", "-c", "advice.detachedHead=false", "checkout", "-q", args.sha]
        subprocess.run(checkout, cwd=src, check=True)
        with open(os.path.join(work, "build.log"), "wb") as log:
            env = {**os.environ, "GIT_COMMIT": args.sha}
            mvn = ["mvn", "-B", "clean", "package"]
            subprocess.run(mvn, cwd=src, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
        war = os.path.join(src, "target", "demo.war")

        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        release = f"{args.deploy_path}/releases/{stamp}-{args.sha[:7]}"
        for host in args.hosts.split(","):
            with connect(host, args.user, args.key, args.known_hosts, args.connect_timeout) as c:
                c.run(f"mkdir -p {release}", hide=True, in_stream=False)
                c.put(war, f"{release}/demo.war")
                c.put(io.StringIO(args.sha + "\n"), f"{release}/REVISION")
                c.run(f"ln -sfn {release} {args.deploy_path}/current", hide=True, in_stream=False)
                c.run(args.restart, hide=True, in_stream=False)
            wait_healthy(args.health_url.replace("{host}", host), args.sha, args.health_timeout)
            print(f"{host}: serving {args.sha[:7]}", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

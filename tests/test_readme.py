"""The README, followed literally: ``scripts/up.sh`` in one process, the walkthrough's commands in
another, with a fresh HOME and only the variables the README exports.

Only what the README leaves to the reader is filled in: the host of step 3 is a test-bed host
(its address, pinned key and login user go into the YAML of step 4), and the deploy key the
README reads from ``~/.ssh/deploy_key`` is the test bed's. The first step, ``chatops users add
me | chatops login``, runs as written: every later command acts as the user "me" of that token.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.testbed.hosts import SshKey, TestHost
from tests.up_server import get, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def walkthrough() -> str:
    return README.split("## Walkthrough", 1)[1].split("\n## ", 1)[0]


def commands() -> list[str]:
    """Every ``$ …`` line of the walkthrough's console blocks, in order."""
    blocks = re.findall(r"```console\n(.*?)```", walkthrough(), flags=re.S)
    return [
        line.strip()[2:]
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("$ ")
    ]


def configuration(host: TestHost) -> str:
    """The YAML of step 4, pointed at the test-bed host."""
    [yaml_text] = re.findall(r"```yaml\n(.*?)```", walkthrough(), flags=re.S)
    yaml_text = "\n".join(line.removeprefix("   ") for line in yaml_text.splitlines())
    known = re.search(r'"web-1\.example\.net ssh-ed25519 [^"]+"', yaml_text).group(0)
    yaml_text = yaml_text.replace(known, f'"{host.known_hosts_line}"')
    yaml_text = yaml_text.replace("web-1.example.net", host.address)
    return yaml_text.replace("user: deploy", "user: root")


@pytest.mark.parametrize("deploy_hosts", [1], indirect=True)
def test_the_readme_walkthrough_deploys_rolls_back_locks_and_verifies(
    tmp_path: Path, deploy_hosts: list[TestHost], ssh_key: SshKey
) -> None:
    [host] = deploy_hosts
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "deploy_key").write_text(ssh_key.private_text)
    (home / "chatops.yaml").write_text(configuration(host))
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "USER": "me",
        "LOGNAME": "me",
    }
    up_log = tmp_path / "up.log"
    with open(up_log, "wb") as out:
        up = subprocess.Popen(
            [str(ROOT / "scripts" / "up.sh")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        assert wait_for(lambda: "chatops is up" in up_log.read_text(), 180), up_log.read_text()
        assert get("http://127.0.0.1:4200/api/health")[0] == 200
        steps = "\n".join(f"echo '### {c}'\n{c}" for c in commands())
        script = f"set -euo pipefail\n{steps}\n"
        done = subprocess.run(
            ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        answers: list[tuple[str, str]] = []
        for line in done.stdout.splitlines():
            if line.startswith("### "):
                answers.append((line[4:], ""))
            elif answers:
                answers[-1] = (answers[-1][0], answers[-1][1] + line + "\n")
        said = dict(answers)

        v1 = subprocess.run(
            ["git", "-C", str(home / "demo"), "rev-parse", "HEAD~1"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        login = ".venv/bin/chatops users add me | .venv/bin/chatops login"
        assert commands()[0] == login
        assert said[login] == "Logged in to http://127.0.0.1:8000 as me.\n"
        credentials = home / ".config" / "chatops" / "credentials.json"
        assert credentials.stat().st_mode & 0o777 == 0o600
        assert (
            "saved chatops-environment/demo-staging"
            in said[".venv/bin/chatops config apply ~/chatops.yaml"]
        )
        deploys = [out for cmd, out in answers if cmd == ".venv/bin/chatops deploy demo to staging"]
        assert len(deploys) == 2 and all("Completed" in out for out in deploys), deploys
        assert "✓ build" in deploys[0] and "✓ health check" in deploys[1]
        assert f"main at {v1[:12]}" in said[".venv/bin/chatops status"]
        dry = said[".venv/bin/chatops noop demo to staging"]
        assert "(nothing was changed). A deploy would go ahead." in dry
        assert f"{v1[:7]} → " in dry and ": 1 commits added, 0 removed" in dry
        assert "is rolling back" in said[".venv/bin/chatops rollback demo in staging"]
        status, body = host.http_get("/demo/health")
        assert status == 200 and v1 in body, "the rollback brought back the first commit"
        assert (
            "locked staging on demo: testing the release"
            in said[".venv/bin/chatops lock staging on demo: testing the release"]
        )
        assert "All 1 hosts run what was recorded" in said[".venv/bin/chatops status demo --verify"]
        assert "unlocked staging on demo" in said[".venv/bin/chatops unlock staging on demo"]
        froze = said[".venv/bin/chatops freeze staging: release week"]
        assert "me froze staging: release week" in froze
        assert "unfroze staging" in said[".venv/bin/chatops unfreeze staging"]
    finally:
        up.send_signal(signal.SIGINT)  # Ctrl-C, as in a terminal
        started = time.monotonic()
        try:
            up.wait(timeout=30)
        finally:
            if up.poll() is None:
                up.kill()
    took = time.monotonic() - started
    assert took < 15, f"scripts/up.sh took {took:.1f} s to stop on Ctrl-C"
    assert "Traceback" not in up_log.read_text()

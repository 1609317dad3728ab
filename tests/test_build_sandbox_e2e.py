"""A branch is untrusted code: its unit test, built by a deploy, finds nothing of the deploy
system's. A real ``chatops up`` started as a person starts it (with tokens and signing secrets
in its environment), the real CLI, two sshd hosts; the branch's JUnit test
(tests/testbed/probe/SandboxProbeTest.java) reports everything it can see.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import temporary_settings

from blocks import App
from tests.shop import save_shop
from tests.testbed.gitrepo import AppRepo, make_app_repo
from tests.testbed.hosts import SshKey, TestHost
from tests.up_server import ChatopsUp

pytestmark = pytest.mark.e2e

PROBE = Path(__file__).parent / "testbed" / "probe" / "SandboxProbeTest.java"
BRANCH = "feature/probe"
BUILD_USER = "chatops-build"
ALLOWED = {"PATH", "LANG", "HOME", "USER", "LOGNAME", "JAVA_HOME", "MAVEN_OPTS", "GIT_COMMIT"}
BUILD_ENV = ["PROBE_REPORT_DIR", "PROBE_API", "PROBE_CHATOPS_HOME"]
SET_BY_THE_BUILD = {"PWD", "OLDPWD", "SHLVL", "_", "MAVEN_CMD_LINE_ARGS", "MAVEN_PROJECTBASEDIR"}
"""Variables bash and mvn set for themselves."""
SECRETS = {
    "CHATOPS_GITHUB_TOKEN": "ghp_probe0github0token0must0not0leak",
    "CHATOPS_SLACK_BOT_TOKEN": "xoxb-probe-slack-bot-token-must-not-leak",
    "CHATOPS_SLACK_SIGNING_SECRET": "probe-slack-signing-secret-must-not-leak",
    "CHATOPS_GITHUB_WEBHOOK_SECRET": "probe-github-webhook-secret-must-not-leak",
    "FOO_TOKEN": "probe-foo-token-must-not-leak",
    "AWS_SECRET_ACCESS_KEY": "probe-aws-secret-must-not-leak",
    "SSH_AUTH_SOCK": "/tmp/ssh-probe-agent-must-not-leak/agent.1",
}
"""What ``chatops up``'s environment holds besides what it needs: none of it may reach a build."""


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's temporary directories are root's alone), so
    that only the deploy system's own modes keep the build out of what is below it."""
    parent = Path(tempfile.mkdtemp(prefix="chatops-sandbox-e2e-"))
    parent.chmod(0o711)
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def probe_branch(tmp_path: Path) -> AppRepo:
    """The example app with a feature branch whose unit test reports what it can see."""
    repo = make_app_repo(tmp_path / "repo")
    repo.git("checkout", "-q", "-b", BRANCH)
    shutil.copy(PROBE, repo.path / "src" / "test" / "java" / "demo" / PROBE.name)
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "A unit test that looks around")
    return repo


def deploy_the_branch(
    open_dir: Path, repo: AppRepo, hosts: list[TestHost], ssh_key: SshKey
) -> tuple[ChatopsUp, str]:
    """Start chatops up, configure the shop, deploy the probe branch; the CLI's output."""
    reports = open_dir / "reports"
    reports.mkdir(mode=0o777)
    reports.chmod(0o777)  # whatever the umask: the build user writes its report here
    home = open_dir / "home"
    up = ChatopsUp(home)
    up.extra_env.update(
        SECRETS,
        PROBE_REPORT_DIR=str(reports),
        PROBE_API=up.api,
        PROBE_CHATOPS_HOME=str(home),
        CHATOPS_BUILD_USER=BUILD_USER,
    )
    with up:
        with temporary_settings(up.prefect_settings()):
            save_shop(repo, hosts, ssh_key)
            app = App.load("shop")
            app.build_env = BUILD_ENV
            app.save("shop", overwrite=True)
        done = up.cli("deploy", f"shop@{BRANCH}", "to", "staging", user="alice")
    return up, done.stdout + done.stderr


def secrets_of(up: ChatopsUp, ssh_key: SshKey) -> dict[str, str]:
    """Every secret the deploy system holds: the environment's, its files', the CLI users'
    tokens, the SSH key."""
    found = {name: value for name, value in SECRETS.items()}
    for path in up.home.glob("secrets/*"):
        if path.is_file() and (text := path.read_text().strip()):
            found[str(path)] = text
    found.update({f"CLI token of {user}": token for user, token in up.tokens.items()})
    key_lines = ssh_key.private_text.splitlines()[1:-1]  # the base64 body, line by line
    found.update({f"ssh key line {i}": line for i, line in enumerate(key_lines)})
    return found


def test_a_branch_s_unit_test_finds_no_key_no_token_and_no_block_document(
    tmp_path: Path, open_dir: Path, deploy_hosts: list[TestHost], ssh_key: SshKey
) -> None:
    repo = probe_branch(tmp_path)
    up, said = deploy_the_branch(open_dir, repo, deploy_hosts, ssh_key)
    assert said.rstrip().endswith("Completed"), said + up.output()[-3000:]
    sha = repo.git("rev-parse", BRANCH)
    assert all(sha in h.http_get("/demo/health")[1] for h in deploy_hosts)

    report_file = open_dir / "reports" / "report.txt"
    assert report_file.is_file(), "the branch's unit test ran in the build and wrote its report"
    report = report_file.read_text(errors="replace")
    shutil.copy(report_file, tmp_path / "report.txt")  # kept by pytest for a look after a failure
    env = dict(re.findall(r"^ENV ([^=\n]+)=(.*)$", report, re.MULTILINE))
    read = re.findall(r"^READ (\S+)", report, re.MULTILINE)
    assert f"USER {BUILD_USER}" in report.splitlines()
    assert env["GIT_COMMIT"] == sha and env["USER"] == BUILD_USER, "the environment was dumped"
    unexpected = set(env) - ALLOWED - set(BUILD_ENV) - SET_BY_THE_BUILD
    assert not unexpected, f"the build saw {sorted(unexpected)}"
    assert any(f"/{BUILD_USER}/builds/" in path for path in read), "it read its own files"
    assert len(read) > 50, "it read what any user may read"
    assert re.search(rf"^DENIED {re.escape(str(up.home))} ", report, re.MULTILINE)
    assert re.search(r"^DENIED /root ", report, re.MULTILINE)
    assert "ENVIRON " in report and "DENIED /proc/1/environ" in report

    local = report[: report.find("\nPREFECT_")]  # what the machine itself showed the build
    assert "PRIVATE KEY" not in local
    leaked = [name for name, value in secrets_of(up, ssh_key).items() if value in local]
    assert leaked == [], f"the build saw {leaked}"

    # The Prefect API holds every environment's SSH key. What follows passes once the server
    # that `chatops up` starts requires API authentication.
    assert re.search(r"^PREFECT_STATUS 401$", report, re.MULTILINE), report[len(local) :][:500]
    assert '"block_type_id"' not in report and "PRIVATE KEY" not in report
    leaked = [name for name, value in secrets_of(up, ssh_key).items() if value in report]
    assert leaked == [], f"the Prefect API gave the build {leaked}"

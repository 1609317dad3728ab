"""The Prefect API is not open: ``chatops up`` starts its server with a credential that only the
deploy system (runner, gateway, CLI) holds, kept in a file only its user can read."""

import os
import stat
import urllib.error
from pathlib import Path

import pytest

from adapters.home import home
from adapters.sandbox import BuildUser
from chatops import cli
from chatops.cli.server import prefect_api_auth
from tests.test_config import EXAMPLE, SECRETS
from tests.up_server import ChatopsUp, post_json

LEAKED = "production-key-only-the-deploy-system-may-read"
BLOCKS = "/block_documents/filter"
WITH_SECRETS = {"include_secrets": True}


def refused(url: str, auth: str | None = None) -> tuple[int, str]:
    """The HTTP status and body of a request the API refuses."""
    with pytest.raises(urllib.error.HTTPError) as answer:
        post_json(url, WITH_SECRETS, auth)
    return answer.value.code, answer.value.read().decode()


@pytest.mark.e2e
def test_without_the_credential_the_api_answers_401_and_no_block(tmp_path: Path) -> None:
    state = tmp_path / "home"
    with ChatopsUp(state) as up:
        key = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{LEAKED}\n"
        applied = up.cli(
            "config", "apply", str(EXAMPLE), env={**SECRETS, "CHATOPS_SSH_KEY_PRODUCTION": key}
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr  # the CLI found the file
        assert "paste the contents of" in up.output() and "prefect-api-auth" in up.output()

        status, body = refused(f"{up.api}{BLOCKS}")
        assert status == 401 and LEAKED not in body
        status, body = refused(f"{up.api}{BLOCKS}", auth="admin:guess")
        assert status == 401 and LEAKED not in body
        answer = str(post_json(f"{up.api}{BLOCKS}", WITH_SECRETS, up.auth))
        assert LEAKED in answer, "with the credential the same request reads the block"

        secret = state / "secrets" / "prefect-api-auth"
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        credential = up.auth
        assert up.stop() == 0

    with ChatopsUp(state) as again:
        assert again.auth == credential, "a restart keeps the credential"
        assert LEAKED in str(post_json(f"{again.api}{BLOCKS}", WITH_SECRETS, credential))
        assert refused(f"{again.api}{BLOCKS}")[0] == 401


def test_config_apply_reads_the_credential_chatops_up_made(
    chatops_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_AUTH_STRING")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # restored afterwards
    assert prefect_api_auth() == ""
    made = home().secret("prefect-api-auth", create=True)
    cli.use_prefect_api("http://127.0.0.1:9/api")
    assert os.environ["PREFECT_API_AUTH_STRING"] == made


def test_a_credential_set_in_the_environment_wins(
    chatops_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home().secret("prefect-api-auth", create=True)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:external")
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # restored afterwards
    cli.use_prefect_api("http://127.0.0.1:9/api")
    assert os.environ["PREFECT_API_AUTH_STRING"] == "admin:external"


def test_a_build_never_sees_the_api_credential(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "x")
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "x")
    builder = BuildUser("chatops-build", 999, 999, Path("/var/lib/chatops-build"))
    seen = builder.environment("0" * 40, names=["PATH"])
    assert not any(name.startswith("PREFECT") for name in seen)

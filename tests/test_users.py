"""People are who they prove to be: each CLI user has a personal token, kept as a hash, revoked at
once; the gateway acts as the token's user whatever the request says, and the CLI needs no
credential but that token.

The gateway runs with its real lifespan against the test Prefect server (configuration, locks);
``chatops users`` and ``chatops login`` run as the real command in fresh processes.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from prefect import task
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect.states import Cancelled, Completed, Running
from starlette.testclient import TestClient

from blocks import App, Environment
from chatops.cli.server import write_up_file
from chatops.users import TOKEN_PREFIX, UserError, UserStore, digest
from flows.deploy import deploy
from model.summary import WAITING_LABEL
from tests.gateway_support import RecordingCreator, clear_locks, gateway, post_cli, save_config
from tests.up_server import free_port, get, wait_for

CHATOPS = Path(sys.executable).with_name("chatops")


@pytest.fixture(scope="module")
def configured(prefect_server: None) -> Iterator[None]:
    save_config()
    App(repository="acme/vault", environments=["production"]).save("vault", overwrite=True)
    Environment(
        hosts=["vault-1"],
        ssh_private_key="not-a-real-key",
        deploy_path="/srv/app",
        restart_command="true",
        cli_users=["alice"],
    ).save("vault-production", overwrite=True)
    yield
    App.delete("vault")
    Environment.delete("vault-production")


@pytest.fixture(autouse=True)
def no_locks(configured: None) -> Iterator[None]:
    clear_locks()
    yield
    clear_locks()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "chatops-home"


def chatops(*args: str, home: Path, config: Path | None = None, stdin: str = "", **env: str):
    """``chatops ARGS`` in a fresh process with no Prefect setting at all."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
    clean.update(CHATOPS_HOME=str(home), XDG_CONFIG_HOME=str(config or home / "config"), **env)
    return subprocess.run(
        [str(CHATOPS), *args], env=clean, input=stdin, capture_output=True, text=True, timeout=60
    )


# --------------------------------------------------------------------------- the store
def test_users_add_prints_the_token_alone_and_keeps_only_its_hash(home: Path) -> None:
    added = chatops("users", "add", "alice", home=home)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert added.stdout == token + "\n" and token.startswith(TOKEN_PREFIX)
    assert "shown only this once" in added.stderr and "chatops login" in added.stderr

    users = home / "users.json"
    kept = users.read_text()
    assert token not in kept and token.removeprefix(TOKEN_PREFIX) not in kept
    assert digest(token) in kept
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert UserStore(users).who(token) == "alice"
    assert UserStore(users).who(token + "x") is None and UserStore(users).who("") is None

    listed = chatops("users", "list", home=home)
    assert listed.stdout.startswith("alice") and "UTC" in listed.stdout
    again = chatops("users", "add", "alice", home=home)
    assert again.returncode == 2 and "alice has a token already" in again.stderr
    assert again.stdout == ""


@pytest.mark.parametrize("name", ["", "Alice", "a b", "../etc", "-rf", "x" * 33, "ali\nce"])
def test_a_user_name_must_be_short_and_plain(name: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot be a user name: use 1-32 characters"):
        UserStore(tmp_path / "users.json").add(name)
    assert not (tmp_path / "users.json").exists()


def test_removing_an_unknown_user_says_who_there_is(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("bob")
    with pytest.raises(UserError, match=r"no user 'alice' \(users: bob\)"):
        store.remove("alice")


def test_a_user_file_the_gateway_cannot_read_refuses_everyone(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    token = UserStore(path).add("alice")
    gateway_side = UserStore(path)
    assert gateway_side.who(token) == "alice"
    kept = path.read_text()
    path.write_text(kept.replace("{", "", 1))  # e.g. a hand edit gone wrong
    assert gateway_side.who(token) is None and gateway_side.known() == 0
    path.write_text(kept)
    assert gateway_side.who(token) == "alice"


# --------------------------------------------------------------------------- the gateway
@pytest.fixture
def people(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    store = UserStore(tmp_path / "users.json")
    return store.path, {name: store.add(name) for name in ("alice", "bob")}


@pytest.fixture
def starter() -> RecordingCreator:
    return RecordingCreator()


@pytest.fixture
def client(starter: RecordingCreator, people: tuple[Path, dict[str, str]]) -> Iterator[TestClient]:
    with gateway(starter, users=people[0]) as test_client:
        yield test_client


def test_claiming_another_name_in_the_body_changes_nothing(
    client: TestClient, starter: RecordingCreator, people: tuple[Path, dict[str, str]]
) -> None:
    _, tokens = people
    alice, bob = tokens["alice"], tokens["bob"]
    locked = post_cli(client, "lock staging on shop: mine", token=bob, claims="alice").json()
    assert "bob locked *staging* on *shop*" in locked["text"], locked
    refused = post_cli(client, "deploy shop to staging", token=alice, claims="bob").json()
    assert not refused["ok"] and "locked by bob" in refused["text"]
    assert starter.runs == []

    deployed = post_cli(client, "deploy shop to staging", token=bob, claims="alice").json()
    assert deployed["ok"] and deployed["text"].startswith("bob is deploying")
    [run] = starter.runs
    assert (run.parameters["requested_by"], run.parameters["via"]) == ("bob", "cli")

    kept = post_cli(client, "unlock staging on shop", token=alice, claims="bob").json()
    assert "is locked by bob (cli)" in kept["text"] and "unlock staging on shop!" in kept["text"]
    unlocked = post_cli(client, "unlock staging on shop", token=bob, claims="alice").json()
    assert "bob unlocked *staging* on *shop*" in unlocked["text"], unlocked


def test_cli_users_refuse_a_token_of_someone_else_whatever_the_body_says(
    client: TestClient, starter: RecordingCreator, people: tuple[Path, dict[str, str]]
) -> None:
    _, tokens = people
    refused = post_cli(client, "deploy vault to production", token=tokens["bob"], claims="alice")
    assert refused.status_code == 200 and not refused.json()["ok"]
    assert "Allowed: alice" in refused.json()["text"]
    assert starter.runs == []
    allowed = post_cli(client, "deploy vault to production", token=tokens["alice"], claims="bob")
    assert allowed.json()["ok"], allowed.json()
    [run] = starter.runs
    assert run.parameters["requested_by"] == "alice"


def test_no_or_an_unknown_token_gets_401_everywhere(
    client: TestClient, starter: RecordingCreator, people: tuple[Path, dict[str, str]]
) -> None:
    _, tokens = people
    for headers in (
        {},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {tokens['alice']}x"},
        {"Authorization": f"Bearer {digest(tokens['alice'])}"},  # what the store holds
    ):
        body = {"text": "deploy shop to staging", "user": "alice"}
        assert client.post("/cli/commands", json=body, headers=headers).status_code == 401
        assert client.get("/cli/whoami", headers=headers).status_code == 401
        assert client.get("/cli/requests/cli-x", headers=headers).status_code == 401
        assert client.get(f"/cli/runs/{uuid4()}", headers=headers).status_code == 401
    assert starter.runs == []
    whoami = client.get("/cli/whoami", headers={"Authorization": f"Bearer {tokens['alice']}"})
    assert whoami.json() == {"user": "alice"}


def test_users_remove_revokes_at_once_without_a_restart(
    home: Path, starter: RecordingCreator
) -> None:
    token = chatops("users", "add", "carol", home=home).stdout.strip()
    with gateway(starter, users=home / "users.json") as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/cli/whoami", headers=headers).json() == {"user": "carol"}
        removed = chatops("users", "remove", "carol", home=home)
        assert removed.returncode == 0 and "refuses their token from now on" in removed.stdout
        assert client.get("/cli/whoami", headers=headers).status_code == 401
        assert post_cli(client, "deploy shop to staging", token=token).status_code == 401
        newer = chatops("users", "add", "carol", home=home).stdout.strip()
        assert client.get("/cli/whoami", headers=headers).status_code == 401
        fresh = {"Authorization": f"Bearer {newer}"}
        assert client.get("/cli/whoami", headers=fresh).json() == {"user": "carol"}
    assert starter.runs == []


# --------------------------------------------------------------------------- following runs
def test_a_run_is_read_through_the_gateway_with_all_its_task_runs(
    client: TestClient, people: tuple[Path, dict[str, str]]
) -> None:
    """More task runs than fit in one read of Prefect's API (a page of 10 here, 200 in the
    product): the CLI sees every one of them."""
    headers = {"Authorization": f"Bearer {people[1]['alice']}"}

    @task
    def step() -> None:
        pass

    deployment_id = deploy.to_deployment(name="users-tests").apply()
    with get_client(sync_client=True) as prefect:
        run = prefect.create_flow_run_from_deployment(
            deployment_id,
            parameters={"app": "shop", "environment": "staging"},
            name="shop@v1 → staging",
        )
        for i in range(25):
            prefect.create_task_run(
                step, run.id, dynamic_key=str(i), name=f"step {i:03d}", state=Completed()
            )
        prefect.create_task_run(step, run.id, dynamic_key="pending", name="not finished")
        prefect.set_flow_run_state(run.id, Completed(), force=True)

    assert client.get(f"/cli/runs/{run.id}", headers=headers).status_code == 404, (
        "not a run of chatops' own deployments"
    )
    client.app.state.runs.deployments = ("deploy/users-tests",)
    client.app.state.runs.page = 10
    answer = client.get(f"/cli/runs/{run.id}", headers=headers).json()
    assert answer["name"] == "shop@v1 → staging" and answer["state"]["type"] == "COMPLETED"
    finished = [t["name"] for t in answer["task_runs"] if t["state_type"] == "COMPLETED"]
    assert finished == [f"step {i:03d}" for i in range(25)]
    # the unfinished one too, so a follow can wait for its end the server records late
    assert [t["name"] for t in answer["task_runs"] if t["state_type"] != "COMPLETED"] == [
        "not finished"
    ]
    assert client.get("/cli/runs/not-a-uuid", headers=headers).status_code == 404


def test_a_waiting_run_says_through_the_gateway_who_holds_its_slot(
    client: TestClient, people: tuple[Path, dict[str, str]]
) -> None:
    """The flow records the holder on its run (a label); the gateway hands it to the CLI while
    the run is unfinished, and never once it ended."""
    headers = {"Authorization": f"Bearer {people[1]['alice']}"}
    holder = {"run_id": "7c0ffee0", "title": "shop@slow → staging", "requested_by": "bob"}
    deployment_id = deploy.to_deployment(name="users-tests").apply()
    client.app.state.runs.deployments = ("deploy/users-tests",)
    with get_client(sync_client=True) as prefect:
        run = prefect.create_flow_run_from_deployment(
            deployment_id, parameters={"app": "shop", "environment": "staging"}
        )
        prefect.set_flow_run_state(run.id, Running(), force=True)
        assert client.get(f"/cli/runs/{run.id}", headers=headers).json()["waiting"] is None
        prefect.update_flow_run_labels(run.id, {WAITING_LABEL: json.dumps(holder)})
        assert client.get(f"/cli/runs/{run.id}", headers=headers).json()["waiting"] == holder
        prefect.update_flow_run_labels(run.id, {WAITING_LABEL: ""})  # it holds the slot now
        assert client.get(f"/cli/runs/{run.id}", headers=headers).json()["waiting"] is None
        prefect.update_flow_run_labels(run.id, {WAITING_LABEL: json.dumps(holder)})
        prefect.set_flow_run_state(run.id, Cancelled(), force=True)
        assert client.get(f"/cli/runs/{run.id}", headers=headers).json()["waiting"] is None


# --------------------------------------------------------------------------- login
@pytest.fixture
def served_gateway(home: Path, prefect_server: None) -> Iterator[str]:
    """``python -m chatops.gateway`` on a free port, recorded in ``up.json`` as ``chatops up``
    records it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
    env.update(
        PREFECT_API_URL=PREFECT_API_URL.value(),
        CHATOPS_HOME=str(home),
        CHATOPS_GATEWAY_PORT=str(port),
    )
    gateway_process = subprocess.Popen(
        [sys.executable, "-m", "chatops.gateway"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: get(f"{url}/healthz")[0] == 200, 60), "the gateway did not start"
        write_up_file(
            home / "up.json",
            pid=os.getpid(),
            api_url=PREFECT_API_URL.value(),
            ui_url="http://ui.invalid",
            gateway_url=url,
        )
        yield url
    finally:
        gateway_process.terminate()
        gateway_process.wait(timeout=15)


def test_login_checks_the_token_and_keeps_it_for_this_user_alone(
    home: Path, tmp_path: Path, served_gateway: str
) -> None:
    config = tmp_path / "config"
    nobody = chatops("where", "shop", home=home, config=config)
    assert nobody.returncode == 3 and nobody.stdout == ""
    assert nobody.stderr.count("\n") == 1 and "chatops login" in nobody.stderr

    wrong = chatops("login", home=home, config=config, stdin="chatops_not-a-token\n")
    assert wrong.returncode == 2 and "does not know this token" in wrong.stderr
    assert not (config / "chatops").exists()

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CHATOPS_"))}
    clean.update(CHATOPS_HOME=str(home), XDG_CONFIG_HOME=str(config))
    piped = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {CHATOPS} users add me | {CHATOPS} login"],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == f"Logged in to {served_gateway} as me.\n"
    stored = config / "chatops" / "credentials.json"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    kept = json.loads(stored.read_text())
    assert kept["gateway_url"] == served_gateway and kept["token"].startswith(TOKEN_PREFIX)

    assert chatops("whoami", home=home, config=config).stdout == f"me at {served_gateway}\n"
    where = chatops("where", "shop", home=home, config=config)
    assert where.returncode == 0 and "web-1, web-2" in where.stdout, where.stderr
    scripted = chatops("whoami", home=home, config=tmp_path / "empty", CHATOPS_TOKEN=kept["token"])
    assert scripted.stdout == f"me at {served_gateway}\n"

    chatops("users", "remove", "me", home=home)
    revoked = chatops("whoami", home=home, config=config)
    assert revoked.returncode == 3 and "refused your token" in revoked.stderr

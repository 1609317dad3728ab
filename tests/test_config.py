"""``chatops config apply``: the YAML file becomes Prefect blocks; mistakes are named precisely."""

from pathlib import Path

import paramiko
import pytest
import yaml
from prefect.blocks.system import Secret
from prefect.client.orchestration import get_client

from blocks import App, Environment, GitHubAccess, documents
from chatops import cli, config

EXAMPLE = Path(__file__).parents[1] / "examples" / "chatops.yaml"
SECRETS = {
    "CHATOPS_GITHUB_TOKEN": "ghp_example-token",
    "CHATOPS_SLACK_BOT_TOKEN": "xoxb-example",
    "CHATOPS_SSH_KEY_STAGING": "-----BEGIN OPENSSH PRIVATE KEY-----\nstaging\n",
    "CHATOPS_SSH_KEY_PRODUCTION": "-----BEGIN OPENSSH PRIVATE KEY-----\nproduction\n",
    "CHATOPS_DEPLOY_HOOK_SECRET": "hook-signing-key",
    "CHATOPS_DEPLOY_MAIL_URL": "mailtos://user:mail-password@smtp.example.net?to=ops@example.net",
}

KEYS = {name: paramiko.ECDSAKey.generate() for name in ("web-1.example.net", "web-2.example.net")}
"""Host keys of production hosts, as accept-new would have learned them."""


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "chatops.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_file_describes_every_block() -> None:
    blocks = config.build_blocks(EXAMPLE, config.load(EXAMPLE), SECRETS)
    assert sorted(blocks) == [
        "chatops-app/shop",
        "chatops-environment/shop-production",
        "chatops-environment/shop-staging",
        "chatops-github/default",
        "chatops-slack/default",
        "secret/shop-production-notification-1",
        "secret/shop-production-notification-2",
    ]
    staging = blocks["chatops-environment/shop-staging"]
    assert staging.hosts == ["stg-web-1.example.net", "stg-web-2.example.net"]
    assert staging.ssh_private_key.get_secret_value() == SECRETS["CHATOPS_SSH_KEY_STAGING"]
    assert len(staging.known_hosts) == 2
    app = blocks["chatops-app/shop"]
    assert app.environments == ["staging", "production"]
    assert app.tasks == {"migrate": "./bin/migrate.sh"}
    assert blocks["chatops-environment/shop-production"].required_contexts == [
        "ci/build",
        "ci/test",
    ]
    production = blocks["chatops-environment/shop-production"]
    assert production.confirm and not staging.confirm
    hook, mail = production.notifications
    assert hook.webhook == "https://hooks.example.net/chatops"
    assert hook.webhook_secret == "shop-production-notification-1"
    assert mail.apprise_secret == "shop-production-notification-2"
    assert mail.events == ["failed", "rolled_back"]
    secrets = [blocks[f"secret/shop-production-notification-{n}"].get() for n in (1, 2)]
    assert secrets == ["hook-signing-key", SECRETS["CHATOPS_DEPLOY_MAIL_URL"]]


def test_secrets_are_not_in_the_file() -> None:
    text = EXAMPLE.read_text()
    assert all(value.strip() not in text for value in SECRETS.values())


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["apps"]["shop"].update(colour="red"), "apps.shop.colour: Extra inputs"),
        (
            lambda d: d["apps"]["shop"]["environments"]["staging"].pop("hosts"),
            "apps.shop.environments.staging.hosts: Field required",
        ),
        (lambda d: d["apps"].update({"Shop!": d["apps"]["shop"]}), "apps.Shop!"),
        (
            lambda d: d["apps"]["shop"]["environments"]["staging"].update(hosts=["web;rm -rf /"]),
            "apps.shop.environments.staging.hosts.0",
        ),
        (
            lambda d: d["apps"]["shop"]["environments"]["staging"].update(deploy_path="srv/$(x)"),
            "apps.shop.environments.staging.deploy_path",
        ),
        (
            lambda d: d["apps"]["shop"]["environments"]["staging"]["ssh"].update(
                known_hosts=["not a key"]
            ),
            "known_hosts.0",
        ),
        (
            lambda d: d["apps"]["shop"].update(default_environment="qa"),
            "apps.shop.default_environment: 'qa' is not one of its environments",
        ),
        (
            lambda d: d["apps"]["shop"]["environments"]["staging"].update(
                health_url="http://{host}:8080/{path}"
            ),
            "only the {host} placeholder",
        ),
        (lambda d: d["apps"]["shop"]["environments"]["staging"].update(batch_size=0), "batch_size"),
        (lambda d: d.update(apps={}), "apps: "),
        (
            lambda d: d["apps"]["shop"]["environments"]["production"]["notifications"].append(
                {"webhook": "https://hooks.example.net/x"}
            ),
            "production.notifications.2: Value error, a webhook needs secret_env",
        ),
        (
            lambda d: d["apps"]["shop"]["environments"]["production"]["notifications"].append(
                {"events": ["failed"]}
            ),
            "notifications.2: Value error, give either webhook (with secret_env) or apprise_env",
        ),
        (
            lambda d: d["apps"]["shop"]["environments"]["production"]["notifications"][0].update(
                events=["deployed"]
            ),
            "notifications.0.events.0: Input should be 'started', 'succeeded', 'failed'",
        ),
    ],
)
def test_invalid_config_names_file_and_key(tmp_path: Path, mutate, expected: str) -> None:
    data = example()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(config.ConfigError) as caught:
        config.build_blocks(path, config.load(path), SECRETS)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    env = dict(SECRETS)
    del env["CHATOPS_SSH_KEY_PRODUCTION"]
    with pytest.raises(
        config.ConfigError,
        match=r"apps\.shop\.environments\.production\.ssh\."
        r"private_key_env: environment variable CHATOPS_SSH_KEY_PRODUCTION",
    ):
        config.build_blocks(EXAMPLE, config.load(EXAMPLE), env)


@pytest.mark.parametrize("text", ["apps: [1, 2", "{{{", "- just\n- a list\n", ""])
def test_unreadable_yaml_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "chatops.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=str(path)):
        config.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(tmp_path / "nope.yaml")


@pytest.fixture
def api(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The test Prefect server, named the way a user names one for the CLI."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", PREFECT_API_URL.value())
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def test_apply_saves_blocks_and_updates_them(api: None, tmp_path: Path) -> None:
    assert cli.main(["config", "apply", str(EXAMPLE)]) == 0
    assert App.load("shop").repository == "acme/shop"
    assert Environment.load("shop-staging").batch_size == 1
    assert GitHubAccess.load("default").token.get_secret_value() == "ghp_example-token"
    hook, mail = Environment.load("shop-production").notifications
    assert Secret.load(hook.webhook_secret).get() == "hook-signing-key"
    assert Secret.load(mail.apprise_secret).get() == SECRETS["CHATOPS_DEPLOY_MAIL_URL"]
    with get_client(sync_client=True) as client:  # as the gateway and the Prefect UI read it
        shown = client.read_block_document_by_name(
            "shop-production", "chatops-environment", include_secrets=False
        )
    assert "hook-signing-key" not in str(shown.data)
    assert "mail-password" not in str(shown.data)

    data = example()
    data["apps"]["shop"]["environments"]["staging"]["batch_size"] = 2
    assert cli.main(["config", "apply", str(write(tmp_path, data))]) == 0
    assert Environment.load("shop-staging").batch_size == 2


def test_a_block_s_schema_is_made_once_and_each_caller_gets_its_own_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.blocks.core import Block

    from blocks.schema import SchemaOnce

    made: list[type] = []
    make = Block.model_json_schema.__func__

    def counted(cls: type, *args: object, **kwargs: object) -> dict:
        made.append(cls)
        return make(cls, *args, **kwargs)

    monkeypatch.setattr(Block, "model_json_schema", classmethod(counted))
    monkeypatch.setattr(SchemaOnce, "_schemas", {})
    first = Environment.model_json_schema()
    first["properties"].clear()  # as a caller may change what it gets
    again = Environment.model_json_schema()
    assert again == make(Environment) and "hosts" in again["properties"]
    assert Environment.model_json_schema(by_alias=False) == make(Environment, by_alias=False)
    assert made.count(Environment) == 2  # one per argument set


def test_invalid_file_saves_nothing(api: None, tmp_path: Path, capsys) -> None:
    data = example()
    data["apps"]["cart"] = dict(data["apps"]["shop"], repository="acme/cart")
    data["apps"]["cart"]["environments"]["staging"]["ssh"]["private_key_env"] = "UNSET_VAR"
    assert cli.main(["config", "apply", str(write(tmp_path, data))]) == 2
    assert "UNSET_VAR is not set" in capsys.readouterr().err
    with pytest.raises(ValueError):
        App.load("cart")


def test_the_file_is_the_source_of_truth_removed_entries_are_listed_or_pruned(
    api: None, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "PAGE_SIZE", 2)  # saved blocks are read past one page
    assert cli.main(["config", "apply", str(EXAMPLE)]) == 0
    data = example()
    del data["apps"]["shop"]["environments"]["production"]
    smaller = write(tmp_path, data)
    capsys.readouterr()
    assert cli.main(["config", "apply", str(smaller)]) == 0
    out = capsys.readouterr().out
    assert "not in the file, kept (chatops config apply --prune removes them)" in out
    assert "chatops-environment/shop-production" in out
    assert Environment.load("shop-production").batch_size == 2, "listed, not removed"
    assert cli.main(["config", "apply", "--prune", str(smaller)]) == 0
    assert (
        "removed chatops-environment/shop-production (not in the file)" in capsys.readouterr().out
    )
    with pytest.raises(ValueError):
        Environment.load("shop-production")


def test_apply_keeps_learned_host_keys_unless_the_file_pins_the_host_or_says_strict(
    api: None, tmp_path: Path, capsys
) -> None:
    data = example()
    production = data["apps"]["shop"]["environments"]["production"]
    assert production["ssh"]["host_key_policy"] == "accept-new"
    assert cli.main(["config", "apply", str(EXAMPLE)]) == 0
    learned = {name: f"{name} {key.get_name()} {key.get_base64()}" for name, key in KEYS.items()}
    saved = Environment.load("shop-production")
    assert saved.known_hosts == []
    saved.known_hosts = [learned["web-1.example.net"], learned["web-2.example.net"]]
    saved.save("shop-production", overwrite=True)  # as two deploys' first connections do

    rebuilt = paramiko.ECDSAKey.generate()
    pinned = f"web-1.example.net {rebuilt.get_name()} {rebuilt.get_base64()}"
    production["ssh"]["known_hosts"] = [pinned]
    production["batch_size"] = 3
    capsys.readouterr()
    assert cli.main(["config", "apply", str(write(tmp_path, data))]) == 0
    assert "kept 1 learned host key(s) in shop-production" in capsys.readouterr().out
    after = Environment.load("shop-production")
    assert after.known_hosts == [pinned, learned["web-2.example.net"]], "the file's pin wins"
    assert after.batch_size == 3

    production["ssh"]["host_key_policy"] = "strict"
    assert cli.main(["config", "apply", str(write(tmp_path, data))]) == 0
    assert Environment.load("shop-production").known_hosts == [pinned]


def test_without_a_server_it_says_how_to_start_one_and_saves_nothing(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("CHATOPS_HOME", str(tmp_path / "home"))
    assert cli.main(["config", "apply", str(EXAMPLE)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "chatops is not running" in err and "scripts/up.sh" in err

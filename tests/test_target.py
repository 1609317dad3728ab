"""Requests meet configuration: unknown apps, environments, hosts and tasks are named clearly."""

import pytest
from pydantic import SecretStr

from blocks import App, Environment, documents
from flows.target import UnknownTarget, known_apps, load_target


@pytest.fixture(scope="module")
def configured(prefect_server: None) -> None:
    """The blocks every test here reads (none changes them), saved once."""
    App(
        repository="acme/cart",
        environments=["staging", "production"],
        tasks={"migrate": "bin/migrate"},
    ).save("cart", overwrite=True)
    App(repository="acme/cart-admin").save("cart-admin", overwrite=True)
    for name, hosts in (("staging", ["s1"]), ("production", ["p1", "p2:2222", "p3"])):
        Environment(
            hosts=hosts,
            ssh_private_key=SecretStr("k"),
            deploy_path="/srv/cart",
            restart_command="true",
        ).save(f"cart-{name}", overwrite=True)


def test_resolves_defaults_hosts_and_tasks(configured: None) -> None:
    target = load_target("cart", "production", hosts=["p3", "p2:2222"], task="migrate")
    assert target.ref == "main"
    assert target.hosts == ["p2:2222", "p3"], "the environment's order is kept"
    assert target.task_command == "bin/migrate"
    assert load_target("cart", "staging", ref="v9").ref == "v9"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cartt", "staging"), r"unknown app 'cartt' \(did you mean 'cart'\?\). Known: .*cart"),
        (("cart", "qa"), r"cart has no environment 'qa'. Known: staging, production."),
        (("cart", "stagin"), r"no environment 'stagin' \(did you mean 'staging'\?\)"),
        (("cart", "production", ["p9"]), "has no host p9. Its hosts: p1, p2:2222, p3"),
        (("cart", "staging", None, "seed"), r"no deploy task 'seed'. Known: deploy, migrate"),
    ],
)
def test_unknown_parts_are_named(configured: None, args: tuple, message: str) -> None:
    with pytest.raises(UnknownTarget, match=message):
        load_target(*args)


def test_every_saved_app_is_named_page_by_page(
    configured: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "PAGE_SIZE", 1)
    assert {"cart", "cart-admin"} <= set(known_apps())

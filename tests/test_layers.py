"""The code's structure holds: layers run one way, each folder holds one kind of thing, the gateway
loads no SSH code, the CLI loads no Prefect for chat commands, and every docstring example in the
product runs."""

import doctest
import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGES = ["model", "blocks", "render", "adapters", "tasks", "flows", "chatops"]
NEVER_IN_THE_GATEWAY = {"fabric", "paramiko", "invoke", "prefect_shell", "flows"}


def modules() -> list[str]:
    found = []
    for package in PACKAGES:
        path = ROOT / package
        found += [m.name for m in pkgutil.walk_packages([str(path)], prefix=f"{package}.")]
    return sorted(name for name in found if not name.endswith("__main__"))


def test_the_import_contracts_hold() -> None:
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize("name", [m for m in modules() if m.startswith("tasks.")])
def test_every_module_in_tasks_defines_a_prefect_task(name: str) -> None:
    from prefect.tasks import Task

    module = importlib.import_module(name)
    defined = [
        value
        for value in vars(module).values()
        if isinstance(value, Task) and value.fn.__module__ == name
    ]
    assert defined, f"{name} defines no Prefect task: it belongs in adapters/, model/ or render/"


def test_a_running_gateway_has_loaded_no_ssh_code_and_no_flows(
    prefect_server: None, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    script = textwrap.dedent(
        """
        import sys, pathlib
        from starlette.testclient import TestClient
        from chatops.gateway import create_app
        from chatops.settings import GatewaySettings
        from chatops.users import UserStore
        scratch = pathlib.Path(sys.argv[1])
        token = UserStore(scratch / "users.json").add("u")
        app = create_app(
            GatewaySettings(), intake_path=scratch / "intake.db", users_path=scratch / "users.json"
        )
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for text in ("where shop", "deploy shop to staging", "status", "help"):
                # wait: answer as soon as the request is stored, not when its run starts
                body = {"text": text, "wait": 0.1}
                answer = client.post("/cli/commands", json=body, headers=headers)
                assert answer.status_code == 200, answer.text
        print(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
        """
    )
    env = {
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_API_AUTH_STRING": os.environ["PREFECT_API_AUTH_STRING"],
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(result.stdout.split())
    assert "prefect" in loaded and "starlette" in loaded, "the script did run the gateway"
    assert loaded & NEVER_IN_THE_GATEWAY == set()


@pytest.mark.parametrize("argv", [["--help"], ["deploy", "--help"], ["status"]])
def test_the_cli_loads_no_prefect_for_help_and_chat_commands(argv: list[str], tmp_path) -> None:
    script = (
        "import sys\nfrom chatops.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\nprint('LOADED', ' '.join(sorted(sys.modules)))"
    )
    env = {"CHATOPS_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    loaded = result.stdout.split("LOADED", 1)[1].split()
    assert not [m for m in loaded if m.split(".")[0] in ("prefect", "pydantic", "httpx")]


@pytest.mark.parametrize("name", modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0

"""The ``chatops`` command: the chat language in a terminal, and running the system.

::

    chatops up                              start everything on this machine
    chatops config apply chatops.yaml       write the apps and environments to Prefect
    chatops deploy shop@feature-x to staging    (and every other chat command:)
    chatops rollback shop in staging        chatops lock staging on shop: freeze
    chatops status [shop [--verify]]        chatops where shop   chatops help

Chat commands go to the gateway that ``chatops up`` runs (found through
``$CHATOPS_HOME/up.json``, :mod:`.server`), which answers them exactly as it answers Slack; the
answer is printed for a terminal. ``deploy`` and ``rollback`` then follow the run task by task
(:mod:`.follow`) and exit 1 if it fails; a refused request exits 2 and starts nothing. The
terminal acts as the local user (``cli_users`` of an environment can limit who may deploy).

Only the standard library is loaded for chat commands and ``--help``: Prefect loads for
``up``, ``config`` and ``gateway`` alone.
"""

import argparse
import getpass
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence

from chatops.cli.follow import PrefectApi, Unreachable, follow
from chatops.cli.server import NoServer, Server, find_server, prefect_api_auth
from chatops.cli.terminal import render

CHAT_VERBS = {
    "deploy": "deploy APP[@REF] [to ENV[/HOSTS]] and follow it, e.g. shop@v1 to staging",
    "rollback": "rollback APP in ENV [to REF] and follow it",
    "lock": "lock ENV on APP[: MESSAGE]",
    "unlock": "unlock ENV on APP, or: unlock all [on APP]",
    "check": "check ENV on APP: may you deploy there now?",
    "status": "what is deployed where; --verify reads every host",
    "where": "where APP: its environments and hosts",
    "latest": "latest APP [on ENV]",
    "deploys": "deploys APP[@REF] [in ENV]: recent runs",
    "help": "the whole command language",
}
FOLLOWED = ("deploy", "rollback")
QUEUED_SECONDS = 600.0
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class GatewayError(Exception):
    """The gateway could not be reached or refused the CLI (wrong token)."""


def ask_gateway(
    server: Server, method: str, path: str, body: dict | None = None
) -> tuple[int, dict]:
    """One call to the gateway's CLI endpoints: (HTTP status, JSON answer)."""
    request = urllib.request.Request(
        f"{server.gateway_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"},
    )
    try:
        with _opener.open(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise GatewayError(
                f"the gateway at {server.gateway_url} refused the CLI token"
            ) from None
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, ValueError) as exc:
        raise GatewayError(f"the gateway at {server.gateway_url} did not answer ({exc})") from None


def chat(args: argparse.Namespace) -> int:
    """A chat command: ask the gateway, print its answer, follow the run it started."""
    words = [args.verb, *args.words] if args.verb != "help" else ["help"]
    if getattr(args, "verify", False):
        words.append("verify")
    server = find_server()
    key = uuid.uuid4().hex
    body = {"text": " ".join(words), "user": getpass.getuser(), "key": key}
    status, answer = ask_gateway(server, "POST", "/cli/commands", body)
    if status != 200:
        print(
            render(answer.get("text") or answer.get("error") or f"HTTP {status}"), file=sys.stderr
        )
        return 2
    print(render(answer["text"], bold=sys.stdout.isatty()), flush=True)
    if not answer.get("ok", True):
        return 2
    ticket = answer.get("ticket")
    if args.verb not in FOLLOWED or not ticket or args.detach:
        return 0
    api = PrefectApi(server.api_url)
    run_id = ticket.get("run_id") or wait_started(server, api, f"cli-{key}")
    if run_id is None:
        return 1
    outcome = follow(api, run_id)
    message = f": {outcome.message}" if outcome.message and not outcome.completed else ""
    print(f"{outcome.name}: {outcome.state_name}{message}")
    return 0 if outcome.completed else 1


def wait_started(server: Server, api: PrefectApi, key: str) -> str | None:
    """Wait until the queued request ``key`` has a run (asking Prefect, so any gateway behind a
    load balancer may have started it); None if it can never start or takes too long."""
    deadline = time.monotonic() + QUEUED_SECONDS
    while time.monotonic() < deadline:
        runs = api.call(
            "POST",
            "/flow_runs/filter",
            {"flow_runs": {"idempotency_key": {"any_": [key]}}, "limit": 1},
        )
        if runs:
            print(f"  started: {server.ui_url}/runs/flow-run/{runs[0]['id']}", flush=True)
            return runs[0]["id"]
        status, ticket = ask_gateway(server, "GET", f"/cli/requests/{key}")
        if status == 200 and ticket.get("state") == "failed":
            print(f"chatops: the request cannot start: {ticket.get('error')}", file=sys.stderr)
            return None
        time.sleep(0.5)
    print(
        f"chatops: still queued after {QUEUED_SECONDS:.0f} s; it starts when Prefect takes it "
        "(see `chatops deploys`)",
        file=sys.stderr,
    )
    return None


def cmd_config_apply(args: argparse.Namespace) -> int:
    use_server(find_server(gateway=False))
    from chatops import config  # Prefect loads here, pointed at the server found above

    try:
        result = config.apply(args.file, prune=args.prune)
    except config.ConfigError as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 2
    print(result.describe())
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from chatops import up

    try:
        return up.run(args.host, args.port, args.database)
    except up.StartupError as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 1


def cmd_gateway(args: argparse.Namespace) -> int:
    from chatops import gateway

    gateway.main()
    return 0


def use_server(server: Server) -> None:
    """Point Prefect (loaded after this) at ``server``, with the API's credential; never at a
    throwaway one."""
    os.environ["PREFECT_API_URL"] = server.api_url
    if auth := prefect_api_auth():
        os.environ["PREFECT_API_AUTH_STRING"] = auth
    os.environ.setdefault("DO_NOT_TRACK", "1")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="chatops",
        description="Deploy from chat, or from here: the same commands as /deploy in Slack.",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("up", help="start the Prefect server, the runner and the gateway here")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4200, help="Prefect server port")
    p.add_argument("--database", help="postgresql://… for the Prefect server (default: SQLite)")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("config", help="manage configuration")
    apply = p.add_subparsers(dest="config_command", required=True).add_parser(
        "apply", help="create or update the blocks a chatops.yaml describes"
    )
    apply.add_argument("file")
    apply.add_argument(
        "--prune", action="store_true", help="remove apps and environments that are not in the file"
    )
    apply.set_defaults(func=cmd_config_apply)
    p = sub.add_parser("gateway", help="serve the Slack, GitHub and CLI endpoints")
    p.set_defaults(func=cmd_gateway)
    for verb, text in CHAT_VERBS.items():
        p = sub.add_parser(verb, help=text, description=text)
        p.add_argument("words", nargs="*", help="the rest of the chat command")
        if verb in FOLLOWED:
            p.add_argument("--detach", action="store_true", help="print the run link and exit")
        if verb == "status":
            p.add_argument("--verify", action="store_true", help="read every host over SSH")
        p.set_defaults(func=chat, verb=verb, detach=False)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (NoServer, GatewayError, Unreachable) as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

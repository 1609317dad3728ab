"""The ``chatops`` command: the chat language in a terminal, and running the system.

::

    chatops up                              start everything on this machine
    chatops users add NAME | chatops login  a personal token (users list, users remove NAME)
    chatops config apply chatops.yaml       write the apps and environments to Prefect
    chatops deploy shop@feature-x to staging    (and every other chat command:)
    chatops rollback shop in staging        chatops lock staging on shop: QA testing
    chatops freeze production: release week chatops unfreeze production
    chatops noop shop@feature-x to staging  a dry run: what a deploy would find and change
    chatops status [shop [--verify]]        chatops where shop   chatops help
    chatops follow RUN_ID                   follow a run again (after --detach, or giving up)

Chat commands go to the gateway (found as :mod:`.server` says), which answers them exactly as
it answers Slack; the answer is printed for a terminal. ``deploy`` and ``rollback`` then follow
the run task by task through the gateway (:mod:`.follow`) and exit 1 if it fails; a refused
request exits 2 and starts nothing; no answer from the gateway (or Prefect behind it) for the
follow's bound (``--give-up-after``, default 120 s) exits 4: the run may still be going.
A deploy to an environment with ``confirm`` prints what it would change and asks
``Deploy? [y/N]`` (``--yes`` does not ask; without a terminal and without ``--yes`` the gateway
refuses and nothing starts).
The gateway knows who asks by the personal token alone
(``chatops login``, or ``CHATOPS_TOKEN``); ``cli_users`` of an environment can limit who may
deploy there.

Only the standard library is loaded for chat commands, ``users``, ``login`` and ``--help``:
Prefect loads for ``up``, ``config`` and ``gateway`` alone.
"""

import argparse
import getpass
import os
import sys
import time
import uuid
from collections.abc import Sequence

from adapters.home import home
from chatops.cli.follow import GatewayRuns, Unreachable, follow, give_up_seconds
from chatops.cli.server import (
    Gateway,
    GatewayError,
    NoServer,
    TokenRefused,
    find_gateway,
    find_prefect_api,
    gateway_url,
    prefect_api_auth,
    store_credentials,
)
from chatops.users import UserError, UserStore
from render.text import mrkdwn_to_text

CHAT_VERBS = {
    "deploy": "deploy APP[@REF] [to ENV[/HOSTS]] and follow it, e.g. shop@v1 to staging",
    "rollback": "rollback APP in ENV [to REF] and follow it",
    "abort": "abort APP in ENV: stop the deploy running there; switched hosts go back",
    "lock": "lock ENV on APP[: MESSAGE]",
    "unlock": "unlock ENV on APP, or: unlock all [on APP]",
    "check": "check ENV on APP: may you deploy there now?",
    "noop": "noop APP[@REF] [to ENV]: a dry run, the checks and what would change",
    "freeze": "freeze ENV[: MESSAGE]: no app deploys there (rollbacks still run)",
    "unfreeze": "unfreeze ENV",
    "status": "what is deployed where; --verify reads every host",
    "where": "where APP: its environments and hosts",
    "latest": "latest APP [on ENV]",
    "deploys": "deploys APP[@REF] [in ENV]: recent runs",
    "help": "the whole command language",
}
FOLLOWED = ("deploy", "rollback")
QUEUED_SECONDS = 600.0
GAVE_UP = 4
"""The exit code when the CLI stopped following a run it got no answer about."""


def chat(args: argparse.Namespace) -> int:
    """A chat command: ask the gateway, print its answer, follow the run it started."""
    words = [args.verb, *args.words] if args.verb != "help" else ["help"]
    if getattr(args, "verify", False):
        words.append("verify")
    gateway = find_gateway()
    key = uuid.uuid4().hex
    tty = sys.stdin.isatty()
    body = {"text": " ".join(words), "key": key, "yes": args.yes, "ask": tty}
    status, answer = gateway.ask("POST", "/cli/commands", body)
    if status == 200 and answer.get("confirm"):  # an environment that asks first
        print(mrkdwn_to_text(answer["text"], bold=sys.stdout.isatty()), flush=True)
        if not confirmed():
            print("Not deployed: nothing was started.")
            return 2
        status, answer = gateway.ask("POST", "/cli/commands", {**body, "yes": True})
    if status != 200:
        print(
            mrkdwn_to_text(answer.get("text") or answer.get("error") or f"HTTP {status}"),
            file=sys.stderr,
        )
        return 2
    print(mrkdwn_to_text(answer["text"], bold=sys.stdout.isatty()), flush=True)
    if not answer.get("ok", True):
        return 2
    ticket = answer.get("ticket")
    if args.verb not in FOLLOWED or not ticket or args.detach:
        return 0
    run_id = ticket.get("run_id") or wait_started(gateway, f"cli-{key}")
    if run_id is None:
        return 1
    return follow_to_the_end(gateway, run_id, args.give_up_after, ticket.get("run_url"))


def confirmed() -> bool:
    """Ask y/N on the terminal; anything but y or yes (or end of input) is no."""
    try:
        said = input("Deploy? [y/N] ")
    except EOFError:
        return False
    return said.strip().lower() in ("y", "yes")


def follow_to_the_end(
    gateway: Gateway, run_id: str, give_up_after: float | None, run_url: str | None = None
) -> int:
    """Follow ``run_id``, print how it ended; 0 if it completed, 1 if not."""
    outcome = follow(
        GatewayRuns(gateway), run_id, give_up_after=give_up_seconds(give_up_after), run_url=run_url
    )
    message = f": {outcome.message}" if outcome.message and not outcome.completed else ""
    print(f"{outcome.name}: {outcome.state_name}{message}")
    return 0 if outcome.completed else 1


def cmd_follow(args: argparse.Namespace) -> int:
    """``follow RUN``: follow a run already started (its id, or its link in the UI)."""
    run_id = args.run.rstrip("/").rsplit("/", 1)[-1]
    return follow_to_the_end(find_gateway(), run_id, args.give_up_after)


def wait_started(gateway: Gateway, key: str) -> str | None:
    """Wait until the queued request ``key`` has a run (the gateway asks Prefect too, so any
    gateway behind a load balancer may have started it); None if it can never start or takes
    too long."""
    deadline = time.monotonic() + QUEUED_SECONDS
    while time.monotonic() < deadline:
        status, ticket = gateway.ask("GET", f"/cli/requests/{key}")
        if status == 200 and ticket.get("run_id"):
            print(f"  started: {ticket.get('run_url') or ticket['run_id']}", flush=True)
            return ticket["run_id"]
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


def cmd_users(args: argparse.Namespace) -> int:
    """``users add|remove|list``: run by whoever runs chatops, on its ``$CHATOPS_HOME``."""
    store = UserStore(home().ensure().users)
    try:
        if args.users_command == "add":
            token = store.add(args.name)
            print(token, flush=True)
            print(
                f"chatops: made a token for {args.name}, shown only this once (only its hash is "
                f"kept, in {store.path}); `chatops login` reads it.",
                file=sys.stderr,
            )
        elif args.users_command == "remove":
            store.remove(args.name)
            print(f"Removed {args.name}: the gateway refuses their token from now on.")
        else:
            for user in store.users():
                print(f"{user.name:<32} since {user.created}")
            if not store.users():
                print("chatops: no CLI users yet (chatops users add NAME)", file=sys.stderr)
    except UserError as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_login(args: argparse.Namespace) -> int:
    """Read a token, check it with the gateway, keep it for this user's later commands."""
    url = (args.gateway or "").rstrip("/") or login_gateway_url()
    tty = sys.stdin.isatty()
    token = (getpass.getpass(f"Token for {url}: ") if tty else sys.stdin.readline()).strip()
    if not token:
        print("chatops: no token given (`chatops users add NAME` makes one)", file=sys.stderr)
        return 2
    try:
        status, answer = Gateway(url, token).ask("GET", "/cli/whoami")
    except TokenRefused:
        print(f"chatops: the gateway at {url} does not know this token", file=sys.stderr)
        return 2
    if status != 200:
        raise GatewayError(f"the gateway at {url} answered HTTP {status} to /cli/whoami")
    store_credentials(url, token)
    print(f"Logged in to {url} as {answer['user']}.")
    return 0


def login_gateway_url() -> str:
    """Where ``login`` checks a token: ``CHATOPS_GATEWAY_URL``, else the gateway running here
    (where ``users add`` made it), else the one logged in to before."""
    if os.environ.get("CHATOPS_GATEWAY_URL"):
        return gateway_url()
    try:
        return gateway_url({})
    except NoServer:
        return gateway_url()


def cmd_whoami(args: argparse.Namespace) -> int:
    gateway = find_gateway()
    status, answer = gateway.ask("GET", "/cli/whoami")
    if status != 200:
        raise GatewayError(f"the gateway at {gateway.url} answered HTTP {status}")
    print(f"{answer['user']} at {gateway.url}")
    return 0


def cmd_config_apply(args: argparse.Namespace) -> int:
    use_prefect_api(find_prefect_api())
    from chatops import config  # Prefect loads here, pointed at the server found above

    try:
        result = config.apply(args.file, prune=args.prune)
    except config.ConfigError as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 2
    print(result.describe())
    return 0


def cmd_watch_runs(args: argparse.Namespace) -> int:
    use_prefect_api(find_prefect_api())
    from chatops import dead_runs  # Prefect loads here, pointed at the server found above

    return dead_runs.main(["watch", args.gateway_url])


def cmd_up(args: argparse.Namespace) -> int:
    from chatops import up

    try:
        return up.run(args.host, args.port, args.database)
    except (up.StartupError, up.DatabaseError) as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 1


def cmd_gateway(args: argparse.Namespace) -> int:
    from chatops import gateway

    gateway.main()
    return 0


def use_prefect_api(api_url: str) -> None:
    """Point Prefect (loaded after this) at ``api_url``, with the API's credential; never at a
    throwaway one."""
    os.environ["PREFECT_API_URL"] = api_url
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
    p.add_argument(
        "--database",
        help="where the Prefect server keeps its data: embedded (the default: a PostgreSQL server "
        "of its own under $CHATOPS_HOME/postgres), sqlite, or postgresql://… (an external one)",
    )
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("users", help="the people who may use the CLI, each with their own token")
    users = p.add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="make NAME a user; print their token (only it, once)")
    add.add_argument("name")
    remove = users.add_parser("remove", help="revoke NAME's token at once")
    remove.add_argument("name")
    users.add_parser("list", help="the users and when their tokens were made")
    p.set_defaults(func=cmd_users)
    p = sub.add_parser("login", help="check a token (read from stdin) and keep it for this user")
    p.add_argument("--gateway", help="the gateway's URL (default: the one running here)")
    p.set_defaults(func=cmd_login)
    p = sub.add_parser("whoami", help="who the gateway takes you for")
    p.set_defaults(func=cmd_whoami)
    p = sub.add_parser("config", help="manage configuration")
    apply = p.add_subparsers(dest="config_command", required=True).add_parser(
        "apply", help="create or update the blocks a chatops.yaml describes"
    )
    apply.add_argument("file")
    apply.add_argument(
        "--prune", action="store_true", help="remove apps and environments that are not in the file"
    )
    apply.set_defaults(func=cmd_config_apply)
    p = sub.add_parser(
        "watch-runs",
        help="have Prefect crash and report, through GATEWAY_URL, runs that stopped heartbeating",
    )
    p.add_argument("gateway_url", help="where the Prefect server reaches a gateway, http://…:8000")
    p.set_defaults(func=cmd_watch_runs)
    p = sub.add_parser("gateway", help="serve the Slack, GitHub and CLI endpoints")
    p.set_defaults(func=cmd_gateway)
    p = sub.add_parser("follow", help="follow a run until it ends (its id or UI link)")
    p.add_argument("run")
    give_up_option(p)
    p.set_defaults(func=cmd_follow)
    for verb, text in CHAT_VERBS.items():
        p = sub.add_parser(verb, help=text, description=text)
        p.add_argument("words", nargs="*", help="the rest of the chat command")
        if verb in FOLLOWED:
            p.add_argument("--detach", action="store_true", help="print the run link and exit")
            give_up_option(p)
        if verb == "deploy":
            p.add_argument(
                "--yes",
                action="store_true",
                help="deploy without being asked, where the environment asks first (confirm)",
            )
        if verb == "status":
            p.add_argument("--verify", action="store_true", help="read every host over SSH")
        p.set_defaults(func=chat, verb=verb, detach=False, yes=False)
    return top


def give_up_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--give-up-after",
        type=float,
        metavar="SECONDS",
        help="stop following after this long without an answer from the gateway (exit 4; "
        "default: $CHATOPS_GIVE_UP_AFTER, else 120)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except Unreachable as exc:
        print(f"chatops: {exc}", file=sys.stderr, flush=True)
        return GAVE_UP
    except (NoServer, GatewayError) as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

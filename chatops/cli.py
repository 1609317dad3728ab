"""The ``chatops`` command.

::

    chatops up                              start everything on this machine
    chatops config apply chatops.yaml       write the apps and environments to Prefect
    chatops deploy shop/feature-x to staging
    chatops status                          what is deployed where
    chatops gateway                         serve the Slack and GitHub endpoints

``chatops deploy`` takes the same words as the chat command, starts the run through the Prefect
deployment (like Slack and GitHub do), follows it step by step and exits non-zero on failure.
"""

import argparse
import getpass
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment
from prefect.utilities.urls import url_for

from chatops import config, up
from chatops.commands import CommandError, parse
from chatops.settings import DEPLOYMENT_NAME
from flows.report import run_title
from flows.target import UnknownTarget, load_app
from tasks import history

FOLLOW_POLL_SECONDS = 0.5
MARKS = {
    StateType.COMPLETED: "✓",
    StateType.FAILED: "✗",
    StateType.CRASHED: "✗",
    StateType.CANCELLED: "–",
}


def deploy_parameters(words: str, requested_by: str) -> dict:
    """Flow parameters for a deploy command; raises CommandError/UnknownTarget for bad input."""
    command = parse(words)
    if command.action != "deploy":
        raise CommandError(f"chatops deploy starts deploys; {command.action!r} is a chat command")
    app = load_app(command.app)
    environment = command.environment or app.default_environment
    if environment is None:
        raise CommandError(
            f"which environment? {command.app} deploys to: {', '.join(app.environments)}"
        )
    return {
        "app": command.app,
        "environment": environment,
        "ref": command.ref or app.default_ref,
        "force": command.force,
        "hosts": command.hosts,
        "task": command.task,
        "requested_by": requested_by,
    }


def print_task_changes(flow_run_id: UUID, seen: dict[UUID, StateType]) -> None:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    for run in sorted(runs, key=lambda r: r.expected_start_time or r.created):
        state = run.state_type
        if state is None or seen.get(run.id) == state:
            continue
        seen[run.id] = state
        if state in MARKS:
            took = f"{run.total_run_time.total_seconds():.1f} s" if run.total_run_time else ""
            print(f"  {MARKS[state]} {run.name:<40} {state.value.lower():<10} {took}", flush=True)


def follow(flow_run_id: UUID) -> FlowRun:
    """Print each task as it finishes; return the flow run once it is over."""
    seen: dict[UUID, StateType] = {}
    while True:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        print_task_changes(flow_run_id, seen)
        if run.state and run.state.is_final():
            return run
        time.sleep(FOLLOW_POLL_SECONDS)


def cmd_deploy(args: argparse.Namespace) -> int:
    try:
        params = deploy_parameters(" ".join(args.words), args.requested_by)
    except (CommandError, UnknownTarget) as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 2
    title = run_title(params["app"], params["ref"], None, params["environment"])
    run = run_deployment(
        DEPLOYMENT_NAME,
        parameters=params,
        timeout=0,
        flow_run_name=title,
        tags=[f"app:{params['app']}", f"env:{params['environment']}"],
    )
    print(f"Deploying {title}\n  {url_for('flow-run', obj_id=run.id)}", flush=True)
    final = follow(run.id)
    print(
        f"{final.name}: {final.state.name}"
        + (f": {final.state.message}" if final.state.message else "")
    )
    return 0 if final.state.is_completed() else 1


def cmd_status(args: argparse.Namespace) -> int:
    deployed = history.deployed_everywhere()
    if not deployed:
        print("Nothing deployed yet.")
    for entry in deployed:
        print(entry.markdown.splitlines()[0].replace("**", "").replace("`", ""))
    return 0


def cmd_config_apply(args: argparse.Namespace) -> int:
    try:
        saved = config.apply(Path(args.file))
    except config.ConfigError as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 2
    print("\n".join(f"saved {name}" for name in saved))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    try:
        return up.run(args.host, args.port)
    except up.StartupError as exc:
        print(f"chatops: {exc}", file=sys.stderr)
        return 1


def cmd_gateway(args: argparse.Namespace) -> int:
    from chatops import gateway  # FastAPI and uvicorn load only for this command

    gateway.main(args.host, args.port)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="chatops", description="Deploy from chat.")
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="start server, runner and gateway on this machine")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=4200, help="Prefect server port")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("config", help="manage configuration")
    apply = p.add_subparsers(dest="config_command", required=True).add_parser(
        "apply", help="create or update the blocks described by a chatops.yaml"
    )
    apply.add_argument("file")
    apply.set_defaults(func=cmd_config_apply)
    p = sub.add_parser("deploy", help="deploy APP[/REF] to ENV and follow it")
    p.add_argument("words", nargs="+", help="e.g. shop/feature-x to staging")
    p.add_argument("--as", dest="requested_by", default=getpass.getuser())
    p.set_defaults(func=cmd_deploy)
    p = sub.add_parser("gateway", help="serve the Slack and GitHub endpoints")
    p.add_argument("--host", help="default: CHATOPS_GATEWAY_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, help="default: CHATOPS_GATEWAY_PORT or 8000")
    p.set_defaults(func=cmd_gateway)
    p = sub.add_parser("status", help="what is deployed where")
    p.set_defaults(func=cmd_status)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""What a deploy request points at: the app, its environment's config and the hosts to touch.

Loading is where requests meet configuration, so every mistake a person can make (unknown app,
unknown environment, a host the environment does not have, an unknown custom task) is caught
here, before anything runs, with a message that says what is known.
"""

from dataclasses import dataclass

from prefect.exceptions import ObjectNotFound

from blocks.app import App
from blocks.environment import Environment


class UnknownTarget(ValueError):
    """The request names an app, environment, host or task that is not configured."""


@dataclass(frozen=True)
class Target:
    """One app environment, resolved: blocks, hosts to deploy to, and the custom task command."""

    name: str
    app: App
    environment_name: str
    environment: Environment
    hosts: list[str]
    ref: str
    task_command: str | None


def load_app(name: str) -> App:
    try:
        return App.load(name)
    except (ValueError, ObjectNotFound):
        raise UnknownTarget(f"unknown app {name!r}") from None


def load_target(
    app_name: str,
    environment: str,
    hosts: list[str] | None = None,
    task: str = "deploy",
    ref: str | None = None,
) -> Target:
    """Resolve a request; raise :class:`UnknownTarget` saying what is known instead."""
    app = load_app(app_name)
    if environment not in app.environments:
        known = ", ".join(app.environments) or "none"
        raise UnknownTarget(f"{app_name} has no environment {environment!r}; known: {known}")
    env = Environment.load(app.environment_block_name(environment))
    chosen = env.hosts
    if hosts:
        strangers = [h for h in hosts if h not in env.hosts]
        if strangers:
            raise UnknownTarget(
                f"{app_name} {environment} has no host {', '.join(strangers)}; "
                f"its hosts: {', '.join(env.hosts)}"
            )
        chosen = [h for h in env.hosts if h in hosts]
    command = None
    if task != "deploy":
        if task not in app.tasks:
            known = ", ".join(["deploy", *app.tasks])
            raise UnknownTarget(f"{app_name} has no deploy task {task!r}; known: {known}")
        command = app.tasks[task]
    return Target(
        name=app_name,
        app=app,
        environment_name=environment,
        environment=env,
        hosts=chosen,
        ref=ref or app.default_ref,
        task_command=command,
    )

"""The verify flow: read every host of an app and report drift from the deploy history.

``status shop verify`` (Slack) or ``chatops status shop --verify`` starts it. Each host is one
task run that reads ``current``, its REVISION and (with a health URL) what the app serves;
unreachable hosts are reported, not fatal. The findings become one table artifact per app
environment (``verified-<app>-<environment>``, on the run), which the gateway turns into the
answer, and the ``environments`` page shows the last one of each.
"""

from dataclasses import replace

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from adapters import history, ssh
from flows.results import gather
from flows.target import load_app, load_target
from model.history import Deployed
from model.target import Target
from model.verify import Checked
from tasks.hosts import inspect


@flow(name="verify", flow_run_name="verify {app}", task_runner=ThreadPoolTaskRunner(16))
def verify(app: str, environment: str | None = None) -> list[Checked]:
    """Compare what every host of ``app`` (in ``environment``, or all) runs with the record."""
    names = [environment] if environment else load_app(app).environments
    recorded = {(d.app, d.environment): d for d in history.deployed_everywhere()}
    checked: list[Checked] = []
    with ssh.sessions():
        for name in names:
            found = check_hosts(load_target(app, name), recorded.get((app, name)))
            history.write_verified(app, name, found)
            checked += found
    history.write_environments()
    return checked


def check_hosts(target: Target, record: Deployed | None) -> list[Checked]:
    """What every host of ``target`` runs and serves, next to the ``record`` of what should."""
    found = gather({h: inspect.submit(target.environment, h) for h in target.hosts})
    checked = []
    for host, outcome in found.items():
        base = Checked(
            target.app_name,
            target.environment_name,
            host,
            record.release if record else None,
            record.sha if record else None,
        )
        if isinstance(outcome, BaseException):
            checked.append(replace(base, error=str(outcome)))
            continue
        state, serving = outcome
        current_sha = state.releases.get(state.current or "")
        checked.append(
            replace(base, current=state.current, current_sha=current_sha, serves=serving)
        )
    return checked

"""The verify flow: read every host of an app and report drift from the deploy history.

``status shop verify`` (Slack) or ``chatops status shop --verify`` starts it. Each host is one
task run that reads ``current``, its REVISION and (with a health URL) what the app serves;
unreachable hosts are reported, not fatal. The findings become a Markdown artifact on the run,
which the gateway turns into the answer.
"""

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from flows.results import gather
from flows.target import load_app, load_target
from tasks import history, ssh
from tasks.hosts import inspect
from tasks.verify import Checked, report_markdown


@flow(name="verify", flow_run_name="verify {app}", task_runner=ThreadPoolTaskRunner(16))
def verify(app: str, environment: str | None = None) -> list[Checked]:
    """Compare what every host of ``app`` (in ``environment``, or all) runs with the record."""
    names = [environment] if environment else load_app(app).environments
    recorded = {(d.app, d.environment): d for d in history.deployed_everywhere()}
    checked: list[Checked] = []
    with ssh.sessions():
        for name in names:
            target = load_target(app, name)
            record = recorded.get((app, name))
            found = gather({h: inspect.submit(target.environment, h) for h in target.hosts})
            for host, outcome in found.items():
                base = Checked(
                    app,
                    name,
                    host,
                    record.release if record else None,
                    record.sha if record else None,
                )
                if isinstance(outcome, BaseException):
                    checked.append(Checked(**{**base.__dict__, "error": str(outcome)}))
                    continue
                state, serving = outcome
                checked.append(
                    Checked(
                        **{
                            **base.__dict__,
                            "current": state.current,
                            "current_sha": state.releases.get(state.current or ""),
                            "serves": serving,
                        }
                    )
                )
    create_markdown_artifact(markdown=report_markdown(checked), description=f"Drift of {app}")
    return checked

"""One error family: every product error derives from ``ChatopsError``, survives pickling (Prefect
carries a task's exception to its flow that way) with its context, and says by its class alone
whether a deploy reports ``failure`` or ``error`` to GitHub."""

import importlib
import pickle
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest
from github import GithubException
from prefect.states import Failed

from adapters.ssh import CommandHung, HostUnreachable, RemoteCommandFailed
from chatops.intake import ReplyTo
from flows.report import DeployReport
from flows.results import HostResults, HostsFailed, HostsSaidNo, HostsUnworkable
from model.errors import ChatopsError, DeployError, DeployFailure, worth_retrying
from model.locks import Freeze, Lock
from tasks.build import BuildFailed
from tasks.git import GitFailed, UnknownRef
from tasks.github import DeploymentRefused
from tasks.health import Unhealthy

ROOT = Path(__file__).parents[1]
PACKAGES = ["model", "blocks", "render", "adapters", "tasks", "flows", "chatops"]


def _import_product() -> None:
    """Import every product module, so every error class is defined."""
    for package in PACKAGES:
        for module in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
            if not module.name.endswith("__main__"):
                importlib.import_module(module.name)


def _family(cls: type[ChatopsError]) -> list[type[ChatopsError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += [c for c in _family(sub) if c not in found]
    return found


_import_product()
FAMILY = sorted(_family(ChatopsError), key=lambda c: f"{c.__module__}.{c.__qualname__}")

LOCK = Lock("shop", "staging", "ann", "migrating", "2026-12-07T04:00:00+00:00", via="slack")
FREEZE = Freeze("production", "ann", "release week", "2026-12-07T04:00:00+00:00", via="cli")
KEY = paramiko.ECDSAKey.generate()
TWO_HOSTS = HostResults(
    {"web-1": Unhealthy("web-1", "health check", "served abc, not def"), "web-2": "r2"}
)
SAMPLES: dict[str, Callable[[type], ChatopsError]] = {
    "HostFailed": lambda c: c("web-1", "upload", "disk full", ["No space left on device"]),
    "HostUnreachable": lambda c: c("web-1", "connect", "connection refused"),
    "Lost": lambda c: c("the gateway", "connection refused"),
    "Unhealthy": lambda c: c("web-1", "health check", "served abc, not def", ["HTTP 200"]),
    "RemoteCommandFailed": lambda c: c("web-1", "restart", "exit code 3", ["port in use"], 3),
    "CommandHung": lambda c: c("web-1", "restart", "hung", ["waiting"], 124),
    "GitFailed": lambda c: c("fetch", 128, ["fatal: repository not found"]),
    "BuildFailed": lambda c: c("build command failed with exit code 1", ["[ERROR] BUILD FAILURE"]),
    "HostsFailed": lambda c: c("health check", TWO_HOSTS),
    "HostsSaidNo": lambda c: c("health check", TWO_HOSTS),
    "HostsUnworkable": lambda c: c("health check", TWO_HOSTS),
    "EnvironmentLocked": lambda c: c(LOCK),
    "EnvironmentFrozen": lambda c: c(FREEZE),
    "LockHeld": lambda c: c(LOCK),
    "UnknownHostKey": lambda c: c.presented("[web-1]:2222", KEY),
    "UnknownTask": lambda c: c(
        "shop has no task 'migrate'", ReplyTo(repository="acme/shop", deployment_id=7)
    ),
    "SignatureError": lambda c: c("stale timestamp"),
}


def sample(cls: type[ChatopsError]) -> ChatopsError:
    """An instance of ``cls`` as the product makes one (a plain message unless listed)."""
    return SAMPLES.get(cls.__name__, lambda c: c("something went wrong"))(cls)


def _product_exceptions() -> list[type[BaseException]]:
    found = []
    for name, module in sorted(sys.modules.items()):
        if name.split(".")[0] in PACKAGES:
            found += [
                obj
                for obj in vars(module).values()
                if isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj.__module__ == name
            ]
    return found


def test_every_exception_of_the_product_is_in_the_family() -> None:
    defined = _product_exceptions()
    assert len(defined) >= 40, "the walk did import the product"
    assert [cls for cls in defined if not issubclass(cls, ChatopsError)] == []
    assert set(defined) <= set(FAMILY)


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.__name__)
def test_every_error_pickles_with_its_context(cls: type[ChatopsError]) -> None:
    error = sample(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error) != ""
    assert (copy.host, copy.step, copy.cause, copy.tail) == (
        error.host,
        error.step,
        error.cause,
        error.tail,
    )
    assert vars(copy).keys() == vars(error).keys()
    assert "__reduce__" not in vars(cls) and "__reduce_ex__" not in vars(cls)


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.__name__)
def test_every_error_is_a_failure_or_an_error_never_both(cls: type[ChatopsError]) -> None:
    assert not (issubclass(cls, DeployFailure) and issubclass(cls, DeployError))


def test_fields_of_subclasses_survive_pickling() -> None:
    hung = pickle.loads(pickle.dumps(sample(CommandHung)))
    assert hung.exit_code == 124 and isinstance(hung, RemoteCommandFailed)
    git = pickle.loads(pickle.dumps(sample(GitFailed)))
    assert (git.command, git.exit_code) == ("fetch", 128)
    failed = pickle.loads(pickle.dumps(sample(HostsSaidNo)))
    assert list(failed.results.failed) == ["web-1"] and failed.results["web-2"] == "r2"


def test_str_shows_host_step_cause_and_output_tail() -> None:
    error = HostUnreachable("web-1:2222", "connect", "connection refused", ["ssh: port 2222"])
    assert str(error) == "web-1:2222: connect failed: connection refused\n    ssh: port 2222"
    plain = DeployError(host="web-2", step="upload", cause="disk full", tail=["No space"])
    assert str(plain) == "web-2: upload failed: disk full\n    No space"
    build = BuildFailed("build command failed with exit code 1", ["[ERROR] BUILD FAILURE"])
    assert str(build) == "build command failed with exit code 1\n    [ERROR] BUILD FAILURE"
    assert build.step == "build"
    assert str(GitFailed("fetch", 128, ["fatal: no"])) == (
        "git fetch failed with exit code 128\n    fatal: no"
    )


def _reported(exc: BaseException) -> str:
    """The outcome a deploy that raised ``exc`` reports to GitHub (and Slack)."""
    told: list[str] = []
    report = SimpleNamespace(again=None, failed=lambda outcome, error: told.append(outcome))
    with pytest.raises(type(exc)), DeployReport.failures(report):  # type: ignore[arg-type]
        raise exc
    return told[0]


@pytest.mark.parametrize("cls", FAMILY, ids=lambda c: c.__name__)
def test_the_class_alone_decides_failure_or_error(cls: type[ChatopsError]) -> None:
    expected = "failure" if issubclass(cls, DeployFailure) else "error"
    assert _reported(sample(cls)) == expected


def test_what_a_deploy_reports_for_typical_errors() -> None:
    assert _reported(sample(BuildFailed)) == "failure"
    assert _reported(sample(Unhealthy)) == "failure"
    assert _reported(sample(HostUnreachable)) == "error"
    assert _reported(sample(CommandHung)) == "error"
    assert _reported(OSError("a bug of ours")) == "error"


def test_a_step_that_failed_on_several_hosts_is_a_failure_only_if_each_said_no() -> None:
    unhealthy = Unhealthy("web-1", "health check", "served abc")
    unreachable = HostUnreachable("web-2", "health check", "connection refused")
    both_said_no = HostResults({"web-1": unhealthy, "web-2": Unhealthy("web-2", "x", "y")})
    one_unreachable = HostResults({"web-1": unhealthy, "web-2": unreachable})
    with pytest.raises(HostsSaidNo) as said_no:
        both_said_no.raise_for_failures("health check")
    with pytest.raises(HostsUnworkable) as unworkable:
        one_unreachable.raise_for_failures("health check")
    assert _reported(said_no.value) == "failure"
    assert _reported(unworkable.value) == "error"
    assert isinstance(unworkable.value, HostsFailed)
    assert "health check failed on web-1, web-2 (2 of 2 hosts)" in str(unworkable.value)


@pytest.mark.parametrize(
    ("error", "again"),
    [
        (UnknownRef("no commit 'nope'"), False),
        (DeploymentRefused("GitHub does not know ref 'nope'"), False),
        (GithubException(422, {"message": "Validation Failed"}, None), False),
        (GithubException(502, {"message": "Bad Gateway"}, None), True),
        (GitFailed("fetch", 128, ["fatal: unable to access"]), True),
        (OSError("connection reset"), True),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_tasks_try_again_unless_the_answer_was_no(error: BaseException, again: bool) -> None:
    assert worth_retrying(None, None, Failed(data=error)) is again

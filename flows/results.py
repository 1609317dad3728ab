"""What a step did on every host: one :class:`HostResults`, keyed by host, like fabric's
``GroupResult``.

A step fans out over the hosts as one task run per host; :func:`gather` waits for all of them
(so no task is left running) and collects each host's value or the exception it raised::

    >>> from adapters.ssh import HostFailed
    >>> results = HostResults({"web-1": "r2", "web-2": HostFailed("web-2", "upload", "timeout"),
    ...                        "web-3": HostFailed("web-3", "upload", "refused")})
    >>> results.succeeded
    {'web-1': 'r2'}
    >>> sorted(results.failed)
    ['web-2', 'web-3']
    >>> print(HostsFailed("upload", results))
    upload failed on web-2, web-3 (2 of 3 hosts): timeout
      web-2: upload failed: timeout
      web-3: upload failed: refused
"""

from collections.abc import Mapping
from typing import Any

from prefect.futures import PrefectFuture

from model.errors import ChatopsError, DeployError, DeployFailure


class HostResults(dict[str, Any]):
    """host → what the step returned there, or the exception it raised there."""

    @property
    def succeeded(self) -> dict[str, Any]:
        return {h: v for h, v in self.items() if not isinstance(v, BaseException)}

    @property
    def failed(self) -> dict[str, BaseException]:
        return {h: v for h, v in self.items() if isinstance(v, BaseException)}

    def raise_for_failures(self, step: str) -> "HostResults":
        """Raise :class:`HostsFailed` naming every failed host; return self if none failed."""
        if self.failed:
            raise HostsFailed.of(step, self)
        return self


class HostsFailed(ChatopsError, RuntimeError):
    """A step failed on one or more hosts; the message lists each with its own error.

    Raise it with :meth:`of`, which says whether the hosts said no or we could not work."""

    def __init__(self, step: str, results: HostResults) -> None:
        failed = results.failed
        first = next(iter(failed.values()))
        cause = getattr(first, "cause", None) or str(first).split("\n")[0]
        head = f"{step} failed on {', '.join(failed)} ({len(failed)} of {len(results)} hosts)"
        lines = [f"  {_line(host, exc)}" for host, exc in failed.items()]
        super().__init__(f"{head}: {cause}\n" + "\n".join(lines), step=step, cause=cause)
        self.results = results

    @classmethod
    def of(cls, step: str, results: HostResults) -> "HostsFailed":
        """A :class:`HostsSaidNo` when every failed host said no (a :class:`DeployFailure` on
        each), else a :class:`HostsUnworkable`."""
        said_no = all(isinstance(exc, DeployFailure) for exc in results.failed.values())
        return (HostsSaidNo if said_no else HostsUnworkable)(step, results)


class HostsSaidNo(HostsFailed, DeployFailure):
    """Every host the step failed on said no (e.g. none of them turned healthy)."""


class HostsUnworkable(HostsFailed, DeployError):
    """The step could not be done on at least one host (unreachable, a command broke, ...)."""


def _line(host: str, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    text = text if text.startswith(f"{host}:") else f"{host}: {type(exc).__name__}: {text}"
    return text.replace("\n", "\n  ")


def gather(futures: Mapping[str, PrefectFuture]) -> HostResults:
    """Wait for every host's task run; collect its result or its exception."""
    for future in futures.values():
        future.wait()
    collected = HostResults()
    for host, future in futures.items():
        try:
            collected[host] = future.result()
        except Exception as exc:
            collected[host] = exc
    return collected


def on_hosts(step: str, futures: Mapping[str, PrefectFuture]) -> HostResults:
    """:func:`gather`, then raise :class:`HostsFailed` if any host failed."""
    return gather(futures).raise_for_failures(step)

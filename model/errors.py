"""The errors of chatops-deploy: one family, so every layer raises and reports them the same way.

:class:`ChatopsError` is the base. It carries where things went wrong: the ``host``, the
``step``, the ``cause`` and the last lines of output that say why (``tail``); ``str()`` shows
them. Two branches say what the outcome of a deploy is, as GitHub's deployment statuses do:

- :class:`DeployFailure`: the code or the hosts said no (the build failed, a host did not turn
  healthy, the ref or environment does not exist, the environment is locked, ...): GitHub
  ``failure``;
- :class:`DeployError`: we could not do our work (a host unreachable, git or Prefect down, a
  bound of our own ran out, a configuration that cannot be applied, ...): GitHub ``error``.

Errors about what someone typed or sent (grammar, signatures, malformed requests) derive from
the base alone: they never reach a deploy.

Every error pickles (Prefect carries a task's exception to the flow that way) without a
hand-written ``__reduce__``: see :class:`ChatopsError`.

    >>> error = DeployError(host="web-1", step="upload", cause="disk full", tail=["No space"])
    >>> print(error)
    web-1: upload failed: disk full
        No space

The error a request gets when it names something that is not configured lists what is known
and guesses what was meant:

    >>> print(unknown("environment", "stagin", ["staging", "production"], owner="shop"))
    shop has no environment 'stagin' (did you mean 'staging'?). Known: staging, production.
"""

import difflib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module, and must not load Prefect
    from prefect.states import State


class ChatopsError(Exception):
    """Something chatops-deploy could not do, with where and why: ``host``, ``step``, ``cause``
    and ``tail`` (the last lines of output that explain it), each optional.

    ``message`` is the headline; without one it reads "``step`` failed: ``cause``". ``str()``
    puts the host in front and the tail below.

    Pickling: ``Exception.__new__`` keeps the positional arguments of the constructor in
    ``args``, and this ``__init__`` leaves them there (it does not call ``Exception.__init__``
    with a rendered text). So pickle's default path, ``type(self)(*self.args)`` and then the
    instance's ``__dict__``, rebuilds every subclass whatever its constructor takes.
    """

    def __init__(
        self,
        message: str = "",
        *,
        host: str | None = None,
        step: str | None = None,
        cause: str | None = None,
        tail: Sequence[str] = (),
    ) -> None:
        self.message = message
        self.host, self.step, self.cause, self.tail = host, step, cause, list(tail)

    def __str__(self) -> str:
        if self.message or not self.step:
            head = str(self.message or self.cause or "")
        else:
            head = f"{self.step} failed: {self.cause}"
        if self.host and not head.startswith(f"{self.host}:"):
            head = f"{self.host}: {head}"
        return head + "".join(f"\n    {line}" for line in self.tail)


class DeployFailure(ChatopsError):
    """The code or the hosts said no: trying again unchanged will not help (GitHub ``failure``)."""


class DeployError(ChatopsError):
    """We could not do our work (a host, a service or a bound of ours): GitHub ``error``."""


def worth_retrying(task: object, task_run: object, state: "State") -> bool:
    """A task's ``retry_condition_fn``: try again unless the task ended with a
    :class:`DeployFailure` (the code or the hosts said no; they will say it again) or with an
    HTTP answer below 500 (the service understood, and refused)."""
    try:
        state.result()
    except DeployFailure:
        return False
    except Exception as exc:
        status = getattr(exc, "status", None)
        return not (isinstance(status, int) and status < 500)
    return False


class UnknownTarget(DeployFailure, ValueError):
    """The request names an app, environment, host or task that is not configured."""


def did_you_mean(word: str, known: Iterable[str]) -> str | None:
    """The known name closest to ``word``, if one is close enough to be a typo."""
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown(kind: str, word: str, known: Iterable[str], owner: str | None = None) -> UnknownTarget:
    """An :class:`UnknownTarget` for ``word``, with a "did you mean" and the known values."""
    names = list(known)
    guess = did_you_mean(word, names)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    prefix = f"{owner} has no {kind}" if owner else f"unknown {kind}"
    listed = ", ".join(names) or "none"
    return UnknownTarget(f"{prefix} {word!r}{hint}. Known: {listed}.")

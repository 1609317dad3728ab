"""The error a request gets when it names something that is not configured.

Both the gateway (answering at once) and the flows (checking again before anything runs) raise
it, with a message that lists what is known and guesses what was meant:

    >>> print(unknown("environment", "stagin", ["staging", "production"], owner="shop"))
    shop has no environment 'stagin' (did you mean 'staging'?). Known: staging, production.
"""

import difflib
from collections.abc import Iterable


class UnknownTarget(ValueError):
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

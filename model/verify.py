"""Drift: what each host actually runs, next to what the deploy history recorded.

A verify run (:mod:`flows.verify`) reads ``current`` and its REVISION on every host over SSH and
compares them with the latest ``deployed-<app>-<environment>`` record. Its findings are one
:class:`Checked` per host, kept as the table artifact ``verified-<app>-<environment>``
(:func:`adapters.history.write_verified`), one row per host::

    >>> c = Checked("shop", "staging", "web-1", "r2", "1a2b3c4d", current="r1",
    ...             current_sha="9f8e7d6c")
    >>> c.consistent, c.describe()
    (False, 'runs r1 (9f8e7d6) but the record says r2 (1a2b3c4)')
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Checked:
    """One host of one app environment: recorded release, what it runs, what it serves."""

    app: str
    environment: str
    host: str
    recorded_release: str | None
    recorded_sha: str | None
    current: str | None = None
    current_sha: str | None = None
    serves: bool | None = None
    error: str | None = None

    @property
    def consistent(self) -> bool:
        return (
            self.error is None
            and self.current == self.recorded_release
            and self.serves is not False
        )

    def describe(self) -> str:
        if self.error is not None:
            return f"cannot be checked: {self.error}"
        runs = f"{self.current} ({(self.current_sha or '?')[:7]})" if self.current else "nothing"
        if self.recorded_release is None:
            return f"runs {runs}; nothing was recorded for it"
        if self.current != self.recorded_release:
            recorded = f"{self.recorded_release} ({(self.recorded_sha or '?')[:7]})"
            return f"runs {runs} but the record says {recorded}"
        if self.serves is False:
            return f"current is {runs}, but the app does not serve it"
        return f"runs {runs} as recorded"

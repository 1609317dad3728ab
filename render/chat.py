"""How locks, freezes and refusals read in Slack (mrkdwn): people as mentions, names in bold.

The same facts read as plain text in ``str()`` of the errors in :mod:`model`; this is their
Slack face, for the gateway's answers and the deploy card::

    >>> from model.locks import Freeze, Lock
    >>> print(describe_lock(Lock("shop", "production", "U0123ABCD", "release", "", "slack")))
    *production* on *shop* is locked by <@U0123ABCD>: release.
    >>> print(describe_freeze(Freeze("production", "ann", None, "", "cli")))  # doctest: +ELLIPSIS
    :snowflake: *production* is frozen by ann (cli). Nothing deploys there until someone runs ...
"""

from model.locks import Freeze, Lock
from model.target import NotAllowed
from render.slack_card import SLACK_USER_ID, escape_mrkdwn


def holder(held: Lock | Freeze) -> str:
    """Who holds a lock or freeze as people read it: a Slack mention, or ``alice (cli)``."""
    if held.via == "slack" and SLACK_USER_ID.match(held.by):
        return f"<@{held.by}>"
    return escape_mrkdwn(f"{held.by} ({held.via})")


def _since_and_why(at: str, since: str, message: str | None) -> str:
    return (f" since {since}" if at else "") + (f": {escape_mrkdwn(message)}" if message else "")


def describe_lock(lock: Lock) -> str:
    """``*production* on *shop* is locked by <@U1> since …: release freeze.``"""
    said = _since_and_why(lock.at, lock.since, lock.message)
    return f"*{lock.environment}* on *{lock.app}* is locked by {holder(lock)}{said}."


def describe_freeze(freeze: Freeze) -> str:
    """``:snowflake: *production* is frozen by <@U1> since …: release week. …``"""
    said = _since_and_why(freeze.at, freeze.since, freeze.message)
    return (
        f":snowflake: *{freeze.environment}* is frozen by {holder(freeze)}{said}. "
        f"Nothing deploys there until someone runs `unfreeze {freeze.environment}`; "
        "a rollback still works."
    )


def describe_refusal(refusal: NotAllowed) -> str:
    """Why the allow-lists refuse, with the people and channels who may as Slack mentions."""
    app, environment = f"*{refusal.app}*", f"*{refusal.environment}*"
    if refusal.list_name == "allowed_users":
        allowed = ", ".join(f"<@{u}>" for u in refusal.allowed)
        return f"You may not deploy {app} to {environment}. Allowed: {allowed}."
    if refusal.list_name == "allowed_channels":
        where = ", ".join(f"<#{c}>" for c in refusal.allowed)
        return f"Deploys of {app} to {environment} are only done from {where}."
    return (
        f"You ({escape_mrkdwn(refusal.user)}) may not deploy {app} to {environment} from the "
        f"terminal. Allowed: {escape_mrkdwn(', '.join(refusal.allowed))}."
    )

"""Releases on an environment's hosts, as Prefect tasks: check each host, ship the release,
switch to it, switch back, keep a record; and the shell commands they run there.

Every host keeps its releases side by side, one symlink to the live one, and a journal::

    <deploy_path>/releases/<UTC time>-<sha7>/<artifact>   (+ REVISION holding the full sha)
    <deploy_path>/current -> releases/<UTC time>-<sha7>
    <deploy_path>/HISTORY      one line per release that ran successfully here, newest last
    <deploy_path>/SWITCHING    "<from> <to> <flow run id>" while a deploy switches this host

``SWITCHING`` is written in the same command that switches ``current`` and removed when the deploy
succeeds everywhere (:func:`finish`: ``HISTORY`` gains the release, old releases
go) or when the host is switched back. A host that still has it was switched by a run that died:
:func:`model.releases.recovery` says how to bring it back before the next deploy touches
anything; if that run had recorded its success in Prefect (it does so before it tells anyone),
the host keeps the release and only the record is written. "Previous release" always means the
one ``HISTORY`` says ran successfully before, never just the newest folder.

What a host has, and how a host left behind by a dead run is brought back, is
:mod:`model.releases`; SSH itself (sessions, timeouts, error messages) is :mod:`adapters.ssh`.
"""

import shlex
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.transactions import Transaction, get_transaction

from adapters import ssh
from adapters.pauses import pause_point
from adapters.ssh import HostSession
from adapters.task_ledger import HOOKS
from blocks.environment import Environment
from model.releases import HostState, Recovery, Release, Switching
from tasks.health import Unhealthy, serves, wait_healthy

HISTORY_KEPT = 50
"""Lines of HISTORY read back; more than any keep_releases needs."""


def releases_dir(env: Environment) -> str:
    return f"{env.deploy_path.rstrip('/')}/releases"


def path_on_host(env: Environment, name: str) -> str:
    return f"{env.deploy_path.rstrip('/')}/{name}"


_INSPECT = r"""cd "$1" 2>/dev/null || exit 0
printf 'current %s\n' "$(readlink current 2>/dev/null | sed 's#.*/##')"
if [ -f SWITCHING ]; then printf 'switching %s\n' "$(head -c 300 SWITCHING)"; fi
tail -n "$2" HISTORY 2>/dev/null | sed 's/^/history /'
for d in releases/*/; do d=${d%/}; r=$d/REVISION
  [ -f "$r" ] && printf 'release %s %s\n' "${d#releases/}" "$(head -c 64 "$r")"
done
for d in releases/.*.partial; do [ -e "$d" ] && printf 'partial %s\n' "${d#releases/}"; done
true"""


def parse_state(listing: str) -> HostState:
    """Read what :data:`_INSPECT` printed."""
    current, switching, history, releases, partials = None, None, [], {}, []
    for line in listing.splitlines():
        kind, _, rest = line.partition(" ")
        words = rest.split()
        if kind == "current" and words:
            current = words[0]
        elif kind == "switching" and len(words) == 3:
            switching = Switching(None if words[0] == "-" else words[0], words[1], words[2])
        elif kind == "history" and len(words) >= 2:
            history.append(words[1])
        elif kind == "release" and len(words) == 2:
            releases[words[0]] = words[1]
        elif kind == "partial" and words:
            partials.append(words[0])
    return HostState(current, releases, history, switching, partials)


def read_state(host: HostSession, step: str) -> HostState:
    """What ``host`` has (see :class:`~model.releases.HostState`)."""
    command = f"sh -c {shlex.quote(_INSPECT)} sh {shlex.quote(host.env.deploy_path)} {HISTORY_KEPT}"
    return parse_state(host.run(command, step, quiet=True))


def switch_command(env: Environment, release_id: str, run_id: str | None, keep: bool) -> str:
    """Point ``current`` at ``releases/<release_id>`` atomically (symlink, then rename).

    First the SWITCHING journal is written (``run_id`` given: "<from> <to> <run id>"), left as
    it is (``keep``) or removed. The command prints the release ``current`` named before.
    """
    q = shlex.quote
    link, target = path_on_host(env, "current"), f"releases/{release_id}"
    marker = q(path_on_host(env, "SWITCHING"))
    if run_id:
        journal = (
            f"printf '%s %s %s\\n' \"${{prev:--}}\" {q(release_id)} {q(run_id)} > {marker}.tmp"
            f" && mv -f {marker}.tmp {marker}"
        )
    else:
        journal = "true" if keep else f"rm -f {marker}"
    return (
        f"test -d {q(releases_dir(env) + '/' + release_id)} && "
        f"prev=$(readlink {q(link)} 2>/dev/null | sed 's#.*/##') && {journal} && "
        f"ln -sfn {q(target)} {q(link)}.tmp && mv -Tf {q(link)}.tmp {q(link)} && "
        'printf "%s\\n" "$prev"'
    )


def switch(
    host: HostSession, release_id: str, run_id: str | None = None, keep: bool = False
) -> str | None:
    """Switch ``host`` to ``release_id`` (see :func:`switch_command`); return the one before."""
    previous = host.run(switch_command(host.env, release_id, run_id, keep), "switch", quiet=True)
    return previous or None


def restart_command(env: Environment) -> str:
    """The environment's restart command, run in ``current``."""
    return f"cd {shlex.quote(path_on_host(env, 'current'))} && {env.restart_command}"


def restart(host: HostSession, timeout: float | None = None) -> None:
    """Run the restart command in ``current``, bounded by ``timeout`` (default:
    ``command_timeout``) on the host."""
    env = host.env
    host.run_bounded(
        restart_command(env), "restart", env.command_timeout if timeout is None else timeout
    )


SWITCHED = "switched from"
"""What :func:`switch_and_restart` prints once ``current`` names the new release."""


def switch_and_restart(
    host: HostSession, release_id: str, run_id: str, timeout: float
) -> str | None:
    """Switch ``host`` to ``release_id`` (journaled) and restart it, in one SSH command (each
    command costs the host a login shell); return the release it ran before.

    The restart is bounded by ``timeout``, the switch too (it takes milliseconds). Raises
    :class:`~adapters.ssh.RemoteCommandFailed` (step "restart") when either fails:
    :func:`journaled_switch` then says whether the switch happened.
    """
    switch = switch_command(host.env, release_id, run_id, keep=False)
    command = (
        f'prev=$({switch}) && printf "{SWITCHED} %s\\n" "$prev" && {restart_command(host.env)}'
    )
    output = host.run_bounded(command, "restart", timeout)  # the step that fails, if one does
    first = output.splitlines()[0] if output else ""
    return first.removeprefix(SWITCHED).strip() or None


def journaled_switch(host: HostSession, release_id: str, run_id: str) -> tuple[bool, str | None]:
    """After a failed :func:`switch_and_restart`: whether it switched ``host`` to
    ``release_id`` (its SWITCHING journal names that switch), and the release before."""
    marker = shlex.quote(path_on_host(host.env, "SWITCHING"))
    words = host.run(f"cat {marker} 2>/dev/null || true", "activate", quiet=True).split()
    if words[1:3] != [release_id, run_id]:
        return False, None
    return True, None if words[0] == "-" else words[0]


def record_command(env: Environment, release_id: str, run_id: str) -> str:
    """Append ``release_id`` to HISTORY and remove the SWITCHING journal."""
    q = shlex.quote
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    history, journal = q(path_on_host(env, "HISTORY")), q(path_on_host(env, "SWITCHING"))
    return (
        f"printf '%s %s %s\\n' {stamp} {q(release_id)} {q(run_id)} >> {history} && rm -f {journal}"
    )


FREE_SPACE = r"""d="$1"; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
df -Pk "$d" | awk 'NR == 2 { print $4 }'"""


# --------------------------------------------------------------------------- tasks
@task(name="check host", task_run_name="check {host}", retries=1, cache_policy=NO_CACHE, **HOOKS)
def inspect(env: Environment, host: str) -> tuple[HostState, bool | None]:
    """The host's state, and whether it serves the sha ``current`` names (None: no health URL)."""
    with ssh.session(env, host, "check") as h:
        state = read_state(h, "check")
    sha = state.releases.get(state.current or "")
    serving = serves(env.health_url, host, sha) if env.health_url and sha else None
    return state, serving


@task(name="free space", task_run_name="free space on {host}", cache_policy=NO_CACHE, **HOOKS)
def free_space(env: Environment, host: str) -> int:
    """Bytes free where the host keeps its releases (its nearest existing folder, if the deploy
    path does not exist yet), as ``df`` says: a dry run's look, it writes nothing."""
    command = f"sh -c {shlex.quote(FREE_SPACE)} sh {shlex.quote(env.deploy_path)}"
    with ssh.session(env, host, "check") as h:
        free_kib = h.run(command, "check")
    return int(free_kib.strip()) * 1024


@task(name="recover", task_run_name="recover {host}", cache_policy=NO_CACHE, **HOOKS)
def recover(env: Environment, host: str, state: HostState, plan: Recovery) -> str:
    """Carry out ``plan`` on ``host``; return what was done, for the log and the report."""
    logger = get_run_logger()
    logger.warning("%s: %s: %s", host, plan.action, plan.reason)
    with ssh.session(env, host, "recover") as h:
        if plan.action == "record" and plan.release and state.switching:
            h.run(record_command(env, plan.release, state.switching.run_id), "recover")
        elif plan.action in ("switch", "restart") and plan.release:
            switch(h, plan.release)
            restart(h)
            if env.health_url:
                wait_healthy(env.health_url, host, state.releases[plan.release], env.health_timeout)
        elif plan.action == "clear":
            h.run(f"rm -f {shlex.quote(path_on_host(env, 'SWITCHING'))}", "recover")
    return f"{host}: {plan.action} ({plan.reason})"


@task(
    name="upload",
    task_run_name="upload {host}",
    retries=2,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
    **HOOKS,
)
def upload(env: Environment, host: str, artifact: str, release: Release) -> str:
    """Copy ``artifact`` and a REVISION file into ``releases/<release.id>/`` on ``host``.

    The files land in a hidden ``.partial`` folder first and are renamed into place, so a release
    folder is either complete or absent, and retrying is safe. If the transfer stalls, the host
    removes the partial folder by itself once the transfer's time bound has passed.
    """
    local = Path(artifact)
    q = shlex.quote
    partial = f"{releases_dir(env)}/.{release.id}.partial"
    final = f"{releases_dir(env)}/{release.id}"
    size = local.stat().st_size
    receiver = (
        f"p={q(partial)}; trap 'rm -rf \"$p\"; exit 1' TERM INT HUP; "
        f'rm -rf "$p" && mkdir -p "$p" && cat > "$p"/{q(local.name)} && '
        f'got=$(wc -c < "$p"/{q(local.name)}) && '
        f'if [ "$got" -ne {size} ]; then echo "received $got of {size} bytes" >&2; '
        f'rm -rf "$p"; exit 1; fi && '
        f"printf '%s\\n' {q(release.sha)} > \"$p/REVISION\" && "
        f'rm -rf {q(final)} && mv -T "$p" {q(final)}'
    )
    with ssh.session(env, host, "upload") as h:
        took = h.put(local, receiver, "upload")
    get_run_logger().info(
        "Uploaded %s (%d bytes) to %s:%s in %.2f s", local.name, size, host, final, took
    )
    return host


@task(name="run task", task_run_name="run task on {host}", cache_policy=NO_CACHE, **HOOKS)
def run_task_command(env: Environment, host: str, release: Release, command: str) -> None:
    """Run a custom deploy task's ``command`` in the new release's folder, before any switch."""
    folder = shlex.quote(f"{releases_dir(env)}/{release.id}")
    with ssh.session(env, host, "task") as h:
        h.run_bounded(f"cd {folder} && {command}", "task", env.command_timeout)


@task(name="activate", task_run_name="activate {host}", cache_policy=NO_CACHE, **HOOKS)
def activate(
    env: Environment,
    host: str,
    release: Release,
    run_id: str,
    restart_timeout: float | None = None,
) -> str | None:
    """Switch ``host`` to ``release`` and restart it; return the release it ran before.

    ``restart_timeout`` bounds the restart instead of ``command_timeout`` (the deploy's own
    bound may be nearer).

    The switch is journaled on the host (SWITCHING) in the same command. If the restart fails,
    the host is switched back and restarted on its previous release before the error is
    raised; if the restart *hung*, it is only switched back (restarting again could hang again)
    and the journal stays for the next deploy to finish the job. Inside a transaction, a later
    failure calls :func:`switch_back` for every host this task switched.
    """
    timeout = env.command_timeout if restart_timeout is None else restart_timeout
    with ssh.session(env, host, "activate") as h:
        try:
            previous = switch_and_restart(h, release.id, run_id, timeout)
        except ssh.RemoteCommandFailed as exc:
            switched, previous = journaled_switch(h, release.id, run_id)
            if not switched:
                raise
            journal(get_transaction(), env, host, release, run_id, previous)
            if isinstance(exc, ssh.CommandHung):
                if previous:
                    switch(h, previous, keep=True)
            else:
                restore(h, previous)
            raise
        journal(get_transaction(), env, host, release, run_id, previous)
    get_run_logger().info("%s now runs %s (was %s)", host, release.id, previous or "nothing")
    return previous


def journal(
    txn: Transaction | None,
    env: Environment,
    host: str,
    release: Release,
    run_id: str,
    previous: str | None,
) -> None:
    """What :func:`switch_back` needs to undo one :func:`activate`, in its transaction."""
    if txn is not None:
        txn.set("host", host)
        txn.set("environment", env)
        txn.set("previous", previous)
        txn.set("release", release.id)
        txn.set("run_id", run_id)


def restore(h: ssh.HostSession, previous: str | None) -> None:
    """Put ``host`` back on ``previous``, restart it and wait until it is healthy again.

    Without a previous release there is nothing to go back to: that is only logged.
    """
    logger, env, host = get_run_logger(), h.env, h.host
    if previous is None:
        logger.warning("%s had no earlier release to go back to; left as it is", host)
        return
    switch(h, previous)
    restart(h)
    if env.health_url:
        sha = h.run(f"cat {shlex.quote(f'{releases_dir(env)}/{previous}/REVISION')}", "roll back")
        try:
            wait_healthy(env.health_url, host, sha, env.health_timeout)
        except Unhealthy as exc:
            logger.error("Rolled %s back to %s, but it is not healthy: %s", host, previous, exc)
            return
    logger.warning("Rolled %s back to %s", host, previous)


@activate.on_rollback
def switch_back(txn: Transaction) -> None:
    """Undo :func:`activate` on one host when its deploy's transaction rolls back."""
    env: Environment = txn.get("environment")
    host: str = txn.get("host")
    with ssh.session(env, host, "roll back") as h:
        restore(h, txn.get("previous"))


@task(name="finish", task_run_name="finish {host}", cache_policy=NO_CACHE, **HOOKS)
def finish(
    env: Environment, host: str, release: Release, run_id: str, before: HostState
) -> list[str]:
    """The deploy succeeded everywhere: record ``release`` in the host's HISTORY, drop its
    SWITCHING, and delete releases beyond ``keep_releases`` and leftover ``.partial`` uploads,
    in one command; return what was deleted.

    ``before`` is the host as the deploy found it. Never deleted: the current release, the last
    good one and the one before it, and anything an unfinished switch names.
    """
    after = HostState(
        current=release.id,
        releases={**before.releases, release.id: release.sha},
        history=[*before.history, release.id],
    )
    doomed = sorted(set(after.releases) - after.keep(env.keep_releases)) + before.partials
    command = record_command(env, release.id, run_id)
    if doomed:
        paths = " ".join(shlex.quote(f"{releases_dir(env)}/{name}") for name in doomed)
        command += f" && rm -rf -- {paths}"
    pause_point("finish")
    with ssh.session(env, host, "finish") as h:
        h.run(command, "finish", timeout=120, quiet=True)
    return doomed

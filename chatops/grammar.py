"""The chat command language: every Slack ``/deploy`` text and every ``chatops`` CLI line is
read here.

:func:`parse` turns text into a :class:`Command` or raises :class:`CommandError`, whose message is
a short reply for the user that shows the right syntax. Nothing runs before the whole text has
been read and every app, environment, host, task and ref in it validated, so a command that
parses is safe to hand to flows (no shell metacharacters, no ``..``, no control characters).

    >>> parse("shop@feature/login to staging")
    Command(action='deploy', app='shop', ref='feature/login', environment='staging', hosts=None, \
task='deploy', force=False, message=None, verify=False)
    >>> parse("deploy:migrate shop to prod/web-1,web-2!").hosts
    ['web-1', 'web-2']
    >>> parse("lock production on shop: release freeze").message
    'release freeze'
    >>> steal = parse("lock production on shop steal: hotfix")
    >>> steal.action, steal.force, steal.message, parse("lock prod steal on shop").force
    ('lock', True, 'hotfix', True)
    >>> parse("acme-inc/api@topic to staging").app, parse("lock staging to acme-inc/api").app
    ('acme-inc/api', 'acme-inc/api')
    >>> abort = parse("abort shop in stg")
    >>> abort.action, abort.app, abort.environment
    ('abort', 'shop', 'staging')
    >>> dry = parse("noop shop@feature-x to staging")
    >>> dry.action, dry.app, dry.ref, dry.environment
    ('noop', 'shop', 'feature-x', 'staging')
    >>> freeze = parse("freeze prod: release week")
    >>> freeze.action, freeze.environment, freeze.message, parse("unfreeze staging").action
    ('freeze', 'production', 'release week', 'unfreeze')

The forms (keywords are case-insensitive, extra whitespace is ignored, ``!`` at the end forces):

* ``[deploy] APP[@REF] [to|in|on ENV[/HOST1,HOST2]]`` — ``deploy!`` forces, ``deploy:TASK`` runs
  the app's task ``TASK``.
* ``deploys APP[@REF] [in ENV]`` (recent deploys), ``where APP`` or ``where can i deploy APP``,
  ``latest APP [on ENV]``, ``status [APP [in ENV]] [verify]`` (``verify`` reads every host).
* ``rollback APP in|on|to ENV [to REF]`` (without ``REF``: the release that ran before).
* ``abort APP in|on|to ENV``: stop the deploy or rollback running there; hosts it switched go
  back to the release they ran before.
* ``lock ENV on|to APP [steal][: MESSAGE]`` (``steal``, or ``!``, takes over someone else's
  lock; they are told), ``unlock ENV on|to APP``, ``unlock all [on APP]``,
  ``check ENV on|to APP``, ``help``.
* ``noop APP[@REF] [to ENV[/HOSTS]]``: a dry run, every check a deploy makes and what it
  would change, touching nothing.
* ``freeze ENV[: MESSAGE]``, ``unfreeze ENV``: no app deploys to environments named ``ENV``
  (rollbacks still run) until it is unfrozen.

An APP is an app's name (``shop``) or its GitHub repository (``acme-inc/api``). ``APP@REF``
always splits at the ``@``. The hubot form ``APP/REF`` (``shop/feature/login``) works too: a word
with ``/`` and no ``@`` stays whole here, and :func:`split_app` decides with the configured apps
(a configured repository wins, else the part before the first ``/`` must be an app).

A trailing ``!`` is accepted on deploy, rollback, lock and unlock only, and always means force,
also right after a lock message (``lock prod on shop: freeze!`` takes the lock over, "freeze").
A forced deploy or rollback skips GitHub's required checks, never a lock: a lock stops everyone
but its holder until it is released or taken over.
``prod`` and ``stg`` stand for ``production`` and ``staging``. A ref or environment that is not
given stays ``None``: the app's configured defaults fill it in later. After a leading ``deploy``
the next word is always an app, so an app that shares its name with a keyword (``status``) is
deployed with ``deploy status``.
"""

import difflib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from model.errors import ChatopsError

Action = Literal[
    "deploy",
    "rollback",
    "abort",
    "status",
    "deploys",
    "where",
    "latest",
    "lock",
    "unlock",
    "unlock_all",
    "check",
    "freeze",
    "unfreeze",
    "noop",
    "help",
]
ACTIONS: frozenset[str] = frozenset(get_args(Action))
FORCEABLE_ACTIONS: frozenset[str] = frozenset(
    {"deploy", "rollback", "lock", "unlock", "unlock_all"}
)
"""Actions a trailing ``!`` applies to; on the read-only ones it is refused."""

ENVIRONMENT_ALIASES: dict[str, str] = {"prod": "production", "stg": "staging"}

MAX_TEXT_LENGTH = 1000
MAX_NAME_LENGTH = 63
MAX_HOST_LENGTH = 253
MAX_REF_LENGTH = 255
MAX_MESSAGE_LENGTH = 200

HELP_TEXT = """\
After /deploy or `chatops` (`deploy` optional; prod, stg; APP: name or owner/repo):
  shop                              the default branch to the default env
  shop@feature/login to staging     a branch, tag or sha (or shop/feature/login)
  shop to production!               `!` skips required checks (not a lock)
  shop to staging/web-1,web-2       these hosts only
  deploy:migrate shop to staging    run the app's `migrate` task
  noop shop@v2 to staging           dry run: the checks, what would change
  rollback shop in production [to v1.4.2]  ·  abort shop in staging
  status [shop [in staging]] [verify]  what runs where; verify reads hosts
  where shop  ·  latest shop on staging  ·  deploys shop in production
  lock prod on shop: why  ·  unlock prod on shop  ·  unlock all
  lock prod on shop steal           take someone's lock (they're told)
  check production on shop          may shop deploy to production now?
  freeze production: why  ·  unfreeze production  no app deploys there"""

_ENV_WORDS = ("to", "in", "on")  # shop to staging
_OWNER_WORDS = ("on", "in", "for", "to")  # lock production on shop; slashdeploy: to shop
_VERIFY_WORDS = ("verify", "--verify")
_HELP_WORDS = ("help", "?", "-h", "--help")
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_HOST_CHARS = _NAME_CHARS | {".", ":"}
_PORT = re.compile(r"[0-9]{1,5}")
_REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9_.-]{1,100}")
_SHA = re.compile(r"[0-9a-fA-F]{7,40}")
# Stricter than git: of the characters git allows in a ref, only those no shell treats specially.
_REF_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/+@")
_DEPLOY_WORD = re.compile(r"deploy(?P<bang>!)?(?::(?P<task>\S*?))?(?P<bang2>!)?")
# Invisible characters that reorder text: what a user reads would not be what runs.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


class CommandError(ChatopsError, ValueError):
    """Text that is not a command we can run; ``str(error)`` is a short reply for the user."""


@dataclass(frozen=True)
class Command:
    """One parsed command. Fields a form does not use keep their defaults.

    ``ref``/``environment`` are ``None`` when not typed (the app's defaults apply; for
    ``rollback`` a ``None`` ref means the previous release). ``hosts`` is ``None`` for all hosts
    of the environment. ``task`` is ``"deploy"`` unless ``deploy:TASK`` was used. ``message`` is
    the free-text lock reason: display it (escaped), never run it. ``app`` is as typed: an app
    name, an ``owner/repo``, or (where a ref may follow) ``app/ref``; see :func:`split_app`.
    ``verify`` asks ``status`` to read every host instead of trusting the record.
    """

    action: Action
    app: str | None = None
    ref: str | None = None
    environment: str | None = None
    hosts: list[str] | None = field(default=None, hash=False)
    task: str = "deploy"
    force: bool = False
    message: str | None = None
    verify: bool = False


def parse(text: str) -> Command:
    """Read one command; raise :class:`CommandError` (a ``ValueError``) if it cannot be read.

    Empty text is ``help``. See the module docstring for the forms.
    """
    words, force = _take_force(_words(text))
    command = _dispatch(words, force)
    if command.force and command.action not in FORCEABLE_ACTIONS:
        raise CommandError(
            f"`!` (force) does not apply to `{command.action}`; type it without the `!`."
        )
    return command


def validate_name(kind: str, name: str) -> str:
    """Return ``name`` lower-cased if it is a valid ``kind`` name, else raise CommandError.

    App, environment and task names are ``[a-z0-9][a-z0-9-]*``, at most 63 characters (upper
    case is accepted and lowered). ``kind="host"`` also allows dot-separated labels and a
    ``:PORT`` suffix, as hosts are written in an environment (``web-1.internal:2222``).
    """
    if not isinstance(name, str) or not name:
        raise CommandError(f"the {kind} name is missing.")
    if kind == "host":
        return _validate_host(name)
    _reject_bad_char(kind, name, _NAME_CHARS, "letters, digits and '-'", fold_case=True)
    lowered = name.lower()
    if len(lowered) > MAX_NAME_LENGTH:
        raise CommandError(f"{kind} {_show(name)} is longer than {MAX_NAME_LENGTH} characters.")
    if not _NAME.fullmatch(lowered):
        raise CommandError(f"{kind} {_show(name)} must start with a letter or digit.")
    return lowered


def validate_ref(ref: str) -> str:
    """Return ``ref`` unchanged if it is a safe git branch, tag or commit sha, else raise.

    Accepts a 7–40 digit hex sha or a name following ``git check-ref-format`` (no ``..``, no
    ``//``, no leading ``-`` or ``/``, no trailing ``/``, ``.`` or ``.lock``, no component starting
    with ``.``, at most 255 characters) written with letters, digits and ``. _ - / + @`` only.
    """
    if not isinstance(ref, str) or not ref:
        raise CommandError("the ref (branch, tag or sha) is missing.")
    if len(ref) > MAX_REF_LENGTH:
        raise CommandError(f"ref {_show(ref)} is longer than {MAX_REF_LENGTH} characters.")
    if _SHA.fullmatch(ref):
        return ref
    _reject_bad_char("ref", ref, _REF_CHARS, "letters, digits and . _ - / + @", fold_case=False)
    problem = _ref_shape_problem(ref)
    if problem:
        raise CommandError(f"ref {_show(ref)} {problem}.")
    return ref


# --- reading the text ------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    if not isinstance(text, str):
        raise CommandError("a command must be text.")
    if len(text) > MAX_TEXT_LENGTH:
        raise CommandError(
            f"that command is {len(text)} characters long; the limit is {MAX_TEXT_LENGTH}."
        )
    for char in text:
        if _is_control(char):
            raise CommandError(f"the command contains the control character {_char(char)}.")
    return text.split()


def _is_control(char: str) -> bool:
    if char in "\t\n\r":
        return False  # whitespace from multi-line chat messages
    return unicodedata.category(char) in ("Cc", "Cs") or char in _BIDI_CONTROLS


def _take_force(words: list[str]) -> tuple[list[str], bool]:
    """Strip a trailing ``!`` (attached to the last word or on its own)."""
    if not words or not words[-1].endswith("!"):
        return words, False
    last = words[-1][:-1]
    return (words[:-1] + [last] if last else words[:-1]), True


def _dispatch(words: list[str], force: bool) -> Command:
    if not words:
        return Command("help", force=force)
    head, rest = words[0].lower(), words[1:]
    if head in _HELP_WORDS:
        return Command("help", force=force)
    deploy_word = _DEPLOY_WORD.fullmatch(head)
    if deploy_word:
        return _deploy(rest, _task(deploy_word), force or _bangs(deploy_word))
    reader = _READERS.get(head)
    if reader:
        return reader(rest, force)
    return _deploy(words, "deploy", force)


def _task(deploy_word: re.Match[str]) -> str:
    task = deploy_word.group("task")
    if task is None:
        return "deploy"
    if not task:
        raise CommandError("name the task after `deploy:`, e.g. `deploy:migrate shop to staging`.")
    return validate_name("task", task)


def _bangs(deploy_word: re.Match[str]) -> bool:
    return bool(deploy_word.group("bang") or deploy_word.group("bang2"))


# --- the forms -------------------------------------------------------------------------------


def _deploy(words: list[str], task: str, force: bool) -> Command:
    if not words:
        raise CommandError("which app? e.g. `deploy shop to staging` (or `help`).")
    app, ref = _target(words[0])
    environment, hosts = _place(words[1:], app, allow_hosts=True)
    return Command("deploy", app, ref, environment, hosts, task, force)


def _noop(words: list[str], force: bool) -> Command:
    if not words:
        raise CommandError("which app? e.g. `noop shop@feature-x to staging`.")
    app, ref = _target(words[0])
    environment, hosts = _place(words[1:], app, allow_hosts=True)
    return Command("noop", app, ref, environment, hosts)


def _deploys(words: list[str], force: bool) -> Command:
    if not words:
        raise CommandError("which app? e.g. `deploys shop in production`.")
    app, ref = _target(words[0])
    environment, _ = _place(words[1:], app, allow_hosts=False)
    return Command("deploys", app, ref, environment, force=force)


def _where(words: list[str], force: bool) -> Command:
    if [word.lower() for word in words[:3]] == ["can", "i", "deploy"]:
        words = words[3:]
    if words and words[-1] == "?":
        words = words[:-1]
    if len(words) != 1 or words[0] in ("?", ""):
        raise CommandError("write `where APP`, e.g. `where shop` (or `where can i deploy shop`).")
    return Command("where", validate_app(words[0].removesuffix("?")), force=force)


def _latest(words: list[str], force: bool) -> Command:
    if not words:
        raise CommandError("which app? e.g. `latest shop on staging`.")
    app = validate_app(words[0])
    environment, _ = _place(words[1:], app, allow_hosts=False)
    return Command("latest", app, environment=environment, force=force)


def _status(words: list[str], force: bool) -> Command:
    verify = bool(words) and words[-1].lower() in _VERIFY_WORDS
    words = words[:-1] if verify else words
    if not words:
        return Command("status", force=force, verify=verify)
    app = validate_app(words[0])
    environment, _ = _place(words[1:], app, allow_hosts=False)
    return Command("status", app, environment=environment, force=force, verify=verify)


def _rollback(words: list[str], force: bool) -> Command:
    usage = "write `rollback APP in ENV [to REF]`, e.g. `rollback shop in production to v1.4.2`."
    if len(words) < 3 or words[1].lower() not in _ENV_WORDS:
        raise CommandError(f"say where to roll back: {usage}")
    app = validate_app(words[0])
    to_ref = next((i for i in range(3, len(words)) if words[i].lower() == "to"), len(words))
    environment, hosts = _environment_spec(words[2:to_ref], allow_hosts=True)
    ref = None
    if to_ref < len(words):
        if len(words) != to_ref + 2:
            raise CommandError(f"give one ref after `to`: {usage}")
        ref = validate_ref(words[to_ref + 1])
    return Command("rollback", app, ref, environment, hosts, force=force)


def _abort(words: list[str], force: bool) -> Command:
    if len(words) != 3 or words[1].lower() not in _ENV_WORDS:
        raise CommandError("write `abort APP in ENV`, e.g. `abort shop in staging`.")
    app = validate_app(words[0])
    environment, _ = _environment_spec(words[2:], allow_hosts=False)
    return Command("abort", app, environment=environment, force=force)


def _lock(words: list[str], force: bool) -> Command:
    usage = (
        "write `lock ENV on APP [steal][: MESSAGE]`, e.g. `lock production on shop: release "
        "freeze`."
    )
    head, _, message = " ".join(words).partition(":")
    parts = head.split()
    if len(parts) >= 2 and parts[1].lower() == "steal":  # lock production steal on shop
        del parts[1]
        force = True
    if len(parts) == 4 and parts[3].lower() in ("steal", "steal!"):  # lock prod on shop steal
        force = True
        parts[2] += "!" if parts.pop().endswith("!") else ""
    if len(parts) < 3 or parts[1].lower() not in _OWNER_WORDS:
        raise CommandError(usage)
    if len(parts) > 3:
        raise CommandError(f"put the message after a colon: {usage}")
    app_part = parts[2]
    if app_part.endswith("!"):  # lock production on shop!: message
        app_part, force = app_part[:-1], True
    environment = _environment(parts[0])
    message = message.strip() or None
    if message and len(message) > MAX_MESSAGE_LENGTH:
        raise CommandError(f"keep the lock message under {MAX_MESSAGE_LENGTH} characters.")
    return Command(
        "lock", validate_app(app_part), environment=environment, force=force, message=message
    )


def _unlock(words: list[str], force: bool) -> Command:
    if words and words[0].lower() == "all":
        if len(words) == 1:
            return Command("unlock_all", force=force)
        if len(words) == 3 and words[1].lower() in _OWNER_WORDS:
            return Command("unlock_all", validate_app(words[2]), force=force)
    environment, app = _environment_on_app(words, "unlock")
    return Command("unlock", app, environment=environment, force=force)


def _freeze(words: list[str], force: bool) -> Command:
    head, _, message = " ".join(words).partition(":")
    parts = head.split()
    if len(parts) != 1:
        raise CommandError("write `freeze ENV[: MESSAGE]`, e.g. `freeze production: release week`.")
    message = message.strip() or None
    if message and len(message) > MAX_MESSAGE_LENGTH:
        raise CommandError(f"keep the freeze message under {MAX_MESSAGE_LENGTH} characters.")
    return Command("freeze", environment=_environment(parts[0]), force=force, message=message)


def _unfreeze(words: list[str], force: bool) -> Command:
    if len(words) != 1:
        raise CommandError("write `unfreeze ENV`, e.g. `unfreeze production`.")
    return Command("unfreeze", environment=_environment(words[0]), force=force)


def _check(words: list[str], force: bool) -> Command:
    environment, app = _environment_on_app(words, "check")
    return Command("check", app, environment=environment, force=force)


_READERS = {
    "deploys": _deploys,
    "where": _where,
    "latest": _latest,
    "status": _status,
    "rollback": _rollback,
    "abort": _abort,
    "lock": _lock,
    "unlock": _unlock,
    "check": _check,
    "freeze": _freeze,
    "unfreeze": _unfreeze,
    "noop": _noop,
}


# --- parts of the forms ----------------------------------------------------------------------


def _target(word: str) -> tuple[str, str | None]:
    """``APP``, ``APP@REF``, ``owner/repo@REF`` or ``APP/REF`` → (app as typed, ref or None)."""
    app_part, sep, ref_part = word.partition("@")
    if not app_part:
        raise CommandError(f"the app name is missing before `@` in {_show(word)}.")
    app = validate_app(app_part, ref_allowed=not sep)
    if not sep:
        return app, None
    if not ref_part:
        raise CommandError(f"the ref is missing after `@`: write `{app}@BRANCH`.")
    return app, validate_ref(ref_part)


def _place(words: list[str], app: str, allow_hosts: bool) -> tuple[str | None, list[str] | None]:
    """``[to|in|on ENV[/HOSTS]]`` after an app → (environment or None, hosts or None)."""
    if not words:
        return None, None
    if words[0].lower() not in _ENV_WORDS:
        raise CommandError(
            f"unexpected {_show(words[0])} after `{app}`: write `{app} to ENVIRONMENT` "
            f"or `{app}@BRANCH`."
        )
    if len(words) == 1:
        raise CommandError(f"which environment? e.g. `{app} {words[0].lower()} staging`.")
    return _environment_spec(words[1:], allow_hosts)


def _environment_spec(words: list[str], allow_hosts: bool) -> tuple[str, list[str] | None]:
    """``ENV`` or ``ENV/HOST1,HOST2`` (spaces around ``/`` and ``,`` tolerated)."""
    merged: list[str] = []
    for word in words:
        if merged and (merged[-1][-1] in "/," or word[0] in "/,"):
            merged[-1] += word
        else:
            merged.append(word)
    if not merged:
        raise CommandError("which environment? e.g. `shop to staging`.")
    if len(merged) > 1:
        raise CommandError(f"unexpected {_show(' '.join(merged[1:]))} after the environment.")
    spec = merged[0]
    name, slash, host_list = spec.partition("/")
    environment = _environment(name)
    if not slash:
        return environment, None
    if not allow_hosts:
        raise CommandError(f"this command takes no host list: drop {_show(slash + host_list)}.")
    if not all(host_list.split(",")):
        raise CommandError(f"list hosts after `/`, e.g. `{environment}/web-1,web-2`.")
    hosts = [validate_name("host", host) for host in host_list.split(",")]
    return environment, list(dict.fromkeys(hosts))


def _environment_on_app(words: list[str], verb: str) -> tuple[str, str]:
    if len(words) != 3 or words[1].lower() not in _OWNER_WORDS:
        raise CommandError(f"write `{verb} ENVIRONMENT on APP`, e.g. `{verb} production on shop`.")
    return _environment(words[0]), validate_app(words[2])


def validate_app(word: str, ref_allowed: bool = False) -> str:
    """An app as typed: a name (lower-cased), an ``owner/repo``, or ``app/ref`` where a ref may
    follow; anything else raises :class:`CommandError`."""
    if "/" not in word:
        return validate_name("app", word)
    if ".." in word:
        raise CommandError(f"app {_show(word)} contains '..'.")
    if _REPOSITORY.fullmatch(word):
        return word
    if ref_allowed:
        head, _, rest = word.partition("/")
        validate_ref(rest)
        return f"{validate_name('app', head)}/{rest}"
    raise CommandError(
        f"app {_show(word)} is neither an app name nor a GitHub repository (owner/name)."
    )


def split_app(word: str, repositories: Mapping[str, str]) -> tuple[str, str | None]:
    """Which configured app ``word`` names, and the ref it carries (hubot's ``APP/REF``).

    ``repositories`` maps each app name to its GitHub repository. The rule, in order: an app
    name; the repository of exactly one app (GitHub ignores case); ``APP/REF``; ``OWNER/REPO/REF``.

    >>> apps = {"shop": "acme/shop", "api": "acme-inc/api", "api-eu": "acme-inc/api-eu"}
    >>> split_app("shop", apps), split_app("ACME-inc/api", apps)
    (('shop', None), ('api', None))
    >>> split_app("shop/feature/login", apps), split_app("acme-inc/api/topic", apps)
    (('shop', 'feature/login'), ('api', 'topic'))
    >>> try:
    ...     split_app("shopp", apps)
    ... except CommandError as exc:
    ...     print(exc)
    I don't know an app called `shopp` (did you mean `shop`?). Apps: `api`, `api-eu`, `shop`.
    """
    if word in repositories:
        return word, None
    by_repo = [name for name, repo in sorted(repositories.items()) if repo.lower() == word.lower()]
    if len(by_repo) > 1:
        names = ", ".join(f"`{n}`" for n in by_repo)
        raise CommandError(f"`{word}` is the repository of {names}: name the app instead.")
    if by_repo:
        return by_repo[0], None
    head, _, rest = word.partition("/")
    if rest and head in repositories:
        return head, validate_ref(rest)
    parts = word.split("/", 2)
    if len(parts) == 3:
        app, _ = split_app(f"{parts[0]}/{parts[1]}", repositories)
        return app, validate_ref(parts[2])
    known = ", ".join(f"`{n}`" for n in sorted(repositories)) or "none yet"
    guess = difflib.get_close_matches(head, list(repositories), n=1, cutoff=0.6)
    hint = f" (did you mean `{guess[0]}`?)" if guess else ""
    raise CommandError(f"I don't know an app called `{word}`{hint}. Apps: {known}.")


def _environment(word: str) -> str:
    name = validate_name("environment", word)
    return ENVIRONMENT_ALIASES.get(name, name)


# --- pull request comments -------------------------------------------------------------------

PULL_REQUEST_HELP = """\
On a pull request (a comment that starts with `.`; first line only):
  .deploy                    this pull request's head to the default environment
  .deploy to staging         ... to staging (staging/web-1,web-2: those hosts only)
  .deploy! to qa             `!` skips required checks (not a lock)
  .deploy:migrate to staging run the app's `migrate` task
  .noop [to staging]         dry run: the checks, what would change
  .lock staging[: why]  ·  .unlock staging  (`.lock staging steal` takes someone's lock)
  .wcid                      where can I deploy: environments, locks, what runs there
  .help                      this text"""

PULL_REQUEST_PREFIX = "."
_PULL_REQUEST_WORDS = frozenset({"noop", "lock", "unlock", "wcid", "where", "help"})


def parse_pull_request(text: str) -> Command | None:
    """The command a pull request comment types (``.deploy to staging``), or None when the
    comment is not meant for us (no ``.`` and one of our words at its start).

    A pull request names its app (the one of its repository) and its ref (its head), so the
    forms name neither: the command's ``app`` and ``ref`` stay ``None`` for the caller to fill
    in. Only the first line counts; the rest of the comment is for people.

    >>> parse_pull_request(".deploy to staging")
    Command(action='deploy', app=None, ref=None, environment='staging', hosts=None, \
task='deploy', force=False, message=None, verify=False)
    >>> force = parse_pull_request(".deploy! to qa")
    >>> force.action, force.environment, force.force
    ('deploy', 'qa', True)
    >>> lock = parse_pull_request(".lock stg: demo at 3pm")
    >>> lock.action, lock.environment, lock.message
    ('lock', 'staging', 'demo at 3pm')
    >>> parse_pull_request(".wcid").action, parse_pull_request(".noop").action
    ('where', 'noop')
    >>> print(parse_pull_request("...and one more thing"), parse_pull_request("LGTM"))
    None None
    """
    line = text.strip().split("\n", 1)[0].strip() if isinstance(text, str) else ""
    if not line.startswith(PULL_REQUEST_PREFIX):
        return None
    words = _words(line[len(PULL_REQUEST_PREFIX) :])
    if not words:
        return None
    head = words[0].lower().rstrip("!")
    if not (_DEPLOY_WORD.fullmatch(head) or head in _PULL_REQUEST_WORDS):
        return None
    words, force = _take_force(words)
    first = words[0].lower()
    if first.endswith("!") and not _DEPLOY_WORD.fullmatch(first):  # .noop! to staging
        first, force = first[:-1], True
    command = _pull_request_command(first, words[1:], force)
    if command.force and command.action not in FORCEABLE_ACTIONS:
        raise CommandError(
            f"`!` (force) does not apply to `.{command.action}`; type it without the `!`."
        )
    return command


def _pull_request_command(head: str, rest: list[str], force: bool) -> Command:
    deploy_word = _DEPLOY_WORD.fullmatch(head)
    if deploy_word:
        environment, hosts = _pull_request_place(rest, "deploy")
        return Command(
            "deploy",
            None,
            None,
            environment,
            hosts,
            _task(deploy_word),
            force or _bangs(deploy_word),
        )
    if head == "noop":
        environment, hosts = _pull_request_place(rest, "noop")
        return Command("noop", environment=environment, hosts=hosts, force=force)
    if head in ("wcid", "where", "help"):
        if rest:
            raise CommandError(f"`.{head}` takes nothing after it.")
        return Command("help" if head == "help" else "where", force=force)
    if head == "lock":
        return _pull_request_lock(rest, force)
    if len(rest) != 1:
        raise CommandError("write `.unlock ENV`, e.g. `.unlock staging`.")
    return Command("unlock", environment=_environment(rest[0]), force=force)


def _pull_request_place(words: list[str], verb: str) -> tuple[str | None, list[str] | None]:
    """``[to|in|on ENV[/HOSTS]]`` after ``.deploy`` or ``.noop``."""
    if not words:
        return None, None
    if words[0].lower() not in _ENV_WORDS or len(words) == 1:
        raise CommandError(
            f"write `.{verb} [to ENV]`, e.g. `.{verb} to staging`: a pull request deploys its "
            "own head, so name no app or branch."
        )
    return _environment_spec(words[1:], allow_hosts=True)


def _pull_request_lock(words: list[str], force: bool) -> Command:
    usage = "write `.lock ENV [steal][: MESSAGE]`, e.g. `.lock staging: demo at 3pm`."
    head, _, message = " ".join(words).partition(":")
    parts = head.split()
    if len(parts) == 2 and parts[1].lower() == "steal":
        parts, force = parts[:1], True
    if len(parts) != 1:
        raise CommandError(usage)
    message = message.strip() or None
    if message and len(message) > MAX_MESSAGE_LENGTH:
        raise CommandError(f"keep the lock message under {MAX_MESSAGE_LENGTH} characters.")
    return Command("lock", environment=_environment(parts[0]), force=force, message=message)


# --- validation helpers ----------------------------------------------------------------------


def _validate_host(host: str) -> str:
    lowered = host.lower()
    _reject_bad_char("host", host, _HOST_CHARS, "letters, digits, '-', '.' and :PORT", True)
    name, colon, port = lowered.partition(":")
    if colon and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
        raise CommandError(f"host {_show(host)} has a bad port; write `name:PORT`.")
    if len(name) > MAX_HOST_LENGTH:
        raise CommandError(f"host {_show(host)} is longer than {MAX_HOST_LENGTH} characters.")
    for label in name.split("."):
        if not _NAME.fullmatch(label) or len(label) > MAX_NAME_LENGTH:
            raise CommandError(
                f"host {_show(host)} is not a host name (dot-separated letters, digits and '-')."
            )
    return lowered


def _reject_bad_char(
    kind: str, value: str, allowed: frozenset[str], allowed_text: str, fold_case: bool
) -> None:
    """Raise naming the first thing in ``value`` that may not appear in a ``kind``."""
    if ".." in value:
        raise CommandError(f"{kind} {_show(value)} contains '..'.")
    for char in value:
        # ASCII first: some non-ASCII letters lower-case into ASCII ones (KELVIN SIGN -> k).
        if not char.isascii() or (char.lower() if fold_case else char) not in allowed:
            raise CommandError(
                f"{kind} {_show(value)} contains {_char(char)}; use only {allowed_text}."
            )


def _ref_shape_problem(ref: str) -> str | None:
    """What ``git check-ref-format`` would object to in ``ref`` (characters already checked)."""
    if ref.startswith("-"):
        return "must not start with '-'"
    if ref.startswith("/") or ref.endswith("/"):
        return "must not start or end with '/'"
    if "//" in ref:
        return "contains '//'"
    if ref.endswith("."):
        return "must not end with '.'"
    if ref == "@" or "@{" in ref:
        return "is not a usable ref"
    for part in ref.split("/"):
        if part.startswith("."):
            return f"has a part starting with '.' ({_show(part)})"
        if part.endswith(".lock"):
            return f"has a part ending in '.lock' ({_show(part)})"
    return None


def _char(char: str) -> str:
    """Name one character so that look-alikes and invisible ones can be told apart."""
    if char.isascii() and char.isprintable():
        return repr(char)
    return f"{char!r} (U+{ord(char):04X})"


def _show(value: str, limit: int = 40) -> str:
    """Quote a piece of user text for an error reply, shortened and with escapes visible."""
    shown = value if len(value) <= limit else value[:limit] + "…"
    return repr(shown)

"""The chat command language: what users type, what it means, and what is refused before it runs."""

import re
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatops import grammar
from chatops.grammar import (
    ACTIONS,
    HELP_TEXT,
    MAX_MESSAGE_LENGTH,
    Command,
    CommandError,
    parse,
    split_app,
    validate_name,
    validate_ref,
)

FUZZ = settings(max_examples=100, deadline=None)
SHELL_SPECIAL = set(";|&$`<>'\"\\(){}[]*?~!#^%= \t\n\r")


def C(action: str, app: str | None = "shop", env: str | None = None, **fields) -> Command:
    """A command as the tables below expect it; app ``shop`` unless told otherwise."""
    return Command(action, app=app, environment=env, **fields)  # type: ignore[arg-type]


def D(**fields) -> Command:
    """An expected deploy command."""
    return C("deploy", **fields)


# --- what each form means --------------------------------------------------------------------

READS = [
    # /deploy text: APP[@REF] [to|on ENV][!]
    ("shop", D()),
    ("shop to staging", D(env="staging")),
    ("shop on staging", D(env="staging")),
    ("shop in staging", D(env="staging")),
    ("shop@feature/login to staging", D(ref="feature/login", env="staging")),
    ("shop@v1.4.2 to production!", D(ref="v1.4.2", env="production", force=True)),
    ("shop to production !", D(env="production", force=True)),
    ("shop!", D(force=True)),
    ("shop@0a1b2c3", D(ref="0a1b2c3")),
    ("shop@" + "f" * 40, D(ref="f" * 40)),
    # deploy[!] APP[/REF] [to|in|on ENV[/HOSTS]]: APP/REF stays whole, split_app decides
    ("deploy shop", D()),
    ("deploy shop to staging", D(env="staging")),
    ("deploy shop/feature/login to staging", D(app="shop/feature/login", env="staging")),
    ("deploy shop/release/2024-06/hotfix-1 in stg",
     D(app="shop/release/2024-06/hotfix-1", env="staging")),
    # repository-qualified apps; APP@REF always splits at the @
    ("acme-inc/api@topic to staging", D(app="acme-inc/api", ref="topic", env="staging")),
    ("Acme-Inc/API to staging", D(app="Acme-Inc/API", env="staging")),
    ("acme-inc/api@feature/x@y", D(app="acme-inc/api", ref="feature/x@y")),
    ("deploy! shop to prod", D(env="production", force=True)),
    ("deploy shop@main to staging", D(ref="main", env="staging")),
    ("deploy shop to staging/web-1", D(env="staging", hosts=["web-1"])),
    ("deploy shop to staging/web-1,web-2", D(env="staging", hosts=["web-1", "web-2"])),
    ("deploy shop to staging / web-1 , web-2", D(env="staging", hosts=["web-1", "web-2"])),
    ("deploy shop to staging/web-1,web-1", D(env="staging", hosts=["web-1"])),
    ("shop to qa/10.213.1.2,127.0.0.21:2222",
     D(env="qa", hosts=["10.213.1.2", "127.0.0.21:2222"])),
    ("shop to staging/WEB-1.Internal", D(env="staging", hosts=["web-1.internal"])),
    # deploy:TASK
    ("deploy:migrate shop to staging", D(env="staging", task="migrate")),
    ("deploy:migrate! shop/main to prod",
     D(app="shop/main", env="production", task="migrate", force=True)),
    ("deploy!:warm-cache shop", D(task="warm-cache", force=True)),
    ("DEPLOY:Migrate shop", D(task="migrate")),
    # keywords are case-insensitive, names are lowered, refs keep their case
    ("Deploy Shop@Feature/Login TO Staging", D(ref="Feature/Login", env="staging")),
    ("  shop\t to \n staging  ", D(env="staging")),
    # aliases
    ("shop to prod", D(env="production")),
    ("shop to stg", D(env="staging")),
    ("shop to PROD/web-1", D(env="production", hosts=["web-1"])),
    # a leading deploy makes the next word an app, even a keyword
    ("deploy status to staging", D(app="status", env="staging")),
    # recent deploys
    ("deploys shop", C("deploys")),
    ("deploys shop in prod", C("deploys", env="production")),
    ("deploys shop/feature/login in staging",
     C("deploys", app="shop/feature/login", env="staging")),
    ("deploys shop@feature/login in staging", C("deploys", ref="feature/login", env="staging")),
    # where
    ("where shop", C("where")),
    ("where can i deploy shop", C("where")),
    ("Where can I deploy shop?", C("where")),
    ("where can i deploy shop ?", C("where")),
    # latest
    ("latest shop", C("latest")),
    ("latest shop on prod", C("latest", env="production")),
    # locks
    ("lock production on shop", C("lock", env="production")),
    ("lock prod on shop: release freeze", C("lock", env="production", message="release freeze")),
    ("lock prod on shop:release freeze", C("lock", env="production", message="release freeze")),
    ("lock prod on shop : don't deploy; QA running",
     C("lock", env="production", message="don't deploy; QA running")),
    ("lock prod on shop!", C("lock", env="production", force=True)),
    ("lock prod on shop: freeze!", C("lock", env="production", message="freeze", force=True)),
    ("lock prod on shop!: freeze", C("lock", env="production", message="freeze", force=True)),
    ("lock prod on shop steal", C("lock", env="production", force=True)),
    ("lock prod steal on shop", C("lock", env="production", force=True)),
    ("LOCK prod on shop Steal: hotfix", C("lock", env="production", message="hotfix", force=True)),
    ("lock prod on shop steal!: x", C("lock", env="production", message="x", force=True)),
    ("lock prod on shop: see http://ci/x: red",
     C("lock", env="production", message="see http://ci/x: red")),
    ("unlock production on shop", C("unlock", env="production")),
    ("unlock stg on shop!", C("unlock", env="staging", force=True)),
    ("unlock all", C("unlock_all", app=None)),
    ("UNLOCK ALL", C("unlock_all", app=None)),
    ("unlock all on shop", C("unlock_all")),
    ("check production on shop", C("check", env="production")),
    # slashdeploy's habits: `to` in lock, unlock and check, repositories as apps
    ("lock staging to api", C("lock", app="api", env="staging")),
    ("unlock staging to api", C("unlock", app="api", env="staging")),
    ("check production to api", C("check", app="api", env="production")),
    ("lock staging on acme-inc/api: qa", C("lock", app="acme-inc/api", env="staging",
                                            message="qa")),
    ("where acme-inc/api", C("where", app="acme-inc/api")),
    # abort
    ("abort shop in staging", C("abort", env="staging")),
    ("ABORT shop on prod", C("abort", env="production")),
    ("abort acme-inc/api to stg", C("abort", app="acme-inc/api", env="staging")),
    ("deploy abort to staging", C("deploy", app="abort", env="staging")),
    # rollback and status
    ("rollback shop in production", C("rollback", env="production")),
    ("rollback shop on prod to v1.4.2", C("rollback", ref="v1.4.2", env="production")),
    ("rollback shop to production to 0a1b2c3", C("rollback", ref="0a1b2c3", env="production")),
    ("rollback shop in prod/web-1 to release/1.2",
     C("rollback", ref="release/1.2", env="production", hosts=["web-1"])),
    ("rollback shop in prod!", C("rollback", env="production", force=True)),
    ("status", C("status", app=None)),
    ("status shop", C("status")),
    ("status shop in prod", C("status", env="production")),
    ("status shop verify", C("status", verify=True)),
    ("status shop in prod --verify", C("status", env="production", verify=True)),
    ("status verify", C("status", app=None, verify=True)),
    # help
    ("help", C("help", app=None)),
    ("HELP", C("help", app=None)),
    ("", C("help", app=None)),
    ("   ", C("help", app=None)),
    ("help deploy", C("help", app=None)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), READS, ids=[text or "<empty>" for text, _ in READS])
def test_reads(text: str, expected: Command) -> None:
    assert parse(text) == expected


SAME = [
    ("deploy shop to staging", "shop to staging"),
    ("deploy shop/feature/login to staging", "shop@feature/login to staging"),
    ("deploy shop/feature/login to staging", "deploy shop@feature/login on staging"),
    ("deploy! shop to production", "shop to production!"),
    ("deploy shop to production", "shop to prod"),
    ("acme/shop@v1 to staging", "shop@v1 to staging"),
    ("acme/shop/v1 to staging", "shop/v1 to staging"),
    ("lock staging to acme/shop", "lock staging on shop"),
]
APPS = {"shop": "acme/shop", "api": "acme-inc/api", "api-eu": "acme-inc/api-eu"}


def meaning(text: str) -> tuple:
    """What a command means once the configured apps decide ``x/y``: (app, ref, the rest)."""
    command = parse(text)
    app, carried = split_app(command.app, APPS)
    return app, command.ref or carried, command.action, command.environment, command.force


@pytest.mark.parametrize(("one", "other"), SAME)
def test_both_ways_of_writing_a_deploy_mean_the_same(one: str, other: str) -> None:
    assert meaning(one) == meaning(other)


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("shop", ("shop", None)),
        ("acme/shop", ("shop", None)),
        ("ACME/Shop", ("shop", None)),
        ("shop/feature/login", ("shop", "feature/login")),
        ("acme-inc/api/topic", ("api", "topic")),
        ("acme-inc/api-eu", ("api-eu", None)),
    ],
)
def test_ambiguous_app_words_are_decided_by_the_configured_apps(word: str, expected) -> None:
    assert split_app(word, APPS) == expected


def test_a_configured_repository_wins_over_app_slash_ref() -> None:
    apps = {"acme": "acme/site", "api": "acme/api"}
    assert split_app("acme/api", apps) == ("api", None)
    assert split_app("acme/feature-x", apps) == ("acme", "feature-x")


def test_unknown_and_ambiguous_apps_say_what_is_known() -> None:
    with pytest.raises(CommandError, match=r"did you mean `shop`\?.*Apps: `api`, `api-eu`"):
        split_app("shopp", APPS)
    with pytest.raises(CommandError, match="repository of `a`, `b`: name the app"):
        split_app("acme/x", {"a": "acme/x", "b": "ACME/x"})


def test_defaults_are_left_to_the_app_configuration() -> None:
    command = parse("shop")
    assert command == D()
    assert (command.ref, command.environment, command.hosts) == (None, None, None)
    assert (command.task, command.force, command.message) == ("deploy", False, None)


def test_commands_are_immutable_values() -> None:
    command = parse("shop to staging/web-1")
    with pytest.raises(AttributeError):
        command.app = "other"  # type: ignore[misc]
    assert hash(command) == hash(parse("shop to staging/web-1"))


def test_every_example_in_the_help_text_parses() -> None:
    lines = HELP_TEXT.splitlines()[1:]
    examples = [
        re.split(r"\s{2,}", part.strip())[0].replace("[", "").replace("]", "")
        for line in lines
        for part in line.split("·")
    ]
    assert len(examples) >= 12
    for example in examples:
        assert parse(example).action in ACTIONS, example


def test_help_is_short_enough_for_a_chat_reply() -> None:
    assert len(HELP_TEXT) < 1000
    assert all(len(line) <= 100 for line in HELP_TEXT.splitlines())


# --- what is refused, and the reply says why -------------------------------------------------

REFUSED = [
    # shell metacharacters anywhere a name or ref goes
    ("shop;rm -rf / to staging", "';'"),
    ("shop@$(whoami) to staging", "'$'"),
    ("shop@`id`", "'`'"),
    ("shop@feature|tee", "'|'"),
    ("shop to staging&&reboot", "'&'"),
    ("shop to stag>ing", "'>'"),
    ("shop@it's", '"\'"'),
    ('shop@say"hi"', "'\"'"),
    ("shop@a\\b", "'\\\\'"),
    ("deploy:mig;rate shop", "';'"),
    ("shop to staging/web-1;reboot", "';'"),
    ("lock prod;x on shop", "';'"),
    ("shop to staging && rm -rf /", "unexpected '&& rm"),
    # refs: git check-ref-format rules
    ("shop@../../etc/passwd", "'..'"),
    ("shop@a..b", "'..'"),
    ("shop@-rf", "'-'"),
    ("shop@--upload-pack=evil", "'='"),
    ("deploy shop//x", "'/'"),
    ("shop@a//b", "'//'"),
    ("shop/feature/", "'/'"),
    ("shop@x.lock", "'.lock'"),
    ("shop@a.lock/b", "'.lock'"),
    ("shop@x.", "'.'"),
    ("shop@.hidden", "'.'"),
    ("shop@a/.b", "'.'"),
    ("shop@@", "not a usable ref"),
    ("shop@x@{1}", "'{'"),
    ("shop@x~1", "'~'"),
    ("shop@x^", "'^'"),
    ("shop@x:y", "':'"),
    ("shop@x?", "'?'"),
    ("shop@x*", "'*'"),
    ("shop@x[1]", "'['"),
    ("shop@" + "a" * 256, "255"),
    # names
    ("-shop to staging", "start with a letter or digit"),
    ("a" * 64, "63"),
    ("shop_app", "'_'"),
    ("shop to sta.ging", "'.'"),
    ("shop to staging/web_1", "'_'"),
    ("shop to staging/a..b", "'..'"),
    ("shop to staging/web-1:99999", "port"),
    ("shop to staging/.web", "not a host name"),
    ("\uff53hop", "U+FF53"),  # FULLWIDTH s
    ("sh\u212aop", "U+212A"),  # KELVIN SIGN, which lower-cases to an ASCII k
    # control characters and size
    ("shop\x00 to staging", "'\\x00'"),
    ("shop to staging\x1b[31m", "'\\x1b'"),
    ("shop\u202e to staging", "U+202E"),
    ("x" * 1001, "1001 characters"),
    # incomplete or unknown forms suggest the right syntax
    ("deploy", "deploy shop to staging"),
    ("deploy!", "deploy shop to staging"),
    ("deploy:", "deploy:migrate"),
    ("shop staging", "`shop to ENVIRONMENT`"),
    ("shop to", "`shop to staging`"),
    ("please deploy shop", "after `please`"),
    ("shop feature/login to staging", "`shop@BRANCH`"),
    ("shop@ to staging", "shop@BRANCH"),
    ("@main", "app name is missing"),
    ("deploys", "deploys shop in production"),
    ("deploys shop in staging/web-1", "no host list"),
    ("where", "where shop"),
    ("where shop staging", "where shop"),
    ("latest", "latest shop on staging"),
    ("rollback shop", "rollback APP in ENV"),
    ("rollback shop@v1 in prod", "'@'"),
    ("rollback shop in prod to", "one ref after `to`"),
    ("rollback shop in prod to v1 v2", "one ref after `to`"),
    ("abort shop", "abort APP in ENV"),
    ("abort shop staging", "abort APP in ENV"),
    ("abort shop in staging now", "abort APP in ENV"),
    ("abort shop in staging/web-1", "no host list"),
    ("abort shop@v2 in staging", "'@'"),
    ("abort shop in staging!", "does not apply to `abort`"),
    ("lock production", "lock ENV on APP"),
    ("lock production shop", "lock ENV on APP"),
    ("lock production on shop freeze please", "after a colon"),
    ("lock production on shop: " + "x" * (MAX_MESSAGE_LENGTH + 1), "200"),
    ("unlock production", "unlock ENVIRONMENT on APP"),
    ("unlock all of it", "unlock ENVIRONMENT on APP"),
    ("check shop", "check ENVIRONMENT on APP"),
    ("lock staging on acme/api/x", "neither an app name nor a GitHub repository"),
    ("where acme/api@v1", "neither an app name"),
    ("acme/.. to staging", "'..'"),
    ("shop to staging!!", "'!'"),
    # force only where it means something
    ("status!", "does not apply to `status`"),
    ("where shop!", "does not apply to `where`"),
    ("help!", "does not apply to `help`"),
    ("!", "does not apply"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "names"), REFUSED, ids=[t[:40] for t, _ in REFUSED])
def test_refuses_with_a_reply_naming_the_problem(text: str, names: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text)
    reply = str(caught.value)
    assert names in reply
    assert len(reply) <= 200 and "\n" not in reply


def test_command_error_is_a_value_error() -> None:
    assert issubclass(CommandError, ValueError)


def test_a_long_hostile_value_is_not_echoed_in_full() -> None:
    ref = "a;" * 400
    with pytest.raises(CommandError) as caught:
        parse(f"shop@{ref}")
    assert ref not in str(caught.value)
    assert len(str(caught.value)) < 150


def test_non_text_is_refused() -> None:
    with pytest.raises(CommandError):
        parse(b"shop to staging")  # type: ignore[arg-type]


# --- validate_ref / validate_name, shared with webhooks and the CLI --------------------------


@pytest.mark.parametrize(
    "ref",
    ["main", "feature/login", "v1.4.2", "release/2024-06/hotfix_1", "HEAD", "a+b", "user@x",
     "0a1b2c3", "F" * 40, "x" * 255],
)  # fmt: skip
def test_validate_ref_accepts_usual_refs_unchanged(ref: str) -> None:
    assert validate_ref(ref) == ref


@pytest.mark.parametrize(
    "ref",
    ["", "a..b", "-x", "/x", "x/", "a//b", "x.lock", "x.", ".x", "a/.b", "@", "a@{1}", "a b",
     "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "a\x7f", "x" * 256, "a;b", "$(x)", "caf\u00e9"],
)  # fmt: skip
def test_validate_ref_refuses(ref: str) -> None:
    with pytest.raises(CommandError):
        validate_ref(ref)


@pytest.mark.parametrize(
    ("kind", "name", "normalised"),
    [("app", "Shop", "shop"), ("environment", "qa-2", "qa-2"), ("task", "migrate", "migrate"),
     ("app", "9lives", "9lives"), ("host", "Web-1.Example.COM:2222", "web-1.example.com:2222"),
     ("host", "10.0.0.7", "10.0.0.7"), ("app", "a" * 63, "a" * 63)],
)  # fmt: skip
def test_validate_name_lowers_valid_names(kind: str, name: str, normalised: str) -> None:
    assert validate_name(kind, name) == normalised


@pytest.mark.parametrize(
    ("kind", "name"),
    [("app", ""), ("app", "-x"), ("app", "a.b"), ("app", "a b"), ("app", "a" * 64),
     ("environment", "st/g"), ("task", "mig:rate"), ("host", "a..b"), ("host", "a:"),
     ("host", "a:0"), ("host", "a:65536"), ("host", "-a"), ("host", "a_b"), ("host", "a.")],
)  # fmt: skip
def test_validate_name_refuses(kind: str, name: str) -> None:
    with pytest.raises(CommandError, match=kind):
        validate_name(kind, name)


ref_parts = st.text(alphabet="abcXYZ019._-+@/", min_size=1, max_size=30)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@given(ref=ref_parts)
@settings(max_examples=60, deadline=None)  # a git process each
def test_every_ref_we_accept_git_accepts(ref: str) -> None:
    try:
        validate_ref(ref)
    except CommandError:
        return
    git = subprocess.run(
        ["git", "check-ref-format", f"refs/heads/{ref}"], capture_output=True, check=False
    )
    assert git.returncode == 0, ref


# --- fuzzing: nothing but CommandError, and nothing unsafe gets through ------------------------


def assert_safe(command: Command) -> None:
    assert command.action in ACTIONS
    if command.app is not None:
        assert grammar.validate_app(command.app, ref_allowed=True) == command.app
        assert not SHELL_SPECIAL & set(command.app) and ".." not in command.app
    names = [("environment", command.environment), ("task", command.task)]
    names += [("host", host) for host in command.hosts or []]
    for kind, value in names:
        if value is not None:
            assert validate_name(kind, value) == value
            assert not SHELL_SPECIAL & set(value) and ".." not in value
    if command.ref is not None:
        assert validate_ref(command.ref) == command.ref
        assert not SHELL_SPECIAL & set(command.ref) and ".." not in command.ref
    if command.message is not None:
        assert command.message.isprintable() and len(command.message) <= MAX_MESSAGE_LENGTH


def parse_or_refuse(text: str) -> None:
    try:
        command = parse(text)
    except CommandError as error:
        assert str(error)
        return
    assert_safe(command)


@given(st.text(max_size=300))
@FUZZ
def test_fuzz_arbitrary_text(text: str) -> None:
    parse_or_refuse(text)


WORDS = [
    "deploy", "deploy!", "deploy:migrate", "deploy:", "deploys", "where", "can", "i", "latest",
    "lock", "unlock", "all", "check", "status", "rollback", "abort", "help", "to", "in", "on",
    "for",
    "shop", "Shop", "prod", "stg", "staging", "web-1", "10.0.0.1:22", "v1.2", "feature/x",
    "0a1b2c3", "@", "/", ",", ":", "!", "?", "..", ";", "$(id)", "`id`", "|", "&&", "'", '"',
    "-rf", ".lock", "@{", "\\", "~", "^", "*", "\x00", "\n", "\u202e", "\u212a", "é",
]  # fmt: skip


@given(
    st.lists(
        st.tuples(st.one_of(st.sampled_from(WORDS), st.text(max_size=4)), st.sampled_from("  /@:")),
        max_size=10,
    )
)
@FUZZ
def test_fuzz_near_commands(parts: list[tuple[str, str]]) -> None:
    parse_or_refuse("".join(word + glue for word, glue in parts))


names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,15}", fullmatch=True)
keywords = set(grammar._READERS) | {"help", "deploy", "deploys"}
refs = st.lists(st.from_regex(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,8}", fullmatch=True), min_size=1,
                max_size=3).map("/".join)  # fmt: skip


@given(app=names, ref=refs, env=names, force=st.booleans())
@FUZZ
def test_valid_deploys_read_back_exactly(app: str, ref: str, env: str, force: bool) -> None:
    try:
        validate_ref(ref)
    except CommandError:
        return  # e.g. ends in ".lock" or "."
    bang = "!" if force else ""
    expected = D(app=app, ref=ref, env=grammar.ENVIRONMENT_ALIASES.get(env, env), force=force)
    hubot = parse(f"deploy {app}/{ref} to {env}{bang}")
    assert hubot == D(app=f"{app}/{ref}", env=expected.environment, force=force)
    assert split_app(hubot.app, {app: f"acme/{app}"}) == (app, ref)
    assert parse(f"deploy{bang} {app}@{ref} in {env.upper()}") == expected
    if app not in keywords:
        assert parse(f"{app}@{ref} on {env} {bang}") == expected

"""A fake GitHub REST API (the deployments subset) on 127.0.0.1 that PyGithub talks to.

It answers the way api.github.com does, checked against the copies of GitHub's own material in
``shared/fixtures/`` (set ``CHATOPS_FIXTURES`` to move them): the OpenAPI subset and example
bodies in ``github_rest/`` and the recorded real exchanges in ``pygithub_replay/``.

Use it through the ``fake_github`` fixture (function scope)::

    def test_records_deployment(fake_github, tmp_path):
        fake_github.add_repo("acme/shop", git_dir=repo_path)  # refs resolve with git rev-parse
        gh = fake_github.client()  # Github(auth=Auth.Token(token), base_url=fake_github.url, ...)
        repo = gh.get_repo("acme/shop")
        dep = repo.create_deployment("main", environment="staging", required_contexts=[],
                                     auto_merge=False)
        dep.create_status("success", target_url="https://ci.example/run/1")
        assert [s["state"] for s in fake_github.statuses(dep.id)] == ["success"]
        assert fake_github.violations == []

Set-up: ``add_repo(full_name, git_dir=None, default_branch="main", refs=None)``,
``add_environment(full_name, name)``,
``set_commit_statuses(full_name, sha_or_ref, {context: state})``; for deploy on green
``add_check_run(full_name, sha_or_ref, name, conclusion, status="completed")``,
``protect_branch(full_name, branch, required)``, ``move_branch(full_name, branch, sha)``; and
``serve_as_enterprise(host)`` (API under ``/api/v3``, git over HTTP, links on ``host``).
Fault injection: ``fail_next(method, path_regex, status, body=None, times=1, headers=None,
process=False)`` and ``delay(seconds, method=None, path_regex=None)``. Inspection:
``deployments`` (API objects in creation order), ``statuses(deployment_id)`` (oldest first),
``requests`` (``RecordedRequest``), ``git_requests()``, ``violations``.
Pull requests (answers on a pull request): ``add_pull_request(full_name, number, head_sha,
head_ref=, head_repo=, state=)``, ``add_comment(full_name, number, login, body)`` (someone's
comment), ``set_permission(full_name, login, permission)``; ``comments(full_name, number)`` (with
every edit) and ``reactions(comment_id)``. Their routes (``PULL_REQUEST_ROUTES``: get a pull
request, create and update an issue comment, react to one, a collaborator's permission) are
outside the deployments subset; ``tests/test_fake_github_pull_requests.py`` checks them against
``tests/fixtures/github_rest/pull_request_comments_openapi.json``.

Deploy on green reads ``GET /repos/{owner}/{repo}/branches/{branch}`` (head, protection),
``…/branches/{branch}/protection/required_status_checks``, ``…/commits/{ref}/check-runs``
(``filter=latest`` by default: the newest run of each name) and CI posts
``POST …/statuses/{sha}``. The subset has no schema for them: tests/test_fake_github_checks.py
holds their answers to real ones PyGithub recorded (``tests/fixtures/github_replay/``).

What every exchange is checked against (``OpenApiContract``, openapi-schema-validator's
``OAS30Validator`` with ``date-time`` and ``uri`` format checks):

* request bodies against the operation's ``requestBody`` schema: a body that does not validate is
  recorded in ``violations`` and answered 422 the way GitHub answers it;
* every response the fake makes against the schema of its status code (undocumented 4xx against
  ``basic-error``): one that does not validate is recorded and replaced by a 422;
* requests to routes outside the subset are recorded and answered 404. ``GET /repos/{owner}/{repo}``
  (PyGithub needs it) and ``GET /repos/{owner}/{repo}/commits/{ref}/status`` (the combined status
  a dry run reads: ``failure`` if a context failed or errored, ``success`` if every reported one
  succeeded, else ``pending``) are served but have no schema in the subset, so they are not
  validated.

Behaviour modelled on GitHub (create-deployment checks run in GitHub's order):

* refs resolve to commits; an unknown one → 422 ``No ref found for: X``;
* ``auto_merge`` (default true!) on a ref behind the default branch merges the default branch
  into it (202 ``{"message": "Auto-merged main into X on deployment."}``, no deployment, the
  branch really moves in ``git_dir``) or, when it cannot (conflicts, or the ref is a sha or tag,
  e.g. an older commit being rolled back to), 409 ``Conflict merging main into X.``;
* commit-status contexts must all be ``success``: every reported one when ``required_contexts`` is
  omitted, the listed ones (missing = failing) otherwise, none for ``[]``; else 409 ``Conflict:
  Commit status checks failed for X.`` whose ``errors[0].contexts`` lists every reported context;
* ``payload`` is echoed as given (object or string; ``{}`` when absent), ``description`` is
  ``null`` when absent, ``production_environment`` defaults to ``environment == "production"``;
* lists (deployments, statuses) are newest first, paginated with ``Link`` headers;
* a status with ``environment`` moves the deployment there (``original_environment`` stays);
  ``log_url`` and ``target_url`` mirror each other (``log_url`` wins); a description over 140
  characters → 422;
* a ``success`` status with ``auto_inactive`` (default true) adds an ``inactive`` status, keeping
  the old ``log_url``, to every other non-transient deployment of the same environment whose
  latest status is ``success`` -- production ones too, although the description's text says
  "non-production" -- at once, where GitHub uses a background job;
* deleting an active deployment (latest status ``success``) → 422 unless it is the only one of
  its environment;
* no ``Authorization`` → 401 ``Requires authentication``; a wrong token → 401 ``Bad credentials``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import math
import os
import re
import secrets
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from github import Auth, Github
from jsonschema import FormatChecker
from jsonschema.protocols import Validator
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from tests.fakes import FIXTURES as SHARED_FIXTURES

FIXTURES = SHARED_FIXTURES
SPEC_PATH = FIXTURES / "github_rest" / "github_deployments_openapi.json"
GITHUB_API = "https://api.github.com"
HTML_HOST = "https://github.com"
DOCS = "https://docs.github.com/rest"
MAX_STATUS_DESCRIPTION = 140
COMMIT_STATES = frozenset({"error", "failure", "pending", "success"})
ACTIVE_DELETE_MESSAGE = (
    "We cannot delete an active deployment unless it is the only deployment in a given environment."
)
HEX_SHA = re.compile(r"^[0-9a-f]{40}$")
ENTERPRISE_API_PATH = "/api/v3"
"""Where GitHub Enterprise Server serves its REST API (``https://HOST/api/v3``)."""
_GIT_PATH = re.compile(r"^/(?P<repo>[^/]+/[^/]+?)\.git(?P<rest>/.*)$")
"""A git smart-HTTP path: ``/OWNER/NAME.git/info/refs``, ``/OWNER/NAME.git/git-upload-pack``."""
# Revision syntax git understands but GitHub's ref lookup does not (and option-looking refs).
_NOT_A_REF = re.compile(r"^-|\.\.|@\{|[~^:?*\[\\\s\x00-\x1f\x7f]")
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")


# --------------------------------------------------------------------------- contract
def _is_uri(value: object) -> bool:
    """An absolute URI, or ``""``: the schema itself gives ``""`` as the default of uri fields."""
    if not isinstance(value, str) or value == "":
        return True
    parts = urllib.parse.urlsplit(value)
    return bool(parts.scheme and parts.netloc)


_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time, as GitHub writes it (``2012-07-20T01:19:13Z``)."""
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())
    checker.checkers.update(oas30_format_checker.checkers)
    checker.checks("uri")(_is_uri)
    checker.checks("date-time")(_is_date_time)
    return checker


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


class OpenApiContract:
    """The deployments subset of GitHub's OpenAPI description, as request/response validators.

    Every method returns a list of readable problems; ``[]`` means valid::

        contract = OpenApiContract()
        contract.response_errors("POST", "/repos/{owner}/{repo}/deployments", 201, body)
        statuses = "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"
        contract.request_errors("POST", statuses, {"state": "bogus"})
        # -> ["state: 'bogus' is not one of ['error', 'failure', ...]"]
        contract.schema_errors("#/components/schemas/deployment", body)

    ``$ref`` resolves inside the description; formats ``date-time``, ``uri``, ``int32``/``int64``
    are checked. Undocumented 4xx answers are held to ``basic-error``; undocumented 5xx pass (any
    GitHub endpoint may fail); any other undocumented status is a problem.
    """

    uri = "urn:chatops-tests:github-deployments-openapi"

    def __init__(self, spec_path: Path = SPEC_PATH) -> None:
        self.spec: dict[str, Any] = json.loads(spec_path.read_text())
        resource = Resource.from_contents(self.spec, default_specification=DRAFT4)
        self._registry: Registry = Registry().with_resource(self.uri, resource)
        self._formats = _format_checker()
        self._validators: dict[str, Validator] = {}

    def operations(self) -> list[tuple[str, str]]:
        """``(METHOD, path template)`` of every operation in the description."""
        return [
            (method.upper(), template)
            for template, item in self.spec["paths"].items()
            for method in item
            if method in _HTTP_METHODS
        ]

    def operation(self, method: str, template: str) -> dict[str, Any] | None:
        """The operation object, or None when the description does not have it."""
        return self.spec["paths"].get(template, {}).get(method.lower())

    def docs_url(self, method: str, template: str) -> str:
        """The operation's documentation URL, which GitHub puts in ``documentation_url``."""
        operation = self.operation(method, template) or {}
        return operation.get("externalDocs", {}).get("url", DOCS)

    def request_errors(self, method: str, template: str, body: Any) -> list[str]:
        """Problems of a request body against the operation's ``requestBody`` schema."""
        operation = self._require(method, template)
        if "requestBody" not in operation:
            return []
        parts = ["paths", template, method.lower(), "requestBody", "content", "application/json"]
        return self.schema_errors(self._pointer(*parts, "schema"), body)

    def response_errors(self, method: str, template: str, status: int, body: Any) -> list[str]:
        """Problems of a response (status + parsed JSON body, None for no body)."""
        operation = self._require(method, template)
        response, parts = self._response(operation, method, template, status)
        if response is None:
            if status >= 500:
                return []
            if status >= 400:
                return self.schema_errors("#/components/schemas/basic-error", body)
            return [f"status {status} is not documented for {method.upper()} {template}"]
        if "application/json" not in response.get("content", {}):
            return ["204 must have no body"] if status == 204 and body is not None else []
        pointer = self._pointer(*parts, "content", "application/json", "schema")
        return self.schema_errors(pointer, body)

    def schema_errors(self, pointer: str, instance: Any) -> list[str]:
        """Problems of ``instance`` against the schema at ``pointer`` (``#/components/...``)."""
        validator = self._validator(pointer)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
        return [f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}" for e in errors]

    def _require(self, method: str, template: str) -> dict[str, Any]:
        operation = self.operation(method, template)
        if operation is None:
            raise KeyError(f"{method.upper()} {template} is not in the OpenAPI subset")
        return operation

    def _response(
        self, operation: dict[str, Any], method: str, template: str, status: int
    ) -> tuple[dict[str, Any] | None, list[str]]:
        response = operation["responses"].get(str(status))
        parts = ["paths", template, method.lower(), "responses", str(status)]
        if response is not None and "$ref" in response:
            parts = response["$ref"].removeprefix("#/").split("/")
            response = self._resolve(parts)
        return response, parts

    def _resolve(self, parts: list[str]) -> dict[str, Any]:
        node: Any = self.spec
        for part in parts:
            node = node[part]
        return node

    def _pointer(self, *parts: str) -> str:
        return "#/" + "/".join(_escape(part) for part in parts)

    def _validator(self, pointer: str) -> Validator:
        if pointer not in self._validators:
            schema = {"$ref": self.uri + pointer}
            self._validators[pointer] = OAS30Validator(
                schema, registry=self._registry, format_checker=self._formats
            )
        return self._validators[pointer]


_CONTRACT: OpenApiContract | None = None


def contract() -> OpenApiContract:
    """The shared ``OpenApiContract`` of the fixtures' description (loaded once)."""
    global _CONTRACT
    if _CONTRACT is None:
        _CONTRACT = OpenApiContract()
    return _CONTRACT


# --------------------------------------------------------------------------- records
@dataclass
class RecordedRequest:
    """One request as the fake received it; ``status`` is what the fake answered.

    ``path`` is the request path as sent (percent-encoded, no query string); ``query`` holds the
    query parameters; ``json`` the parsed body (None when there was none or it was not JSON).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int | None = None


@dataclass
class _Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Raw:
    """A non-JSON answer (git over HTTP): status, headers, bytes."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class _Rule:
    method: str | None
    pattern: re.Pattern[str] | None
    times: float
    reply: _Reply | None = None
    seconds: float = 0.0
    process: bool = False

    def matches(self, method: str, path: str) -> bool:
        method_ok = self.method is None or self.method == method
        return method_ok and (self.pattern is None or bool(self.pattern.search(path)))


@dataclass
class _Environment:
    id: int
    name: str
    created_at: str


@dataclass
class _Repo:
    id: int
    full_name: str
    git_dir: Path | None
    default_branch: str
    refs: dict[str, str]
    created_at: str
    commit_statuses: dict[str, dict[str, str]] = field(default_factory=dict)
    environments: dict[str, _Environment] = field(default_factory=dict)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Commit sha → its check runs, oldest first."""
    required_checks: dict[str, list[str]] = field(default_factory=dict)
    """Branch → the status checks its protection requires."""


@dataclass
class _Deployment:
    id: int
    repo: _Repo
    sha: str
    ref: str
    task: str
    payload: Any
    environment: str
    original_environment: str
    description: str | None
    transient: bool
    production: bool
    creator: str
    created_at: str
    updated_at: str
    statuses: list[dict[str, Any]] = field(default_factory=list)

    def latest_state(self) -> str | None:
        return self.statuses[-1]["state"] if self.statuses else None


@dataclass(frozen=True)
class _Route:
    method: str
    template: str
    handler: str
    pattern: re.Pattern[str]

    @property
    def in_contract(self) -> bool:
        return contract().operation(self.method, self.template) is not None


@dataclass
class _Call:
    """A routed, authenticated, validated request, as the handlers see it."""

    route: _Route
    repo: _Repo
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    docs: str


def _route(method: str, template: str, handler: str) -> _Route:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return _Route(method, template, handler, re.compile(f"^{regex}$"))


_DEPLOYMENT = "/repos/{owner}/{repo}/deployments/{deployment_id}"
ROUTES = (
    _route("GET", "/repos/{owner}/{repo}", "_get_repo"),
    _route("GET", "/repos/{owner}/{repo}/deployments", "_list_deployments"),
    _route("POST", "/repos/{owner}/{repo}/deployments", "_create_deployment"),
    _route("GET", _DEPLOYMENT, "_get_deployment"),
    _route("DELETE", _DEPLOYMENT, "_delete_deployment"),
    _route("GET", _DEPLOYMENT + "/statuses", "_list_statuses"),
    _route("POST", _DEPLOYMENT + "/statuses", "_create_status"),
    _route("GET", _DEPLOYMENT + "/statuses/{status_id}", "_get_status"),
    _route("GET", "/repos/{owner}/{repo}/commits/{ref}/status", "_combined_status"),
    _route("GET", "/repos/{owner}/{repo}/environments", "_list_environments"),
    _route("GET", "/repos/{owner}/{repo}/environments/{environment_name}", "_get_environment"),
)


GREEN_ROUTES = (
    _route("GET", "/repos/{owner}/{repo}/branches/{branch}", "_get_branch"),
    _route(
        "GET",
        "/repos/{owner}/{repo}/branches/{branch}/protection/required_status_checks",
        "_get_required_status_checks",
    ),
    _route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", "_list_check_runs"),
    _route("POST", "/repos/{owner}/{repo}/statuses/{sha}", "_create_commit_status"),
)
"""Deploy on green: a branch's head and protection, a commit's check runs, CI reporting. Not in
the deployments subset; held to recorded real answers (tests/test_fake_github_checks.py)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_id(kind: str, number: int) -> str:
    """GitHub's legacy global ids: base64 of ``"<len(kind):03>:<Kind><id>"``."""
    return base64.b64encode(f"{len(kind):03d}:{kind}{number}".encode()).decode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _int_param(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        number = default
    return min(max(number, low), high)


# --------------------------------------------------------------------------- the fake
class FakeGitHub:
    """A fake api.github.com for deployments; a real HTTP server on ``127.0.0.1``.

    ``FakeGitHub(token=None, login="chatops-bot")``: ``token`` is the one valid token (a random
    ``ghp_…`` by default), ``login`` the user it belongs to (the ``creator`` of what it creates).
    ``start()``/``stop()`` or ``with FakeGitHub() as fake:``; ``fake.url`` is the base URL to give
    PyGithub (``fake.client()`` builds such a client). See the module docstring for behaviour.
    """

    def __init__(self, token: str | None = None, login: str = "chatops-bot") -> None:
        self.token = token or f"ghp_{secrets.token_hex(18)}"
        self.login = login
        self.contract = contract()
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._repos: dict[str, _Repo] = {}
        self._deployments: dict[int, _Deployment] = {}
        self._user_ids: dict[str, int] = {}
        self._requests: list[RecordedRequest] = []
        self._violations: list[str] = []
        self._faults: list[_Rule] = []
        self._delays: list[_Rule] = []
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- lifecycle
    def start(self) -> FakeGitHub:
        """Start serving in a background thread; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and every open client connection."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, token: str | None = None, **options: Any) -> Github:
        """A PyGithub client for this fake: no retries, no throttling, 10 s timeout by default.

        ``token`` defaults to the valid one; ``options`` override ``Github(...)`` keyword
        arguments, e.g. ``retry=GithubRetry()``, ``per_page=2``, ``timeout=1``.
        """
        settings: dict[str, Any] = {
            "retry": None,
            "seconds_between_requests": None,
            "seconds_between_writes": None,
            "timeout": 10,
        }
        auth = Auth.Token(token or self.token)
        return Github(auth=auth, base_url=self.url, **(settings | options))

    # ---- GitHub Enterprise Server: the API under /api/v3 and git over HTTP on another host
    web_url: str = HTML_HOST
    """Where people browse this GitHub (and clone from): github.com, until
    :meth:`serve_as_enterprise`."""

    def serve_as_enterprise(self, host: str = "localhost") -> str:
        """Serve as an Enterprise server named ``host`` (it must resolve to 127.0.0.1): the
        API under ``http://HOST:PORT/api/v3`` (returned, also ``url`` from now on; links in
        answers use it), web links and ``git clone http://HOST:PORT/OWNER/NAME.git`` (a repo's
        ``git_dir``, through ``git http-backend``) on ``http://HOST:PORT``."""
        port = self._server.server_address[1]
        self.web_url = f"http://{host}:{port}"
        self.url = f"{self.web_url}{ENTERPRISE_API_PATH}"
        return self.url

    def _git_http(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Raw:
        """A git smart-HTTP request for ``/OWNER/NAME.git/...``, answered by git http-backend
        from the repository's ``git_dir`` (read-only: clone and fetch)."""
        split = urllib.parse.urlsplit(target)
        found = _GIT_PATH.match(split.path)
        assert found is not None
        with self._lock:
            self._requests.append(RecordedRequest(method, split.path, {}, headers, None, 200))
            repo = self._repos.get(found["repo"])
        if repo is None or repo.git_dir is None or "receive-pack" in target:
            return _Raw(404, {"Content-Type": "text/plain"}, b"Repository not found.")
        git_dir = repo.git_dir / ".git" if (repo.git_dir / ".git").is_dir() else repo.git_dir
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(git_dir),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": found["rest"],
            "REQUEST_METHOD": method,
            "QUERY_STRING": split.query,
            "CONTENT_TYPE": _header(headers, "Content-Type") or "",
            "CONTENT_LENGTH": str(len(raw)),
            "HTTP_CONTENT_ENCODING": _header(headers, "Content-Encoding") or "",
            "GIT_PROTOCOL": _header(headers, "Git-Protocol") or "",
            "REMOTE_ADDR": "127.0.0.1",
        }
        done = subprocess.run(
            ["git", "-c", f"safe.directory={git_dir}", "http-backend"],
            input=raw,
            capture_output=True,
            env=env,
            timeout=60,
        )
        head, _, body = done.stdout.partition(b"\r\n\r\n")
        fields = dict(
            line.split(": ", 1)
            for line in head.decode(errors="replace").split("\r\n")
            if ": " in line
        )
        status = int(fields.pop("Status", "200").split()[0])
        return _Raw(status, fields, body)

    # ---- set-up
    def add_repo(
        self,
        full_name: str,
        git_dir: Path | str | None = None,
        *,
        default_branch: str = "main",
        refs: Mapping[str, str] | None = None,
    ) -> None:
        """Serve repository ``owner/name``.

        Refs given to create-deployment resolve through ``refs`` (name → sha) first, then with
        ``git -C git_dir rev-parse --verify <ref>^{commit}``; without ``git_dir`` only 40-hex shas
        resolve. ``default_branch`` is what ``auto_merge`` merges from (only with ``git_dir``).
        """
        with self._lock:
            self._repos[full_name] = _Repo(
                id=next(self._ids),
                full_name=full_name,
                git_dir=Path(git_dir) if git_dir is not None else None,
                default_branch=default_branch,
                refs=dict(refs or {}),
                created_at=_now(),
            )

    def add_environment(self, full_name: str, name: str) -> None:
        """Create environment ``name`` (GitHub also creates one on the first deployment to it)."""
        with self._lock:
            self._ensure_environment(self._repo(full_name), name)

    def set_commit_statuses(
        self, full_name: str, sha_or_ref: str, contexts: Mapping[str, str]
    ) -> None:
        """Report commit statuses ``{context: state}`` (error/failure/pending/success) on a commit.

        Later calls update contexts like new statuses do on GitHub (latest per context wins).
        """
        bad = {state for state in contexts.values() if state not in COMMIT_STATES}
        if bad:
            raise ValueError(f"commit status states must be in {sorted(COMMIT_STATES)}: {bad}")
        with self._lock:
            repo = self._repo(full_name)
            sha = _resolve_ref(repo, sha_or_ref)
            if sha is None:
                raise ValueError(f"{sha_or_ref!r} does not resolve in {full_name}")
            repo.commit_statuses.setdefault(sha, {}).update(contexts)

    def add_check_run(
        self,
        full_name: str,
        sha_or_ref: str,
        name: str,
        conclusion: str | None = "success",
        *,
        status: str = "completed",
    ) -> int:
        """Report check run ``name`` on a commit (a GitHub App's CI); its id. A later run of the
        same name is the one the commit's ``latest`` list shows, as on GitHub."""
        if (status == "completed") != (conclusion is not None):
            raise ValueError("a completed check run has a conclusion; any other has none")
        with self._lock:
            repo = self._repo(full_name)
            sha = _resolve_ref(repo, sha_or_ref)
            if sha is None:
                raise ValueError(f"{sha_or_ref!r} does not resolve in {full_name}")
            run = {"id": next(self._ids), "name": name, "status": status}
            run.update(conclusion=conclusion, at=_now())
            repo.check_runs.setdefault(sha, []).append(run)
            return run["id"]

    def move_branch(self, full_name: str, branch: str, sha: str) -> None:
        """Branch ``branch`` now points at ``sha`` on GitHub (a push), whatever ``git_dir``
        says; statuses and check runs stay."""
        with self._lock:
            self._repo(full_name).refs[branch] = sha

    def protect_branch(self, full_name: str, branch: str, required: list[str]) -> None:
        """Branch protection of ``branch`` requiring status checks ``required`` ([]: none)."""
        with self._lock:
            self._repo(full_name).required_checks[branch] = list(required)

    def git_requests(self) -> list[RecordedRequest]:
        """The git smart-HTTP requests received (clones and fetches), in arrival order."""
        with self._lock:
            return [r for r in self._requests if _GIT_PATH.match(r.path)]

    # ---- fault injection
    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int,
        body: Any = None,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        *,
        process: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` (and ``body``) instead.

        ``path_regex`` is searched in the request path (e.g. ``r"/deployments$"``). The default
        body is GitHub's error shape with the status' reason phrase. The injected answer is served
        as given, but a documented status is still checked against its schema (a 201 without
        ``sha`` lands in ``violations``). It models GitHub failing, not refusing: by default the
        request is not processed at all; with ``process=True`` it is (the deployment is created)
        and only the answer is lost, like a gateway timing out after the work was done.
        """
        if method.upper() in ("GET", "HEAD") and status == 202:
            raise ValueError("PyGithub re-polls a 202 to GET every 2 s, forever; GitHub never does")
        reply = _Reply(status, body, dict(headers or {}))
        if body is None and status != 204:
            reply.body = _error_body(status, HTTPStatus(status).phrase, DOCS)
        rule = _Rule(method.upper(), re.compile(path_regex), times, reply=reply, process=process)
        with self._lock:
            self._faults.append(rule)

    def delay(
        self, seconds: float, method: str | None = None, path_regex: str | None = None
    ) -> None:
        """Hold every later matching request ``seconds`` before answering (``delay(0)`` ends it)."""
        pattern = re.compile(path_regex) if path_regex else None
        rule = _Rule(method.upper() if method else None, pattern, math.inf, seconds=seconds)
        with self._lock:
            self._delays = [] if seconds <= 0 else [*self._delays, rule]

    # ---- inspection
    @property
    def deployments(self) -> list[dict[str, Any]]:
        """Every live deployment as the API shows it (incl. ``payload``), in creation order."""
        with self._lock:
            return [self._render_deployment(d) for d in self._deployments.values()]

    def statuses(self, deployment_id: int) -> list[dict[str, Any]]:
        """The deployment's statuses as the API shows them, oldest first (the API: newest first)."""
        with self._lock:
            deployment = self._deployments[deployment_id]
            return [self._render_status(deployment, s) for s in deployment.statuses]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        """Contract problems seen so far; product tests assert this is ``[]``."""
        with self._lock:
            return list(self._violations)

    # ---- request pipeline (called from server threads)
    def _dispatch(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> _Reply:
        split = urllib.parse.urlsplit(target)
        if self.url.endswith(ENTERPRISE_API_PATH):  # the API of an Enterprise server
            split = split._replace(path=split.path.removeprefix(ENTERPRISE_API_PATH))
        query = dict(urllib.parse.parse_qsl(split.query))
        body, parsed = _parse_json(raw)
        record = RecordedRequest(method, split.path, query, headers, body)
        with self._lock:
            self._requests.append(record)
            fault = _take(self._faults, method, split.path)
            pauses = [r.seconds for r in self._delays if r.matches(method, split.path)]
        if pauses:
            self._stopping.wait(max(pauses))
        with self._lock:
            reply = self._answer(record, parsed, fault)
            record.status = reply.status
        return reply

    def _answer(self, request: RecordedRequest, parsed: bool, fault: _Rule | None) -> _Reply:
        match = _match(request.method, request.path)
        route = match[0] if match else None
        if fault is not None and fault.reply is not None and not fault.process:
            self._check_reply(request, route, fault.reply)
            return fault.reply
        reply = self._authenticate(request.headers)
        if reply is None:
            reply = self._routed(request, *match, parsed) if match else self._unrouted(request)
        problems = self._check_reply(request, route, reply)
        if fault is not None and fault.reply is not None:
            self._check_reply(request, route, fault.reply)
            return fault.reply
        return _response_invalid(problems, request) if problems else reply

    def _authenticate(self, headers: Mapping[str, str]) -> _Reply | None:
        value = _header(headers, "Authorization")
        if value is None:
            return _Reply(401, _error_body(401, "Requires authentication", DOCS))
        scheme, _, credential = value.partition(" ")
        valid = secrets.compare_digest(credential.encode(), self.token.encode())
        if scheme.lower() in ("token", "bearer") and valid:
            return None
        return _Reply(401, _error_body(401, "Bad credentials", DOCS))

    def _unrouted(self, request: RecordedRequest) -> _Reply:
        where = f"{request.method} {request.path}"
        self._violation(f"{where}: no such operation in the deployments subset")
        return _Reply(404, _error_body(404, "Not Found", DOCS))

    def _routed(
        self, request: RecordedRequest, route: _Route, params: dict[str, str], parsed: bool
    ) -> _Reply:
        """Path parameters, repository, body: checked in GitHub's order, then the handler."""
        docs = self.contract.docs_url(route.method, route.template)
        where = f"{route.method} {route.template}"
        for name in ("deployment_id", "status_id"):
            if name in params and not params[name].isdigit():
                self._violation(f"{where}: {name}={params[name]!r} is not an integer")
                return _Reply(404, _error_body(404, "Not Found", docs))
        repo = self._repos.get(f"{params['owner']}/{params['repo']}")
        if repo is None:
            return _Reply(404, _error_body(404, "Not Found", docs))
        if not parsed:
            self._violation(f"{where}: request body is not JSON")
            return _Reply(400, _error_body(400, "Problems parsing JSON", docs))
        invalid = self._check_request(route, request.json, docs)
        if invalid is not None:
            return invalid
        call = _Call(route, repo, request.path, params, request.query, request.json or {}, docs)
        return getattr(self, route.handler)(call)

    def _check_request(self, route: _Route, body: Any, docs: str) -> _Reply | None:
        if not route.in_contract or route.method != "POST":
            return None
        problems = self.contract.request_errors(route.method, route.template, body)
        for problem in problems:
            self._violation(f"{route.method} {route.template}: request body: {problem}")
        return _request_invalid(route, problems, docs) if problems else None

    def _check_reply(
        self, request: RecordedRequest, route: _Route | None, reply: _Reply
    ) -> list[str]:
        if route is None or not route.in_contract:
            return []
        problems = self.contract.response_errors(
            route.method, route.template, reply.status, reply.body
        )
        where = f"{request.method} {request.path}"
        for problem in problems:
            self._violation(f"{where}: response {reply.status}: {problem}")
        return problems

    def _violation(self, text: str) -> None:
        with self._lock:
            self._violations.append(text)

    # ---- handlers: one per route, each answers a _Call
    def _get_repo(self, call: _Call) -> _Reply:
        return _Reply(200, self._render_repo(call.repo))

    def _combined_status(self, call: _Call) -> _Reply:
        """GitHub's "get the combined status for a specific reference": ``failure`` if any
        context failed, ``pending`` if any is pending or none reported, else ``success``."""
        sha = _resolve_ref(call.repo, call.params["ref"])
        if sha is None:
            return _Reply(
                422, _error_body(422, f"No commit found for SHA: {call.params['ref']}", call.docs)
            )
        reported = call.repo.commit_statuses.get(sha, {})
        states = set(reported.values())
        state = "failure" if states & {"failure", "error"} else "pending"
        if reported and states == {"success"}:
            state = "success"
        api = self._api(call.repo)
        statuses = [
            {
                "url": f"{api}/statuses/{sha}",
                "id": n,
                "node_id": _node_id("StatusContext", n),
                "state": context_state,
                "description": None,
                "target_url": None,
                "context": context,
                "avatar_url": None,
                "created_at": call.repo.created_at,
                "updated_at": call.repo.created_at,
            }
            for n, (context, context_state) in enumerate(sorted(reported.items()), 1)
        ]
        return _Reply(
            200,
            {
                "state": state,
                "statuses": statuses,
                "sha": sha,
                "total_count": len(statuses),
                "repository": self._render_repo(call.repo),
                "commit_url": f"{api}/commits/{sha}",
                "url": f"{api}/commits/{sha}/status",
            },
        )

    # ---- deploy on green: branches, protection, check runs, commit statuses
    def _get_branch(self, call: _Call) -> _Reply:
        """GitHub's "get a branch" (``branch-with-protection``): its head commit, and the
        status checks its protection requires (``protection.required_status_checks``)."""
        name = urllib.parse.unquote(call.params["branch"])
        sha = _branch_head(call.repo, name)
        if sha is None:
            return _Reply(404, _error_body(404, "Branch not found", call.docs))
        api, required = self._api(call.repo), call.repo.required_checks.get(name)
        branch_url = f"{api}/branches/{call.params['branch']}"
        protection: dict[str, Any] = {"enabled": required is not None}
        if required is not None:
            protection["required_status_checks"] = {
                "enforcement_level": "non_admins",
                "contexts": list(required),
                "checks": [{"context": c, "app_id": None} for c in required],
            }
            protection["enforce_admins"] = False
        return _Reply(
            200,
            {
                "name": name,
                "commit": {
                    "sha": sha,
                    "node_id": _node_id("Commit", int(sha[:7], 16)),
                    "url": f"{api}/commits/{sha}",
                    "html_url": f"{self.web_url}/{call.repo.full_name}/commit/{sha}",
                },
                "_links": {
                    "self": branch_url,
                    "html": f"{self.web_url}/{call.repo.full_name}/tree/{name}",
                },
                "protected": required is not None,
                "protection": protection,
                "protection_url": f"{branch_url}/protection",
            },
        )

    def _get_required_status_checks(self, call: _Call) -> _Reply:
        """The protection's required status checks; 404 "Required status checks not enabled"
        (GitHub's text) for a branch without them."""
        name = urllib.parse.unquote(call.params["branch"])
        required = call.repo.required_checks.get(name)
        if _branch_head(call.repo, name) is None:
            return _Reply(404, _error_body(404, "Branch not found", call.docs))
        if required is None:
            return _Reply(404, _error_body(404, "Required status checks not enabled", call.docs))
        url = f"{self._api(call.repo)}/branches/{call.params['branch']}/protection"
        return _Reply(
            200,
            {
                "url": f"{url}/required_status_checks",
                "enforcement_level": "non_admins",
                "strict": False,
                "contexts": list(required),
                "contexts_url": f"{url}/required_status_checks/contexts",
                "checks": [{"context": c, "app_id": None} for c in required],
            },
        )

    def _list_check_runs(self, call: _Call) -> _Reply:
        """GitHub's "list check runs for a Git reference": ``{total_count, check_runs}``, newest
        first; ``filter=latest`` (the default) keeps the newest run of each name."""
        sha = _resolve_ref(call.repo, call.params["ref"])
        if sha is None:
            return _Reply(
                422, _error_body(422, f"No commit found for SHA: {call.params['ref']}", call.docs)
            )
        runs = list(reversed(call.repo.check_runs.get(sha, [])))
        if call.query.get("filter", "latest") == "latest":
            newest: dict[str, dict[str, Any]] = {}
            runs = [newest.setdefault(r["name"], r) for r in runs if r["name"] not in newest]
        page = self._page([self._render_check_run(call.repo, sha, r) for r in runs], call)
        page.body = {"total_count": len(runs), "check_runs": page.body}
        return page

    def _create_commit_status(self, call: _Call) -> _Reply:
        """GitHub's "create a commit status", as a CI server reports one (201)."""
        sha, body = call.params["sha"], call.body if isinstance(call.body, dict) else {}
        state, context = body.get("state"), body.get("context", "default")
        if state not in COMMIT_STATES or not isinstance(context, str):
            message = "state is not included in the list"
            return _Reply(422, _validation_failed("Status", "state", message, call.docs))
        if _resolve_ref(call.repo, sha) != sha:
            return _Reply(422, _error_body(422, f"No commit found for SHA: {sha}", call.docs))
        call.repo.commit_statuses.setdefault(sha, {})[context] = state
        number, now = next(self._ids), _now()
        return _Reply(
            201,
            {
                "url": f"{self._api(call.repo)}/statuses/{sha}",
                "avatar_url": None,
                "id": number,
                "node_id": _node_id("StatusContext", number),
                "state": state,
                "description": body.get("description"),
                "target_url": body.get("target_url"),
                "context": context,
                "created_at": now,
                "updated_at": now,
                "creator": self._user(self.login),
            },
        )

    def _render_check_run(self, repo: _Repo, sha: str, run: dict[str, Any]) -> dict[str, Any]:
        api = self._api(repo)
        done = run["status"] == "completed"
        return {
            "id": run["id"],
            "node_id": _node_id("CheckRun", run["id"]),
            "head_sha": sha,
            "external_id": "",
            "url": f"{api}/check-runs/{run['id']}",
            "html_url": f"{self.web_url}/{repo.full_name}/runs/{run['id']}",
            "details_url": f"{self.web_url}/{repo.full_name}/runs/{run['id']}",
            "status": run["status"],
            "conclusion": run["conclusion"],
            "started_at": run["at"],
            "completed_at": run["at"] if done else None,
            "output": {
                "title": None,
                "summary": None,
                "text": None,
                "annotations_count": 0,
                "annotations_url": f"{api}/check-runs/{run['id']}/annotations",
            },
            "name": run["name"],
            "check_suite": {"id": run["id"] + 100000},
            "app": self._ci_app(),
            "pull_requests": [],
        }

    def _ci_app(self) -> dict[str, Any]:
        """The GitHub App that reports the fake's check runs (a CI server)."""
        return {
            "id": 15368,
            "slug": "fake-ci",
            "node_id": _node_id("App", 15368),
            "owner": self._user("fake-ci", "Organization"),
            "name": "Fake CI",
            "description": "Runs the tests",
            "external_url": "https://ci.example",
            "html_url": f"{self.web_url}/apps/fake-ci",
            "created_at": "2018-07-30T09:30:17Z",
            "updated_at": "2019-12-10T19:04:12Z",
            "permissions": {"checks": "write", "metadata": "read", "statuses": "write"},
            "events": ["check_run", "check_suite", "status"],
        }

    def _list_deployments(self, call: _Call) -> _Reply:
        names = ("sha", "ref", "task", "environment")
        filters = {name: call.query[name] for name in names if call.query.get(name)}
        found = [
            self._render_deployment(d)
            for d in reversed(self._deployments.values())
            if d.repo is call.repo and all(getattr(d, k) == v for k, v in filters.items())
        ]
        return self._page(found, call)

    def _create_deployment(self, call: _Call) -> _Reply:
        repo, ref = call.repo, call.body["ref"]
        sha = _resolve_ref(repo, ref)
        if sha is None:
            return _Reply(422, _error_body(422, f"No ref found for: {ref}", call.docs))
        if call.body.get("auto_merge", True):
            merged = _auto_merge(repo, ref, sha, call.docs)
            if merged is not None:
                return merged
        refused = _contexts_refusal(repo, ref, sha, call.body.get("required_contexts"), call.docs)
        if refused is not None:
            return refused
        rendered = self._render_deployment(self._new_deployment(repo, sha, call.body))
        return _Reply(201, rendered, {"Location": rendered["url"]})

    def _get_deployment(self, call: _Call) -> _Reply:
        deployment = self._find_deployment(call)
        if deployment is None:
            return _not_found(call)
        return _Reply(200, self._render_deployment(deployment))

    def _delete_deployment(self, call: _Call) -> _Reply:
        deployment = self._find_deployment(call)
        if deployment is None:
            return _not_found(call)
        same_environment = [
            d
            for d in self._deployments.values()
            if d.repo is call.repo and d.environment == deployment.environment
        ]
        if deployment.latest_state() == "success" and len(same_environment) > 1:
            body = _error_body(422, "Validation Failed", call.docs, errors=[ACTIVE_DELETE_MESSAGE])
            return _Reply(422, body)
        del self._deployments[deployment.id]
        return _Reply(204)

    def _list_statuses(self, call: _Call) -> _Reply:
        deployment = self._find_deployment(call)
        if deployment is None:
            return _not_found(call)
        found = [self._render_status(deployment, s) for s in reversed(deployment.statuses)]
        return self._page(found, call)

    def _create_status(self, call: _Call) -> _Reply:
        deployment = self._find_deployment(call)
        if deployment is None:
            return _not_found(call)
        description = call.body.get("description") or ""
        if len(description) > MAX_STATUS_DESCRIPTION:
            message = f"description is too long (maximum is {MAX_STATUS_DESCRIPTION} characters)"
            body = _validation_failed("DeploymentStatus", "description", message, call.docs)
            return _Reply(422, body)
        status = self._add_status(deployment, call.body, description)
        if status["state"] == "success" and call.body.get("auto_inactive", True) is not False:
            self._inactivate_others(deployment)
        rendered = self._render_status(deployment, status)
        return _Reply(201, rendered, {"Location": rendered["url"]})

    def _get_status(self, call: _Call) -> _Reply:
        deployment = self._find_deployment(call)
        wanted = int(call.params["status_id"])
        statuses = deployment.statuses if deployment else []
        status = next((s for s in statuses if s["id"] == wanted), None)
        if deployment is None or status is None:
            return _not_found(call)
        return _Reply(200, self._render_status(deployment, status))

    def _list_environments(self, call: _Call) -> _Reply:
        environments = call.repo.environments.values()
        everything = [self._render_environment(call.repo, e) for e in environments]
        page = self._page(everything, call)
        page.body = {"total_count": len(everything), "environments": page.body}
        return page

    def _get_environment(self, call: _Call) -> _Reply:
        name = urllib.parse.unquote(call.params["environment_name"])
        environment = call.repo.environments.get(name)
        if environment is None:
            return _not_found(call)
        return _Reply(200, self._render_environment(call.repo, environment))

    # ---- domain helpers
    def _repo(self, full_name: str) -> _Repo:
        if full_name not in self._repos:
            raise KeyError(f"unknown repository {full_name!r}: call add_repo() first")
        return self._repos[full_name]

    def _find_deployment(self, call: _Call) -> _Deployment | None:
        deployment = self._deployments.get(int(call.params["deployment_id"]))
        return deployment if deployment is not None and deployment.repo is call.repo else None

    def _new_deployment(self, repo: _Repo, sha: str, body: dict[str, Any]) -> _Deployment:
        environment = body.get("environment", "production")
        now = _now()
        deployment = _Deployment(
            id=next(self._ids),
            repo=repo,
            sha=sha,
            ref=body["ref"],
            task=body.get("task", "deploy"),
            payload=body.get("payload", {}),
            environment=environment,
            original_environment=environment,
            description=body.get("description"),
            transient=body.get("transient_environment", False),
            production=body.get("production_environment", environment == "production"),
            creator=self.login,
            created_at=now,
            updated_at=now,
        )
        self._deployments[deployment.id] = deployment
        self._ensure_environment(repo, environment)
        return deployment

    def _add_status(self, deployment: _Deployment, body: dict, description: str) -> dict:
        log_url = body.get("log_url")
        if log_url is None:
            log_url = body.get("target_url") or ""
        deployment.environment = body.get("environment") or deployment.environment
        status = {
            "id": next(self._ids),
            "state": body["state"],
            "description": description,
            "environment": deployment.environment,
            "log_url": log_url,
            "environment_url": body.get("environment_url") or "",
            "creator": self.login,
            "created_at": _now(),
        }
        deployment.statuses.append(status)
        deployment.updated_at = status["created_at"]
        return status

    def _inactivate_others(self, deployment: _Deployment) -> None:
        for other in self._deployments.values():
            if (
                other is not deployment
                and other.repo is deployment.repo
                and other.environment == deployment.environment
                and not other.transient
                and other.latest_state() == "success"
            ):
                last = other.statuses[-1]
                inactive = {
                    **last,
                    "id": next(self._ids),
                    "state": "inactive",
                    "description": "",
                    "environment_url": "",
                    "created_at": _now(),
                }
                other.statuses.append(inactive)
                other.updated_at = inactive["created_at"]

    def _ensure_environment(self, repo: _Repo, name: str) -> None:
        if name not in repo.environments:
            repo.environments[name] = _Environment(next(self._ids), name, _now())

    # ---- rendering (what the API shows)
    def _api(self, repo: _Repo) -> str:
        return f"{self.url}/repos/{repo.full_name}"

    def _deployment_url(self, deployment: _Deployment) -> str:
        return f"{self._api(deployment.repo)}/deployments/{deployment.id}"

    def _page(self, items: list[Any], call: _Call) -> _Reply:
        """One page of ``items`` (``per_page`` ≤ 100, default 30) with GitHub's ``Link`` header."""
        per_page = _int_param(call.query.get("per_page"), 30, 1, 100)
        last = max(1, math.ceil(len(items) / per_page))
        page = _int_param(call.query.get("page"), 1, 1, 10**6)

        def link(number: int, rel: str) -> str:
            target = urllib.parse.urlencode({**call.query, "page": str(number)})
            return f'<{self.url}{call.path}?{target}>; rel="{rel}"'

        links = [link(page - 1, "prev")] if page > 1 else []
        links += [link(page + 1, "next"), link(last, "last")] if page < last else []
        links += [link(1, "first")] if page > 1 else []
        chunk = items[(page - 1) * per_page : page * per_page]
        return _Reply(200, chunk, {"Link": ", ".join(links)} if links else {})

    def _user(self, login: str, kind: str = "User") -> dict[str, Any]:
        number = self._user_ids.setdefault(login, 1000 + len(self._user_ids))
        api = f"{self.url}/users/{login}"
        return {
            "login": login,
            "id": number,
            "node_id": _node_id(kind, number),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{number}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"{HTML_HOST}/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def _render_repo(self, repo: _Repo) -> dict[str, Any]:
        owner, name = repo.full_name.split("/", 1)
        api = self._api(repo)
        return {
            "id": repo.id,
            "node_id": _node_id("Repository", repo.id),
            "name": name,
            "full_name": repo.full_name,
            "private": True,
            "owner": self._user(owner, "Organization"),
            "html_url": f"{HTML_HOST}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": api,
            "deployments_url": f"{api}/deployments",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "created_at": repo.created_at,
            "updated_at": repo.created_at,
            "pushed_at": repo.created_at,
            "default_branch": repo.default_branch,
            "visibility": "private",
            "permissions": {
                "admin": False,
                "maintain": False,
                "push": True,
                "triage": True,
                "pull": True,
            },
        }

    def _render_deployment(self, deployment: _Deployment) -> dict[str, Any]:
        url = self._deployment_url(deployment)
        return {
            "url": url,
            "id": deployment.id,
            "node_id": _node_id("Deployment", deployment.id),
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": json.loads(json.dumps(deployment.payload)),
            "original_environment": deployment.original_environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": self._user(deployment.creator),
            "created_at": deployment.created_at,
            "updated_at": deployment.updated_at,
            "statuses_url": f"{url}/statuses",
            "repository_url": self._api(deployment.repo),
            "transient_environment": deployment.transient,
            "production_environment": deployment.production,
            "performed_via_github_app": None,
        }

    def _render_status(self, deployment: _Deployment, status: dict[str, Any]) -> dict[str, Any]:
        deployment_url = self._deployment_url(deployment)
        return {
            "url": f"{deployment_url}/statuses/{status['id']}",
            "id": status["id"],
            "node_id": _node_id("DeploymentStatus", status["id"]),
            "state": status["state"],
            "creator": self._user(status["creator"]),
            "description": status["description"],
            "environment": status["environment"],
            "target_url": status["log_url"],
            "created_at": status["created_at"],
            "updated_at": status["created_at"],
            "deployment_url": deployment_url,
            "repository_url": self._api(deployment.repo),
            "environment_url": status["environment_url"],
            "log_url": status["log_url"],
            "performed_via_github_app": None,
        }

    def _render_environment(self, repo: _Repo, environment: _Environment) -> dict[str, Any]:
        quoted = urllib.parse.quote(environment.name, safe="")
        return {
            "id": environment.id,
            "node_id": _node_id("Environment", environment.id),
            "name": environment.name,
            "url": f"{self._api(repo)}/environments/{quoted}",
            "html_url": f"{HTML_HOST}/{repo.full_name}/deployments/activity_log"
            f"?environments_filter={urllib.parse.quote(environment.name)}",
            "created_at": environment.created_at,
            "updated_at": environment.created_at,
            "protection_rules": [],
            "deployment_branch_policy": None,
        }

    def _standard_headers(self) -> dict[str, str]:
        used = len(self._requests)
        return {
            "Content-Type": "application/json; charset=utf-8",
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": str(max(0, 5000 - used)),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Request-Id": secrets.token_hex(8).upper(),
        }

    # ---- connection bookkeeping (so stop() can close keep-alive connections)
    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    # ---- pull requests: comments, reactions, collaborator permission (answers on a pull
    # request). Served outside the deployments subset: tests/test_fake_github_pull_requests.py
    # checks these answers against tests/fixtures/github_rest/pull_request_comments_openapi.json.
    def add_pull_request(
        self,
        full_name: str,
        number: int,
        head_sha: str,
        *,
        head_ref: str = "topic",
        head_repo: str | None = None,
        user: str = "octocat",
        state: str = "open",
    ) -> None:
        """Open pull request ``number`` of ``full_name`` whose head is ``head_sha`` on branch
        ``head_ref`` of ``head_repo`` (a fork's full name; the repository itself by default).
        Its issue takes comments; GitHub also keeps ``refs/pull/N/head`` in the repository,
        which a test makes with git itself."""
        with self._lock:
            repo = self._repo(full_name)
            self._pull_state()["pulls"][(repo.full_name, number)] = _Pull(
                number, repo, head_sha, head_ref, head_repo or full_name, user, state, _now()
            )

    def add_comment(self, full_name: str, number: int, login: str, body: str) -> dict[str, Any]:
        """A comment ``login`` wrote on pull request ``number``, as the API shows it (what an
        ``issue_comment`` webhook carries as ``comment``)."""
        with self._lock:
            comment = self._new_comment(self._repo(full_name), number, login, body)
            return self._render_comment(comment)

    def set_permission(self, full_name: str, login: str, permission: str) -> None:
        """``login``'s permission on ``full_name``: ``admin``, ``write``, ``read`` or ``none``
        (GitHub's legacy base roles). Anyone not set has ``read``, as on a public repository."""
        if permission not in ROLE_NAMES:
            raise ValueError(f"permission must be one of {sorted(ROLE_NAMES)}")
        with self._lock:
            self._pull_state()["permissions"][(full_name, login)] = permission

    def comments(self, full_name: str, number: int) -> list[dict[str, Any]]:
        """The comments on pull request ``number``, oldest first: ``id``, ``user``, ``body``
        and ``edits`` (every body it had, the first one included)."""
        with self._lock:
            return [
                {"id": c.id, "user": c.user, "body": c.body, "edits": list(c.bodies)}
                for c in self._pull_state()["comments"].values()
                if c.repo.full_name == full_name and c.number == number
            ]

    def reactions(self, comment_id: int) -> list[str]:
        """The reactions on a comment, oldest first (``eyes``, ``rocket``, ...)."""
        with self._lock:
            comment = self._pull_state()["comments"].get(comment_id)
            return [content for _, content in comment.reactions] if comment else []

    def _pull_state(self) -> dict[str, dict[Any, Any]]:
        if not hasattr(self, "_pull_requests"):
            self._pull_requests: dict[str, dict[Any, Any]] = {
                "pulls": {},
                "comments": {},
                "permissions": {},
            }
        return self._pull_requests

    def _new_comment(self, repo: _Repo, number: int, login: str, body: str) -> _Comment:
        comment = _Comment(next(_COMMENT_IDS), repo, number, login, [body], _now(), _now())
        self._pull_state()["comments"][comment.id] = comment
        return comment

    def _get_pull(self, call: _Call) -> _Reply:
        pull = self._pull_state()["pulls"].get(
            (call.repo.full_name, _int(call.params["pull_number"]))
        )
        if pull is None:
            return _Reply(404, _error_body(404, "Not Found", call.docs))
        return _Reply(200, self._render_pull(pull))

    def _create_comment(self, call: _Call) -> _Reply:
        number = _int(call.params["issue_number"])
        body = call.body.get("body") if isinstance(call.body, dict) else None
        if (call.repo.full_name, number) not in self._pull_state()["pulls"]:
            return _Reply(404, _error_body(404, "Not Found", call.docs))
        if not isinstance(body, str) or not body:
            return _Reply(
                422, _validation_failed("IssueComment", "body", "can't be blank", call.docs)
            )
        if len(body) > COMMENT_LIMIT:
            message = f"body is too long (maximum is {COMMENT_LIMIT} characters)"
            return _Reply(422, _validation_failed("IssueComment", "body", message, call.docs))
        comment = self._new_comment(call.repo, number, self.login, body)
        return _Reply(201, self._render_comment(comment))

    def _update_comment(self, call: _Call) -> _Reply:
        comment = self._pull_state()["comments"].get(_int(call.params["comment_id"]))
        body = call.body.get("body") if isinstance(call.body, dict) else None
        if comment is None or comment.repo is not call.repo:
            return _Reply(404, _error_body(404, "Not Found", call.docs))
        if comment.user != self.login:  # only its author (or an admin) edits a comment
            return _Reply(403, _error_body(403, "Must have admin rights to Repository.", call.docs))
        if not isinstance(body, str) or not body or len(body) > COMMENT_LIMIT:
            return _Reply(422, _validation_failed("IssueComment", "body", "is invalid", call.docs))
        comment.bodies.append(body)
        comment.updated_at = _now()
        return _Reply(200, self._render_comment(comment))

    def _create_reaction(self, call: _Call) -> _Reply:
        comment = self._pull_state()["comments"].get(_int(call.params["comment_id"]))
        content = call.body.get("content") if isinstance(call.body, dict) else None
        if comment is None or comment.repo is not call.repo:
            return _Reply(404, _error_body(404, "Not Found", call.docs))
        if content not in REACTIONS:
            return _Reply(422, _validation_failed("Reaction", "content", "is invalid", call.docs))
        mine = (self.login, content)
        status = 200 if mine in comment.reactions else 201  # 200: "reaction exists"
        if status == 201:
            comment.reactions.append(mine)
        number = comment.reactions.index(mine) + 1
        return _Reply(
            status,
            {
                "id": comment.id * 100 + number,
                "node_id": _node_id("Reaction", comment.id * 100 + number),
                "user": self._user(self.login),
                "content": content,
                "created_at": comment.created_at,
            },
        )

    def _get_permission(self, call: _Call) -> _Reply:
        login = call.params["username"]
        permission = self._pull_state()["permissions"].get((call.repo.full_name, login), "read")
        return _Reply(
            200,
            {
                "permission": permission,
                "role_name": ROLE_NAMES[permission],
                "user": self._user(login),
            },
        )

    def _render_comment(self, comment: _Comment) -> dict[str, Any]:
        api = self._api(comment.repo)
        html = f"{HTML_HOST}/{comment.repo.full_name}/pull/{comment.number}"
        return {
            "id": comment.id,
            "node_id": _node_id("IssueComment", comment.id),
            "url": f"{api}/issues/comments/{comment.id}",
            "html_url": f"{html}#issuecomment-{comment.id}",
            "body": comment.body,
            "user": self._user(comment.user),
            "created_at": comment.created_at,
            "updated_at": comment.updated_at,
            "issue_url": f"{api}/issues/{comment.number}",
            "author_association": "MEMBER" if comment.user == self.login else "CONTRIBUTOR",
            "performed_via_github_app": None,
        }

    def _render_pull(self, pull: _Pull) -> dict[str, Any]:
        api = self._api(pull.repo)
        html = f"{HTML_HOST}/{pull.repo.full_name}/pull/{pull.number}"
        head_owner = pull.head_repo.split("/", 1)[0]
        base_sha = _resolve_ref(pull.repo, pull.repo.default_branch) or pull.head_sha
        return {
            "url": f"{api}/pulls/{pull.number}",
            "id": pull.number + 5000,
            "node_id": _node_id("PullRequest", pull.number + 5000),
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": f"{api}/issues/{pull.number}",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": f"Pull request {pull.number}",
            "user": self._user(pull.user),
            "body": None,
            "created_at": pull.created_at,
            "updated_at": pull.created_at,
            "closed_at": None,
            "merged_at": None,
            "merge_commit_sha": None,
            "draft": False,
            "head": {
                "label": f"{head_owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": self._user(head_owner),
                "repo": None,
            },
            "base": {
                "label": f"{pull.repo.full_name.split('/')[0]}:{pull.repo.default_branch}",
                "ref": pull.repo.default_branch,
                "sha": base_sha,
                "user": self._user(pull.repo.full_name.split("/")[0], "Organization"),
                "repo": self._render_repo(pull.repo),
            },
            "merged": False,
            "mergeable": None,
            "comments": sum(
                1
                for c in self._pull_state()["comments"].values()
                if c.repo is pull.repo and c.number == pull.number
            ),
            "commits": 1,
        }


# --------------------------------------------------------------------------- helpers
def _match(method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
    for route in (*ROUTES, *GREEN_ROUTES):
        found = route.pattern.match(path)
        if found and route.method == method:
            return route, found.groupdict()
    return None


def _take(rules: list[_Rule], method: str, path: str) -> _Rule | None:
    rule = next((r for r in rules if r.matches(method, path)), None)
    if rule is not None:
        rule.times -= 1
        if rule.times <= 0:
            rules.remove(rule)
    return rule


def _parse_json(raw: bytes) -> tuple[Any, bool]:
    if not raw.strip():
        return None, True
    try:
        return json.loads(raw), True
    except ValueError:
        return None, False


def _error_body(status: int, message: str, docs: str, **extra: Any) -> dict[str, Any]:
    """GitHub's error shape: ``message``, ``documentation_url`` and (since 2024) ``status``."""
    return {"message": message, **extra, "documentation_url": docs, "status": str(status)}


def _validation_failed(resource: str, field_name: str, message: str, docs: str) -> dict[str, Any]:
    error = {"resource": resource, "code": "custom", "field": field_name, "message": message}
    return _error_body(422, "Validation Failed", docs, errors=[error])


def _request_invalid(route: _Route, problems: list[str], docs: str) -> _Reply:
    """422 for a body GitHub's schema check refuses (state errors use GitHub's model message)."""
    if route.handler == "_create_status" and any(p.startswith("state:") for p in problems):
        message = "state is not included in the list"
        return _Reply(422, _validation_failed("DeploymentStatus", "state", message, docs))
    return _Reply(422, _error_body(422, "Invalid request.\n\n" + "\n".join(problems), docs))


def _response_invalid(problems: list[str], request: RecordedRequest) -> _Reply:
    """What the client gets instead of a response that broke the contract (a fake bug)."""
    where = f"{request.method} {request.path}"
    message = f"fake GitHub: the response to {where} broke the OpenAPI contract"
    return _Reply(
        422,
        _error_body(
            422,
            message,
            DOCS,
            errors=[{"resource": "FakeGitHub", "code": "invalid", "message": p} for p in problems],
        ),
    )


def _not_found(call: _Call) -> _Reply:
    return _Reply(404, _error_body(404, "Not Found", call.docs))


def _resolve_ref(repo: _Repo, ref: str) -> str | None:
    """The commit sha ``ref`` names in ``repo`` (see ``FakeGitHub.add_repo``), or None."""
    if ref in repo.refs:
        return repo.refs[ref]
    if repo.git_dir is None:
        return ref.lower() if HEX_SHA.match(ref.lower()) else None
    if not ref or _NOT_A_REF.search(ref):
        return None
    result = _git(repo.git_dir, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return result.stdout.strip() if result.returncode == 0 else None


def _branch_head(repo: _Repo, branch: str) -> str | None:
    """The head commit of branch ``branch`` (``refs`` first, then ``git_dir``), or None."""
    if branch in repo.refs:
        return repo.refs[branch]
    if repo.git_dir is None or _NOT_A_REF.search(branch):
        return None
    found = _git(
        repo.git_dir, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"
    )
    return found.stdout.strip() if found.returncode == 0 else None


def _auto_merge(repo: _Repo, ref: str, sha: str, docs: str) -> _Reply | None:
    """GitHub's ``auto_merge``: None when ``sha`` already contains the default branch.

    Otherwise merge the default branch into branch ``ref`` (202, the branch moves) or, when that
    is impossible (conflicts, or ``ref`` is a sha or tag), refuse with 409.
    """
    if repo.git_dir is None:
        return None
    base = _resolve_ref(repo, f"refs/heads/{repo.default_branch}")
    if base is None or _git(repo.git_dir, "merge-base", "--is-ancestor", base, sha).returncode == 0:
        return None
    message = f"Auto-merged {repo.default_branch} into {ref} on deployment."
    if _merge_into_branch(repo.git_dir, ref.removeprefix("refs/heads/"), sha, base, message):
        return _Reply(202, {"message": message})
    conflict = f"Conflict merging {repo.default_branch} into {ref}."
    return _Reply(409, _error_body(409, conflict, docs))


def _contexts_refusal(
    repo: _Repo, ref: str, sha: str, required: list[str] | None, docs: str
) -> _Reply | None:
    """409 unless every required context is ``success`` (omitted = all reported contexts)."""
    reported = repo.commit_statuses.get(sha, {})
    needed = list(reported) if required is None else required
    if all(reported.get(context) == "success" for context in needed):
        return None
    contexts = [{"context": c, "state": s} for c, s in reported.items()]
    error = {
        "resource": "Deployment",
        "field": "required_contexts",
        "code": "invalid",
        "contexts": contexts,
    }
    message = f"Conflict: Commit status checks failed for {ref}."
    return _Reply(409, _error_body(409, message, docs, errors=[error]))


_GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "GitHub",
    "GIT_AUTHOR_EMAIL": "noreply@github.com",
    "GIT_COMMITTER_NAME": "GitHub",
    "GIT_COMMITTER_EMAIL": "noreply@github.com",
    "GIT_TERMINAL_PROMPT": "0",
}


def _git(git_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = ["git", "-C", str(git_dir), "-c", "commit.gpgsign=false", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, env=_GIT_ENV)


def _merge_into_branch(git_dir: Path, branch: str, sha: str, base: str, message: str) -> bool:
    """Merge ``base`` into branch ``branch`` (at ``sha``) server-side; False if it cannot."""
    if _NOT_A_REF.search(branch):
        return False
    head = _git(git_dir, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
    if head.returncode != 0 or head.stdout.strip() != sha:
        return False  # not a branch (a sha or a tag): GitHub cannot merge into it
    tree = _git(git_dir, "merge-tree", "--write-tree", sha, base)
    if tree.returncode != 0:
        return False
    tree_id = tree.stdout.splitlines()[0]
    commit = _git(git_dir, "commit-tree", tree_id, "-p", sha, "-p", base, "-m", message)
    if commit.returncode != 0:
        return False
    moved = _git(git_dir, "update-ref", f"refs/heads/{branch}", commit.stdout.strip(), sha)
    return moved.returncode == 0


def _handler_for(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like GitHub
        disable_nagle_algorithm = True
        wbufsize = -1  # headers and body leave in one segment (no delayed-ACK stalls)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def setup(self) -> None:
            super().setup()
            fake._track(self.connection, True)

        def finish(self) -> None:
            fake._track(self.connection, False)
            with contextlib.suppress(OSError):
                super().finish()

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self._serve()

        do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 - stdlib names

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if _GIT_PATH.match(urllib.parse.urlsplit(self.path).path):
                self._send_raw(fake._git_http(self.command, self.path, dict(self.headers), raw))
                return
            reply = fake._dispatch(self.command, self.path, dict(self.headers.items()), raw)
            try:
                self._send(reply, fake)
            except OSError:
                self.close_connection = True

        def _send_raw(self, reply: _Raw) -> None:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def _send(self, reply: _Reply, fake: FakeGitHub) -> None:
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in (fake._standard_headers() | reply.headers).items():
                self.send_header(name, value)
            if reply.status != 204:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    """A started ``FakeGitHub`` (function scope); the server is shut down after the test."""
    with FakeGitHub() as fake:
        yield fake


# --------------------------------------------------------------------------- pull requests
COMMENT_LIMIT = 65536
REACTIONS = frozenset({"+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"})
_COMMENT_IDS = itertools.count(time.time_ns() // 1000 % 10**12)
"""Comment ids are unique on GitHub, not per repository: the idempotency key of a run asked
for in a comment holds its id, and one test Prefect server outlives many fakes."""
ROLE_NAMES = {"admin": "admin", "write": "write", "read": "read", "none": "none"}
"""Legacy permission → ``role_name`` (``maintain`` and ``triage`` are reported as ``write`` and
``read``; the fake knows only the base roles)."""


@dataclass
class _Pull:
    number: int
    repo: _Repo
    head_sha: str
    head_ref: str
    head_repo: str
    user: str
    state: str
    created_at: str


@dataclass
class _Comment:
    id: int
    repo: _Repo
    number: int
    user: str
    bodies: list[str]
    created_at: str
    updated_at: str
    reactions: list[tuple[str, str]] = field(default_factory=list)

    @property
    def body(self) -> str:
        return self.bodies[-1]


def _int(value: str) -> int:
    return int(value) if value.isdigit() else -1


_ISSUE = "/repos/{owner}/{repo}/issues"
PULL_REQUEST_ROUTES = (
    _route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", "_get_pull"),
    _route("POST", _ISSUE + "/{issue_number}/comments", "_create_comment"),
    _route("PATCH", _ISSUE + "/comments/{comment_id}", "_update_comment"),
    _route("POST", _ISSUE + "/comments/{comment_id}/reactions", "_create_reaction"),
    _route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", "_get_permission"),
)
"""Served outside the deployments subset, described in ``tests/fixtures/github_rest/``."""
ROUTES += PULL_REQUEST_ROUTES


# --------------------------------------------------------------------------- compare
COMPARE_REQUIRED = (
    "url",
    "html_url",
    "permalink_url",
    "diff_url",
    "patch_url",
    "base_commit",
    "merge_base_commit",
    "status",
    "ahead_by",
    "behind_by",
    "total_commits",
    "commits",
)
"""The fields GitHub's ``commit-comparison`` schema requires (rest-api-description)."""
_LOG_FORMAT = "%H%x1f%P%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%T%x1f%B%x1e"


def _compare(self: FakeGitHub, call: _Call) -> _Reply:
    """GitHub's "compare two commits" (``GET …/compare/{base}...{head}``), counted in the
    repository's ``git_dir``: ``ahead_by`` commits ``head`` has that ``base`` lacks,
    ``behind_by`` the other way, ``commits`` (oldest first) what ``head`` adds."""
    base_ref, dots, head_ref = urllib.parse.unquote(call.params["basehead"]).partition("...")
    repo = call.repo
    base = _resolve_ref(repo, base_ref) if dots else None
    head = _resolve_ref(repo, head_ref) if dots else None
    if repo.git_dir is None or base is None or head is None:
        return _Reply(404, _error_body(404, "Not Found", call.docs))
    merge_base = _git(repo.git_dir, "merge-base", base, head).stdout.strip()
    added = _compare_commits(self, repo, f"{base}..{head}")
    behind = len(_git(repo.git_dir, "rev-list", f"{head}..{base}").stdout.split())
    ahead = len(added)
    status = (
        "identical"
        if not ahead and not behind
        else "ahead"
        if not behind
        else "behind"
        if not ahead
        else "diverged"
    )
    api, web = self._api(repo), f"{self.web_url}/{repo.full_name}"
    spec = f"{base_ref}...{head_ref}"
    return _Reply(
        200,
        {
            "url": f"{api}/compare/{spec}",
            "html_url": f"{web}/compare/{spec}",
            "permalink_url": f"{web}/compare/{repo.full_name.split('/')[0]}:{base[:7]}..."
            f"{repo.full_name.split('/')[0]}:{head[:7]}",
            "diff_url": f"{web}/compare/{spec}.diff",
            "patch_url": f"{web}/compare/{spec}.patch",
            "base_commit": _compare_commits(self, repo, base, single=True)[0],
            "merge_base_commit": _compare_commits(self, repo, merge_base or base, single=True)[0],
            "status": status,
            "ahead_by": ahead,
            "behind_by": behind,
            "total_commits": ahead,
            "commits": added,
            "files": [],
        },
    )


def _compare_commits(
    fake: FakeGitHub, repo: _Repo, spec: str, single: bool = False
) -> list[dict[str, Any]]:
    """The commits ``spec`` names (a range, or one commit with ``single``) as GitHub's
    ``commit`` objects, oldest first."""
    assert repo.git_dir is not None
    args = ["-1"] if single else ["--reverse"]
    out = _git(repo.git_dir, "log", *args, f"--format={_LOG_FORMAT}", spec).stdout
    api, web = fake._api(repo), f"{fake.web_url}/{repo.full_name}"
    commits = []
    for record in filter(str.strip, out.split("\x1e")):
        sha, parents, an, ae, ad, cn, ce, cd, tree, message = record.strip("\n").split("\x1f")
        commits.append(
            {
                "url": f"{api}/commits/{sha}",
                "sha": sha,
                "node_id": _node_id("Commit", int(sha[:7], 16)),
                "html_url": f"{web}/commit/{sha}",
                "comments_url": f"{api}/commits/{sha}/comments",
                "commit": {
                    "url": f"{api}/git/commits/{sha}",
                    "author": {"name": an, "email": ae, "date": ad},
                    "committer": {"name": cn, "email": ce, "date": cd},
                    "message": message.strip(),
                    "comment_count": 0,
                    "tree": {"sha": tree, "url": f"{api}/git/trees/{tree}"},
                    "verification": {
                        "verified": False,
                        "reason": "unsigned",
                        "signature": None,
                        "payload": None,
                        "verified_at": None,
                    },
                },
                "author": None,
                "committer": None,
                "parents": [
                    {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{web}/commit/{p}"}
                    for p in parents.split()
                ],
            }
        )
    return commits


COMPARE_ROUTES = (_route("GET", "/repos/{owner}/{repo}/compare/{basehead}", "_compare"),)
"""What a deploy changes: served outside the deployments subset; its answer carries the fields
GitHub's ``commit-comparison`` schema requires and PyGithub reads (tests/test_changes.py)."""
FakeGitHub._compare = _compare  # type: ignore[attr-defined]
ROUTES += COMPARE_ROUTES

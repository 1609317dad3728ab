"""Shared pytest set-up: the test bed (real sshd hosts, git, mvn) and the GitHub/Slack fakes."""

pytest_plugins = [
    "tests.testbed.fixtures",
    "tests.fakes.github_api",
    "tests.fakes.slack_api",
]

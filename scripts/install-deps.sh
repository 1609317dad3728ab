#!/bin/bash
# Install everything the test suite needs on a fresh Debian 12 machine, then the project's venv.
# Idempotent: run it again at any time; apt is skipped when every package is already installed.
#
# Usage (as root, from anywhere):  scripts/install-deps.sh
# Also creates the user builds run as (scripts/build-user.sh, CHATOPS_BUILD_USER).
#
#   PYTHON=python3.11   interpreter for the venv (default: python3; the project needs >= 3.11)
#   VENV=.venv          venv location (relative paths are from the repository root)
#
# What the tests use the packages for:
#   openssh-server, openssh-client   sshd on the fake hosts, ssh-keygen
#   iproute2, nftables, iptables     network namespaces, veths, fault injection (drop :22)
#   util-linux, procps               nsenter/unshare/flock, ps (zombie-aware pid checks)
#   git                              the example app's repository, the pipeline's checkout
#   openjdk-17-jdk-headless, maven   build the example .war (offline, see below)
#   lib*-plugin-java, junit5, libjakarta-servlet-api-java
#                                    Maven plugins and libraries in /usr/share/maven-repo: the
#                                    example app builds from there with `mvn -o` (no Maven Central)
#   tomcat10-common                  Tomcat 10.1 (/usr/share/tomcat10) run as a plain process
#   chromium                         the browser the UI tests drive (Playwright, never its own
#                                    browser download)
#   curl, python3-venv               health checks by hand; the venv
#   postgresql                       PostgreSQL 15 (/usr/lib/postgresql/15/bin): the scale-out test
#                                    starts a throwaway cluster as a plain process
#                                    (tests/testbed/postgres.py) and a Prefect server on it
set -euo pipefail

PACKAGES=(
  openssh-server openssh-client iproute2 nftables iptables util-linux procps git curl
  openjdk-17-jdk-headless maven
  libmaven-clean-plugin-java libmaven-resources-plugin-java libmaven-compiler-plugin-java
  libsurefire-java libmaven-jar-plugin-java libmaven-war-plugin-java
  junit5 libjakarta-servlet-api-java
  tomcat10-common
  chromium
  python3-venv
  postgresql
)

[ "$(id -u)" = 0 ] || { echo "install-deps.sh: run as root" >&2; exit 1; }
ROOT=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || echo "$p"
  done
}

install_packages() {
  local missing
  missing=$(missing_packages)
  if [ -z "$missing" ]; then
    echo "install-deps: apt packages already installed"
    return 0
  fi
  echo "install-deps: installing" $missing
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

install_venv() {
  local venv=${VENV:-.venv} wanted
  [[ $venv = /* ]] || venv="$ROOT/$venv"
  [ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
  # pip takes 5 s to find nothing to do: skip it while pyproject.toml is what was installed.
  wanted=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  if [ "$(cat "$venv/.chatops-installed" 2>/dev/null)" != "$wanted" ]; then
    (cd "$ROOT" && "$venv/bin/python" -m pip install -q -e '.[test]')
    echo "$wanted" > "$venv/.chatops-installed"
  fi
  echo "install-deps: venv ready at $venv ($("$venv/bin/python" --version))"
}

install_packages
mkdir -p /run/sshd   # sshd's privilege-separation directory; no service manager creates it here
"$ROOT/scripts/build-user.sh"   # the unprivileged user builds run as
install_venv

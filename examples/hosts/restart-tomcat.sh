#!/bin/bash
# restart-tomcat: (re)start the app on this host with the release that <deploy_path>/current points to.
#
# Usage: restart-tomcat [DEPLOY_PATH]            (DEPLOY_PATH defaults to /srv/app)
#   Environment (all optional):
#     APP_NAME=demo          war name: serves <deploy_path>/current/$APP_NAME.war at /$APP_NAME/
#     TOMCAT_PORT=8080       HTTP port (all addresses, or TOMCAT_ADDRESS if set)
#     CATALINA_HOME=/usr/share/tomcat10
#     CATALINA_OPTS="-Xmx128m -XX:TieredStopAtLevel=1"
#
# What it does, in order:
#   1. stops the Tomcat of this deploy path (pid file; SIGTERM, SIGKILL after 10 s);
#   2. copies <deploy_path>/current/$APP_NAME.war to <deploy_path>/tomcat/webapps/$APP_NAME.war and
#      removes the previously exploded directory, so Tomcat unpacks the new war;
#   3. starts Tomcat in the background (CATALINA_BASE=<deploy_path>/tomcat, created with its own
#      conf/server.xml on first use) and returns at once. Output goes to tomcat/logs/catalina.out,
#      so an SSH session running this script closes right away.
# It does not wait for the app: health-check GET http://<host>:$TOMCAT_PORT/$APP_NAME/health.
# Exit status: 0 started; 1 no war under current/ (nothing was stopped); 2 Tomcat did not start
# (see <deploy_path>/tomcat/logs/catalina.out).
# Needs: bash, coreutils, procps (ps), a JDK 17 and Tomcat 10.1 (Debian: tomcat10-common).
set -euo pipefail

DEPLOY=${1:-/srv/app}
APP=${APP_NAME:-demo}
PORT=${TOMCAT_PORT:-8080}
ADDRESS_ATTR=${TOMCAT_ADDRESS:+ address=\"$TOMCAT_ADDRESS\"}
export CATALINA_HOME=${CATALINA_HOME:-/usr/share/tomcat10}
export CATALINA_BASE="$DEPLOY/tomcat"
export CATALINA_PID="$CATALINA_BASE/tomcat.pid"
export CATALINA_OUT="$CATALINA_BASE/logs/catalina.out"
export CATALINA_OPTS=${CATALINA_OPTS:--Xmx128m -XX:TieredStopAtLevel=1}

# Alive = exists and is not a zombie. An init that reaps orphans slowly leaves a killed JVM as a
# zombie for seconds, and `kill -0` would call it alive.
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$stat" ] && [ "${stat#Z}" = "$stat" ]
}

init_base() {
  mkdir -p "$CATALINA_BASE"/{conf,webapps,logs,temp,work}
  [ -f "$CATALINA_BASE/conf/server.xml" ] && return 0
  # backgroundProcessorDelay=1: a war dropped into webapps/ is picked up within ~1 s, not 10 s.
  cat > "$CATALINA_BASE/conf/server.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="$PORT"$ADDRESS_ATTR protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost" backgroundProcessorDelay="1">
      <Host name="localhost" appBase="webapps" unpackWARs="true" autoDeploy="true"/>
    </Engine>
  </Service>
</Server>
XML
}

stop_tomcat() {
  [ -f "$CATALINA_PID" ] || return 0
  local pid
  pid=$(cat "$CATALINA_PID")
  if [ -n "$pid" ] && alive "$pid"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$CATALINA_PID"
}

install_war() {
  local war="$DEPLOY/current/$APP.war"
  rm -rf "${CATALINA_BASE:?}/webapps/$APP" "$CATALINA_BASE/work/Catalina/localhost/$APP"
  cp "$war" "$CATALINA_BASE/webapps/$APP.war.tmp"
  mv -f "$CATALINA_BASE/webapps/$APP.war.tmp" "$CATALINA_BASE/webapps/$APP.war"
}

start_tomcat() {
  # setsid: not in the SSH session's process group; no inherited stdin/stdout keeps the channel open.
  setsid -w "$CATALINA_HOME/bin/catalina.sh" start </dev/null >/dev/null 2>&1
  local pid
  pid=$(cat "$CATALINA_PID" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" || { echo "restart-tomcat: Tomcat did not start" >&2; exit 2; }
  echo "restart-tomcat: $APP started, pid $pid, port $PORT, release $(readlink -f "$DEPLOY/current")"
}

# Refuse before stopping anything: a missing war must not take the running app down.
[ -f "$DEPLOY/current/$APP.war" ] || { echo "restart-tomcat: no $DEPLOY/current/$APP.war" >&2; exit 1; }
init_base
stop_tomcat
install_war
start_tomcat

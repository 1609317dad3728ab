#!/bin/bash
# restart-tomcat: make the app on this host serve the release that <deploy_path>/current points to.
# A running Tomcat switches without a restart (parallel deployment); a stopped one is started.
#
# Usage: restart-tomcat [DEPLOY_PATH]            (DEPLOY_PATH defaults to /srv/app)
#   Environment (all optional):
#     APP_NAME=demo          war name: serves <deploy_path>/current/$APP_NAME.war at /$APP_NAME/
#     TOMCAT_PORT=8080       HTTP port (all addresses, or TOMCAT_ADDRESS if set)
#     HEALTH_PATH=/$APP_NAME/health   must answer 200 with the sha in current/REVISION
#     SWITCH_TIMEOUT=30      seconds the new version has to answer HEALTH_PATH
#     CATALINA_HOME=/usr/share/tomcat10
#     CATALINA_OPTS="-Xmx128m -XX:TieredStopAtLevel=1"
#
# Tomcat running (the zero-downtime switch):
#   1. copies current/$APP_NAME.war into <deploy_path>/tomcat/webapps/ as a new version,
#      $APP_NAME##<serial>-<release>.war (the serial is zero-padded and only grows, because Tomcat
#      orders versions as strings and sends new requests to the highest one it has started);
#      Tomcat deploys it beside the old version, which keeps serving meanwhile;
#   2. waits until HEALTH_PATH, asked on this host, answers 200 with the new sha; then removes the
#      older versions' wars, and Tomcat undeploys them (requests they are serving finish first);
#   3. if the new version does not answer within SWITCH_TIMEOUT although Tomcat unpacked it (it
#      failed to start, or is unhealthy), removes it again and exits 3: the old version serves on;
#      if Tomcat did not even pick it up (it hangs), restarts Tomcat with the new version instead.
#   If the newest version already is this war and answers, nothing is deployed (a deploy that
#   failed is switched back this way without touching the old version).
# Tomcat not running: starts it (CATALINA_BASE=<deploy_path>/tomcat, created with its own
#   conf/server.xml on first use) with only the new version, and returns at once. Output goes to
#   tomcat/logs/catalina.out, so an SSH session running this script closes right away.
# Health-check GET http://<host>:$TOMCAT_PORT/$APP_NAME/health afterwards as before.
# Exit status: 0 serving the new version (or started); 1 no war under current/ (nothing was
# touched); 2 Tomcat did not start (see <deploy_path>/tomcat/logs/catalina.out); 3 the new version
# did not come up in the running Tomcat and was removed, the old one still serves.
# Needs: bash, coreutils, procps (ps), a JDK 17 and Tomcat 10.1 (Debian: tomcat10-common).
set -euo pipefail
export LC_ALL=C

DEPLOY=${1:-/srv/app}
APP=${APP_NAME:-demo}
PORT=${TOMCAT_PORT:-8080}
ADDRESS_ATTR=${TOMCAT_ADDRESS:+ address=\"$TOMCAT_ADDRESS\"}
HEALTH_PATH=${HEALTH_PATH:-/$APP/health}
SWITCH_TIMEOUT=${SWITCH_TIMEOUT:-30}
export CATALINA_HOME=${CATALINA_HOME:-/usr/share/tomcat10}
export CATALINA_BASE="$DEPLOY/tomcat"
export CATALINA_PID="$CATALINA_BASE/tomcat.pid"
export CATALINA_OUT="$CATALINA_BASE/logs/catalina.out"
export CATALINA_OPTS=${CATALINA_OPTS:--Xmx128m -XX:TieredStopAtLevel=1}
WEBAPPS="$CATALINA_BASE/webapps"
WAR="$DEPLOY/current/$APP.war"
# The health answer must name this commit; no REVISION (a war put there by hand): 200 is enough.
SHA=$(head -c 64 "$DEPLOY/current/REVISION" 2>/dev/null | tr -d '[:space:]' || true)
RELEASE=$(basename "$(readlink -f "$DEPLOY/current")" | tr -c 'A-Za-z0-9._\n-' '_')
case ${TOMCAT_ADDRESS:-0.0.0.0} in 0.0.0.0 | "::") PROBE_HOST=127.0.0.1 ;; *) PROBE_HOST=$TOMCAT_ADDRESS ;; esac

say() { echo "restart-tomcat: $*"; }
fail() { echo "restart-tomcat: $2" >&2; exit "$1"; }

# Alive = exists and is not a zombie. An init that reaps orphans slowly leaves a killed JVM as a
# zombie for seconds, and `kill -0` would call it alive.
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) && [ -n "$stat" ] && [ "${stat#Z}" = "$stat" ]
}

tomcat_pid() {
  local pid
  pid=$(cat "$CATALINA_PID" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid" && echo "$pid"
}

init_base() {
  mkdir -p "$CATALINA_BASE"/{conf,webapps,logs,temp,work}
  # Without a catalina.properties skip list, Tomcat scans every jar of its own class path for
  # TLDs and annotations each time it deploys a version: ~1 s of the switch. The app's own jars
  # (WEB-INF/lib) are still scanned.
  [ -f "$CATALINA_BASE/conf/context.xml" ] ||
    echo '<Context><JarScanner scanClassPath="false" scanManifest="false"/></Context>' \
      > "$CATALINA_BASE/conf/context.xml"
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

# The app's versions in webapps/, oldest first, as war names without ".war". An unversioned
# $APP.war (left by an older version of this script) is Tomcat's oldest version, "".
versions() {
  [ -f "$WEBAPPS/$APP.war" ] && echo "$APP"
  local war
  for war in "$WEBAPPS/$APP"##*.war; do [ -f "$war" ] && basename "$war" .war; done | sort
  return 0
}

# The next version: a zero-padded serial above every one used before (kept in a file, so a
# version removed after a failure is never reused), then the release for people reading webapps/.
next_version() {
  local last serial name
  last=$(cat "$CATALINA_BASE/last-serial" 2>/dev/null || echo 0)
  for name in $(versions); do
    serial=${name#"$APP"##}; serial=${serial%%-*}
    [[ $serial =~ ^[0-9]+$ ]] && ((10#$serial > 10#$last)) && last=$serial
  done
  serial=$(printf '%09d' $((10#$last + 1)))
  echo "$serial" > "$CATALINA_BASE/last-serial"
  echo "$APP##$serial-$RELEASE"
}

# GET HEALTH_PATH from this host's Tomcat: bash's /dev/tcp, so no curl is needed.
healthy() {
  local answer
  answer=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" &&
    printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$0" >&3 && cat <&3' \
    "$PROBE_HOST" "$PORT" "$HEALTH_PATH" 2>/dev/null) || return 1
  [[ $answer == "HTTP/1."?" 200 "* && $answer == *"$SHA"* ]]
}

# Put current's war into webapps/ as $1.war: copied under a name Tomcat ignores, then renamed,
# so Tomcat never sees half a war.
install_war() {
  cp "$WAR" "$WEBAPPS/$1.war.tmp"
  mv -f "$WEBAPPS/$1.war.tmp" "$WEBAPPS/$1.war"
}

# Remove the wars of every version but $1; Tomcat undeploys them and deletes what it unpacked.
remove_others() {
  local name
  for name in $(versions); do
    [ "$name" = "$1" ] || rm -f "$WEBAPPS/$name.war"
  done
}

# Whether Tomcat logged, since byte $1 of catalina.out, that it finished deploying version $2
# (it has started it then, or failed to: the health check tells which). Needed as well as the
# health answer, because the old version answers with the same sha when a commit is redeployed.
deployed() {
  tail -c +"$(($1 + 1))" "$CATALINA_OUT" 2>/dev/null | grep -qF "$2.war] has finished"
}

# Whether Tomcat began to deploy version $2 (unpacked it, or logged so since byte $1).
picked_up() {
  [ -d "$WEBAPPS/$2" ] ||
    tail -c +"$(($1 + 1))" "$CATALINA_OUT" 2>/dev/null | grep -qF "Deploying web application archive [$WEBAPPS/$2.war]"
}

# Whether Tomcat logged, since byte $1 of catalina.out, that version $2 failed to start.
failed() {
  tail -c +"$(($1 + 1))" "$CATALINA_OUT" 2>/dev/null | grep -qF "Context [/$2] startup failed"
}

# Tomcat's errors since byte $1 of catalina.out (the first ones say why a version did not start).
tomcat_errors() {
  tail -c +"$(($1 + 1))" "$CATALINA_OUT" 2>/dev/null | sed -n 's/^SEVERE: //p' | head -n 3 | tr '\n' ' '
}

stop_tomcat() {
  local pid
  if pid=$(tomcat_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then kill -9 "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$CATALINA_PID"
}

# Start Tomcat with only version $1 of the app, and return at once.
start_tomcat() {
  local name
  for name in $(versions); do
    rm -rf "${WEBAPPS:?}/$name.war" "${WEBAPPS:?}/$name" "$CATALINA_BASE/work/Catalina/localhost/$name"
  done
  install_war "$1"
  # setsid: not in the SSH session's process group; no inherited stdin/stdout keeps the channel open.
  setsid -w "$CATALINA_HOME/bin/catalina.sh" start </dev/null >/dev/null 2>&1
  local pid
  pid=$(tomcat_pid) || fail 2 "Tomcat did not start (see $CATALINA_OUT)"
  say "started Tomcat, pid $pid, port $PORT, with $1"
}

# The zero-downtime switch in a running Tomcat (see the top of this file).
switch_version() {
  local new=$1 old offset deadline why errors
  old=$(versions | tail -n 1)
  offset=$(stat -c %s "$CATALINA_OUT" 2>/dev/null || echo 0)
  # Stopped before the new version answers (the pipeline's command_timeout): take it back out,
  # so the old version goes on serving what the pipeline then switches current back to.
  trap 'rm -f "$WEBAPPS/$new.war"; fail 143 "stopped while $new was deploying; removed it"' TERM INT HUP
  install_war "$new"
  deadline=$((SECONDS + SWITCH_TIMEOUT))
  until deployed "$offset" "$new" && healthy; do
    if failed "$offset" "$new"; then
      why="failed to start in Tomcat"
    elif ((SECONDS >= deadline)); then
      why="did not answer $HEALTH_PATH with 200 and ${SHA:0:7} within $SWITCH_TIMEOUT s"
    else
      sleep 0.1
      continue
    fi
    if [ "$why" != "failed to start in Tomcat" ] && ! picked_up "$offset" "$new"; then
      say "Tomcat did not pick up $new within $SWITCH_TIMEOUT s; restarting it"
      stop_tomcat
      start_tomcat "$new"
      return 0
    fi
    rm -f "$WEBAPPS/$new.war"
    errors=$(tomcat_errors "$offset")
    fail 3 "$new $why; removed it, ${old:-no version} still serves.${errors:+ Tomcat: $errors}"
  done
  trap - TERM INT HUP
  remove_others "$new"
  say "$new serves on port $PORT (Tomcat pid $(tomcat_pid), not restarted); ${old:-no version} undeployed"
}

# Refuse before touching anything: a missing war must not take the running app down.
[ -f "$WAR" ] || fail 1 "no $WAR"
init_base
if ! tomcat_pid >/dev/null; then
  start_tomcat "$(next_version)"
  exit 0
fi
newest=$(versions | tail -n 1)
if [ -n "$newest" ] && cmp -s "$WAR" "$WEBAPPS/$newest.war" && healthy; then
  remove_others "$newest"
  say "$newest already serves this war; nothing deployed"
  exit 0
fi
switch_version "$(next_version)"

"""Light hosts: sshd and a tiny HTTP health server instead of Tomcat, so that what a deploy costs
the machine that orchestrates it shows, not the JVM's start.

:func:`make_light` puts two files on a test-bed host: ``bin/light-health.py``, which answers
``GET /demo/health`` on port 8080 with the full sha in ``current/REVISION`` (503 while there is
none), and ``bin/restart-light``, the restart command (:data:`RESTART`), which starts that server
unless it runs (it reads ``current`` on every request, so a new release needs no restart of it).

It also gives the host a home of its own (an empty ``/root``, in its mount namespace): test-bed
hosts otherwise share the control machine's ``/root``, whose ``.bashrc`` (pyenv's set-up) every
SSH command's shell reads, at about 0.12 CPU-s each, which would drown what the deploy costs.
"""

from __future__ import annotations

from tests.testbed.hosts import DEPLOY_PATH, TestHost

RESTART = f"{DEPLOY_PATH}/bin/restart-light {DEPLOY_PATH}"

HEALTH_SERVER = """\
import pathlib, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

root = pathlib.Path(sys.argv[1])


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            body = (root / "current" / "REVISION").read_bytes()
        except OSError:
            body = b""
        self.send_response(200 if self.path == "/demo/health" and body else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("0.0.0.0", 8080), Health).serve_forever()
"""
RESTART_LIGHT = """\
#!/bin/sh
# restart-light [DEPLOY_PATH]: make sure the host's health server runs (it reads current/REVISION
# on every request, so a new release needs no restart of it).
D=${1:-/srv/app}
if [ -s "$D/light.pid" ] && kill -0 "$(cat "$D/light.pid")" 2>/dev/null; then exit 0; fi
setsid /usr/bin/python3 "$D/bin/light-health.py" "$D" </dev/null >"$D/light.log" 2>&1 &
echo $! > "$D/light.pid"
"""


def make_light(host: TestHost) -> None:
    """Put the tiny health server and its restart script on ``host``."""
    bin_dir = host.root / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "light-health.py").write_text(HEALTH_SERVER)
    restart = bin_dir / "restart-light"
    restart.write_text(RESTART_LIGHT)
    restart.chmod(0o755)
    host.run("mount -t tmpfs -o size=8m,mode=700 lighthome /root", check=True)

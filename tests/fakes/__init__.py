"""Stand-ins for GitHub's and Slack's hosted APIs, kept honest by third-party fixtures.

The fixtures (official payloads, OpenAPI descriptions, signature vectors, recorded traffic) live
in ``shared/fixtures`` beside this repository's checkout; ``CHATOPS_FIXTURES`` points elsewhere.
"""

import os
from pathlib import Path

FIXTURES = Path(
    os.environ.get("CHATOPS_FIXTURES", Path(__file__).resolve().parents[3] / "shared" / "fixtures")
)

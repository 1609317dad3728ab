"""Slack's mrkdwn as plain text: how the CLI prints the gateway's answers, and how a refusal
reads in a GitHub deployment status (which shows no markup).

>>> mrkdwn_to_text("*shop* on <@U0ALICE001> &lt;x&gt; <http://p/runs/1|shop@v1> :lock: `v1`")
'shop on @U0ALICE001 <x> shop@v1 (http://p/runs/1) 🔒 v1'
"""

import re

from render.slack_card import MRKDWN_BOLD, MRKDWN_LINK, MRKDWN_MENTION

EMOJI = {
    ":lock:": "🔒",
    ":unlock:": "🔓",
    ":no_entry:": "⛔",
    ":white_check_mark:": "✓",
    ":x:": "✗",
    ":warning:": "⚠",
    ":hourglass:": "⏳",
}
_CODE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def mrkdwn_to_text(text: str, bold: bool = False) -> str:
    """``text`` without mrkdwn markup; ``bold`` keeps ``*bold*`` as ANSI bold."""
    text = MRKDWN_LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = MRKDWN_MENTION.sub(lambda m: m.group(1) + m.group(2), text)
    text = MRKDWN_BOLD.sub(lambda m: f"\033[1m{m.group(1)}\033[0m" if bold else m.group(1), text)
    text = _CODE.sub(r"\1", text).replace("```", "")
    for code, symbol in EMOJI.items():
        text = text.replace(code, symbol)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

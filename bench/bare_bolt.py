"""The baseline for ack latency: a Bolt app that only acks, served the same way as byoi."""

from __future__ import annotations

import os
from typing import Any

from slack_bolt import Ack, App
from waitress import serve

from bot.slack.serve import web_client, wsgi


def main() -> None:
    client = web_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL"))
    app = App(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])

    @app.command("/byoi")
    def command(ack: Ack) -> None:
        ack()

    @app.action("run_approve")
    def click(ack: Ack, body: dict[str, Any]) -> None:
        ack()

    serve(wsgi(app), host="127.0.0.1", port=int(os.environ["PORT"]), threads=8)


if __name__ == "__main__":
    main()

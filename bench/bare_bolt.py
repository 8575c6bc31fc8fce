"""The baseline for ack latency: a Bolt app that only acks, served the same way as byoi.

``BARE_PROCESS_BEFORE_RESPONSE=1`` runs its listeners in the request's thread, as byoi does;
otherwise Bolt's default (listeners in Bolt's executor, the ack awaited by polling).
"""

from __future__ import annotations

import os
from typing import Any

from slack_bolt import Ack, App
from waitress import serve

from bot.slack.serve import WSGI_THREADS, web_client, wsgi


def main() -> None:
    client = web_client(os.environ["SLACK_BOT_TOKEN"], os.environ.get("SLACK_API_URL"))
    app = App(
        client=client,
        signing_secret=os.environ["SLACK_SIGNING_SECRET"],
        process_before_response=os.environ.get("BARE_PROCESS_BEFORE_RESPONSE") == "1",
    )

    @app.command("/byoi")
    def command(ack: Ack) -> None:
        ack()

    @app.action("run_approve")
    def click(ack: Ack, body: dict[str, Any]) -> None:
        ack()

    serve(wsgi(app), host="127.0.0.1", port=int(os.environ["PORT"]), threads=WSGI_THREADS)


if __name__ == "__main__":
    main()

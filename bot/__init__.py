"""The edges people talk to: the shell and the Slack app; `bot.cli` is the composition root.

Each edge turns errors into replies in one place (pipeline/errors.py says how): the shell in
``Shell._answer``, Slack in ``bot.slack.app.guarded``, the command line in ``bot.cli.main``.
May import pipeline and providers (adapters are built only in the composition root).
"""

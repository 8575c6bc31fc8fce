"""The edges people talk to: the shell and the Slack app; `bot.cli` is the composition root.

May import pipeline and providers (adapters are built only in the composition root).
"""

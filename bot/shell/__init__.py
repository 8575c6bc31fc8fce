"""The console: the read-eval loop, text rendering of the views (bot/views/), the scan as JSON
and the demo setup.

May import pipeline; never Slack.
"""

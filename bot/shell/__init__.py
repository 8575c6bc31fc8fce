"""The console: the read-eval loop, text rendering and the demo setup.

May import pipeline; never Slack.
"""

"""The Slack app: listeners, serve, run and alert cards, the scan schedule.

May import pipeline, slack_bolt and slack_sdk.
"""

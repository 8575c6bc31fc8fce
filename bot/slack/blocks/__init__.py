"""Pure Block Kit builders: values in, lists of blocks out; no Slack calls.

May import pipeline values only.
"""

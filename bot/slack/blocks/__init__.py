"""Pure Block Kit builders: the views (bot/views/) in Slack's layout and marks, lists of blocks
out; no Slack calls.

May import bot.views and pipeline values only.
"""

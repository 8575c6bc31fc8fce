"""One view model of runs, plans, alerts and the fleet, with the wording decided.

Frozen values built once from the pipeline's models: titles, state words, verb phrases, version
lines, ages and phase lines. The shell renders them to text (bot/shell/text.py), Slack to Block
Kit (bot/slack/blocks/), so each sentence lives here once; a surface chooses only its layout,
its marks (bold, code, mentions) and its symbols.

May import pipeline values only; never Slack, the shell or a provider adapter.
"""

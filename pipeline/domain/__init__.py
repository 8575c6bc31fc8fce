"""The language of byoi: runs, servers, steps, alerts, commands, plans, policy and staleness.

Pure values and functions; time is passed in. May import config values and providers.base.
"""

"""The language of byoi: runs, servers, steps, alerts, commands, plans, policy and staleness.

Pure values and functions; time is passed in. May import config values, pipeline.errors and
providers.base; never the services.
"""

"""The language of byoi: runs, servers, steps, commands, plans, policy and staleness.

Pure values and functions; time is passed in.
"""

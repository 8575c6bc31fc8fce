"""The use cases the edges call: scale, approve, reject, cancel, refresh (bake), roll, continue,
images prune, snooze, the read-only views, and what a front end needs to show runs (display).
May import domain, config, execution, state, ports and providers.base.
"""

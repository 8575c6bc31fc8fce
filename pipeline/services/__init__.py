"""The use cases the edges call: scale, approve, reject, cancel, refresh (bake), roll, continue,
images prune, snooze, the read-only views, and what a front end needs to show runs (display).
``service.Service`` is the one door; lookup and planning are what the use cases share.
Use cases raise UserError (pipeline/errors.py) for what a person can fix; they return replies.
May import domain, config, execution, state, ports, errors and providers.base.
"""

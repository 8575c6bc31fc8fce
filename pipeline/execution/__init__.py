"""Carrying runs out: the runner, the scripts it sends, recovery after a crash, the scan.

May import domain, config, state, ports and providers.base.
"""

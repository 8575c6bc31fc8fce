"""Carrying runs out: the runner and its lifecycle steps (bake, probe, roll batches, prune),
the scripts it sends, version probes, recovery after a crash, the scan.

May import domain, config, state, ports and providers.base.
"""

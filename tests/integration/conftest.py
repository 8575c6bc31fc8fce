"""Fixtures for tests against emulated services."""

from tests.integration.moto_env import aws, moto_server

__all__ = ["aws", "moto_server"]

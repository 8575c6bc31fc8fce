"""Fixtures for end-to-end tests that need emulated clouds."""

from tests.integration.moto_env import aws, moto_server

__all__ = ["aws", "moto_server"]

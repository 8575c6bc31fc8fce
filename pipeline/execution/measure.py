"""Measuring an image's versions: a throwaway server cloned from it runs the version probes
(pipeline/execution/probes.py, the same ones every clone and bake runs) through the provider's
script channel, so what is recorded is what the machine printed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pipeline.execution import probes
from providers.base import Image, LaunchRequest, Provider, ServerSpec


def measure_image(
    provider: Provider,
    image: Image,
    keys: Iterable[str],
    *,
    key: str,
    tags: Mapping[str, str],
    overrides: Mapping[str, str],
    timeout_seconds: float,
) -> dict[str, str]:
    """Versions of ``image``, measured on a server cloned from it (terminated afterwards);
    ``overrides`` are the app's configured probes."""
    request = LaunchRequest(
        key=key, name=key, image=image, spec=ServerSpec(), tags={**tags, "byoi:purpose": "probe"}
    )
    server = provider.launch(request)
    try:
        return probes.measure(provider, server, keys, overrides, timeout_seconds)
    finally:
        provider.terminate(server)

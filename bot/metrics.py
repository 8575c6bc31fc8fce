"""Prometheus metrics for `byoi serve` (served at GET /metrics).

Instruments are fed as things happen (steps and runs through the pipeline's Meter port, Slack
calls, provider errors); runs, approvals, alerts, servers and the last scan are read through
the display service and the providers at scrape time. Every label is bounded: kinds, states,
steps, providers, apps and environments from byoi.yml, Slack method names; never a run id or a
user id.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.config.model import Config
from pipeline.domain.models import Run, RunKind, RunState, Step
from pipeline.ports import Clock
from pipeline.services.display import Display
from pipeline.services.replies import StatusReply
from pipeline.services.service import Service
from providers.base import (
    Batches,
    CountsServers,
    Image,
    KeyMatch,
    LaunchRequest,
    Provider,
    ProviderError,
    Script,
    ScriptResult,
    Server,
    Target,
)

R = TypeVar("R")
log = logging.getLogger("byoi.runs")
STEP_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
AGE_LABELS = ((7, "0-7d"), (30, "7-30d"), (90, "30-90d"))


def age_label(days: int | None) -> str:
    """The image-age bucket of a server: a handful of values, so the label stays bounded."""
    if days is None:
        return "unknown"
    return next((label for limit, label in AGE_LABELS if days < limit), "90d+")


class Metrics:
    """The registry and its instruments; also the pipeline's Meter."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.step_seconds = self._histogram(
            "byoi_step_duration_seconds",
            "How long one server's step took, by provider, step and outcome.",
            STEP_BUCKETS,
            ("provider", "step", "outcome"),
        )
        self.run_seconds = self._histogram(
            "byoi_run_duration_seconds",
            "How long a run took from start to its final state, by provider, kind and outcome.",
            RUN_BUCKETS,
            ("provider", "kind", "outcome"),
        )
        self.slack_calls = self._counter(
            "byoi_slack_api_calls",
            "Slack Web API calls (retries included in one call), by method and outcome.",
            ("method", "outcome"),
        )
        self.slack_retries = self._counter(
            "byoi_slack_api_retries",
            "Slack Web API requests retried, by method and reason.",
            ("method", "reason"),
        )
        self.slack_rate_limited = self._counter(
            "byoi_slack_api_rate_limited",
            "Slack Web API responses with HTTP 429, by method.",
            ("method",),
        )
        self.provider_errors = self._counter(
            "byoi_provider_errors",
            "Provider calls that failed, by provider and kind of error.",
            ("provider", "kind"),
        )
        self._steps: dict[tuple[str, Step, str], Histogram] = {}

    def _counter(self, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _histogram(
        self, name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...]
    ) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    # the pipeline's Meter --------------------------------------------------------------

    def step_finished(
        self, run: Run, slot: int, step: Step, provider: str, outcome: str, seconds: float
    ) -> None:
        key = (provider, step, outcome)
        # A cohort of a thousand servers ends each step at once: the labelled histogram is
        # looked up once, not once per server.
        histogram = self._steps.get(key)
        if histogram is None:
            histogram = self._steps[key] = self.step_seconds.labels(provider, step.value, outcome)
        histogram.observe(seconds)
        if not log.isEnabledFor(logging.INFO):
            return
        log.info(
            "server %s: %s %s in %.2fs",
            slot,
            step.value,
            outcome,
            seconds,
            extra={"run": run.id, "app": run.app, "env": run.env, "step": step.value},
        )

    def run_finished(self, run: Run, provider: str, seconds: float) -> None:
        self.run_seconds.labels(provider, run.kind.value, run.state.value).observe(seconds)
        log.info(
            "%s %s in %.1fs",
            run.label,
            run.state.value,
            seconds,
            extra={"run": run.id, "app": run.app, "env": run.env},
        )

    # wiring ----------------------------------------------------------------------------

    def wrap_provider(self, provider: Provider) -> Provider:
        """The provider with its errors counted, taking many servers per call and counting
        servers if it does (the runner and ``scale`` ask which it can)."""
        kind = _METERED[isinstance(provider, Batches), isinstance(provider, CountsServers)]
        return kind(provider, self.provider_errors)

    def watch(self, source: ScrapeSource) -> None:
        """Read runs, approvals, alerts, servers and scans from ``source`` at every scrape."""
        self.registry.register(ScrapeCollector(source))

    def watch_queue(self, depth: Callable[[], int]) -> None:
        gauge = Gauge(
            "byoi_post_ack_queue_depth",
            "Slack requests acknowledged whose work has not finished yet.",
            registry=self.registry,
        )
        gauge.set_function(lambda: float(depth()))

    def wsgi(self) -> Callable[..., Iterable[bytes]]:
        app: Callable[..., Iterable[bytes]] = make_wsgi_app(self.registry)
        return app


@dataclass
class ScrapeSource:
    """What the scrape-time collector reads: state through the display service, the fleet
    through the views, cached for ``fleet_ttl`` seconds because listing servers is a cloud API
    call."""

    config: Config
    display: Display
    service: Service
    clock: Clock
    fleet_ttl: float = 60.0

    def __post_init__(self) -> None:
        self._fleet: tuple[float, StatusReply] | None = None
        self._lock = threading.Lock()

    def fleet(self) -> StatusReply:
        with self._lock:
            if self._fleet is None or time.monotonic() - self._fleet[0] > self.fleet_ttl:
                status = self.service.views.status(None, self.clock())
                self._fleet = (time.monotonic(), status)
            return self._fleet[1]


class ScrapeCollector(Collector):
    def __init__(self, source: ScrapeSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for part in (self._runs, self._alerts, self._scan, self._servers):
            try:
                yield from part()
            except Exception:  # one failing source must not empty the whole scrape
                log.exception("metrics: reading %s failed", part.__name__.strip("_"))

    def _runs(self) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "byoi_runs", "Runs that ended, by kind and outcome.", labels=["kind", "outcome"]
        )
        active = GaugeMetricFamily(
            "byoi_runs_active", "Runs not yet ended, by kind and state.", labels=["kind", "state"]
        )
        found = self.source.display.runs_by_kind_and_state()
        for kind in RunKind:
            for state in RunState:
                family = active if state.active else runs
                family.add_metric([kind.value, state.value], found.get((kind, state), 0))
        waiting = sum(n for (_, state), n in found.items() if state == RunState.AWAITING_APPROVAL)
        yield runs
        yield active
        yield GaugeMetricFamily(
            "byoi_approvals_waiting", "Runs waiting for an approval.", value=waiting
        )

    def _alerts(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "byoi_alerts_open", "Stale-image alerts not resolved, by app.", labels=["app"]
        )
        per_app = dict.fromkeys(self.source.config.apps, 0)
        for alert in self.source.display.unresolved_alerts():
            per_app[alert.app] = per_app.get(alert.app, 0) + 1
        for app, n in sorted(per_app.items()):
            family.add_metric([app], n)
        yield family

    def _scan(self) -> Iterator[Metric]:
        at = self.source.display.last_scan()
        if at is not None:
            yield GaugeMetricFamily(
                "byoi_last_scan_timestamp_seconds",
                "When the stale-image scan last completed (Unix time).",
                value=at.timestamp(),
            )

    def _servers(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "byoi_servers",
            "Live servers by app, environment and the age of their image.",
            labels=["app", "env", "image_age"],
        )
        for env in self.source.fleet().envs:
            if env.error:
                continue
            ages: dict[str, int] = {}
            for server in env.servers:
                label = age_label(server.image_age_days)
                ages[label] = ages.get(label, 0) + 1
            for label, n in sorted(ages.items()):
                family.add_metric([env.app, env.env, label], n)
        yield family


class MeteredProvider:
    """A provider whose errors are counted by kind (NotFound, Throttled, Capacity, ...)."""

    def __init__(self, inner: Provider, errors: Counter) -> None:
        self.inner = inner
        self.name = inner.name
        self._errors = errors

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ProviderError as exc:
            self._errors.labels(self.name, type(exc).__name__).inc()
            raise

    def resolve_image(self, ref: str) -> Image:
        image: Image = self._call(self.inner.resolve_image, ref)
        return image

    def list_images(self, family: str | None = None) -> list[Image]:
        images: list[Image] = self._call(self.inner.list_images, family)
        return images

    def launch(self, request: LaunchRequest) -> Server:
        server: Server = self._call(self.inner.launch, request)
        return server

    def run_script(self, server: Server, script: Script) -> ScriptResult:
        result: ScriptResult = self._call(self.inner.run_script, server, script)
        return result

    def register(self, server: Server, target: Target) -> None:
        self._call(self.inner.register, server, target)

    def deregister(self, server: Server, target: Target) -> None:
        self._call(self.inner.deregister, server, target)

    def terminate(self, server: Server) -> None:
        self._call(self.inner.terminate, server)

    def snapshot(self, server: Server, **options: Any) -> Image:
        """Passes the port's keyword-only options (name, family, versions, tags) through."""
        image: Image = self._call(self.inner.snapshot, server, **options)
        return image

    def delete_image(self, image: Image) -> None:
        self._call(self.inner.delete_image, image)

    def tag_server(self, server: Server, tags: Mapping[str, str]) -> None:
        self._call(self.inner.tag_server, server, tags)

    def list_servers(self, tags: Mapping[str, str]) -> list[Server]:
        servers: list[Server] = self._call(self.inner.list_servers, tags)
        return servers

    def target_members(self, target: Target) -> list[str]:
        members: list[str] = self._call(self.inner.target_members, target)
        return members


class _MeteredBatches(MeteredProvider):
    """A metered provider that takes many servers per call; each server's error is counted."""

    inner: Any

    def _each(self, outcomes: list[R]) -> list[R]:
        for outcome in outcomes:
            if isinstance(outcome, ProviderError):
                self._errors.labels(self.name, type(outcome).__name__).inc()
        return outcomes

    def launch_all(self, requests: Sequence[LaunchRequest]) -> list[Server | ProviderError]:
        return self._each(self._call(self.inner.launch_all, requests))

    def run_script_all(
        self, jobs: Sequence[tuple[Server, Script]]
    ) -> list[ScriptResult | ProviderError]:
        return self._each(self._call(self.inner.run_script_all, jobs))

    def register_all(self, servers: Sequence[Server], target: Target) -> list[ProviderError | None]:
        return self._each(self._call(self.inner.register_all, servers, target))

    def tag_all(
        self, tagged: Sequence[tuple[Server, Mapping[str, str]]]
    ) -> list[ProviderError | None]:
        return self._each(self._call(self.inner.tag_all, tagged))


class _MeteredCounts(MeteredProvider):
    """A metered provider that counts servers without listing them."""

    inner: Any

    def count_servers(self, tags: Mapping[str, str], keys: KeyMatch) -> int:
        count: int = self._call(self.inner.count_servers, tags, keys)
        return count


class _MeteredBoth(_MeteredBatches, _MeteredCounts):
    pass


_METERED: dict[tuple[bool, bool], type[MeteredProvider]] = {
    (False, False): MeteredProvider,
    (True, False): _MeteredBatches,
    (False, True): _MeteredCounts,
    (True, True): _MeteredBoth,
}
"""By (takes many servers per call, counts servers)."""

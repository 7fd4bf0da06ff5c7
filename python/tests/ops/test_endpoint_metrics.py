"""Our endpoint's optional metrics port (``GCRS_ENDPOINT_METRICS_LISTEN``), scraped before
and after the unmodified SDK runs tasks through our service, with the service's own
``/metrics`` beside it. Everything is real (service, RabbitMQ, SQLite, our endpoint run as a
throwaway user, its user endpoint, the SDK)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import opsite  # noqa: E402

pytestmark = pytest.mark.timeout(240)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_our_endpoint_serves_its_metrics_port(port_5000):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with opsite.running_site(
        "ep-metrics", ours=True, endpoint_env={"GCRS_ENDPOINT_METRICS_LISTEN": f"127.0.0.1:{port}"}
    ) as ours:
        before = opsite.scrape(url)
        assert before["gc_endpoint_user_endpoints_running"] == 0
        assert before.get("gc_endpoint_user_endpoints_started_total", 0) == 0
        opsite.run_tasks(ours.endpoint_id, ok=2, failing=1)
        after = opsite.scrape(url)
        assert after["gc_endpoint_user_endpoints_started_total"] == 1
        assert after["gc_endpoint_user_endpoints_running"] == 1
        assert after.get("gc_endpoint_commands_rejected_total", 0) == 0
        service = opsite.scrape()
        assert service["gc_service_tasks_received_total"] == 3
        assert service["gc_service_tasks_failed_total"] == 1

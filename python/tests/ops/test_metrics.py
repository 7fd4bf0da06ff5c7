"""Prometheus metrics of the service (``GET /metrics``), scraped before and after the
unmodified SDK runs tasks: the counters, the latency histogram and the site-wide gauges move
as the tasks run. Everything is real (service, RabbitMQ, SQLite, the upstream endpoint and
its user endpoint, the SDK). Our endpoint's metrics port: ``test_endpoint_metrics.py``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import opsite  # noqa: E402

pytestmark = pytest.mark.timeout(240)

scrape = opsite.scrape


def delta(before: dict, after: dict, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.fixture(scope="module")
def site(port_5000):
    with opsite.running_site("metrics") as s:
        yield s


def test_metrics_move_as_tasks_run(site):
    before = scrape()
    assert before["gc_service_endpoints_online"] >= 1
    assert before["gc_service_endpoints_registered"] >= 1
    assert before["gc_service_broker_up"] == 1
    assert 'gc_service_queue_messages{queue="results"}' in before
    assert 'gc_service_queue_messages{queue="heartbeats"}' in before

    opsite.run_tasks(site.endpoint_id, ok=6, failing=2)
    # The consumer counts an outcome when it records it, before the SDK can see the result;
    # scraping right after the SDK got every result therefore sees all of them.
    after = scrape()
    assert delta(before, after, "gc_service_tasks_received_total") == 8
    assert delta(before, after, "gc_service_tasks_succeeded_total") == 6
    assert delta(before, after, "gc_service_tasks_failed_total") == 2
    assert delta(before, after, "gc_service_task_result_latency_seconds_count") == 8
    assert delta(before, after, "gc_service_task_result_latency_seconds_sum") > 0
    # Histogram buckets are cumulative: the +Inf bucket holds every observation.
    assert delta(before, after, 'gc_service_task_result_latency_seconds_bucket{le="+Inf"}') == 8
    assert after["gc_service_user_endpoints_running"] >= 1
    assert after["gc_service_tasks_pending"] == 0
    submits = [
        k
        for k in after
        if k.startswith("gc_service_http_requests_total{")
        and 'route="/v3/endpoints/{id}/submit"' in k
        and 'status="200"' in k
    ]
    assert submits, sorted(after)
    assert sum(delta(before, after, k) for k in submits) >= 1
    # The scrape itself is counted under its route template, ids never appear in labels.
    assert any('route="/metrics"' in k for k in after)
    assert not any(site.endpoint_id in k for k in after)


def test_pending_gauge_rises_and_falls_with_a_running_task(site):
    from globus_compute_sdk import Executor

    with Executor(endpoint_id=site.endpoint_id) as ex:
        fut = ex.submit(opsite.FUNCS["nap"], 4)
        deadline = time.monotonic() + 60
        while scrape()["gc_service_tasks_pending"] < 1:
            assert not fut.done() and time.monotonic() < deadline, "never saw the task pending"
            time.sleep(0.3)
        assert fut.result(timeout=60) == 4
    assert scrape()["gc_service_tasks_pending"] == 0


def test_status_page_is_absent_without_an_admin_token(site):
    r = requests.get(f"{opsite.BASE}/admin/status", timeout=10)
    assert r.status_code == 404


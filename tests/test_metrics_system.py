"""/metrics (Prometheus text) and the System page: who may read them, what they count,
and that several gunicorn workers add up (multiprocess mode)."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta

import pytest
import redis
from prometheus_client import REGISTRY

from handled import create_app
from handled.auth import session_cache
from handled.metrics import last_hour
from handled.models import ImportRun, TransformationRun
from handled.timeutil import utcnow
from tests.support.accounts import make_user, sign_in
from tests.support.environment import TEST_REDIS
from tests.support.servers import PrivateRedis

TOKEN = "metrics-token-0123456789abcdef"


def sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metric_value(text: str, name: str, **labels) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


@pytest.mark.flow("Verify")
def test_metrics_needs_view_system_or_the_bearer_token(settings):
    app = create_app(replace(settings, metrics_token=TOKEN))
    app.config.update(TESTING=True)
    anonymous = app.test_client()
    assert anonymous.get("/metrics").status_code == 302
    assert anonymous.get("/metrics", headers={"Accept": "application/json"}).status_code == 401
    assert anonymous.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    scraped = anonymous.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert scraped.status_code == 200 and "handled_database_up" in scraped.get_data(as_text=True)
    assert sign_in(app, make_user(app, role="salesperson").email).get("/metrics").status_code == 403
    allowed = sign_in(app, make_user(app, permissions=["view_system"]).email)
    assert allowed.get("/metrics").status_code == 200
    assert allowed.get("/system").status_code == 200

    tokenless = create_app(settings)  # no METRICS_TOKEN: the bearer path is closed
    assert tokenless.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401


@pytest.mark.flow("Reading the metrics")
def test_session_counters_and_live_gauges(settings):
    app = create_app(settings)
    app.config.update(TESTING=True)
    with app.app_context():
        TransformationRun.create(transformation="zip3_reference", status="succeeded",
                                 started_at=utcnow() - timedelta(hours=2, minutes=5),
                                 finished_at=utcnow() - timedelta(hours=2))
        TransformationRun.create(transformation="zip3_reference", status="failed", finished_at=utcnow())
        ImportRun.create(integration="us_zips", file_name="z.csv", file_sha256="b" * 64, file_size=1,
                         status="succeeded", finished_at=utcnow() - timedelta(minutes=30))
    user = make_user(app, permissions=["view_system"])
    client = sign_in(app, user.email)
    hits, misses = sample("handled_session_cache_total", result="hit"), sample("handled_session_cache_total", result="miss")
    lookups = sample("handled_primary_session_lookups_total")
    requests_before = sample("handled_requests_total", endpoint="auth.me", method="GET", status="200")

    assert client.get("/api/me").status_code == 200  # miss -> PRIMARY -> cached
    for _ in range(3):
        assert client.get("/api/me").status_code == 200  # hits
    assert sample("handled_session_cache_total", result="miss") == misses + 1
    assert sample("handled_session_cache_total", result="hit") == hits + 3
    assert sample("handled_primary_session_lookups_total") == lookups + 1
    assert sample("handled_requests_total", endpoint="auth.me", method="GET", status="200") == requests_before + 4

    text = client.get("/metrics").get_data(as_text=True)
    first_db = "primary" if settings.split_db_mode else "primary+data"
    assert metric_value(text, "handled_database_up", database=first_db) == 1
    if settings.split_db_mode:
        assert metric_value(text, "handled_database_up", database="data") == 1
    assert metric_value(text, "handled_redis_up") == 1
    age = metric_value(text, "handled_reference_table_age_seconds", transformation="zip3_reference")
    assert 2 * 3600 - 60 < age < 2 * 3600 + 600  # the succeeded run, not the later failed one
    assert 1700 < metric_value(text, "handled_import_age_seconds", integration="us_zips") < 2400
    assert metric_value(text, "handled_pool_connections", database=first_db, state="max") == settings.primary.pool_size
    server_line = r'^handled_server_connections\{application_name="handled-[a-z+]+",database="%s",state="[a-z ]+"\} [1-9]'
    assert re.search(server_line % re.escape(first_db), text, re.MULTILINE)
    assert 'handled_job_queue_jobs{queue="handled",state="queued"}' in text
    assert metric_value(text, "handled_session_cache_total", result="hit") is not None


@pytest.mark.flow("Reading the metrics")
def test_redis_down_counts_primary_lookups_and_the_system_page_charts_the_hour(settings, tmp_path):
    server = PrivateRedis(tmp_path / "redis").start()
    try:
        app = create_app(replace(settings, redis_url=server.url))
        app.config.update(TESTING=True)
        client = sign_in(app, make_user(app, permissions=["view_system"]).email)
        for _ in range(4):
            client.get("/api/me")
        with app.app_context():
            hour = last_hour()  # per-minute counts from Redis (the minute may have turned meanwhile)
        assert sum(m["hit"] for m in hour) == 3 and sum(m["miss"] for m in hour) == 1
        assert sum(m["primary"] for m in hour) == 1
        keys = redis.Redis.from_url(server.url).keys("ops:auth:*")
        assert keys and all(3500 < redis.Redis.from_url(server.url).ttl(k) <= 3660 for k in keys)

        page = client.get("/system").get_data(as_text=True)
        assert "<svg" in page and 'class="bar"' in page and 'class="ratio"' in page
        assert "hit ratio <strong>" in page
        assert '<td>auth.me</td><td class="num">200</td>' in page  # the busiest endpoints, from the same counters

        server.stop()
        session_cache.reset_process_state()
        unavailable = sample("handled_session_cache_total", result="unavailable")
        lookups = sample("handled_primary_session_lookups_total")
        for _ in range(3):
            assert client.get("/api/me").status_code == 200
        assert sample("handled_primary_session_lookups_total") == lookups + 3  # every check went to PRIMARY
        assert sample("handled_session_cache_total", result="unavailable") >= unavailable + 1
        down_page = client.get("/system")
        assert down_page.status_code == 200 and "Redis: <strong>DOWN</strong>" in down_page.get_data(as_text=True)
        text = client.get("/metrics").get_data(as_text=True)
        assert metric_value(text, "handled_redis_up") == 0
    finally:
        server.stop()


def requests_per_worker(metrics_dir, endpoint: str) -> dict[str, float]:
    """{worker pid: requests it counted for ``endpoint``}, read from each worker's own counter file."""
    from prometheus_client.mmap_dict import MmapedDict

    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        values = MmapedDict(str(path), read_mode=True)
        try:
            total = sum(value for key, value, _ in values.read_all_values()
                        if '"handled_requests_total"' in key and f'"{endpoint}"' in key)
        finally:
            values.close()
        if total:
            counts[path.stem.split("_", 1)[1]] = total
    return counts


@pytest.mark.flow("Reading the metrics")
def test_several_gunicorn_workers_add_up_in_multiprocess_mode(settings, tmp_path):
    from tests.support.databases import db_url
    from tests.support.gunicorn import Gunicorn, admin_token, app_env

    token = admin_token(settings)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = app_env(settings, db_url(settings.primary.dbname))
    env.update(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), METRICS_TOKEN=TOKEN, SESSION_CACHE_ENABLED="true")
    server = Gunicorn(tmp_path, env)
    try:
        def get(path, **headers):
            req = urllib.request.Request(server.url(path), headers=headers)
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.read().decode()

        sent, answered = 0, {}
        # Until at least two workers have answered: on a busy machine one worker can take every
        # connection for a while (the other still booting, or not scheduled), so bound it by time.
        deadline = time.monotonic() + 60
        with ThreadPoolExecutor(max_workers=6) as pool:
            while len(answered) < 2 and time.monotonic() < deadline:
                list(pool.map(lambda _: get("/api/me", Cookie=f"handled_session={token}",
                                            Accept="application/json"), range(10)))
                sent += 10
                answered = requests_per_worker(metrics_dir, "auth.me")
        assert len(answered) >= 2 and sum(answered.values()) == sent, (sent, answered)
        totals = []
        for _ in range(4):  # whichever worker answers, the sum is the same
            text = get("/metrics", Authorization=f"Bearer {TOKEN}")
            totals.append(metric_value(text, "handled_requests_total", endpoint="auth.me", method="GET",
                                       status="200"))
        assert totals == [float(sent)] * 4
        assert metric_value(text, "handled_primary_session_lookups_total") >= 1
        hits = metric_value(text, "handled_session_cache_total", result="hit")
        misses = metric_value(text, "handled_session_cache_total", result="miss")
        assert hits + misses == sent
        try:
            get("/metrics", Authorization="Bearer not-the-token-000000")
            raise AssertionError("a wrong token was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        server.stop()
        redis.Redis.from_url(TEST_REDIS).flushdb()


def test_minute_counts_reach_redis_in_batches_not_one_write_per_request(app, redis_client):
    from handled import metrics

    metrics.reset_process_state()
    for _ in range(50):
        metrics.session_cache_hit()
    now = int(time.time() // 60)
    in_redis = sum(int(redis_client.hget(metrics.MINUTE_KEY.format(minute=m), "hit") or 0) for m in (now - 1, now))
    assert in_redis == 1  # the first count went out at once; the rest wait for the next flush
    assert sum(minute["hit"] for minute in last_hour()) == 50  # reading the chart flushes them

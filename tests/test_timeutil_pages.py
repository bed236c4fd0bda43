"""Every page shows a moment the same way: a <time datetime="...Z"> whose text is the readable
UTC form ("29 Nov 2026 23:41 UTC"), turned into the reader's local time by static/times.js, which
every page loads. No page prints a bare "2026-11-29 23:41" (with or without "UTC") any more."""

from __future__ import annotations

import re

import pytest

from handled import runs
from handled.exports.registry import EXPORTS
from handled.models import User
from handled.timeutil import readable_utc, time_element, utcnow

pytestmark = pytest.mark.one_mode   # templates only: the same in both database modes

TIME = re.compile(r'<time datetime="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ">(\d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d UTC)</time>')
BARE = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d")


def seed_runs(app, user):
    with app.app_context():
        User.update(last_login_at=utcnow()).where(User.id == user.id).execute()
        imp = runs.start_run("import", actor_id=user.id, actor_email=user.email, integration="us-zips",
                             file_name="uszips.csv", file_sha256="0" * 64, file_size=10)
        runs.finish_run("import", imp.id, "succeeded", message="Imported.", rows_read=1, rows_written=1)
        for tid in ("zip3-reference", "delivery-matrix"):
            run = runs.start_run("transformation", actor_id=user.id, actor_email=user.email, transformation=tid)
            runs.finish_run("transformation", run.id, "succeeded", rows_written=1)
        export = runs.start_run("export", actor_id=user.id, actor_email=user.email, export=next(iter(EXPORTS)))
        runs.finish_run("export", export.id, "succeeded", rows_written=1)
        return imp.id


def test_the_filter_writes_a_time_element_with_readable_utc_text():
    assert time_element("2026-11-29T23:41:05Z") == ('<time datetime="2026-11-29T23:41:05Z">29 Nov 2026 23:41 UTC'
                                                    '</time>')
    assert readable_utc("2026-11-30T01:41:05+02:00") == "29 Nov 2026 23:41 UTC"
    assert time_element(None) == ""


def test_every_page_shows_times_as_time_elements_in_one_form(app, login_client):
    client = login_client(role="admin")
    run_id = seed_runs(app, client.user)
    pages = ["/", "/system", "/account", "/admin/users", f"/admin/users/{client.user.id}", "/admin/audit",
             "/integrations/", f"/integrations/runs/{run_id}", "/transformations/", "/exports/"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.get_data(as_text=True)
        assert 'src="/static/times.js"' in html, url
        shown = TIME.findall(html)
        assert shown, f"{url} shows no time"
        outside = BARE.findall(TIME.sub("", html))
        assert not outside, f"{url} shows a time outside <time>: {outside}"
        assert "<time" not in TIME.sub("", html), f"{url} has a <time> of another form"

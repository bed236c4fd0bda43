"""Accessibility and small screens, in Debian's chromium (issue 14, section 7).

- axe-core finds no serious or critical violation on any page an admin can reach: the test
  walks the app's URL map (every GET route that answers a page), filling ids from rows it
  made through the pages themselves (a user, a role, an organization, a facility, an import
  run with rejected rows, a queued job, a temporary password); numbers in tables are
  right-aligned and the nav marks the page shown (aria-current="page").
- Flash messages are announced: errors with role=alert, the rest with role=status.
- At phone width (375 x 740) the top bar shows the whole user name and every nav link;
  the screenshot is docs/screenshots/phone.png. No page scrolls sideways there: wide tables
  scroll inside a box of their own and every button outside such a box is on screen.
- From the top of a page, Tab reaches the skip link first, which moves focus to the main
  content; every control then shows where the focus is.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from handled import create_app
from tests.support.accessibility import add_axe, axe_violations, current_nav_links, misaligned_numbers
from handled.customers import services
from tests.support.accounts import TEST_PASSWORD, make_user, setup_context
from tests.support.browser import screenshot, serving, sign_in
from tests.support.environment import ROOT
from tests.support.import_files import uszip_row, write_uszips
from tests.support.reference_data import build_reference_tables

pytestmark = [pytest.mark.browser, pytest.mark.one_mode]   # pages render the same in both database modes

SCREENSHOTS = ROOT / "docs" / "screenshots"
LONG_NAME = "Alexandra Montgomery-Whitfield"

# GET endpoints that answer something other than a page for people (nothing for axe to read).
NOT_PAGES = {
    "static": "stylesheet and scripts",
    "health.healthz": "JSON for load balancers",
    "auth.me": "JSON",
    "system.metrics_page": "Prometheus text",
    "exports.download": "a file download",
    "integrations.rejected_csv": "a CSV download",
    "coverage.coverage_csv": "a CSV download",
    "jobs.job_json": "JSON the job page polls",
    "auth.login": "redirects a signed-in user; checked signed out below",
}

# Where the top bar should mark the page shown: path prefix -> the nav link's href.
NAV_HOME = {"/admin/users": "/admin/users", "/admin/roles": "/admin/roles", "/admin/audit": "/admin/audit",
            "/customers/organizations": "/customers/organizations",
            "/customers/facilities": "/customers/facilities", "/system": "/system",
            "/integrations": "/integrations/", "/transformations": "/transformations/", "/coverage": "/coverage/",
            "/exports": "/exports/", "/jobs": "/jobs/", "/account": "/account"}


@pytest.fixture
def site(settings, tmp_path):
    """A live server whose uploads are imported inline (the run page is the answer)."""
    app = create_app(replace(settings, session_cookie_secure=False, import_background_bytes=10**9,
                             import_upload_dir=str(tmp_path / "uploads"),
                             import_archive_dir=str(tmp_path / "archive")))
    with serving(app) as base:
        yield app, base


def _flash(page):
    return page.locator("main .flash").first


def _id_in_link(page, prefix: str, text: str) -> int:
    href = page.locator(f"main a[href^='{prefix}']", has_text=text).first.get_attribute("href")
    return int(re.search(re.escape(prefix) + r"(\d+)", href).group(1))


def _make_rows(page, app, base, settings, tmp_path) -> dict:
    """Rows for every id a page takes, made through the pages (each step also checks a flash)."""
    with app.app_context():
        build_reference_tables(settings)
    clerk = make_user(app, role="salesperson", email="dana.dock@example.test", name="Dana Dock")

    page.goto(f"{base}/admin/roles/new")
    page.fill("input[name=code]", "night_shift")
    page.fill("input[name=name]", "Night shift")
    page.check("input[name=permissions][value=view_customers]")
    page.click("main button[type=submit]")
    assert _flash(page).get_attribute("role") == "status", "an info flash is announced politely"
    role_id = _id_in_link(page, "/admin/roles/", "Night shift")

    page.goto(f"{base}/customers/organizations/new")
    page.fill("input[name=code]", "acme")
    page.fill("input[name=name]", "Acme Outdoor")
    page.click("main button[type=submit]")
    page.goto(f"{base}/customers/organizations")
    org_id = _id_in_link(page, "/customers/organizations/", "Acme Outdoor")

    page.goto(f"{base}/customers/facilities/new")
    page.fill("input[name=code]", "nyc1")
    page.fill("input[name=name]", "Bronx dock")
    page.select_option("select[name=state]", "NY")
    page.fill("input[name=zip]", "10001")
    page.select_option("select[name=timezone]", "America/New_York")
    page.check(f"input[name=organizations][value='{org_id}']")
    page.click("main button[type=submit]")
    page.goto(f"{base}/customers/facilities")
    facility_id = _id_in_link(page, "/customers/facilities/", "Bronx dock")

    # A second facility, inactive, to compare with on the coverage page.
    with app.test_request_context():
        second = services.save_facility(setup_context(settings), {
            "code": "nyc2", "name": "Harlem annex", "state": "NY", "zip": "10002", "timezone": "America/New_York"},
            [org_id])
        services.set_facility_active(setup_context(settings), second.id, False)

    rows = [uszip_row(f"{n:05d}") for n in range(501, 521)] + [uszip_row("9x")]
    page.goto(f"{base}/integrations/us-zips")
    page.set_input_files("input[name=files]", str(write_uszips(tmp_path / "uszips.csv", rows)))
    page.check("input[name=partial]")
    page.click("main form button[type=submit]")
    run_id = int(re.search(r"/integrations/runs/(\d+)", page.url).group(1))
    assert _flash(page).get_attribute("role") == "alert", "a flash about rejected rows is an alert"

    page.goto(f"{base}/transformations/")
    page.click("form[action$='/zip3-reference/run'] button")
    job_id = re.search(r"/jobs/([^/?#]+)$", page.url).group(1)

    page.goto(f"{base}/admin/users/{clerk.id}/reset-password")
    page.click("#confirm-reset")
    token = re.search(r"/temporary-password/([^/?#]+)$", page.url).group(1)
    return {"user_id": clerk.id, "role_id": role_id, "org_id": org_id, "facility_id": facility_id,
            "run_id": run_id, "integration_id": "us-zips", "job_id": job_id, "token": token,
            "export_id": "zip3-reference.csv", "facility": facility_id, "other": second.id}


def _page_urls(app, ids) -> dict[str, str]:
    """Endpoint -> URL for every GET route of the app that answers a page; an id nobody made fails."""
    from flask import url_for

    urls = {}
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in NOT_PAGES:
                continue
            missing = rule.arguments - ids.keys()
            assert not missing, f"{rule.rule}: the walk has no row for {sorted(missing)}; make one in _make_rows"
            urls[rule.endpoint] = url_for(rule.endpoint, **{name: ids[name] for name in rule.arguments})
    return urls


def _expected_current(path: str) -> list[str]:
    if path == "/":
        return ["/"]
    for prefix, href in NAV_HOME.items():
        if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
            return [href]
    return []


@pytest.mark.runs_long(15)   # walks every page
def test_axe_finds_nothing_serious_on_any_page_an_admin_reaches(site, browser, settings, tmp_path, artifacts_dir):
    app, base = site
    admin = make_user(app, role="admin", email="chief@example.test", name=LONG_NAME)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    add_axe(context)
    page = context.new_page()
    blocked = []
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)

    signed_out = []
    page.goto(f"{base}/login")
    assert page.locator(".mode").count() == 0, "the sign-in page does not show the database mode"
    signed_out += [f"/login: {v}" for v in axe_violations(page)]
    sign_in(page, base, admin.email, TEST_PASSWORD)
    assert page.locator(".mode").count() == 1, "signed in, the top bar shows the database mode"

    ids = _make_rows(page, app, base, settings, tmp_path)
    # Token pages: the temporary password as first shown was the page just loaded.
    first_view = [f"temporary password (shown): {v}" for v in axe_violations(page)]
    urls = _page_urls(app, ids)
    extra = {"coverage of a facility": f"/coverage/?facility={ids['facility']}",
             "coverage of two facilities": f"/coverage/compare?facility={ids['facility']}&other={ids['other']}",
             "an error page (404)": "/admin/users/999999"}

    problems, walked = signed_out + first_view, []
    for name, url in sorted(urls.items()) + sorted(extra.items()):
        response = page.goto(base + url)
        # 410: the temporary password was shown once already (its "gone" page); 404: the error page
        assert response.status in (200, 404, 410), f"{url} answered {response.status}"
        assert "text/html" in response.headers.get("content-type", ""), f"{url} is not a page"
        walked.append(url)
        problems += [f"{url}: {v}" for v in axe_violations(page)]
        problems += [f"{url}: {v}" for v in misaligned_numbers(page)]
        path = url.split("?")[0]
        if response.status != 404:
            assert current_nav_links(page) == _expected_current(path), f"{url}: nav marks {current_nav_links(page)}"
        screenshot(page, artifacts_dir / f"{len(walked):02d}-{name.replace('.', '-').replace(' ', '-')}.png")

    # A form shown again with an error beside each field.
    page.goto(f"{base}/customers/facilities/new")
    page.fill("input[name=zip]", "00000")
    page.click("main button[type=submit]")
    problems += [f"facility form with errors: {v}" for v in axe_violations(page)]

    assert len(walked) >= 25, walked
    assert problems == [], "\n".join(problems)
    assert blocked == [], "the Content-Security-Policy stayed on and blocked nothing the pages need"


def test_top_bar_at_phone_width_shows_the_whole_name_and_every_link(live_server, browser):
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name=LONG_NAME)
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2)
    add_axe(context)
    page = context.new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    page.goto(f"{base}/admin/users")
    assert axe_violations(page) == []

    name = page.locator("header .userbar a").first
    assert name.inner_text() == LONG_NAME
    box = name.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= 375, f"the name runs off the screen: {box}"
    assert name.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the name is cut (ellipsis or overflow)"
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the page scrolls sideways"
    sign_out = page.locator("header .userbar button")
    assert sign_out.is_visible() and sign_out.bounding_box()["x"] + sign_out.bounding_box()["width"] <= 375

    links = page.locator("header nav a")
    assert links.count() >= 10
    for i in range(links.count()):
        link = links.nth(i)
        b = link.bounding_box()
        assert link.is_visible() and b["x"] >= 0 and b["x"] + b["width"] <= 375, f"{link.inner_text()}: {b}"
    assert current_nav_links(page) == ["/admin/users"]
    page.locator("header nav a", has_text="Facilities").click()
    assert page.url == f"{base}/customers/facilities"
    assert axe_violations(page) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot(page, SCREENSHOTS / "phone.png")


def _focus_shown(page) -> dict:
    return page.evaluate("""() => {
      const e = document.activeElement, s = getComputedStyle(e);
      return {tag: e.tagName, text: (e.textContent || e.name || "").trim().slice(0, 40), id: e.id,
              outline: s.outlineStyle !== "none" && parseFloat(s.outlineWidth) >= 2,
              visible: e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().top >= 0};
    }""")


def test_tab_reaches_the_skip_link_first_and_every_control_shows_its_focus(live_server, browser):
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name=LONG_NAME)
    clerk = make_user(app, role="salesperson", email="dana.dock@example.test", name="Dana Dock")
    page = browser.new_context(viewport={"width": 1100, "height": 900}).new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    page.goto(f"{base}/admin/users/{clerk.id}")

    page.keyboard.press("Tab")
    first = _focus_shown(page)
    assert first["text"] == "Skip to main content" and first["visible"] and first["outline"], first
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main", "the skip link moves focus to main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('main') !== null"), "the next Tab is inside main"

    # Every control, top bar included, draws a visible outline when it has the keyboard's focus.
    page.evaluate("window.scrollTo(0, 0); document.activeElement.blur()")
    page.goto(f"{base}/admin/users/{clerk.id}")
    seen = []
    for _ in range(60):
        page.keyboard.press("Tab")
        focus = _focus_shown(page)
        if focus["tag"] == "BODY" or (seen and focus == seen[0]):
            break
        seen.append(focus)
    assert len(seen) > 15, seen
    assert [f for f in seen if not f["outline"]] == []
    assert {"A", "BUTTON", "INPUT"} <= {f["tag"] for f in seen}


def _sideways(page, width: int) -> list[str]:
    """What makes the page wider than the screen: the document's width, and each button or link
    (outside a scroll box of its own) whose right edge lies past the viewport."""
    return page.evaluate("""(width) => {
      const out = [], doc = document.documentElement;
      const boxed = (e) => {
        for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
          const s = getComputedStyle(p);
          if (p.tagName !== "MAIN" && (s.overflowX === "auto" || s.overflowX === "scroll")) return true;
        }
        return false;
      };
      if (doc.scrollWidth > width) {
        const wide = [...document.body.querySelectorAll("*")].filter(e => !boxed(e) && e.getBoundingClientRect().right > width + 1
            && ![...e.children].some(c => c.getBoundingClientRect().right > width + 1));
        out.push(`the page is ${doc.scrollWidth} px wide: ` + wide.slice(0, 3).map(
            e => `${e.tagName.toLowerCase()}.${e.className} "${e.textContent.trim().slice(0, 30)}"`).join(", "));
      }
      for (const e of document.querySelectorAll("main button, main a, main input, main select")) {
        const r = e.getBoundingClientRect();
        if (!r.width) continue;
        if (!boxed(e) && r.right > width + 1)
          out.push(`${e.tagName.toLowerCase()} "${(e.textContent || e.name || "").trim().slice(0, 30)}" ends at x=${Math.round(r.right)}`);
      }
      return out;
    }""", width)


@pytest.mark.runs_long(8)   # walks every page
def test_no_page_an_admin_reaches_scrolls_sideways_at_phone_width(site, browser, settings, tmp_path, artifacts_dir):
    """At 375 px every page fits the screen: wide tables scroll inside a box of their own, so the
    page never scrolls sideways and every button outside such a box is on screen."""
    app, base = site
    admin = make_user(app, role="admin", email="chief@example.test", name=LONG_NAME)
    wide = browser.new_context(viewport={"width": 1280, "height": 900})
    page = wide.new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    ids = _make_rows(page, app, base, settings, tmp_path)
    cookies = wide.cookies()

    phone = browser.new_context(viewport={"width": 375, "height": 740})
    phone.add_cookies(cookies)
    page = phone.new_page()
    urls = sorted(_page_urls(app, ids).items()) + [
        ("coverage of a facility", f"/coverage/?facility={ids['facility']}"),
        ("coverage of two facilities", f"/coverage/compare?facility={ids['facility']}&other={ids['other']}"),
        ("an error page (404)", "/admin/users/999999")]
    problems, walked = [], []
    for name, url in urls:
        response = page.goto(base + url)
        assert response.status in (200, 404, 410), f"{url} answered {response.status}"
        walked.append(url)
        page.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")   # folded parts too
        problems += [f"{url}: {p}" for p in _sideways(page, 375)]
        screenshot(page, artifacts_dir / f"{len(walked):02d}-{name.replace('.', '-').replace(' ', '-')}.png")
    assert len(walked) >= 25, walked
    assert problems == [], "\n".join(problems)



def test_pages_ask_for_no_missing_file_and_show_an_icon(live_server, browser):
    """Every page links its icon (a small SVG under static/), so a browser asks for no /favicon.ico
    that would answer 404; signed out and signed in, no request a page makes fails."""
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name=LONG_NAME)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    failed = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(f"{base}/login")
    sign_in(page, base, admin.email, TEST_PASSWORD)
    for path in ("/", "/admin/users", "/jobs/"):
        page.goto(base + path)
        icon = page.locator("head link[rel=icon]")
        assert icon.count() == 1 and page.request.get(base + icon.get_attribute("href")).status == 200
    assert failed == [], failed


def test_an_admins_top_bar_fits_one_row_at_1280(live_server, browser):
    """At 1280 px every nav link of an admin (the most links) sits on one row, beside the brand
    and the user's name: the database mode is written under the name, not in the row."""
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name=LONG_NAME)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    page.goto(f"{base}/admin/users")
    boxes = page.evaluate("""() => [...document.querySelectorAll("header .brand, header nav a, header .userbar a")]
        .map(e => { const r = e.getBoundingClientRect(); return [e.textContent.trim(), r.top, r.bottom, r.right]; })""")
    assert len(boxes) >= 14, boxes
    links = [b for b in boxes[1:-1]]                 # the nav links: one line, all at the same height
    assert max(b[1] for b in links) - min(b[1] for b in links) < 2, f"the nav wraps: {boxes}"
    top, bottom = links[0][1], links[0][2]           # brand and name sit beside them, on that line
    assert all(b[1] < bottom and b[2] > top for b in boxes), f"the top bar wraps: {boxes}"
    assert all(b[3] <= 1280 for b in boxes), boxes
    assert page.locator("header .mode").is_visible()

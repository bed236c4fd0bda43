"""A real browser (Debian's chromium through Playwright): an admin disables a user
who is signed in elsewhere, and that user's next click lands on the login page; an admin
resets a password (confirmed first, the temporary password shown once)."""

from __future__ import annotations

import pytest

from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in, submit
from tests.support.environment import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.one_mode]   # pages render the same in both database modes


def test_disabled_user_is_sent_to_the_login_page_on_the_next_click(live_server, browser, artifacts_dir):
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name="Chief Admin")
    admin_page = browser.new_context().new_page()
    sign_in(admin_page, base, admin.email, TEST_PASSWORD)
    assert admin_page.url == f"{base}/"
    screenshot(admin_page, artifacts_dir / "1-admin-signed-in.png")

    admin_page.goto(f"{base}/admin/users/new")
    admin_page.fill("input[name=email]", "picker@example.test")
    admin_page.fill("input[name=name]", "Pat Picker")
    admin_page.fill("input[name=password]", "a strong dock passphrase")
    admin_page.check("input[name=roles][value=salesperson]")
    submit(admin_page)
    assert "/admin/users/" in admin_page.url and "Created picker@example.test" in admin_page.content()
    screenshot(admin_page, artifacts_dir / "2-user-created.png")

    user_page = browser.new_context().new_page()  # a second browser: its own cookies
    sign_in(user_page, base, "picker@example.test", "a strong dock passphrase")
    assert user_page.url == f"{base}/"
    user_page.click("text=Organizations")
    assert user_page.url == f"{base}/customers/organizations"
    screenshot(user_page, artifacts_dir / "3-user-signed-in.png")

    admin_page.click("#disable-user")
    assert "Disabled picker@example.test" in admin_page.content()
    screenshot(admin_page, artifacts_dir / "4-admin-disabled-user.png")

    user_page.click("text=Facilities")
    assert user_page.url.startswith(f"{base}/login")
    assert user_page.locator("input[name=password]").is_visible()
    screenshot(user_page, artifacts_dir / "5-user-back-at-login.png")


def test_password_reset_is_confirmed_and_its_password_shown_once(live_server, browser, artifacts_dir):
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name="Chief Admin")
    clerk = make_user(app, role="salesperson", email="dana.dock@example.test", name="Dana Dock")
    admin_page = browser.new_context(viewport={"width": 1000, "height": 560}).new_page()
    sign_in(admin_page, base, admin.email, TEST_PASSWORD)

    admin_page.goto(f"{base}/admin/users/{clerk.id}")
    admin_page.click("#reset-password")
    assert admin_page.url == f"{base}/admin/users/{clerk.id}/reset-password"
    assert "Reset the password of dana.dock@example.test?" in admin_page.content()
    screenshot(admin_page, artifacts_dir / "1-confirm-reset.png")

    admin_page.click("#confirm-reset")
    assert f"/admin/users/{clerk.id}/temporary-password/" in admin_page.url
    temporary = admin_page.locator("#temporary-password").inner_text().strip()
    assert temporary and temporary not in admin_page.url
    folder = ROOT / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    screenshot(admin_page, folder / "password-reset.png")

    admin_page.reload()
    assert admin_page.locator("#temporary-password").count() == 0
    assert "already shown" in admin_page.content() and temporary not in admin_page.content()
    screenshot(admin_page, artifacts_dir / "2-reloaded.png")

    clerk_page = browser.new_context().new_page()
    sign_in(clerk_page, base, clerk.email, temporary)  # the reload reset nothing: the shown password works
    assert clerk_page.url == f"{base}/account/password"

"""A real browser (Debian's chromium through Playwright): an admin disables a user
who is signed in elsewhere, and that user's next click lands on the login page."""

from __future__ import annotations

import pytest

from tests.support.accounts import TEST_PASSWORD, make_user
from tests.support.browser import screenshot, sign_in

pytestmark = pytest.mark.browser


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
    admin_page.click("main button[type=submit]")
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

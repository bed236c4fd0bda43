"""A real browser (Debian's chromium through Playwright): an admin disables a user
who is signed in elsewhere, and that user's next click lands on the login page; an admin
resets a password (confirmed first, the temporary password shown once), deletes a role
(the holders counted first, then confirmed), unlocks a throttled account, and is refused a
blank or common password on the new-user form."""

from __future__ import annotations

import pytest

from handled.auth import roles
from tests.support.accounts import TEST_PASSWORD, csrf_token, make_user, setup_context
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


def test_role_delete_shows_the_holder_count_and_asks_first(live_server, browser, artifacts_dir):
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name="Chief Admin")
    with app.test_request_context():
        roles.create_role(setup_context(app.config["HANDLED_SETTINGS"]), "night_shift", "Night shift",
                          permission_codes=["run_imports"])
    for n in range(3):
        make_user(app, role="night_shift", email=f"night{n}@example.test", name=f"Night Worker {n}")
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)

    page.goto(f"{base}/admin/roles")
    row = page.locator("table.matrix tbody tr", has_text="night_shift")
    link = row.locator("a.role-delete")
    assert link.is_visible() and link.bounding_box()["x"] + link.bounding_box()["width"] <= 1280  # on screen
    link.click()
    page.wait_for_load_state("load")
    assert page.url.endswith("/delete")
    assert page.locator("h1").inner_text() == "Delete the role Night shift?"
    assert page.locator("#role-holders").inner_text().startswith("3 users hold it.")
    assert page.locator("main li").all_inner_texts() == [f"Night Worker {n} night{n}@example.test" for n in range(3)]
    screenshot(page, artifacts_dir / "1-confirm-role-delete.png")
    submit(page, "main a:has-text('Cancel')")                  # nothing happens without the confirmation
    assert page.url == f"{base}/admin/roles" and page.locator("table.matrix", has_text="night_shift").count() == 1

    page.locator("table.matrix tbody tr", has_text="night_shift").locator("a.role-delete").click()
    page.wait_for_load_state("load")
    submit(page, "#confirm-role-delete")
    assert "Deleted role night_shift" in page.locator(".flash").inner_text()
    assert page.locator("table.matrix", has_text="night_shift").count() == 0
    screenshot(page, artifacts_dir / "2-role-deleted.png")


def test_a_throttled_account_is_listed_shown_and_unlocked(live_server, browser, artifacts_dir):
    app, base = live_server
    settings = app.config["HANDLED_SETTINGS"]
    admin = make_user(app, role="admin", email="chief@example.test", name="Chief Admin")
    clerk = make_user(app, role="salesperson", email="dana.dock@example.test", name="Dana Dock")
    make_user(app, role="salesperson", email="eli.easy@example.test", name="Eli Easy")
    stranger = app.test_client()
    for _ in range(settings.login_max_failures_per_account):
        stranger.post("/login", data={"email": clerk.email, "password": "a guess", "csrf_token": csrf_token(stranger)},
                      environ_base={"REMOTE_ADDR": "203.0.113.77"})
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)

    page.goto(f"{base}/admin/users")
    page.select_option("select[name=state]", "locked")
    submit(page, "form.filters button[type=submit]")
    assert "state=locked" in page.url
    assert page.locator("main tbody tr").all_inner_texts() == [
        "dana.dock@example.test\tDana Dock\tsalesperson\tactive, sign-in throttled\tnever"]
    screenshot(page, artifacts_dir / "1-locked-users.png")

    submit(page, "text=dana.dock@example.test")
    status = page.locator("#throttle-status").inner_text()
    assert "Sign-in is throttled for this account." in status
    assert f"Refused from 1 address after {settings.login_max_failures_per_account} failures there: 203.0.113.77." \
        in status
    assert "UTC" not in page.locator("#throttle-status time").inner_text()     # the reader's local time
    screenshot(page, artifacts_dir / "2-throttled.png")
    submit(page, "#unlock-user")
    assert "Unlocked dana.dock@example.test" in page.locator(".flash").inner_text()
    assert page.locator("#throttle-status").inner_text().startswith("Not throttled")
    assert page.locator("#unlock-user").count() == 0
    screenshot(page, artifacts_dir / "3-unlocked.png")
    page.goto(f"{base}/admin/users?state=locked")
    assert page.locator("main tbody tr").all_inner_texts() == ["No users match."]
    owner = stranger.post("/login", data={"email": clerk.email, "password": TEST_PASSWORD,
                                          "csrf_token": csrf_token(stranger)},
                          environ_base={"REMOTE_ADDR": "203.0.113.77"})
    assert owner.status_code == 302        # the address that was refused gets in


@pytest.mark.parametrize("password,refusal", [
    ("            ", "The password cannot be blank or only spaces."),
    ("1qaz2wsx3edc", "That password is one of the 10,000 most common passwords")], ids=["blank", "common"])
def test_a_blank_or_common_password_is_refused_next_to_its_field(live_server, browser, artifacts_dir, password,
                                                                 refusal):
    app, base = live_server
    admin = make_user(app, role="admin", email="chief@example.test", name="Chief Admin")
    page = browser.new_context().new_page()
    sign_in(page, base, admin.email, TEST_PASSWORD)
    page.goto(f"{base}/admin/users/new")
    page.fill("input[name=email]", "new.picker@example.test")
    page.fill("input[name=name]", "New Picker")
    page.fill("input[name=password]", password)
    submit(page, "main button[type=submit]")
    assert page.locator("#password-error").inner_text().startswith(refusal)
    assert page.locator("input[name=password]").get_attribute("aria-describedby") == "password-error"
    assert page.locator("input[name=name]").input_value() == "New Picker"      # what was typed stays
    screenshot(page, artifacts_dir / "refused.png")
    page.goto(f"{base}/admin/users?q=new.picker")
    assert page.locator("main tbody tr").all_inner_texts() == ["No users match."]

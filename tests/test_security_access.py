"""Access control (issue 12, items 1, 2 and 4): nobody gains what they were not given.

1. An actor acts on another user (details, roles, password, disable/enable, delete, sessions)
   only when that user's permissions are a subset of the actor's; refusals are audited.
2. Roles are created and edited only with permissions the actor holds, never by a holder
   of that role (a holder of ``admin`` excepted), and the last role granting
   ``manage_roles`` or ``manage_users`` is never deleted or emptied.
4. A grant racing a permission removal on the same role leaves no stale permission cached.

Each rule is checked through the pages and through the service with a non-system actor;
the CLI operator keeps its power where the rule is about who acts.
"""

from __future__ import annotations

import re
import threading

import pytest

from handled.auth import login, roles, sessions, throttle, users
from handled.context import Actor, Context, system_context
from handled.db import primary_db
from handled.errors import Conflict, Forbidden
from handled.models import AuditLog, Role, Session, User
from tests.support.accounts import TEST_PASSWORD, client_with_token, make_user, new_session, sign_in
from tests.support.databases import connect

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes

REFUSED_USER_ACTIONS = ("user.update.refused", "user.roles.refused", "user.reset_password.refused",
                        "user.disable.refused", "user.enable.refused", "user.delete.refused",
                        "session.revoke.refused", "user.unlock.refused")


def acting_as(app, user) -> Context:
    """The context a page would build for ``user``: a non-system web actor with their permissions."""
    with app.app_context():
        held = {p for code in users.role_codes_of(user.id)
                for p in roles.role_permission_codes(Role.get(Role.code == code).id)}
    return Context(app.config["HANDLED_SETTINGS"],
                   Actor(id=user.id, email=user.email, permissions=frozenset(held), address="127.0.0.1"))


def committed_audit(settings, action_prefix: str) -> list[tuple]:
    """Audit rows seen from another connection: only what was committed."""
    conn = connect(settings.primary)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT action, target_label, details FROM config.audit_log WHERE action LIKE %s "
                        "ORDER BY id", (action_prefix + "%",))
            return cur.fetchall()
    finally:
        conn.close()


def me(client):
    response = client.get("/api/me")
    return response.status_code, sorted((response.get_json() or {}).get("permissions") or [])


def _state(app, user_id):
    with app.app_context():
        row = User.get(User.id == user_id)
        return (row.email, row.name, row.password_hash, row.disabled, users.role_codes_of(user_id),
                Session.select().where(Session.user == user_id).count(),
                throttle.status(app.config["HANDLED_SETTINGS"], row.email).failures)


def fail_sign_in(app, email):
    """One wrong password for ``email`` from a stranger's address: a failure the throttle counts."""
    with app.app_context(), pytest.raises(login.LoginRefused):
        login.sign_in(Context(app.config["HANDLED_SETTINGS"], Actor.anonymous("192.0.2.13")), email,
                      "not the password", "pytest")


# -- 1. acting on a more powerful user --------------------------------------------------------

def test_superuser_cannot_act_on_an_administrator_through_the_pages(app, settings, login_client):
    superuser = login_client(role="superuser")
    admin = login_client(role="admin")
    disabled_admin = make_user(app, role="admin")
    with app.app_context():
        users.set_disabled(system_context(settings), disabled_admin.id, True)
    fail_sign_in(app, admin.user.email)  # something to unlock, so the page would offer Unlock
    before, before_disabled = _state(app, admin.user.id), _state(app, disabled_admin.id)
    uid = admin.user.id
    session_hash = sessions.hash_token(admin.session_token)

    email, other = admin.user.email, disabled_admin.email
    attempts = [(f"/admin/users/{uid}", {"email": "taken@example.test", "name": "Taken"}, f"change {email}"),
                (f"/admin/users/{uid}/roles", {"roles": ["salesperson"]}, f"change the roles of {email}"),
                (f"/admin/users/{uid}/reset-password", {}, f"reset the password of {email}"),
                (f"/admin/users/{uid}/disable", {}, f"disable {email}"),
                (f"/admin/users/{disabled_admin.id}/enable", {}, f"enable {other}"),
                (f"/admin/users/{uid}/delete", {"confirm_email": email}, f"delete {email}"),
                (f"/admin/users/{uid}/sessions/{session_hash}/revoke", {}, f"end the sessions of {email}"),
                (f"/admin/users/{uid}/unlock", {}, f"unlock {email}")]
    for url, data, what in attempts:
        text = superuser.post(url, data=data, follow_redirects=True).get_data(as_text=True)
        assert f"You cannot {what}: that account holds permissions you do not hold (manage_roles)." in text, url
        assert 'id="temporary-password"' not in text, url

    assert _state(app, uid) == before and _state(app, disabled_admin.id) == before_disabled

    # the pages offer none of it
    page = superuser.get(f"/admin/users/{uid}").get_data(as_text=True)
    assert "that account holds permissions you do not hold (manage_roles)" in page
    for offered in ("Reset password", "Save details", "Save roles", 'id="disable-user"', "Delete…",
                    f"/sessions/{session_hash}/revoke", 'id="unlock-user"'):
        assert offered not in page, offered

    confirm = superuser.get(f"/admin/users/{uid}/delete", follow_redirects=True).get_data(as_text=True)
    assert "You cannot delete" in confirm and "confirm_email" not in confirm

    assert me(admin)[0] == 200
    sign_in(app, admin.user.email, TEST_PASSWORD)  # the password was not reset
    rows = committed_audit(settings, "")
    refused = [r for r in rows if r[0].endswith(".refused")]
    assert sorted(r[0] for r in refused) == sorted(REFUSED_USER_ACTIONS)
    assert all("manage_roles" in r[2]["reason"] for r in refused)
    assert not [r for r in rows if r[0] in ("user.update", "user.reset_password", "user.delete", "session.revoke")]


OPERATIONS = {
    "update": lambda ctx, uid, _: users.update_user(ctx, uid, "renamed@example.test", "Renamed"),
    "roles": lambda ctx, uid, _: users.set_user_roles(ctx, uid, ["salesperson"]),
    "reset_password": lambda ctx, uid, _: users.reset_password(ctx, uid),
    "disable": lambda ctx, uid, _: users.set_disabled(ctx, uid, True),
    "enable": lambda ctx, uid, _: users.set_disabled(ctx, uid, False),
    "delete": lambda ctx, uid, _: users.delete_user(ctx, uid),
    "revoke_session": lambda ctx, uid, token: users.revoke_user_session(ctx, uid, sessions.hash_token(token)),
    "unlock": lambda ctx, uid, _: users.unlock_user(ctx, uid),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_services_refuse_a_non_system_actor_acting_on_a_more_powerful_user(app, settings, operation):
    actor = make_user(app, role="superuser")
    target = make_user(app, role="admin")
    make_user(app, role="admin")  # the target is never the last administrator
    token = new_session(app, target)
    fail_sign_in(app, target.email)  # a counter a reset or an unlock would clear
    before = _state(app, target.id)
    with app.app_context(), pytest.raises(Forbidden) as refused:
        OPERATIONS[operation](acting_as(app, actor), target.id, token)
    assert "holds permissions you do not hold (manage_roles)" in str(refused.value)
    assert _state(app, target.id) == before
    rows = committed_audit(settings, "")
    assert [r[0] for r in rows if r[0].endswith(".refused")] == [
        {"update": "user.update", "roles": "user.roles", "reset_password": "user.reset_password",
         "disable": "user.disable", "enable": "user.enable", "delete": "user.delete",
         "revoke_session": "session.revoke", "unlock": "user.unlock"}[operation] + ".refused"]
    assert rows[-1][1] == target.email


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_an_actor_may_act_on_users_holding_no_more_than_they_do(app, settings, operation):
    actor = make_user(app, role="superuser")
    target = make_user(app, role="warehouse_lead")
    token = new_session(app, target)
    with app.app_context():
        OPERATIONS[operation](acting_as(app, actor), target.id, token)
    assert not [r for r in committed_audit(settings, "") if r[0].endswith(".refused")]


def test_superuser_resets_a_less_powerful_user_through_the_page(app, login_client):
    superuser = login_client(role="superuser")
    clerk = login_client(role="salesperson")
    page = superuser.get(f"/admin/users/{clerk.user.id}").get_data(as_text=True)
    assert "Reset password" in page and 'id="disable-user"' in page
    done = superuser.post(f"/admin/users/{clerk.user.id}/reset-password", follow_redirects=True).get_data(as_text=True)
    assert re.search(r'id="temporary-password">([^<]+)<', done)
    assert me(clerk)[0] == 401


def test_the_pages_offer_only_roles_the_actor_may_grant(app, login_client):
    superuser = login_client(role="superuser")
    clerk = make_user(app, role="salesperson")
    for url in (f"/admin/users/{clerk.id}", "/admin/users/new"):
        page = superuser.get(url).get_data(as_text=True)
        assert re.search(r'value="admin"[^>]*disabled', page), url
        assert not re.search(r'value="warehouse_lead"[^>]*disabled', page), url
    refused = superuser.post("/admin/users/new", data={"email": "sneaky@example.test", "name": "S",
                                                       "roles": ["admin"]})
    assert refused.status_code == 403
    with app.app_context():
        assert User.get_or_none(User.email == "sneaky@example.test") is None
        row = AuditLog.get(AuditLog.action == "user.create.refused")
        assert row.target_label == "sneaky@example.test" and row.details["missing"] == ["manage_roles"]


def test_an_administrator_may_act_on_another_administrator(app, login_client):
    admin = login_client(role="admin")
    other = login_client(role="admin")
    admin.post(f"/admin/users/{other.user.id}/disable")
    assert me(other)[0] == 401 and _state(app, other.user.id)[3] is True


def test_the_cli_operator_may_act_on_an_administrator(app, runner):
    target = make_user(app, role="admin")
    make_user(app, role="admin")
    result = runner.invoke(args=["users", "reset-password", target.email])
    assert result.exit_code == 0, result.output
    assert "temporary password (shown once)" in result.output
    result = runner.invoke(args=["users", "disable", target.email])
    assert result.exit_code == 0, result.output
    assert _state(app, target.id)[3] is True


# -- 2. editing roles --------------------------------------------------------------------------

def _role_id(app, code):
    with app.app_context():
        return Role.get(Role.code == code).id


def test_roles_are_created_and_edited_only_with_permissions_the_actor_holds(app, settings, login_client):
    keeper = login_client(permissions=["manage_roles", "view_customers"])
    refused = keeper.post("/admin/roles/new", data={"code": "grabber", "name": "Grabber",
                                                    "permissions": ["view_customers", "run_imports"]})
    assert refused.status_code == 403
    assert "You cannot give a role permissions you do not hold yourself: run_imports." in refused.get_data(
        as_text=True)
    with app.app_context():
        assert Role.get_or_none(Role.code == "grabber") is None

    assert keeper.post("/admin/roles/new", data={"code": "lookers", "name": "Lookers",
                                                 "permissions": ["view_customers"]}).status_code == 302
    lookers = _role_id(app, "lookers")
    widened = keeper.post(f"/admin/roles/{lookers}", data={"name": "Lookers", "permissions": ["run_imports"]})
    assert widened.status_code == 403 and "run_imports" in widened.get_data(as_text=True)
    salesperson = _role_id(app, "salesperson")  # holds download_exports, which the keeper lacks
    narrowed = keeper.post(f"/admin/roles/{salesperson}", data={"name": "Salesperson",
                                                               "permissions": ["view_customers"]})
    assert narrowed.status_code == 403
    assert "holds permissions you do not hold (download_exports)" in narrowed.get_data(as_text=True)
    with app.app_context():
        heavy = roles.create_role(system_context(settings), "heavy", "Heavy", "", ["run_imports"]).id
    assert f'/admin/roles/{heavy}/delete"' not in keeper.get("/admin/roles").get_data(as_text=True)
    deleting = keeper.post(f"/admin/roles/{heavy}/delete", follow_redirects=True).get_data(as_text=True)
    assert "You cannot delete the role heavy: it holds permissions you do not hold (run_imports)." in deleting
    with app.app_context():
        assert roles.role_permission_codes(lookers) == {"view_customers"}
        assert roles.role_permission_codes(salesperson) == {"download_exports", "view_customers"}
        assert roles.role_permission_codes(heavy) == {"run_imports"}
    assert keeper.post(f"/admin/roles/{lookers}", data={"name": "Lookers", "permissions": []}).status_code == 302
    actions = [r[0] for r in committed_audit(settings, "role.")]
    assert [actions.count(f"role.{a}.refused") for a in ("create", "update", "delete")] == [1, 2, 1]
    # the form cannot tick what the keeper lacks
    form = keeper.get("/admin/roles/new").get_data(as_text=True)
    assert re.search(r'value="run_imports"[^>]*disabled', form)
    assert not re.search(r'value="view_customers"[^>]*disabled', form)


def test_role_services_refuse_permissions_the_actor_lacks(app, settings):
    keeper = make_user(app, permissions=["manage_roles", "view_customers"])
    ctx = acting_as(app, keeper)
    with app.app_context():
        with pytest.raises(Forbidden, match="do not hold yourself: manage_users"):
            roles.create_role(ctx, "grabber", "Grabber", "", ["manage_users"])
        salesperson = Role.get(Role.code == "salesperson")
        with pytest.raises(Forbidden, match=r"download_exports"):
            roles.update_role(ctx, salesperson.id, "Salesperson", "", ["view_customers"])
        with pytest.raises(Forbidden):
            roles.delete_role(ctx, roles.create_role(system_context(settings), "heavy", "Heavy", "",
                                                     ["run_imports"]).id)
        # the operator is not bound by what it holds
        roles.update_role(system_context(settings), salesperson.id, "Salesperson", "", ["view_customers"])
    actions = [r[0] for r in committed_audit(settings, "role.")]
    assert [a for a in actions if a.endswith(".refused")] == ["role.create.refused", "role.update.refused",
                                                               "role.delete.refused"]


def test_nobody_edits_a_role_they_hold_but_an_admin(app, settings, login_client):
    keeper = login_client(permissions=["manage_roles", "view_customers", "run_imports"])
    own = _role_id(app, keeper.user.roles[0])
    page = keeper.post(f"/admin/roles/{own}", data={"name": "Mine", "permissions": ["manage_roles"]})
    assert page.status_code == 403 and "a role you hold yourself" in page.get_data(as_text=True)
    listing = keeper.get("/admin/roles").get_data(as_text=True)
    assert f'/admin/roles/{own}/delete"' not in listing
    with app.app_context():
        with pytest.raises(Forbidden, match="a role you hold yourself"):
            roles.update_role(acting_as(app, keeper.user), own, "Mine", "", ["manage_roles"])
        assert roles.role_permission_codes(own) == {"manage_roles", "view_customers", "run_imports"}
    # an administrator holding another role as well may still edit it: admin already has everything
    admin = login_client(role="admin")
    with app.app_context():
        users.set_user_roles(system_context(settings), admin.user.id, ["admin", "salesperson"])
    salesperson = _role_id(app, "salesperson")
    assert admin.post(f"/admin/roles/{salesperson}", data={"name": "Salesperson",
                                                           "permissions": ["view_customers"]}).status_code == 302
    assert [r[0] for r in committed_audit(settings, "role.update")] == ["role.update.refused",
                                                                        "role.update.refused", "role.update"]


def _only_custom_role_grants(app, settings, permission: str) -> tuple[int, int]:
    """Leave ``permission`` granted by two custom roles only (the seeded ones lose it)."""
    conn = connect(settings.primary)
    try:
        with conn.cursor() as cur:
            cur.execute("DELETE FROM config.role_permissions WHERE permission_id = "
                        "(SELECT id FROM config.permissions WHERE code = %s)", (permission,))
    finally:
        conn.close()
    with app.app_context():
        ctx = system_context(settings)
        first = roles.create_role(ctx, "keepers_one", "Keepers one", "", [permission, "view_customers"])
        second = roles.create_role(ctx, "keepers_two", "Keepers two", "", [permission])
        return first.id, second.id


@pytest.mark.parametrize("permission", ["manage_users", "manage_roles"])
def test_the_last_role_granting_account_management_is_never_deleted_or_emptied(app, settings, permission):
    first, second = _only_custom_role_grants(app, settings, permission)
    ctx = system_context(settings)
    with app.app_context():
        roles.delete_role(ctx, second)  # another role still grants it
        with pytest.raises(Conflict) as deleting:
            roles.delete_role(ctx, first)
        assert str(deleting.value) == (f"Keepers one is the last role that grants {permission}; "
                                       "give it to another role first.")
        with pytest.raises(Conflict, match=f"the last role that grants {permission}"):
            roles.update_role(ctx, first, "Keepers one", "", ["view_customers"])
        roles.update_role(ctx, first, "Keepers", "", [permission])  # keeping it is fine
        assert permission in roles.role_permission_codes(first)
    actions = [r[0] for r in committed_audit(settings, "role.")]
    assert actions.count("role.delete.refused") == 1 and actions.count("role.update.refused") == 1


def test_the_last_role_rule_through_the_page(app, settings, login_client):
    first, second = _only_custom_role_grants(app, settings, "manage_users")
    admin = login_client(role="admin")  # holds admin (no longer manage_users) and, below, keepers_one
    with app.app_context():
        users.set_user_roles(system_context(settings), admin.user.id, ["admin", "keepers_one"])
        roles.delete_role(system_context(settings), second)
    page = admin.post(f"/admin/roles/{first}/delete", follow_redirects=True).get_data(as_text=True)
    assert "Keepers one is the last role that grants manage_users" in page
    emptied = admin.post(f"/admin/roles/{first}", data={"name": "Keepers one", "permissions": ["view_customers"]})
    assert emptied.status_code == 409 and "the last role that grants manage_users" in emptied.get_data(as_text=True)
    with app.app_context():
        assert "manage_users" in roles.role_permission_codes(first)


def test_two_concurrent_deletions_cannot_remove_both_last_roles(app, settings):
    first, second = _only_custom_role_grants(app, settings, "manage_roles")
    barrier, outcomes = threading.Barrier(2), {}

    def delete(role_id):
        try:
            with app.app_context():
                barrier.wait(10)
                roles.delete_role(system_context(settings), role_id)
            outcomes[role_id] = "deleted"
        except Conflict:
            outcomes[role_id] = "refused"
        finally:
            primary_db.close()

    threads = [threading.Thread(target=delete, args=(rid,)) for rid in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes.values()) == ["deleted", "refused"]
    with app.app_context():
        assert Role.select().where(Role.id.in_([first, second])).count() == 1


# -- 4. role changes race-free -----------------------------------------------------------------

def test_a_grant_racing_a_permission_removal_keeps_no_removed_permission(app, settings):
    """Thread A removes view_customers from salesperson and stops just before committing;
    thread B grants salesperson to a new user meanwhile; the new user makes a request; A then
    commits. After both return, the user's next request must not carry view_customers."""
    make_user(app, role="admin")
    newcomer = make_user(app, permissions=None)
    client = client_with_token(app, new_session(app, newcomer))
    assert me(client) == (200, [])
    salesperson = _role_id(app, "salesperson")
    a_waiting, release_a, errors = threading.Event(), threading.Event(), []

    def pause(role_id):
        a_waiting.set()
        release_a.wait(30)

    def remove_permission():
        try:
            with app.app_context():
                roles.update_role(system_context(settings), salesperson, "Salesperson", "", ["download_exports"])
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            primary_db.close()

    def grant():
        try:
            with app.app_context():
                users.set_user_roles(system_context(settings), newcomer.id, ["salesperson"])
        except Exception as exc:
            errors.append(exc)
        finally:
            primary_db.close()

    roles.before_role_commit.append(pause)
    try:
        a = threading.Thread(target=remove_permission)
        a.start()
        assert a_waiting.wait(30), "the role update never reached its commit"
        b = threading.Thread(target=grant)
        b.start()
        b.join(1.0)  # unguarded, the grant commits now; guarded, it waits for the role update
        me(client)   # the newcomer's request reads PRIMARY and caches what it saw
        release_a.set()
        a.join(30)
        b.join(30)
    finally:
        release_a.set()
        roles.before_role_commit.remove(pause)
    assert not errors and not a.is_alive() and not b.is_alive()
    assert me(client) == (200, ["download_exports"])
    with app.app_context():
        assert AuditLog.select().where(AuditLog.action == "user.roles").count() == 1

"""Roles (permission matrix, system roles) and the audit log page."""

from __future__ import annotations

import pytest

from handled.models import AuditLog, Role
from tests.support.accounts import make_user

pytestmark = pytest.mark.one_mode   # PRIMARY only: the same in both database modes


def role_id(app, code):
    with app.app_context():
        return Role.get(Role.code == code).id


def test_roles_page_shows_the_matrix(login_client):
    page = login_client(role="admin").get("/admin/roles").get_data(as_text=True)
    for code in ("admin", "superuser", "warehouse_lead", "salesperson", "manage_roles", "run_imports"):
        assert code in page


def test_superuser_cannot_manage_roles(login_client):
    client = login_client(role="superuser")
    assert client.get("/admin/roles").status_code == 403
    assert client.get("/admin/users").status_code == 200


def test_create_a_role_and_edit_its_permissions_applies_to_holders_at_once(app, login_client):
    admin = login_client(role="admin")
    created = admin.post("/admin/roles/new", data={"code": "dock_clerk", "name": "Dock clerk",
                                                   "permissions": ["view_customers"]})
    assert created.status_code == 302
    holder = login_client(role="dock_clerk")
    assert holder.get("/api/me").get_json()["permissions"] == ["view_customers"]
    assert holder.get("/customers/organizations").status_code == 200
    admin.post(f"/admin/roles/{role_id(app, 'dock_clerk')}", data={"name": "Dock clerk", "description": "",
                                                                   "permissions": ["run_imports"]})
    assert holder.get("/api/me").get_json()["permissions"] == ["run_imports"]
    assert holder.get("/customers/organizations").status_code == 403
    duplicate = admin.post("/admin/roles/new", data={"code": "dock_clerk", "name": "Again"})
    assert "already exists" in duplicate.get_data(as_text=True)


def test_multiple_roles_give_the_union_of_permissions(app, login_client):
    client = login_client(permissions=["run_imports"], role="salesperson")
    assert client.get("/api/me").get_json()["permissions"] == ["download_exports", "run_imports", "view_customers"]


def test_system_roles_cannot_be_deleted_but_custom_ones_can(app, login_client):
    admin = login_client(role="admin")
    page = admin.post(f"/admin/roles/{role_id(app, 'salesperson')}/delete", follow_redirects=True)
    assert "is a system role and cannot be deleted" in page.get_data(as_text=True)
    admin.post("/admin/roles/new", data={"code": "temp_role", "name": "Temp", "permissions": ["run_imports"]})
    holder = login_client(role="temp_role")
    assert holder.get("/api/me").get_json()["permissions"] == ["run_imports"]
    admin.post(f"/admin/roles/{role_id(app, 'temp_role')}/delete")
    with app.app_context():
        assert Role.get_or_none(Role.code == "temp_role") is None
    assert holder.get("/api/me").get_json()["permissions"] == []


def test_the_admin_role_keeps_every_permission(app, login_client):
    admin = login_client(role="admin")
    page = admin.post(f"/admin/roles/{role_id(app, 'admin')}", data={"name": "Administrator",
                                                                     "permissions": ["view_customers"]})
    assert page.status_code == 400 and "always holds every permission" in page.get_data(as_text=True)
    assert "manage_roles" in admin.get("/api/me").get_json()["permissions"]


def test_audit_log_filters_by_actor_action_and_date(app, login_client):
    admin = login_client(role="admin")
    make_user(app, role="salesperson", email="audited@example.test")
    admin.post("/admin/roles/new", data={"code": "audited_role", "name": "Audited"})
    page = admin.get("/admin/audit?action=role.create").get_data(as_text=True)
    assert "audited_role" in page and "audited@example.test" not in page
    by_actor = admin.get(f"/admin/audit?actor={admin.user.email}").get_data(as_text=True)
    assert "role.create" in by_actor and "1 entry" in by_actor
    today = admin.get("/admin/audit?since=2000-01-01&until=2999-12-31").get_data(as_text=True)
    assert "audited_role" in today
    assert "Nothing matches." in admin.get("/admin/audit?until=2000-01-01").get_data(as_text=True)
    assert "must be a date" in admin.get("/admin/audit?since=yesterday").get_data(as_text=True)
    with app.app_context():
        row = AuditLog.get(AuditLog.action == "role.create")
        assert row.actor_id == admin.user.id and row.ip == "127.0.0.1"


def test_audit_log_needs_view_audit(login_client):
    assert login_client(role="warehouse_lead").get("/admin/audit").status_code == 403


def test_managing_users_does_not_allow_granting_more_than_you_hold(app, login_client):
    superuser = login_client(role="superuser")
    target = make_user(app, role="salesperson")
    page = superuser.post(f"/admin/users/{target.id}/roles", data={"roles": ["admin"]}, follow_redirects=True)
    assert "You cannot grant permissions you do not hold yourself: manage_roles." in page.get_data(as_text=True)
    created = superuser.post("/admin/users/new", data={"email": "sneaky@example.test", "name": "S", "roles": ["admin"]})
    assert created.status_code == 403
    assert superuser.post(f"/admin/users/{target.id}/roles", data={"roles": ["warehouse_lead"]}).status_code == 302

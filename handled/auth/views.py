"""Sign in, sign out, and "my account" (change password, my sessions)."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from handled.auth import login as login_service
from handled.auth import sessions, users
from handled.auth.permissions import current_user, is_local_path, login_required, public
from handled.auth.web import COOKIE_NAME, clear_session_cookie, set_session_cookie
from handled.context import web_context
from handled.errors import HandledError

bp = Blueprint("auth", __name__)


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    target = request.values.get("next", "")
    target = target if is_local_path(target) else url_for("home.index")
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(target)
        return render_template("auth/login.html", next=target, email="")
    email = request.form.get("email", "")
    try:
        user, token = login_service.sign_in(web_context(), email, request.form.get("password", ""),
                                            request.headers.get("User-Agent"))
    except HandledError as exc:
        flash(str(exc), "error")
        return render_template("auth/login.html", next=target, email=email), 401
    previous = request.cookies.get(COOKIE_NAME)
    if previous:  # signing in again replaces the session this browser had
        sessions.end_session(sessions.hash_token(previous))
    set_session_cookie(token)
    if user.must_change_password:
        return redirect(url_for("auth.change_password"))
    return redirect(target)


@bp.post("/logout")
@login_required
def logout():
    login_service.sign_out(web_context(), current_user.session_hash)
    clear_session_cookie()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


@bp.get("/account")
@login_required
def account():
    settings = web_context().settings
    return render_template("auth/account.html", sessions=sessions.active_sessions(settings, current_user.id),
                           roles=users.role_codes_of(current_user.id), current_hash=current_user.session_hash,
                           min_length=settings.password_min_length)


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    ctx = web_context()
    settings = ctx.settings
    if request.method == "POST":
        try:
            ended = users.change_own_password(ctx, current_user.id, request.form.get("current_password", ""),
                                              request.form.get("new_password", ""), current_user.session_hash)
        except HandledError as exc:
            flash(str(exc), "error")
            return render_template("auth/change_password.html", min_length=settings.password_min_length), 400
        flash(f"Your password is changed; {ended} other session(s) were signed out.", "info")
        return redirect(url_for("auth.account"))
    return render_template("auth/change_password.html", min_length=settings.password_min_length)


@bp.post("/account/sessions/end-others")
@login_required
def end_other_sessions():
    ended = users.end_other_sessions(web_context(), current_user.id, current_user.session_hash)
    flash(f"Signed out {ended} other session(s).", "info")
    return redirect(url_for("auth.account"))


@bp.post("/account/sessions/<session_id>/revoke")
@login_required
def revoke_my_session(session_id):
    if users.revoke_own_session(web_context(), session_id):
        flash("That session is signed out.", "info")
    else:
        flash("That session had already ended.", "info")
    if session_id == current_user.session_hash:
        clear_session_cookie()
        return redirect(url_for("auth.login"))
    return redirect(url_for("auth.account"))


@bp.get("/api/me")
@login_required
def me():
    """Who is signed in, with which permissions (JSON)."""
    return jsonify({"id": current_user.id, "email": current_user.email, "name": current_user.name,
                    "permissions": sorted(current_user.permissions),
                    "must_change_password": current_user.must_change_password})

"""Request bodies: 64 KiB on every route, MAX_UPLOAD_MB on the upload route, cut on the stream.

The limit is werkzeug's max_content_length, chosen per route before anything
reads the body (the CSRF check reads the form first): a body announced larger
is refused before a byte of it is read, and a chunked body (no Content-Length)
is cut as soon as it passes the limit, which a raw socket against gunicorn shows.
"""

from __future__ import annotations

import dataclasses
import select
import socket
import uuid

import pytest

from handled import create_app
from handled.models import ImportRun
from tests.support.accounts import csrf_token, make_user, sign_in_client

MiB = 1 << 20


@pytest.fixture
def app(settings, tmp_path):
    own = dataclasses.replace(settings, import_archive_dir=str(tmp_path / "archive"),
                              import_upload_dir=str(tmp_path / "uploads"), max_upload_mb=1)
    application = create_app(own)
    application.config.update(TESTING=True)
    return application


def uploads_left(tmp_path) -> list:
    folder = tmp_path / "uploads"
    return list(folder.rglob("*")) if folder.exists() else []


def test_a_form_body_over_64_kib_is_refused_with_a_page(client):
    response = client.post("/login", data={"email": "a" * (100 * 1024), "password": "x",
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 413
    page = response.get_data(as_text=True)
    assert "413" in page and "64 KiB" in page


def test_a_form_body_under_64_kib_is_read(client):
    response = client.post("/login", data={"email": "a" * (60 * 1024), "password": "x",
                                           "csrf_token": csrf_token(client)})
    assert response.status_code != 413


def test_the_upload_route_takes_more_than_a_form_but_not_more_than_max_upload_mb(app, login_client, tmp_path):
    importer = login_client(permissions=["run_imports"])
    small = importer.post("/integrations/ups-zones/import", content_type="multipart/form-data",
                          data={"files": [(__import__("io").BytesIO(b"x" * (512 * 1024)), "007.xlsx")]})
    assert small.status_code == 302   # 512 KiB: over the form limit, under MAX_UPLOAD_MB; imported (and refused)
    assert ImportRun.select().count() == 1

    big = importer.post("/integrations/ups-zones/import", content_type="multipart/form-data",
                        data={"files": [(__import__("io").BytesIO(b"x" * (2 * MiB)), "007.xlsx")]})
    assert big.status_code == 413
    page = big.get_data(as_text=True)
    assert "MAX_UPLOAD_MB" in page and "1 MB" in page and "flask integrations import" in page
    assert ImportRun.select().count() == 1   # the big one never reached the import
    assert uploads_left(tmp_path) == []


# ---- chunked bodies (no Content-Length) against a real server


def raw_post(port: int, path: str, headers: dict, body: bytes, piece: int = 16 * 1024) -> tuple[int, str, int]:
    """POST ``body`` chunked; stop sending once the server answers. (status, response text, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "127.0.0.1", "Transfer-Encoding": "chunked",
                                                  "Connection": "close", **headers}.items())
    sent = 0
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
        for start in range(0, len(body), piece):
            if select.select([sock], [], [], 0)[0]:
                break   # the server has answered (and stopped reading)
            chunk = body[start:start + piece]
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = b""
    try:
        while data := sock.recv(65536):
            response += data
    except (ConnectionResetError, socket.timeout):
        pass
    sock.close()
    text = response.decode("utf-8", "replace")
    assert text.startswith("HTTP/1."), text[:200]
    return int(text.split(" ", 2)[1]), text, sent


def multipart(name: str, content: bytes) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def test_chunked_bodies_are_cut_on_the_stream_by_a_real_server(settings, tmp_path):
    from handled.auth import sessions
    from handled.auth.web import COOKIE_NAME
    from handled.db import close_databases
    from tests.support.databases import db_url
    from tests.support.gunicorn import Gunicorn, app_env

    app = create_app(settings)
    app.config.update(TESTING=True)
    client = sign_in_client(app, make_user(app, ["run_imports"]))
    token = csrf_token(client)
    flask_session = client.get_cookie("session").value
    close_databases()
    env = app_env(settings, db_url(settings.primary.dbname))
    env.update(MAX_UPLOAD_MB="1", IMPORT_UPLOAD_DIR=str(tmp_path / "uploads"),
               IMPORT_ARCHIVE_DIR=str(tmp_path / "archive"))
    server = Gunicorn(tmp_path, env)
    try:
        cookies = f"{COOKIE_NAME}={client.session_token}; session={flask_session}"
        # 16 MiB bodies: the server answers and stops reading long before their end (what
        # was sent beyond the limit sits in the loopback's socket buffers, a few MiB at most)
        form = b"email=" + b"a" * (16 * MiB) + b"&password=x&csrf_token=" + token.encode()
        status, text, sent = raw_post(server.port, "/login", {
            "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies}, form)
        assert status == 413 and "64 KiB" in text, text[:2000]
        assert sent < 8 * MiB   # cut near the limit, not after the whole body

        content_type, body = multipart("007.xlsx", b"x" * (16 * MiB))
        status, text, sent = raw_post(server.port, "/integrations/ups-zones/import", {
            "Content-Type": content_type, "Cookie": cookies, "X-CSRFToken": token}, body)
        assert status == 413 and "MAX_UPLOAD_MB" in text, text[:2000]
        assert sent < 8 * MiB

        content_type, body = multipart("007.xlsx", b"x" * (256 * 1024))   # under the limit: it is read
        status, text, _ = raw_post(server.port, "/integrations/ups-zones/import", {
            "Content-Type": content_type, "Cookie": cookies, "X-CSRFToken": token}, body)
        assert status == 302, text[:2000]
    finally:
        server.stop()
    with app.app_context():
        runs = list(ImportRun.select())
        assert [(r.file_name, r.status) for r in runs] == [("007.xlsx", "failed")]   # only the small one
    assert uploads_left(tmp_path) == []

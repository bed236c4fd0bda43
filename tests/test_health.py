"""/healthz and the home page, in both modes."""


def test_healthz_reports_each_database_redis_and_mode(client, settings):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["mode"] == settings.mode
    assert body["primary"]["ok"] and body["data"]["ok"] and body["redis"]["ok"]


def test_home_page_shows_mode_and_migrations_of_both_databases(login_client, settings):
    page = login_client().get("/").get_data(as_text=True)
    assert f"<strong>{settings.mode}</strong> database mode" in page
    assert "0001_config_customer_schemas" in page
    assert "0001_workspace_reference_schemas" in page
    assert "PostgreSQL 1" in page

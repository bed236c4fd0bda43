"""Settings of the operations area: BACKUP_*, METRICS_TOKEN, PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import pytest

from handled.settings import SettingsError, load_settings

BASE = {"PRIMARY_DATABASE_URL": "postgresql://127.0.0.1/handled", "REDIS_URL": "redis://127.0.0.1:6379/0",
        "SECRET_KEY": "0123456789abcdef0123"}


def test_defaults():
    settings = load_settings(BASE)
    assert (settings.backup_dir, settings.backup_keep, settings.backup_max_age_days) == ("var/backups", 14, 30)
    assert settings.metrics_token is None and settings.prometheus_multiproc_dir is None
    assert "metrics_token" not in repr(load_settings({**BASE, "METRICS_TOKEN": "s3cret-token-0123456789"}))


def test_values_are_read(tmp_path):
    settings = load_settings({**BASE, "BACKUP_DIR": "/srv/backups", "BACKUP_KEEP": "3", "BACKUP_MAX_AGE_DAYS": "0",
                              "METRICS_TOKEN": "x" * 20, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert (settings.backup_dir, settings.backup_keep, settings.backup_max_age_days) == ("/srv/backups", 3, 0)
    assert settings.metrics_token == "x" * 20 and settings.prometheus_multiproc_dir == str(tmp_path)


@pytest.mark.parametrize("variable,value,words", [
    ("BACKUP_KEEP", "0", "BACKUP_KEEP must be a whole number greater than 0, not .0."),
    ("BACKUP_KEEP", "many", "BACKUP_KEEP must be a whole number greater than 0, not .many."),
    ("BACKUP_MAX_AGE_DAYS", "-1", "BACKUP_MAX_AGE_DAYS must be a whole number of days"),
    ("METRICS_TOKEN", "short", "METRICS_TOKEN is too short"),
    ("PROMETHEUS_MULTIPROC_DIR", "/nonexistent/metrics", "PROMETHEUS_MULTIPROC_DIR (/nonexistent/metrics) is not"),
])
def test_bad_values_name_the_variable(variable, value, words):
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        load_settings({**BASE, variable: value})

"""BACKUP_COPY_COMMAND and the backup run history: a copy that works, one that fails (the run,
/system and /metrics say so), no shell between the path and the command, no secret in what
handled prints or keeps, and a timeout."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from handled import create_app
from handled.models import BackupRun
from handled.settings import SettingsError, load_settings
from tests.support.accounts import make_user, sign_in
from tests.support.databases import mode_env
from tests.test_metrics_system import metric_value

TOKEN = "s3cr3t-token-nobody-may-see-0042"


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


def backup_app(settings, tmp_path, command, **more):
    # A folder name a shell would act on: `;`, `$(...)` and spaces reach the command as plain characters.
    folder = tmp_path / "back ups; touch pwned $(touch pwned2)"
    app = create_app(replace(settings, backup_dir=str(folder), import_archive_dir=str(tmp_path / "archive"),
                             backup_copy_command=tuple(command) if command else None, **more))
    app.config.update(TESTING=True)
    return app


def runs_of(app) -> list[BackupRun]:
    with app.app_context():
        return list(BackupRun.select().order_by(BackupRun.id))


def viewer(app):
    return sign_in(app, make_user(app, permissions=["view_system"]).email)


@pytest.mark.flow("Backups")
def test_a_copy_that_works_is_recorded_and_dated_in_metrics(settings, tmp_path, monkeypatch):
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    monkeypatch.chdir(tmp_path)   # a shell running the folder's name would make ./pwned here
    app = backup_app(settings, tmp_path, ["cp", "{file}", str(offsite)])
    result = cli(app, "backup", "create", "--target", "all")
    assert result.exit_code == 0, result.output
    assert result.output.count("and its manifest off this host (BACKUP_COPY_COMMAND)") == 3
    local = sorted(p for p in Path(app.config["HANDLED_SETTINGS"].backup_dir).iterdir())
    assert len(local) == 6   # three backups, three manifests
    for path in local:
        assert (offsite / path.name).read_bytes() == path.read_bytes()
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()

    made = runs_of(app)
    assert [(r.operation, r.target, r.status, r.copy_status) for r in made] == [
        ("create", "primary", "succeeded", "copied"), ("create", "data", "succeeded", "copied"),
        ("create", "archive", "succeeded", "copied")]
    assert made[0].file_name.startswith("handled-primary-") and made[0].file_size > 0 and made[0].rows_written > 0
    assert "copied off this host" in made[0].message and made[0].created_by_email.startswith("cli:")

    client = viewer(app)
    text = client.get("/metrics").get_data(as_text=True)
    for run in made:
        stamp = metric_value(text, "handled_backup_last_success_timestamp_seconds", target=run.target)
        assert stamp == pytest.approx(run.finished_at.timestamp(), abs=0.001)
    page = client.get("/system").get_data(as_text=True)
    backups = page.split("<h2>Backups</h2>")[1].split("<h2>")[0]
    assert all(run.file_name in backups for run in made) and "failed" not in backups


@pytest.mark.flow("Backups")
def test_a_failed_copy_fails_the_run_shows_on_system_and_leaves_the_metric_at_the_last_success(settings, tmp_path):
    good = backup_app(settings, tmp_path, ["cp", "{file}", str(tmp_path)])
    assert cli(good, "backup", "create", "--target", "primary").exit_code == 0
    first = runs_of(good)[0]

    bad = backup_app(settings, tmp_path, ["cp", "{file}", f"{tmp_path / 'no such folder'}/"])
    result = cli(bad, "backup", "create", "--target", "primary")
    assert result.exit_code == 1 and "Traceback" not in result.output
    run = runs_of(bad)[-1]
    assert run.status == "failed" and run.copy_status == "failed" and run.file_name.startswith("handled-primary-")
    assert run.message.startswith(f"{run.file_name} was written, but copying it off this host failed: "
                                  f"BACKUP_COPY_COMMAND (cp) exited with status 1 copying {run.file_name}: cp: ")
    # what cp said, with the command's own words (here the destination) masked: they may hold a credential
    assert run.message.endswith("cp: cannot create regular file '***': Not a directory")
    assert run.message in result.output
    assert (Path(bad.config["HANDLED_SETTINGS"].backup_dir) / run.file_name).exists()   # the backup is kept

    client = viewer(bad)
    text = client.get("/metrics").get_data(as_text=True)
    stamp = metric_value(text, "handled_backup_last_success_timestamp_seconds", target="primary")
    assert stamp == pytest.approx(first.finished_at.timestamp(), abs=0.001)   # not the failed one's time
    page = client.get("/system").get_data(as_text=True)
    backups = page.split("<h2>Backups</h2>")[1].split("<h2>")[0]
    assert "<strong>failed</strong>" in backups and "copying it off this host failed" in backups
    assert first.file_name in backups   # the last good backup is still named

    # A target that never succeeded reads 0, so an alert on its age fires at once.
    assert cli(bad, "backup", "create", "--target", "data").exit_code == 1
    text = client.get("/metrics").get_data(as_text=True)
    assert metric_value(text, "handled_backup_last_success_timestamp_seconds", target="data") == 0
    assert metric_value(text, "handled_backup_last_success_timestamp_seconds", target="archive") is None


SPY = """
import json, os, sys
json.dump({"argv": sys.argv[1:], "env": dict(os.environ)}, open(os.environ["SPY_OUT"], "w"))
print("upload refused for " + sys.argv[1] + " with " + sys.argv[2], file=sys.stderr)
sys.exit(3)
"""


@pytest.mark.one_mode   # the copy command and the run history: the mode changes nothing
def test_the_command_gets_the_path_as_one_word_and_no_secret_is_printed_kept_or_inherited(settings, tmp_path,
                                                                                        monkeypatch, caplog):
    spy_out = tmp_path / "spy.json"
    monkeypatch.setenv("SPY_OUT", str(spy_out))
    monkeypatch.setenv("BACKUP_ENCRYPTION_PASSPHRASE", "passphrase-in-the-environment-0000")
    monkeypatch.setenv("PRIMARY_DATABASE_URL", "postgresql://handled:dbpassword-0000@db/handled")
    monkeypatch.setenv("PGPASSWORD", "pgpassword-0000")
    app = backup_app(settings, tmp_path, [sys.executable, "-c", SPY, f"--token={TOKEN}", "{file}"])
    caplog.set_level(logging.DEBUG)
    result = cli(app, "backup", "create", "--target", "primary")
    assert result.exit_code == 1

    seen = json.loads(spy_out.read_text())
    run = runs_of(app)[-1]
    path = str(Path(app.config["HANDLED_SETTINGS"].backup_dir) / run.file_name)
    assert seen["argv"] == [f"--token={TOKEN}", path]   # the path is one word, as it is
    for name in ("BACKUP_ENCRYPTION_PASSPHRASE", "PRIMARY_DATABASE_URL", "PGPASSWORD"):
        assert name not in seen["env"], name   # handled's own variables stay with handled
    assert seen["env"]["SPY_OUT"] == str(spy_out)   # the rest of the environment is passed on

    assert "BACKUP_COPY_COMMAND (python" in run.message and "exited with status 3" in run.message
    assert "upload refused for *** with" in run.message   # what it printed, its own words masked
    page = viewer(app).get("/system").get_data(as_text=True)
    for where in (result.output, run.message, caplog.text, page):
        assert TOKEN not in where and SPY.strip().splitlines()[1] not in where


@pytest.mark.one_mode   # the copy command and the run history: the mode changes nothing
def test_a_copy_that_hangs_is_stopped_after_backup_copy_timeout(settings, tmp_path):
    app = backup_app(settings, tmp_path, [sys.executable, "-c", "import time; time.sleep(600)", "{file}"],
                     backup_copy_timeout=1)
    result = cli(app, "backup", "create", "--target", "archive")
    assert result.exit_code == 1
    assert f"BACKUP_COPY_COMMAND ({Path(sys.executable).name}) did not finish copying handled-archive-" in result.output
    assert "within BACKUP_COPY_TIMEOUT (1 s) and was stopped" in result.output
    assert runs_of(app)[-1].copy_status == "failed"


@pytest.mark.one_mode   # the copy command and the run history: the mode changes nothing
def test_a_command_that_cannot_start_or_be_parsed_is_one_sentence(settings, tmp_path):
    app = backup_app(settings, tmp_path, ["/no/such/copy-tool", "{file}"])
    result = cli(app, "backup", "create", "--target", "archive")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "BACKUP_COPY_COMMAND's program copy-tool could not be started (No such file or directory)" in result.output
    with pytest.raises(SettingsError) as refused:
        load_settings(mode_env("single", "x", BACKUP_COPY_COMMAND=f'rclone copy "{TOKEN} remote:'))
    assert str(refused.value) == "BACKUP_COPY_COMMAND cannot be split into words (No closing quotation); check its quotes."
    parsed = load_settings(mode_env("single", "x", BACKUP_COPY_COMMAND="aws s3 cp {file} 's3://bucket/a b/'"))
    assert parsed.backup_copy_command == ("aws", "s3", "cp", "{file}", "s3://bucket/a b/")
    assert TOKEN not in repr(load_settings(mode_env("single", "x", BACKUP_COPY_COMMAND=f"rclone --token {TOKEN}")))


@pytest.mark.one_mode   # the copy command and the run history: the mode changes nothing
def test_a_backup_whose_process_died_shows_failed_not_running(settings, tmp_path):
    app = backup_app(settings, tmp_path, None)
    with app.app_context():
        BackupRun.create(operation="create", target="primary", status="running", worker="gone-host:4242")
    page = viewer(app).get("/system").get_data(as_text=True)
    backups = page.split("<h2>Backups</h2>")[1].split("<h2>")[0]
    assert "<strong>failed</strong>" in backups and "stopped before it finished" in backups
    assert runs_of(app)[0].status == "failed"   # swept: no heartbeat of gone-host:4242 in Redis

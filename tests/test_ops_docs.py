"""The operations docs only name commands that exist, with options that exist, and
each flow they describe is exercised by a test; the deploy files agree with them."""

from __future__ import annotations

import configparser
import importlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from handled import create_app
from tests.support.servers import self_signed_certificate

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "docs" / "DEPLOYMENT_CHECKLIST.md", ROOT / "docs" / "OPS_RUNBOOK.md"]

# Each flow the docs describe -> the tests that run it.
FLOWS = {
    "split to a new PRIMARY and roll back": [
        "tests.test_ops_split:test_split_then_unsplit_keeps_every_row_and_every_login",
        "tests.test_ops_split:test_interrupted_split_leaves_target_clean_and_rerun_finishes",
        "tests.test_ops_split:test_unsplit_into_a_third_database_moves_both_sides"],
    "PgBouncer in front of PRIMARY": [
        "tests.test_pgbouncer_primary:test_sign_in_session_cache_and_admin_pages_through_pgbouncer",
        "tests.test_pgbouncer_primary:test_migrations_refuse_the_pooler_and_ask_for_a_direct_url",
        "tests.test_pgbouncer_load:test_through_pgbouncer_server_connections_stay_within_its_pool"],
    "TLS": [
        "tests.test_tls_primary:test_sslmode_require_encrypts_the_apps_connections",
        "tests.test_tls_primary:test_sign_in_and_admin_pages_through_pgbouncer_with_tls_on_both_sides",
        "tests.test_tls_primary:test_a_server_without_tls_gives_a_clear_error"],
    "PRIMARY down": ["tests.test_degraded_modes:test_primary_down_gives_a_clear_503_with_warm_and_cold_session_cache"],
    "DATA down": ["tests.test_degraded_modes:test_data_down_keeps_sign_in_and_admin_pages_and_shows_the_banner"],
    "Redis down": ["tests.test_degraded_modes:test_redis_down_checks_sessions_against_primary"],
    "backup and restore": [
        "tests.test_backup_restore:test_backup_destroy_restore_compares_every_table",
        "tests.test_backup_restore:test_retention_keeps_the_newest_and_drops_the_old",
        "tests.test_backup_restore:test_restore_into_a_split_pair_runs_the_app_in_split_mode"],
    "archive backup, restore and rebuild": [
        "tests.test_backup_archive:test_back_up_lose_primary_data_and_archive_restore_rebuild_every_table_as_before",
        "tests.test_backup_archive:test_archive_backups_store_only_new_files_and_the_newest_restores_them_all",
        "tests.test_backup_archive:test_retention_keeps_every_archive_backup_a_kept_one_needs"],
    "copy backups off the host": [
        "tests.test_backup_copy:test_a_copy_that_works_is_recorded_and_dated_in_metrics",
        "tests.test_backup_copy:test_a_failed_copy_fails_the_run_shows_on_system_and_leaves_the_metric_at_the_last_success"],
    "verify a backup": [
        "tests.test_backup_verify:test_a_good_backup_passes_and_its_scratch_database_is_gone",
        "tests.test_backup_verify:test_a_tampered_or_damaged_backup_fails_naming_the_first_difference",
        "tests.test_backup_verify:test_newest_all_verifies_the_newest_backup_of_each_target"],
    "rebuild DATA": ["tests.test_ops_rebuild:test_rebuild_into_an_empty_data_database_gives_the_same_tables"],
    "metrics and System page": [
        "tests.test_metrics_system:test_session_counters_and_live_gauges",
        "tests.test_metrics_system:test_several_gunicorn_workers_add_up_in_multiprocess_mode"],
}


def documented_commands() -> list[tuple[str, str]]:
    """(doc name, command line) for every line starting with `flask ` inside a fenced block."""
    found = []
    for doc in DOCS:
        inside = False
        for line in doc.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("```"):
                inside = not inside
                continue
            if inside and stripped.startswith("flask "):
                found.append((doc.name, stripped))
    return found


def resolve(app, words: list[str]):
    """The click command a command line names, and the words after its name."""
    command = app.cli
    ctx = click.Context(command, info_name="flask")
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(ctx, rest[0])
        if sub is None:
            break
        command, rest = sub, rest[1:]
    return command, rest


def test_the_docs_name_enough_commands():
    names = {line.split()[1] for _, line in documented_commands()}
    assert {"db", "backup", "data", "jobs", "users"} <= names
    assert len(documented_commands()) >= 20


@pytest.mark.parametrize("doc,line", documented_commands())
def test_each_documented_command_exists_with_its_options(settings, doc, line):
    app = create_app(settings)
    words = shlex.split(line)[1:]
    command, rest = resolve(app, words)
    assert not isinstance(command, click.Group), f"{doc}: {line!r} names a group, not a command"
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"{doc}: {line!r} uses {word}, which {command.name} lacks"
    path = words[: len(words) - len(rest)]
    result = app.test_cli_runner().invoke(args=[*path, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("flow", sorted(FLOWS))
def test_each_flow_is_exercised_by_a_test(flow):
    for target in FLOWS[flow]:
        module, name = target.split(":")
        assert callable(getattr(importlib.import_module(module), name, None)), f"{flow}: {target} is missing"


def test_deploy_files_agree_with_the_docs_and_the_app():
    web = configparser.ConfigParser(interpolation=None, strict=False)
    web.read(ROOT / "deploy" / "handled-web.service")
    assert "gunicorn -c /etc/handled/gunicorn.conf.py app:app" in web["Service"]["ExecStart"]
    assert web["Service"]["Environment"] == "PROMETHEUS_MULTIPROC_DIR=/run/handled/metrics"
    worker = configparser.ConfigParser(interpolation=None, strict=False)
    worker.read(ROOT / "deploy" / "handled-worker.service")
    assert worker["Service"]["ExecStart"].endswith("flask --app app jobs worker")
    scheduled = {"handled-backup": "backup create --target primary",
                 "handled-backup-data": "backup create --target data",
                 "handled-backup-archive": "backup create --target archive",
                 "handled-backup-verify": "backup verify --newest all"}
    for unit, command in scheduled.items():
        service = configparser.ConfigParser(interpolation=None, strict=False)
        service.read(ROOT / "deploy" / f"{unit}.service")
        assert service["Service"]["ExecStart"].endswith(f"flask --app app {command}"), unit
        timer = configparser.ConfigParser(interpolation=None, strict=False)
        timer.read(ROOT / "deploy" / f"{unit}.timer")   # each is started by its own timer
        assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target", unit
    gunicorn_conf = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    default_bind = re.search(r'"HANDLED_BIND", "([^"]+)"', gunicorn_conf).group(1)
    assert f"server {default_bind};" in (ROOT / "deploy" / "nginx-handled.conf").read_text()
    compile(gunicorn_conf, "gunicorn.conf.py", "exec")
    checklist = DOCS[0].read_text()
    for name in ("gunicorn.conf.py", "handled-web.service", "handled-worker.service", "nginx-handled.conf",
                 *(f"{unit}.{kind}" for unit in scheduled for kind in ("service", "timer"))):
        assert f"deploy/{name}" in checklist, name


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    """The real tool reads the unit files: a misspelt key or a bad value is a warning it prints.
    (Installed paths are pointed at stand-in executables, since /opt/handled is not here.)"""
    venv_bin = tmp_path / "opt" / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for program in ("gunicorn", "flask"):
        (venv_bin / program).write_text("#!/bin/sh\n")
        (venv_bin / program).chmod(0o755)
    units = []
    for unit in sorted((ROOT / "deploy").glob("handled-*.*")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/handled", str(tmp_path / "opt")))
        units.append(str(copy))
    assert len(units) == 10   # web, worker, and the backups of PRIMARY, DATA, the archive and their verify

    def verify(*paths):
        return subprocess.run(["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60)

    done = verify(*units)
    assert done.returncode == 0 and done.stderr.strip() == "" and done.stdout.strip() == "", done.stderr
    broken = tmp_path / "handled-broken.service"
    web = (tmp_path / "handled-web.service").read_text()
    assert "KillMode=mixed" in web
    broken.write_text(web.replace("KillMode=mixed", "KilMode=mixed"))
    assert "Unknown key 'KilMode'" in verify(str(broken)).stderr   # the check would see a typo


def nginx_binary() -> str:
    """Debian's nginx, unpacked by scripts/test (HANDLED_TEST_NGINX), or one on PATH."""
    found = os.environ.get("HANDLED_TEST_NGINX") or shutil.which("nginx")
    if not found or not Path(found).exists():
        raise RuntimeError("nginx is not available; scripts/test unpacks Debian's package into var/tools/nginx.")
    return found


def test_nginx_site_passes_nginx_t(tmp_path):
    """nginx itself parses the site file (certificates swapped for a self-signed pair),
    inside a minimal main configuration; a misspelt directive is shown to be caught."""
    cert, key = self_signed_certificate(tmp_path / "tls")
    site = (ROOT / "deploy" / "nginx-handled.conf").read_text()
    for installed, here in (("/etc/ssl/handled/fullchain.pem", cert), ("/etc/ssl/handled/privkey.pem", key)):
        assert installed in site
        site = site.replace(installed, str(here))

    def nginx_t(site_text: str) -> subprocess.CompletedProcess:
        (tmp_path / "site.conf").write_text(site_text)
        temp = " ".join(f"{kind}_temp_path {tmp_path / kind};" for kind in
                        ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (tmp_path / "nginx.conf").write_text(
            f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\nevents {{}}\n"
            f"http {{\n  access_log off;\n  {temp}\n  include {tmp_path / 'site.conf'};\n}}\n")
        return subprocess.run([nginx_binary(), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
                               "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True, timeout=60)

    done = nginx_t(site)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr
    assert "[warn]" not in done.stderr and "[emerg]" not in done.stderr, done.stderr
    broken = nginx_t(site.replace("proxy_buffering off;", "proxy_bufering off;"))
    assert broken.returncode != 0 and 'unknown directive "proxy_bufering"' in broken.stderr


def checklist_section_blocks(title: str) -> list[list[str]]:
    """The fenced blocks of one section of DEPLOYMENT_CHECKLIST.md, each as its lines."""
    text = DOCS[0].read_text()
    section = text.split(f"### {title}\n", 1)[1].split("\n## ", 1)[0]
    return [[line.strip() for line in block.splitlines() if line.strip()]
            for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]


def test_the_verify_split_operations_steps_work_as_written(imp_app, imp_settings, tmp_path, monkeypatch):
    """Each command of "Verify split operations", run as written on a real-format uszips.csv:
    the import, the history, the transformations, the export, and the same run through a worker."""
    from tests.support.import_files import uszip_row, write_uszips
    from tests.support.workers import start_worker

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write_uszips(work / "uszips.csv", [uszip_row("10001", population="100", zcta="TRUE"),
                                       uszip_row("10002", population="300", zcta="TRUE")])
    runner = imp_app.test_cli_runner()
    blocks = checklist_section_blocks("Verify split operations")
    assert [len(block) for block in blocks] == [2, 3, 2]
    outputs = {}
    for line in blocks[0] + blocks[1]:
        words = shlex.split(line)
        if words[0] == "flask":
            result = runner.invoke(args=words[1:])
            assert result.exit_code == 0, (line, result.output)
        else:   # head: the export's first lines
            result = subprocess.run(words, capture_output=True, text=True, check=True)
        outputs[line] = result.output if words[0] == "flask" else result.stdout
    imported, history, transformed, exported, head = (outputs[line] for line in blocks[0] + blocks[1])
    assert "uszips.csv: succeeded (run 1)" in imported and " succeeded read=2 written=2 " in history
    assert "\nzip3-reference: run #1 succeeded, 1 rows" in transformed, transformed
    assert "zip3_reference.csv: 1 rows" in exported, exported
    head = head.splitlines()
    assert head[0].startswith("zip3,") and len(head) == 2 and head[1].startswith("100,"), head

    queued = runner.invoke(args=shlex.split(blocks[2][0])[1:])
    assert queued.exit_code == 0, queued.output
    job_id = re.search(r"queued job (\S+):", queued.output).group(1)
    assert start_worker(imp_settings, tmp_path, "--burst").wait(timeout=120) == 0
    follow = runner.invoke(args=shlex.split(blocks[2][1].replace("JOB_ID", job_id))[1:])
    assert follow.exit_code == 0 and "finished" in follow.output, follow.output

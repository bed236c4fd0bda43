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
        "tests.test_backup_restore:test_retention_keeps_the_newest_and_drops_the_old"],
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
@pytest.mark.one_mode   # checks the CLI's commands and options: no database behaviour
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
    backup = configparser.ConfigParser(interpolation=None, strict=False)
    backup.read(ROOT / "deploy" / "handled-backup.service")
    assert backup["Service"]["ExecStart"].endswith("flask --app app backup create --target primary")
    gunicorn_conf = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    default_bind = re.search(r'"HANDLED_BIND", "([^"]+)"', gunicorn_conf).group(1)
    assert f"server {default_bind};" in (ROOT / "deploy" / "nginx-handled.conf").read_text()
    compile(gunicorn_conf, "gunicorn.conf.py", "exec")
    checklist = DOCS[0].read_text()
    for name in ("gunicorn.conf.py", "handled-web.service", "handled-worker.service", "nginx-handled.conf"):
        assert f"deploy/{name}" in checklist


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
    assert len(units) == 4

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

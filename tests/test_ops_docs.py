"""The operations docs only name commands that exist, with options that exist, and
each flow they describe is exercised by a test; the deploy files agree with them."""

from __future__ import annotations

import ast
import configparser
import importlib
import inspect
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


# --- each flow the docs describe is exercised ---------------------------------------------
# A flow is a "## " section of a doc (its heading without the step number). A test that
# exercises one says so with @pytest.mark.flow("<heading>") in its own file. The check reads
# the docs and the test files as they are: every section has a test, every test names a
# section that exists, and every `flask` command a section shows (the command and each
# option it uses) is run by one of its tests, in the test itself or in a function of its
# module that the test calls (cli(app, "db", "split", ...), invoke(args=[...]), run_flask(...)).

def flow_name(heading: str) -> str:
    """A section's heading without its step number or quotes: "7. Moving ..." -> "Moving ..."."""
    return re.sub(r"^\d+\.\s*", "", heading.strip()).strip('"')


def documented_flows() -> dict[str, list[str]]:
    """{flow: the `flask` command lines in fenced blocks of its section}."""
    flows: dict[str, list[str]] = {}
    for doc in DOCS:
        flow, inside = None, False
        for line in doc.read_text().splitlines():
            if line.startswith("## "):
                flow = flow_name(line[3:])
                assert flow not in flows, f"two sections are called {flow!r}: a flow's name must be unique"
                flows[flow] = []
            elif line.strip().startswith("```"):
                inside = not inside
            elif inside and flow and line.strip().startswith("flask "):
                flows[flow].append(line.strip())
    return flows


def claimed_flows() -> dict[str, list[str]]:
    """{flow: ["tests.test_x:test_y", ...]} from the flow marks of every test in tests/."""
    claims: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        module = importlib.import_module(f"tests.{path.stem}")
        for name, function in vars(module).items():
            if not (name.startswith("test_") and callable(function)):
                continue
            for mark in getattr(function, "pytestmark", []):
                if mark.name == "flow":
                    claims.setdefault(mark.args[0], []).append(f"tests.{path.stem}:{name}")
    return claims


def _module_functions(module) -> dict[str, ast.AST]:
    tree = ast.parse(inspect.getsource(module))
    return {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def code_of(target: str) -> list[ast.AST]:
    """The test's function and every function of its module it reaches by name (helpers, fixtures)."""
    module_name, name = target.split(":")
    functions = _module_functions(importlib.import_module(module_name))
    reached, todo = {}, [name]
    while todo:
        current = todo.pop()
        if current in reached or current not in functions:
            continue
        reached[current] = functions[current]
        todo += [node.id for node in ast.walk(functions[current]) if isinstance(node, ast.Name)]
        todo += [arg.arg for arg in functions[current].args.args]   # fixtures of the same module
    return list(reached.values())


def word_runs(nodes: list[ast.AST]) -> list[list[str]]:
    """Runs of string constants the code passes together: call arguments, list and tuple items."""
    runs = []
    for tree in nodes:
        for node in ast.walk(tree):
            groups = []
            if isinstance(node, ast.Call):
                groups.append(node.args)
                groups += [kw.value.elts for kw in node.keywords if isinstance(kw.value, (ast.List, ast.Tuple))]
            elif isinstance(node, (ast.List, ast.Tuple)):
                groups.append(node.elts)
            for items in groups:
                run: list[str] = []
                for item in items + [None]:
                    if isinstance(item, ast.Constant) and isinstance(item.value, str):
                        run.append(item.value)
                    elif isinstance(item, ast.Constant) or isinstance(item, (ast.Name, ast.Attribute, ast.Call,
                                                                           ast.Subscript, ast.JoinedStr)):
                        run.append(None)   # an argument value (a URL, a path): keeps the run going
                    else:
                        if any(run):
                            runs.append(run)
                        run = []
    return runs


def runs_command(runs: list[list[str]], path: list[str], options: set[str]) -> bool:
    for run in runs:
        for start in range(len(run) - len(path) + 1):
            if run[start:start + len(path)] == path:
                used = {word.split("=")[0] for word in run[start + len(path):] if word and word.startswith("--")}
                if options <= used:
                    return True
    return False


@pytest.fixture(scope="module")
def cli_app():
    from handled.settings import load_settings
    from tests.support.databases import mode_env
    return create_app(load_settings(mode_env("single", "never_connected")))   # only its commands are read


def test_every_flow_mark_names_a_section_of_the_docs():
    unknown = sorted(set(claimed_flows()) - set(documented_flows()))
    assert not unknown, f"tests are marked with flows no doc has a section for: {unknown}"


@pytest.mark.parametrize("flow", sorted(documented_flows()))
def test_each_flow_is_exercised_by_a_test(flow, cli_app):
    tests = claimed_flows().get(flow, [])
    assert tests, f"no test is marked @pytest.mark.flow({flow!r})"
    runs = [run for target in tests for run in word_runs(code_of(target))]
    missing = []
    for line in documented_flows()[flow]:
        words = shlex.split(line, comments=True)[1:]
        _, rest = resolve(cli_app, words)
        path = words[: len(words) - len(rest)]
        options = {word.split("=")[0] for word in rest if word.startswith("--")}
        if not runs_command(runs, path, options):
            missing.append(f"`flask {' '.join(path)}` with {', '.join(sorted(options)) or 'no option'}")
    assert not missing, f"{flow}: no test marked for it runs " + "; ".join(missing)


@pytest.mark.flow("Services")
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


@pytest.mark.flow("Services")
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


@pytest.mark.flow("Services")
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


@pytest.mark.flow("Verify")
def test_the_verify_split_operations_steps_work_as_written(imp_app, imp_settings, tmp_path, monkeypatch):
    """Each command of "Verify split operations", run as written on a real-format uszips.csv:
    the import, the history, the transformations, the export, and the same run through a worker."""
    from tests.support.import_files import uszip_row, write_uszips
    from tests.support.workers import start_worker

    assert checklist_section_blocks("Verify split operations") == [
        ["flask integrations import us-zips uszips.csv", "flask integrations history us-zips --limit 1"],
        ["flask transformations run --all", "flask exports write zip3_reference.csv --output zip3_reference.csv",
         "head -3 zip3_reference.csv"],
        ["flask transformations run --all --background", "flask jobs status JOB_ID --follow"]]
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    write_uszips(work / "uszips.csv", [uszip_row("10001", population="100", zcta="TRUE"),
                                       uszip_row("10002", population="300", zcta="TRUE")])
    runner = imp_app.test_cli_runner()

    def flask(*words: str) -> str:
        result = runner.invoke(args=list(words))
        assert result.exit_code == 0, (words, result.output)
        return result.output

    assert "uszips.csv: succeeded (run 1)" in flask("integrations", "import", "us-zips", "uszips.csv")
    assert " succeeded read=2 written=2 " in flask("integrations", "history", "us-zips", "--limit", "1")
    assert "\nzip3-reference: run #1 succeeded, 1 rows" in flask("transformations", "run", "--all")
    assert "zip3_reference.csv: 1 rows" in flask("exports", "write", "zip3_reference.csv", "--output",
                                                 "zip3_reference.csv")
    head = subprocess.run(["head", "-3", "zip3_reference.csv"], capture_output=True, text=True, check=True)
    lines = head.stdout.splitlines()
    assert lines[0].startswith("zip3,") and len(lines) == 2 and lines[1].startswith("100,"), lines

    queued = flask("transformations", "run", "--all", "--background")
    job_id = re.search(r"queued job (\S+):", queued).group(1)
    assert start_worker(imp_settings, tmp_path, "--burst").wait(timeout=120) == 0
    assert "finished" in flask("jobs", "status", job_id, "--follow")

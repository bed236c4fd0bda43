# Shared steps of scripts/run and scripts/test: a virtualenv with the pinned
# packages, and PostgreSQL + Redis reachable (the machine's, or private ones
# started from locally installed server binaries under var/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv"
PG_HOST=${HANDLED_PG_HOST:-127.0.0.1}
PG_PORT=${HANDLED_PG_PORT:-5432}
REDIS_PORT=${HANDLED_REDIS_PORT:-6379}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'handled: %s\n' "$*" >&2; exit 1; }

ensure_venv() {
  command -v python3 >/dev/null || die "python3 (3.11 or newer) is not installed; install it first (apt-get install python3 python3-venv)."
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv in .venv"
    python3 -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(cat "$ROOT/setup.cfg" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing pinned packages"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$ROOT[test]"
    rm -f "$VENV"/.installed-* && touch "$stamp"
  fi
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }
redis_ready() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; }

ensure_postgres() {
  pg_ready && return 0
  command -v pg_config >/dev/null || die "PostgreSQL is not reachable on $PG_HOST:$PG_PORT and no server is installed; install it (apt-get install postgresql) or set HANDLED_PG_HOST/HANDLED_PG_PORT."
  local bindir datadir="$ROOT/var/postgres"
  bindir=$(pg_config --bindir)
  [ -x "$bindir/initdb" ] || die "PostgreSQL client is installed but not the server; install it (apt-get install postgresql)."
  say "starting a private PostgreSQL in var/postgres on port $PG_PORT"
  mkdir -p "$datadir"
  local as=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$ROOT/var/postgres"; as=(runuser -u postgres --); fi
  if [ ! -f "$datadir/PG_VERSION" ]; then
    "${as[@]}" "$bindir/initdb" -D "$datadir" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  "${as[@]}" "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w \
    -o "-p $PG_PORT -k $datadir -c listen_addresses=127.0.0.1" start >/dev/null
  pg_ready || die "the private PostgreSQL did not start; see var/postgres/server.log."
}

ensure_redis() {
  redis_ready && return 0
  command -v redis-server >/dev/null || die "Redis is not reachable on 127.0.0.1:$REDIS_PORT and redis-server is not installed; install it (apt-get install redis-server)."
  say "starting a private Redis on port $REDIS_PORT"
  mkdir -p "$ROOT/var/redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$ROOT/var/redis" --logfile "$ROOT/var/redis/redis.log"
  for _ in $(seq 50); do redis_ready && return 0; sleep 0.1; done
  die "the private Redis did not start; see var/redis/redis.log."
}

ensure_services() { ensure_postgres; ensure_redis; }

# ensure_debian_package COMMAND PACKAGE WHY: install a Debian package when its
# command is missing (as root), or say in one sentence what to install.
ensure_debian_package() {
  command -v "$1" >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "$1 is missing; install Debian's $2 package (sudo apt-get install $2): $3."
  say "installing Debian's $2 ($3)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

# ensure_nginx_binary: Debian's nginx binary under var/tools/nginx, for `nginx -t` of
# deploy/nginx-handled.conf in the tests. The package is unpacked, not installed:
# installing it would start a web server on port 80.
NGINX_TOOL="$ROOT/var/tools/nginx/usr/sbin/nginx"
ensure_nginx_binary() {
  [ -x "$NGINX_TOOL" ] && return 0
  command -v apt-get >/dev/null || die "apt-get is missing: the deploy tests need Debian's nginx binary in var/tools/nginx."
  say "unpacking Debian's nginx into var/tools/nginx (the deploy tests run nginx -t; no server is started)"
  local tmp
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq nginx >/dev/null 2>&1); then
    [ "$(id -u)" = 0 ] || die "apt-get download nginx failed; run 'sudo apt-get update' and try again."
    apt-get update -qq && (cd "$tmp" && apt-get download -qq nginx >/dev/null 2>&1) \
      || die "apt-get download nginx failed; Debian's package registry is needed once."
  fi
  mkdir -p "$ROOT/var/tools/nginx"
  dpkg -x "$tmp"/nginx_*.deb "$ROOT/var/tools/nginx"
  rm -rf "$tmp"
  "$NGINX_TOOL" -v 2>/dev/null || die "the unpacked nginx does not run ($NGINX_TOOL); install Debian's nginx libraries."
}

# ensure_axe: npm's axe-core (pinned) under var/tools/axe, for the accessibility test that
# Playwright injects into chromium. Installed from the npm registry with npm, never by hand.
AXE_VERSION=4.14.1
AXE_TOOL="$ROOT/var/tools/axe/node_modules/axe-core/axe.min.js"
ensure_axe() {
  local installed="$ROOT/var/tools/axe/node_modules/axe-core/package.json"
  if [ -f "$AXE_TOOL" ] && grep -q "\"version\": \"$AXE_VERSION\"" "$installed" 2>/dev/null; then return 0; fi
  command -v npm >/dev/null || die "npm is missing: the accessibility test needs npm's axe-core $AXE_VERSION in var/tools/axe (apt-get install npm)."
  say "installing npm's axe-core $AXE_VERSION into var/tools/axe (the accessibility test injects it into chromium)"
  mkdir -p "$ROOT/var/tools/axe"
  npm install --prefix "$ROOT/var/tools/axe" --no-save --no-audit --no-fund --ignore-scripts --silent \
    "axe-core@$AXE_VERSION" >/dev/null \
    || die "npm install axe-core@$AXE_VERSION failed; the npm registry is needed once."
  [ -f "$AXE_TOOL" ] || die "npm installed axe-core but $AXE_TOOL is missing."
}

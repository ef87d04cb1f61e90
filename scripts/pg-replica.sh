#!/usr/bin/env bash
# A streaming replica (hot standby) of the local PostgreSQL, for READ_DATABASE_URL.
# Usage: scripts/pg-replica.sh start|stop|drop|status
#   start  base backup on first use (pg_basebackup), then 127.0.0.1:${PG_REPLICA_PORT:-5433}
#   drop   stop it and delete its data (the next start copies the primary again)
#   pause|resume  hold its replay back, then let it catch up (a lagging replica)
set -euo pipefail
# shellcheck source=scripts/lib-infra.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib-infra.sh"

case "${1:-}" in
    start) pg_replica_start ;;
    stop) pg_replica_stop ;;
    drop) pg_replica_drop ;;
    pause|resume) pg_replica_replay "$1" ;;
    status) pg_ensure_installed; if pg_replica_running; then echo "postgres replica: running"; else echo "postgres replica: stopped"; exit 3; fi ;;
    *) die "usage: $0 start|stop|drop|status|pause|resume" ;;
esac

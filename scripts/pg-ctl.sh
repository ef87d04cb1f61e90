#!/usr/bin/env bash
# Stop, start or restart only the local PostgreSQL (e.g. for fault tests).
# Usage: scripts/pg-ctl.sh stop|start|restart|status
set -euo pipefail
# shellcheck source=scripts/lib-infra.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib-infra.sh"

case "${1:-}" in
    start) pg_start ;;
    stop) pg_stop ;;
    restart) pg_stop; pg_start ;;
    status) pg_status ;;
    *) die "usage: $0 stop|start|restart|status" ;;
esac

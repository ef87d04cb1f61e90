#!/usr/bin/env bash
# Stop, start or restart only the local Kafka broker (e.g. for fault tests).
# Usage: scripts/kafka-ctl.sh stop|start|restart|status
set -euo pipefail
# shellcheck source=scripts/lib-infra.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib-infra.sh"

case "${1:-}" in
    start) kafka_start ;;
    stop) kafka_stop ;;
    restart) kafka_stop; kafka_start ;;
    status) kafka_status ;;
    *) die "usage: $0 stop|start|restart|status" ;;
esac

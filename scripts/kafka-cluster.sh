#!/usr/bin/env bash
# A local KRaft cluster of KAFKA_BROKERS nodes (default 3), each broker and controller.
# Usage: scripts/kafka-cluster.sh start|stop|reset|status|bootstrap
#        scripts/kafka-cluster.sh start-node|stop-node|kill-node N
#
# Environment: KAFKA_BROKERS (3), KAFKA_CLUSTER_PORT (first client port, 9092; controllers on
# the ports 100 above), KAFKA_CLUSTER_DIR (state, <INFRA_DIR>/kafka-cluster), KAFKA_NODE_HEAP.
# The single broker of scripts/infra-up.sh uses 9092 too: run one or the other there.
set -euo pipefail
KAFKA_BROKERS="${KAFKA_BROKERS:-3}"
# shellcheck source=scripts/lib-infra.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib-infra.sh"

node() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= KAFKA_BROKERS)) || die "usage: $0 $2 N (1..$KAFKA_BROKERS)"
}

case "${1:-}" in
    start) cluster_start ;;
    stop) cluster_stop ;;
    reset) cluster_reset ;;
    status) cluster_status ;;
    bootstrap) cluster_bootstrap; echo ;;
    start-node) node "${2:-}" start-node; kafka_fetch_libs; cluster_start_node "$2" ;;
    stop-node) node "${2:-}" stop-node; cluster_stop_node "$2" ;;
    kill-node) node "${2:-}" kill-node; cluster_stop_node "$2" KILL ;;
    *) die "usage: $0 start|stop|reset|status|bootstrap|start-node N|stop-node N|kill-node N" ;;
esac

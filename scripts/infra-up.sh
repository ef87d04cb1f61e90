#!/usr/bin/env bash
# Start the local infrastructure the service and its tests use:
#   Kafka (KRaft, 127.0.0.1:9092; with KAFKA_BROKERS=3, three nodes on 9092-9094),
#   PostgreSQL (127.0.0.1:5432),
#   stripe-mock (http 127.0.0.1:12111, https 127.0.0.1:12112).
# Idempotent: whatever already runs is left alone.
#
# Environment:
#   INFRA_DIR=<dir>      state directory (default: <repo>/.infra)
#   INFRA_SKIP_PG=1      do not start PostgreSQL
#   INFRA_SKIP_STRIPE=1  do not start stripe-mock
#   KAFKA_BROKERS=3      a three-node cluster (scripts/kafka-cluster.sh) instead of one broker
set -euo pipefail
# shellcheck source=scripts/lib-infra.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib-infra.sh"

if ((KAFKA_BROKERS > 1)); then
    cluster_start # a node whose port is taken (the single broker on 9092) says so and stops here
    KAFKA_BOOTSTRAP="$(cluster_bootstrap)"
else
    kafka_start
fi

if [[ "${INFRA_SKIP_PG:-0}" == 1 ]]; then
    log "postgres: skipped (INFRA_SKIP_PG=1)"
else
    pg_start
fi

if [[ "${INFRA_SKIP_STRIPE:-0}" == 1 ]]; then
    log "stripe-mock: skipped (INFRA_SKIP_STRIPE=1)"
else
    stripe_start
fi

{
    echo "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP"
    # the service's defaults are a three-node cluster's; one broker says so explicitly
    echo "TOPIC_REPLICATION_FACTOR=$(cluster_replicas)"
    echo "TOPIC_MIN_INSYNC_REPLICAS=$(cluster_min_isr)"
    if [[ "${INFRA_SKIP_PG:-0}" != 1 ]]; then
        echo "DATABASE_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/customers"
        echo "TEST_DATABASE_URL=postgresql+asyncpg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/customers_test"
    fi
    if [[ "${INFRA_SKIP_STRIPE:-0}" != 1 ]]; then
        echo "STRIPE_API_BASE=http://127.0.0.1:$STRIPE_HTTP_PORT"
    fi
} >"$INFRA_DIR/infra.env"

echo
echo "Infrastructure is up (state in $INFRA_DIR). Settings, also in $INFRA_DIR/infra.env:"
sed 's/^/  /' "$INFRA_DIR/infra.env"

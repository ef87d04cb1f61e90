#!/usr/bin/env bash
# Stop what scripts/infra-up.sh started (found by pid files and our own
# PostgreSQL data directory); services started by anything else are left alone.
# Data is kept; delete $INFRA_DIR to start from scratch.
set -euo pipefail
# shellcheck source=scripts/lib-infra.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib-infra.sh"

stripe_stop
kafka_stop
KAFKA_BROKERS=3 cluster_stop  # a cluster of `make infra-up KAFKA_BROKERS=3`, if one runs
pg_stop

# shellcheck shell=bash
# shellcheck disable=SC2016 # single-quoted bash -c bodies expand in the child
# Shared functions for the local infrastructure scripts (Kafka, PostgreSQL,
# stripe-mock). Source this file; it does nothing on its own.
#
# State lives under $INFRA_DIR (default: <repo>/.infra):
#   kafka/libs  kafka/data  kafka/logs  kafka/server.properties  kafka/kafka.pid
#   pg/data  pg/postgres.log  pg/run (socket)
#   bin/stripe-mock  stripe/stripe-mock.log  stripe/stripe-mock.pid
#   infra.env  (connection settings, for sourcing)

INFRA_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA_DIR="${INFRA_DIR:-$INFRA_REPO/.infra}"
mkdir -p "$INFRA_DIR"
INFRA_DIR="$(cd "$INFRA_DIR" && pwd)"

KAFKA_BOOTSTRAP=127.0.0.1:9092
KAFKA_POM="$INFRA_REPO/infra/kafka/pom.xml"
KAFKA_LOG4J="$INFRA_REPO/infra/kafka/log4j2.properties"
KAFKA_TEMPLATE="$INFRA_REPO/infra/kafka/server.properties.in"
KAFKA_HOME="$INFRA_DIR/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_LOGS="$KAFKA_HOME/logs"
KAFKA_CONF="$KAFKA_HOME/server.properties"
KAFKA_PIDFILE="$KAFKA_HOME/kafka.pid"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

PG_PORT=5432
PG_USER=customers
PG_PASSWORD=customers
PG_DATABASES=(customers customers_test)
PG_HOME="$INFRA_DIR/pg" # see pg_resolve_home
PG_DATA="$PG_HOME/data"
PG_LOGFILE="$PG_HOME/postgres.log"
PG_START_TIMEOUT="${PG_START_TIMEOUT:-60}"

STRIPE_MOCK_VERSION="${STRIPE_MOCK_VERSION:-v0.203.0}"
STRIPE_BIN_DIR="${GOBIN:-$INFRA_DIR/bin}"
STRIPE_MOCK_BIN="$STRIPE_BIN_DIR/stripe-mock"
STRIPE_HOME="$INFRA_DIR/stripe"
STRIPE_PIDFILE="$STRIPE_HOME/stripe-mock.pid"
STRIPE_LOGFILE="$STRIPE_HOME/stripe-mock.log"
STRIPE_HTTP_PORT=12111
STRIPE_HTTPS_PORT=12112

# ---------------------------------------------------------------- generic

log() { printf '[infra] %s\n' "$*"; }
warn() { printf '[infra] WARNING: %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

# One script at a time per state directory (an infra-up racing a kafka-ctl
# restart could otherwise start two brokers). Daemons must not inherit fd 9,
# or they would hold the lock forever: every start below closes it.
exec 9>"$INFRA_DIR/.lock"
flock -w 300 9 || die "another infra script still holds $INFRA_DIR/.lock after 300s"

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# http_status PORT PATH [HEADER...]: status code of a plain HTTP/1.0 GET on
# 127.0.0.1 (no curl needed), or 000 when nothing answers.
http_status() {
    local port="$1" path="$2" status
    shift 2
    status="$(timeout 5 bash -c '
        port="$1" path="$2"; shift 2
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        { printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n" "$path"
          for h in "$@"; do printf "%s\r\n" "$h"; done
          printf "\r\n"; } >&3
        IFS=" " read -r _ code _ <&3 && printf "%s" "$code"
    ' _ "$port" "$path" "$@" 2>/dev/null)" || true
    printf '%s' "${status:-000}"
}

# pid_of PIDFILE PATTERN: print the pid recorded in PIDFILE when that process
# is alive and its command line contains PATTERN (guards against reused pids).
pid_of() {
    local pidfile="$1" pattern="$2" pid cmdline
    [[ -s "$pidfile" ]] || return 1
    pid="$(<"$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"$pattern"* ]] || return 1
    printf '%s' "$pid"
}

# warn_if_foreign NAME PORT: after stopping ours, say so if the port is
# still served (by something these scripts did not start).
warn_if_foreign() {
    if port_open 127.0.0.1 "$2"; then
        warn "$1: 127.0.0.1:$2 is still served by a process not started by these scripts; left alone"
    fi
    return 0
}

# stop_pid NAME PIDFILE PATTERN TIMEOUT: SIGTERM, wait, then SIGKILL.
stop_pid() {
    local name="$1" pidfile="$2" pattern="$3" timeout="$4" pid i
    if ! pid="$(pid_of "$pidfile" "$pattern")"; then
        rm -f "$pidfile"
        log "$name: not running (nothing to stop)"
        return 0
    fi
    log "$name: stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name: still running after ${timeout}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile"
    log "$name: stopped"
}

# start_daemon PIDFILE LOGFILE CMD...: run CMD detached (own session, so the
# caller's Ctrl-C or process-group kill does not reach it) and record its pid.
start_daemon() {
    local pidfile="$1" logfile="$2"
    shift 2
    rm -f "$pidfile"
    # The inner shell writes its own pid and then execs CMD, so the pid file
    # names the real process, not a wrapper.
    setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" \
        >>"$logfile" 2>&1 </dev/null 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$pidfile" ]] && return 0
        sleep 0.1
    done
    die "could not start $1: no pid file $pidfile (see $logfile)"
}

APT_UPDATED=0
apt_install() {
    [[ $EUID -eq 0 ]] || die "need root to install $* (apt-get install -y $*)"
    command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        apt-get update -qq || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

# tail_file FILE [LINES]: show the end of a log for a failure message.
tail_file() {
    [[ -f "$1" ]] || return 0
    printf -- '----- last %s lines of %s -----\n' "${2:-40}" "$1" >&2
    tail -n "${2:-40}" "$1" >&2
    printf -- '-----\n' >&2
}

# ---------------------------------------------------------------- Kafka

kafka_ensure_tools() {
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_install maven
    local major
    major="$(java -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java.specification.version = //p')"
    [[ "${major%%.*}" -ge 17 ]] 2>/dev/null \
        || die "Kafka needs Java 17 or newer; 'java' is version ${major:-unknown}"
}

# Resolve the broker classpath with Maven, once per version of the pom.
kafka_fetch_libs() {
    local hash marker tmp
    hash="$(sha256sum "$KAFKA_POM" | cut -c1-16)"
    marker="$KAFKA_LIBS/.pom-$hash"
    [[ -f "$marker" ]] && return 0
    kafka_ensure_tools
    log "kafka: fetching broker jars with Maven into $KAFKA_LIBS"
    tmp="$KAFKA_HOME/libs.tmp"
    rm -rf "$tmp"
    mkdir -p "$KAFKA_HOME"
    mvn -B -f "$KAFKA_POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$KAFKA_HOME/mvn.log" 2>&1 || {
        tail_file "$KAFKA_HOME/mvn.log"
        die "kafka: Maven could not fetch the broker jars (full output: $KAFKA_HOME/mvn.log)"
    }
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 \
        || die "kafka: Maven finished but no kafka_2.13 jar is in $tmp"
    touch "$tmp/.pom-$hash"
    rm -rf "$KAFKA_LIBS"
    mv "$tmp" "$KAFKA_LIBS"
}

# kafka_java CLASS ARGS...: run a Kafka main class on the broker classpath.
kafka_java() {
    java -cp "$KAFKA_LIBS/*" "$@"
}

kafka_render_config() {
    [[ -f "$KAFKA_TEMPLATE" ]] || die "kafka: missing $KAFKA_TEMPLATE"
    mkdir -p "$KAFKA_HOME"
    sed "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" "$KAFKA_TEMPLATE" >"$KAFKA_CONF.tmp"
    mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

# Format the KRaft storage once; the cluster id is kept so a re-format after
# wiping data/ keeps the same id.
kafka_format() {
    [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
    local id_file="$KAFKA_HOME/cluster.id" cluster_id
    if [[ ! -s "$id_file" ]]; then
        kafka_java kafka.tools.StorageTool random-uuid >"$id_file.tmp" \
            || die "kafka: could not generate a cluster id"
        mv "$id_file.tmp" "$id_file"
    fi
    cluster_id="$(<"$id_file")"
    log "kafka: formatting storage in $KAFKA_DATA (cluster id $cluster_id)"
    kafka_java kafka.tools.StorageTool format --ignore-formatted \
        --cluster-id "$cluster_id" --config "$KAFKA_CONF" >"$KAFKA_HOME/format.log" 2>&1 || {
        tail_file "$KAFKA_HOME/format.log"
        die "kafka: storage format failed"
    }
}

kafka_pid() {
    pid_of "$KAFKA_PIDFILE" "$KAFKA_CONF"
}

kafka_start() {
    local pid
    if pid="$(kafka_pid)"; then
        log "kafka: already running (pid $pid)"
        kafka_wait_ready
        return 0
    fi
    if port_open 127.0.0.1 9092; then
        log "kafka: something already listens on $KAFKA_BOOTSTRAP, using it"
        return 0
    fi
    kafka_fetch_libs
    kafka_ensure_tools
    kafka_render_config
    kafka_format
    mkdir -p "$KAFKA_LOGS"
    # Remember where this start's log output begins, to find its own
    # "started" line rather than one from an earlier run.
    local offset=0
    [[ -f "$KAFKA_LOGS/server.log" ]] && offset="$(stat -c %s "$KAFKA_LOGS/server.log")"
    log "kafka: starting broker on $KAFKA_BOOTSTRAP"
    start_daemon "$KAFKA_PIDFILE" "$KAFKA_LOGS/kafka.out" \
        java -Xms256m -Xmx1g -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
        -Dkafka.logs.dir="$KAFKA_LOGS" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
    kafka_wait_ready "$offset"
}

# kafka_wait_ready [LOG_OFFSET]: wait until the broker accepts connections
# and answers an admin request. With LOG_OFFSET (a start we just made), also
# wait for its "started" line after that offset in server.log, and on failure
# stop it again. A broker that was already running is never stopped here.
kafka_wait_ready() {
    local offset="${1:-}" deadline=$((SECONDS + KAFKA_START_TIMEOUT)) started=1 size
    local server_log="$KAFKA_LOGS/server.log"
    [[ -n "$offset" ]] && started=0
    while ((SECONDS < deadline)); do
        if ! kafka_pid >/dev/null; then
            kafka_show_failure "${offset:-0}"
            die "kafka: broker process exited during startup (logs: $KAFKA_LOGS)"
        fi
        if ((started == 0)) && [[ -f "$server_log" ]]; then
            size="$(stat -c %s "$server_log")"
            ((size < offset)) && offset=0 # log was rolled over
            # No grep -q: under pipefail an early exit would fail the pipe.
            if tail -c +"$((offset + 1))" "$server_log" | grep -F 'Kafka Server started' >/dev/null; then
                started=1
            fi
        fi
        if ((started)) && port_open 127.0.0.1 9092; then
            if timeout 60 java -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.TopicCommand \
                --bootstrap-server "$KAFKA_BOOTSTRAP" --list >/dev/null 2>&1; then
                log "kafka: ready on $KAFKA_BOOTSTRAP (pid $(kafka_pid))"
                return 0
            fi
        fi
        sleep 1
    done
    kafka_show_failure "${offset:-0}"
    if [[ -n "$offset" ]]; then
        kafka_stop
        die "kafka: broker not ready after ${KAFKA_START_TIMEOUT}s (logs: $KAFKA_LOGS); stopped it"
    fi
    die "kafka: running broker (pid $(kafka_pid)) does not answer on $KAFKA_BOOTSTRAP after ${KAFKA_START_TIMEOUT}s (logs: $KAFKA_LOGS); try scripts/kafka-ctl.sh restart"
}

# kafka_status: exit status 0 when the broker runs (ours or not), 3 if not.
kafka_status() {
    local pid
    if pid="$(kafka_pid)"; then
        echo "kafka: running (pid $pid)"
    elif port_open 127.0.0.1 9092; then
        echo "kafka: running, not started here (something listens on $KAFKA_BOOTSTRAP)"
    else
        echo "kafka: stopped"
        return 3
    fi
}

# kafka_show_failure LOG_OFFSET: the end of the logs, then the first errors
# this start logged (the tail alone is often just shutdown noise).
kafka_show_failure() {
    tail_file "$KAFKA_LOGS/kafka.out" 20
    tail_file "$KAFKA_LOGS/server.log" 40
    if [[ -f "$KAFKA_LOGS/server.log" ]]; then
        printf -- '----- first errors of this start -----\n' >&2
        tail -c +"$(($1 + 1))" "$KAFKA_LOGS/server.log" | grep -m 5 -E '^\[[^]]*\] (ERROR|FATAL)' >&2 || true
        printf -- '-----\n' >&2
    fi
}

kafka_stop() {
    stop_pid kafka "$KAFKA_PIDFILE" "$KAFKA_CONF" "$KAFKA_STOP_TIMEOUT"
    warn_if_foreign kafka 9092
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
    local dir
    dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
    [[ -n "$dir" && -x "$dir/initdb" ]] && printf '%s' "$dir"
}

pg_ensure_installed() {
    if ! PG_BIN="$(pg_bindir)"; then
        apt_install postgresql
        PG_BIN="$(pg_bindir)" || die "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
    fi
    if [[ $EUID -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "OS user 'postgres' is missing (initdb cannot run as root)"
    fi
    pg_resolve_home
}

# The cluster lives in $INFRA_DIR/pg, unless the 'postgres' OS user cannot
# reach $INFRA_DIR (e.g. a checkout under /root): then in its own home.
pg_resolve_home() {
    PG_HOME="$INFRA_DIR/pg"
    if [[ $EUID -eq 0 ]] && id postgres >/dev/null 2>&1 \
        && ! runuser -u postgres -- test -x "$INFRA_DIR"; then
        PG_HOME="$(getent passwd postgres | cut -d: -f6)/infra-$(printf '%s' "$INFRA_DIR" | sha256sum | cut -c1-12)"
    fi
    PG_DATA="$PG_HOME/data"
    PG_LOGFILE="$PG_HOME/postgres.log"
}

# as_pg CMD...: run as the OS user that owns the cluster (initdb refuses root).
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Unix sockets have a ~107 byte path limit; fall back to /tmp for deep paths.
pg_socket_dir() {
    local dir="$PG_HOME/run"
    if ((${#dir} > 90)); then
        dir="/tmp/pg-infra-$(printf '%s' "$PG_HOME" | sha256sum | cut -c1-12)"
    fi
    printf '%s' "$dir"
}

pg_ours_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

pg_init() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && return 0
    mkdir -p "$PG_HOME"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$PG_HOME"; fi
    as_pg test -w "$PG_HOME" -a -x "$PG_HOME" \
        || die "postgres: $PG_HOME is not writable by the 'postgres' OS user; set INFRA_DIR to another place"
    log "postgres: initdb in $PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=md5 >"$PG_HOME/initdb.log" 2>&1 || {
        tail_file "$PG_HOME/initdb.log"
        die "postgres: initdb failed"
    }
    # Listen address, port and socket are rendered on every start (infra.conf).
    echo "include_if_exists = 'infra.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

pg_write_conf() {
    local sock
    sock="$(pg_socket_dir)"
    mkdir -p "$sock"
    if [[ $EUID -eq 0 ]]; then chown postgres: "$sock"; fi
    as_pg tee "$PG_DATA/infra.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
# a replay COPYs and indexes a whole version at once: room for its WAL between checkpoints
max_wal_size = '4GB'
shared_buffers = '512MB'
EOF
}

# psql as the cluster superuser over the Unix socket in $1.
pg_su_psql() {
    local sock="$1"
    shift
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$PG_PORT" -d postgres "$@"
}

pg_credentials_ok() {
    local db
    for db in "${PG_DATABASES[@]}"; do
        PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -w \
            -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d "$db" -c 'select 1' \
            >/dev/null 2>&1 || return 1
    done
}

# Create the role and databases if missing (superuser socket in $1).
pg_provision() {
    local sock="$1" db
    if [[ "$(pg_su_psql "$sock" -tA -c "select 1 from pg_roles where rolname = '$PG_USER'")" != 1 ]]; then
        log "postgres: creating role $PG_USER"
        pg_su_psql "$sock" -c "create role $PG_USER login createdb password '$PG_PASSWORD'" \
            || die "postgres: could not create role $PG_USER"
    fi
    # tests create a fresh database per module
    pg_su_psql "$sock" -c "alter role $PG_USER createdb"
    for db in "${PG_DATABASES[@]}"; do
        if [[ "$(pg_su_psql "$sock" -tA -c "select 1 from pg_database where datname = '$db'")" != 1 ]]; then
            log "postgres: creating database $db"
            pg_su_psql "$sock" -c "create database $db owner $PG_USER" \
                || die "postgres: could not create database $db"
        fi
    done
    if ! pg_credentials_ok; then
        log "postgres: resetting password of role $PG_USER"
        pg_su_psql "$sock" -c "alter role $PG_USER login password '$PG_PASSWORD'"
        pg_credentials_ok || die "postgres: $PG_USER still cannot log in on 127.0.0.1:$PG_PORT (check pg_hba.conf)"
    fi
}

pg_wait_ready() {
    local deadline=$((SECONDS + PG_START_TIMEOUT))
    until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; do
        if ((SECONDS >= deadline)); then
            tail_file "$PG_LOGFILE"
            die "postgres: not accepting connections on 127.0.0.1:$PG_PORT after ${PG_START_TIMEOUT}s"
        fi
        sleep 0.5
    done
}

pg_start() {
    pg_ensure_installed
    if ! pg_ours_running && port_open 127.0.0.1 "$PG_PORT"; then
        # Another server owns the port: use it when our role works there, or
        # when we can provision it as its local superuser (Debian's cluster).
        if pg_credentials_ok; then
            log "postgres: another server on 127.0.0.1:$PG_PORT accepts $PG_USER, using it"
            return 0
        fi
        if pg_su_psql /var/run/postgresql -c 'select 1' >/dev/null 2>&1; then
            log "postgres: provisioning the server already running on port $PG_PORT"
            pg_provision /var/run/postgresql
            return 0
        fi
        die "postgres: port $PG_PORT is taken by another server that rejects $PG_USER/$PG_PASSWORD; stop it or create that role and databases there"
    fi
    pg_init
    pg_write_conf
    if pg_ours_running; then
        log "postgres: already running ($PG_DATA)"
    else
        log "postgres: starting on 127.0.0.1:$PG_PORT"
        as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOGFILE" -w -t "$PG_START_TIMEOUT" -s 9>&- || {
            tail_file "$PG_LOGFILE"
            die "postgres: pg_ctl start failed"
        }
    fi
    pg_wait_ready
    pg_provision "$(pg_socket_dir)"
    log "postgres: ready on 127.0.0.1:$PG_PORT"
}

# pg_status: exit status 0 when PostgreSQL runs (ours or not), 3 if not.
pg_status() {
    pg_resolve_home
    if PG_BIN="$(pg_bindir)" && pg_ours_running; then
        echo "postgres: running ($PG_DATA)"
    elif port_open 127.0.0.1 "$PG_PORT"; then
        echo "postgres: running, not started here (something listens on 127.0.0.1:$PG_PORT)"
    else
        echo "postgres: stopped"
        return 3
    fi
}

pg_stop() {
    if ! PG_BIN="$(pg_bindir)"; then
        log "postgres: not installed (nothing to stop)"
        return 0
    fi
    pg_resolve_home
    if ! pg_ours_running; then
        log "postgres: not running from $PG_DATA (nothing to stop)"
        warn_if_foreign postgres "$PG_PORT"
        return 0
    fi
    log "postgres: stopping ($PG_DATA)"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s || {
        warn "postgres: fast shutdown did not finish, using immediate"
        as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 30 -s \
            || die "postgres: could not stop the server in $PG_DATA"
    }
    log "postgres: stopped"
}

# ---------------------------------------------------------------- stripe-mock

stripe_install() {
    [[ -x "$STRIPE_MOCK_BIN" ]] && return 0
    command -v go >/dev/null \
        || die "stripe-mock: 'go' (1.22 or newer) is needed to build it; install Go or set INFRA_SKIP_STRIPE=1"
    log "stripe-mock: go install github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION"
    mkdir -p "$STRIPE_BIN_DIR"
    GOBIN="$STRIPE_BIN_DIR" go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION" \
        || die "stripe-mock: go install failed"
}

stripe_pid() {
    pid_of "$STRIPE_PIDFILE" "$STRIPE_MOCK_BIN"
}

stripe_start() {
    local pid
    if ! pid="$(stripe_pid)" && port_open 127.0.0.1 "$STRIPE_HTTP_PORT"; then
        log "stripe-mock: something already listens on 127.0.0.1:$STRIPE_HTTP_PORT, using it"
        return 0
    fi
    local started_now=0
    if [[ -z "$pid" ]]; then
        started_now=1
        stripe_install
        mkdir -p "$STRIPE_HOME"
        log "stripe-mock: starting on 127.0.0.1:$STRIPE_HTTP_PORT (https $STRIPE_HTTPS_PORT)"
        start_daemon "$STRIPE_PIDFILE" "$STRIPE_LOGFILE" "$STRIPE_MOCK_BIN" \
            -http-addr "127.0.0.1:$STRIPE_HTTP_PORT" -https-addr "127.0.0.1:$STRIPE_HTTPS_PORT"
    fi
    local deadline=$((SECONDS + 30)) status
    while ((SECONDS < deadline)); do
        status="$(http_status "$STRIPE_HTTP_PORT" /v1/charges 'Authorization: Bearer sk_test_123')"
        if [[ "$status" == 200 ]]; then
            log "stripe-mock: ready (pid $(stripe_pid))"
            return 0
        fi
        if ! stripe_pid >/dev/null; then
            tail_file "$STRIPE_LOGFILE"
            die "stripe-mock: process exited during startup"
        fi
        sleep 0.5
    done
    tail_file "$STRIPE_LOGFILE"
    if ((started_now)); then
        stripe_stop
        die "stripe-mock: no answer on 127.0.0.1:$STRIPE_HTTP_PORT after 30s (last status $status); stopped it"
    fi
    die "stripe-mock: running (pid $pid) but no answer on 127.0.0.1:$STRIPE_HTTP_PORT after 30s (last status $status)"
}

stripe_stop() {
    stop_pid stripe-mock "$STRIPE_PIDFILE" "$STRIPE_MOCK_BIN" 10
    warn_if_foreign stripe-mock "$STRIPE_HTTP_PORT"
}

# ---------------------------------------------------------------- Kafka, a cluster of nodes
#
# KAFKA_BROKERS KRaft nodes (each broker and controller) on consecutive ports from
# KAFKA_CLUSTER_PORT (clients) and KAFKA_CLUSTER_PORT+100 (controllers), the same jars as the
# single broker, state under KAFKA_CLUSTER_DIR/node<N>. Topics made by the service there have
# 3 replicas and 2 in sync (TOPIC_REPLICATION_FACTOR, TOPIC_MIN_INSYNC_REPLICAS); so do Kafka's
# own (consumer offsets, transactions). Used by `make infra-up KAFKA_BROKERS=3`, the broker-loss
# fault tests (on other ports) and the replication benchmark.

KAFKA_BROKERS="${KAFKA_BROKERS:-1}"
KAFKA_CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-9092}"
KAFKA_CLUSTER_DIR="${KAFKA_CLUSTER_DIR:-$INFRA_DIR/kafka-cluster}"
KAFKA_NODE_HEAP="${KAFKA_NODE_HEAP:--Xms128m -Xmx512m}"

cluster_port() { printf '%s' "$((KAFKA_CLUSTER_PORT + $1 - 1))"; }
cluster_controller_port() { printf '%s' "$((KAFKA_CLUSTER_PORT + 100 + $1 - 1))"; }
cluster_node_dir() { printf '%s' "$KAFKA_CLUSTER_DIR/node$1"; }

cluster_bootstrap() {
    local i out=""
    for ((i = 1; i <= KAFKA_BROKERS; i++)); do
        out+="${out:+,}127.0.0.1:$(cluster_port "$i")"
    done
    printf '%s' "$out"
}

cluster_replicas() { ((KAFKA_BROKERS >= 3)) && printf 3 || printf '%s' "$KAFKA_BROKERS"; }
cluster_min_isr() { ((KAFKA_BROKERS >= 3)) && printf 2 || printf 1; }

cluster_render_config() {
    local i="$1" dir voters="" j
    dir="$(cluster_node_dir "$i")"
    for ((j = 1; j <= KAFKA_BROKERS; j++)); do
        voters+="${voters:+,}$j@127.0.0.1:$(cluster_controller_port "$j")"
    done
    mkdir -p "$dir/data" "$dir/logs"
    cat >"$dir/server.properties.tmp" <<CONF
# Node $i of a local $KAFKA_BROKERS-node KRaft cluster (scripts/lib-infra.sh renders this file).
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(cluster_port "$i"),CONTROLLER://127.0.0.1:$(cluster_controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(cluster_port "$i")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
default.replication.factor=$(cluster_replicas)
min.insync.replicas=$(cluster_min_isr)
# the service creates its topics with their replication; nothing is made by a stray read
auto.create.topics.enable=false
unclean.leader.election.enable=false
offsets.topic.replication.factor=$(cluster_replicas)
transaction.state.log.replication.factor=$(cluster_replicas)
transaction.state.log.min.isr=$(cluster_min_isr)
share.coordinator.state.topic.replication.factor=$(cluster_replicas)
share.coordinator.state.topic.min.isr=$(cluster_min_isr)
group.initial.rebalance.delay.ms=0
log.retention.ms=-1
log.retention.bytes=-1
CONF
    mv "$dir/server.properties.tmp" "$dir/server.properties"
}

cluster_format() {
    local i="$1" dir id_file="$KAFKA_CLUSTER_DIR/cluster.id"
    dir="$(cluster_node_dir "$i")"
    [[ -f "$dir/data/meta.properties" ]] && return 0
    if [[ ! -s "$id_file" ]]; then
        mkdir -p "$KAFKA_CLUSTER_DIR"
        kafka_java kafka.tools.StorageTool random-uuid >"$id_file.tmp" || die "kafka: could not generate a cluster id"
        mv "$id_file.tmp" "$id_file"
    fi
    kafka_java kafka.tools.StorageTool format --ignore-formatted --cluster-id "$(<"$id_file")" \
        --config "$dir/server.properties" >"$dir/format.log" 2>&1 || {
        tail_file "$dir/format.log"
        die "kafka: storage format of node $i failed"
    }
}

cluster_node_pid() {
    local dir
    dir="$(cluster_node_dir "$1")"
    pid_of "$dir/kafka.pid" "$dir/server.properties"
}

# cluster_start_node N: start node N (formatting its storage the first time); no wait.
cluster_start_node() {
    local i="$1" dir
    dir="$(cluster_node_dir "$i")"
    if cluster_node_pid "$i" >/dev/null; then
        return 0
    fi
    port_open 127.0.0.1 "$(cluster_port "$i")" \
        && die "kafka: 127.0.0.1:$(cluster_port "$i") is taken by another process (node $i cannot start)"
    cluster_render_config "$i"
    cluster_format "$i"
    log "kafka: starting node $i on 127.0.0.1:$(cluster_port "$i")"
    # shellcheck disable=SC2086 # the heap options are words
    start_daemon "$dir/kafka.pid" "$dir/logs/kafka.out" \
        java $KAFKA_NODE_HEAP -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_LOG4J" -Dkafka.logs.dir="$dir/logs" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties"
}

# cluster_stop_node N [SIGNAL]: stop node N (SIGKILL: at once, as a crash would).
cluster_stop_node() {
    local i="$1" dir pid
    dir="$(cluster_node_dir "$i")"
    if [[ "${2:-TERM}" == KILL ]]; then
        if pid="$(cluster_node_pid "$i")"; then
            log "kafka: killing node $i (pid $pid)"
            kill -KILL "$pid" 2>/dev/null || true
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        fi
        rm -f "$dir/kafka.pid"
        return 0
    fi
    stop_pid "kafka node $i" "$dir/kafka.pid" "$dir/server.properties" "$KAFKA_STOP_TIMEOUT"
}

# cluster_wait_ready: every node up and the cluster answering an admin request.
cluster_wait_ready() {
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) i up
    while ((SECONDS < deadline)); do
        up=0
        for ((i = 1; i <= KAFKA_BROKERS; i++)); do
            cluster_node_pid "$i" >/dev/null || {
                tail_file "$(cluster_node_dir "$i")/logs/server.log" 30
                die "kafka: node $i exited during startup (logs: $(cluster_node_dir "$i")/logs)"
            }
            port_open 127.0.0.1 "$(cluster_port "$i")" && up=$((up + 1))
        done
        if ((up == KAFKA_BROKERS)) && timeout 60 java -cp "$KAFKA_LIBS/*" org.apache.kafka.tools.BrokerApiVersionsCommand \
            --bootstrap-server "$(cluster_bootstrap)" 2>/dev/null | grep -c 'id:' | grep -qx "$KAFKA_BROKERS"; then
            log "kafka: $KAFKA_BROKERS nodes ready on $(cluster_bootstrap)"
            return 0
        fi
        sleep 1
    done
    die "kafka: the $KAFKA_BROKERS-node cluster is not ready after ${KAFKA_START_TIMEOUT}s (logs: $KAFKA_CLUSTER_DIR/node*/logs)"
}

cluster_start() {
    local i
    kafka_fetch_libs
    kafka_ensure_tools
    for ((i = 1; i <= KAFKA_BROKERS; i++)); do
        cluster_start_node "$i"
    done
    cluster_wait_ready
}

cluster_stop() {
    local i pid
    # all at once: the last node of a cluster stopped one by one waits for a quorum that is gone
    for ((i = 1; i <= KAFKA_BROKERS; i++)); do
        if pid="$(cluster_node_pid "$i")"; then kill -TERM "$pid" 2>/dev/null || true; fi
    done
    for ((i = 1; i <= KAFKA_BROKERS; i++)); do
        cluster_stop_node "$i"
    done
}

# cluster_reset: stopped, and its state removed (the next start formats a new cluster). For the
# fault tests: a cluster that kept every earlier run's topics recovers from a lost node ever more
# slowly, and no test needs what an earlier one left.
cluster_reset() {
    local dir
    cluster_stop
    dir="$(cd "$KAFKA_CLUSTER_DIR" 2>/dev/null && pwd)" || return 0  # nothing kept yet
    case "$dir" in
        "$INFRA_DIR"/?*) ;;
        *) die "kafka: refusing to remove $dir (not under $INFRA_DIR)" ;;
    esac
    rm -rf "$dir"
    log "kafka: cluster state removed ($dir)"
}

cluster_status() {
    local i pid down=0
    for ((i = 1; i <= KAFKA_BROKERS; i++)); do
        if pid="$(cluster_node_pid "$i")"; then
            echo "kafka node $i: running (pid $pid) on 127.0.0.1:$(cluster_port "$i")"
        else
            echo "kafka node $i: stopped"
            down=1
        fi
    done
    return $((down * 3))
}

# ---------------------------------------------------------------- PostgreSQL, a streaming replica
#
# A hot standby of the local PostgreSQL on 127.0.0.1:$PG_REPLICA_PORT, made with pg_basebackup
# and kept up to date by streaming replication; the API reads from it with READ_DATABASE_URL.
# The primary must be ours (scripts/infra-up.sh) and running.

PG_REPLICA_PORT="${PG_REPLICA_PORT:-5433}"
PG_REPLICATION_USER=replicator

pg_replica_data() { printf '%s' "$PG_HOME/replica"; }

pg_replica_running() {
    [[ -f "$(pg_replica_data)/PG_VERSION" ]] || return 1
    as_pg "$PG_BIN/pg_ctl" status -D "$(pg_replica_data)" >/dev/null 2>&1
}

pg_replica_start() {
    local data sock
    pg_ensure_installed
    pg_ours_running || die "postgres: the replica needs the primary of $PG_DATA running (scripts/infra-up.sh)"
    data="$(pg_replica_data)"
    sock="$(pg_socket_dir)"
    if pg_replica_running; then
        log "postgres replica: already running on 127.0.0.1:$PG_REPLICA_PORT"
        return 0
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        if [[ "$(pg_su_psql "$sock" -tA -c "select 1 from pg_roles where rolname = '$PG_REPLICATION_USER'")" != 1 ]]; then
            pg_su_psql "$sock" -c "create role $PG_REPLICATION_USER replication login password '$PG_PASSWORD'"
        fi
        log "postgres replica: base backup into $data"
        as_pg mkdir -p "$data"
        as_pg chmod 700 "$data"
        PGPASSWORD="$PG_PASSWORD" as_pg env PGPASSWORD="$PG_PASSWORD" "$PG_BIN/pg_basebackup" \
            -h 127.0.0.1 -p "$PG_PORT" -U "$PG_REPLICATION_USER" -D "$data" -X stream -R -c fast \
            >"$PG_HOME/replica-basebackup.log" 2>&1 || {
            tail_file "$PG_HOME/replica-basebackup.log"
            as_pg rm -rf "$data"
            die "postgres replica: pg_basebackup failed"
        }
    fi
    mkdir -p "$sock"
    as_pg tee "$data/infra.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $PG_REPLICA_PORT
unix_socket_directories = '$sock'
hot_standby = on
# the API's reads are short: a standby query never holds replay back for long
max_standby_streaming_delay = '5s'
CONF
    log "postgres replica: starting on 127.0.0.1:$PG_REPLICA_PORT"
    as_pg "$PG_BIN/pg_ctl" start -D "$data" -l "$PG_HOME/replica.log" -w -t "$PG_START_TIMEOUT" -s 9>&- || {
        tail_file "$PG_HOME/replica.log"
        die "postgres replica: pg_ctl start failed"
    }
    log "postgres replica: ready on 127.0.0.1:$PG_REPLICA_PORT (streaming from $PG_PORT)"
}

pg_replica_stop() {
    pg_ensure_installed
    pg_replica_running || { log "postgres replica: not running"; return 0; }
    as_pg "$PG_BIN/pg_ctl" stop -D "$(pg_replica_data)" -m fast -w -t 60 -s
    log "postgres replica: stopped"
}

# pg_replica_replay pause|resume: hold the standby's replay back (a lagging replica, for tests).
pg_replica_replay() {
    pg_ensure_installed
    pg_replica_running || die "postgres replica: not running"
    as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_socket_dir)" -p "$PG_REPLICA_PORT" -d postgres \
        -c "select pg_wal_replay_$1()" >/dev/null
    log "postgres replica: replay ${1}d"
}

# pg_replica_drop: stop the replica and delete it (the next start takes a new base backup).
pg_replica_drop() {
    pg_replica_stop
    as_pg rm -rf "$(pg_replica_data)"
}

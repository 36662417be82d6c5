# Helpers sourced by contrib scripts: scratch PostgreSQL 15 clusters, free ports, child processes.
# Defines functions only. A caller runs scratch_traps, then scratch_init.
# shellcheck shell=bash disable=SC2034

SCRATCH_PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
SCRATCH_DIR=
SCRATCH_PIDS=()
SCRATCH_CLUSTERS=()
# Set for callers: the pid of the last scratch_spawn, the status of the last scratch_stop_pid.
SCRATCH_LAST_PID=
SCRATCH_STOP_RC=

scratch_log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
scratch_die() { scratch_log "error: $*"; exit 1; }

# PostgreSQL and pgbouncer refuse to run as root: run them as postgres when we are root.
scratch_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# Creates the temp dir every file of the run lives in (owned by postgres when root).
scratch_init() { # name-prefix
    local tool
    for tool in "$SCRATCH_PG_BINDIR/initdb" "$SCRATCH_PG_BINDIR/pg_ctl" /usr/bin/python3; do
        [ -x "$tool" ] || scratch_die "$tool not found (run contrib/install-deps.sh)"
    done
    for tool in pg_isready psql pgbench timeout; do
        command -v "$tool" >/dev/null || scratch_die "$tool not found (run contrib/install-deps.sh)"
    done
    SCRATCH_DIR=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    chmod 0755 "$SCRATCH_DIR"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$SCRATCH_DIR"
    fi
}

scratch_free_port() {
    /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# Resolves the pgscope binary: $PGSCOPE_BIN, else ./src/pgscope. Prints an absolute path.
scratch_pgscope_bin() {
    local bin=${PGSCOPE_BIN:-./src/pgscope}
    [ -x "$bin" ] || scratch_die "pgscope binary not found at $bin (build it, or set PGSCOPE_BIN)"
    case $bin in
        /*) printf '%s\n' "$bin" ;;
        *) printf '%s/%s\n' "$PWD" "$bin" ;;
    esac
}

# Creates and starts a cluster on 127.0.0.1:PORT (socket in SCRATCH_DIR). Extra args: -c k=v ...
scratch_pg_start() { # port [postgres options...]
    local port=$1 data=$SCRATCH_DIR/pg-$1
    shift
    scratch_as_postgres timeout 120 "$SCRATCH_PG_BINDIR/initdb" -D "$data" -U postgres -A trust \
        -E UTF8 --locale=C --no-sync --no-instructions >"$data.initdb.log" 2>&1 ||
        { cat "$data.initdb.log" >&2; scratch_die "initdb failed"; }
    SCRATCH_CLUSTERS+=("$data")
    scratch_as_postgres timeout 90 "$SCRATCH_PG_BINDIR/pg_ctl" -D "$data" -l "$data.log" -w -t 60 \
        -o "-p $port -k $SCRATCH_DIR -c listen_addresses=127.0.0.1 -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off $*" start >/dev/null ||
        { tail -n 20 "$data.log" >&2; scratch_die "PostgreSQL did not start"; }
}

scratch_pg_stop_all() {
    local data pid
    for data in "${SCRATCH_CLUSTERS[@]}"; do
        [ -f "$data/postmaster.pid" ] || continue
        if ! scratch_as_postgres timeout 40 "$SCRATCH_PG_BINDIR/pg_ctl" -D "$data" -m fast -w -t 30 \
            stop >/dev/null 2>&1; then
            pid=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
            [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
        fi
    done
    SCRATCH_CLUSTERS=()
}

# Starts a command in the background with its output in LOGFILE; sets SCRATCH_LAST_PID.
scratch_spawn() { # logfile command...
    local logfile=$1
    shift
    "$@" </dev/null >"$logfile" 2>&1 &
    SCRATCH_LAST_PID=$!
    SCRATCH_PIDS+=("$SCRATCH_LAST_PID")
}

# Registers a process that is not our child (a daemon) so cleanup stops it.
# Writes pgbouncer.ini (session mode, trust, no Unix socket) and its user list into SCRATCH_DIR.
scratch_pgbouncer_ini() { # port upstream-port max-client-conn pool-size
    printf '"postgres" ""\n' >"$SCRATCH_DIR/userlist.txt"
    cat >"$SCRATCH_DIR/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$2

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = trust
auth_file = $SCRATCH_DIR/userlist.txt
pool_mode = session
max_client_conn = $3
default_pool_size = $4
max_db_connections = $4
logfile = $SCRATCH_DIR/pgbouncer.log
pidfile = $SCRATCH_DIR/pgbouncer.pid
INI
}

scratch_adopt_pid() { SCRATCH_PIDS+=("$1"); }

scratch_alive() { kill -0 "$1" 2>/dev/null; }

# Waits until a PostgreSQL-protocol server answers on 127.0.0.1:PORT. Fails early if PID dies.
scratch_wait_ready() { # port seconds [pid]
    local port=$1 deadline=$((SECONDS + $2)) pid=${3:-}
    while ! pg_isready -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 2; do
        if [ -n "$pid" ] && ! scratch_alive "$pid"; then
            return 1
        fi
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# Peak resident set size of PID in kB (VmHWM), or NA.
scratch_peak_rss_kb() { # pid
    awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print "NA" }' "/proc/$1/status" 2>/dev/null ||
        echo NA
}

# Sends SIGTERM, waits up to SECONDS, then SIGKILL. Sets SCRATCH_STOP_RC to the exit status
# when PID is a child of this shell (call it directly, not in $(...)).
scratch_stop_pid() { # pid seconds
    local pid=$1 deadline=$((SECONDS + $2))
    SCRATCH_STOP_RC=0
    kill -TERM "$pid" 2>/dev/null || true
    while scratch_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
    done
    if scratch_alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || SCRATCH_STOP_RC=$?
}

# Installs the cleanup trap; a signal exits through it too.
scratch_traps() {
    trap scratch_cleanup EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# EXIT trap: stops every process and cluster of the run and removes its temp dir.
scratch_cleanup() {
    local rc=$? pid
    set +e
    trap - EXIT
    for pid in "${SCRATCH_PIDS[@]}"; do
        scratch_alive "$pid" && scratch_stop_pid "$pid" 10
    done
    SCRATCH_PIDS=()
    scratch_pg_stop_all
    if [ -n "$SCRATCH_DIR" ] && [ -d "$SCRATCH_DIR" ]; then
        if [ -n "${SCRATCH_KEEP:-}" ]; then
            scratch_log "kept $SCRATCH_DIR"
        else
            rm -rf "$SCRATCH_DIR"
        fi
    fi
    exit "$rc"
}

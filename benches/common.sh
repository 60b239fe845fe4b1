# Shared by the benchmark scripts in this directory: tool checks, process and temp-dir
# bookkeeping (everything started is killed on any exit), bounded runs, timing and
# checksum helpers, and the release build. Source it after argument parsing, with
# BENCH_NAME (e.g. throughput.sh), BUILD and KEEP_TMP set and die() defined; it sets REPO,
# RUN_START, TMP, SALLYPORT and TESTBED.
#
# shellcheck shell=bash

for tool in ssh scp ssh-keygen python3 awk sha256sum timeout; do
    command -v "$tool" >/dev/null || die "'$tool' is not installed"
done
SSHD=/usr/sbin/sshd
[[ -x $SSHD ]] || die "$SSHD not found (install openssh-server)"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # read by the scripts that source this file
RUN_START=$(date +%s.%N)

# ---------------------------------------------------------------------------------------
# Process and temp-dir bookkeeping: everything started here is killed on any exit.

TMP=
PIDS=()        # long-running helpers (testbeds, delay proxy)
FG_PID=        # the bounded foreground command currently running, if any
SSHD_PID=      # the test sshd (it daemonizes; read from its pid file)

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ -n $FG_PID ]]; then
        kill -TERM "$FG_PID" 2>/dev/null
    fi
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    if [[ -n $SSHD_PID ]]; then
        kill -TERM "$SSHD_PID" 2>/dev/null
    fi
    # Give everything up to 5 s to go, then SIGKILL whatever is left.
    local deadline=$((SECONDS + 5))
    for pid in $FG_PID "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ -n $SSHD_PID ]]; then
        while kill -0 "$SSHD_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$SSHD_PID" 2>/dev/null
    fi
    if ((rc != 0)) && [[ -n $TMP && -d $TMP ]]; then
        echo "$BENCH_NAME: failed (exit $rc); last lines of the logs:" >&2
        local log
        for log in "$TMP"/*.log; do
            [[ -s $log ]] || continue
            echo "--- $log" >&2
            tail -n 15 "$log" >&2
        done
    fi
    if [[ -n $TMP && -d $TMP ]]; then
        if ((KEEP_TMP)); then
            echo "$BENCH_NAME: kept $TMP" >&2
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP=$(mktemp -d "${TMPDIR:-/tmp}/sallyport-bench-${BENCH_NAME%.sh}.XXXXXX")

# bounded SECS LOG CMD...: runs CMD with a time limit, stdin from /dev/null and output
# appended to LOG, in the background so that signals reach our traps at once; returns its
# exit status (124 on timeout). (The redirections are on the command, not on this function:
# a trap firing while the function runs would otherwise write into LOG.)
bounded() {
    local secs=$1 log=$2
    shift 2
    timeout --kill-after=5 "$secs" "$@" </dev/null >>"$log" 2>&1 &
    FG_PID=$!
    local rc=0
    wait "$FG_PID" || rc=$?
    FG_PID=
    return "$rc"
}

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.${1}f\", $2 }"; }

# Waits up to $2 seconds for file $1 to contain a line starting with $3.
wait_for_line() {
    local file=$1 secs=$2 prefix=$3 pid=${4:-}
    local deadline=$((SECONDS + secs))
    until grep -q "^$prefix" "$file" 2>/dev/null; do
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            die "process $pid exited before printing $prefix (see $file and its .log)"
        fi
        ((SECONDS < deadline)) || die "timed out after ${secs}s waiting for '$prefix' in $file"
        sleep 0.05
    done
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

sha() { sha256sum "$1" | awk '{ print $1 }'; }

# verify LABEL FILE [WANT_SHA]: dies unless FILE's SHA-256 is WANT_SHA (default: SRC_SHA).
verify() {
    local label=$1 file=$2 want=${3:-$SRC_SHA} got
    [[ -f $file ]] || die "$label: $file was not created"
    got=$(sha "$file")
    if [[ $got != "$want" ]]; then
        echo "!!! SHA-256 MISMATCH in $label: got $got, want $want ($file)" >&2
        die "$label: transferred file differs from the source"
    fi
    echo "    sha256 ok ($label)" >&2
}

# ---------------------------------------------------------------------------------------
# Build.

if ((BUILD)); then
    echo "==> building release binaries (cargo build --release --workspace --bins)" >&2
    (cd "$REPO" && cargo build --release --workspace --bins) >&2
fi
if [[ -n ${CARGO_TARGET_DIR:-} ]]; then
    TARGET_DIR=$CARGO_TARGET_DIR
else
    TARGET_DIR=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') ||
        TARGET_DIR=$REPO/target
fi
# BENCH_PROFILE=debug uses the debug binaries (e.g. on a machine too loaded for release builds).
SALLYPORT=$TARGET_DIR/${BENCH_PROFILE:-release}/sallyport
TESTBED=$TARGET_DIR/${BENCH_PROFILE:-release}/sallyport-testbed
[[ -x $SALLYPORT ]] || die "$SALLYPORT not found (build it, or drop --no-build)"
[[ -x $TESTBED ]] || die "$TESTBED not found (build it, or drop --no-build)"

# ---------------------------------------------------------------------------------------
# A throwaway sshd on 127.0.0.1.

# start_sshd [EXTRA_CONFIG]: makes a host key and a user key in $TMP (authorized in
# $TMP/authorized_keys), starts sshd with them on a free loopback port, plus the
# sshd_config lines in EXTRA_CONFIG (each ending in a newline); sets SSHD_PORT and
# SSHD_PID (killed on exit).
start_sshd() {
    local extra=${1:-} attempt
    mkdir -p /run/sshd "$TMP/remote"
    ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$TMP/hostkey" >/dev/null
    ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$TMP/userkey" >/dev/null
    cp "$TMP/userkey.pub" "$TMP/authorized_keys"
    for attempt in 1 2 3; do
        SSHD_PORT=$(free_port)
        cat >"$TMP/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SSHD_PORT
HostKey $TMP/hostkey
AuthorizedKeysFile $TMP/authorized_keys
${extra}PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $TMP/sshd.pid
Subsystem sftp internal-sftp
EOF
        # sshd binds before it daemonizes, so success here means it is listening.
        if "$SSHD" -f "$TMP/sshd_config" -E "$TMP/sshd.log"; then
            wait_for_line "$TMP/sshd.log" 10 "Server listening on 127.0.0.1 port $SSHD_PORT"
            wait_for_line "$TMP/sshd.pid" 10 ""
            SSHD_PID=$(cat "$TMP/sshd.pid")
            [[ $SSHD_PID =~ ^[0-9]+$ ]] || die "bad sshd pid file: $SSHD_PID"
            return 0
        fi
        echo "sshd failed to start on port $SSHD_PORT (attempt $attempt)" >&2
    done
    die "could not start sshd; see $TMP/sshd.log"
}

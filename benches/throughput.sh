#!/usr/bin/env bash
# Throughput and latency of scp/ssh through `sallyport proxy` against the local testbed,
# compared, in the same run on the same machine, with a direct ssh path that has the same
# added round-trip time.
#
#   benches/throughput.sh [--size-mb N] [--rtt 40ms] [--ceiling-mb N] [--latency-runs N]
#                         [--no-build] [--strict] [--keep-tmp]
#
#   --size-mb N       size of the random file, MB = 10^6 bytes (default 50; fractions allowed).
#                     Downloads through the testbed run at ~0.5 MB/s, so the default takes
#                     ~4 minutes in all; --size-mb 5 takes ~35 s.
#   --rtt D           round-trip time added on both paths, e.g. 40ms, 0, 0.1s (default 40ms)
#   --ceiling-mb N    file size for the pacing-ceiling download (default: --size-mb)
#   --latency-runs N  `ssh true` runs per path for the latency median (default 5)
#   --no-build        use the existing release binaries ($CARGO_TARGET_DIR or the
#                     workspace's target dir) instead of running cargo build first
#   --strict          exit 2 when a target (below) is missed
#   --keep-tmp        keep the temp dir (logs, keys, sshd_config) for inspection
#
# The report (Markdown) goes to stdout; progress and per-run samples go to stderr.
#
# Topology (everything on 127.0.0.1; one throwaway sshd, started by this script):
#
#   via sallyport:  scp --ProxyCommand--> sallyport proxy --ws--> testbed serve --rtt R --> sshd
#   direct:         scp --TCP--> testbed delay-proxy --rtt R --> sshd
#   ceiling:        scp --ProxyCommand--> sallyport proxy --ws--> testbed serve --rtt 0 --> sshd
#
# What is measured (MB = 10^6 bytes, s = wall-clock seconds from `date +%s.%N`):
#
#  1./2. upload and download of one N MB random file with `scp` (OpenSSH's default SFTP
#        mode), once via sallyport and once direct. Rate = file bytes / wall time of the whole
#        `scp` command, so connection setup (a few RTTs; plus StartSession for sallyport) is
#        included, as a user would experience it. Every transferred file's sha256 is checked
#        against the source; any mismatch aborts the run with an error.
#  3.    the testbed's pacing ceiling. The testbed's agent reads at most --chunk-size (1024)
#        bytes from sshd per message and sleeps --pace after sending each (as the official
#        agent sleeps 1 ms; the testbed's default is calibrated so that read + send + sleep
#        matches the official agent code's idle pace, see benches/README.md), so
#        instance->client (download) throughput stays below 1024 B / pace. The script's
#        "theoretical" line prints 1024 B / 1 ms (the agent's sleep alone), for reference only.
#        The measured ceiling is defined as: the scp download rate through sallyport from a
#        testbed with --rtt 0, i.e. when the agent's pacing is the only limit, measured
#        exactly like the download in 1. (same method; --ceiling-mb defaults to --size-mb so
#        the file is the same size too). "download vs pacing ceiling" = download rate via
#        sallyport at --rtt / that ceiling: it says how much of the agent's pacing budget
#        sallyport keeps in use when the RTT is added (ack window, flow control).
#        For information the script also prints the mean interval per 1024-byte agent
#        message, = (ceiling transfer time - setup time) / (file bytes / 1024), where the
#        setup time is the wall time of an scp of a 1-byte file on the same --rtt 0 path;
#        ssh's own framing overhead (packet headers, MACs) is counted as part of the gap.
#  4.    latency: median wall time of --latency-runs (5) runs of `ssh target true`, via
#        sallyport (testbed at --rtt) and direct (delay-proxy at --rtt).
#  5.    input hold: as many more `ssh true` runs via sallyport, each proxy logging (debug)
#        how long it held ssh's input after HandshakeComplete until the agent's first
#        output; min / median / max in ms.
#
# Exit status: 0 when every transfer completed and verified; non-zero on any error. With
# --strict, also non-zero when a target below is missed:
#   upload ratio (via sallyport / direct) >= 0.8
#   download via sallyport / pacing ceiling >= 0.9
#
# Requires: bash, cargo (unless --no-build), OpenSSH client and server (/usr/sbin/sshd),
# ssh-keygen, python3 (free ports), awk, sha256sum, timeout (coreutils). Must run as a user
# that can start sshd (root, in practice). The test sshd only listens on 127.0.0.1.

set -euo pipefail

SIZE_MB=50
RTT=40ms
CEILING_MB=
LATENCY_RUNS=5
BUILD=1
STRICT=0
KEEP_TMP=0

usage() {
    sed -n '2,/^# Topology/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    echo "throughput.sh: error: $*" >&2
    exit 1
}

while (($# > 0)); do
    case "$1" in
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --size-mb=*) SIZE_MB=${1#*=}; shift ;;
        --rtt) RTT=${2:?--rtt needs a value}; shift 2 ;;
        --rtt=*) RTT=${1#*=}; shift ;;
        --ceiling-mb) CEILING_MB=${2:?--ceiling-mb needs a value}; shift 2 ;;
        --ceiling-mb=*) CEILING_MB=${1#*=}; shift ;;
        --latency-runs) LATENCY_RUNS=${2:?--latency-runs needs a value}; shift 2 ;;
        --latency-runs=*) LATENCY_RUNS=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --strict) STRICT=1; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
CEILING_MB=${CEILING_MB:-$SIZE_MB}

is_size() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }
is_size "$SIZE_MB" || die "--size-mb must be a positive number (MB = 10^6 bytes), got '$SIZE_MB'"
is_size "$CEILING_MB" || die "--ceiling-mb must be a positive number, got '$CEILING_MB'"
[[ $LATENCY_RUNS =~ ^[1-9][0-9]*$ ]] || die "--latency-runs must be a positive integer"
[[ $RTT =~ ^(0|[0-9]+(\.[0-9]+)?(ns|us|ms|s))$ ]] || die "--rtt must look like 40ms, 0 or 0.1s"

BENCH_NAME=throughput.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# ---------------------------------------------------------------------------------------
# Test sshd.

start_sshd

# ---------------------------------------------------------------------------------------
# Testbeds and delay proxy.

# start_testbed NAME RTT: runs `sallyport-testbed serve`, fills the array TB_ENV_<NAME>
# with its KEY=VALUE lines.
start_testbed() {
    local name=$1 rtt=$2
    # --chunk-size and --pace are the defaults (the real agent's), spelled out because the
    # ceiling described at the top depends on them.
    "$TESTBED" serve --listen 127.0.0.1:0 --ssh-target "127.0.0.1:$SSHD_PORT" --rtt "$rtt" \
        --chunk-size 1024 >"$TMP/testbed-$name.env" 2>"$TMP/testbed-$name.log" &
    PIDS+=("$!")
    wait_for_line "$TMP/testbed-$name.env" 15 SALLYPORT_TESTBED_INSTANCE= "$!"
}

start_testbed rtt "$RTT"
start_testbed zero 0

"$TESTBED" delay-proxy --listen 127.0.0.1:0 --rtt "$RTT" --to "127.0.0.1:$SSHD_PORT" \
    >"$TMP/delay-proxy.env" 2>"$TMP/delay-proxy.log" &
PIDS+=("$!")
wait_for_line "$TMP/delay-proxy.env" 15 LISTEN= "$!"
DIRECT_ADDR=$(sed -n 's/^LISTEN=//p' "$TMP/delay-proxy.env")
DIRECT_PORT=${DIRECT_ADDR##*:}
DIRECT_HOST=${DIRECT_ADDR%:*}

INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed-rtt.env")
[[ -n $INSTANCE ]] || die "testbed printed no instance id"

# The environment each sallyport client runs in: the testbed's AWS_* lines, and nothing
# from the user's own AWS configuration (hermetic).
mapfile -t ENV_RTT < <(grep -E '^[A-Z_][A-Z0-9_]*=' "$TMP/testbed-rtt.env")
mapfile -t ENV_ZERO < <(grep -E '^[A-Z_][A-Z0-9_]*=' "$TMP/testbed-zero.env")
HERMETIC=(
    -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_DEFAULT_REGION
    -u AWS_WEB_IDENTITY_TOKEN_FILE -u AWS_ROLE_ARN -u AWS_CONTAINER_CREDENTIALS_FULL_URI
    -u AWS_CONTAINER_CREDENTIALS_RELATIVE_URI -u AWS_ENDPOINT_URL_SSM
    AWS_EC2_METADATA_DISABLED=true
    AWS_CONFIG_FILE="$TMP/no-such-aws-config"
    AWS_SHARED_CREDENTIALS_FILE="$TMP/no-such-aws-credentials"
    AWS_MAX_ATTEMPTS=1
)

SSH_OPTS=(
    -F /dev/null -i "$TMP/userkey"
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=30
)
PROXY_OPTS=(-o "ProxyCommand=$(printf '%q' "$SALLYPORT") proxy %h --port %p")

# argv_for PATH TOOL: sets ARGV to the command line that starts TOOL (ssh or scp) on PATH,
# and DEST to the user@host to give it. PATH is one of
#   direct  ssh -> delay-proxy (--rtt) -> sshd
#   sp      ssh -> sallyport proxy -> testbed (--rtt) -> sshd
#   zero    ssh -> sallyport proxy -> testbed (rtt 0) -> sshd
ARGV=()
DEST=
argv_for() {
    local path=$1 tool=$2
    case $path in
        direct)
            ARGV=("$tool" "${SSH_OPTS[@]}" -o "Port=$DIRECT_PORT")
            DEST=root@$DIRECT_HOST
            ;;
        sp)
            ARGV=(env "${HERMETIC[@]}" "${ENV_RTT[@]}" "$tool" "${SSH_OPTS[@]}" "${PROXY_OPTS[@]}")
            DEST=root@$INSTANCE
            ;;
        zero)
            ARGV=(env "${HERMETIC[@]}" "${ENV_ZERO[@]}" "$tool" "${SSH_OPTS[@]}" "${PROXY_OPTS[@]}")
            DEST=root@$INSTANCE
            ;;
        *) die "internal: unknown path $path" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# Payloads.

bytes_of() { awk -v mb="$1" 'BEGIN { printf "%d", mb * 1000000 }'; }
SIZE_BYTES=$(bytes_of "$SIZE_MB")
CEILING_BYTES=$(bytes_of "$CEILING_MB")
head -c "$SIZE_BYTES" /dev/urandom >"$TMP/remote/src.bin"
SRC_SHA=$(sha "$TMP/remote/src.bin")
if [[ $CEILING_BYTES == "$SIZE_BYTES" ]]; then
    CEIL_SRC=$TMP/remote/src.bin
    CEIL_SHA=$SRC_SHA
else
    CEIL_SRC=$TMP/remote/ceiling.bin
    head -c "$CEILING_BYTES" /dev/urandom >"$CEIL_SRC"
    CEIL_SHA=$(sha "$CEIL_SRC")
fi
head -c 1 /dev/urandom >"$TMP/remote/tiny.bin"
TINY_SHA=$(sha "$TMP/remote/tiny.bin")

# Time limit per transfer: 60 s plus 20 s per MB (i.e. a floor of 0.05 MB/s).
limit_for() { awk -v mb="$1" 'BEGIN { printf "%d", 60 + 20 * mb }'; }
LIMIT=$(limit_for "$SIZE_MB")
CEIL_LIMIT=$(limit_for "$CEILING_MB")

# timed_scp LIMIT PATH up|down REMOTE_FILE LOCAL_FILE: copies LOCAL_FILE to REMOTE_FILE (up)
# or REMOTE_FILE to LOCAL_FILE (down) over PATH (see argv_for); sets ELAPSED (seconds).
# (A global rather than $(...), so the scp runs in this shell and our traps can stop it.)
ELAPSED=
timed_scp() {
    local limit=$1 path=$2 dir=$3 remote=$4 local_file=$5 from to t0 t1
    argv_for "$path" scp
    if [[ $dir == up ]]; then
        from=$local_file to=$DEST:$remote
    else
        from=$DEST:$remote to=$local_file
    fi
    t0=$(now)
    bounded "$limit" "$TMP/scp.log" "${ARGV[@]}" -q "$from" "$to" ||
        die "scp $from -> $to failed or timed out (limit ${limit}s); see scp.log"
    t1=$(now)
    ELAPSED=$(calc 6 "$t1 - $t0")
    echo "    $(calc 2 "$ELAPSED") s" >&2
}


mbps() { calc 3 "$1 / 1000000 / $2"; }

echo "==> sshd 127.0.0.1:$SSHD_PORT; direct path via delay-proxy $DIRECT_ADDR; rtt $RTT;" \
    "file ${SIZE_MB} MB ($SIZE_BYTES bytes)" >&2

# 1./2. Uploads, then downloads; direct first, each time.
echo "==> upload, direct" >&2
timed_scp "$LIMIT" direct up "$TMP/remote/up-direct.bin" "$TMP/remote/src.bin"
T_UP_DIRECT=$ELAPSED
verify "upload direct" "$TMP/remote/up-direct.bin"
echo "==> upload, via sallyport" >&2
timed_scp "$LIMIT" sp up "$TMP/remote/up-sp.bin" "$TMP/remote/src.bin"
T_UP_SP=$ELAPSED
verify "upload via sallyport" "$TMP/remote/up-sp.bin"
rm -f "$TMP/remote/up-direct.bin" "$TMP/remote/up-sp.bin"

echo "==> download, direct" >&2
timed_scp "$LIMIT" direct down "$TMP/remote/src.bin" "$TMP/down-direct.bin"
T_DOWN_DIRECT=$ELAPSED
verify "download direct" "$TMP/down-direct.bin"
echo "==> download, via sallyport (agent-paced; expect ~0.5 MB/s)" >&2
timed_scp "$LIMIT" sp down "$TMP/remote/src.bin" "$TMP/down-sp.bin"
T_DOWN_SP=$ELAPSED
verify "download via sallyport" "$TMP/down-sp.bin"
rm -f "$TMP/down-direct.bin" "$TMP/down-sp.bin"

# 3. Pacing ceiling: the same download via sallyport with the testbed at --rtt 0.
echo "==> pacing ceiling: download ${CEILING_MB} MB via sallyport, testbed --rtt 0" >&2
timed_scp "$CEIL_LIMIT" zero down "$CEIL_SRC" "$TMP/down-ceil.bin"
T_CEIL=$ELAPSED
verify "ceiling download" "$TMP/down-ceil.bin" "$CEIL_SHA"
rm -f "$TMP/down-ceil.bin"
timed_scp 60 zero down "$TMP/remote/tiny.bin" "$TMP/tiny.bin"
T_SETUP0=$ELAPSED
verify "1-byte download" "$TMP/tiny.bin" "$TINY_SHA"

# 4. Latency of `ssh target true`.
# timed_ssh PATH: sets MEDIAN_MS to the median wall time of LATENCY_RUNS runs of
# `ssh DEST true` over PATH (see argv_for), in milliseconds.
MEDIAN_MS=
timed_ssh() {
    local path=$1 i t0 t1
    local samples=()
    argv_for "$path" ssh
    for ((i = 0; i < LATENCY_RUNS; i++)); do
        t0=$(now)
        bounded 60 "$TMP/ssh.log" "${ARGV[@]}" "$DEST" true ||
            die "ssh $DEST true ($path) failed or timed out; see ssh.log"
        t1=$(now)
        samples+=("$(calc 3 "($t1 - $t0) * 1000")")
    done
    echo "    $path: ${samples[*]} ms" >&2
    MEDIAN_MS=$(printf '%s\n' "${samples[@]}" | sort -g | awk '
        { v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m }')
}
echo "==> latency: $LATENCY_RUNS x ssh true, each path" >&2
timed_ssh direct
LAT_DIRECT=$MEDIAN_MS
timed_ssh sp
LAT_SP=$MEDIAN_MS

# 5. The cost of holding SSH input until the agent's first output after HandshakeComplete
# (src/proto/client.rs, InputGate): the hold each proxy logs (debug), over LATENCY_RUNS
# more `ssh true` runs via sallyport. Sets HELD_MS to "min / median / max".
HELD_MS=
held_ssh() {
    local i v
    local samples=()
    argv_for sp ssh
    for ((i = 0; i < LATENCY_RUNS; i++)); do
        : >"$TMP/held.log"
        bounded 60 "$TMP/held.log" env RUST_LOG=sallyport::proto::client=debug \
            "${ARGV[@]}" "$DEST" true || die "ssh $DEST true (held) failed; see held.log"
        v=$(grep -o 'held_ms="*[0-9.]*' "$TMP/held.log" | tail -1 | tr -dc '0-9.')
        [[ -n $v ]] || die "no 'input released' line from the proxy; see held.log"
        samples+=("$v")
    done
    echo "    input held after HandshakeComplete: ${samples[*]} ms" >&2
    HELD_MS=$(printf '%s\n' "${samples[@]}" | sort -g | awk '
        { v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%.2f / %.2f / %.2f", v[1], m, v[NR] }')
}
held_ssh

# ---------------------------------------------------------------------------------------
# Report.

UP_SP=$(mbps "$SIZE_BYTES" "$T_UP_SP")
UP_DIRECT=$(mbps "$SIZE_BYTES" "$T_UP_DIRECT")
DOWN_SP=$(mbps "$SIZE_BYTES" "$T_DOWN_SP")
DOWN_DIRECT=$(mbps "$SIZE_BYTES" "$T_DOWN_DIRECT")
CEIL=$(mbps "$CEILING_BYTES" "$T_CEIL")
GAP_MS=$(calc 3 "($T_CEIL - $T_SETUP0) * 1000 / ($CEILING_BYTES / 1024)")
STEADY_CEIL=$(calc 3 "1024 / ($GAP_MS / 1000) / 1000000")
UP_RATIO=$(calc 2 "$UP_SP / $UP_DIRECT")
DOWN_RATIO=$(calc 2 "$DOWN_SP / $DOWN_DIRECT")
LAT_RATIO=$(calc 2 "$LAT_SP / $LAT_DIRECT")
VS_CEIL=$(calc 2 "$DOWN_SP / $CEIL")
verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v >= t) ? "PASS" : "MISS" }'; }
UP_VERDICT=$(verdict "$UP_RATIO" 0.8)
CEIL_VERDICT=$(verdict "$VS_CEIL" 0.9)
WALL=$(calc 1 "$(now) - $RUN_START")

cat <<EOF

## sallyport throughput: ${SIZE_MB} MB file, rtt ${RTT}

$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs, $(ssh -V 2>&1 | cut -d, -f1), \
sallyport $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" &&
    git diff --quiet HEAD -- 2>/dev/null || echo ' (dirty tree)')
MB = 10^6 bytes; rates are file bytes / wall time of the whole scp (setup included); scp in its default SFTP mode.

| metric | via sallyport | direct (delay-proxy) | ratio (sallyport / direct) |
|---|---:|---:|---:|
| upload, MB/s | $UP_SP | $UP_DIRECT | $UP_RATIO |
| download, MB/s | $DOWN_SP | $DOWN_DIRECT | $DOWN_RATIO |
| \`ssh true\` latency, median of $LATENCY_RUNS, ms | $LAT_SP | $LAT_DIRECT | $LAT_RATIO |
| pacing ceiling (download via sallyport, testbed rtt 0, ${CEILING_MB} MB), MB/s | $CEIL | n/a | n/a |

- upload ratio (target >= 0.8): $UP_RATIO $UP_VERDICT
- download vs pacing ceiling (target >= 0.9): $VS_CEIL $CEIL_VERDICT ($DOWN_SP / $CEIL MB/s)
- pacing reference: theoretical 1024 B / 1 ms = 1.024 MB/s; measured mean interval per 1024 B \
agent message at rtt 0 = $GAP_MS ms (setup of $(calc 2 "$T_SETUP0") s excluded), i.e. a steady \
$STEADY_CEIL MB/s
- times (s): upload $(calc 2 "$T_UP_SP") / $(calc 2 "$T_UP_DIRECT"), download \
$(calc 2 "$T_DOWN_SP") / $(calc 2 "$T_DOWN_DIRECT") (via sallyport / direct), ceiling $(calc 2 "$T_CEIL")
- SSH input held after HandshakeComplete until the agent's first output (sshd's banner), \
min / median / max of $LATENCY_RUNS, ms: $HELD_MS (part of the latency above)
- all transfers verified by SHA-256; benchmark wall time ${WALL} s
EOF

if ((STRICT)) && [[ $UP_VERDICT != PASS || $CEIL_VERDICT != PASS ]]; then
    echo "throughput.sh: a target was missed (--strict)" >&2
    exit 2
fi

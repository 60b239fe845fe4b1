#!/usr/bin/env bash
# `sallyport scp` (its own SSH client: SFTP over russh over the Session Manager data
# channel, key pushed through EC2 Instance Connect) compared, in one run on the same
# machine and the same emulated link, with OpenSSH `scp` through `sallyport proxy` and with
# OpenSSH `scp` direct over a TCP delay proxy with the same round-trip time.
#
#   benches/scp.sh [--size-mb N] [--rtt 40ms] [--latency-runs N] [--no-build] [--keep-tmp]
#
#   --size-mb N       size of the random file, MB = 10^6 bytes (default 20; fractions allowed).
#                     Downloads through the testbed are paced by its agent (~0.46 MB/s), so
#                     each of the two testbed downloads takes ~45 s at 20 MB and the default
#                     run ~2.5 minutes in all; --size-mb 2 takes ~30 s.
#   --rtt D           round-trip time added on every path, e.g. 40ms, 0, 0.1s (default 40ms)
#   --latency-runs N  `ssh true` runs per path for the latency median (default 5)
#   --no-build        use the existing release binaries ($CARGO_TARGET_DIR or the
#                     workspace's target dir) instead of running cargo build first
#   --keep-tmp        keep the temp dir (logs, keys, sshd_config) for inspection
#
# The report (Markdown) goes to stdout; progress and per-run samples go to stderr.
#
# Topology (everything on 127.0.0.1; one throwaway sshd and one testbed, started here):
#
#   sallyport scp:  sallyport scp --SSM data channel (ws)--> testbed serve --rtt R --> sshd
#                   (russh + SFTP in-process; an ephemeral key is pushed through the
#                   testbed's SendSSHPublicKey and sshd takes it via AuthorizedKeysCommand)
#   via proxy:      scp --ProxyCommand--> sallyport proxy --ws--> testbed serve --rtt R --> sshd
#                   (the same testbed; the script's user key, from sshd's authorized_keys)
#   direct:         scp --TCP--> testbed delay-proxy --rtt R --> sshd
#
# sshd checks both the authorized_keys file (the script's key, for OpenSSH) and the
# AuthorizedKeysCommand (`sallyport-testbed authorized-keys`, for keys pushed by sallyport),
# as an Instance Connect AMI does: the file first, the command only for a key not in it.
#
# What is measured (MB = 10^6 bytes, s = wall-clock seconds from `date +%s.%N`):
#
#  1./2. upload and download of one N MB random file on each of the three paths, one run
#        each (direct, via proxy, sallyport scp, in that order). Rate = file bytes / wall
#        time of the whole command, so connection setup (StartSession, the key push,
#        SSH handshake, SFTP start) is included, as a user would experience it. OpenSSH
#        `scp` runs in its default SFTP mode. No -q anywhere; stderr goes to a log file (not
#        a terminal), so there are no progress bars. Every transferred file's sha256 is
#        checked against the source; any mismatch aborts the run with an error.
#  3.    setup cost: wall time of copying a 1-byte file (download) on each path, once.
#  4.    latency: median wall time of --latency-runs (5) runs of `sallyport ssh
#        root@i-… true`, `ssh root@i-… true` via `sallyport proxy`, and `ssh true` direct.
#
# Downloads through the testbed (both sallyport paths) are limited by its agent's pacing
# (1 KiB per message, then 1 ms, like the real agent), ~0.46 MB/s measured, while the
# direct path has no such limit: "sallyport scp / direct" for downloads mostly measures
# that pacing. "sallyport scp / via proxy" compares the two clients over the same link.
#
# Exit status: 0 when every transfer completed and verified; non-zero on any error.
#
# Requires: bash, cargo (unless --no-build), OpenSSH client and server (/usr/sbin/sshd),
# ssh-keygen, python3 (free ports), awk, sha256sum, timeout (coreutils). Must run as a user
# that can start sshd (root, in practice). The test sshd only listens on 127.0.0.1.

set -euo pipefail

SIZE_MB=20
RTT=40ms
LATENCY_RUNS=5
BUILD=1
KEEP_TMP=0

usage() {
    sed -n '2,/^# Topology/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    echo "scp.sh: error: $*" >&2
    exit 1
}

while (($# > 0)); do
    case "$1" in
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --size-mb=*) SIZE_MB=${1#*=}; shift ;;
        --rtt) RTT=${2:?--rtt needs a value}; shift 2 ;;
        --rtt=*) RTT=${1#*=}; shift ;;
        --latency-runs) LATENCY_RUNS=${2:?--latency-runs needs a value}; shift 2 ;;
        --latency-runs=*) LATENCY_RUNS=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_size() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }
is_size "$SIZE_MB" || die "--size-mb must be a positive number (MB = 10^6 bytes), got '$SIZE_MB'"
[[ $LATENCY_RUNS =~ ^[1-9][0-9]*$ ]] || die "--latency-runs must be a positive integer"
[[ $RTT =~ ^(0|[0-9]+(\.[0-9]+)?(ns|us|ms|s))$ ]] || die "--rtt must look like 40ms, 0 or 0.1s"

BENCH_NAME=scp.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$SALLYPORT" scp --help >/dev/null 2>&1 ||
    die "$SALLYPORT has no 'scp' subcommand (stale build? drop --no-build)"
[[ $TESTBED == *[[:space:]\'\"]* || $TMP == *[[:space:]\'\"]* ]] &&
    die "the testbed binary and the temp dir must have paths without spaces or quotes (sshd_config)"

# ---------------------------------------------------------------------------------------
# Test sshd: the script's own key in authorized_keys (OpenSSH paths), and keys pushed
# through the testbed via AuthorizedKeysCommand (sallyport scp/ssh).

mkdir -p "$TMP/home" "$TMP/eic-state"
chmod 700 "$TMP/eic-state"
# Written again with --instance once the testbed has said its instance ID; sshd reads it
# (through /bin/sh, so its ownership checks apply to /bin/sh only) for every key offered.
write_eic_script() {
    local instance=
    [[ -n ${1:-} ]] && instance=" --instance '$1'"
    {
        echo '#!/bin/sh'
        echo '# EC2 Instance Connect stand-in (sallyport-testbed), as testbed/src/instance/sshd.rs writes it'
        printf "exec '%s' authorized-keys --state '%s'%s --clock-offset=0 -- \"\$@\"\n" \
            "$TESTBED" "$TMP/eic-state" "$instance"
    } >"$TMP/eic-keys.sh.new"
    mv "$TMP/eic-keys.sh.new" "$TMP/eic-keys.sh"
}
write_eic_script ""

# Both the script's key (authorized_keys) and keys pushed through Instance Connect.
start_sshd "AuthorizedKeysCommand /bin/sh $TMP/eic-keys.sh %u %f
AuthorizedKeysCommandUser root
"

# ---------------------------------------------------------------------------------------
# Testbed and delay proxy.

# --chunk-size and --pace are the defaults (the real agent's), spelled out because the
# download rates of both testbed paths depend on them.
"$TESTBED" serve --listen 127.0.0.1:0 --ssh-target "127.0.0.1:$SSHD_PORT" --rtt "$RTT" \
    --chunk-size 1024 --eic-state "$TMP/eic-state" \
    >"$TMP/testbed.env" 2>"$TMP/testbed.log" &
PIDS+=("$!")
wait_for_line "$TMP/testbed.env" 15 SALLYPORT_TESTBED_EIC_STATE= "$!"

"$TESTBED" delay-proxy --listen 127.0.0.1:0 --rtt "$RTT" --to "127.0.0.1:$SSHD_PORT" \
    >"$TMP/delay-proxy.env" 2>"$TMP/delay-proxy.log" &
PIDS+=("$!")
wait_for_line "$TMP/delay-proxy.env" 15 LISTEN= "$!"
DIRECT_ADDR=$(sed -n 's/^LISTEN=//p' "$TMP/delay-proxy.env")
DIRECT_PORT=${DIRECT_ADDR##*:}
DIRECT_HOST=${DIRECT_ADDR%:*}

INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed.env")
[[ $INSTANCE =~ ^[a-z]+-[0-9a-f]+$ ]] || die "testbed printed no usable instance id: '$INSTANCE'"
write_eic_script "$INSTANCE"

# The environment every client runs in: the testbed's AWS_* lines, nothing from the user's
# own AWS, sallyport or ssh configuration (hermetic: HOME is a fresh temp dir, no agent).
mapfile -t ENV_TB < <(grep -E '^AWS_[A-Z0-9_]*=' "$TMP/testbed.env")
HERMETIC=(
    -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_DEFAULT_REGION
    -u AWS_WEB_IDENTITY_TOKEN_FILE -u AWS_ROLE_ARN -u AWS_CONTAINER_CREDENTIALS_FULL_URI
    -u AWS_CONTAINER_CREDENTIALS_RELATIVE_URI -u AWS_ENDPOINT_URL_SSM
    -u AWS_ENDPOINT_URL_EC2_INSTANCE_CONNECT -u SALLYPORT_CONFIG -u XDG_CONFIG_HOME
    -u SSH_AUTH_SOCK -u RUST_LOG
    HOME="$TMP/home"
    AWS_EC2_METADATA_DISABLED=true
    AWS_CONFIG_FILE="$TMP/no-such-aws-config"
    AWS_SHARED_CREDENTIALS_FILE="$TMP/no-such-aws-credentials"
    AWS_MAX_ATTEMPTS=1
)

SSH_OPTS=(
    -F /dev/null -i "$TMP/userkey" -o IdentitiesOnly=yes
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=30
)
PROXY_OPTS=(-o "ProxyCommand=$(printf '%q' "$SALLYPORT") proxy %h --port %p")
# sallyport's client records the host key under the instance ID here, on first use.
SP_OPTS=(--known-hosts "$TMP/known_hosts")

# argv_for PATH TOOL: sets ARGV to the command line that starts TOOL (ssh or scp) on PATH,
# and DEST to the user@host to give it. PATH is one of
#   direct  OpenSSH -> delay-proxy (--rtt) -> sshd
#   proxy   OpenSSH -> sallyport proxy -> testbed (--rtt) -> sshd
#   sp      sallyport ssh/scp -> testbed (--rtt) -> sshd
ARGV=()
DEST=
argv_for() {
    local path=$1 tool=$2
    case $path in
        direct)
            ARGV=(env "${HERMETIC[@]}" "$tool" "${SSH_OPTS[@]}" -o "Port=$DIRECT_PORT")
            DEST=root@$DIRECT_HOST
            ;;
        proxy)
            ARGV=(env "${HERMETIC[@]}" "${ENV_TB[@]}" "$tool" "${SSH_OPTS[@]}" "${PROXY_OPTS[@]}")
            DEST=root@$INSTANCE
            ;;
        sp)
            ARGV=(env "${HERMETIC[@]}" "${ENV_TB[@]}" "$SALLYPORT" "$tool" "${SP_OPTS[@]}")
            DEST=root@$INSTANCE
            ;;
        *) die "internal: unknown path $path" ;;
    esac
}

declare -A PATH_NAME=(
    [direct]="OpenSSH scp direct (delay-proxy)"
    [proxy]="OpenSSH scp via sallyport proxy"
    [sp]="sallyport scp"
)

# ---------------------------------------------------------------------------------------
# Payloads.

SIZE_BYTES=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", mb * 1000000 }')
head -c "$SIZE_BYTES" /dev/urandom >"$TMP/remote/src.bin"
SRC_SHA=$(sha "$TMP/remote/src.bin")
head -c 1 /dev/urandom >"$TMP/remote/tiny.bin"
TINY_SHA=$(sha "$TMP/remote/tiny.bin")

# Time limit per transfer: 60 s plus 20 s per MB (i.e. a floor of 0.05 MB/s).
LIMIT=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", 60 + 20 * mb }')

# timed_scp LIMIT PATH up|down REMOTE_FILE LOCAL_FILE: copies LOCAL_FILE to REMOTE_FILE (up)
# or REMOTE_FILE to LOCAL_FILE (down) over PATH (see argv_for); sets ELAPSED (seconds).
# (A global rather than $(...), so the command runs in this shell and our traps can stop it.)
ELAPSED=
timed_scp() {
    local limit=$1 path=$2 dir=$3 remote=$4 local_file=$5 from to t0 t1 log
    argv_for "$path" scp
    if [[ $dir == up ]]; then
        from=$local_file to=$DEST:$remote
    else
        from=$DEST:$remote to=$local_file
    fi
    log=$TMP/scp-$path.log
    echo "--- $(date -u +%H:%M:%S) $dir $from -> $to" >>"$log"
    t0=$(now)
    bounded "$limit" "$log" "${ARGV[@]}" "$from" "$to" ||
        die "${PATH_NAME[$path]}: $from -> $to failed or timed out (limit ${limit}s); see $(basename "$log")"
    t1=$(now)
    ELAPSED=$(calc 6 "$t1 - $t0")
    echo "    $(calc 2 "$ELAPSED") s" >&2
}

mbps() { calc 3 "$1 / 1000000 / $2"; }

echo "==> sshd 127.0.0.1:$SSHD_PORT; testbed instance $INSTANCE; direct path via" \
    "delay-proxy $DIRECT_ADDR; rtt $RTT; file ${SIZE_MB} MB ($SIZE_BYTES bytes)" >&2

PATHS=(direct proxy sp)
declare -A T_UP T_DOWN T_TINY LAT

# 1. Uploads.
for p in "${PATHS[@]}"; do
    echo "==> upload, ${PATH_NAME[$p]}" >&2
    timed_scp "$LIMIT" "$p" up "$TMP/remote/up-$p.bin" "$TMP/remote/src.bin"
    T_UP[$p]=$ELAPSED
    verify "upload, ${PATH_NAME[$p]}" "$TMP/remote/up-$p.bin"
    rm -f "$TMP/remote/up-$p.bin"
done

# 2. Downloads.
for p in "${PATHS[@]}"; do
    note=
    [[ $p != direct ]] && note=" (agent-paced; expect ~0.46 MB/s)"
    echo "==> download, ${PATH_NAME[$p]}$note" >&2
    timed_scp "$LIMIT" "$p" down "$TMP/remote/src.bin" "$TMP/down-$p.bin"
    T_DOWN[$p]=$ELAPSED
    verify "download, ${PATH_NAME[$p]}" "$TMP/down-$p.bin"
    rm -f "$TMP/down-$p.bin"
done

# 3. Setup cost: a 1-byte download.
for p in "${PATHS[@]}"; do
    echo "==> 1-byte download, ${PATH_NAME[$p]}" >&2
    timed_scp 60 "$p" down "$TMP/remote/tiny.bin" "$TMP/tiny-$p.bin"
    T_TINY[$p]=$ELAPSED
    verify "1-byte download, ${PATH_NAME[$p]}" "$TMP/tiny-$p.bin" "$TINY_SHA"
done

# 4. Latency of `ssh target true` / `sallyport ssh target true`.
# timed_ssh PATH: sets MEDIAN_MS to the median wall time of LATENCY_RUNS runs of
# `ssh DEST true` over PATH (see argv_for), in milliseconds.
MEDIAN_MS=
timed_ssh() {
    local path=$1 i t0 t1 log=$TMP/ssh-$1.log
    local samples=()
    argv_for "$path" ssh
    for ((i = 0; i < LATENCY_RUNS; i++)); do
        t0=$(now)
        bounded 60 "$log" "${ARGV[@]}" "$DEST" true ||
            die "$path: ssh $DEST true failed or timed out; see $(basename "$log")"
        t1=$(now)
        samples+=("$(calc 3 "($t1 - $t0) * 1000")")
    done
    echo "    $path: ${samples[*]} ms" >&2
    MEDIAN_MS=$(printf '%s\n' "${samples[@]}" | sort -g | awk '
        { v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f", m }')
}
echo "==> latency: $LATENCY_RUNS x ssh true, each path" >&2
for p in "${PATHS[@]}"; do
    timed_ssh "$p"
    LAT[$p]=$MEDIAN_MS
done

# ---------------------------------------------------------------------------------------
# Report.

declare -A UP DOWN
for p in "${PATHS[@]}"; do
    UP[$p]=$(mbps "$SIZE_BYTES" "${T_UP[$p]}")
    DOWN[$p]=$(mbps "$SIZE_BYTES" "${T_DOWN[$p]}")
done
ratio() { calc 2 "$1 / $2"; }
# steady BYTES TOTAL SETUP: MB/s with the 1-byte copy's time taken off; n/a when that
# leaves less than 10% of the total (too small a file to tell).
steady() {
    awk -v b="$1" -v t="$2" -v s="$3" \
        'BEGIN { if (t - s > 0.1 * t) printf "%.3f", b / 1e6 / (t - s); else print "n/a" }'
}
WALL=$(calc 1 "$(now) - $RUN_START")

cat <<EOF

## sallyport scp vs OpenSSH scp: ${SIZE_MB} MB file, rtt ${RTT}

$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs, $(ssh -V 2>&1 | cut -d, -f1), \
sallyport $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" &&
    git diff --quiet HEAD -- 2>/dev/null || echo ' (dirty tree)')
MB = 10^6 bytes; rates are file bytes / wall time of the whole command (setup included); OpenSSH scp in its default SFTP mode.
Rate ratios > 1: sallyport scp is faster; time ratios > 1: sallyport scp is slower.

| metric | sallyport scp | OpenSSH scp via \`sallyport proxy\` | OpenSSH scp direct (delay-proxy) | sallyport scp / via proxy | sallyport scp / direct |
|---|---:|---:|---:|---:|---:|
| upload, MB/s | ${UP[sp]} | ${UP[proxy]} | ${UP[direct]} | $(ratio "${UP[sp]}" "${UP[proxy]}") | $(ratio "${UP[sp]}" "${UP[direct]}") |
| download, MB/s | ${DOWN[sp]} | ${DOWN[proxy]} | ${DOWN[direct]} | $(ratio "${DOWN[sp]}" "${DOWN[proxy]}") | $(ratio "${DOWN[sp]}" "${DOWN[direct]}") |
| 1-byte download (setup), s | $(calc 2 "${T_TINY[sp]}") | $(calc 2 "${T_TINY[proxy]}") | $(calc 2 "${T_TINY[direct]}") | $(ratio "${T_TINY[sp]}" "${T_TINY[proxy]}") | $(ratio "${T_TINY[sp]}" "${T_TINY[direct]}") |
| \`ssh true\` latency, median of $LATENCY_RUNS, ms | ${LAT[sp]} | ${LAT[proxy]} | ${LAT[direct]} | $(ratio "${LAT[sp]}" "${LAT[proxy]}") | $(ratio "${LAT[sp]}" "${LAT[direct]}") |

- latency row: \`sallyport ssh root@$INSTANCE true\` / \`ssh\` with \`ProxyCommand sallyport proxy\` / \`ssh\` direct.
- times (s), sallyport scp / via proxy / direct: upload $(calc 2 "${T_UP[sp]}") / \
$(calc 2 "${T_UP[proxy]}") / $(calc 2 "${T_UP[direct]}"), download $(calc 2 "${T_DOWN[sp]}") / \
$(calc 2 "${T_DOWN[proxy]}") / $(calc 2 "${T_DOWN[direct]}")
- MB/s without setup (1-byte download time subtracted), sallyport scp / via proxy / direct: \
upload $(steady "$SIZE_BYTES" "${T_UP[sp]}" "${T_TINY[sp]}") / \
$(steady "$SIZE_BYTES" "${T_UP[proxy]}" "${T_TINY[proxy]}") / \
$(steady "$SIZE_BYTES" "${T_UP[direct]}" "${T_TINY[direct]}"), download \
$(steady "$SIZE_BYTES" "${T_DOWN[sp]}" "${T_TINY[sp]}") / \
$(steady "$SIZE_BYTES" "${T_DOWN[proxy]}" "${T_TINY[proxy]}") / \
$(steady "$SIZE_BYTES" "${T_DOWN[direct]}" "${T_TINY[direct]}")
- downloads on both testbed paths are capped by the testbed agent's pacing (1 KiB per message + 1 ms); the direct path has no agent
- all transfers verified by SHA-256; benchmark wall time ${WALL} s
EOF

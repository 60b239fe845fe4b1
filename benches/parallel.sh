#!/usr/bin/env bash
# Striped `sallyport scp -j N`: download and upload rates at several N, and SSH
# compression (`sallyport scp -C`, OpenSSH `Compression yes` through `sallyport proxy`) on
# text and on random data. A benchmark, not a test: it reports; it fails only when a
# transfer fails or does not verify.
#
#   benches/parallel.sh [--size 50MB | --size-mb N] [--jobs "1 2 4 8"] [--runs N] [--rtt 40ms]
#                       [--compress-mb N] [--tree-files N] [--via ssm|eice] [--no-build]
#                       [--keep-tmp]
#
#   --size S          size of the random file: NMB (10^6 bytes) or NMiB (2^20 bytes), e.g.
#                     3MiB, 12MiB, 50MB (default 50MB)
#   --size-mb N       the same in MB = 10^6 bytes (fractions allowed)
#   --jobs "N ..."    the -j values (default "1 2 4 8")
#   --runs N          transfers per direction and -j value (default 3)
#   --rtt D           round-trip time the testbed's relay adds (default 40ms)
#   --compress-mb N   size of the text and random files of the compression rows (default 5;
#                     0 leaves those rows out)
#   --tree-files N    also time `scp -r` downloads of a tree of N small files (1-4 KB, 8 to
#                     a directory, 8 directories to a parent, as in a source tree) at each
#                     -j value (default 0: no tree rows)
#   --via W           the way to the instance: ssm (Session Manager, agent-paced; the
#                     default) or eice (an EC2 Instance Connect Endpoint tunnel, the
#                     testbed's `serve --eice`: no pacing, only --rtt)
#   --no-build        use the existing release binaries ($CARGO_TARGET_DIR or the
#                     workspace's target dir) instead of running cargo build first
#   --keep-tmp        keep the temp dir (logs, keys, sshd_config) for inspection
#
# The default run takes long: downloads are paced by the testbed's agent as the official agent
# code paces them on an idle machine (0.55-0.65 MB/s per session), so 50 MB at -j 1 takes ~80-90 s, and there are 3 runs per row.
#
# Topology (everything on 127.0.0.1; one throwaway sshd and one testbed, started here):
#
#   sallyport scp -j N --SSM data channels (ws), N sessions--> testbed serve --rtt R --> sshd
#   scp -o Compression=.. --ProxyCommand--> sallyport proxy --ws--> testbed --> sshd
#
# What is measured (MB = 10^6 bytes, s = wall-clock seconds of the whole command, setup
# of every session included):
#   - rate = file bytes / time, for `sallyport scp -j N` of one random file, downloads then
#     uploads, --runs times each; min / median / max, and the median's ratio to -j 1's.
#     Goals at --rtt 40ms: 12 MiB at -j 8 >= 6x -j 1; 3 MiB at -j 4 >= 2.5x; 50 MB at
#     -j 8 >= 7.2x. The ratios tolerate a loaded machine better than the rates do.
#   - compression, one run each, -j 1: download of a text file (a repetitive log) and of a
#     random file, with `sallyport scp` with and without -C, and with OpenSSH scp through
#     `sallyport proxy` with -o Compression=no / yes.
#   - with --tree-files N: seconds for `sallyport scp -r -j J` to download the tree of small
#     files, where round trips per file and per directory count, not the pace.
# Every transferred file's SHA-256 is checked against the source (the tree: `diff -r`).
#
# Requires: bash, cargo (unless --no-build), OpenSSH client and server (/usr/sbin/sshd),
# ssh-keygen, python3, awk, sha256sum, timeout. Must run as root (it starts sshd).

set -euo pipefail

SIZE_MB=50
SIZE_LABEL=
JOBS="1 2 4 8"
RUNS=3
RTT=40ms
COMPRESS_MB=5
TREE_FILES=0
VIA=ssm
BUILD=1
KEEP_TMP=0

usage() {
    sed -n '2,/^# The default run/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    echo "parallel.sh: error: $*" >&2
    exit 1
}

while (($# > 0)); do
    case "$1" in
        --size) SIZE_LABEL=${2:?--size needs a value}; shift 2 ;;
        --size=*) SIZE_LABEL=${1#*=}; shift ;;
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --size-mb=*) SIZE_MB=${1#*=}; shift ;;
        --jobs) JOBS=${2:?--jobs needs a value}; shift 2 ;;
        --jobs=*) JOBS=${1#*=}; shift ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --rtt) RTT=${2:?--rtt needs a value}; shift 2 ;;
        --rtt=*) RTT=${1#*=}; shift ;;
        --compress-mb) COMPRESS_MB=${2:?--compress-mb needs a value}; shift 2 ;;
        --compress-mb=*) COMPRESS_MB=${1#*=}; shift ;;
        --tree-files) TREE_FILES=${2:?--tree-files needs a value}; shift 2 ;;
        --tree-files=*) TREE_FILES=${1#*=}; shift ;;
        --via) VIA=${2:?--via needs a value}; shift 2 ;;
        --via=*) VIA=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_size() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }
if [[ -n $SIZE_LABEL ]]; then
    [[ $SIZE_LABEL =~ ^([0-9]+(\.[0-9]+)?)(MB|MiB)$ ]] || die "--size must look like 50MB or 12MiB, got '$SIZE_LABEL'"
    SIZE_MB=${BASH_REMATCH[1]}
    [[ ${BASH_REMATCH[3]} == MiB ]] && SIZE_MB=$(awk -v m="$SIZE_MB" 'BEGIN { printf "%.6f", m * 1048576 / 1e6 }')
else
    SIZE_LABEL="${SIZE_MB} MB"
fi
is_size "$SIZE_MB" || die "--size-mb must be a positive number (MB = 10^6 bytes), got '$SIZE_MB'"
[[ $COMPRESS_MB == 0 ]] || is_size "$COMPRESS_MB" || die "--compress-mb must be a number (0: none)"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] && ((RUNS <= 20)) || die "--runs must be an integer from 1 to 20"
[[ $TREE_FILES =~ ^[0-9]+$ ]] && ((TREE_FILES <= 20000)) || die "--tree-files must be an integer from 0 to 20000"
read -r -a JOB_LIST <<<"$JOBS"
((${#JOB_LIST[@]} > 0)) || die "--jobs needs at least one value"
for j in "${JOB_LIST[@]}"; do
    [[ $j =~ ^[0-9]+$ ]] && ((j >= 1 && j <= 16)) || die "--jobs: '$j' is not 1 to 16"
done
[[ $RTT =~ ^(0|[0-9]+(\.[0-9]+)?(ns|us|ms|s))$ ]] || die "--rtt must look like 40ms, 0 or 0.1s"
[[ $VIA == ssm || $VIA == eice ]] || die "--via must be ssm or eice, got '$VIA'"
EICE_ARGS=()
[[ $VIA == eice ]] && EICE_ARGS=(--eice)

BENCH_NAME=parallel.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$SALLYPORT" scp --help 2>/dev/null | grep -q -- --parallel ||
    die "$SALLYPORT has no 'scp --parallel' (stale build? drop --no-build)"
[[ $TESTBED == *[[:space:]\'\"]* || $TMP == *[[:space:]\'\"]* ]] &&
    die "the testbed binary and the temp dir must have paths without spaces or quotes (sshd_config)"

# ---------------------------------------------------------------------------------------
# sshd (the script's key for OpenSSH; pushed keys through AuthorizedKeysCommand) and testbed.

mkdir -p "$TMP/home" "$TMP/eic-state" "$TMP/local"
chmod 700 "$TMP/eic-state"
write_eic_script() {
    local instance=
    [[ -n ${1:-} ]] && instance=" --instance '$1'"
    {
        echo '#!/bin/sh'
        printf "exec '%s' authorized-keys --state '%s'%s --clock-offset=0 -- \"\$@\"\n" \
            "$TESTBED" "$TMP/eic-state" "$instance"
    } >"$TMP/eic-keys.sh.new"
    mv "$TMP/eic-keys.sh.new" "$TMP/eic-keys.sh"
}
write_eic_script ""
start_sshd "AuthorizedKeysCommand /bin/sh $TMP/eic-keys.sh %u %f
AuthorizedKeysCommandUser root
MaxStartups 100
"

"$TESTBED" serve --listen 127.0.0.1:0 --ssh-target "127.0.0.1:$SSHD_PORT" --rtt "$RTT" \
    --chunk-size 1024 --eic-state "$TMP/eic-state" "${EICE_ARGS[@]}" \
    >"$TMP/testbed.env" 2>"$TMP/testbed.log" &
PIDS+=("$!")
wait_for_line "$TMP/testbed.env" 15 SALLYPORT_TESTBED_EIC_STATE= "$!"
INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed.env")
[[ $INSTANCE =~ ^[a-z]+-[0-9a-f]+$ ]] || die "testbed printed no usable instance id: '$INSTANCE'"
write_eic_script "$INSTANCE"

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
PROXY_OPTS=(-o "ProxyCommand=$(printf '%q' "$SALLYPORT") proxy %h --port %p --via $VIA")
SP=(env "${HERMETIC[@]}" "${ENV_TB[@]}" "$SALLYPORT" scp --via "$VIA" --known-hosts "$TMP/known_hosts")
OSSH=(env "${HERMETIC[@]}" "${ENV_TB[@]}" scp "${SSH_OPTS[@]}" "${PROXY_OPTS[@]}")

# timed LIMIT CMD...: runs CMD bounded; sets ELAPSED (seconds).
ELAPSED=
timed() {
    local limit=$1 t0 t1
    shift
    echo "--- $(date -u +%H:%M:%S) ${*: -2}" >>"$TMP/scp.log"
    t0=$(now)
    bounded "$limit" "$TMP/scp.log" "$@" || die "transfer failed or timed out (limit ${limit}s); see scp.log"
    t1=$(now)
    ELAPSED=$(calc 6 "$t1 - $t0")
}

DIGITS=3
stats3() {
    printf '%s\n' "$@" | sort -g | awk -v d="$DIGITS" '
        { v[NR] = $1 }
        END {
            m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            f = "%." d "f"
            printf f " / " f " / " f, v[1], m, v[NR]
        }'
}
median() {
    printf '%s\n' "$@" | sort -g | awk -v d="$DIGITS" '
        { v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%." d "f", m }'
}

# ---------------------------------------------------------------------------------------
# Striping.

SIZE_BYTES=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", mb * 1000000 }')
head -c "$SIZE_BYTES" /dev/urandom >"$TMP/remote/src.bin"
SRC_SHA=$(sha "$TMP/remote/src.bin")
cp "$TMP/remote/src.bin" "$TMP/local/src.bin"
# 60 s plus 10 s per MB (a floor of 0.1 MB/s, a fifth of one paced session).
LIMIT=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", 60 + 10 * mb }')
echo "==> sshd 127.0.0.1:$SSHD_PORT; rtt $RTT; ${SIZE_LABEL} (${SIZE_BYTES} bytes); -j ${JOBS}; $RUNS runs" >&2

declare -A CELL MEDIAN
for dir in down up; do
    for j in "${JOB_LIST[@]}"; do
        rates=()
        for ((i = 1; i <= RUNS; i++)); do
            if [[ $dir == down ]]; then
                out=$TMP/local/down-$j-$i.bin
                timed "$LIMIT" "${SP[@]}" -j "$j" "root@$INSTANCE:$TMP/remote/src.bin" "$out"
            else
                out=$TMP/remote/up-$j-$i.bin
                timed "$LIMIT" "${SP[@]}" -j "$j" "$TMP/local/src.bin" "root@$INSTANCE:$out"
            fi
            verify "$dir -j $j run $i" "$out"
            rm -f "$out"
            rate=$(calc 6 "$SIZE_BYTES / $ELAPSED / 1e6")
            rates+=("$rate")
            echo "    $dir -j $j run $i: $(calc 2 "$ELAPSED") s, $(calc 3 "$rate") MB/s" >&2
        done
        CELL[$dir:$j]=$(stats3 "${rates[@]}")
        MEDIAN[$dir:$j]=$(median "${rates[@]}")
    done
done

# ---------------------------------------------------------------------------------------
# Compression (one run each, -j 1).

declare -A CRATE
if [[ $COMPRESS_MB != 0 ]]; then
    CBYTES=$(awk -v mb="$COMPRESS_MB" 'BEGIN { printf "%d", mb * 1000000 }')
    # A log-like text: varying numbers in a fixed format (compresses about 5-10x).
    python3 - "$TMP/remote/text.txt" "$CBYTES" <<'EOF'
import random, sys
random.seed(13)
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    size = 0
    i = 0
    while size < n:
        line = (f"2026-11-30T20:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 1000:03d}Z INFO "
                f"request id={random.getrandbits(32):08x} path=/api/v1/items/{random.randint(1, 9999)} "
                f"status={random.choice([200, 200, 200, 404, 500])} bytes={random.randint(100, 99999)}\n")
        f.write(line)
        size += len(line)
        i += 1
EOF
    truncate -s "$CBYTES" "$TMP/remote/text.txt"
    head -c "$CBYTES" /dev/urandom >"$TMP/remote/random.bin"
    CLIMIT=$(awk -v mb="$COMPRESS_MB" 'BEGIN { printf "%d", 60 + 10 * mb }')
    for kind in text.txt random.bin; do
        want=$(sha "$TMP/remote/$kind")
        for how in sp sp-C ossh ossh-C; do
            out=$TMP/local/c-$how-$kind
            case $how in
                sp) timed "$CLIMIT" "${SP[@]}" -j 1 "root@$INSTANCE:$TMP/remote/$kind" "$out" ;;
                sp-C) timed "$CLIMIT" "${SP[@]}" -j 1 -C "root@$INSTANCE:$TMP/remote/$kind" "$out" ;;
                ossh) timed "$CLIMIT" "${OSSH[@]}" -o Compression=no "root@$INSTANCE:$TMP/remote/$kind" "$out" ;;
                ossh-C) timed "$CLIMIT" "${OSSH[@]}" -o Compression=yes "root@$INSTANCE:$TMP/remote/$kind" "$out" ;;
            esac
            verify "compression $how $kind" "$out" "$want"
            rm -f "$out"
            CRATE[$how:$kind]=$(calc 3 "$CBYTES / $ELAPSED / 1e6")
            echo "    $how $kind: $(calc 2 "$ELAPSED") s, ${CRATE[$how:$kind]} MB/s" >&2
        done
    done
fi

declare -A TCELL TMEDIAN
if ((TREE_FILES > 0)); then
    for ((f = 0; f < TREE_FILES; f++)); do
        d=$TMP/remote/tree/d$((f / 64))/e$((f / 8 % 8))
        [[ -d $d ]] || mkdir -p "$d"
        head -c $((1000 + (f * 37) % 3000)) /dev/urandom >"$d/f$f.bin"
    done
    TREE_DIRS=$(find "$TMP/remote/tree" -type d | wc -l)
    TLIMIT=$((60 + TREE_FILES))
    for j in "${JOB_LIST[@]}"; do
        secs=()
        for ((i = 1; i <= RUNS; i++)); do
            out=$TMP/local/tree-$j-$i
            mkdir -p "$out"
            timed "$TLIMIT" "${SP[@]}" -r -j "$j" "root@$INSTANCE:$TMP/remote/tree" "$out/"
            diff -r -q "$TMP/remote/tree" "$out/tree" >/dev/null || die "tree -j $j run $i differs from the source"
            rm -rf "$out"
            secs+=("$ELAPSED")
            echo "    tree -j $j run $i: $(calc 2 "$ELAPSED") s" >&2
        done
        TCELL[$j]=$(stats3 "${secs[@]}")
        TMEDIAN[$j]=$(median "${secs[@]}")
    done
fi

# ---------------------------------------------------------------------------------------
# Report.

WALL=$(calc 1 "$(now) - $RUN_START")
first=${JOB_LIST[0]}
{
    echo
    echo "## Striped sallyport scp: ${SIZE_LABEL} random file (${SIZE_BYTES} bytes), rtt ${RTT}, via ${VIA}, $RUNS runs per row"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs," \
        "sallyport $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "MB = 10^6 bytes; rate = file bytes / wall time of the whole command (every" \
        "session's setup included); cells: min / median / max; ratio: median / the -j $first median."
    echo
    echo "| -j | download, MB/s | download ratio | upload, MB/s | upload ratio |"
    echo "|---:|---:|---:|---:|---:|"
    for j in "${JOB_LIST[@]}"; do
        echo "| $j | ${CELL[down:$j]} | $(calc 2 "${MEDIAN[down:$j]} / ${MEDIAN[down:$first]}") |" \
            "${CELL[up:$j]} | $(calc 2 "${MEDIAN[up:$j]} / ${MEDIAN[up:$first]}") |"
    done
    if [[ $COMPRESS_MB != 0 ]]; then
        echo
        echo "### Compression: ${COMPRESS_MB} MB download, one run each, -j 1"
        echo
        echo "| file | sallyport scp | sallyport scp -C | OpenSSH scp via proxy, Compression=no | ... Compression=yes |"
        echo "|---|---:|---:|---:|---:|"
        for kind in text.txt random.bin; do
            echo "| $kind | ${CRATE[sp:$kind]} | ${CRATE[sp-C:$kind]} | ${CRATE[ossh:$kind]} | ${CRATE[ossh-C:$kind]} |"
        done
        echo
        echo "- MB/s of file bytes; text.txt is a generated access log (gzip -6 ratio:" \
            "$(calc 1 "$CBYTES / $(gzip -6 -c "$TMP/remote/text.txt" | wc -c)")x)."
    fi
    if ((TREE_FILES > 0)); then
        echo
        echo "### Tree of $TREE_FILES small files (1-4 KB) in $TREE_DIRS directories: \`scp -r\` download"
        echo
        echo "| -j | seconds | ms per file (median) | speed-up over -j $first |"
        echo "|---:|---:|---:|---:|"
        for j in "${JOB_LIST[@]}"; do
            echo "| $j | ${TCELL[$j]} | $(calc 1 "${TMEDIAN[$j]} * 1000 / $TREE_FILES") |" \
                "$(calc 2 "${TMEDIAN[$first]} / ${TMEDIAN[$j]}") |"
        done
    fi
    echo "- every transfer verified by SHA-256; benchmark wall time ${WALL} s"
}

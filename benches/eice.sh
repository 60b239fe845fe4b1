#!/usr/bin/env bash
# EC2 Instance Connect Endpoint against Session Manager against direct ssh, on the same
# link: the same sshd, the same added round-trip time, side by side in one run.
#
#   benches/eice.sh [--size-mb N] [--rtt 40ms] [--runs N] [--eice-rate BYTES_PER_SEC]
#                   [--no-build] [--keep-tmp]
#
#   --size-mb N     size of the random file, MB = 10^6 bytes (default 50). The Session
#                   Manager download runs at the agent's pace (~0.6 MB/s): 50 MB takes
#                   ~80 s a run; --size-mb 20 keeps a 3-run bench under ~10 minutes.
#   --rtt D         round-trip time added on every path, e.g. 40ms (default 40ms)
#   --runs N        runs per path and direction (default 3), interleaved: eice, ssm, direct
#   --eice-rate R   the testbed's per-tunnel rate limit (default: none, as the service
#                   publishes none; AWS says EICE is throttled, so real numbers may be lower)
#   --no-build      use the existing release binaries instead of building them
#   --keep-tmp      keep the temp dir (logs, keys) for inspection
#
# Topology (everything on 127.0.0.1; one throwaway sshd, started by this script):
#
#   eice:    scp --ProxyCommand--> sallyport proxy --via eice --wss--> testbed /openTunnel
#            (--rtt R) --> sshd
#   ssm:     scp --ProxyCommand--> sallyport proxy --via ssm --ws--> testbed data channel
#            (--rtt R, agent-paced) --> sshd
#   direct:  scp --TCP--> testbed delay-proxy --rtt R --> sshd
#
# Measured: scp (SFTP mode) upload and download of one N MB file, rate = bytes / wall time
# of the whole scp (set-up included), every copy's SHA-256 checked; `ssh true` wall time.
# The report prints min / median / max per path and the ratios of the medians to direct.
# Goal (from the design): EICE download >= 0.8x direct with no --eice-rate.
#
# Requires what benches/throughput.sh requires. Run as root (the sshd).

set -euo pipefail

SIZE_MB=50
RTT=40ms
RUNS=3
EICE_RATE=
BUILD=1
KEEP_TMP=0

usage() { sed -n '2,/^# Topology/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "eice.sh: error: $*" >&2; exit 1; }

while (($# > 0)); do
    case "$1" in
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --rtt) RTT=${2:?--rtt needs a value}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --eice-rate) EICE_RATE=${2:?--eice-rate needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ $SIZE_MB =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--size-mb must be a positive number"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $RTT =~ ^(0|[0-9]+(\.[0-9]+)?(ns|us|ms|s))$ ]] || die "--rtt must look like 40ms, 0 or 0.1s"
[[ -z $EICE_RATE || $EICE_RATE =~ ^[1-9][0-9]*$ ]] || die "--eice-rate must be bytes per second"

BENCH_NAME=eice.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

start_sshd

rate_args=()
[[ -n $EICE_RATE ]] && rate_args=(--eice-rate "$EICE_RATE")
"$TESTBED" serve --listen 127.0.0.1:0 --ssh-target "127.0.0.1:$SSHD_PORT" --rtt "$RTT" \
    --eice "${rate_args[@]}" >"$TMP/testbed.env" 2>"$TMP/testbed.log" &
PIDS+=("$!")
wait_for_line "$TMP/testbed.env" 15 SALLYPORT_TESTBED_INSTANCE= "$!"
"$TESTBED" delay-proxy --listen 127.0.0.1:0 --rtt "$RTT" --to "127.0.0.1:$SSHD_PORT" \
    >"$TMP/delay-proxy.env" 2>"$TMP/delay-proxy.log" &
PIDS+=("$!")
wait_for_line "$TMP/delay-proxy.env" 15 LISTEN= "$!"
DIRECT_ADDR=$(sed -n 's/^LISTEN=//p' "$TMP/delay-proxy.env")
INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed.env")
[[ -n $INSTANCE ]] || die "testbed printed no instance id"
mapfile -t ENV_TB < <(grep -E '^[A-Z_][A-Z0-9_]*=' "$TMP/testbed.env")
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

# argv_for PATH TOOL: sets ARGV and DEST for TOOL (ssh or scp) on PATH (eice, ssm, direct).
ARGV=()
DEST=
argv_for() {
    local path=$1 tool=$2 proxy
    case $path in
        direct)
            ARGV=("$tool" "${SSH_OPTS[@]}" -o "Port=${DIRECT_ADDR##*:}")
            DEST=root@${DIRECT_ADDR%:*}
            ;;
        eice | ssm)
            proxy="ProxyCommand=$(printf '%q' "$SALLYPORT") proxy %h --port %p --via $path"
            ARGV=(env "${HERMETIC[@]}" "${ENV_TB[@]}" "$tool" "${SSH_OPTS[@]}" -o "$proxy")
            DEST=root@$INSTANCE
            ;;
        *) die "internal: unknown path $path" ;;
    esac
}

SIZE_BYTES=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", mb * 1000000 }')
head -c "$SIZE_BYTES" /dev/urandom >"$TMP/remote/src.bin"
SRC_SHA=$(sha "$TMP/remote/src.bin")
LIMIT=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", 60 + 20 * mb }')

# timed PATH up|down: one scp; prints the rate in MB/s on stdout.
timed() {
    local path=$1 dir=$2 t0 t1 from to out
    argv_for "$path" scp
    if [[ $dir == up ]]; then
        out=$TMP/remote/up-$path.bin from=$TMP/remote/src.bin to=$DEST:$out
    else
        out=$TMP/down-$path.bin from=$DEST:$TMP/remote/src.bin to=$out
    fi
    t0=$(now)
    bounded "$LIMIT" "$TMP/scp.log" "${ARGV[@]}" -q "$from" "$to" ||
        die "scp $path $dir failed or timed out; see scp.log"
    t1=$(now)
    verify "$path $dir" "$out" >&2 2>/dev/null || die "$path $dir: copy differs"
    rm -f "$out"
    calc 3 "$SIZE_BYTES / 1000000 / ($t1 - $t0)"
}

# latency PATH: one `ssh true`, in ms.
latency() {
    local t0 t1
    argv_for "$1" ssh
    t0=$(now)
    bounded 60 "$TMP/ssh.log" "${ARGV[@]}" "$DEST" true || die "ssh true via $1 failed; see ssh.log"
    t1=$(now)
    calc 1 "($t1 - $t0) * 1000"
}

declare -A SAMPLES
for ((run = 1; run <= RUNS; run++)); do
    for path in eice ssm direct; do
        for what in down up lat; do
            if [[ $what == lat ]]; then v=$(latency "$path"); else v=$(timed "$path" "$what"); fi
            SAMPLES[$path.$what]+="$v "
            echo "    run $run $path $what: $v" >&2
        done
    done
done

# stats "v1 v2 ...": "min / median / max"
stats() {
    printf '%s\n' $1 | sort -g | awk '{ v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              printf "%s / %s / %s", v[1], m, v[NR] }'
}
median() { stats "$1" | awk -F' / ' '{ print $2 }'; }
ratio() { calc 2 "$(median "${SAMPLES[$1.$3]}") / $(median "${SAMPLES[$2.$3]}")"; }

cat <<EOF

## EICE vs Session Manager vs direct: ${SIZE_MB} MB, rtt ${RTT}, ${RUNS} runs, eice-rate ${EICE_RATE:-none}

$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg), \
sallyport $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')
min / median / max; MB = 10^6 bytes; scp in SFTP mode, set-up included; all copies verified.

| path | download MB/s | upload MB/s | \`ssh true\` ms |
|---|---:|---:|---:|
| EICE | $(stats "${SAMPLES[eice.down]}") | $(stats "${SAMPLES[eice.up]}") | $(stats "${SAMPLES[eice.lat]}") |
| Session Manager | $(stats "${SAMPLES[ssm.down]}") | $(stats "${SAMPLES[ssm.up]}") | $(stats "${SAMPLES[ssm.lat]}") |
| direct | $(stats "${SAMPLES[direct.down]}") | $(stats "${SAMPLES[direct.up]}") | $(stats "${SAMPLES[direct.lat]}") |

- EICE / direct (medians): download $(ratio eice direct down) (goal >= 0.8), upload $(ratio eice direct up), latency $(ratio eice direct lat)
- EICE / Session Manager download (medians): $(ratio eice ssm down)
EOF

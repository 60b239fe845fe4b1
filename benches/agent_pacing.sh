#!/usr/bin/env bash
# Download pacing of the testbed's agent end compared with the official amazon-ssm-agent's
# own session code, side by side on this machine: the same sshd, the same client
# (OpenSSH scp through `sallyport proxy`), the same file, runs interleaved.
#
#   benches/agent_pacing.sh [--interop DIR] [--relay FILE] [--size-mb N] [--runs N]
#                           [--testbed-pace D] [--no-build]
#
#   --interop DIR   the interop kit's build output (default $INTEROP_DIR, else
#                   ${TMPDIR:-/tmp}/sallyport-interop): bin/agent-harness (the official
#                   agent's session code in a one-session harness), tls/ and venv/; build it
#                   with interop/build.sh, see interop/README.md (--peers: the same)
#   --relay FILE    the stand-in MGS that starts one harness per StartSession and relays
#                   frames verbatim (default interop/relay.py)
#   --size-mb N     size of the random file, MB = 10^6 bytes (default 5)
#   --runs N        runs per agent (default 5)
#   --testbed-pace D  the testbed's `serve --pace D` (default: its own default), to calibrate
#   --no-build      use the existing release binaries
#   --keep-tmp      keep the temp dir (logs) for inspection
#
# Paths (everything on 127.0.0.1, rtt 0):
#   testbed:  scp --ProxyCommand--> sallyport proxy --ws--> sallyport-testbed serve --> sshd
#   official: scp --ProxyCommand--> sallyport proxy --ws--> interop/relay.py
#             --wss--> agent-harness (the agent's datachannel + Port plugin code) --> sshd
#
# Rate = file bytes / wall time of the whole scp (setup included), OpenSSH scp in its
# default SFTP mode; every download is checked with SHA-256. Prints min/median/max per
# agent and the ratio of medians (testbed / official), and the machine's load (1-minute
# load average before and after each pair of runs): both agents slow down under load,
# so compare runs at a like load. Target: within 0.9-1.1 on an idle machine.
#
# Not a CI test: it needs the official agent's source, built by interop/build.sh.

set -euo pipefail

INTEROP=${INTEROP_DIR:-${TMPDIR:-/tmp}/sallyport-interop}
RELAY=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/interop/relay.py
SIZE_MB=5
RUNS=5
BUILD=1
KEEP_TMP=0
TB_PACE=()

usage() { sed -n '2,/^# Paths/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() {
    echo "agent_pacing.sh: error: $*" >&2
    exit 1
}

while (($# > 0)); do
    case "$1" in
        --interop | --peers) INTEROP=${2:?--interop needs a value}; shift 2 ;;
        --relay) RELAY=${2:?--relay needs a value}; shift 2 ;;
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --testbed-pace) TB_PACE=(--pace "${2:?--testbed-pace needs a value}"); shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -x $INTEROP/bin/agent-harness ]] ||
    die "no $INTEROP/bin/agent-harness: run interop/build.sh first, or pass --interop DIR (see interop/README.md)"
[[ -x $INTEROP/venv/bin/python ]] || die "no $INTEROP/venv/bin/python: run interop/build.sh first"
[[ -f $RELAY ]] || die "no relay at $RELAY (pass --relay)"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"

BENCH_NAME=agent_pacing.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

start_sshd

# The testbed, default agent settings (its pacing is what is measured).
"$TESTBED" serve --listen 127.0.0.1:0 --ssh-target "127.0.0.1:$SSHD_PORT" "${TB_PACE[@]}" \
    >"$TMP/testbed.env" 2>"$TMP/testbed.log" &
PIDS+=("$!")
wait_for_line "$TMP/testbed.env" 15 SALLYPORT_TESTBED_INSTANCE= "$!"
TB_INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed.env")
mapfile -t TB_ENV < <(grep -E '^[A-Z_][A-Z0-9_]*=' "$TMP/testbed.env")

# The official agent code behind the kit's stand-in Message Gateway.
"$INTEROP/venv/bin/python" "$RELAY" --out "$INTEROP" --harness-log "$TMP/agent.log" \
    >"$TMP/relay.env" 2>"$TMP/relay.log" &
PIDS+=("$!")
wait_for_line "$TMP/relay.env" 30 INTEROP_RELAY_ENDPOINT= "$!"
OFFICIAL_ENV=(AWS_ENDPOINT_URL="$(sed -n 's/^INTEROP_RELAY_ENDPOINT=//p' "$TMP/relay.env")"
    AWS_ACCESS_KEY_ID=AKIDINTEROP AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1)
OFFICIAL_INSTANCE=i-0123456789abcdef0

HERMETIC=(
    -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_DEFAULT_REGION
    -u AWS_ENDPOINT_URL_SSM AWS_EC2_METADATA_DISABLED=true
    AWS_CONFIG_FILE="$TMP/no-such-aws-config" AWS_SHARED_CREDENTIALS_FILE="$TMP/no-such-aws-credentials"
)
SSH_OPTS=(
    -F /dev/null -i "$TMP/userkey" -P "$SSHD_PORT"
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=30
    -o "ProxyCommand=$(printf '%q' "$SALLYPORT") proxy %h --port %p"
)

SIZE_BYTES=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", mb * 1000000 }')
head -c "$SIZE_BYTES" /dev/urandom >"$TMP/remote/src.bin"
SRC_SHA=$(sha "$TMP/remote/src.bin")

# download AGENT: one scp download; prints MB/s.
download() {
    local agent=$1 env instance start end
    if [[ $agent == testbed ]]; then
        env=("${TB_ENV[@]}") instance=$TB_INSTANCE
    else
        env=("${OFFICIAL_ENV[@]}") instance=$OFFICIAL_INSTANCE
    fi
    rm -f "$TMP/dl.bin"
    start=$(now)
    bounded 600 "$TMP/scp-$agent.log" env "${HERMETIC[@]}" "${env[@]}" \
        scp "${SSH_OPTS[@]}" "root@$instance:$TMP/remote/src.bin" "$TMP/dl.bin" ||
        die "$agent download failed; see $TMP/scp-$agent.log"
    end=$(now)
    verify "$agent download" "$TMP/dl.bin"
    calc 3 "$SIZE_BYTES / 1000000 / ($end - $start)"
}

load() { cut -d' ' -f1 /proc/loadavg; }
declare -a TB OF LOADS
for i in $(seq 1 "$RUNS"); do
    before=$(load)
    OF+=("$(download official)")
    TB+=("$(download testbed)")
    LOADS+=("$before" "$(load)")
    echo "run $i: official ${OF[-1]} MB/s, testbed ${TB[-1]} MB/s, load $before -> $(load)" >&2
done

stats() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%s %s %s", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
read -r of_min of_med of_max <<<"$(stats "${OF[@]}")"
read -r tb_min tb_med tb_max <<<"$(stats "${TB[@]}")"
read -r load_min load_med load_max <<<"$(stats "${LOADS[@]}")"
ratio=$(calc 2 "$tb_med / $of_med")
cat <<EOF

## Agent pacing: testbed vs the official agent code, ${SIZE_MB} MB scp download, ${RUNS} runs each

$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs, sallyport $(cd "$REPO" && git rev-parse --short HEAD)${TB_PACE:+, testbed ${TB_PACE[*]}}

| agent | min MB/s | median MB/s | max MB/s |
|---|---:|---:|---:|
| official agent code (interop harness) | $of_min | $of_med | $of_max |
| testbed | $tb_min | $tb_med | $tb_max |

- ratio of medians (testbed / official): $ratio (target 0.9-1.1 idle)
- load (1-minute average around the runs): min $load_min / median $load_med / max $load_max
EOF

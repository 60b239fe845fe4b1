#!/usr/bin/env bash
# Download pacing of the testbed's agent end compared with the official amazon-ssm-agent's
# own session code, side by side on this machine: the same sshd, the same client
# (OpenSSH scp through `sallyport proxy`), the same file, runs interleaved.
#
#   benches/agent_pacing.sh --peers DIR --relay FILE [--size-mb N] [--runs N] [--no-build]
#
#   --peers DIR     where the official implementations were built: needs
#                   amazon-ssm-agent/bin/fakeagent (the agent's own session code in a
#                   one-session harness), tls/ (test CA and certificate) and venv-ws/ (a
#                   Python with aiohttp); see docs/architecture.md, "Interop with the
#                   official implementations"
#   --relay FILE    the stand-in Message Gateway (a Python script) that starts one
#                   fakeagent per StartSession and relays frames verbatim (required)
#   --size-mb N     size of the random file, MB = 10^6 bytes (default 5)
#   --runs N        runs per agent (default 5)
#   --no-build      use the existing release binaries
#   --keep-tmp      keep the temp dir (logs) for inspection
#
# Paths (everything on 127.0.0.1, rtt 0):
#   testbed:  scp --ProxyCommand--> sallyport proxy --ws--> sallyport-testbed serve --> sshd
#   official: scp --ProxyCommand--> sallyport proxy --ws--> fake_mgs_relay.py
#             --wss--> fakeagent (the agent's datachannel + Port plugin code) --> sshd
#
# Rate = file bytes / wall time of the whole scp (setup included), OpenSSH scp in its
# default SFTP mode; every download is checked with SHA-256. Prints min/median/max per
# agent and the ratio of medians (testbed / official). Target: within 0.9-1.1.
#
# Not a CI test: the official agent code is built from its public source with the
# `fetch` tool, which CI does not have.

set -euo pipefail

PEERS=
RELAY=
SIZE_MB=5
RUNS=5
BUILD=1
KEEP_TMP=0

usage() { sed -n '2,/^# Paths/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() {
    echo "agent_pacing.sh: error: $*" >&2
    exit 1
}

while (($# > 0)); do
    case "$1" in
        --peers) PEERS=${2:?--peers needs a value}; shift 2 ;;
        --relay) RELAY=${2:?--relay needs a value}; shift 2 ;;
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -n $PEERS ]] || die "--peers DIR is required (see docs/architecture.md, Interop)"
[[ -n $RELAY ]] || die "--relay FILE is required (see docs/architecture.md, Interop)"
[[ -x $PEERS/amazon-ssm-agent/bin/fakeagent ]] || die "no $PEERS/amazon-ssm-agent/bin/fakeagent"
[[ -x $PEERS/venv-ws/bin/python ]] || die "no $PEERS/venv-ws/bin/python"
[[ -f $RELAY ]] || die "no fake MGS relay at $RELAY (pass --relay)"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"

BENCH_NAME=agent_pacing.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

start_sshd

# The testbed, default agent settings (its pacing is what is measured).
"$TESTBED" serve --listen 127.0.0.1:0 --ssh-target "127.0.0.1:$SSHD_PORT" \
    >"$TMP/testbed.env" 2>"$TMP/testbed.log" &
PIDS+=("$!")
wait_for_line "$TMP/testbed.env" 15 SALLYPORT_TESTBED_INSTANCE= "$!"
TB_INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed.env")
mapfile -t TB_ENV < <(grep -E '^[A-Z_][A-Z0-9_]*=' "$TMP/testbed.env")

# The official agent code behind the fake Message Gateway.
CLIENT_PORT=$(free_port)
AGENT_PORT=$(free_port)
"$PEERS/venv-ws/bin/python" "$RELAY" --client-port "$CLIENT_PORT" --agent-port "$AGENT_PORT" \
    --cert "$PEERS/tls/srv.pem" --key "$PEERS/tls/srv.key" \
    --stream-url-base "ws://127.0.0.1:$CLIENT_PORT" \
    --spawn-agent "$PEERS/amazon-ssm-agent/bin/fakeagent" --agent-ca "$PEERS/tls/ca.pem" \
    --agent-log "$TMP/agent.log" --verbose 0 >"$TMP/relay.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$CLIENT_PORT") 2>/dev/null && break
    sleep 0.1
done
OFFICIAL_ENV=(AWS_ENDPOINT_URL="http://127.0.0.1:$CLIENT_PORT" AWS_ACCESS_KEY_ID=AKIDPEERS
    AWS_SECRET_ACCESS_KEY=x AWS_REGION=us-east-1)
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

declare -a TB OF
for i in $(seq 1 "$RUNS"); do
    OF+=("$(download official)")
    TB+=("$(download testbed)")
    echo "run $i: official ${OF[-1]} MB/s, testbed ${TB[-1]} MB/s" >&2
done

stats() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "%s %s %s", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
read -r of_min of_med of_max <<<"$(stats "${OF[@]}")"
read -r tb_min tb_med tb_max <<<"$(stats "${TB[@]}")"
ratio=$(calc 2 "$tb_med / $of_med")
cat <<EOF

## Agent pacing: testbed vs the official agent code, ${SIZE_MB} MB scp download, ${RUNS} runs each

$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs, sallyport $(cd "$REPO" && git rev-parse --short HEAD)

| agent | min MB/s | median MB/s | max MB/s |
|---|---:|---:|---:|
| official agent code (fakeagent) | $of_min | $of_med | $of_max |
| testbed | $tb_min | $tb_med | $tb_max |

- ratio of medians (testbed / official): $ratio (target 0.9-1.1)
EOF

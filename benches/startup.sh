#!/usr/bin/env bash
# `ssh true` through `sallyport proxy` against direct ssh, with a round trip on every
# connection the client makes, as on AWS: how long set-up takes, and how far it is from
# direct ssh on the same link. Several sallyport binaries can be compared in one run
# (interleaved), e.g. a build of main before a change against this tree.
#
#   benches/startup.sh [--api-rtt 40ms] [--rtt 40ms] [--runs N] [--bin LABEL=PATH]...
#                      [--no-build] [--keep-tmp]
#
#   --api-rtt D     round trip on the client's connections to "AWS" (API calls and the data
#                   channel's websocket): every TCP connect costs one D (SYN/SYN-ACK), every
#                   exchange (TLS flights, HTTP request, upgrade) one D (default 40ms)
#   --rtt D         the testbed relay's round trip between the data channel and the agent
#                   (default 40ms)
#   --runs N        `ssh true` runs per path (default 5), and pairs of multiplexed runs (a
#                   first starting a ControlMaster, a second riding it); min/median/max
#   --bin L=PATH    a sallyport binary to compare, labelled L (repeatable); default: the
#                   built one, labelled "this"
#   --no-build      use existing binaries (BENCH_PROFILE=debug for the debug ones)
#   --keep-tmp      keep the temp dir
#
# Topology (everything on 127.0.0.1, TLS as on AWS):
#
#   via:     ssh --ProxyCommand--> sallyport proxy --https/wss--> delay-proxy (api-rtt)
#                --> testbed serve --tls --rtt R --> sshd
#   direct:  ssh --TCP--> delay-proxy (api-rtt) --> sshd
#   direct-same-link: ssh --TCP--> delay-proxy (api-rtt) --> delay-proxy (rtt) --> sshd
#
# Why a delay proxy rather than a delay at accept: on AWS every new connection costs a
# TCP handshake, a TLS handshake and then each request its own round trip. The proxy
# (`delay-proxy --tcp-handshake`) holds each connection one round trip before anything
# passes and delays every chunk by half a round trip each way, so each of those exchanges
# costs what it would; the testbed hands out StreamUrls on the proxy (`serve
# --stream-host`), so the websocket pays them too.
#
# The report (Markdown) goes to stdout; per-run samples go to stderr. The sallyport
# `-v` set-up timeline of one extra run of the first binary follows the table.

set -euo pipefail

API_RTT=40ms
RTT=40ms
RUNS=5
BUILD=1
KEEP_TMP=0
BINS=()

usage() { sed -n '2,/^# Topology/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { echo "startup.sh: error: $*" >&2; exit 1; }

while (($# > 0)); do
    case "$1" in
        --api-rtt) API_RTT=${2:?--api-rtt needs a value}; shift 2 ;;
        --rtt) RTT=${2:?--rtt needs a value}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --bin) BINS+=("${2:?--bin needs LABEL=PATH}"); shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
for d in "$API_RTT" "$RTT"; do
    [[ $d =~ ^(0|[0-9]+(\.[0-9]+)?(us|ms|s))$ ]] || die "a round trip must look like 40ms, 0 or 0.1s, got '$d'"
done

BENCH_NAME=startup.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
((${#BINS[@]})) || BINS=("this=$SALLYPORT")
for b in "${BINS[@]}"; do
    [[ $b == *=* && -x ${b#*=} ]] || die "--bin $b: want LABEL=PATH to an executable"
done

start_sshd ""

TB_PORT=$(free_port)
start_proxy() { # start_proxy NAME TO [RTT [FLAG]]: a delay proxy (default: api-rtt, with the
    # TCP handshake); sets PROXY_ADDR
    "$TESTBED" delay-proxy --listen 127.0.0.1:0 --rtt "${3:-$API_RTT}" ${4---tcp-handshake} \
        --to "$2" >"$TMP/$1.env" 2>"$TMP/$1.log" &
    PIDS+=("$!")
    wait_for_line "$TMP/$1.env" 15 LISTEN= "$!"
    PROXY_ADDR=$(sed -n 's/^LISTEN=//p' "$TMP/$1.env")
}
start_proxy api "127.0.0.1:$TB_PORT"
API_ADDR=$PROXY_ADDR
start_proxy direct "127.0.0.1:$SSHD_PORT"
DIRECT_ADDR=$PROXY_ADDR
# The link sallyport's ssh bytes cross: api-rtt (with its TCP handshake) to the service, then
# the relay's rtt to the agent. Direct ssh over two delay proxies in a row crosses the same.
start_proxy relay-link "127.0.0.1:$SSHD_PORT" "$RTT" ""
start_proxy same-link "$PROXY_ADDR"
SAME_ADDR=$PROXY_ADDR

"$TESTBED" serve --listen "127.0.0.1:$TB_PORT" --ssh-target "127.0.0.1:$SSHD_PORT" --tls \
    --rtt "$RTT" --stream-host "$API_ADDR" >"$TMP/testbed.env" 2>"$TMP/testbed.log" &
PIDS+=("$!")
wait_for_line "$TMP/testbed.env" 15 SALLYPORT_TESTBED_EIC_STATE= "$!"
INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed.env" | head -1)
[[ $INSTANCE =~ ^[a-z]+-[0-9a-f]+$ ]] || die "testbed printed no usable instance id: '$INSTANCE'"

# The testbed's AWS_* lines, its endpoint replaced by the delay proxy in front of it.
mapfile -t ENV_TB < <(grep -E '^AWS_[A-Z0-9_]*=' "$TMP/testbed.env" | grep -v '^AWS_ENDPOINT_URL=')
ENV_TB+=("AWS_ENDPOINT_URL=https://$API_ADDR")
HERMETIC=(
    -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_DEFAULT_REGION
    -u AWS_ENDPOINT_URL_SSM -u AWS_ENDPOINT_URL_SSMMESSAGES -u SALLYPORT_CONFIG
    -u XDG_CONFIG_HOME -u SSH_AUTH_SOCK -u RUST_LOG
    HOME="$TMP/home" AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1
    AWS_CONFIG_FILE="$TMP/no-such-aws-config" AWS_SHARED_CREDENTIALS_FILE="$TMP/no-such-aws-credentials"
)
mkdir -p "$TMP/home"
SSH_OPTS=(
    -F /dev/null -i "$TMP/userkey" -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=30
)

# one_run LABEL: `ssh true` on LABEL's path once; prints its wall time in ms.
one_run() {
    local label=$1 t0 rc=0
    t0=$(now)
    if [[ $label == direct || $label == direct-same-link ]]; then
        local addr=$DIRECT_ADDR
        [[ $label == direct ]] || addr=$SAME_ADDR
        bounded 60 "$TMP/runs.log" env "${HERMETIC[@]}" ssh "${SSH_OPTS[@]}" \
            -o "Port=${addr##*:}" "root@${addr%:*}" true || rc=$?
    else
        local bin=$2
        bounded 60 "$TMP/runs.log" env "${HERMETIC[@]}" "${ENV_TB[@]}" ssh "${SSH_OPTS[@]}" \
            -o "ProxyCommand=$(printf '%q' "$bin") proxy %h --port %p" "root@$INSTANCE" true || rc=$?
    fi
    ((rc == 0)) || die "ssh true via $label failed (exit $rc); see $TMP/runs.log"
    calc 1 "($(now) - $t0) * 1000"
}

declare -A SAMPLES
LABELS=(direct direct-same-link)
for b in "${BINS[@]}"; do LABELS+=("${b%%=*}"); done
echo "==> $RUNS x ssh true per path (interleaved): ${LABELS[*]}; api-rtt $API_RTT, relay rtt $RTT" >&2
for ((i = 1; i <= RUNS; i++)); do
    for l in direct direct-same-link; do
        ms=$(one_run "$l")
        SAMPLES[$l]+="$ms "
        echo "    run $i $l $ms ms" >&2
    done
    for b in "${BINS[@]}"; do
        ms=$(one_run "${b%%=*}" "${b#*=}")
        SAMPLES[${b%%=*}]+="$ms "
        echo "    run $i ${b%%=*} $ms ms" >&2
    done
done

stats() { # min median max of the samples in $1
    tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '
        { v[NR] = $1 }
        END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf "%.1f | %.1f | %.1f", v[1], m, v[NR] }'
}
median() { stats "$1" | awk -F' [|] ' '{ print $2 }'; }
rtt_ms=$(awk -v d="$API_RTT" 'BEGIN { v = d + 0; if (d ~ /us$/) v /= 1000; else if (d ~ /[0-9]s$/ && d !~ /ms$/) v *= 1000; print v }')
DIRECT_MEDIAN=$(median "${SAMPLES[direct]}")
SAME_MEDIAN=$(median "${SAMPLES[direct-same-link]}")

cat <<EOF

## \`ssh true\`: via sallyport against direct, api-rtt $API_RTT, relay rtt $RTT

$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg), \
$(ssh -V 2>&1 | cut -d, -f1), tree $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?'), $RUNS runs each, interleaved.

direct: ssh over api-rtt alone. direct-same-link: ssh over the link sallyport's ssh bytes cross
(api-rtt, then the relay's rtt), so each of ssh's own round trips costs the same on both; the
last two columns are what sallyport's set-up adds (StartSession, websocket, agent handshake).

| path | min ms | median ms | max ms | median - direct, ms | in round trips of $API_RTT | median - direct-same-link, ms | in round trips of $API_RTT |
|---|---:|---:|---:|---:|---:|---:|---:|
EOF
for l in "${LABELS[@]}"; do
    m=$(median "${SAMPLES[$l]}")
    d=$(calc 1 "$m - $DIRECT_MEDIAN")
    e=$(calc 1 "$m - $SAME_MEDIAN")
    echo "| $l | $(stats "${SAMPLES[$l]}") | $d | $(calc 1 "$d / $rtt_ms") | $e | $(calc 1 "$e / $rtt_ms") |"
done
first=${BINS[0]}

# Reused connections: the three options `sallyport config ssh --multiplex` writes. The first
# ssh starts a master (its own session through sallyport); the second rides it.
MUX_OPTS=(-o ControlMaster=auto -o "ControlPath=$TMP/mux/%C" -o ControlPersist=10m
    -o "ProxyCommand=$(printf '%q' "${first#*=}") proxy %h --port %p")
mkdir -p "$TMP/mux" && chmod 700 "$TMP/mux"
mux_ssh() { # mux_ssh [OPTION...] -- [COMMAND...]: ssh to the instance with MUX_OPTS
    local opts=()
    while (($# > 0)) && [[ $1 != -- ]]; do opts+=("$1") && shift; done
    shift
    bounded 60 "$TMP/mux.log" env "${HERMETIC[@]}" "${ENV_TB[@]}" ssh "${SSH_OPTS[@]}" \
        "${MUX_OPTS[@]}" "${opts[@]}" "root@$INSTANCE" "$@"
}
echo "==> $RUNS x (first ssh true starting a master, second riding it) with ${first%%=*}" >&2
for ((i = 1; i <= RUNS; i++)); do
    for which in first second; do
        t0=$(now)
        mux_ssh -- true || die "multiplexed ssh true ($which) failed; see $TMP/mux.log"
        ms=$(calc 1 "($(now) - $t0) * 1000")
        SAMPLES[mux-$which]+="$ms "
        echo "    run $i $which $ms ms" >&2
    done
    mux_ssh -O exit -- || die "ssh -O exit failed; see $TMP/mux.log"
done
FIRST_MEDIAN=$(median "${SAMPLES[mux-first]}")
SECOND_MEDIAN=$(median "${SAMPLES[mux-second]}")
echo
echo "Multiplexed (\`ControlMaster auto\`, as \`config ssh --multiplex\` writes), ${first%%=*}:"
echo
echo "| ssh true | min ms | median ms | max ms |"
echo "|---|---:|---:|---:|"
echo "| first (starts the master) | $(stats "${SAMPLES[mux-first]}") |"
echo "| second (rides it) | $(stats "${SAMPLES[mux-second]}") |"
echo
echo "- second / first (medians): $(calc 2 "$SECOND_MEDIAN / $FIRST_MEDIAN") (goal: at most 0.3)"

echo
echo "Set-up timeline of one more run of ${first%%=*} (\`sallyport proxy -v\`):"
echo
echo '```'
env "${HERMETIC[@]}" "${ENV_TB[@]}" timeout 60 ssh "${SSH_OPTS[@]}" \
    -o "ProxyCommand=$(printf '%q' "${first#*=}") proxy %h --port %p -v" "root@$INSTANCE" true 2>&1 |
    grep -o 'set-up: .*' || echo "(no timeline: this binary predates it)"
echo '```'

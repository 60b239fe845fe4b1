#!/usr/bin/env bash
# Upload through `sallyport proxy` to a slow instance: how much of the
# instance's write rate OpenSSH `scp` gets, and how much sallyport resends, with and
# without a small queue in the gateway. A benchmark, not a test: it reports, it does not
# judge (it fails only when a transfer fails or does not verify).
#
#   benches/upload.sh [--size-mb N] [--runs N] [--rates "1 4 16"] [--relay-queue N]
#                     [--rtt 40ms] [--no-build] [--keep-tmp]
#
#   --size-mb N       size of the random file, MB = 10^6 bytes (default 20; fractions allowed)
#   --runs N          uploads per configuration (default 5)
#   --rates "R ..."   the instance's write rates, in MB/s (default "1 4 16"); each is passed
#                     to the testbed as --instance-write-rate R*10^6 (bytes/s)
#   --relay-queue N   the relay queue of the second set of rows, in messages (default 256);
#                     0 leaves those rows out
#   --rtt D           round-trip time the testbed's relay adds, e.g. 40ms, 0 (default 40ms,
#                     as in throughput.sh and scp.sh)
#   --no-build        use the existing release binaries ($CARGO_TARGET_DIR or the
#                     workspace's target dir) instead of running cargo build first
#   --keep-tmp        keep the temp dir (logs, keys, sshd_config) for inspection
#
# The default run (20 MB, 5 runs, 1/4/16 MB/s, with and without the queue) takes about
# 5 minutes, most of it in the 1 MB/s rows (~20 s per upload).
#
# The report (Markdown) goes to stdout; progress and per-run samples go to stderr.
#
# Topology (everything on 127.0.0.1; one throwaway sshd, and one fresh testbed per
# configuration, started here and stopped when its rows are done):
#
#   scp --ProxyCommand--> sallyport proxy --ws--> testbed serve --rtt D
#       --instance-write-rate R [--relay-queue Q] --> sshd
#
# What is measured (MB = 10^6 bytes, s = wall-clock seconds from `date +%s.%N`):
#
#  Configurations: each rate R of --rates with the relay's default queue (100000 messages,
#  i.e. unbounded for these files), then each R again with --relay-queue Q. The testbed
#  agent writes client data to sshd no faster than R (after a 16 KiB burst) and, like the
#  real agent, reads and acknowledges nothing more while a write is blocked; with Q the
#  relay holds at most Q messages towards the agent (delay line included) and then stops
#  reading from the client.
#
#  Per configuration, on its fresh testbed:
#   - setup: the wall time of `scp` of a 1-byte file (upload), once, first. Subtract it
#     from a run's time to estimate the steady-state rate.
#   - --runs uploads of one N MB random file with `scp` (OpenSSH's default SFTP mode). Each
#     upload's SHA-256 is checked against the source.
#     goodput         = file bytes / wall time of the whole scp command (setup included)
#     goodput ratio   = goodput / R (the bottleneck). SSH and SFTP framing also pass
#                       through the bottleneck, so the ratio stays a little under 1 even
#                       when the link is full; the report prints that framing overhead.
#     resend overhead = client_dup_bytes / file bytes, where client_dup_bytes is the payload
#                       of client input_stream_data messages whose sequence number the relay
#                       had already seen (retransmissions), summed over the sessions that
#                       appeared in the testbed's GET /testbed/stats during this upload (one,
#                       normally: the script records the session IDs before each scp, and
#                       after it waits, up to 15 s, for the new session to be marked ended
#                       or to see no new client stream data for 2 s).
#  The table gives min / median / max of the goodput ratio and the resend overhead over the
#  runs, the median goodput, the median goodput ratio with the 1-byte scp's time taken off
#  each run's time (an estimate of the steady state), and the relay's peak queue towards
#  the agent. Mind the queue with the delay line: at --rtt 40ms the relay holds 20 ms of
#  client data in flight towards the agent, so --relay-queue Q alone caps the path at about
#  Q x 1 KiB / 20 ms (13 MB/s for Q = 256).
#
# Exit status: 0 when every transfer completed and verified; 1 otherwise (the other
# configurations still run, and the table marks the failed ones).
#
# Requires: bash, cargo (unless --no-build), OpenSSH client and server (/usr/sbin/sshd),
# ssh-keygen, python3 (free ports, the stats JSON), awk, sha256sum, timeout (coreutils).
# Must run as a user that can start sshd (root, in practice). The test sshd and the
# testbeds only listen on 127.0.0.1.

set -euo pipefail

SIZE_MB=20
RUNS=5
RATES="1 4 16"
RELAY_QUEUE=256
RTT=40ms
BUILD=1
KEEP_TMP=0

usage() {
    sed -n '2,/^# The default run/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

die() {
    echo "upload.sh: error: $*" >&2
    exit 1
}

while (($# > 0)); do
    case "$1" in
        --size-mb) SIZE_MB=${2:?--size-mb needs a value}; shift 2 ;;
        --size-mb=*) SIZE_MB=${1#*=}; shift ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --rates) RATES=${2:?--rates needs a value}; shift 2 ;;
        --rates=*) RATES=${1#*=}; shift ;;
        --relay-queue) RELAY_QUEUE=${2:?--relay-queue needs a value}; shift 2 ;;
        --relay-queue=*) RELAY_QUEUE=${1#*=}; shift ;;
        --rtt) RTT=${2:?--rtt needs a value}; shift 2 ;;
        --rtt=*) RTT=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --keep-tmp) KEEP_TMP=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_size() { [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] && awk -v v="$1" 'BEGIN { exit !(v > 0) }'; }
is_size "$SIZE_MB" || die "--size-mb must be a positive number (MB = 10^6 bytes), got '$SIZE_MB'"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] && ((RUNS <= 100)) || die "--runs must be an integer from 1 to 100"
read -r -a RATE_LIST <<<"$RATES"
((${#RATE_LIST[@]} > 0 && ${#RATE_LIST[@]} <= 10)) || die "--rates needs 1 to 10 rates"
for r in "${RATE_LIST[@]}"; do
    is_size "$r" || die "--rates: '$r' is not a positive number of MB/s"
    awk -v v="$r" 'BEGIN { exit !(v * 1e6 >= 1000) }' || die "--rates: $r MB/s is below 1000 B/s"
done
[[ $RELAY_QUEUE =~ ^[0-9]+$ ]] || die "--relay-queue must be a whole number of messages (0: none)"
[[ $RTT =~ ^(0|[0-9]+(\.[0-9]+)?(ns|us|ms|s))$ ]] || die "--rtt must look like 40ms, 0 or 0.1s"

BENCH_NAME=upload.sh
# shellcheck source=benches/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# ---------------------------------------------------------------------------------------
# Test sshd.

start_sshd

# ---------------------------------------------------------------------------------------
# Testbeds: one per configuration, stopped when its runs are done.

TB_PID=
TB_NAME=
ENV_TB=()
INSTANCE=
STATS_URL=

# start_testbed NAME RATE_BYTES QUEUE: starts a testbed (QUEUE 0: the default queue) and
# sets TB_PID, ENV_TB, INSTANCE and STATS_URL.
start_testbed() {
    local name=$1 rate=$2 queue=$3 endpoint
    local extra=()
    ((queue > 0)) && extra=(--relay-queue "$queue")
    TB_NAME=$name
    # --chunk-size and --pace are the defaults (the real agent's), spelled out.
    "$TESTBED" serve --listen 127.0.0.1:0 --ssh-target "127.0.0.1:$SSHD_PORT" --rtt "$RTT" \
        --chunk-size 1024 --instance-write-rate "$rate" "${extra[@]}" \
        >"$TMP/testbed-$name.env" 2>"$TMP/testbed-$name.log" &
    TB_PID=$!
    PIDS+=("$TB_PID")
    wait_for_line "$TMP/testbed-$name.env" 15 SALLYPORT_TESTBED_EIC_STATE= "$TB_PID"
    mapfile -t ENV_TB < <(grep -E '^AWS_[A-Z0-9_]*=' "$TMP/testbed-$name.env")
    INSTANCE=$(sed -n 's/^SALLYPORT_TESTBED_INSTANCE=//p' "$TMP/testbed-$name.env" | head -n 1)
    [[ $INSTANCE =~ ^[a-z]+-[0-9a-f]+$ ]] || die "testbed printed no usable instance id: '$INSTANCE'"
    endpoint=$(sed -n 's/^AWS_ENDPOINT_URL=//p' "$TMP/testbed-$name.env")
    [[ $endpoint =~ ^http://127\.0\.0\.1:[0-9]+/?$ ]] ||
        die "testbed endpoint is not http on loopback: '$endpoint'"
    STATS_URL=${endpoint%/}/testbed/stats
}

# stop_testbed: SIGTERM, up to 5 s, then SIGKILL; forgets the PID.
stop_testbed() {
    [[ -n $TB_PID ]] || return 0
    local deadline=$((SECONDS + 5)) pid rest=()
    kill -TERM "$TB_PID" 2>/dev/null || true
    while kill -0 "$TB_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL "$TB_PID" 2>/dev/null || true
    wait "$TB_PID" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        [[ $pid == "$TB_PID" ]] || rest+=("$pid")
    done
    PIDS=("${rest[@]}")
    TB_PID=
}

# The testbed's per-session counters (GET /testbed/stats: {"sessions": [...]}).
#   stats.py ids URL OUT          writes the session IDs now listed to OUT, one a line
#   stats.py since URL IDS WAIT   waits up to WAIT s for the sessions not in IDS to be
#                                 over, then prints: new_sessions state client_bytes
#                                 client_dup_bytes client_dup_messages relay_peak_to_agent
#                                 (counts summed over the new sessions, peak the largest).
#                                 state: "ended" (all marked ended), "quiet" (no client
#                                 stream data for 2 s), or "live" (WAIT ran out).
# (The testbed marks a session ended only when it ends while a websocket is attached;
# sallyport proxy closes its websocket before it calls TerminateSession, so after an scp
# the session normally stays listed as not ended, and "quiet" is what tells it is over.)
cat >"$TMP/stats.py" <<'EOF'
import json, sys, time, urllib.request

QUIET = 2.0  # seconds without new client stream data that count as "the client is done"

def sessions(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)["sessions"]

cmd, url = sys.argv[1], sys.argv[2]
if cmd == "ids":
    with open(sys.argv[3], "w") as f:
        for s in sessions(url):
            f.write(s["session_id"] + "\n")
elif cmd == "since":
    with open(sys.argv[3]) as f:
        before = set(line.strip() for line in f if line.strip())
    deadline = time.monotonic() + float(sys.argv[4])
    last, quiet_since = None, time.monotonic()
    while True:
        new = [s for s in sessions(url) if s["session_id"] not in before]
        now = time.monotonic()
        counts = sorted((s["session_id"], s["client_messages"]) for s in new)
        if counts != last:
            last, quiet_since = counts, now
        if new and all(s["ended"] for s in new):
            state = "ended"
        elif new and now - quiet_since >= QUIET:
            state = "quiet"
        elif now >= deadline:
            state = "live"
        else:
            time.sleep(0.2)
            continue
        break
    total = lambda k: sum(int(s[k]) for s in new)
    peak = max((int(s["relay_peak_to_agent"]) for s in new), default=0)
    print(len(new), state, total("client_bytes"), total("client_dup_bytes"),
          total("client_dup_messages"), peak)
else:
    sys.exit("unknown command " + cmd)
EOF

stats_ids() {
    bounded 15 "$TMP/stats.log" python3 "$TMP/stats.py" ids "$STATS_URL" "$1" ||
        die "could not read $STATS_URL (see stats.log)"
}

# ---------------------------------------------------------------------------------------
# Clients.

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
mkdir -p "$TMP/home"
SSH_OPTS=(
    -F /dev/null -i "$TMP/userkey" -o IdentitiesOnly=yes
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=30
)
PROXY_OPTS=(-o "ProxyCommand=$(printf '%q' "$SALLYPORT") proxy %h --port %p")

# timed_upload LIMIT LOCAL REMOTE: scp LOCAL to the current testbed's instance; sets
# ELAPSED (seconds). Returns non-zero when scp fails or times out.
ELAPSED=
timed_upload() {
    local limit=$1 local_file=$2 remote=$3 t0 t1 rc=0 log=$TMP/scp-$TB_NAME.log
    echo "--- $(date -u +%H:%M:%S) $local_file -> $remote" >>"$log"
    t0=$(now)
    bounded "$limit" "$log" env "${HERMETIC[@]}" "${ENV_TB[@]}" scp "${SSH_OPTS[@]}" \
        "${PROXY_OPTS[@]}" "$local_file" "root@$INSTANCE:$remote" || rc=$?
    t1=$(now)
    ELAPSED=$(calc 6 "$t1 - $t0")
    if ((rc != 0)); then
        echo "!!! scp failed (exit $rc$( ((rc == 124)) && echo ", timed out after ${limit}s"))" \
            "after $(calc 2 "$ELAPSED") s; see $(basename "$log")" >&2
    fi
    return "$rc"
}

# sha_ok LABEL FILE WANT: true when FILE exists and has SHA-256 WANT; says so on stderr.
sha_ok() {
    local label=$1 file=$2 want=$3 got
    if [[ ! -f $file ]]; then
        echo "!!! $label: $file was not created" >&2
        return 1
    fi
    got=$(sha "$file")
    if [[ $got != "$want" ]]; then
        echo "!!! SHA-256 MISMATCH in $label: got $got, want $want ($file)" >&2
        return 1
    fi
}

# ---------------------------------------------------------------------------------------
# Payloads.

SIZE_BYTES=$(awk -v mb="$SIZE_MB" 'BEGIN { printf "%d", mb * 1000000 }')
head -c "$SIZE_BYTES" /dev/urandom >"$TMP/src.bin"
SRC_SHA=$(sha "$TMP/src.bin")
head -c 1 /dev/urandom >"$TMP/tiny.bin"
TINY_SHA=$(sha "$TMP/tiny.bin")

# ---------------------------------------------------------------------------------------
# Runs.

CONFIGS=()
for r in "${RATE_LIST[@]}"; do CONFIGS+=("$r:0"); done
if ((RELAY_QUEUE > 0)); then
    for r in "${RATE_LIST[@]}"; do CONFIGS+=("$r:$RELAY_QUEUE"); done
fi

# Per configuration, for the report.
declare -A C_SETUP C_STATUS C_RATIO C_STEADY C_RESEND C_GOODPUT C_PEAK C_FRAMING
FAILED=0

# stats3 VALUES...: "min / median / max" of the numbers given, each with %.Nf (N=$DIGITS).
DIGITS=2
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

echo "==> sshd 127.0.0.1:$SSHD_PORT; rtt $RTT; file ${SIZE_MB} MB ($SIZE_BYTES bytes);" \
    "$RUNS runs per configuration; ${#CONFIGS[@]} configurations" >&2

for cfg in "${CONFIGS[@]}"; do
    rate_mb=${cfg%%:*}
    queue=${cfg##*:}
    rate=$(awk -v v="$rate_mb" 'BEGIN { printf "%d", v * 1e6 }')
    name="r${rate}-q${queue}"
    qlabel=$( ((queue > 0)) && echo "$queue" || echo "default")
    echo "==> instance write rate $rate_mb MB/s ($rate B/s), relay queue $qlabel" >&2
    start_testbed "$name" "$rate" "$queue"
    # Time limit per upload: 60 s plus 10x the time the bottleneck needs for the file.
    limit=$(awk -v b="$SIZE_BYTES" -v r="$rate" 'BEGIN { printf "%d", 60 + 10 * b / r }')

    ok=1
    if timed_upload 60 "$TMP/tiny.bin" "$TMP/remote/tiny-$name.bin" &&
        sha_ok "1-byte upload ($name)" "$TMP/remote/tiny-$name.bin" "$TINY_SHA"; then
        C_SETUP[$cfg]=$ELAPSED
        echo "    1-byte scp (setup): $(calc 2 "$ELAPSED") s" >&2
    else
        ok=0
    fi

    ratios=() steadies=() resends=() goodputs=() peaks=() framings=()
    for ((i = 1; ok && i <= RUNS; i++)); do
        stats_ids "$TMP/ids-before"
        dest=$TMP/remote/up-$name-$i.bin
        if ! timed_upload "$limit" "$TMP/src.bin" "$dest" ||
            ! sha_ok "upload $i ($name)" "$dest" "$SRC_SHA"; then
            ok=0
            break
        fi
        rm -f "$dest"
        : >"$TMP/stats.out"
        bounded 30 "$TMP/stats.out" python3 "$TMP/stats.py" since "$STATS_URL" \
            "$TMP/ids-before" 15 || die "could not read $STATS_URL: $(tail -n 3 "$TMP/stats.out")"
        read -r n_new state c_bytes dup_bytes dup_msgs peak <"$TMP/stats.out"
        [[ "$n_new $state $c_bytes $dup_bytes $dup_msgs $peak" =~ ^[0-9]+\ (ended|quiet|live)( [0-9]+){4}$ ]] ||
            die "unexpected output from stats.py: $(head -c 300 "$TMP/stats.out")"
        ((n_new >= 1)) || die "no new session in $STATS_URL after upload $i ($name)"
        ((n_new == 1)) || echo "    note: $n_new sessions appeared during this upload; summed" >&2
        [[ $state != live ]] || echo "    note: the session was still active 15 s after scp" \
            "exited; counts read then" >&2
        goodput=$(calc 6 "$SIZE_BYTES / $ELAPSED")
        ratios+=("$(calc 6 "$goodput / $rate")")
        # The same with the 1-byte scp's time taken off (n/a if that leaves < 10 %).
        steadies+=("$(awk -v b="$SIZE_BYTES" -v t="$ELAPSED" -v s="${C_SETUP[$cfg]}" -v r="$rate" \
            'BEGIN { if (t - s > 0.1 * t) printf "%.6f", b / (t - s) / r; else print "nan" }')")
        resends+=("$(calc 6 "$dup_bytes * 100 / $SIZE_BYTES")")
        goodputs+=("$(calc 6 "$goodput / 1e6")")
        peaks+=("$peak")
        # Distinct client bytes (SSH + SFTP framing included) per file byte.
        framings+=("$(calc 6 "($c_bytes - $dup_bytes) / $SIZE_BYTES")")
        echo "    run $i/$RUNS: $(calc 2 "$ELAPSED") s, $(calc 3 "$goodput / 1e6") MB/s," \
            "goodput/rate $(calc 3 "$goodput / $rate"), resent $dup_msgs msgs = $dup_bytes B" \
            "($(calc 2 "$dup_bytes * 100 / $SIZE_BYTES") % of the file), client bytes $c_bytes," \
            "relay peak to agent $peak msgs; session $state; sha256 ok" >&2
    done
    stop_testbed

    if ((ok)); then
        C_STATUS[$cfg]=ok
        DIGITS=2
        C_RATIO[$cfg]=$(stats3 "${ratios[@]}")
        if printf '%s\n' "${steadies[@]}" | grep -q nan; then
            C_STEADY[$cfg]=n/a
        else
            C_STEADY[$cfg]=$(median "${steadies[@]}")
        fi
        C_RESEND[$cfg]=$(stats3 "${resends[@]}")
        C_GOODPUT[$cfg]=$(DIGITS=3 median "${goodputs[@]}")
        C_PEAK[$cfg]=$(printf '%s\n' "${peaks[@]}" | sort -g | tail -n 1)
        C_FRAMING[$cfg]=$(DIGITS=4 median "${framings[@]}")
    else
        C_STATUS[$cfg]="FAILED after $((${#ratios[@]})) of $RUNS runs"
        FAILED=1
    fi
done

# ---------------------------------------------------------------------------------------
# Report.

WALL=$(calc 1 "$(now) - $RUN_START")
{
    echo
    echo "## Upload to a slow instance: ${SIZE_MB} MB file, rtt ${RTT}, $RUNS runs per row"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -srm), $(nproc) CPUs, $(ssh -V 2>&1 | cut -d, -f1)," \
        "sallyport $(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$REPO" &&
            git diff --quiet HEAD -- 2>/dev/null || echo ' (dirty tree)')"
    echo "MB = 10^6 bytes. OpenSSH scp (default SFTP mode) with \`ProxyCommand sallyport proxy\`;" \
        "goodput = file bytes / wall time of the whole scp (setup included); ratio = goodput /" \
        "instance write rate; resent = retransmitted client payload bytes / file bytes (testbed" \
        "\`/testbed/stats\`, client_dup_bytes). Cells: min / median / max over the runs."
    echo
    echo "| instance write rate, MB/s | relay queue, msgs | 1-byte scp (setup), s | goodput, median, MB/s | goodput / rate | goodput / rate without setup, median | resent, % of file | relay peak to agent, msgs |"
    echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
    framing=()
    for cfg in "${CONFIGS[@]}"; do
        rate_mb=${cfg%%:*}
        queue=${cfg##*:}
        qlabel=$( ((queue > 0)) && echo "$queue" || echo "default (100000)")
        setup=${C_SETUP[$cfg]:+$(calc 2 "${C_SETUP[$cfg]}")}
        if [[ ${C_STATUS[$cfg]} == ok ]]; then
            echo "| $rate_mb | $qlabel | $setup | ${C_GOODPUT[$cfg]} | ${C_RATIO[$cfg]} |" \
                "${C_STEADY[$cfg]} | ${C_RESEND[$cfg]} | ${C_PEAK[$cfg]} |"
            framing+=("${C_FRAMING[$cfg]}")
        else
            echo "| $rate_mb | $qlabel | ${setup:-failed} | ${C_STATUS[$cfg]} | | | | |"
        fi
    done
    echo
    if ((${#framing[@]} > 0)); then
        f=$(DIGITS=4 median "${framing[@]}")
        echo "- SSH/SFTP framing: the client sent $f distinct payload bytes per file byte" \
            "(median), so a full bottleneck gives a goodput / rate of about $(calc 2 "1 / $f")" \
            "before setup time."
    fi
    echo "- without setup: file bytes / (scp time - the 1-byte scp's time on the same testbed)" \
        "/ rate, per run (n/a when that leaves under 10 % of the time)."
    echo "- relay peak to agent: the most messages (<= 1 KiB each) the relay held towards the" \
        "agent at once, delay line included; the largest over the runs."
    if ((FAILED)); then
        echo "- FAILED: at least one transfer failed or did not verify (see stderr);" \
            "benchmark wall time ${WALL} s"
    else
        echo "- every upload verified by SHA-256; benchmark wall time ${WALL} s"
    fi
}

if ((FAILED)); then
    echo "upload.sh: at least one transfer failed or did not verify (see above)" >&2
    exit 1
fi

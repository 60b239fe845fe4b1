#!/usr/bin/env bash
# AWS CLI v2's own EC2 Instance Connect Endpoint client against sallyport-testbed:
# `aws ec2-instance-connect open-tunnel` as ssh's ProxyCommand, to a throw-away sshd, and
# a 10 MB scp through it, compared byte for byte. Checks that the testbed's EC2 answers
# (DescribeInstances, DescribeInstanceConnectEndpoints) and its /openTunnel websocket
# (presign check, binary frames) are what the real client expects.
#
# Not run by CI: it needs an AWS CLI v2 built from source, root, port 443 on 127.0.0.1 and
# the system trust store. The CLI's websocket always dials port 443 of the endpoint's
# DnsName, sends that bare host as Host, and trusts only the system's CAs (AWS_CA_BUNDLE
# reaches its EC2 calls only; docs/protocol.md §10.3), so the testbed listens on
# 127.0.0.1:443 with --tls and its CA goes into the system store for the run (removed
# again at exit).
#
# Build the CLI (aws/aws-cli, branch v2) into a venv, e.g.:
#   git -C aws-cli archive v2 | tar x -C /tmp/aws-cli-src
#   python3 -m venv /tmp/aws-cli-venv && /tmp/aws-cli-venv/bin/pip install /tmp/aws-cli-src
# Then, as root:
#   interop/aws_cli_eice.sh --aws-cli-venv /tmp/aws-cli-venv [--testbed PATH] [--mb N]
# PASS/FAIL per step on stdout; exit 0 only if every step passed.
set -euo pipefail

venv="" testbed="" mb=10
while [ $# -gt 0 ]; do
  case "$1" in
    --aws-cli-venv) venv="$2"; shift 2 ;;
    --testbed) testbed="$2"; shift 2 ;;
    --mb) mb="$2"; shift 2 ;;
    *) echo "usage: $0 --aws-cli-venv DIR [--testbed PATH] [--mb N]" >&2; exit 2 ;;
  esac
done
[ -n "$venv" ] && [ -x "$venv/bin/aws" ] || { echo "error: --aws-cli-venv DIR must hold bin/aws (an AWS CLI v2 built from aws/aws-cli branch v2)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "error: run as root (port 443 and the system trust store)" >&2; exit 2; }
here="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$testbed" ]; then
  testbed="${CARGO_TARGET_DIR:-$here/target}/debug/sallyport-testbed"
fi
[ -x "$testbed" ] || { echo "error: no testbed binary at $testbed (cargo build -p sallyport-testbed, or --testbed PATH)" >&2; exit 2; }
for tool in ssh scp ssh-keygen /usr/sbin/sshd update-ca-certificates sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is missing (openssh-client, openssh-server, ca-certificates)" >&2; exit 2; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/sallyport-aws-cli-eice.XXXXXX")"
chmod 700 "$work"
ca_dest=/usr/local/share/ca-certificates/sallyport-testbed-eice.crt
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -f "$ca_dest" ]; then
    rm -f "$ca_dest"
    update-ca-certificates >/dev/null 2>&1 || true
    # update-ca-certificates leaves the links to a removed certificate behind.
    find /etc/ssl/certs -maxdepth 1 -type l \( -name sallyport-testbed-eice.pem \
      -o -lname sallyport-testbed-eice.pem \) -delete 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail=0
step() { if "${@:2}"; then echo "PASS $1"; else echo "FAIL $1"; fail=1; fi; }

# A throw-away sshd on a free loopback port, accepting one generated key.
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/user_key"
cp "$work/user_key.pub" "$work/authorized_keys"
mkdir -p /run/sshd
cat > "$work/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
CFG
/usr/sbin/sshd -D -f "$work/sshd_config" -E "$work/sshd.log" &
pids+=($!)

# The testbed: TLS on 127.0.0.1:443, one instance whose port 22 is that sshd, an endpoint.
"$testbed" serve --listen 127.0.0.1:443 --tls --ssh-target "127.0.0.1:$port" --eice \
  > "$work/env" 2> "$work/testbed.log" &
pids+=($!)
for _ in $(seq 100); do grep -q '^SALLYPORT_TESTBED_EIC_STATE=' "$work/env" 2>/dev/null && break; sleep 0.1; done
grep -q '^SALLYPORT_TESTBED_EIC_STATE=' "$work/env" || { echo "error: the testbed did not start:" >&2; cat "$work/testbed.log" >&2; exit 1; }
get() { sed -n "s/^$1=//p" "$work/env" | head -n1; }
ca="$(get AWS_CA_BUNDLE)"
cp "$ca" "$ca_dest"
update-ca-certificates >/dev/null

export AWS_ENDPOINT_URL="$(get AWS_ENDPOINT_URL)" AWS_ACCESS_KEY_ID="$(get AWS_ACCESS_KEY_ID)"
export AWS_SECRET_ACCESS_KEY="$(get AWS_SECRET_ACCESS_KEY)" AWS_REGION="$(get AWS_REGION)"
export AWS_DEFAULT_REGION="$AWS_REGION" AWS_CA_BUNDLE="$ca"
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
instance="$(get SALLYPORT_TESTBED_INSTANCE)"
aws="$venv/bin/aws"
echo "aws: $("$aws" --version 2>&1)"

step "describe-instances" sh -c "'$aws' ec2 describe-instances --instance-ids '$instance' --query 'Reservations[0].Instances[0].PrivateIpAddress' --output text > '$work/ip' && test -s '$work/ip'"
step "describe-instance-connect-endpoints" sh -c "'$aws' ec2 describe-instance-connect-endpoints --query 'InstanceConnectEndpoints[0].DnsName' --output text | grep -qx 127.0.0.1"

proxy="$aws ec2-instance-connect open-tunnel --instance-id $instance --remote-port 22"
ssh_opts=(-F /dev/null -i "$work/user_key" -o IdentitiesOnly=yes -o BatchMode=yes
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o ConnectTimeout=30 -o "ProxyCommand=$proxy")
step "ssh through open-tunnel" sh -c "timeout 60 ssh $(printf '%q ' "${ssh_opts[@]}") root@$instance echo tunnel-ok | grep -qx tunnel-ok"
head -c "$((mb * 1024 * 1024))" /dev/urandom > "$work/up.bin"
step "scp $mb MB up through open-tunnel" timeout 300 scp -q "${ssh_opts[@]}" "$work/up.bin" "root@$instance:$work/remote.bin"
step "scp $mb MB down through open-tunnel" timeout 300 scp -q "${ssh_opts[@]}" "root@$instance:$work/remote.bin" "$work/down.bin"
step "bytes intact" sh -c "[ \"\$(sha256sum < '$work/up.bin')\" = \"\$(sha256sum < '$work/down.bin')\" ]"
echo "testbed tunnel counts: $(curl -s --cacert "$ca" https://127.0.0.1/testbed/stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["eice_tunnels"])' 2>/dev/null || echo unavailable)"
if [ "$fail" -ne 0 ]; then
  echo "--- testbed log"; tail -n 20 "$work/testbed.log"
fi
exit "$fail"

#!/usr/bin/env bash
# Builds the interop kit: the official session-manager-plugin and a one-session harness around
# the official amazon-ssm-agent's session code, both from their public sources, plus what the
# kit's relay needs (a Python venv with aiohttp, a throw-away TLS CA). See interop/README.md.
#
#   interop/build.sh --plugin-src PATH --agent-src PATH [--out DIR] [--skip-apt]
#
#   --plugin-src PATH  github.com/aws/session-manager-plugin: a checkout or a bare git dir
#   --agent-src PATH   github.com/aws/amazon-ssm-agent: a checkout or a bare git dir
#   --out DIR          where everything goes (default $INTEROP_DIR, else
#                      ${TMPDIR:-/tmp}/sallyport-interop); never inside the repository
#   --skip-apt         do not install packages; use the Go, openssl and python3 already here
#
# Output under DIR:
#   bin/session-manager-plugin   the official client
#   bin/agent-harness            interop/harness/main.go built inside the agent's tree
#   tls/ca.pem, tls/relay.pem, tls/relay.key   test CA and the relay's certificate (127.0.0.1)
#   venv/                        Python with aiohttp for interop/relay.py
#   versions.txt                 what was built from which commit
#
# Network: apt (Go >= 1.22 from Debian, bookworm-backports when the release has none),
# pip (aiohttp) and nothing else; both Go builds use only the sources' vendored packages
# (GOPROXY=off). Needs root for apt; Debian 12 or later.

set -euo pipefail
shopt -s inherit_errexit

PLUGIN_SRC=
AGENT_SRC=
OUT=${INTEROP_DIR:-${TMPDIR:-/tmp}/sallyport-interop}
APT=1
KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() { sed -n '2,/^# Network/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() {
    echo "interop/build.sh: error: $*" >&2
    exit 1
}
say() { echo "== $*" >&2; }

while (($# > 0)); do
    case "$1" in
        --plugin-src) PLUGIN_SRC=${2:?--plugin-src needs a value}; shift 2 ;;
        --agent-src) AGENT_SRC=${2:?--agent-src needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --skip-apt) APT=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -n $PLUGIN_SRC ]] || die "--plugin-src PATH is required (a checkout or bare git dir of aws/session-manager-plugin)"
[[ -n $AGENT_SRC ]] || die "--agent-src PATH is required (a checkout or bare git dir of aws/amazon-ssm-agent)"
[[ -d $PLUGIN_SRC ]] || die "no directory $PLUGIN_SRC"
[[ -d $AGENT_SRC ]] || die "no directory $AGENT_SRC"
REPO=$(cd "$KIT/.." && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
case "$OUT/" in "$REPO"/*) die "--out $OUT is inside the repository; build outputs stay outside it" ;; esac

# --- tools ------------------------------------------------------------------------------------

# newest_go: prints the go binary of the newest Debian golang-1.NN-go with NN >= 22, if any.
newest_go() {
    local d
    for d in $(ls -d /usr/lib/go-1.* 2>/dev/null | sort -t. -k2 -n -r); do
        [[ ${d##*/go-1.} -ge 22 && -x $d/bin/go ]] && { echo "$d/bin/go"; return; }
    done
}

install_packages() {
    local codename pkg
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq openssl python3-venv git >/dev/null
    [[ -n $(newest_go) ]] && return
    for pkg in golang-1.24-go golang-1.23-go golang-1.22-go; do
        if apt-cache show "$pkg" >/dev/null 2>&1; then
            apt-get install -y -qq "$pkg" >/dev/null && return
        fi
    done
    # Debian 12 ships Go 1.19; its backports have 1.22 and later
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [[ -n $codename ]] || die "no Go >= 1.22 from apt and no release codename to add backports for"
    if ! grep -rqs "$codename-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        say "adding $codename-backports to apt's sources"
        echo "deb http://deb.debian.org/debian $codename-backports main" \
            >"/etc/apt/sources.list.d/$codename-backports.list"
        apt-get update -qq
    fi
    for pkg in golang-1.24-go golang-1.23-go golang-1.22-go; do
        apt-get install -y -qq -t "$codename-backports" "$pkg" >/dev/null 2>&1 && return
    done
    die "apt offers no golang-1.22-go or later; install one and pass --skip-apt"
}

((APT == 0)) || install_packages
GO=$(newest_go)
[[ -n $GO ]] || GO=$(command -v go || true)
[[ -n $GO ]] || die "no Go toolchain (golang-1.22-go or later); run without --skip-apt"
for tool in openssl python3 git tar; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install $tool)"
done
export PATH="$(dirname "$GO"):$PATH" GOTOOLCHAIN=local GOPROXY=off GOFLAGS= CGO_ENABLED=0
export GOCACHE="$OUT/go-cache" GOPATH="$OUT/go-path"
say "using $(go version)"

# --- sources ----------------------------------------------------------------------------------

# extract SRC DEST: copies the tree of SRC's HEAD (a bare git dir or a checkout) to DEST and
# prints the commit. A partial mirror may lack some blobs (large generated files of the AWS SDK
# that neither build imports); the packages (directories) holding them are left out, and listed
# on stderr, so a build that did import one fails by name.
extract() {
    local src=$1 dest=$2 gitdir commit missing
    rm -rf "$dest" && mkdir -p "$dest"
    if [[ $(git -C "$src" rev-parse --is-bare-repository 2>/dev/null) == true ]]; then
        gitdir=$(cd "$src" && pwd)
    elif git -C "$src" rev-parse --git-dir >/dev/null 2>&1 && [[ -z $(git -C "$src" status --porcelain --untracked-files=no 2>/dev/null) ]]; then
        gitdir=$(git -C "$src" rev-parse --absolute-git-dir)
    else
        # a plain tree, or a checkout with local changes: take the files as they are
        tar -C "$src" --exclude=.git -cf - . | tar -C "$dest" -xf -
        echo "worktree"
        return
    fi
    commit=$(git --git-dir="$gitdir" rev-parse HEAD)
    local listing missing path
    local -a excludes=()
    listing=$(git --git-dir="$gitdir" ls-tree -r --full-tree HEAD)
    missing=$(awk '$2 == "blob" { print $3 }' <<<"$listing" |
        git --git-dir="$gitdir" cat-file --batch-check | awk '$2 == "missing" { print $1 }')
    if [[ -n $missing ]]; then
        while IFS= read -r path; do
            echo "   (a file of $path is not in this mirror: left out)" >&2
            excludes+=(":(exclude)$path")
        done < <(grep -F -f <(printf '%s\n' "$missing") <<<"$listing" | cut -f2- | xargs -n1 dirname | sort -u)
    fi
    git --git-dir="$gitdir" archive HEAD -- . "${excludes[@]}" | tar -C "$dest" -xf -
    echo "$commit"
}

# version_of SRC: the release tag at HEAD when there is one, else the tree's VERSION file.
version_of() {
    local src=$1 dest=$2 tag
    tag=$(git -C "$src" describe --tags --exact-match HEAD 2>/dev/null || true)
    if [[ -n $tag ]]; then echo "$tag"; else tr -d '[:space:]' <"$dest/VERSION"; fi
}

# --- session-manager-plugin -------------------------------------------------------------------
# The plugin builds in GOPATH mode with its vendor/ tree on GOPATH, as its makefile does.

say "session-manager-plugin from $PLUGIN_SRC"
SMP=$OUT/src/session-manager-plugin
SMP_COMMIT=$(extract "$PLUGIN_SRC" "$SMP")
SMP_VERSION=$(version_of "$PLUGIN_SRC" "$SMP")
(
    cd "$SMP"
    export GO111MODULE=off GOPATH="$SMP/build/private:$SMP/vendor"
    # its makefile's pre-build: the version compiled in comes from VERSION (the client reports
    # it in the handshake, and the agent picks features by it)
    printf '%s' "$SMP_VERSION" >VERSION
    go run src/version/versiongenerator/version-gen.go
    # its makefile's copy-src: the sources under their import path
    mkdir -p build/private/src/github.com/aws/session-manager-plugin
    cp -r src build/private/src/github.com/aws/session-manager-plugin/
    go build -trimpath -ldflags "-s -w" -o "$OUT/bin/session-manager-plugin" ./src/sessionmanagerplugin-main
)
"$OUT/bin/session-manager-plugin" --version >/dev/null || die "the plugin does not run"

# --- amazon-ssm-agent session code + the kit's harness ----------------------------------------

say "agent-harness from $AGENT_SRC"
AGENT=$OUT/src/amazon-ssm-agent
AGENT_COMMIT=$(extract "$AGENT_SRC" "$AGENT")
AGENT_VERSION=$(version_of "$AGENT_SRC" "$AGENT")
mkdir -p "$AGENT/agent/sallyportharness"
cp "$KIT/harness/main.go" "$AGENT/agent/sallyportharness/main.go"
(
    cd "$AGENT"
    GO111MODULE=on GOFLAGS=-mod=vendor go build -trimpath -o "$OUT/bin/agent-harness" ./agent/sallyportharness
)
"$OUT/bin/agent-harness" -h 2>/dev/null || [[ $? -eq 2 ]] || die "the harness does not run"

# --- test CA and the relay's certificate ------------------------------------------------------

if [[ ! -s $OUT/tls/relay.pem ]] || ! openssl verify -CAfile "$OUT/tls/ca.pem" "$OUT/tls/relay.pem" >/dev/null 2>&1; then
    say "test CA and certificate for 127.0.0.1"
    rm -rf "$OUT/tls" && mkdir -p "$OUT/tls" && chmod 700 "$OUT/tls"
    (
        cd "$OUT/tls"
        umask 077
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
            -subj "/CN=sallyport interop test CA" -keyout ca.key -out ca.pem \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
            -keyout relay.key -out relay.csr 2>/dev/null
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "extendedKeyUsage=serverAuth" \
            "basicConstraints=CA:FALSE" >relay.ext
        openssl x509 -req -in relay.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
            -extfile relay.ext -out relay.pem 2>/dev/null
        chmod 644 ca.pem relay.pem
        rm -f relay.csr relay.ext
    )
    openssl verify -CAfile "$OUT/tls/ca.pem" "$OUT/tls/relay.pem" >/dev/null
fi

# --- the relay's Python -----------------------------------------------------------------------

if ! "$OUT/venv/bin/python" -c 'import aiohttp' 2>/dev/null; then
    say "Python venv with aiohttp"
    rm -rf "$OUT/venv"
    python3 -m venv "$OUT/venv"
    "$OUT/venv/bin/pip" install -q aiohttp
fi

cat >"$OUT/versions.txt" <<VERSIONS
session-manager-plugin $SMP_VERSION ($SMP_COMMIT)
amazon-ssm-agent $AGENT_VERSION ($AGENT_COMMIT) + interop/harness/main.go
$(go version)
aiohttp $("$OUT/venv/bin/python" -c 'import aiohttp; print(aiohttp.__version__)')
VERSIONS
say "done: $OUT"
cat "$OUT/versions.txt" >&2

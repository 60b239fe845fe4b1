#!/usr/bin/env python3
"""Starts the official session-manager-plugin the way the AWS CLI does (docs/protocol.md §1.3),
against the interop relay: it calls StartSession itself, then runs the plugin with the answer
in AWS_SSM_START_SESSION_RESPONSE and the request, region and endpoint on its command line.

    interop/plugin.py --endpoint URL --target i-0123456789abcdef0 \\
        [--document-name DOC] [--parameter NAME=VALUE ...] [--plugin PATH]

URL is the relay's INTEROP_RELAY_ENDPOINT. The relay checks no signatures, so the call is not
signed. Exits with the plugin's exit status.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request


def main():
    out = os.environ.get("INTEROP_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "sallyport-interop")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True, help="the relay's client URL (INTEROP_RELAY_ENDPOINT)")
    ap.add_argument("--target", required=True)
    ap.add_argument("--document-name", default="")
    ap.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--plugin", default=os.path.join(out, "bin", "session-manager-plugin"))
    args = ap.parse_args()
    if not args.endpoint.startswith(("http://127.", "http://[::1]", "http://localhost")):
        ap.error("--endpoint must be the relay on loopback")

    request = {"Target": args.target}
    if args.document_name:
        request["DocumentName"] = args.document_name
    params = {}
    for item in args.parameter:
        name, sep, value = item.partition("=")
        if not sep or not name:
            ap.error("--parameter wants NAME=VALUE, not %r" % item)
        params.setdefault(name, []).append(value)
    if params:
        request["Parameters"] = params

    call = urllib.request.Request(args.endpoint, data=json.dumps(request).encode(), method="POST", headers={
        "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonSSM.StartSession"})
    try:
        with urllib.request.urlopen(call, timeout=30) as resp:
            answer = json.load(resp)
    except urllib.error.HTTPError as e:
        sys.exit("plugin.py: StartSession failed: %s %s" % (e.code, e.read()[:300].decode("utf-8", "replace")))
    except (urllib.error.URLError, OSError, ValueError) as e:
        sys.exit("plugin.py: StartSession failed: %s" % e)
    session = {k: answer.get(k) for k in ("SessionId", "TokenValue", "StreamUrl")}

    env = dict(os.environ, AWS_SSM_START_SESSION_RESPONSE=json.dumps(session))
    argv = [args.plugin, "AWS_SSM_START_SESSION_RESPONSE", args.region, "StartSession", "",
            json.dumps(request), args.endpoint]
    # as the CLI: the plugin handles the terminal's signals, this process waits
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(subprocess.call(argv, env=env, preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (
        signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP)]))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stand-in for AWS's side of a Session Manager session, on loopback only.

It plays two services for a client (sallyport or the official session-manager-plugin):

* the SSM API (JSON 1.1 over HTTP POST): StartSession, ResumeSession, TerminateSession, and,
  with --kms-key-id, the two KMS calls an encrypted session makes (GenerateDataKey from the
  client, Decrypt from the agent);
* the Message Gateway Service (MGS): one websocket per end of a session, the client's on the
  client port (plain ws) and the agent's on the agent port (TLS, as the agent insists on https).

Every StartSession starts one agent harness (interop/harness, the official agent's session code)
for the new session, with the document's parameters as the plugin properties. Binary frames
pass between the two websockets byte for byte; the relay reads only their headers (for the
trace and the resend count) and never changes, drops or invents a data frame. Like MGS, it
sends channel_closed to both ends when a session is terminated, and to the client when the
agent ends the session.

When it is listening it prints, on stdout, lines a script can source:

    INTEROP_RELAY_ENDPOINT=http://127.0.0.1:PORT   (AWS_ENDPOINT_URL for the client)
    INTEROP_RELAY_AGENT=https://127.0.0.1:PORT     (what the harness is given as -mgs)

Not a model of the real MGS's speed, buffering or errors: only a way to run the official code.
"""
import argparse
import asyncio
import base64
import hashlib
import ipaddress
import json
import os
import signal
import ssl
import struct
import subprocess
import sys
import time
import uuid

from aiohttp import WSMsgType, web

# A data channel frame (docs/protocol.md §3.1): header length u32 (116), message type 32 bytes
# space-padded, schema version u32, created date u64 ms, sequence number i64, flags u64,
# message id 16 bytes, payload digest 32 bytes (SHA-256), payload type u32, payload length u32.
HEADER_LEN = 116
FRAME_MIN = HEADER_LEN + 4

# documents the harness runs: Port documents with their default portNumber, shell documents
# with the harness plugin that runs them ("" is the default shell document)
PORT_DOCS = {"AWS-StartSSHSession": "22", "AWS-StartPortForwardingSession": "80",
             "AWS-StartPortForwardingSessionToRemoteHost": "80"}
SHELL_DOCS = {"": "shell", "SSM-SessionManagerRunShell": "shell",
              "AWS-StartInteractiveCommand": "interactive",
              "AWS-StartNonInteractiveCommand": "noninteractive"}
# what the agent end may send on to the client; anything else (its session state reports)
# is for MGS itself
AGENT_TO_CLIENT = {"output_stream_data", "acknowledge", "channel_closed"}

MAX_SESSIONS = 64          # harnesses alive at once
MAX_PENDING = 4096         # frames held for an end that has not connected yet, per direction
MAX_FRAME = 1 << 20        # largest websocket message accepted from either end
KMS_BLOB_TAG = b"interop-kms:"


def log(*parts):
    print(time.strftime("%H:%M:%S"), "relay:", *parts, file=sys.stderr, flush=True)


def frame_info(b):
    """(message type, sequence number, payload type) of a frame, or None when it is not one."""
    if len(b) < FRAME_MIN:
        return None
    mtype = b[4:36].decode("ascii", "replace").strip()
    seq = struct.unpack_from(">q", b, 48)[0]
    ptype = struct.unpack_from(">I", b, 112)[0]
    return mtype, seq, ptype


def make_frame(mtype, payload):
    """A frame the relay itself sends (only channel_closed)."""
    now_ms = int(time.time() * 1000)
    return b"".join([
        struct.pack(">I", HEADER_LEN), mtype.encode().ljust(32, b" "), struct.pack(">I", 1),
        struct.pack(">Q", now_ms), struct.pack(">q", 0), struct.pack(">Q", 0), uuid.uuid4().bytes,
        hashlib.sha256(payload).digest(), struct.pack(">I", 0), struct.pack(">I", len(payload)),
        payload])


def channel_closed(sid, destination):
    body = {"MessageType": "channel_closed", "MessageId": str(uuid.uuid4()),
            "DestinationId": destination, "SessionId": sid, "SchemaVersion": 1,
            "CreatedDate": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "Output": ""}
    return make_frame("channel_closed", json.dumps(body).encode())


class End:
    """One end (client or agent) of a session: its websocket and what waits for it."""

    def __init__(self, name):
        self.name = name
        self.ws = None
        self.pending = []   # frames for this end, held until it connects
        self.frames = 0     # data frames received from this end
        self.resent = 0     # ... of which repeated a sequence number already seen
        self.top_seq = -1

    def live(self):
        return self.ws is not None and not self.ws.closed


class Session:
    def __init__(self, sid, argv):
        self.sid = sid
        self.argv = argv
        self.client = End("client")
        self.agent = End("agent")
        self.proc = None
        self.over = False
        self.tokens = 0
        self.client_epoch = 0   # bumped on every client websocket, so a stale timer does nothing

    def other(self, end):
        return self.agent if end is self.client else self.client

    def summary(self):
        return ("client->agent %d frames (%d resent), agent->client %d frames (%d resent)"
                % (self.client.frames, self.client.resent, self.agent.frames, self.agent.resent))


class Relay:
    def __init__(self, args):
        self.args = args
        self.sessions = {}
        self.trace = open(args.trace, "a", buffering=1) if args.trace else None
        self.capture = open(args.capture, "a", buffering=1) if args.capture else None
        self.client_url = ""
        self.agent_url = ""

    # ------------------------------------------------------------------ SSM and KMS API

    async def api(self, request):
        op = request.headers.get("X-Amz-Target", "")
        try:
            body = json.loads(await request.text() or "{}")
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            return api_error("SerializationException", "the body is not a JSON object")
        handlers = {"AmazonSSM.StartSession": self.start_session,
                    "AmazonSSM.ResumeSession": self.resume_session,
                    "AmazonSSM.TerminateSession": self.terminate_session}
        if self.args.kms_key_id:
            handlers["TrentService.GenerateDataKey"] = generate_data_key
            handlers["TrentService.Decrypt"] = decrypt
        handler = handlers.get(op)
        if handler is None:
            log("unsupported call", op or "(no X-Amz-Target)")
            return api_error("UnknownOperationException", "the interop relay does not serve %s" % op)
        return await handler(body)

    async def start_session(self, body):
        doc = str(body.get("DocumentName") or "")
        params = body.get("Parameters") or {}
        if not isinstance(params, dict):
            return api_error("ValidationException", "Parameters must be a map")

        def param(name, default=""):
            values = params.get(name)
            return str(values[0]) if isinstance(values, list) and values else default

        if doc in PORT_DOCS:
            flags = ["-plugin", "port", "-doc", doc, "-port", param("portNumber", PORT_DOCS[doc]),
                     "-localport", param("localPortNumber", "0")]
            if doc.endswith("ToRemoteHost"):
                if not param("host"):
                    return api_error("ValidationException", "%s needs the parameter host" % doc)
                flags += ["-host", param("host")]
            if self.args.kms_key_id:
                # the agent encrypts only sessions that are not Port sessions: the harness
                # announces InteractiveCommands and still runs the Port plugin
                flags += ["-claim-plugin", "InteractiveCommands"]
        elif doc in SHELL_DOCS:
            flags = ["-plugin", SHELL_DOCS[doc], "-run-as", self.args.run_as]
            if SHELL_DOCS[doc] != "shell":
                flags += ["-commands", param("command")]
            separate = param("separateOutputStream", self.args.separate_output)
            if SHELL_DOCS[doc] == "noninteractive" and separate:
                flags += ["-separate-output", separate]
        else:
            return api_error("InvalidDocument", "the interop relay runs %s, not %r"
                             % (", ".join(sorted(PORT_DOCS) + sorted(d for d in SHELL_DOCS if d)), doc))
        if sum(1 for s in self.sessions.values() if not s.over) >= MAX_SESSIONS:
            return api_error("ThrottlingException", "too many live sessions", 400)
        sid = "interop-%s" % uuid.uuid4().hex[:16]
        argv = [self.args.harness, "-mgs", self.agent_url, "-session", sid] + flags
        if self.args.kms_key_id:
            argv += ["-kms-key-id", self.args.kms_key_id, "-kms-endpoint", self.client_url]
        session = self.sessions[sid] = Session(sid, argv)
        await self.launch(session)
        log("StartSession", doc or "(default shell)", "target", body.get("Target"), "->", sid)
        return self.session_answer(session)

    def session_answer(self, session):
        session.tokens += 1
        return api_json({"SessionId": session.sid,
                         "StreamUrl": "%s/v1/data-channel/%s?role=publish_subscribe"
                                      % (self.client_url.replace("http", "ws", 1), session.sid),
                         "TokenValue": "interop-token-%d" % session.tokens})

    async def resume_session(self, body):
        session = self.sessions.get(str(body.get("SessionId") or ""))
        if session is None or session.over:
            return api_error("DoesNotExistException", "no live session %s" % body.get("SessionId"))
        return self.session_answer(session)

    async def terminate_session(self, body):
        sid = str(body.get("SessionId") or "")
        session = self.sessions.get(sid)
        if session is not None:
            asyncio.ensure_future(self.finish(session, "TerminateSession"))
        return api_json({"SessionId": sid})

    # ------------------------------------------------------------------ harness processes

    async def launch(self, session):
        env = dict(os.environ, SSL_CERT_FILE=self.args.ca)  # the harness trusts the test CA
        sink = open(self.args.harness_log, "ab") if self.args.harness_log else subprocess.DEVNULL
        try:
            session.proc = await asyncio.create_subprocess_exec(
                *session.argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, env=env)
        finally:
            if sink is not subprocess.DEVNULL:
                sink.close()
        asyncio.ensure_future(self.await_harness(session))
        asyncio.ensure_future(self.expire(session, 0, self.args.connect_timeout, "the client never connected"))

    async def await_harness(self, session):
        rc = await session.proc.wait()
        log("harness for", session.sid, "exited with", rc)
        await self.finish(session, "the agent ended it (harness exit %s)" % rc)

    async def expire(self, session, epoch, delay, why):
        await asyncio.sleep(delay)
        if not session.over and session.client_epoch == epoch and not session.client.live():
            await self.finish(session, why)

    async def finish(self, session, why):
        if session.over:
            return
        session.over = True
        log("session", session.sid, "over:", why, "-", session.summary())
        for end, destination in ((session.agent, session.sid), (session.client, "harness-client-" + session.sid)):
            if end.live():
                try:
                    await end.ws.send_bytes(channel_closed(session.sid, destination))
                except ConnectionError:
                    pass
        await stop(session.proc)
        for end in (session.client, session.agent):
            if end.live():
                await end.ws.close()
        self.sessions.pop(session.sid, None)  # an ended session is unknown from now on

    # ------------------------------------------------------------------ the two websockets

    async def agent_create_channel(self, request):
        # the agent's CreateDataChannel; it reads the answer as XML
        sid = request.match_info["sid"]
        if sid not in self.sessions:
            raise web.HTTPNotFound(text="no session %s" % sid)
        return web.Response(status=201, content_type="application/xml", text=(
            "<CreateDataChannelOutput><MessageSchemaVersion>1.0</MessageSchemaVersion>"
            "<TokenValue>interop-agent-token</TokenValue></CreateDataChannelOutput>"))

    async def client_channel(self, request):
        return await self.channel(request, "client")

    async def agent_channel(self, request):
        return await self.channel(request, "agent")

    async def channel(self, request, side):
        session = self.sessions.get(request.match_info["sid"])
        if session is None or session.over:
            raise web.HTTPNotFound(text="no live session %s" % request.match_info["sid"])
        end = session.client if side == "client" else session.agent
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, autoping=True)
        await ws.prepare(request)
        if end.live():
            await end.ws.close()  # a reconnecting end replaces its old websocket
        end.ws = ws
        if side == "client":
            session.client_epoch += 1
        held, end.pending = end.pending, []
        for frame in held:
            await ws.send_bytes(frame)
        await self.pump(session, end, ws)
        if side == "client" and end.ws is ws and not session.over:
            asyncio.ensure_future(self.expire(session, session.client_epoch, self.args.linger,
                                              "the client stayed away"))
        return ws

    async def pump(self, session, end, ws):
        other = session.other(end)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                # OpenDataChannel (each end's first message) is for MGS: not passed on
                continue
            if msg.type != WSMsgType.BINARY:
                continue
            frame = msg.data
            info = frame_info(frame)
            if info is None:
                log(end.name, "sent a message too short for a frame; ignored")
                continue
            mtype, seq, ptype = info
            if end is session.agent and mtype not in AGENT_TO_CLIENT:
                continue
            if mtype in ("input_stream_data", "output_stream_data"):
                end.frames += 1
                if seq <= end.top_seq:
                    end.resent += 1
                end.top_seq = max(end.top_seq, seq)
            if self.trace:
                self.trace.write("%.4f %s %s %s seq=%d ptype=%d len=%d\n" % (
                    time.time(), end.name, session.sid, mtype, seq, ptype, len(frame) - FRAME_MIN))
            if self.capture:
                # the format of tests/data/captures/*.jsonl
                self.capture.write(json.dumps({"t": round(time.time(), 4), "dir": "%s->%s" % (end.name, other.name),
                                               "hex": frame.hex()}) + "\n")
            if other.live():
                await other.ws.send_bytes(frame)
            elif len(other.pending) < MAX_PENDING:
                other.pending.append(frame)
            else:
                await self.finish(session, "%d frames waiting for the %s, which never came"
                                  % (MAX_PENDING, other.name))
                break


async def stop(proc):
    """Give the harness a few seconds to end by itself (it does on channel_closed), then stop it."""
    if proc is None or proc.returncode is not None:
        return
    for action, wait in ((None, 3), (proc.terminate, 2), (proc.kill, 2)):
        if action is not None:
            try:
                action()
            except ProcessLookupError:
                return
        try:
            await asyncio.wait_for(proc.wait(), wait)
            return
        except asyncio.TimeoutError:
            continue


def api_json(obj, status=200):
    return web.json_response(obj, status=status, content_type="application/x-amz-json-1.1")


def api_error(code, message, status=400):
    return api_json({"__type": code, "message": message}, status)


# A stand-in KMS: the "ciphertext" of a data key is the key itself behind a tag, so the agent's
# Decrypt gets back what the client's GenerateDataKey gave out. Keys are never logged.
async def generate_data_key(body):
    size = body.get("NumberOfBytes", 32)
    if not isinstance(size, int) or not 1 <= size <= 1024:
        return api_error("ValidationException", "NumberOfBytes must be 1..1024")
    key = os.urandom(size)
    log("KMS GenerateDataKey,", size, "bytes, context", json.dumps(body.get("EncryptionContext")))
    return api_json({"KeyId": "arn:aws:kms:us-east-1:111122223333:key/interop",
                     "CiphertextBlob": base64.b64encode(KMS_BLOB_TAG + key).decode(),
                     "Plaintext": base64.b64encode(key).decode()})


async def decrypt(body):
    try:
        blob = base64.b64decode(str(body.get("CiphertextBlob") or ""), validate=True)
    except ValueError:
        blob = b""
    if not blob.startswith(KMS_BLOB_TAG):
        return api_error("InvalidCiphertextException", "not a data key this relay made")
    log("KMS Decrypt, context", json.dumps(body.get("EncryptionContext")))
    return api_json({"KeyId": "arn:aws:kms:us-east-1:111122223333:key/interop",
                     "Plaintext": base64.b64encode(blob[len(KMS_BLOB_TAG):]).decode()})


def loopback(value):
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a loopback HOST:PORT (e.g. 127.0.0.1:0)" % value)


async def serve(args):
    relay = Relay(args)
    client_app = web.Application(client_max_size=1 << 20)
    client_app.router.add_post("/", relay.api)
    client_app.router.add_get("/v1/data-channel/{sid}", relay.client_channel)
    agent_app = web.Application(client_max_size=1 << 20)
    agent_app.router.add_post("/v1/data-channel/{sid}", relay.agent_create_channel)
    agent_app.router.add_get("/v1/data-channel/{sid}", relay.agent_channel)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(args.cert, args.key)

    runners = []
    ports = []
    for app, (host, port), context in ((client_app, args.client, None), (agent_app, args.agent, tls)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
        runners.append(runner)
        ports.append((host, runner.addresses[-1][1]))
    fmt = lambda h, p: ("[%s]" % h if ":" in h else h) + ":%d" % p  # noqa: E731
    relay.client_url = "http://" + fmt(*ports[0])
    relay.agent_url = "https://" + fmt(*ports[1])
    print("INTEROP_RELAY_ENDPOINT=%s\nINTEROP_RELAY_AGENT=%s" % (relay.client_url, relay.agent_url), flush=True)
    log("serving clients on", relay.client_url, "and agents on", relay.agent_url)

    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, done.set)
    await done.wait()
    for session in list(relay.sessions.values()):
        if session.proc is not None and session.proc.returncode is None:
            session.proc.terminate()  # each harness also leaves by itself when the relay is gone
    for runner in runners:
        await runner.cleanup()


def main():
    kit_out = os.environ.get("INTEROP_DIR") or os.path.join(os.environ.get("TMPDIR") or "/tmp", "sallyport-interop")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=kit_out, help="the kit's build output (default $INTEROP_DIR or $TMPDIR/sallyport-interop)")
    ap.add_argument("--client", type=loopback, default="127.0.0.1:0", metavar="HOST:PORT",
                    help="where clients connect (plain HTTP/ws; default 127.0.0.1:0, any free port)")
    ap.add_argument("--agent", type=loopback, default="127.0.0.1:0", metavar="HOST:PORT",
                    help="where harnesses connect (TLS; default 127.0.0.1:0)")
    ap.add_argument("--harness", help="the agent harness (default OUT/bin/agent-harness)")
    ap.add_argument("--cert", help="TLS certificate for the agent port (default OUT/tls/relay.pem)")
    ap.add_argument("--key", help="its key (default OUT/tls/relay.key)")
    ap.add_argument("--ca", help="CA the harness trusts (default OUT/tls/ca.pem)")
    ap.add_argument("--harness-log", default="", metavar="FILE", help="append the harnesses' logs to FILE")
    ap.add_argument("--trace", default="", metavar="FILE", help="append one line per relayed frame to FILE")
    ap.add_argument("--capture", default="", metavar="FILE",
                    help="append every relayed frame to FILE as JSON lines (t, dir, hex), the format of "
                         "tests/data/captures; the frames hold the session's bytes, so only for test keys")
    ap.add_argument("--kms-key-id", default="", metavar="KEY",
                    help="encrypt every session with KEY, serving a stand-in KMS on the client port")
    ap.add_argument("--separate-output", default="", choices=["", "true", "false"],
                    help="separateOutputStream for AWS-StartNonInteractiveCommand when the client passes none "
                         "(default: absent, which the agent reads as false)")
    ap.add_argument("--run-as", default="nobody", help="user the shell documents run as (not root; default nobody)")
    ap.add_argument("--linger", type=float, default=10.0,
                    help="seconds a session outlives its client's websocket (it may resume); default 10")
    ap.add_argument("--connect-timeout", type=float, default=60.0,
                    help="seconds a new session waits for its client; default 60")
    args = ap.parse_args()
    args.harness = args.harness or os.path.join(args.out, "bin", "agent-harness")
    args.cert = args.cert or os.path.join(args.out, "tls", "relay.pem")
    args.key = args.key or os.path.join(args.out, "tls", "relay.key")
    args.ca = args.ca or os.path.join(args.out, "tls", "ca.pem")
    for path, what in ((args.cert, "--cert"), (args.key, "--key"), (args.ca, "--ca")):
        if not os.path.isfile(path):
            ap.error("%s: no file %s (run interop/build.sh first)" % (what, path))
    if not os.access(args.harness, os.X_OK):
        ap.error("--harness: %s is not an executable (run interop/build.sh first)" % args.harness)
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()

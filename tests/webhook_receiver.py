#!/usr/bin/env python3
"""A webhook receiver for the e2e tests: verifies every request with the
reference Standard Webhooks library (PyPI `standardwebhooks`), answers 503 to
the first --fail-first requests, and appends one JSON line per request to
--log: {"status", "webhook_id", "flag_id", "verified", "tamper_rejected"}.

    python3 tests/webhook_receiver.py --secret S --log FILE --port-file FILE
                                      [--fail-first N] [--delay-ms N]
"""
import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

parser = argparse.ArgumentParser()
parser.add_argument("--secret", required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--port-file", required=True)
parser.add_argument("--fail-first", type=int, default=0)
parser.add_argument("--delay-ms", type=int, default=0)
args = parser.parse_args()
hook = Webhook(args.secret)
lock = threading.Lock()
seen = {"n": 0}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            hook.verify(body, headers)
            verified = True
        except Exception:
            verified = False
        try:
            hook.verify(body.replace(b"}", b',"x":1}', 1), headers)
            tamper_rejected = False
        except Exception:
            tamper_rejected = True
        with lock:
            seen["n"] += 1
            n = seen["n"]
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000)
        if not verified:
            status = 401
        elif n <= args.fail_first:
            status = 503
        else:
            status = 200
        flag_id = None
        try:
            flag_id = json.loads(body).get("flag_id")
        except Exception:
            pass
        with lock, open(args.log, "a") as log:
            log.write(json.dumps({
                "status": status,
                "webhook_id": headers.get("webhook-id"),
                "flag_id": flag_id,
                "verified": verified,
                "tamper_rejected": tamper_rejected,
            }) + "\n")
        self.send_response(status)
        self.end_headers()

    def log_message(self, *a):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
__import__("os").replace(args.port_file + ".tmp", args.port_file)
server.serve_forever()

#!/usr/bin/env python3
"""An S3-compatible server on loopback for the object-store tests: moto's
server mode, optionally behind a proxy that fails some requests the way a
busy S3 does.

    s3_server.py --port-file F [--bucket B ...] [--fail-every N] [--log L]
    s3_server.py --list ENDPOINT --bucket B --prefix P     (print the keys)

Starts moto on a free port, creates the buckets, and with --fail-every N
puts a proxy in front that answers every Nth request with 503 SlowDown
before it reaches the store (the client must retry it), and every Nth GET
after it was served with a dropped connection (the answer is lost; reading
again is safe). The port the client should use is written to the port file
once everything listens. Runs until killed.
"""

import argparse
import http.client
import http.server
import os
import socket
import threading
import time

import boto3
from moto.server import ThreadedMotoServer


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy(backend_port, fail_every, log):
    counter = {"n": 0, "failed": 0}
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _tick(self):
            with lock:
                counter["n"] += 1
                return counter["n"]

        def _forward(self):
            n = self._tick()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if fail_every and n % fail_every == 0:
                counter["failed"] += 1
                if log:
                    log.write(f"503 {self.command} {self.path}\n")
                    log.flush()
                payload = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            conn = http.client.HTTPConnection("127.0.0.1", backend_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            drop = fail_every and self.command == "GET" and n % fail_every == fail_every // 2
            if drop:
                # The store served it; the answer is lost on the way.
                if log:
                    log.write(f"drop {self.command} {self.path}\n")
                    log.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file")
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--fail-every", type=int, default=0)
    ap.add_argument("--log")
    ap.add_argument("--list", metavar="ENDPOINT", help="print the keys under --prefix of --bucket, then exit")
    ap.add_argument("--prefix", default="")
    args = ap.parse_args()
    if args.list:
        s3 = boto3.client("s3", endpoint_url=args.list, region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args.bucket[0], Prefix=args.prefix):
            for obj in page.get("Contents", []):
                print(obj["Key"][len(args.prefix):].lstrip("/"))
        return
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    s3 = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    for bucket in args.bucket:
        s3.create_bucket(Bucket=bucket)
    public = port
    if args.fail_every:
        log = open(args.log, "a") if args.log else None
        public = proxy(port, args.fail_every, log)
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(public))
    os.replace(tmp, args.port_file)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()

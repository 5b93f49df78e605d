#!/usr/bin/env python3
"""A real SMTP server on loopback for the e-mail tests (aiosmtpd).

Every message it accepts is parsed back as a mail client would (Python's
email package, policy.default) and logged as one JSON line: envelope,
headers, the MIME structure, both bodies, and whether every `cid:` image the
HTML refers to is present as an inline part. Faults for the retry tests:

  --start-after S     listen only after S seconds (the server is "down")
  --fail-first N      answer the first N DATA commands with 451 (try later)
  --reject ADDR       answer 550 for mail to ADDR (a permanent failure)
  --stall-at N        never answer the Nth DATA command (a hung server, for
                      the kill -9 test: the sender is then mid-batch)
  --quiet             log only the status and Message-ID of each message (the
                      benchmark: no parsing, so the server keeps up)

Usage: smtp_server.py --log FILE --port-file FILE [faults]
       smtp_server.py --parse FILE.eml...   (the same description of .eml files, one JSON line each)
"""

import argparse
import asyncio
import email
import email.policy
import json
import re
import socket
import sys
import time

from aiosmtpd.controller import Controller


def describe(raw: bytes, envelope) -> dict:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    structure = []

    def walk(part, depth):
        structure.append({"depth": depth, "type": part.get_content_type(),
                          "cid": part.get("Content-ID"),
                          "disposition": part.get_content_disposition()})
        if part.is_multipart():
            for p in part.iter_parts():
                walk(p, depth + 1)

    walk(msg, 0)
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    html_text = html.get_content() if html is not None else ""
    referenced = sorted(set(re.findall(r'src="cid:([^"]+)"', html_text)))
    inline = {}
    for part in msg.walk():
        cid = part.get("Content-ID")
        if cid and part.get_content_type() == "image/png":
            payload = part.get_payload(decode=True) or b""
            inline[cid.strip("<>")] = payload[:8] == b"\x89PNG\r\n\x1a\n"
    return {
        "mail_from": envelope.mail_from if envelope else None,
        "rcpt_tos": envelope.rcpt_tos if envelope else None,
        "message_id": msg["Message-ID"],
        "from": msg["From"],
        "to": msg["To"],
        "subject": msg["Subject"],
        "header_names": [k.lower() for k in msg.keys()],
        "structure": structure,
        "text": text.get_content() if text is not None else None,
        "html": html_text,
        "cids_referenced": referenced,
        "cids_inline_png": inline,
        "size": len(raw),
    }


class Handler:
    def __init__(self, args, log):
        self.args = args
        self.log = log
        self.data_commands = 0

    def write(self, record):
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        n = self.data_commands
        if n == self.args.stall_at:
            self.write({"status": "stalled", "n": n})
            await asyncio.sleep(3600)
        if n <= self.args.fail_first:
            self.write({"status": 451, "n": n})
            return "451 4.3.0 Try again later"
        if self.args.reject and self.args.reject in envelope.rcpt_tos:
            self.write({"status": 550, "n": n, "rcpt_tos": envelope.rcpt_tos})
            return "550 5.1.1 No such user"
        if self.args.quiet:
            m = re.search(rb"^Message-ID: *(<[^>]*>)", envelope.content, re.M | re.I)
            record = {"message_id": m.group(1).decode() if m else None}
        else:
            record = describe(envelope.content, envelope)
        record.update({"status": 250, "n": n})
        self.write(record)
        return "250 2.0.0 Accepted"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--parse":
        for path in sys.argv[2:]:
            with open(path, "rb") as f:
                record = describe(f.read(), None)
            record["path"] = path
            print(json.dumps(record))
        return 0
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--start-after", type=float, default=0.0)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--stall-at", type=int, default=0)
    p.add_argument("--reject", default="")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()

    port = args.port
    if port == 0:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    # The port is known before the server listens, so a test can point the
    # sender at a server that is not up yet.
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(port))
    import os
    os.replace(args.port_file + ".tmp", args.port_file)
    if args.start_after > 0:
        time.sleep(args.start_after)
    controller = Controller(Handler(args, args.log), hostname="127.0.0.1", port=port,
                            data_size_limit=50 * 1024 * 1024)
    controller.start()
    with open(args.log, "a", encoding="utf-8") as f:
        f.write(json.dumps({"status": "listening", "port": port}) + "\n")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    sys.exit(main())

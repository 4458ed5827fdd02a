#!/usr/bin/env python3
"""A stand-in for the Kubernetes API server's TokenReview and SubjectAccessReview
endpoints, for `make bench` (hack/bench.sh): the daemon with metrics.auth asks it
who a scraper is and whether it may read a path, as it asks a real API server.

One token is valid (--token), for one user (--user), who may get every path.
Serves HTTPS on 127.0.0.1 at a free port, written to --port-file; counts the
reviews it answered and prints them on SIGTERM.
"""
import argparse
import http.server
import json
import signal
import ssl
import sys
import threading

ap = argparse.ArgumentParser()
ap.add_argument("--cert", required=True)
ap.add_argument("--key", required=True)
ap.add_argument("--port-file", required=True)
ap.add_argument("--token", required=True)
ap.add_argument("--user", default="system:serviceaccount:monitoring:prometheus")
args = ap.parse_args()
counts = {"tokenreviews": 0, "subjectaccessreviews": 0}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        kind = self.path.rsplit("/", 1)[-1]
        spec = body.get("spec", {})
        if kind == "tokenreviews":
            ok = spec.get("token") == args.token
            status = {"authenticated": ok}
            if ok:
                status["user"] = {"username": args.user, "groups": ["system:authenticated"]}
            else:
                status["error"] = "unknown token"
        elif kind == "subjectaccessreviews":
            status = {"allowed": spec.get("user") == args.user}
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with lock:
            counts[kind] += 1
        out = json.dumps({**body, "status": status}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(args.cert, args.key)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
with open(args.port_file, "w") as f:
    f.write(str(server.server_address[1]))


def stop(*_):
    print(json.dumps(counts), file=sys.stderr, flush=True)
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, stop)
server.serve_forever()

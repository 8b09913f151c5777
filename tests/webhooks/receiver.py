"""A webhook receiver for the tests: every delivery is checked with the reference Standard
Webhooks library (the `standardwebhooks` package from PyPI), not with screenrec's own code.

Usage: receiver.py SECRET LOG [--fail-first N]
Prints the port it listens on (loopback), then appends one JSON line per request to LOG:
{id, timestamp, attempt, status, verified, error, path, event}. With --fail-first N, the first
N attempts of each webhook-id are answered 500.
"""

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("secret")
    parser.add_argument("log")
    parser.add_argument("--fail-first", type=int, default=0)
    args = parser.parse_args()
    verifier = Webhook(args.secret)
    attempts = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            webhook_id = headers.get("webhook-id", "")
            try:
                event = verifier.verify(body, headers)
                verified, error = True, None
            except WebhookVerificationError as e:
                event, verified, error = None, False, str(e)
            with lock:
                attempts[webhook_id] = attempts.get(webhook_id, 0) + 1
                attempt = attempts[webhook_id]
                status = 400 if not verified else 500 if attempt <= args.fail_first else 204
                with open(args.log, "a") as log:
                    log.write(json.dumps({
                        "id": webhook_id,
                        "timestamp": headers.get("webhook-timestamp"),
                        "attempt": attempt,
                        "status": status,
                        "verified": verified,
                        "error": error,
                        "path": self.path,
                        "event": event,
                    }) + "\n")
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""A tiny HTTP sink server for tests: ``python -m tests.e2e.httpsink PORT FILE [DELAY]``.

Each POST carries a JSON array of alerts (the http sink's format); every alert is
appended to FILE as one JSON line and the file is flushed before the 200 answer, so
what the probe counts as delivered is on disk. Killing the process is a crashed sink
(a POST it stored may go unanswered: the probe cannot know, and resends it); SIGUSR1
makes it a sink that is down but answers (503 to every POST, nothing stored) and
SIGUSR2 brings it back; a DELAY (seconds before each answer) makes a slow one.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from threading import Lock

_lock = Lock()
_down = False  # SIGUSR1 / SIGUSR2; read under _lock, so a POST is stored+200 or 503


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    out = open(path, "ab")  # noqa: SIM115 (held for the process's life)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            alerts = json.loads(body)
            with _lock:
                if _down:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                out.write(b"".join(json.dumps(a).encode() + b"\n" for a in alerts))
                out.flush()
                os.fsync(out.fileno())
            if delay:
                time.sleep(delay)  # this test server's own thread: a slow sink
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    def switch(signum: int, frame: object) -> None:
        global _down
        _down = signum == signal.SIGUSR1

    signal.signal(signal.SIGUSR1, switch)
    signal.signal(signal.SIGUSR2, switch)
    server = (HTTPServer if delay else ThreadingHTTPServer)(("127.0.0.1", port), Handler)
    print("READY", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

"""Loopback servers for the judge tests: the real judge server in a subprocess, a fault-injecting proxy in front of
it, and a scripted fault server (FaultServer) for the failures a healthy server never shows.

The proxy forwards to the real server unchanged except where its plan says otherwise for the n-th request
(``"503"``: answer HTTP 503 without forwarding; ``"sleep:S"``: wait S seconds, then forward). It counts the
requests that reached the real server and keeps every request's headers, for the API-key checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class JudgeServerProcess:
    def __init__(self, model_dir: Path, api_key: str):
        env = {**os.environ, "JUDGE_SERVER_API_KEY": api_key}  # not on the command line, where ps shows it
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "scripts/serve_judge.py"), "--model", str(model_dir), "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.log: list[str] = []
        for line in self.process.stdout:  # loading messages come first
            self.log.append(line)
            if line.startswith("listening on "):
                self.url = line.split()[-1]
                break
        else:
            raise RuntimeError(f"judge server did not start: {''.join(self.log)}")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.log.append(line)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # a client that gave up mid-answer is expected here
        pass


class FaultyProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.plan: dict[int, str] = {}
        self.seen = 0
        self.forwarded = 0
        self.headers: list[dict[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                proxy.seen += 1
                proxy.headers.append(dict(self.headers))
                action = proxy.plan.get(proxy.seen, "")
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if action == "503":
                    self.send_response(503)
                    self.end_headers()
                    return
                if action.startswith("sleep:"):
                    time.sleep(float(action.split(":")[1]))
                request = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body,
                                                 headers={k: v for k, v in self.headers.items()
                                                          if k.lower() in ("content-type", "authorization")})
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as error:
                    status, payload = error.code, error.read()
                proxy.forwarded += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its time-out)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reset(self, plan: dict[int, str] | None = None) -> None:
        self.plan, self.seen, self.forwarded, self.headers = dict(plan or {}), 0, 0, []

    def stop(self) -> None:
        self.server.shutdown()


class FaultServer:
    """A chat-completions endpoint that answers the n-th request as ``plan[n - 1]`` (the last entry repeats).

    Actions: ``"ok:TEXT"`` (a well-formed reply), ``"hang"`` (answers nothing until stopped), ``"reset"`` (drops the
    connection without an answer), ``"status:CODE"`` or ``"status:CODE:RETRY_AFTER"``, ``"notjson"`` (HTTP 200
    with a body that is not JSON), ``"nofield"`` (JSON without ``choices``), ``"echo:CODE"`` (HTTP CODE with a body
    echoing the request's Authorization header, all its headers and its body, as a careless proxy does). Request times
    are kept in :attr:`times`.
    """

    def __init__(self, plan: list[str]):
        self.plan, self.times = plan, []
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                request_body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                server.times.append(time.monotonic())
                action = server.plan[min(len(server.times), len(server.plan)) - 1]
                kind, _, arg = action.partition(":")
                if kind == "hang":
                    server._stop.wait()
                    return
                if kind == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)  # SHUT_RDWR: the client sees the connection dropped
                    return
                status, headers = 200, {}
                body = b""
                if kind == "status":
                    code, _, retry_after = arg.partition(":")
                    status, body = int(code), b'{"error": "scripted"}'
                    if retry_after:
                        headers["Retry-After"] = retry_after
                elif kind == "notjson":
                    body = b"<html>502 from a load balancer</html>"
                elif kind == "nofield":
                    body = b'{"object": "chat.completion"}'
                elif kind == "echo":
                    status = int(arg)
                    body = json.dumps({"authorization": self.headers["Authorization"], "headers": dict(self.headers),
                                       "body": request_body}).encode()
                else:
                    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": arg}}]}).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

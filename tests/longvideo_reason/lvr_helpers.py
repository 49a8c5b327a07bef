"""Helpers for the LongVideo-Reason pipeline tests: videos whose frames show their own index, and a loopback
chat-completions endpoint that answers from a script.

The scripted endpoint stands in for a model where a test needs exact replies (the filters' decisions, the client's
retries): a random tiny model cannot be made to answer a question right or wrong on purpose.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Union

import longrl  # noqa: F401  (before anything imports torchvision)

from longrl.data.synthetic_scenes import write_mp4
from index_frames import index_frame

REPO = Path(__file__).resolve().parents[2]

FRAME_SIDE = 64


def write_index_video(path: Path, num_frames: int, fps: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, (index_frame(i, FRAME_SIDE) for i in range(num_frames)), fps)
    return path


Reply = Union[str, int]  # a reply text, or an HTTP status to answer with instead


class ScriptedEndpoint:
    """``POST /v1/chat/completions`` answered by ``script(request_body) -> reply text or HTTP status``.

    Every request body is kept in :attr:`requests` (the tests inspect prompts and image parts).
    """

    def __init__(self, script: Callable[[dict[str, Any]], Reply]):
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with endpoint._lock:
                    endpoint.requests.append(body)
                    reply = endpoint.script(body)
                if isinstance(reply, int):
                    payload, status = {"error": {"message": f"scripted {reply}"}}, reply
                else:
                    message = {"role": "assistant", "content": reply}
                    payload, status = {"choices": [{"index": 0, "message": message}]}, 200
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def prompt_text(body: dict[str, Any]) -> str:
    """The text of a chat request's (single) user message, whether plain or a list of parts."""
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else "".join(p["text"] for p in content if p["type"] == "text")

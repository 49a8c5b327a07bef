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
import numpy as np

from longrl.data.synthetic_scenes import write_mp4

REPO = Path(__file__).resolve().parents[2]

INDEX_BITS = 8
FRAME_SIDE = 64


def index_frame(index: int) -> np.ndarray:
    """A frame showing ``index`` in binary: INDEX_BITS vertical bars, white for 1 (most significant bit left)."""
    bar = FRAME_SIDE // INDEX_BITS
    image = np.zeros((FRAME_SIDE, FRAME_SIDE, 3), dtype=np.uint8)
    for bit in range(INDEX_BITS):
        if index >> (INDEX_BITS - 1 - bit) & 1:
            image[:, bit * bar:(bit + 1) * bar] = 255
    return image


def read_index(frame: np.ndarray) -> int:
    """The index an :func:`index_frame` shows, read back from decoded pixels."""
    bar = frame.shape[1] // INDEX_BITS
    bits = [frame[:, bit * bar + bar // 2].mean() > 127 for bit in range(INDEX_BITS)]
    return sum(1 << (INDEX_BITS - 1 - bit) for bit, on in enumerate(bits) if on)


def write_index_video(path: Path, num_frames: int, fps: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_mp4(path, (index_frame(i) for i in range(num_frames)), fps)
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

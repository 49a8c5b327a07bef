"""Serve a local Hugging Face chat model behind a minimal OpenAI-compatible API, as a judge for open-ended rewards.

For machines without vLLM (whose ``vllm serve`` is the production choice): ``POST /v1/chat/completions`` with
``messages``, ``max_tokens``, ``temperature``, ``seed`` and ``logit_bias`` (token id -> bias added to the logits),
and ``GET /v1/models``. Requests are answered one generation at a time. With ``--api-key`` (or
``$JUDGE_SERVER_API_KEY``) a request must carry ``Authorization: Bearer <key>``; the key is never logged.

    python scripts/serve_judge.py --model /models/Qwen2.5-7B-Instruct --port 8000
    # then: worker.reward.judge.base_url=http://127.0.0.1:8000/v1 worker.reward.judge.model=judge

With ``--port 0`` a free port is chosen; the first line printed is ``listening on http://HOST:PORT/v1``.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from longrl.models import adapter_for_model_dir


class _LogitBias(LogitsProcessor):
    def __init__(self, bias: dict[int, float]):
        self.ids = torch.tensor(list(bias), dtype=torch.long)
        self.values = torch.tensor(list(bias.values()), dtype=torch.float)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        scores[:, self.ids] += self.values.to(scores.dtype)
        return scores


class ChatModel:
    """The model and tokenizer of ``model_dir``, answering chat requests one at a time."""

    def __init__(self, model_dir: str, name: str, trust_remote_code: bool = False):
        adapter = adapter_for_model_dir(model_dir)
        processor = adapter.load_processor(model_dir, trust_remote_code)
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.model = adapter.load_model(model_dir, trust_remote_code=trust_remote_code).eval()
        self.name = name
        self._lock = threading.Lock()

    @torch.no_grad()
    def complete(self, request: dict[str, Any]) -> tuple[str, int, int]:
        """(reply text, prompt tokens, completion tokens) for one chat completion request."""
        text = self.tokenizer.apply_chat_template(request["messages"], tokenize=False, add_generation_prompt=True)
        ids = self.tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        temperature = float(request.get("temperature", 1.0))
        bias = {int(k): float(v) for k, v in (request.get("logit_bias") or {}).items()}
        with self._lock:
            if request.get("seed") is not None:
                torch.manual_seed(int(request["seed"]))
            out = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=int(request.get("max_tokens", 64)),
                do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                logits_processor=LogitsProcessorList([_LogitBias(bias)] if bias else []),
                pad_token_id=self.tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True), ids.shape[1], int(new.shape[0])


def make_handler(chat: ChatModel, api_key: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if api_key and self.headers.get("Authorization") != f"Bearer {api_key}":
                self._send(401, {"error": {"message": "missing or wrong API key", "type": "invalid_request_error"}})
                return False
            return True

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": chat.name, "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            try:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                reply, prompt_tokens, completion_tokens = chat.complete(request)
            except (ValueError, KeyError, TypeError) as error:
                self._send(400, {"error": {"message": f"bad request: {error}", "type": "invalid_request_error"}})
                return
            self._send(200, {
                "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": chat.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}})

        def log_message(self, format: str, *args: Any) -> None:  # the request line only, never headers
            print(f"{self.address_string()} {format % args}", flush=True)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a Hugging Face model directory")
    parser.add_argument("--name", default="judge", help="the model name clients send")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=os.environ.get("JUDGE_SERVER_API_KEY"))
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the model directory's own Python code run (refused without it)")
    args = parser.parse_args()
    model = ChatModel(args.model, args.name, args.trust_remote_code)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(model, args.api_key))
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

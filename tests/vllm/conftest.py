"""vLLM tests run where vLLM is installed (the `make test-vllm` environment); elsewhere they are skipped."""

import os

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test` runs these in .venv-vllm")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per engine: the tiny models need little

"""vLLM tests run where vLLM is installed (the `make test-vllm` environment); elsewhere each module skips itself.

(The folder is not named ``vllm``: with ``tests/`` on ``sys.path`` it would shadow the real package.)"""

import os

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per engine: the tiny models need little

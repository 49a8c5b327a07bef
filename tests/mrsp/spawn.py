"""Run a function on N gloo ranks and bring back each rank's return value: in fresh processes, or for a world of one
in this process."""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world: int, port: int, out_dir: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = fn(*args)
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"{rank}.pkl").write_bytes(pickle.dumps(result))


def _in_this_process(fn: Callable[..., Any], args: tuple) -> Any:
    """``fn(*args)`` as rank 0 of a gloo world of one, here: the rank's environment variables and group exist for the
    call only, and whatever it draws from torch's global random state is given back afterwards."""
    rank_env = dict(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1")
    saved = {key: os.environ.get(key) for key in rank_env}
    os.environ.update(rank_env)
    try:
        with torch.random.fork_rng(devices=[]):
            dist.init_process_group("gloo", rank=0, world_size=1)
            try:
                result = fn(*args)
            finally:
                dist.destroy_process_group()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return pickle.loads(pickle.dumps(result))  # a copy, as a spawned rank's result comes back


def run_on_ranks(world: int, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """``fn(*args)`` on ``world`` ranks joined in one gloo group; the results by rank (``fn`` must be importable).

    A world of one runs in this process: a spawned process would spend most of the call importing torch and
    transformers again (about 8 s on 2 cores), and a single rank has no peer whose process it must be apart from."""
    if world == 1:
        return [_in_this_process(fn, args)]
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_entry, args=(world, _free_port(), out_dir, fn, args), nprocs=world, join=True,
                           start_method="spawn")
        return [pickle.loads(Path(out_dir, f"{rank}.pkl").read_bytes()) for rank in range(world)]

"""Run a function on N gloo ranks and bring back each rank's return value: in fresh processes (forked from a server
that has imported torch, transformers and longrl once), or for a world of one in this process."""

from __future__ import annotations

import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _entry(rank: int, world: int, port: int, out_dir: str, env: dict[str, str], fn: Callable[..., Any],
           args: tuple) -> None:
    # As a fresh process would start: the caller's environment of now (not the fork server's of when it started) and
    # unseeded random states of its own (a fork shares the server's; Python's own `random` is reseeded by the fork).
    os.environ.clear()
    os.environ.update(env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.seed()
    np.random.seed()
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


# What every rank imports before it runs anything: loaded once, by multiprocessing's fork server.
_PRELOADED = ["torch.distributed", "longrl.models", "longrl.mrsp", "longrl.workers.actor"]


def run_on_ranks(world: int, fn: Callable[..., Any], *args: Any) -> list[Any]:
    """``fn(*args)`` on ``world`` ranks joined in one gloo group; the results by rank (``fn`` must be importable).

    A world of one runs in this process: a spawned process would spend most of the call importing torch and
    transformers again (about 8 s on 2 cores), and a single rank has no peer whose process it must be apart from.

    Larger worlds run in fresh processes forked from multiprocessing's fork server, which is started once per test
    session (as a new interpreter, never a fork of this one) and imports :data:`_PRELOADED` before it forks anything:
    each rank starts from that freshly imported state, as a spawned one would after its own imports, without paying
    for them on every call."""
    if world == 1:
        return [_in_this_process(fn, args)]
    mp.set_forkserver_preload(_PRELOADED)  # takes effect when the server starts, on the first call
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_entry, args=(world, _free_port(), out_dir, dict(os.environ), fn, args), nprocs=world,
                           join=True, start_method="forkserver")
        return [pickle.loads(Path(out_dir, f"{rank}.pkl").read_bytes()) for rank in range(world)]

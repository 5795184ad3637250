"""Training on several processes with PyTorch's DistributedDataParallel, started by ``torchrun``.

``torchrun --standalone --nproc_per_node N -m neoqa.cli train --kind sneon --data D --out M`` starts N copies;
each joins the process group here (gloo for CPU tensors, NCCL for CUDA ones, one backend per
device type), reads the same data, makes the same split and normalisation, and trains its share
of every minibatch; DDP averages the gradients, so the weights stay the same on every rank and
the run is the single-process fit with its minibatches spread over processes
(``models.sets.loop``). Only rank 0 writes the model folder; the others wait for it.
"""

from __future__ import annotations

import os

from neoqa import threads


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting the same variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init() -> tuple[int, int]:
    """Join the process group torchrun describes; (rank, world size). Each process gets its share
    of the cores as its thread budget unless one was set."""
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    if "OMP_NUM_THREADS" not in os.environ:
        threads.set_budget(max(1, threads.cores() // local))
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def close() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

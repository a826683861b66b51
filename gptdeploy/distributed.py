"""Multi-process training through torchrun: process-group setup and the check that ranks stayed in sync."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from gptdeploy.errors import TrainingError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0: the process that writes files and reports."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (gloo on CPU, nccl on GPU), if any."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    wanted = torch.device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext(device=wanted)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if wanted.type == "cuda":
        wanted = torch.device("cuda", local_rank)
        torch.cuda.set_device(wanted)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, device=wanted)


def teardown(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.barrier()  # no rank tears gloo down while another still talks to it (that aborts the process)
        dist.destroy_process_group()


def any_rank(context: DistContext, flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank, so all ranks take the same branch."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def parameter_checksum(model: nn.Module) -> float:
    """A position-weighted sum of all parameters: differs between ranks as soon as any weight does."""
    total = torch.zeros((), dtype=torch.float64)
    for index, param in enumerate(model.parameters(), start=1):
        total += index * param.detach().to("cpu", torch.float64).sum()
    return float(total)


def check_in_sync(context: DistContext, model: nn.Module) -> list[float]:
    """Every rank's checksum; raises if any rank's weights differ from rank 0's."""
    checksum = parameter_checksum(model)
    if not context.enabled:
        return [checksum]
    gathered: list[float | None] = [None] * context.world_size
    dist.all_gather_object(gathered, checksum)
    if any(value != gathered[0] for value in gathered):
        raise TrainingError(f"ranks out of sync after training: parameter checksums {gathered}")
    return [float(v) for v in gathered]

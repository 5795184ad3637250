"""The one training loop of the set networks, shared by fitting (epochs, early stopping on a
validation split), fine-tuning and online updates (a number of steps, an optional pull towards
the starting weights), and the one inference loop. Every minibatch is moved to the model's device
here; nothing else in the set models touches devices."""

from __future__ import annotations

import numpy as np
import torch

from neoqa.features import views as features
from neoqa.memory import Releaser, release
from neoqa.models.sets.networks import ORDER_STAT
from neoqa.progress import progress_bar


def pick_device(wanted: str = "cpu") -> torch.device:
    """``cpu`` (the default), ``cuda`` (an error if there is none) or ``auto`` (CUDA when present)."""
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if wanted == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA device")
    if wanted not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {wanted!r} (cpu, cuda or auto)")
    return torch.device(wanted)


def distributed() -> tuple[int, int]:
    """(rank, world size) of the DistributedDataParallel process group, (0, 1) without one
    (``neoqa.parallel.ddp`` starts it under torchrun)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def for_training(net, device):
    """The network to train: wrapped in DistributedDataParallel when several processes share the
    work (gradients averaged, so every rank keeps the same weights), else itself."""
    if distributed()[1] == 1:
        return net
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=[device] if device.type == "cuda" else None)


class RankShares(torch.utils.data.Sampler):
    """This process's share of every shuffled minibatch: the ranks draw the same permutation (the
    same seed), cut it into the single process's minibatches and each takes every world-th sheet,
    so together they train on exactly the minibatches one process would. A last minibatch too small
    to give every rank two sheets (batch norm needs two) is dropped."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, rank: int, world: int):
        self.n, self.batch_size, self.generator, self.rank, self.world = n, batch_size, generator, rank, world

    def __iter__(self):
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        for s in range(0, self.n, self.batch_size):
            whole = perm[s:s + self.batch_size]
            if len(whole) < 2 * self.world:
                break
            yield whole[self.rank::self.world]

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + (rest >= 2 * self.world)


def loader(data: dict, target: torch.Tensor, generator: torch.Generator, batch_size: int, shard: bool = False):
    """Padded minibatches (images, scalars, mask, fixed, target) of flat set tensors, shuffled by a
    seeded generator; with ``shard`` and several processes, this process's share of each."""
    def collate(items):
        idx = np.array([int(i) for i, _ in items])
        return features.padded_batch(data["images"], data["scalars"], data["offsets"], data["fixed"], idx,
                                     min_k=ORDER_STAT) + (torch.stack([t for _, t in items]),)

    ids = torch.utils.data.TensorDataset(torch.arange(len(target)), target)
    rank, world = distributed()
    if shard and world > 1:
        return torch.utils.data.DataLoader(ids, batch_sampler=RankShares(len(target), batch_size, generator, rank,
                                                                         world), collate_fn=collate)
    return torch.utils.data.DataLoader(ids, batch_size=batch_size, shuffle=True, generator=generator,
                                       collate_fn=collate)


def step(net, minibatch, opt, loss_fn, device, penalty=None) -> float:
    """One optimiser step on a minibatch; ``penalty()`` adds to the loss. Returns the loss."""
    img, sc, mask, fx, yb = (t.to(device) for t in minibatch)
    opt.zero_grad()
    loss = loss_fn(net(img, sc, mask, fx), yb)
    if penalty is not None:
        loss = loss + penalty()
    loss.backward()
    opt.step()
    return loss.item()


def train_epochs(net, batches, opt, sched, loss_fn, device, *, epochs: int, patience: int, validate=None,
                 progress: bool = False, desc: str = "train") -> list:
    """Epochs over ``batches`` with a learning-rate schedule; after each, the validation loss
    (``validate()``, else the epoch's training loss) decides early stopping, and the best weights
    are restored at the end. Returns the history."""
    plain = getattr(net, "module", net)          # a DistributedDataParallel wrapper's network
    best, best_state, bad = np.inf, None, 0
    history = []
    bar = progress_bar(range(epochs), desc=desc, unit="epoch", disable=not progress)
    freed = Releaser()                           # minibatches of many shapes fragment the heap
    for epoch in bar:
        net.train()
        total, seen = 0.0, 0
        for minibatch in batches:
            total += step(net, minibatch, opt, loss_fn, device) * len(minibatch[-1])
            seen += len(minibatch[-1])
            freed.tick()
        sched.step()
        vloss = validate() if validate is not None else total / seen
        history.append({"epoch": epoch, "train_loss": total / seen, "val_loss": vloss})
        bar.set_postfix(train=f"{total / seen:.4f}", val=f"{vloss:.4f}")
        if vloss < best - 1e-4:
            best, bad = vloss, 0
            best_state = {k: v.detach().clone() for k, v in plain.state_dict().items()}
        else:
            bad += 1
            if bad >= patience:
                break
    if best_state is not None:
        plain.load_state_dict(best_state)
    return history


def train_steps(net, batches, opt, loss_fn, device, *, steps: int, anchor: float = 0.0, skip_lone: bool = True) -> None:
    """``steps`` optimiser steps, cycling over ``batches``; ``anchor`` > 0 pulls the weights towards
    where they started (L2-SP); a lone-sheet remainder is skipped (batch norm needs two samples)."""
    start = [p.detach().clone() for p in net.parameters()]
    penalty = (lambda: anchor * sum(((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), start))) if anchor \
        else None
    net.train()
    done = 0
    freed = Releaser()
    while done < steps:
        for minibatch in batches:
            if len(minibatch[-1]) < 2 and skip_lone:
                continue
            step(net, minibatch, opt, loss_fn, device, penalty)
            freed.tick()
            done += 1
            if done >= steps:
                break
    net.eval()


@torch.inference_mode()
def logits(net, data: dict, device, chunk: int = 1024, by_length: bool = False) -> torch.Tensor:
    """The network's logits for every sheet of flat set tensors ``data`` (on the CPU).

    Every observation goes through the shared encoder once, straight from the flat arrays (slices
    of ``chunk`` sheets in file order: no padding, no copies); only the embeddings are padded for
    the pooling. ``by_length`` pools sheets of similar k together (the order is restored after), so
    a chunk is padded to its own longest sheet rather than to a long one that happens to share it.
    Each sheet's logit is its own, whatever its chunk-mates (padding is masked), equal to within
    float rounding; in file order the encoder sees the very matrices the padded forward would."""
    net.eval()
    n = len(data["fixed"])
    if n == 0:
        return torch.zeros(0)
    off = data["offsets"]
    rows = torch.cat([net.encoder.embed(data["images"][a:b].to(device), data["scalars"][a:b].to(device))
                      for a, b in ((int(off[s]), int(off[min(s + chunk, n)])) for s in range(0, n, chunk))])
    order = np.argsort(np.diff(off), kind="stable") if by_length else np.arange(n)
    out = []
    for s in range(0, n, chunk):
        idx = order[s:s + chunk]
        mask, obs = features.padded_rows(off, idx, min_k=ORDER_STAT)
        mask = torch.from_numpy(mask).to(device)
        out.append(net.decide(*net.place(rows[torch.from_numpy(obs)], mask), mask,
                              data["fixed"][torch.from_numpy(idx)].to(device)).cpu())
    result = torch.empty(n, dtype=out[0].dtype)
    result[torch.from_numpy(order)] = torch.cat(out)
    del rows, out
    release()                                    # the chunks' activations, back to the system
    return result

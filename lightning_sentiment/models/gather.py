"""Per-review rows from every DDP rank, for the test reports."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


def gather_rows(
    module: pl.LightningModule, index: torch.Tensor, probs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's (corpus indices (N,), P(positive) (N,)) joined with every other rank's.

    All ranks must call this (it gathers); shards may differ in size, so each is padded
    to the largest before `all_gather` and cut back after.
    """
    if module.trainer.world_size == 1:
        return index, probs
    sizes = module.all_gather(torch.tensor(len(index), device=module.device))  # (world,)
    width = int(sizes.max())
    padded = torch.full((width, 2), -1.0, dtype=torch.float64, device=module.device)
    padded[: len(index)] = torch.stack([index.double(), probs.double()], dim=1).to(module.device)
    gathered = module.all_gather(padded).reshape(-1, width, 2)  # (world, width, 2)
    rows = torch.cat([g[:n] for g, n in zip(gathered, sizes.tolist(), strict=True)]).cpu()
    return rows[:, 0].long(), rows[:, 1].float()

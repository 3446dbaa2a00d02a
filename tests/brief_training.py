"""A few hundred Adam steps on MNIST: a user's model, trained enough that an accuracy figure
means something, in a few seconds (the import tests' stand-in for a model of their own)."""

import numpy as np
import torch
from torch import nn

from lenet_fpga.model import mnist


def train_briefly(model, train: mnist.Split, steps: int, seed: int = 0) -> nn.Module:
    """``steps`` Adam steps of 64 MNIST training images: a few hundred give 95 to 97 %."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    images = torch.from_numpy(train.images.copy()).float().unsqueeze(1) / 255
    labels = torch.from_numpy(train.labels.astype(np.int64))
    model.train()
    for _ in range(steps):
        batch = torch.randint(0, len(labels), (64,), generator=generator)
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
        optimiser.step()
    return model.eval()

"""What chain a state dict's weights were trained for, as far as test images can tell.

A state dict holds weights only: the same tensors fit a network that max-pools or one that
average-pools, one with ReLU or one with tanh. Read as the hardware computes them (valid convs,
ReLU, max-pool), weights trained for another chain lose accuracy and nothing says so (an
average-pool model imported as 83.6 % instead of its 87.4 %, 37.7 % after rounding). So
``import`` measures the float accuracy of every reading on test images and refuses weights that
another reading fits better beyond doubt: that model computes something the hardware does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import golden
from ..network import Network

HARDWARE = ("max", "relu")  # the reading the hardware computes
# tanh stands for the saturating activations (a sigmoid network reads alike); each reading costs
# a float pass over the images
READINGS = (HARDWARE, ("max", "tanh"), ("average", "relu"), ("average", "tanh"))
IMAGES = 2_000
TRAINED = 0.5  # a reading below this is not one the weights were trained for (chance: 0.1)
SIGMAS = 4  # how sure the images must be that another reading fits better


@dataclass(frozen=True)
class Readings:
    """Each reading's loss (cross-entropy) and whether it is right, per test image."""

    loss: dict[tuple[str, str], np.ndarray]
    right: dict[tuple[str, str], np.ndarray]

    @property
    def n_images(self) -> int:
        return len(self.right[HARDWARE])

    @property
    def accuracy(self) -> dict[tuple[str, str], float]:
        return {reading: float(right.mean()) for reading, right in self.right.items()}

    @property
    def best_other(self) -> tuple[str, str]:
        return min((r for r in self.loss if r != HARDWARE), key=lambda r: self.loss[r].mean())

    @property
    def other_chain(self) -> bool:
        """Whether another reading fits the weights better than the hardware's beyond doubt: its
        loss lower on the same images by ``SIGMAS`` standard errors (a paired test: the loss
        tells readings apart on far fewer images than the accuracy does), and its accuracy that
        of a trained model."""
        other = self.best_other
        gain = self.loss[HARDWARE] - self.loss[other]
        error = gain.std() / np.sqrt(len(gain))
        return self.accuracy[other] >= TRAINED and gain.mean() > SIGMAS * max(error, 1e-12)

    def to_dict(self) -> dict:
        def name(reading):
            return f"{reading[0]}-pool {reading[1]}"

        return {"n_images": self.n_images,
                "accuracy": {name(r): round(value, 4) for r, value in self.accuracy.items()},
                "loss": {name(r): round(float(value.mean()), 4) for r, value in self.loss.items()}}


def measure(images, labels, params, network: Network, n: int = IMAGES) -> Readings:
    """Every reading on the first ``n`` of ``images``."""
    images, labels = images[:n], np.asarray(labels[:n])
    loss, right = {}, {}
    for reading in READINGS:
        logits = golden.float_forward(images, params, network, *reading)
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss[reading] = -log_p[np.arange(len(labels)), labels]
        right[reading] = logits.argmax(axis=1) == labels
    return Readings(loss, right)


def describe(reading: tuple[str, str]) -> str:
    pool, activation = reading
    return f"{pool}-pooling and {activation}"

"""What the RTL tests share: the bit-exactness check of a simulation run and the mixed stimulus
of digits and noise."""

import numpy as np

from lenet_fpga.model import images
from lenet_fpga.model.network import Network

SAMPLES = images.load_image_set()


def check_bit_exact(run, label: str) -> None:
    """Every logit of every image equal to the golden model's; else the first image that differs."""
    bad = np.flatnonzero(~run.matches)
    assert bad.size == 0, (f"{label}: {bad.size} of {len(run.matches)} images differ; first image {bad[0]}: "
                           f"rtl {run.rtl_logits[bad[0]].tolist()} golden {run.golden_logits[bad[0]].tolist()}")


def stimulus(network: Network, n: int, seed: int) -> np.ndarray:
    """Shipped digits (centred in a larger input) and random pixels, alternately."""
    digits = images.fit(SAMPLES.images[:n], network.image_size)
    noise = np.random.default_rng(seed).integers(0, 256, digits.shape, dtype=np.uint8)
    return np.where(np.arange(n)[:, None, None] % 2 == 0, digits, noise).astype(np.uint8)

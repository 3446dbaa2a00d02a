"""LeNet-5 geometry: the layer list shared by the trainer, the golden model and the generator."""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SIZE = 28
N_CLASSES = 10


@dataclass(frozen=True)
class ConvLayer:
    """KxK valid convolution, bias, requantize, ReLU, then 2x2 stride-2 max-pool."""

    name: str
    in_channels: int
    out_channels: int
    in_size: int  # square input feature map
    kernel: int = 5
    pool: int = 2

    @property
    def conv_size(self) -> int:
        return self.in_size - self.kernel + 1

    @property
    def out_size(self) -> int:
        return self.conv_size // self.pool

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels, self.kernel, self.kernel)

    @property
    def macs(self) -> int:
        return self.conv_size**2 * self.out_channels * self.in_channels * self.kernel**2

    @property
    def out_features(self) -> int:
        return self.out_channels * self.out_size**2


@dataclass(frozen=True)
class LinearLayer:
    """Fully connected layer. Hidden layers requantize and ReLU; the last keeps the accumulator."""

    name: str
    in_features: int
    out_features: int
    last: bool = False

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    @property
    def macs(self) -> int:
        return self.in_features * self.out_features


LENET5 = (
    ConvLayer("conv1", in_channels=1, out_channels=6, in_size=IMAGE_SIZE),
    ConvLayer("conv2", in_channels=6, out_channels=16, in_size=12),
    LinearLayer("fc1", 16 * 4 * 4, 120),
    LinearLayer("fc2", 120, 84),
    LinearLayer("fc3", 84, N_CLASSES, last=True),
)


def parameter_shapes(layers=LENET5) -> dict[str, tuple[int, ...]]:
    """State-dict names and shapes, in order: conv1.weight, conv1.bias, ..., fc3.bias."""
    shapes = {}
    for layer in layers:
        shapes[f"{layer.name}.weight"] = layer.weight_shape
        shapes[f"{layer.name}.bias"] = (layer.weight_shape[0],)
    return shapes

"""tracecc.vision: datasets (MNIST) and transforms, as torchvision."""

from . import datasets, transforms  # noqa: F401

"""Image transforms: Compose, ToTensor, Normalize, Lambda (torchvision.transforms).

Images are numpy uint8 arrays (H, W) or (H, W, C) where torchvision would hand out PIL
images; anything np.asarray understands (a PIL image included) works the same way.

Besides __call__ on one image, ToTensor, Normalize and Compose of them offer
`apply_batch` on a stack of images (N, H, W[, C]): the same arithmetic on every element,
so the values equal stacking the per-image results. Datasets use it to transform a whole
batch at once. Lambda has no batch form (the function may not be elementwise).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .. import _functions as T
from .._tensor import Tensor
from ..creation import as_tensor, tensor
from ..runtime import dtypes
from ..runtime.errors import DTypeError, ShapeError


class Compose:
    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    @property
    def batchable(self) -> bool:
        return all(getattr(t, "batchable", False) for t in self.transforms)

    def apply_batch(self, imgs):
        for t in self.transforms:
            imgs = t.apply_batch(imgs)
        return imgs

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"    {t}\n" for t in self.transforms) + ")"


class ToTensor:
    """(H, W[, C]) image -> (C, H, W) tensor; uint8 scaled to float32 in [0, 1], other dtypes
    kept as they are (as torchvision)."""

    batchable = True

    def __call__(self, pic) -> Tensor:
        arr = np.asarray(pic)
        if arr.ndim not in (2, 3):
            raise ShapeError(f"ToTensor: pic should be 2 or 3 dimensional, got {arr.ndim} dimensions")
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return self._convert(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def apply_batch(self, pics) -> Tensor:
        arr = np.asarray(pics)
        arr = arr[:, None] if arr.ndim == 3 else np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
        return self._convert(arr)

    @staticmethod
    def _convert(chw: np.ndarray) -> Tensor:
        if chw.dtype == np.uint8:
            return T.div(as_tensor(chw).float(), 255)
        return as_tensor(chw)

    def __repr__(self) -> str:
        return "ToTensor()"


class Normalize:
    """(x - mean) / std per channel, on a (..., C, H, W) float tensor."""

    batchable = True

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        self.mean, self.std, self.inplace = tuple(mean), tuple(std), inplace
        if any(s == 0 for s in self.std):
            raise ValueError(f"Normalize: std evaluated to zero after conversion to a float, "
                             f"leading to division by zero (std={self.std})")

    def __call__(self, tensor_: Tensor) -> Tensor:
        if not isinstance(tensor_, Tensor):
            raise TypeError(f"Normalize: input should be a tensor, got {type(tensor_).__name__}")
        if not tensor_.dtype.is_floating_point:
            raise DTypeError(f"Normalize: input tensor should be a float tensor, got {tensor_.dtype}")
        if tensor_.ndim < 3:
            raise ShapeError(f"Normalize: expected a tensor image of size (..., C, H, W), got "
                             f"shape {list(tensor_.shape)}")
        mean = T.reshape(tensor(self.mean, dtype=tensor_.dtype), (-1, 1, 1))
        std = T.reshape(tensor(self.std, dtype=tensor_.dtype), (-1, 1, 1))
        out = T.div(T.sub(tensor_, mean), std)
        return tensor_.copy_(out) if self.inplace else out

    apply_batch = __call__  # (N, C, H, W) broadcasts the same way

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


class Lambda:
    def __init__(self, lambd: Callable):
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self) -> str:
        return "Lambda()"


class ConvertImageDtype:
    """A float dtype: integer images are scaled to [0, 1] (the uint8 case of ToTensor)."""

    batchable = True

    def __init__(self, dtype):
        self.dtype = dtypes.get_dtype(dtype)

    def __call__(self, image: Tensor) -> Tensor:
        if image.dtype is dtypes.uint8 and self.dtype.is_floating_point:
            return T.div(image.to(self.dtype), 255)
        return image.to(self.dtype)

    apply_batch = __call__

"""Conv1d and Conv2d (stride, padding incl. 'same'/'valid' and padding_mode, dilation,
groups), computed by im2col + matmul in nn/_windows.py."""

from __future__ import annotations


from ..creation import empty
from ..runtime.errors import InvalidArgumentError
from . import functional as F
from . import init
from ._windows import _pair, _same_padding, _single
from .module import Module
from .parameter import Parameter


class _ConvNd(Module):
    _dims = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None):
        super().__init__()
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise InvalidArgumentError(f"{type(self).__name__}: in_channels ({in_channels}) and "
                                       f"out_channels ({out_channels}) must be divisible by "
                                       f"groups ({groups})")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise InvalidArgumentError(f"padding_mode must be one of zeros, reflect, replicate, "
                                       f"circular, got {padding_mode!r}")
        tup = _pair if self._dims == 2 else (lambda v, name: (_single(v, name),))
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = tup(kernel_size, "kernel_size")
        self.stride = tup(stride, "stride")
        self.padding = padding if isinstance(padding, str) else tup(padding, "padding")
        self.dilation = tup(dilation, "dilation")
        self.groups, self.padding_mode = groups, padding_mode
        self.weight = Parameter(empty((out_channels, in_channels // groups) + self.kernel_size,
                                      dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.default_weight_and_bias_(self.weight, self.bias)

    def _explicit_padding(self, input):
        """For padding_mode != 'zeros': pad first with that mode, then convolve unpadded."""
        if self.padding_mode == "zeros":
            return input, self.padding
        if self.padding == "valid":
            return input, 0
        if self.padding == "same":
            amounts = _same_padding(((1,) * (2 - self._dims)) + self.kernel_size,
                                    ((1,) * (2 - self._dims)) + self.dilation)[:2 * self._dims]
        else:
            amounts = tuple(p for p in reversed(self.padding) for _ in range(2))
        return F.pad(input, amounts, mode=self.padding_mode), 0

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._dims:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else \
                f", padding={self.padding}"
        if self.dilation != (1,) * self._dims:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s


class Conv2d(_ConvNd):
    _dims = 2

    def forward(self, input):
        x, padding = self._explicit_padding(input)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)


class Conv1d(_ConvNd):
    _dims = 1

    def forward(self, input):
        x, padding = self._explicit_padding(input)
        return F.conv1d(x, self.weight, self.bias, self.stride, padding, self.dilation, self.groups)

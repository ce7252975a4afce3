"""Conv1d, Conv2d (stride, padding incl. 'same'/'valid' and padding_mode, dilation, groups)
and ConvTranspose2d, computed by im2col + matmul in nn/_windows.py."""

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

    _transposed = False

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
        # a transposed conv's weight is (in, out/groups, ...): the conv it is the gradient of
        channels = (in_channels, out_channels // groups) if self._transposed else \
            (out_channels, in_channels // groups)
        self.weight = Parameter(empty(channels + self.kernel_size, dtype=dtype, device=device))
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


class ConvTranspose2d(_ConvNd):
    """The gradient of a Conv2d with respect to its input, as a layer (upsampling)."""
    _dims, _transposed = 2, True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None):
        if padding_mode != "zeros" or isinstance(padding, str):
            raise InvalidArgumentError(f"ConvTranspose2d: only padding_mode='zeros' and integer "
                                       f"padding are supported (as in PyTorch), got "
                                       f"padding_mode={padding_mode!r}, padding={padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias, padding_mode, device, dtype)
        self.output_padding = _pair(output_padding, "output_padding")

    def _output_padding(self, input, output_size):
        """output_size (PyTorch's forward argument) picks output_padding: the size must lie
        between the smallest output and that plus stride - 1."""
        if output_size is None:
            return self.output_padding
        size = tuple(output_size)[-2:]
        pads = []
        for i in range(2):
            smallest = ((input.shape[-2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)
            if not smallest <= size[i] < smallest + self.stride[i]:
                raise InvalidArgumentError(
                    f"ConvTranspose2d: requested an output size of {list(size)}, but valid sizes "
                    f"range from {smallest} to {smallest + self.stride[i] - 1} in dimension {i}")
            pads.append(size[i] - smallest)
        return tuple(pads)

    def forward(self, input, output_size=None):
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", output_padding={self.output_padding}" if self.output_padding != (0, 0) else "")

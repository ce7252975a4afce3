"""tracecc: a PyTorch-style deep learning stack built around a compiler.

Write eager code with these names (`import tracecc as torch` reads naturally); put
`@tracecc.compile` on a function to trace, optimise and generate code for it.
"""

from . import runtime  # noqa: F401  (registers the primitives)
from . import _methods  # noqa: F401  (binds Tensor methods)
from . import autograd
from ._functions import (  # noqa: F401
    abs, absolute, add, all, amax, amin, any, argmax, argmin, bitwise_and, bitwise_left_shift,
    bitwise_not, bitwise_or, bitwise_right_shift, bitwise_xor, bmm, broadcast_tensors, broadcast_to,
    cat, ceil, chunk, clamp, clip, clone, concat, concatenate, cos, count_nonzero, div, divide, dot,
    eq, erf, exp, expm1, flatten, flip, floor, floor_divide, gather, ge, gt, index_add, index_select,
    isnan, le, lerp, log, log1p, log_softmax, logical_and, logical_not, logical_or, logical_xor,
    logsumexp, lt, masked_fill, matmul, max, maximum, mean, min, minimum, mm, mul, multiply, narrow,
    ne, neg, negative, nonzero, norm, outer, permute, pow, prod, reciprocal, relu, remainder,
    repeat, reshape, round, rsqrt, scatter_add, sigmoid, sign, sin, softmax, split, sqrt, square,
    squeeze, stack, std, sub, subtract, sum, swapaxes, t, tanh, transpose, tril, triu,
    true_divide, unbind, unflatten, unsqueeze, var, var_mean, where,
)
from ._grad_mode import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled  # noqa: F401
from .creation import (  # noqa: F401
    arange, as_tensor, empty, empty_like, eye, from_numpy, full, full_like, is_tensor, linspace,
    numel, ones, ones_like, tensor, zeros, zeros_like,
)
from .random import (  # noqa: F401
    Generator, bernoulli, default_generator, initial_seed, manual_seed, normal, rand, rand_like,
    randint, randn, randn_like, randperm,
)
from .runtime.device import Device as device  # noqa: F401
from .runtime.dtypes import (  # noqa: F401
    bfloat16, float16, float32, float64, get_default_dtype, int8, int16, int32, int64,
    promote_types, set_default_dtype, uint8,
)
from .runtime.dtypes import bool_ as bool  # noqa: F401,A001
from .runtime.dtypes import DType as dtype  # noqa: F401
from .runtime.errors import TraceccError  # noqa: F401
from ._tensor import Size, Tensor  # noqa: F401

float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001

# nn, optim, data, vision, save/load (issue 3); `utils.data` is `data`, as torch.utils.data
from . import data, nn, optim, utils, vision  # noqa: E402,F401
from . import cuda  # noqa: E402,F401  (tracecc.cuda, as torch.cuda)
from .serialization import load, save  # noqa: E402,F401

# compile(), its stances and explain() (issue 4)
from ._compile import compile, set_stance  # noqa: E402,F401,A001
from ._explain import explain  # noqa: E402,F401

__version__ = "0.1.0"

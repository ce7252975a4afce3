"""The workloads W1-W5 of shared/BENCHMARKS.md, each written once per framework.

A workload is data (random normal float32 from a fixed seed, int64 labels) and, per
framework, an `impl(dims, data, env) -> step`: it builds everything once (tensors on the
device, modules, the compiled function) and returns `step`, a callable that runs one
iteration and returns a tuple: the outputs, then the state a check must see (W4: the
updated parameters; W5: the parameter gradients). The numpy implementation is
hand-written, forward and backward, and doubles as the reference: the harness runs it in
float64 and compares every variant's tuple with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

EPS = 1e-5  # layer_norm
LR = 0.01  # W4's SGD
_C = math.sqrt(2.0 / math.pi)  # gelu_tanh

# (device or "tiny") -> sizes. GPU sizes apply with --device cuda.
SIZES = {
    "cpu": {"W1": {"n": 4_194_304}, "W2": {"rows": 8192, "cols": 1024}, "W3": {"rows": 8192, "cols": 1024},
            "W4": {"batches": (64, 512)}, "W5": {"B": 8, "T": 128, "D": 256, "H": 4},
            "copy_bytes": 64 << 20},
    "cuda": {"W1": {"n": 67_108_864}, "W2": {"rows": 32768, "cols": 4096},
             "W3": {"rows": 32768, "cols": 4096}, "W4": {"batches": (512, 4096)},
             "W5": {"B": 32, "T": 512, "D": 768, "H": 12}, "copy_bytes": 1 << 30},
    # for tests: every code path, in milliseconds (odd sizes on purpose)
    "tiny": {"W1": {"n": 1003}, "W2": {"rows": 6, "cols": 40}, "W3": {"rows": 6, "cols": 40},
             "W4": {"batches": (4, 16)}, "W5": {"B": 2, "T": 8, "D": 16, "H": 2},
             "copy_bytes": 1 << 20},
}


@dataclass
class Case:
    """One row group of the report: a workload at one size."""

    id: str  # "W4/b64"
    workload: str  # "W4"
    title: str  # "MLP step"
    shape: str  # "batch 64"
    dims: dict
    make_data: Callable[[np.random.Generator], dict]
    impls: dict  # framework -> impl(dims, data, env) -> step
    tol: float  # max |result - reference| allowed, relative to max |reference|
    stateful: bool = False  # each step changes state (W4): the reference steps along
    bytes_moved: int | None = None  # W1-W3: each input read once, each output written once
    flops: int | None = None  # W4, W5: matmul FLOPs of one step
    notes: list = field(default_factory=list)


def _normal(rng, shape, scale=1.0):
    return np.asarray(rng.standard_normal(shape, dtype=np.float32) * np.float32(scale), dtype=np.float32)


def _tracecc_function(name):
    """tracecc.nn.functional.<name> once the nn issue lands, else None (the bench composes it)."""
    try:
        from tracecc.nn import functional
    except ImportError:
        return None
    return getattr(functional, name, None)


# ------------------------------------------------------------------ shared math (numpy)
def _gelu_tanh_np(u):
    return 0.5 * u * (1.0 + np.tanh(_C * (u + 0.044715 * (u * u * u))))


def _gelu_tanh_grad_np(u):
    t = np.tanh(_C * (u + 0.044715 * (u * u * u)))
    return 0.5 * (1.0 + t) + 0.5 * u * (1.0 - t * t) * _C * (1.0 + 3 * 0.044715 * (u * u))


def _layer_norm_np(x, w, b):
    """Returns the output and what the backward needs (normalised x, 1/std)."""
    xc = x - x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt((xc * xc).mean(-1, keepdims=True) + EPS)
    xhat = xc * rstd
    return xhat * w + b, xhat, rstd


def _layer_norm_backward_np(dy, w, xhat, rstd):
    n = dy.shape[-1]
    dw = (dy * xhat).reshape(-1, n).sum(0)
    db = dy.reshape(-1, n).sum(0)
    g = dy * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, dw, db


# ------------------------------------------------------------------ shared math (tracecc)
def _tc_gelu_tanh():
    gelu = _tracecc_function("gelu")
    if gelu is not None:
        return lambda u: gelu(u, approximate="tanh")
    import tracecc

    return lambda u: 0.5 * u * (1.0 + tracecc.tanh(_C * (u + 0.044715 * (u * u * u))))


def _tc_layer_norm():
    layer_norm = _tracecc_function("layer_norm")
    if layer_norm is not None:
        return lambda x, w, b: layer_norm(x, (x.shape[-1],), w, b, EPS)
    import tracecc

    def composed(x, w, b):
        xc = x - x.mean(-1, keepdim=True)
        return xc * tracecc.rsqrt((xc * xc).mean(-1, keepdim=True) + EPS) * w + b

    return composed


def _tc_cross_entropy():
    cross_entropy = _tracecc_function("cross_entropy")
    if cross_entropy is not None:
        return cross_entropy
    import tracecc

    return lambda logits, y: -tracecc.log_softmax(logits, dim=1).gather(1, y.unsqueeze(1)).mean()


# ------------------------------------------------------------------ W1 pointwise
def _w1_data(dims):
    return lambda rng: {"x": _normal(rng, (dims["n"],)), "w": _normal(rng, ()), "b": _normal(rng, ())}


def w1_numpy(dims, d, env):
    x, w, b = d["x"], d["w"], d["b"]
    return lambda: (_gelu_tanh_np(x * w + b) / (1.0 + np.exp(-x)),)


def w1_tracecc(dims, d, env):
    import tracecc

    x, w, b = (env.tensor(d[k]) for k in "xwb")
    gelu = _tc_gelu_tanh()

    def pointwise(x, w, b):
        return gelu(x * w + b) * tracecc.sigmoid(x)

    f = env.wrap(pointwise)
    return lambda: (f(x, w, b),)


def w1_torch(dims, d, env):
    torch = env.torch
    x, w, b = (env.tensor(d[k]) for k in "xwb")

    def pointwise(x, w, b):
        return torch.nn.functional.gelu(x * w + b, approximate="tanh") * torch.sigmoid(x)

    f = env.wrap(pointwise)
    return lambda: (f(x, w, b),)


def w1_jax(dims, d, env):
    jax = env.jax
    x, w, b = (env.tensor(d[k]) for k in "xwb")
    f = env.wrap(lambda x, w, b: jax.nn.gelu(x * w + b, approximate=True) * jax.nn.sigmoid(x))
    return lambda: (f(x, w, b),)


# ------------------------------------------------------------------ W2 layernorm
def _w2_data(dims):
    r, c = dims["rows"], dims["cols"]
    return lambda rng: {"x": _normal(rng, (r, c)), "w": 1.0 + _normal(rng, (c,), 0.1),
                        "b": _normal(rng, (c,), 0.1)}


def w2_numpy(dims, d, env):
    x, w, b = d["x"], d["w"], d["b"]
    return lambda: (_layer_norm_np(x, w, b)[0],)


def w2_tracecc(dims, d, env):
    x, w, b = (env.tensor(d[k]) for k in "xwb")
    f = env.wrap(_tc_layer_norm())
    return lambda: (f(x, w, b),)


def w2_torch(dims, d, env):
    F = env.torch.nn.functional
    x, w, b = (env.tensor(d[k]) for k in "xwb")
    f = env.wrap(lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, EPS))
    return lambda: (f(x, w, b),)


def _jax_layer_norm(jnp, x, w, b):
    xc = x - x.mean(-1, keepdims=True)
    return xc / jnp.sqrt((xc * xc).mean(-1, keepdims=True) + EPS) * w + b


def w2_jax(dims, d, env):
    jnp = env.jax.numpy
    x, w, b = (env.tensor(d[k]) for k in "xwb")
    f = env.wrap(lambda x, w, b: _jax_layer_norm(jnp, x, w, b))
    return lambda: (f(x, w, b),)


# ------------------------------------------------------------------ W3 softmax
def _w3_data(dims):
    return lambda rng: {"x": _normal(rng, (dims["rows"], dims["cols"]))}


def w3_numpy(dims, d, env):
    x = d["x"]

    def step():
        e = np.exp(x - x.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True),)

    return step


def w3_tracecc(dims, d, env):
    import tracecc

    x = env.tensor(d["x"])
    f = env.wrap(lambda x: tracecc.softmax(x, dim=-1))
    return lambda: (f(x),)


def w3_torch(dims, d, env):
    torch = env.torch
    x = env.tensor(d["x"])
    f = env.wrap(lambda x: torch.softmax(x, dim=-1))
    return lambda: (f(x),)


def w3_jax(dims, d, env):
    jax = env.jax
    x = env.tensor(d["x"])
    f = env.wrap(lambda x: jax.nn.softmax(x, axis=-1))
    return lambda: (f(x),)


# ------------------------------------------------------------------ W4 MLP training step
MLP_PARAMS = ("w1", "b1", "w2", "b2", "w3", "b3")
_MLP_LAYERS = ((784, 128), (128, 64), (64, 10))  # (in, out)


def _w4_data(batch):
    def make(rng):
        d = {"x": _normal(rng, (batch, 784)), "y": rng.integers(0, 10, batch, dtype=np.int64)}
        for i, (fan_in, fan_out) in enumerate(_MLP_LAYERS, 1):
            d[f"w{i}"] = _normal(rng, (fan_out, fan_in), 1 / math.sqrt(fan_in))
            d[f"b{i}"] = _normal(rng, (fan_out,), 0.1)
        return d

    return make


def _w4_flops(batch):
    fwd = sum(2 * batch * i * o for i, o in _MLP_LAYERS)
    input_grads = sum(2 * batch * i * o for i, o in _MLP_LAYERS[1:])  # x needs no gradient
    return 2 * fwd + input_grads


def w4_numpy(dims, d, env):
    """Forward, cross-entropy, the backward by hand, SGD in place."""
    x, y = d["x"], d["y"]
    w1, b1, w2, b2, w3, b3 = (d[k] for k in MLP_PARAMS)
    rows = np.arange(len(y))

    def step():
        h1 = x @ w1.T + b1
        r1 = np.maximum(h1, 0)
        h2 = r1 @ w2.T + b2
        r2 = np.maximum(h2, 0)
        z = r2 @ w3.T + b3
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        s = e.sum(1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - z[rows, y])
        dz = e / s
        dz[rows, y] -= 1
        dz /= len(y)
        dr2 = dz @ w3
        dh2 = dr2 * (h2 > 0)
        dh1 = (dh2 @ w2) * (h1 > 0)
        grads = (dh1.T @ x, dh1.sum(0), dh2.T @ r1, dh2.sum(0), dz.T @ r2, dz.sum(0))
        for p, g in zip((w1, b1, w2, b2, w3, b3), grads):
            p -= LR * g
        return (np.asarray(loss), w1, b1, w2, b2, w3, b3)

    return step


def w4_tracecc(dims, d, env):
    import tracecc

    x, y = env.tensor(d["x"]), env.tensor(d["y"])
    params = [env.tensor(d[k], requires_grad=True) for k in MLP_PARAMS]
    cross_entropy = _tc_cross_entropy()

    def mlp_step(x, y):
        for p in params:  # zero grads
            p.grad = None
        w1, b1, w2, b2, w3, b3 = params
        h = tracecc.relu(x @ w1.t() + b1)
        h = tracecc.relu(h @ w2.t() + b2)
        loss = cross_entropy(h @ w3.t() + b3, y)
        loss.backward()
        with tracecc.no_grad():
            for p in params:
                p -= LR * p.grad
        return loss

    f = env.wrap(mlp_step)
    return lambda: (f(x, y), *params)


def w4_torch(dims, d, env):
    torch = env.torch
    nn = torch.nn
    model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                          nn.Linear(64, 10)).to(env.device)
    params = list(model.parameters())  # w1, b1, w2, b2, w3, b3
    with torch.no_grad():
        for p, k in zip(params, MLP_PARAMS):
            p.copy_(env.tensor(d[k]))
    opt = torch.optim.SGD(params, lr=LR)
    x, y = env.tensor(d["x"]), env.tensor(d["y"])

    def mlp_step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    f = env.wrap(mlp_step)
    return lambda: (f(x, y), *params)


def w4_jax(dims, d, env):
    jax = env.jax
    jnp = jax.numpy

    def loss_fn(params, x, y):
        w1, b1, w2, b2, w3, b3 = params
        h = jax.nn.relu(x @ w1.T + b1)
        h = jax.nn.relu(h @ w2.T + b2)
        logp = jax.nn.log_softmax(h @ w3.T + b3)
        return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    def mlp_step(params, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return loss, [p - LR * g for p, g in zip(params, grads)]

    f = env.wrap(mlp_step, donate_argnums=0)
    state = [[env.tensor(d[k]) for k in MLP_PARAMS]]
    x, y = env.tensor(d["x"]), env.tensor(d["y"].astype(np.int32))  # int64 needs jax x64 mode

    def step():
        loss, state[0] = f(state[0], x, y)
        return (loss, *state[0])

    return step


# ------------------------------------------------------------------ W5 GPT block, fwd + bwd
GPT_PARAMS = ("ln1_w", "ln1_b", "attn_w", "attn_b", "proj_w", "proj_b",
              "ln2_w", "ln2_b", "fc_w", "fc_b", "out_w", "out_b")


def _w5_data(dims):
    B, T, D = dims["B"], dims["T"], dims["D"]

    def make(rng):
        d = {"x": _normal(rng, (B, T, D))}
        for name, shape, scale in (("ln1", None, None), ("attn", (3 * D, D), D), ("proj", (D, D), D),
                                   ("ln2", None, None), ("fc", (4 * D, D), D), ("out", (D, 4 * D), 4 * D)):
            if shape is None:  # layer norm: weight near 1, bias near 0
                d[name + "_w"] = 1.0 + _normal(rng, (D,), 0.1)
                d[name + "_b"] = _normal(rng, (D,), 0.1)
            else:
                d[name + "_w"] = _normal(rng, shape, 1 / math.sqrt(scale))
                d[name + "_b"] = _normal(rng, (shape[0],), 0.1)
        return d

    return make


def _w5_flops(B, T, D, H):
    """Matmul FLOPs: forward projections 24*B*T*D^2, attention 4*B*T^2*D (the causal
    half counted too, as computed), backward twice the forward."""
    return 3 * (24 * B * T * D * D + 4 * B * T * T * D)


def w5_numpy(dims, d, env):
    """The block forward, then its backward written out by hand."""
    B, T, D, H = dims["B"], dims["T"], dims["D"], dims["H"]
    dh, scale = D // H, 1.0 / math.sqrt(D // H)
    x, P = d["x"], {k: d[k] for k in GPT_PARAMS}
    future = np.triu(np.ones((T, T), bool), 1)

    def heads(t):  # B,T,D -> B,H,T,dh
        return t.reshape(B, T, H, dh).transpose(0, 2, 1, 3)

    def merge(t):  # B,H,T,dh -> B,T,D
        return t.transpose(0, 2, 1, 3).reshape(B, T, D)

    def rows(t):
        return t.reshape(-1, t.shape[-1])

    def step():
        h1, xhat1, rstd1 = _layer_norm_np(x, P["ln1_w"], P["ln1_b"])
        q, k, v = (heads(t) for t in np.split(h1 @ P["attn_w"].T + P["attn_b"], 3, axis=-1))
        s = np.where(future, -np.inf, (q @ k.transpose(0, 1, 3, 2)) * scale)
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        o = merge(p @ v)
        x2 = x + o @ P["proj_w"].T + P["proj_b"]
        h2, xhat2, rstd2 = _layer_norm_np(x2, P["ln2_w"], P["ln2_b"])
        f = h2 @ P["fc_w"].T + P["fc_b"]
        g = _gelu_tanh_np(f)
        out = x2 + g @ P["out_w"].T + P["out_b"]
        loss = out.mean()

        G = {}
        dout = np.full_like(out, 1.0 / out.size)
        G["out_w"], G["out_b"] = rows(dout).T @ rows(g), rows(dout).sum(0)
        df = (dout @ P["out_w"]) * _gelu_tanh_grad_np(f)
        G["fc_w"], G["fc_b"] = rows(df).T @ rows(h2), rows(df).sum(0)
        dx2, G["ln2_w"], G["ln2_b"] = _layer_norm_backward_np(df @ P["fc_w"], P["ln2_w"], xhat2, rstd2)
        dx2 += dout
        G["proj_w"], G["proj_b"] = rows(dx2).T @ rows(o), rows(dx2).sum(0)
        do = heads(dx2 @ P["proj_w"])
        dp = do @ v.transpose(0, 1, 3, 2)
        dv = p.transpose(0, 1, 3, 2) @ do
        ds = p * (dp - (dp * p).sum(-1, keepdims=True)) * scale
        dq, dk = ds @ k, ds.transpose(0, 1, 3, 2) @ q
        dqkv = np.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)
        G["attn_w"], G["attn_b"] = rows(dqkv).T @ rows(h1), rows(dqkv).sum(0)
        _, G["ln1_w"], G["ln1_b"] = _layer_norm_backward_np(dqkv @ P["attn_w"], P["ln1_w"], xhat1, rstd1)
        return (np.asarray(loss), *(G[k] for k in GPT_PARAMS))

    return step


def tc_gpt_block(dims, params, future):
    """W5's block in tracecc, forward only: x -> the block's output (also used by
    benchmarks/remat_w5.py)."""
    import tracecc

    B, T, D, H = dims["B"], dims["T"], dims["D"], dims["H"]
    scale = 1.0 / math.sqrt(D // H)
    layer_norm, gelu = _tc_layer_norm(), _tc_gelu_tanh()

    def gpt_block(x):
        ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b = params
        q, k, v = (layer_norm(x, ln1_w, ln1_b) @ attn_w.t() + attn_b).split(D, dim=-1)
        q, k, v = (t.reshape(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-2, -1)) * scale
        a = tracecc.softmax(s.masked_fill(future, float("-inf")), dim=-1) @ v
        x = x + (a.transpose(1, 2).reshape(B, T, D) @ proj_w.t() + proj_b)
        h = gelu(layer_norm(x, ln2_w, ln2_b) @ fc_w.t() + fc_b)
        return x + (h @ out_w.t() + out_b)

    return gpt_block


def w5_tracecc(dims, d, env):
    T = dims["T"]
    x = env.tensor(d["x"])
    params = [env.tensor(d[k], requires_grad=True) for k in GPT_PARAMS]
    future = env.tensor(np.triu(np.ones((T, T), bool), 1))
    block = tc_gpt_block(dims, params, future)

    def gpt_block_step(x):
        for p in params:  # zero grads
            p.grad = None
        loss = block(x).mean()
        loss.backward()
        return loss

    f = env.wrap(gpt_block_step)
    return lambda: (f(x), *(p.grad for p in params))


def w5_torch(dims, d, env):
    torch = env.torch
    F = torch.nn.functional
    B, T, D, H = dims["B"], dims["T"], dims["D"], dims["H"]
    x = env.tensor(d["x"])
    params = [env.tensor(d[k], requires_grad=True) for k in GPT_PARAMS]

    def gpt_block_step(x):
        for p in params:
            p.grad = None
        ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b = params
        q, k, v = F.linear(F.layer_norm(x, (D,), ln1_w, ln1_b, EPS), attn_w, attn_b).split(D, dim=-1)
        q, k, v = (t.reshape(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # what a torch user writes
        x = x + F.linear(a.transpose(1, 2).reshape(B, T, D), proj_w, proj_b)
        h = F.gelu(F.linear(F.layer_norm(x, (D,), ln2_w, ln2_b, EPS), fc_w, fc_b), approximate="tanh")
        loss = (x + F.linear(h, out_w, out_b)).mean()
        loss.backward()
        return loss

    f = env.wrap(gpt_block_step)
    return lambda: (f(x), *(p.grad for p in params))


def w5_jax(dims, d, env):
    jax = env.jax
    jnp = jax.numpy
    B, T, D, H = dims["B"], dims["T"], dims["D"], dims["H"]
    scale = 1.0 / math.sqrt(D // H)
    future = np.triu(np.ones((T, T), bool), 1)

    def loss_fn(params, x):
        ln1_w, ln1_b, attn_w, attn_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b = params
        q, k, v = jnp.split(_jax_layer_norm(jnp, x, ln1_w, ln1_b) @ attn_w.T + attn_b, 3, axis=-1)
        q, k, v = (t.reshape(B, T, H, D // H).transpose(0, 2, 1, 3) for t in (q, k, v))
        s = jnp.where(future, -jnp.inf, (q @ k.transpose(0, 1, 3, 2)) * scale)
        a = (jax.nn.softmax(s, axis=-1) @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        x = x + a @ proj_w.T + proj_b
        h = jax.nn.gelu(_jax_layer_norm(jnp, x, ln2_w, ln2_b) @ fc_w.T + fc_b, approximate=True)
        return (x + h @ out_w.T + out_b).mean()

    f = env.wrap(jax.value_and_grad(loss_fn))
    params = [env.tensor(d[k]) for k in GPT_PARAMS]
    x = env.tensor(d["x"])

    def step():
        loss, grads = f(params, x)
        return (loss, *grads)

    return step


# ------------------------------------------------------------------ the table of cases
def _impls(n):
    g = globals()
    return {fw: g[f"w{n}_{fw}"] for fw in ("numpy", "tracecc", "torch", "jax")}


WORKLOADS = {"W1": "pointwise", "W2": "layernorm", "W3": "softmax", "W4": "MLP step", "W5": "GPT block"}


def make_cases(device: str = "cpu", size: str = "default") -> list[Case]:
    sizes = SIZES["tiny" if size == "tiny" else device]
    out = []
    n = sizes["W1"]["n"]
    out.append(Case("W1", "W1", "pointwise", f"x: {n:,}", sizes["W1"], _w1_data(sizes["W1"]), _impls(1),
                    tol=1e-4, bytes_moved=2 * 4 * n))
    r, c = sizes["W2"]["rows"], sizes["W2"]["cols"]
    out.append(Case("W2", "W2", "layernorm", f"{r} x {c}", sizes["W2"], _w2_data(sizes["W2"]), _impls(2),
                    tol=1e-4, bytes_moved=2 * 4 * r * c + 2 * 4 * c))
    r, c = sizes["W3"]["rows"], sizes["W3"]["cols"]
    out.append(Case("W3", "W3", "softmax", f"{r} x {c}", sizes["W3"], _w3_data(sizes["W3"]), _impls(3),
                    tol=1e-4, bytes_moved=2 * 4 * r * c))
    for batch in sizes["W4"]["batches"]:
        out.append(Case(f"W4/b{batch}", "W4", "MLP step", f"batch {batch}", {"batch": batch},
                        _w4_data(batch), _impls(4), tol=1e-3, stateful=True, flops=_w4_flops(batch)))
    dims = sizes["W5"]
    out.append(Case("W5", "W5", "GPT block", "B {B}, T {T}, d {D}, {H} heads".format(**dims), dims,
                    _w5_data(dims), _impls(5), tol=1e-3, flops=_w5_flops(**dims)))
    return out


def select(cases: list[Case], names) -> list[Case]:
    """Cases named by workload id ("W4"), case id ("W4/b64") or title ("softmax"), any case."""
    if not names:
        return cases
    wanted = {n.lower() for n in names}
    known = {c.id.lower() for c in cases} | {c.workload.lower() for c in cases} | \
        {c.title.lower() for c in cases}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"unknown workload {', '.join(unknown)}; choose from "
                         f"{', '.join(sorted({c.id for c in cases} | {c.workload for c in cases}))}")
    return [c for c in cases if {c.id.lower(), c.workload.lower(), c.title.lower()} & wanted]

# A small GPT trained character by character on tracecc's own source code and docs, then
# asked to write some more. Token and position embeddings, pre-LayerNorm blocks with causal
# multi-head self-attention and a GELU MLP, AdamW with warm-up and a cosine schedule.
# The default 2000 steps took 129 s compiled on the 2-core development machine (61 ms a
# step; eager steps took about 3x as long) and reached a held-out loss of 1.59 nats per
# character (a uniform guess: 4.56): the samples look like Python.
#
#   python examples/char_transformer.py                # train eagerly, then sample
#   python examples/char_transformer.py --compile      # the same with the step compiled
#   python examples/char_transformer.py --compare 10   # 10 steps each way from one seed:
#                                                      # losses side by side, both step times
import argparse
import math
import os
import sys
import time
from pathlib import Path

# One BLAS thread: on a busy machine OpenBLAS's spinning threads slow small matmuls down
# many times. Must be set before numpy loads; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import tracecc as torch  # noqa: E402
import tracecc.nn as nn  # noqa: E402
import tracecc.nn.functional as F  # noqa: E402
import tracecc.optim as optim  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["README.md", "docs/*.md", "examples/*.py", "tracecc/**/*.py", "runtime/**/*.py",
           "passes/*.py", "codegen/**/*.py"]


def repository_text(root: Path = REPO) -> str:
    """The repository's own docs and code, in a fixed order, as one string of printable
    ASCII (anything else becomes '?')."""
    files = sorted({f for pattern in SOURCES for f in root.glob(pattern) if f.is_file()})
    text = "\n\n".join(f.read_text(errors="replace") for f in files)
    return "".join(c if c == "\n" or " " <= c <= "~" else "?" for c in text)


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_head: int, block_size: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        # mask[i, j]: position i may look at position j (j <= i). A buffer, so a compiled
        # step reads it as an input instead of baking it in.
        self.register_buffer("mask", torch.tril(torch.ones(block_size, block_size, dtype=torch.bool)))

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        # (b, t, d) -> (b, heads, t, d/heads)
        q, k, v = (z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))
        # F.scaled_dot_product_attention(q, k, v, is_causal=True) computes the same thing.
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(d // self.n_head))
        scores = scores.masked_fill(~self.mask[:t, :t], float("-inf"))
        y = F.softmax(scores, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d_model: int, n_head: int, block_size: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head, block_size)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * d_model, d_model))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, block_size: int, d_model: int, n_head: int, n_layer: int):
        super().__init__()
        self.block_size = block_size
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(block_size, d_model)
        self.blocks = nn.Sequential(*[Block(d_model, n_head, block_size) for _ in range(n_layer)])
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t))
        return self.head(self.ln(self.blocks(x)))


def sample(model, prompt_ids, n: int, temperature: float, seed: int) -> list[int]:
    """Generate n tokens after the prompt. Gumbel-max sampling: argmax(logits / T + g) with
    g = -log(-log(u)), u uniform, draws from softmax(logits / T)."""
    gen = torch.Generator().manual_seed(seed)
    ids = list(prompt_ids)
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            context = torch.tensor([ids[-model.block_size:]])
            logits = model(context)[0, -1] / temperature
            gumbel = -torch.log(-torch.log(torch.rand(logits.shape[0], generator=gen) + 1e-20) + 1e-20)
            ids.append(int(torch.argmax(logits + gumbel).item()))
    model.train()
    return ids


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Train a small character-level GPT on the tracecc "
                                "repository's own code and docs, then sample from it")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--block-size", type=int, default=64, help="context length in characters")
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--sample", type=int, default=400, help="characters to generate afterwards")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="compile the training step")
    p.add_argument("--compare", type=int, default=0, metavar="STEPS",
                   help="run STEPS steps eagerly and compiled from the same seed, compare, exit")
    args = p.parse_args(argv)

    text = repository_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    split = len(data) * 9 // 10
    train_data, val_data = data[:split], data[split:]

    def batches(source, n, seed):
        """n (inputs, targets) pairs of random windows; targets are inputs shifted by one."""
        rng = np.random.default_rng(seed)
        for _ in range(n):
            starts = rng.integers(0, len(source) - args.block_size - 1, args.batch_size)
            x = np.stack([source[s:s + args.block_size] for s in starts])
            y = np.stack([source[s + 1:s + args.block_size + 1] for s in starts])
            yield torch.from_numpy(x), torch.from_numpy(y)

    def make_training():
        torch.manual_seed(args.seed)
        model = GPT(len(chars), args.block_size, args.d_model, args.heads, args.layers)
        # (a compiled step reads the optimizer's lr as an input: the schedule compiles nothing)
        optimizer = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

        def train_step(x, y):
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1))
            loss.backward()
            optimizer.step()
            return loss

        return model, optimizer, train_step

    def lr_at(step: int, total: int) -> float:
        """Linear warm-up, then cosine decay to a tenth of the peak."""
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, total - args.warmup)
        return args.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, progress))))

    def train(step_fn, optimizer, n_steps, report_every=0):
        schedule = optim.lr_scheduler.LambdaLR(optimizer, lambda i: lr_at(i, n_steps) / args.lr)
        losses, times = [], []
        for i, (x, y) in enumerate(batches(train_data, n_steps, args.seed)):
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            losses.append(step_fn(x, y).item())
            times.append(time.perf_counter() - t0)
            schedule.step()
            if report_every and (i + 1) % report_every == 0:
                print(f"  step {i + 1}: loss {np.mean(losses[-report_every:]):.3f}, lr {lr:.2e}, "
                      f"{1000 * np.median(times[-report_every:]):.1f} ms/step", flush=True)
        return np.array(losses), np.array(times)

    print(f"text: {len(text):,} characters of tracecc's own code and docs, {len(chars)} distinct; "
          f"training on the first 90%")
    if args.compare:
        runs = {}
        for mode in ("eager", "compiled"):
            model, optimizer, step = make_training()
            runs[mode] = train(torch.compile(step) if mode == "compiled" else step, optimizer,
                               args.compare)
        (e_loss, e_t), (c_loss, c_t) = runs["eager"], runs["compiled"]
        print("step   eager loss   compiled loss")
        for i, (a, b) in enumerate(zip(e_loss, c_loss)):
            print(f"{i + 1:4d}   {a:10.6f}   {b:13.6f}")
        # medians skip the first call (the compiled one traces and generates code then)
        e_med = np.median(e_t[1:] if len(e_t) > 1 else e_t)
        c_med = np.median(c_t[1:] if len(c_t) > 1 else c_t)
        print(f"largest loss difference: {float(np.max(np.abs(e_loss - c_loss))):.2e}")
        print(f"step time (median): eager {1000 * e_med:.1f} ms, compiled {1000 * c_med:.1f} ms "
              f"({e_med / c_med:.2f}x); compiled first call {1000 * c_t[0]:.0f} ms")
        return 0

    model, optimizer, train_step = make_training()
    if args.compile:
        train_step = torch.compile(train_step)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.layers} layers, {args.heads} heads, d_model {args.d_model}, context "
          f"{args.block_size}, {n_params:,} parameters; AdamW peak lr {args.lr}, batch "
          f"{args.batch_size}, {args.steps} steps, {'compiled' if args.compile else 'eager'}")
    start = time.perf_counter()
    losses, times = train(train_step, optimizer, args.steps,
                          report_every=max(1, min(100, args.steps // 6)))
    elapsed = time.perf_counter() - start
    median = np.median(times[1:] if len(times) > 1 else times)
    print(f"trained in {elapsed:.1f} s: median step {1000 * median:.1f} ms "
          f"({'compiled' if args.compile else 'eager'}), first step {1000 * times[0]:.0f} ms")

    model.eval()
    with torch.no_grad():
        val = [F.cross_entropy(model(x).view(-1, len(chars)), y.view(-1)).item()
               for x, y in batches(val_data, 8, args.seed + 1)]
    model.train()
    print(f"loss on held-out text: {np.mean(val):.3f} (a uniform guess: {math.log(len(chars)):.3f})")
    if args.sample:
        prompt = "def "
        ids = sample(model, [stoi[c] for c in prompt], args.sample, args.temperature, args.seed)
        print(f"\n--- sampled at temperature {args.temperature} after {prompt!r} ---")
        print("".join(chars[i] for i in ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())

# `make demo`: the MNIST MLP of examples/mnist_mlp.py trained twice from the same seed, once
# eagerly and once with the training step under @tracecc.compile, then compared: loss per
# epoch, test accuracy, step time, and where the compiler's dump of the step was written.
#
#   python examples/demo.py [--epochs 3] [--batch-size 64] [--data DIR] [--offline]
#
# Data: --data, else $TRACECC_DATA, else ../shared/data/mnist beside the checkout, else
# ./data, else a download into ./data. Without the real files and without network it says
# so and falls back, in this order, to: the MNIST test split alone (if that is present,
# split into training and test parts), then synthetic digits drawn from a 5x7 pixel font
# (clearly labelled: accuracies on them say nothing about MNIST).
import argparse
import os
import re
import sys
import time
from pathlib import Path

# Small matmuls: one BLAS thread is faster, and on a busy machine OpenBLAS's spinning
# threads slow eager steps down many times. Must be set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import tracecc as torch  # noqa: E402
import tracecc.nn as nn  # noqa: E402
import tracecc.nn.functional as F  # noqa: E402
import tracecc.optim as optim  # noqa: E402
from tracecc.vision import datasets  # noqa: E402
from _common import REPO, data_roots, mnist, mnist_transform  # noqa: E402  (shared by the MNIST examples)


class Net(nn.Module):
    """The model of examples/mnist_mlp.py (and of the classic PyTorch program)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 28 * 28)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


# ---------------------------------------------------------------- data
def _has_split(root: Path, prefix: str) -> bool:
    names = [f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"]
    return all(any((folder / (n + ext)).is_file() for folder in (root / "MNIST" / "raw", root)
                   for ext in (".gz", "")) for n in names)


def load_data(args):
    """(train_set, test_set, description): real MNIST if it can be found or fetched, else
    the best offline source, said plainly."""
    roots = data_roots(args.data)
    for root in roots:
        if _has_split(root, "train") and _has_split(root, "t10k"):
            train, test = mnist(root, download=False)
            return train, test, f"real MNIST from {root}"
    print(f"MNIST not found in {', '.join(map(str, roots))}.")
    if not args.offline:
        target = Path(args.data) if args.data else REPO / "data"
        print(f"Trying to download it into {target} ...", flush=True)
        try:
            train, test = mnist(target, download=True)
            return train, test, f"real MNIST, downloaded into {target}"
        except torch.TraceccError as e:
            print("Could not download MNIST (no network?): " + e.message.replace("\n", "\n  "))
    for root in roots:
        if _has_split(root, "t10k"):
            full = datasets.MNIST(root=root, train=False, transform=mnist_transform())
            cut = len(full) * 4 // 5
            train = torch.utils.data.Subset(full, range(cut))
            test = torch.utils.data.Subset(full, range(cut, len(full)))
            return train, test, (f"ONLY THE MNIST TEST SPLIT was found (in {root}): training on "
                                 f"its first {cut} images, testing on the other {len(full) - cut}")
    train, test = synthetic_digits(6000, seed=1), synthetic_digits(1000, seed=2)
    return train, test, ("NO MNIST FILES AND NO NETWORK: SYNTHETIC digits drawn from a 5x7 "
                         "pixel font with random shifts, strokes and noise (not MNIST; "
                         "accuracies on them say nothing about MNIST)")


# 5x7 glyphs of the digits 0-9, one string of 7 rows of 5 pixels each.
FONT = ["01110100011001110101110011000101110", "00100011000010000100001000010001110",
        "01110100010000100010001000100011111", "11111000100010000010000011000101110",
        "00010001100101010010111110001000010", "11111100001111000001000011000101110",
        "00110010001000011110100011000101110", "11111000010001000100010000100001000",
        "01110100011000101110100011000101110", "01110100011000101111000010001001100"]


def synthetic_digits(n: int, seed: int):
    """n 28x28 images of the font's digits, each scaled 3x, shifted, thickened at random
    and noised, normalised like the MNIST transform: a TensorDataset (images, labels)."""
    rng = np.random.default_rng(seed)
    glyphs = np.array([[int(c) for c in g] for g in FONT], np.float32).reshape(10, 7, 5)
    labels = rng.integers(0, 10, n)
    images = np.zeros((n, 28, 28), np.float32)
    for i, d in enumerate(labels):
        g = np.kron(glyphs[d], np.ones((3, 3), np.float32))  # 21 x 15
        if rng.random() < 0.5:  # a thicker stroke
            g = np.maximum(g, np.roll(g, 1, axis=1))
        top, left = rng.integers(2, 6), rng.integers(5, 9)  # near the centre, as MNIST's digits
        images[i, top:top + 21, left:left + 15] = g
    images = np.clip(images + rng.normal(0, 0.2, images.shape), 0, 1)
    images = (images - 0.5) / 0.5
    return torch.utils.data.TensorDataset(torch.from_numpy(images.astype(np.float32)[:, None]),
                                          torch.from_numpy(labels.astype(np.int64)))


# ---------------------------------------------------------------- one run
def train_and_test(args, train_set, test_set, compiled: bool):
    """Train a fresh Net from the seed; returns (epoch mean losses, step losses, step
    times in s, test accuracy %, dump folders written)."""
    torch.manual_seed(args.seed)
    model = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=args.lr)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))

    def train_step(images, labels):
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    dump = Path(args.dump)
    before = set(dump.iterdir()) if dump.is_dir() else set()
    if compiled:
        os.environ["TRACECC_DUMP_DIR"] = str(dump)  # read when the step is compiled
        train_step = torch.compile(train_step, backend=args.backend)
    epoch_losses, step_losses, step_times = [], [], []
    try:
        for epoch in range(args.epochs):
            start, first = time.perf_counter(), len(step_losses)
            for images, labels in loader:
                t0 = time.perf_counter()
                loss = train_step(images, labels)
                step_times.append(time.perf_counter() - t0)
                step_losses.append(loss.item())
            n = len(step_losses) - first
            elapsed = time.perf_counter() - start
            epoch_losses.append(sum(step_losses[first:]) / n)
            extra = f", the first call {1000 * step_times[0]:.0f} ms" if compiled and epoch == 0 else ""
            print(f"  epoch {epoch + 1}: loss {epoch_losses[-1]:.4f}  ({n} steps, {elapsed:.1f} s, "
                  f"median step {1000 * np.median(step_times[first:]):.2f} ms{extra})", flush=True)
    finally:
        os.environ.pop("TRACECC_DUMP_DIR", None)

    correct = total = 0
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000, shuffle=False)
    with torch.no_grad():
        for images, labels in test_loader:
            _, predicted = torch.max(model(images), 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    accuracy = 100 * correct / total
    print(f"  test accuracy: {accuracy:.2f}% ({correct}/{total})", flush=True)
    dumps = sorted(set(dump.iterdir()) - before) if compiled and dump.is_dir() else []
    return epoch_losses, np.array(step_losses), np.array(step_times), accuracy, dumps


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Train the MNIST MLP eagerly and compiled from the "
                                "same seed and compare loss, accuracy and step time.")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="folder with the MNIST IDX files")
    p.add_argument("--offline", action="store_true", default=bool(os.environ.get("TRACECC_OFFLINE")),
                   help="never try to download (also TRACECC_OFFLINE=1)")
    p.add_argument("--backend", default="auto", help="compile backend (default auto)")
    p.add_argument("--dump", default="tracecc_dump/demo", metavar="DIR",
                   help="where the compiled step's stages are written (default tracecc_dump/demo)")
    p.add_argument("--rtol", type=float, default=1e-3,
                   help="how far eager and compiled losses may differ, relative: each of the "
                        "first --check-steps steps, and each epoch's mean (default 1e-3)")
    p.add_argument("--check-steps", type=int, default=100,
                   help="steps compared one by one (default 100): later, float rounding "
                        "differences compound through SGD, as between any two orders of sums")
    args = p.parse_args(argv)

    train_set, test_set, source = load_data(args)
    print(f"\ndata: {source}: {len(train_set)} training, {len(test_set)} test images")
    print(f"model: 784-128-64-10 MLP, SGD lr {args.lr}, batch {args.batch_size}, {args.epochs} "
          f"epoch(s), seed {args.seed}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}")
    print("\neager:")
    eager = train_and_test(args, train_set, test_set, compiled=False)
    print(f"\ncompiled (@tracecc.compile on the whole step, backend {args.backend}):")
    comp = train_and_test(args, train_set, test_set, compiled=True)

    e_losses, e_steps, e_times, e_acc, _ = eager
    c_losses, c_steps, c_times, c_acc, dumps = comp
    diff = np.abs(e_steps - c_steps)
    rel_steps = diff / np.maximum(np.abs(e_steps), 1e-6)
    rel = float(np.max(rel_steps))
    early = float(np.max(rel_steps[:args.check_steps]))
    rel_epochs = float(np.max(np.abs(np.array(e_losses) - c_losses) / np.abs(e_losses)))
    agree = early <= args.rtol and rel_epochs <= args.rtol and abs(e_acc - c_acc) <= 0.5
    # Medians skip the compiled run's first call (tracing and code generation), counted apart.
    e_med, c_med = np.median(e_times[1:]), np.median(c_times[1:])
    print("\nsummary                 eager      compiled")
    for i, (a, b) in enumerate(zip(e_losses, c_losses)):
        print(f"  epoch {i + 1} mean loss   {a:8.4f}   {b:8.4f}")
    print(f"  test accuracy       {e_acc:7.2f}%   {c_acc:7.2f}%")
    print(f"  median step time   {1000 * e_med:6.2f} ms  {1000 * c_med:6.2f} ms   "
          f"compiled is {e_med / c_med:.1f}x faster")
    n = min(args.check_steps, len(e_steps))
    print(f"  losses: first {n} steps within {early:.1e}, epoch means within {rel_epochs:.1e} "
          f"relative, accuracies within {abs(e_acc - c_acc):.2f} points: "
          f"{'agree' if agree else 'DIFFER'} (rtol {args.rtol:g}, 0.5 points)")
    print(f"  (all {len(e_steps)} steps: largest difference {float(diff.max()):.2e}, {rel:.1e} "
          f"relative, as rounding differences compound through training)")
    if dumps:
        print(f"\nIR dump of the compiled step written to {', '.join(f'{d}/' for d in dumps)}")
        steady = dumps[0]
        for d in dumps:  # one graph per set of guards: say which calls each one serves
            guards = (d / "guards.txt").read_text() if (d / "guards.txt").exists() else ""
            shape = re.search(r"images\.shape == (\[[^\]]*\])", guards)
            first = ".grad is None" in guards
            if not first and steady == dumps[0]:
                steady = d
            print(f"  {d}/: images {shape.group(1) if shape else '?'}"
                  f"{', the first step (no .grad yet)' if first else ''}")
        print(f"  read it:  tracecc show {steady} --stage list   (then --stage traced, "
              f"decompose, autograd, simplify, fused, kernels, llvm)")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

# A small convolutional network on MNIST: Conv2d + BatchNorm + ReLU + MaxPool twice, Dropout,
# two Linear layers, AdamW with a cosine learning-rate schedule. The default single epoch
# reached 98.49% test accuracy eagerly (278 s, 245 ms/step) and 98.35% compiled (173 s,
# 147 ms/step) on the 2-core development machine under load (the two runs drift apart by
# float rounding amplified by training; see docs/differences.md).
#
#   python examples/mnist_cnn.py                 # train eagerly (1 epoch), then test
#   python examples/mnist_cnn.py --compile       # the same with the training step compiled
#   python examples/mnist_cnn.py --compare 20    # 20 steps eager, 20 compiled, same seed:
#                                                # losses side by side and both step times
#
# MNIST comes from --data, else $TRACECC_DATA, else ../shared/data/mnist beside the
# checkout, else ./data (downloaded there if missing).
import argparse
import os
import sys
import time

# One BLAS thread: on a busy machine OpenBLAS's spinning threads slow small matmuls down
# many times. Must be set before numpy loads; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import tracecc as torch  # noqa: E402
import tracecc.nn as nn  # noqa: E402
import tracecc.nn.functional as F  # noqa: E402
import tracecc.optim as optim  # noqa: E402
from _common import find_data, mnist  # noqa: E402  (shared by the MNIST examples)


class Net(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1, bias=False)  # 28x28; BatchNorm adds the bias
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, bias=False)  # 14x14 after a pool
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.pool = nn.MaxPool2d(2)
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(2 * width * 7 * 7, 128)
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        x = torch.flatten(self.dropout1(x), 1)
        x = self.dropout2(F.relu(self.fc1(x)))
        return self.fc2(x)


def make_training(args):
    """A fresh model, optimizer and training step from the seed. (A compiled step reads the
    optimizer's lr as an input, so the per-step schedule compiles nothing new.)"""
    torch.manual_seed(args.seed)
    model = Net(args.width)
    optimizer = optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    def train_step(images, labels):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss

    return model, optimizer, train_step


def evaluate(model, test_set) -> float:
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in torch.utils.data.DataLoader(test_set, batch_size=500):
            _, predicted = torch.max(model(images), 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    model.train()
    return 100 * correct / total


def compare(args, train_set) -> int:
    """The same steps eagerly and compiled, from the same seed: losses and step times."""
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    batches = []
    for batch in loader:
        batches.append(batch)
        if len(batches) == args.compare:
            break
    runs = {}
    for mode in ("eager", "compiled"):
        _, _, step = make_training(args)
        if mode == "compiled":
            step = torch.compile(step)
        losses, times = [], []
        for images, labels in batches:
            t0 = time.perf_counter()
            losses.append(step(images, labels).item())
            times.append(time.perf_counter() - t0)
        runs[mode] = (np.array(losses), np.array(times))
    (e_loss, e_t), (c_loss, c_t) = runs["eager"], runs["compiled"]
    print("step   eager loss   compiled loss")
    for i, (a, b) in enumerate(zip(e_loss, c_loss)):
        print(f"{i + 1:4d}   {a:10.6f}   {b:13.6f}")
    diff = float(np.max(np.abs(e_loss - c_loss)))
    # Medians skip the first call (the compiled one traces and generates code then).
    e_med, c_med = np.median(e_t[1:] if len(e_t) > 1 else e_t), np.median(c_t[1:] if len(c_t) > 1 else c_t)
    print(f"largest loss difference: {diff:.2e}")
    print(f"step time (median): eager {1000 * e_med:.1f} ms, compiled {1000 * c_med:.1f} ms "
          f"({e_med / c_med:.2f}x); compiled first call {1000 * c_t[0]:.0f} ms")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Train a small CNN on MNIST with tracecc")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--width", type=int, default=16, help="channels of the first conv (default 16)")
    p.add_argument("--train-limit", type=int, default=None, help="use only this many training images")
    p.add_argument("--data", default=None, help="folder with the MNIST IDX .gz files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="compile the training step")
    p.add_argument("--compare", type=int, default=0, metavar="STEPS",
                   help="run STEPS steps eagerly and compiled from the same seed, compare, exit")
    args = p.parse_args(argv)

    root = find_data(args.data)
    train_set, test_set = mnist(root, mean=0.1307, std=0.3081)
    if args.train_limit:
        train_set = torch.utils.data.Subset(train_set, range(min(args.train_limit, len(train_set))))
    if args.compare:
        return compare(args, train_set)

    model, optimizer, train_step = make_training(args)
    if args.compile:
        train_step = torch.compile(train_step)
    loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(args.seed))
    print(f"MNIST from {root}: {len(train_set)} training, {len(test_set)} test images; "
          f"{sum(p.numel() for p in model.parameters())} parameters; AdamW peak lr {args.lr}, "
          f"batch {args.batch_size}, {args.epochs} epoch(s), {'compiled' if args.compile else 'eager'}")
    start_all = time.perf_counter()
    scheduler = optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * len(loader))
    for epoch in range(args.epochs):
        losses, times = [], []
        start = time.perf_counter()
        for images, labels in loader:
            t0 = time.perf_counter()
            loss = train_step(images, labels)
            times.append(time.perf_counter() - t0)
            scheduler.step()
            losses.append(loss.item())
            if len(losses) % 100 == 0:
                print(f"  step {len(losses)}: loss {np.mean(losses[-100:]):.4f}, "
                      f"{1000 * np.median(times[-100:]):.1f} ms/step", flush=True)
        print(f"Epoch {epoch + 1}: mean loss {np.mean(losses):.4f}, {time.perf_counter() - start:.1f} s, "
              f"median step {1000 * np.median(times[1:] or times):.1f} ms "
              f"({'compiled' if args.compile else 'eager'})", flush=True)
    print(f"Accuracy on test data: {evaluate(model, test_set):.2f}% "
          f"(training took {time.perf_counter() - start_all:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

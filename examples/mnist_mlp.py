# The classic first PyTorch program (../shared/seed/mnist_example.py) running on tracecc:
# the same lines with only the imports changed, plus command-line flags and timing.
#
#   python examples/mnist_mlp.py [--epochs 3] [--batch-size 64] [--data DIR] [--compile]
#
# MNIST comes from --data, else $TRACECC_DATA, else ../shared/data/mnist beside the
# checkout, else ./data (downloaded there if missing).
import argparse
import os
import time

# This model's matmuls are small (64x784 @ 784x128): one BLAS thread is faster than several,
# and on a busy machine OpenBLAS's spinning threads slow eager steps down 30-fold. Must be
# set before numpy loads; an explicit OPENBLAS_NUM_THREADS in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Step 1: Import libraries
import tracecc as torch
import tracecc.nn as nn
import tracecc.nn.functional as F
import tracecc.optim as optim
from tracecc.vision import datasets, transforms
from _common import find_data  # where the data is (shared by the MNIST examples)


parser = argparse.ArgumentParser(description="Train a 3-layer MLP on MNIST with tracecc")
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--data", default=None, help="folder with the MNIST IDX .gz files")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--compile", action="store_true", help="compile the training step")
parser.add_argument("--dump", default=None, metavar="DIR",
                    help="with --compile: write each compiler stage of the step to DIR "
                         "(as TRACECC_DUMP_DIR=DIR; read it with `tracecc show DIR`)")
args = parser.parse_args()
torch.manual_seed(args.seed)
root = find_data(args.data)

# Step 2: Load and transform the MNIST dataset
transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
train_set = datasets.MNIST(root=root, train=True, download=True, transform=transform)
test_set = datasets.MNIST(root=root, train=False, download=True, transform=transform)
train_loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
test_loader = torch.utils.data.DataLoader(test_set, batch_size=args.batch_size, shuffle=False)


# Step 3: Define a simple neural network
class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(28*28, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 28*28)  # Flatten the image
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        x = self.fc3(x)
        return x


model = Net()

# Step 4: Set loss function and optimizer
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(model.parameters(), lr=args.lr)


def train_step(images, labels):
    optimizer.zero_grad()
    outputs = model(images)
    loss = criterion(outputs, labels)
    loss.backward()
    optimizer.step()
    return loss


if args.compile:
    if args.dump:
        os.environ["TRACECC_DUMP_DIR"] = args.dump
    train_step = torch.compile(train_step)
    print("training step compiled with tracecc.compile" + (f", dumps in {args.dump}/" if args.dump else ""))

print(f"MNIST from {root}: {len(train_set)} training, {len(test_set)} test images; "
      f"batch {args.batch_size}, SGD lr {args.lr}, {args.epochs} epochs")

# Step 5: Train the model
for epoch in range(args.epochs):
    running_loss = 0.0
    steps = 0
    start = time.perf_counter()
    for images, labels in train_loader:
        loss = train_step(images, labels)
        running_loss += loss.item()
        steps += 1
    elapsed = time.perf_counter() - start
    print(f"Epoch {epoch+1}, Loss: {running_loss:.4f} "
          f"(mean {running_loss / steps:.4f}; {elapsed:.1f} s, {1000 * elapsed / steps:.2f} ms/step)")

# Step 6: Test the model
correct = 0
total = 0
with torch.no_grad():
    for images, labels in test_loader:
        outputs = model(images)
        _, predicted = torch.max(outputs.data, 1)
        total += labels.size(0)
        correct += (predicted == labels).sum().item()
print(f"Accuracy on test data: {100 * correct / total:.2f}%")

"""A short real-MNIST training run with the seed program's model, data pipeline and loop:
one epoch over the first 20,000 training images with Adam(lr=1e-3) must reach at least 87%
on the full 10,000-image test set. It reaches 89.9% with seed 0 (89.6-90.6% over seeds 0-2;
PyTorch lands in the same range). The full example, examples/mnist_mlp.py (3 epochs over
60,000 images, SGD lr 0.01), reaches about 91%."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tracecc as torch
import tracecc.nn as nn
import tracecc.nn.functional as F
import tracecc.optim as optim
from tracecc.vision import datasets, transforms

REPO = Path(__file__).resolve().parent.parent
ROOT = Path(os.environ.get("TRACECC_DATA") or REPO.parent / "shared" / "data" / "mnist")
pytestmark = pytest.mark.skipif(not (ROOT / "train-images-idx3-ubyte.gz").exists()
                                and not (ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists(),
                                reason=f"real MNIST not found in {ROOT} (set TRACECC_DATA)")


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(28*28, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x):
        x = x.view(-1, 28*28)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def test_one_epoch_on_20k_images_reaches_87_percent():
    torch.manual_seed(0)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train_set = datasets.MNIST(root=ROOT, train=True, transform=transform)
    test_set = datasets.MNIST(root=ROOT, train=False, transform=transform)
    subset = torch.utils.data.Subset(train_set, range(20000))
    train_loader = torch.utils.data.DataLoader(subset, batch_size=64, shuffle=True,
                                               generator=torch.Generator().manual_seed(0))
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=1000, shuffle=False)

    model = Net()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)  # steadier than SGD over this few steps
    losses = []
    for images, labels in train_loader:
        optimizer.zero_grad()
        loss = criterion(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert len(losses) == 313
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20  # it learned

    correct = total = 0
    with torch.no_grad():
        for images, labels in test_loader:
            _, predicted = torch.max(model(images).data, 1)
            total += labels.size(0)
            correct += (predicted == labels).sum().item()
    accuracy = 100 * correct / total
    assert total == 10000
    assert accuracy >= 87.0, f"test accuracy {accuracy:.2f}% after one epoch on 20k images"

# The tiny training step that docs/tour.md follows through the compiler:
#
#   tracecc dump examples/tour_step.py      # writes tracecc_dump/train_step_0/, ...
#   tracecc show tracecc_dump --stage list
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import tracecc as torch  # noqa: E402
import tracecc.nn as nn  # noqa: E402
import tracecc.nn.functional as F  # noqa: E402

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)


@torch.compile
def train_step(x, y):
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


x, y = torch.randn(8, 16), torch.randint(0, 4, (8,))
for step in range(3):
    print(f"step {step}: loss {train_step(x, y).item():.4f}")

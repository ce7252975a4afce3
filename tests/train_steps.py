"""The training step the whole-step tests compile: zero grads, forward, cross-entropy,
backward, update, as a PyTorch user writes it."""

import tracecc.nn.functional as F


def train_step(model, opt, set_to_none=True):
    """step(images, labels) -> loss for this model and optimizer."""
    def step(images, labels):
        opt.zero_grad(set_to_none=set_to_none)
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        opt.step()
        return loss

    return step

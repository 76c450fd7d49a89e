"""Makes a user's own model as TorchScript for `autoqnn --model PATH.pt` (see docs/models.md).

Usage: /usr/bin/python3 examples/torchscript_model.py OUT.pt [--trace]
"""
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class MyNet(nn.Module):
    """A small CNN for 1x28x28 images, 10 classes."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    torch.manual_seed(0)
    m = MyNet().eval()
    if "--trace" in sys.argv:
        # tracing fixes BatchNorm's mode; script the model to finetune with batch statistics
        torch.jit.trace(m, torch.zeros(1, 1, 28, 28)).save(sys.argv[1])
    else:
        torch.jit.script(m).save(sys.argv[1])
    print(sys.argv[1])

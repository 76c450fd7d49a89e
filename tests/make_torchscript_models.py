"""Writes the TorchScript models the import tests use (Debian's python3-torch / python3-torchvision; no
download). Usage: /usr/bin/python3 make_torchscript_models.py OUT_DIR [NAME ...]

  cnn_scripted.pt     a small CNN (conv-bn-relu x2, linear), torch.jit.script, 1x28x28 -> 10
  resnet_traced.pt    a residual net (stem, two basic blocks, one with a 1x1 downsample conv), torch.jit.trace in
                      eval mode, 1x28x28 -> 10
  resnet18.pt         torchvision resnet18 (random init; 1-channel stem), torch.jit.script, 1x28x28 -> 10
  lenet5.pt           the zoo's LeNet-5 (src/autoqnn/model_lenet.cpp) written in Python, torch.jit.script
  resnet20.pt         the zoo's ResNet-20 (src/autoqnn/model_resnet.cpp: option-A shortcuts) in Python, torch.jit.script,
                      3x32x32 -> 10
  frozen.pt           cnn_scripted frozen with torch.jit.freeze (no parameters left)
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean(dim=(2, 3)))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.downsample is None else self.downsample(x)
        return F.relu(out + short)


class TinyResNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(Block(8, 8, 1), Block(8, 16, 2))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class LeNet5(nn.Module):
    """The zoo's lenet5 for 1x28x28 (conv1 padding 2), same names: conv1 bn1 conv2 bn2 fc1 fc2 fc3."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 16, 5, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class CifarBlock(nn.Module):
    """The zoo's BasicBlock: option-A shortcut (x[:, :, ::s, ::s], new channels zero-padded half on each side)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.extra = cout - cin

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x
        if self.stride != 1 or self.extra != 0:
            short = x[:, :, :: self.stride, :: self.stride]
            front = self.extra // 2
            short = F.pad(short, [0, 0, 0, 0, front, self.extra - front])
        return F.relu(out + short)


class ResNet20(nn.Module):
    """The zoo's resnet20, same names: conv1 bn1 layer{1,2,3}.{0,1,2}.{conv1,bn1,conv2,bn2} fc."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(CifarBlock(16, 16, 1), CifarBlock(16, 16, 1), CifarBlock(16, 16, 1))
        self.layer2 = nn.Sequential(CifarBlock(16, 32, 2), CifarBlock(32, 32, 1), CifarBlock(32, 32, 1))
        self.layer3 = nn.Sequential(CifarBlock(32, 64, 2), CifarBlock(64, 64, 1), CifarBlock(64, 64, 1))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean(dim=(2, 3)))


def resnet18_1ch(num_classes: int = 10):
    import torchvision

    m = torchvision.models.resnet18(num_classes=num_classes)  # random init: no weights are downloaded
    m.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    return m


def make(name: str, out_dir: str):
    torch.manual_seed(0)
    path = os.path.join(out_dir, name + ".pt")
    if name == "cnn_scripted":
        torch.jit.script(SmallCNN()).save(path)
    elif name == "resnet_traced":
        m = TinyResNet().eval()
        torch.jit.trace(m, torch.zeros(2, 1, 28, 28)).save(path)
    elif name == "resnet18":
        torch.jit.script(resnet18_1ch()).save(path)
    elif name == "lenet5":
        torch.jit.script(LeNet5()).save(path)
    elif name == "resnet20":
        torch.jit.script(ResNet20()).save(path)
    elif name == "frozen":
        torch.jit.freeze(torch.jit.script(SmallCNN().eval())).save(path)
    else:
        raise SystemExit("unknown model name " + name)
    print(path)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    names = sys.argv[2:] or ["cnn_scripted", "resnet_traced", "resnet18", "lenet5", "frozen"]
    os.makedirs(sys.argv[1], exist_ok=True)
    for n in names:
        make(n, sys.argv[1])

"""torch.nn.Modules with torchvision's module names, written here from the papers' layer tables (torchvision is not
installed): their ``state_dict`` has the keys of a torchvision checkpoint, so a test can load zoo parameters into
them (strict), save their state_dict as a checkpoint, or export them with torch.onnx.export, and compare outputs.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


# -- MobileNetV2 --------------------------------------------------------------------------------------------------
def conv_norm_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU6())


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, t: int):
        super().__init__()
        hidden = cin * t
        expand = [conv_norm_act(cin, hidden, 1)] if t != 1 else []
        self.conv = nn.Sequential(*expand, conv_norm_act(hidden, hidden, 3, stride, hidden),
                                  nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, c = [conv_norm_act(3, 32, 3, 2)], 32
        for t, out, n, s in self.SETTING:
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        self.features = nn.Sequential(*layers, conv_norm_act(c, 1280, 1))
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))


# -- SqueezeNet 1.0 -----------------------------------------------------------------------------------------------
class Fire(nn.Module):
    def __init__(self, cin: int, s: int, e1: int, e3: int):
        super().__init__()
        self.squeeze, self.squeeze_activation = nn.Conv2d(cin, s, 1), nn.ReLU()
        self.expand1x1, self.expand1x1_activation = nn.Conv2d(s, e1, 1), nn.ReLU()
        self.expand3x3, self.expand3x3_activation = nn.Conv2d(s, e3, 3, padding=1), nn.ReLU()

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 7, 2), nn.ReLU(), pool(), Fire(96, 16, 64, 64), Fire(128, 16, 64, 64),
            Fire(128, 32, 128, 128), pool(), Fire(256, 32, 128, 128), Fire(256, 48, 192, 192),
            Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), pool(), Fire(512, 64, 256, 256))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1), nn.ReLU(),
                                        nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


# -- DenseNet-121 -------------------------------------------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int = 32, bn_size: int = 4):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU()
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list):
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        return self.conv2(self.relu2(self.norm2(x)))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, cin: int, growth: int = 32):
        super().__init__({f"denselayer{i + 1}": DenseLayer(cin + i * growth, growth) for i in range(layers)})

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet121(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        parts: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Conv2d(3, 64, 7, 2, 3, bias=False)), ("norm0", nn.BatchNorm2d(64)), ("relu0", nn.ReLU()),
            ("pool0", nn.MaxPool2d(3, 2, 1))]
        c = 64
        for i, n in enumerate((6, 12, 24, 16), start=1):
            parts.append((f"denseblock{i}", DenseBlock(n, c)))
            c += 32 * n
            if i < 4:
                parts.append((f"transition{i}", nn.Sequential(OrderedDict(
                    norm=nn.BatchNorm2d(c), relu=nn.ReLU(), conv=nn.Conv2d(c, c // 2, 1, bias=False),
                    pool=nn.AvgPool2d(2, 2)))))
                c //= 2
        parts.append(("norm5", nn.BatchNorm2d(c)))
        self.features = nn.Sequential(OrderedDict(parts))
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)
        return self.classifier(torch.flatten(x, 1))


# -- Inception v3 -------------------------------------------------------------------------------------------------
class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Branches(nn.Module):
    """An inception block: chains of BasicConv2d (the first reads the block input), concatenated in order.
    A chain starting with "branch_pool" reads a 3×3/1 average pool; the chain "max_pool" is a 3×3/2 max pool."""

    def __init__(self, cin: int, chains: list):
        super().__init__()
        self.chains = []
        for chain in chains:
            if chain == "max_pool":
                self.chains.append(chain)
                continue
            c = cin
            for name, cout, kernel, kw in chain:
                setattr(self, name, BasicConv2d(c, cout, kernel, **kw))
                c = cout
            self.chains.append([name for name, *_ in chain])

    def forward(self, x):
        outs = []
        for chain in self.chains:
            if chain == "max_pool":
                outs.append(F.max_pool2d(x, 3, 2))
                continue
            y = F.avg_pool2d(x, 3, 1, 1) if chain[0] == "branch_pool" else x
            for name in chain:
                y = getattr(self, name)(y)
            outs.append(y)
        return torch.cat(outs, 1)


def P(pad=0, stride=1) -> dict:
    return {"padding": pad, "stride": stride}


ROW7, COL7 = P((0, 3)), P((3, 0))


def inception_a(cin: int, pool: int) -> Branches:
    return Branches(cin, [
        [("branch1x1", 64, 1, P())],
        [("branch5x5_1", 48, 1, P()), ("branch5x5_2", 64, 5, P(2))],
        [("branch3x3dbl_1", 64, 1, P()), ("branch3x3dbl_2", 96, 3, P(1)), ("branch3x3dbl_3", 96, 3, P(1))],
        [("branch_pool", pool, 1, P())]])


def inception_b(cin: int) -> Branches:
    return Branches(cin, [
        [("branch3x3", 384, 3, P(0, 2))],
        [("branch3x3dbl_1", 64, 1, P()), ("branch3x3dbl_2", 96, 3, P(1)), ("branch3x3dbl_3", 96, 3, P(0, 2))],
        "max_pool"])


def inception_c(cin: int, c7: int) -> Branches:
    return Branches(cin, [
        [("branch1x1", 192, 1, P())],
        [("branch7x7_1", c7, 1, P()), ("branch7x7_2", c7, (1, 7), ROW7), ("branch7x7_3", 192, (7, 1), COL7)],
        [("branch7x7dbl_1", c7, 1, P()), ("branch7x7dbl_2", c7, (7, 1), COL7), ("branch7x7dbl_3", c7, (1, 7), ROW7),
         ("branch7x7dbl_4", c7, (7, 1), COL7), ("branch7x7dbl_5", 192, (1, 7), ROW7)],
        [("branch_pool", 192, 1, P())]])


def inception_d(cin: int) -> Branches:
    return Branches(cin, [
        [("branch3x3_1", 192, 1, P()), ("branch3x3_2", 320, 3, P(0, 2))],
        [("branch7x7x3_1", 192, 1, P()), ("branch7x7x3_2", 192, (1, 7), ROW7),
         ("branch7x7x3_3", 192, (7, 1), COL7), ("branch7x7x3_4", 192, 3, P(0, 2))],
        "max_pool"])


class InceptionE(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([self.branch1x1(x), torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1),
                          torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1),
                          self.branch_pool(F.avg_pool2d(x, 3, 1, 1))], 1)


class InceptionAux(nn.Module):
    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv0, self.conv1 = BasicConv2d(cin, 128, 1), BasicConv2d(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x):
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, 3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionV3(nn.Module):
    def __init__(self, num_classes: int = 1000, aux_logits: bool = False):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = inception_a(192, 32), inception_a(256, 64), inception_a(288, 64)
        self.Mixed_6a = inception_b(288)
        self.Mixed_6b, self.Mixed_6c = inception_c(768, 128), inception_c(768, 160)
        self.Mixed_6d, self.Mixed_6e = inception_c(768, 160), inception_c(768, 192)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a, self.Mixed_7b, self.Mixed_7c = inception_d(768), InceptionE(1280), InceptionE(2048)
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e"):
            x = getattr(self, f"Mixed_{name}")(x)
        aux = self.AuxLogits(x) if self.AuxLogits is not None else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        logits = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return logits if aux is None else (logits, aux)


MODULES = {"mobilenet_v2": MobileNetV2, "squeezenet1_0": SqueezeNet, "densenet121": DenseNet121,
           "inception_v3": InceptionV3}

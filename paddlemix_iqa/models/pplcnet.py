"""PP-LCNet, the backbone of PaddleClas's PULC classifiers, as a compact Paddle definition.

The package never trains or ships PULC weights (users download PaddleClas's
inference models). This definition exists so that tests and benchmarks can
export a network of the same layout (depthwise-separable blocks, hardswish, SE,
1280-d head) with random weights in the official inference layout, and check
the Paddle Inference runtime against the network's own dynamic-graph output.
"""

from __future__ import annotations

import os
from pathlib import Path

import paddle
from paddle import nn

# (kernel, in, out, stride, SE) per depthwise-separable block, PP-LCNet x1.0 (PaddleClas NET_CONFIG)
NET_CONFIG = [
    (3, 16, 32, 1, False),
    (3, 32, 64, 2, False),
    (3, 64, 64, 1, False),
    (3, 64, 128, 2, False),
    (3, 128, 128, 1, False),
    (3, 128, 256, 2, False),
    *[(5, 256, 256, 1, False)] * 5,
    (5, 256, 512, 2, True),
    (5, 512, 512, 1, True),
]


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2D(cin, cout, k, stride=stride, padding=(k - 1) // 2, groups=groups, bias_attr=False),
            nn.BatchNorm2D(cout),
            nn.Hardswish(),
        )


class SE(nn.Layer):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.reduce = nn.Conv2D(channels, channels // reduction, 1)
        self.expand = nn.Conv2D(channels // reduction, channels, 1)

    def forward(self, x):
        w = nn.functional.relu(self.reduce(self.pool(x)))
        return x * nn.functional.hardsigmoid(self.expand(w), slope=0.2, offset=0.5)


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int, stride: int, use_se: bool):
        layers = [ConvBN(cin, cin, k, stride, groups=cin)]
        if use_se:
            layers.append(SE(cin))
        layers.append(ConvBN(cin, cout, 1))
        super().__init__(*layers)


class PPLCNet(nn.Layer):
    """PP-LCNet classifier; ``softmax=True`` appends the softmax that PaddleClas's export adds."""

    def __init__(self, scale: float = 1.0, class_num: int = 2, softmax: bool = True, head: int = 1280):
        super().__init__()
        self.stem = ConvBN(3, _divisible(16 * scale), 3, stride=2)
        self.blocks = nn.Sequential(
            *[
                DepthwiseSeparable(_divisible(cin * scale), _divisible(cout * scale), k, s, se)
                for k, cin, cout, s, se in NET_CONFIG
            ]
        )
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.last_conv = nn.Conv2D(_divisible(512 * scale), head, 1)
        self.act = nn.Hardswish()
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(head, class_num)
        self.softmax = softmax

    def forward(self, x):
        x = self.act(self.last_conv(self.pool(self.blocks(self.stem(x)))))
        x = self.fc(paddle.flatten(self.dropout(x), 1))
        return nn.functional.softmax(x, axis=-1) if self.softmax else x


def export_inference(model: nn.Layer, directory: str | os.PathLike, size: int = 224) -> Path:
    """Save ``model`` as ``directory/inference.*`` (PaddleClas's layout; the format follows Paddle's PIR flag)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.eval()
    spec = [paddle.static.InputSpec([None, 3, size, size], "float32", name="x")]
    paddle.jit.save(model, str(directory / "inference"), input_spec=spec)
    return directory

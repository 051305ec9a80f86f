# SPDX-License-Identifier: Apache-2.0
"""Make the checked-in ONNX fixtures of tests/test_onnx_exports.py with real exporters (not run in CI).

Needs torch (and brevitas for the QONNX file) in a throwaway venv, e.g.::

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 onnx==1.23.2 onnxscript brevitas
    /tmp/torchenv/bin/python tests/data/onnx/make_exports.py

Every model is tiny with seeded random weights (no downloads); each file is written with its
weights inside (``external_data=False``). For each file the script also writes ``<name>.npz`` with
one input ``x`` and torch's output ``y`` (float32), so the tests can check the import against
the exporter's own framework as well as against onnxruntime.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent


class Attention(nn.Module):
    """timm's ``Attention`` (timm/layers/attention.py), copied so that timm is not needed."""

    def __init__(self, dim: int, heads: int, fused: bool):
        super().__init__()
        self.heads, self.head_dim, self.fused = heads, dim // heads, fused
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            q = q * self.scale
            attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
            x = attn @ v
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """A ViT encoder block as timm writes it (pre-norm attention and MLP, residuals)."""

    def __init__(self, dim: int = 16, heads: int = 2, hidden: int = 32, fused: bool = False, attention: bool = True,
                 approximate: str = "none"):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, fused) if attention else None
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.act = nn.GELU(approximate=approximate)

    def forward(self, x):
        if self.attn is not None:
            x = x + self.attn(self.norm1(x))
        return (x + self.fc2(self.act(self.fc1(self.norm2(x))))).softmax(dim=-1)


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, one block, head on the class token."""

    def __init__(self, image: int = 16, patch: int = 4, dim: int = 16, classes: int = 5):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, patch)
        tokens = (image // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.block = Block(dim, attention=True)
        self.block.forward = lambda x: x + self.block.fc2(self.block.act(self.block.fc1(self.block.norm2(
            x + self.block.attn(self.block.norm1(x))))))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.block(x))[:, 0])


class TinyCNN(nn.Module):
    """A ResNet-style stem and head: Conv + BN + ReLU, MaxPool, Conv + BN + ReLU, global pool, Linear."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.b1(self.c1(x))))
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.2 - 0.1)


def export(name: str, model: nn.Module, shape: tuple[int, ...], **kwargs) -> None:
    model.eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=gen) * 2 - 1
    path = HERE / f"{name}.onnx"
    with torch.no_grad():
        y = model(x)
        torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"], external_data=False, **kwargs)
    np.savez(HERE / f"{name}.npz", x=x.numpy(), y=y.numpy())
    print(f"{path.name}: {path.stat().st_size:,} bytes", file=sys.stderr)


def main() -> None:
    torch.manual_seed(0)
    export("mlp_block_legacy17", Block(attention=False), (1, 8, 16), dynamo=False, opset_version=17)
    export("mlp_block_legacy14", Block(attention=False), (1, 8, 16), dynamo=False, opset_version=14)
    export("mlp_block_tanh_dynamo18", Block(attention=False, approximate="tanh"), (1, 8, 16), dynamo=True,
           opset_version=18)
    export("vit_block_legacy17", Block(attention=True), (1, 8, 16), dynamo=False, opset_version=17)
    export("vit_block_sdpa_dynamo20", Block(attention=True, fused=True), (1, 8, 16), dynamo=True, opset_version=20)
    cnn = TinyCNN()
    _randomize_bn(cnn, torch.Generator().manual_seed(2))
    export("cnn_legacy17_nofold", cnn, (1, 3, 16, 16), dynamo=False, opset_version=17, do_constant_folding=False)
    export("cnn_dynamo18", cnn, (1, 3, 16, 16), dynamo=True, opset_version=18)
    export("tiny_vit_legacy17", TinyViT(), (1, 3, 16, 16), dynamo=False, opset_version=17)
    if "--brevitas" in sys.argv:
        make_brevitas()


def make_brevitas() -> None:
    """A Brevitas MLP with power-of-two quantizers, exported as QONNX (TorchScript path)."""
    from brevitas import nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import (
        Int8ActPerTensorFixedPoint,
        Int8WeightPerTensorFixedPoint,
        Int32Bias,
        Uint8ActPerTensorFixedPoint,
    )

    class QMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(16, 32, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                       bias_quant=Int32Bias)
            self.relu = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.fc2 = qnn.QuantLinear(32, 8, bias=True, weight_quant=Int8WeightPerTensorFixedPoint,
                                       bias_quant=Int32Bias)
            self.out = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint)

        def forward(self, x):
            return self.out(self.fc2(self.relu(self.fc1(self.inp(x)))))

    model = QMLP().eval()
    gen = torch.Generator().manual_seed(3)
    x = torch.rand((1, 16), generator=gen) * 2 - 1
    with torch.no_grad():
        for _ in range(4):  # let the activation quantizers settle their (power-of-two) scales
            model.train()(torch.rand((64, 16), generator=gen) * 2 - 1)
        model.eval()
        y = model(x)
    path = HERE / "brevitas_qmlp.onnx"
    export_qonnx(model, x, export_path=str(path), dynamo=False)
    np.savez(HERE / "brevitas_qmlp.npz", x=x.numpy(), y=y.numpy())
    print(f"{path.name}: {path.stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

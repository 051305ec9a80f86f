# SPDX-License-Identifier: Apache-2.0
"""Make the checked-in ONNX fixtures of tests/test_onnx_exports.py with real exporters (not run in CI).

Needs torch (and brevitas for the QONNX file) in a throwaway venv, e.g.::

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 onnx==1.23.2 onnxscript brevitas
    /tmp/torchenv/bin/python tests/data/onnx/make_exports.py

``--brevitas`` adds the QONNX files. ``--zoo`` makes only the timm and torchvision models (:func:`make_zoo`),
in a venv of their own (made with torch 2.14.1, torchvision 0.29.1, timm 1.0.31, onnx 1.23.2, onnxscript
0.7.2; a second run gives the same bytes)::

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm onnx onnxscript
    /tmp/tv/bin/python tests/data/onnx/make_exports.py --zoo

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


class MhaBlock(nn.Module):
    """torch's nn.MultiheadAttention (torchvision's ViT uses it) after a LayerNorm, with a residual."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        h = self.norm(x)
        # In eval mode without grad, torch takes its fused "fast path" (aten::_native_multi_head_attention),
        # which the legacy exporter cannot write; training mode with dropout 0 computes the same thing.
        self.attn.training = True
        return x + self.attn(h, h, h, need_weights=False)[0]


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
    if "--zoo" in sys.argv:  # only these: the files below were made with torch 2.13 and stay as they are
        make_zoo()
        return
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
    torch.manual_seed(5)  # added later: its own seed, so the files above stay as they were
    export("mha_block_legacy17", MhaBlock(), (1, 6, 16), dynamo=False, opset_version=17)
    export("mha_block_dynamo18", MhaBlock(), (1, 6, 16), dynamo=True, opset_version=18)
    if "--brevitas" in sys.argv:
        make_brevitas()
        make_brevitas_cnn()


def make_zoo() -> None:
    """Models from timm and torchvision themselves (their own classes and forward), at small sizes.

    - ``timm_vit_legacy17`` and ``timm_vit_dynamo18``: ``timm.models.vision_transformer.VisionTransformer``
      (image 32, patch 8, embed 64, depth 2, heads 2, class token, ``global_pool='token'``, 10 classes).
    - ``tv_resnet18_w8_legacy17`` (BatchNorm folded by the exporter): torchvision's ``ResNet`` with ``BasicBlock`` and resnet18's layers
      [2, 2, 2, 2], widths 8, 16, 32, 64 instead of 64 … 512. torchvision's constructor fixes the widths, so
      :class:`NarrowResNet` rebuilds the stem, the four stages (with ResNet's own ``_make_layer``) and
      ``fc`` at the reduced widths; ``forward`` is torchvision's, unchanged. Input 32 × 32.
    - ``tv_mobilenet_v2_legacy17_nofold`` (BatchNormalization left for the import to fold) and
      ``tv_mobilenet_v2_dynamo18``: ``torchvision.models.mobilenet_v2(width_mult=0.5)`` with the first three
      rows of its inverted-residual settings (t, c, n, s = 1,16,1,1; 6,24,2,2; 6,32,3,2): depthwise convs,
      ReLU6 (Clip), the residual inverted blocks, the 1280-channel last conv, dropout and the classifier.

    Weights are seeded random; BatchNorm statistics and affine parameters (and LayerNorm's) are randomized
    so that folding is exercised; every model is in eval mode.
    """
    import timm
    import torchvision
    from timm.models.vision_transformer import VisionTransformer
    from torchvision.models.resnet import BasicBlock, ResNet

    class NarrowResNet(ResNet):
        def __init__(self, widths=(8, 16, 32, 64), layers=(2, 2, 2, 2), num_classes=10):
            super().__init__(BasicBlock, [1, 1, 1, 1], num_classes=num_classes)  # replaced below
            self.inplanes = widths[0]
            self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = self._norm_layer(widths[0])
            self.layer1 = self._make_layer(BasicBlock, widths[0], layers[0])
            self.layer2 = self._make_layer(BasicBlock, widths[1], layers[1], stride=2)
            self.layer3 = self._make_layer(BasicBlock, widths[2], layers[2], stride=2)
            self.layer4 = self._make_layer(BasicBlock, widths[3], layers[3], stride=2)
            self.fc = nn.Linear(widths[3] * BasicBlock.expansion, num_classes)
            for m in self.modules():  # ResNet's own initialization
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    print(f"timm {timm.__version__}, torchvision {torchvision.__version__}", file=sys.stderr)
    torch.manual_seed(7)
    vit = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10,
                            class_token=True, global_pool="token")
    _randomize_norms(vit, torch.Generator().manual_seed(8))
    export("timm_vit_legacy17", vit, (1, 3, 32, 32), dynamo=False, opset_version=17)
    export("timm_vit_dynamo18", vit, (1, 3, 32, 32), dynamo=True, opset_version=18)
    torch.manual_seed(9)
    resnet = NarrowResNet()
    _randomize_bn(resnet, torch.Generator().manual_seed(10))
    export("tv_resnet18_w8_legacy17", resnet, (1, 3, 32, 32), dynamo=False, opset_version=17)
    torch.manual_seed(11)
    mobilenet = torchvision.models.mobilenet_v2(
        num_classes=10, width_mult=0.5, inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2]])
    _randomize_bn(mobilenet, torch.Generator().manual_seed(12))
    export("tv_mobilenet_v2_legacy17_nofold", mobilenet, (1, 3, 32, 32), dynamo=False, opset_version=17,
           do_constant_folding=False)
    export("tv_mobilenet_v2_dynamo18", mobilenet, (1, 3, 32, 32), dynamo=True, opset_version=18)


def _randomize_norms(model: nn.Module, gen: torch.Generator) -> None:
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)


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


def make_brevitas_cnn() -> None:
    """A Brevitas CNN (QuantConv2d 4-bit po2 weights, BatchNorm kept, QuantReLU, MaxPool, QuantLinear), QONNX."""
    from brevitas import nn as qnn
    from brevitas.export import export_qonnx
    from brevitas.quant import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Uint8ActPerTensorFixedPoint

    class QCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.conv = qnn.QuantConv2d(3, 8, 3, padding=1, bias=False, weight_quant=Int8WeightPerTensorFixedPoint,
                                        weight_bit_width=4)
            self.bn = nn.BatchNorm2d(8)
            self.relu = qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)
            self.pool = nn.MaxPool2d(2)
            self.fc = qnn.QuantLinear(8 * 4 * 4, 10, bias=True, weight_quant=Int8WeightPerTensorFixedPoint)

        def forward(self, x):
            x = self.pool(self.relu(self.bn(self.conv(self.inp(x)))))
            return self.fc(torch.flatten(x, 1))

    model = QCNN()
    _randomize_bn(model, torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(5)
    x = torch.rand((1, 3, 8, 8), generator=gen) * 2 - 1
    with torch.no_grad():
        for _ in range(4):
            model.train()(torch.rand((16, 3, 8, 8), generator=gen) * 2 - 1)
        _randomize_bn(model, torch.Generator().manual_seed(4))
        model.eval()
        y = model(x)
    path = HERE / "brevitas_qcnn.onnx"
    export_qonnx(model, x, export_path=str(path), dynamo=False)
    np.savez(HERE / "brevitas_qcnn.npz", x=x.numpy(), y=y.numpy())
    print(f"{path.name}: {path.stat().st_size:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

"""An independent model in the authors' checkpoint layout, written from the spec alone.

It is the other side of the converter round trip: random weights in the official key names
(``stem.0.conv``, ``stages.i.0`` downsampler, ``stages.i.j.{conv,f1,f2,sum,g,stack}``, ``norm``,
``head``), the VMINet 2.0 function computed the plain way (explicit tril mask, a Linear for the
token weights). It shares no code with mmvminet.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class Conv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x)


class Block(nn.Module):
    def __init__(self, dim, ratio, grid):
        super().__init__()
        self.conv = ConvBN(dim, dim, 7, groups=dim)
        self.f1 = Conv(dim, ratio * dim)
        self.f2 = Conv(dim, ratio * dim)
        self.sum = nn.Linear(grid * grid, 1, bias=False)
        self.g = Conv(ratio * dim, dim)
        self.stack = nn.Parameter(torch.ones(2))

    def forward(self, x):
        u = self.conv(x)
        a = F.relu6(self.f1(u)) * self.f2(u)
        b, d, h, w = a.shape
        tokens = a.flatten(2).transpose(1, 2)                    # (B, L, D)
        masked = tokens * torch.tril(torch.ones(h * w, d))       # zero channel n > token t
        context = self.sum(masked.transpose(1, 2))               # (B, D, 1)
        y = self.stack[0] * context.unsqueeze(-1) + self.stack[1] * a
        return x + self.g(F.relu6(y))


class OfficialVMINet(nn.Module):
    def __init__(self, base_dim, ratio, depths=(2, 2, 18, 2), num_classes=1000):
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, 32, 3, 2), nn.ReLU6())
        self.stages = nn.ModuleList()
        cin = 32
        for i, depth in enumerate(depths):
            dim = base_dim * 2**i
            grid = 224 // 2**(i + 2)
            self.stages.append(nn.Sequential(
                ConvBN(cin, dim, 3, 2), *[Block(dim, ratio, grid) for _ in range(depth)]))
            cin = dim
        self.norm = nn.BatchNorm2d(cin)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.norm(x).mean((2, 3)))


def randomize(model, seed=0):
    """Non-trivial values everywhere, BN statistics and the two mixing scalars included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point:
                if name.endswith('running_var'):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.05
                            + (1.0 if name.endswith(('bn.weight', 'norm.weight', 'stack')) else 0))
    return model

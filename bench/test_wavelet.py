"""The WNO layer: dtwin's fused op vs the same layer built on pytorch_wavelets (the library of the
WNO reference code) and on ptwt, and vs dtwin's pure-torch reference, in one run.

    pytest bench/test_wavelet.py --benchmark-enable

The layer (Tripura & Chakraborty): transform x [100, 64, 512] to level 3, mix the approximation
and the coarsest detail across the 64 channels (einsum 'bix,iox->box'), zero the finer details,
invert. Boundary modes: pytorch_wavelets has 'symmetric' and 'periodization' as dtwin; ptwt's
wavedec has no periodization, so ptwt runs in its 'zero' and 'periodic' modes (the same work,
other boundary values: compared for speed only). ptwt's convolution transform is used (its matrix
transform reconstructs db24 at level 3 wrongly). pytorch_wavelets imports ``pkg_resources``,
which recent setuptools no longer ships: a stand-in module with its one function used,
``resource_stream`` (on importlib.resources), is installed for the import.
"""

from __future__ import annotations

import importlib.resources
import sys
import types

import pytest
import torch
from torch import nn

from dtwin.ops import wavelet_coefficient_size, wavelet_conv1d, wavelet_filters
from dtwin.ops.wavelet import wavelet_conv1d_reference

SHAPE = (100, 64, 512)
LEVEL = 3
WAVELETS = ("db4", "db24")
#: role -> (library, boundary mode)
ROLES = {
    "dtwin": ("dtwin", "symmetric"),
    "dtwin reference": ("reference", "symmetric"),
    "pytorch_wavelets symmetric": ("pytorch_wavelets", "symmetric"),
    "ptwt zero": ("ptwt", "zero"),
    "ptwt periodic": ("ptwt", "periodic"),
}
PERIODIZATION_ROLES = {
    "dtwin": ("dtwin", "periodization"),
    "pytorch_wavelets periodization": ("pytorch_wavelets", "periodization"),
    "ptwt periodic": ("ptwt", "periodic"),
}


def _pytorch_wavelets():
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        # pytorch_wavelets needs only pkg_resources.resource_stream (for its DTCWT coefficients)
        stand_in = types.ModuleType("pkg_resources")
        stand_in.resource_stream = lambda package, name: (
            importlib.resources.files(package).joinpath(name).open("rb")
        )
        sys.modules["pkg_resources"] = stand_in
    return pytest.importorskip("pytorch_wavelets", reason="pytorch_wavelets is not installed")


def _mix(c: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bix,iox->box", c, w)


class PytorchWaveletsLayer(nn.Module):
    """The WNO reference code's layer on pytorch_wavelets' DWT1DForward/DWT1DInverse."""

    def __init__(self, C: int, L: int, wavelet: str, level: int, mode: str) -> None:
        super().__init__()
        pw = _pytorch_wavelets()
        self.dwt = pw.DWT1DForward(wave=wavelet, J=level, mode=mode)
        self.idwt = pw.DWT1DInverse(wave=wavelet, mode=mode)
        n = self.dwt(torch.zeros(1, 1, L))[0].shape[-1]
        self.weight = nn.Parameter(torch.rand(2, C, C, n) / (C * C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, details = self.dwt(x)  # details finest first
        coarse = _mix(details[-1], self.weight[1])
        details = [torch.zeros_like(d[:, :1]).expand(-1, coarse.shape[1], -1) for d in details[:-1]]
        return self.idwt((_mix(a, self.weight[0]), [*details, coarse]))[..., : x.shape[-1]]


class PtwtLayer(nn.Module):
    def __init__(self, C: int, L: int, wavelet: str, level: int, mode: str) -> None:
        super().__init__()
        self.ptwt = pytest.importorskip("ptwt", reason="ptwt is not installed")
        self.wavelet, self.level, self.mode = wavelet, level, mode
        n = self.ptwt.wavedec(torch.zeros(1, L), wavelet, level=level, mode=mode)[0].shape[-1]
        self.weight = nn.Parameter(torch.rand(2, C, C, n) / (C * C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.ptwt.wavedec(x, self.wavelet, level=self.level, mode=self.mode)
        mixed = [_mix(c[0], self.weight[0]), _mix(c[1], self.weight[1])]
        rest = [mixed[0].new_zeros(mixed[0].shape[:-1] + t.shape[-1:]) for t in c[2:]]
        return self.ptwt.waverec([*mixed, *rest], self.wavelet)[..., : x.shape[-1]]


class DtwinLayer(nn.Module):
    def __init__(self, C: int, L: int, wavelet: str, level: int, mode: str, reference: bool) -> None:
        super().__init__()
        n = wavelet_coefficient_size(L, wavelet, level, mode)
        self.weight = nn.Parameter(torch.rand(2, C, C, n) / (C * C))
        self.wavelet, self.level, self.mode, self.reference = wavelet, level, mode, reference
        self.register_buffer("filters", wavelet_filters(wavelet, torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reference:
            return wavelet_conv1d_reference(x, self.weight, self.filters, self.level, self.mode)
        return wavelet_conv1d(x, self.weight, self.wavelet, self.level, self.mode)


def _layer(library: str, mode: str, wavelet: str) -> nn.Module:
    torch.manual_seed(0)
    C, L = SHAPE[1], SHAPE[2]
    if library in ("dtwin", "reference"):
        return DtwinLayer(C, L, wavelet, LEVEL, mode, reference=library == "reference")
    if library == "pytorch_wavelets":
        return PytorchWaveletsLayer(C, L, wavelet, LEVEL, mode)
    return PtwtLayer(C, L, wavelet, LEVEL, mode)


def _cases(roles: dict[str, tuple[str, str]]):
    return [pytest.param(w, r, id=f"{w}-{r.replace(' ', '_')}") for w in WAVELETS for r in roles]


def _run(benchmark, roles, wavelet, role, label, backward):
    library, mode = roles[role]
    layer = _layer(library, mode, wavelet)
    x = torch.randn(*SHAPE, requires_grad=backward)
    benchmark.extra_info.update(pair=f"WNO layer {wavelet} L{LEVEL} {label}", role=role, mode=mode)
    if not backward:
        with torch.no_grad():
            benchmark.pedantic(lambda: layer(x), rounds=15, iterations=1, warmup_rounds=2)
        return
    grad = torch.randn(*SHAPE)

    def step():
        layer(x).backward(grad)

    benchmark.pedantic(step, rounds=15, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize(("wavelet", "role"), _cases(ROLES))
def test_wno_layer_forward(benchmark, wavelet, role):
    _run(benchmark, ROLES, wavelet, role, "fwd", backward=False)


@pytest.mark.parametrize(("wavelet", "role"), _cases(ROLES))
def test_wno_layer_forward_backward(benchmark, wavelet, role):
    _run(benchmark, ROLES, wavelet, role, "fwd+bwd", backward=True)


@pytest.mark.parametrize(("wavelet", "role"), _cases(PERIODIZATION_ROLES))
def test_wno_layer_periodization_forward_backward(benchmark, wavelet, role):
    _run(benchmark, PERIODIZATION_ROLES, wavelet, role, "periodization fwd+bwd", backward=True)


def test_peers_compute_the_same_layer():
    """Not a timing: the pytorch_wavelets layer equals dtwin's given the same weights (both
    boundary modes), so the pairs above compare the same work."""
    x = torch.randn(4, 8, 100, dtype=torch.float64)
    for mode in ("symmetric", "periodization"):
        theirs = PytorchWaveletsLayer(8, 100, "db4", LEVEL, mode).double()
        ours = wavelet_conv1d(x, theirs.weight.detach(), "db4", LEVEL, mode)
        with torch.no_grad():
            # pytorch_wavelets rounds its filters to float32 before .double(): 1e-8 apart
            torch.testing.assert_close(ours, theirs(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("role", ["dtwin", "pytorch_wavelets"])
def test_wno_training_step(benchmark, role):
    """One AdamW step of the HH paper's WNO (width 64, 5 layers, db24 level 3) on a batch of
    100 functions of 500 points; the peer is the same network with pytorch_wavelets layers."""
    from dtwin_operators.wno import WNO

    torch.manual_seed(0)
    model = WNO(out_offset=-72.0, out_scale=13.0)
    if role == "pytorch_wavelets":
        model.net.kernels = nn.ModuleList(
            PytorchWaveletsLayer(64, 500, "db24", LEVEL, "symmetric") for _ in model.net.kernels
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    x, y = torch.randn(100, 2, 500), torch.randn(100, 1, 500) - 70
    benchmark.extra_info.update(pair="WNO training step (HH config, batch 100 x 500)", role=role)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = model.loss(model({"x": x}), y)
        loss.backward()
        optimizer.step()

    benchmark.pedantic(step, rounds=10, iterations=1, warmup_rounds=2)

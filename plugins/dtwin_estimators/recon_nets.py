"""The learned baselines of the DRIP experiment (Eliasof, Haber, Treister, arXiv 2304.00015):
image reconstruction from y = A x + noise by networks trained end to end on (y, x) pairs, to be
compared with DRIP at the same parameter budget (:func:`width_for_budget`).

- :class:`UNetPost` (registered as ``unet_post``): post-processing of a fixed linear
  reconstruction by a residual U-Net, in the style of FBPConvNet (Jin, McCann, Froustey, Unser,
  IEEE TIP 2017): x_hat = x_0 + UNet(x_0).
- :class:`UnrolledPG` (``unrolled_pg``): K unrolled proximal-gradient iterations
  x_{k+1} = prox_k(x_k - eta_k A^T (A x_k - y)), learned step sizes eta_k > 0 and learned
  proximal maps prox_k (small residual CNNs, shared across the iterations or not), in the spirit
  of the learned ISTA / variational-network family (Gregor and LeCun 2010; Hammernik et al. 2018).

The input of the U-Net, x_0 (``init``). FBPConvNet feeds the filtered back-projection, i.e. a
cheap, *regularised* pseudo-inverse of A; its analogue for any of the three operators is the
Tikhonov solution x_0 = argmin ||A x - y||^2 + lam ||x||^2, lam = ``tikhonov`` * ||A||^2,
computed by ``cg_iterations`` conjugate-gradient iterations from zero (float64, no gradient: it is
a fixed function of the data, with no learned parameters). A few CG iterations are themselves a
regulariser (early stopping), so x_0 is a smooth, well-scaled image whatever the operator: the
deblurred image for 'blur', the observed pixels (scaled by 1 / (1 + lam)) and zeros elsewhere for
'inpainting' (A^T A is the mask, so CG ends after one step; the U-Net has to do the filling),
a Tikhonov-regularised back-projection for 'tomography'. ``init='adjoint'`` gives the cruder
A^T y / ||A||^2 instead. lam is a fixed fraction of ||A||^2, not adapted to each sample's
noise level sigma: like FBPConvNet, the network is trained at the noise level of its data and
does not read sigma (DRIP reads it, for its discrepancy-principle stopping rule).

The unrolled network starts from x_0 = A^T y / ||A||^2 (``init='adjoint'``, the first gradient
step from zero) or from zero (``init='zeros'``). Its step sizes are eta_k = softplus(rho_k) /
||A||^2 with rho_k initialised so that eta_k = 1 / ||A||^2 (the classical safe step), so the
learned parameters are O(1) whatever the scale of the operator. The last layer of every proximal
CNN, and the last layer of the U-Net, start at zero: an untrained UnrolledPG is K steps of
Landweber iteration and an untrained UNetPost returns x_0, so training starts from the classical
method. ||A||^2 comes from :func:`dtwin.nn.operator_norm_sq` (power iteration, 5% margin).

Parameter counts: :meth:`UNetPost.count_parameters` / :meth:`UnrolledPG.count_parameters` for
given hyperparameters (without building an operator), ``model.num_parameters()`` for a built
model, and :func:`width_for_budget` for the ``width`` that comes closest to a budget.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dtwin.nn import operator_norm_sq
from dtwin.sim.imaging import LinearOperator
from dtwin_estimators.reconstruction import ReconstructionModule

__all__ = ["ResidualProx", "UNet", "UNetPost", "UnrolledPG", "linear_reconstruction", "width_for_budget"]


# ------------------------------------------------------------------------------------ checks


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {list(choices)}, got {value!r}")
    return value


def _net_hparams(cls: type, hparams: dict[str, Any]) -> dict[str, Any]:
    """The network's own hyperparameters (``cls._NET``) from ``hparams`` (defaults from the
    signature of ``cls.__init__`` for those not given); the other hyperparameters of the class and
    its bases are ignored, unknown names are a ValueError."""
    signature = inspect.signature(cls.__init__).parameters
    known = {
        name
        for klass in cls.__mro__
        if "__init__" in vars(klass)
        for name, p in inspect.signature(klass.__init__).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    unknown = sorted(set(hparams) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown hyperparameters {unknown}")
    return {name: hparams.get(name, signature[name].default) for name in cls._NET}


# ------------------------------------------------------------------------- linear reconstruction


def linear_reconstruction(
    A: LinearOperator,
    y: Tensor,
    *,
    method: str = "tikhonov",
    norm_sq: float | None = None,
    tikhonov: float = 1e-2,
    iterations: int = 10,
) -> Tensor:
    """A fixed linear reconstruction x_0 Tensor[B, 1, H, W] (float64, no gradient) from data ``y``
    Tensor[B, *A.out_shape]:

    - ``'tikhonov'``: ``iterations`` conjugate-gradient steps from zero on
      (A^T A + lam I) x = A^T y, lam = ``tikhonov`` * ||A||^2;
    - ``'adjoint'``: A^T y / ||A||^2.

    ``norm_sq`` is ||A||^2 (computed by :func:`dtwin.nn.operator_norm_sq` when None)."""
    _check_choice("linear_reconstruction", "method", method, ("tikhonov", "adjoint"))
    L = operator_norm_sq(A) if norm_sq is None else float(norm_sq)
    with torch.no_grad():
        b = A.adjoint(y.detach().double())
        if method == "adjoint":
            return b / L
        lam = tikhonov * L
        tiny = torch.finfo(torch.float64).tiny

        def dot(u: Tensor, v: Tensor) -> Tensor:
            return (u * v).flatten(1).sum(1).view(-1, 1, 1, 1)

        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rs = dot(r, r)
        for _ in range(iterations):
            Mp = A.normal(p) + lam * p
            alpha = rs / dot(p, Mp).clamp_min(tiny)
            x = x + alpha * p
            r = r - alpha * Mp
            rs_new = dot(r, r)
            p = r + (rs_new / rs.clamp_min(tiny)) * p
            rs = rs_new
        return x


# ---------------------------------------------------------------------------------- networks


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """A U-Net (Ronneberger et al. 2015, as in FBPConvNet): ``depth`` levels of two 3 x 3
    convolutions + ReLU and a 2 x 2 max-pool down, a bottom level, then 2 x 2 transposed
    convolutions up, each followed by two 3 x 3 convolutions on the concatenation with the skip
    connection of its level; ``width`` * 2^l channels at level l; a 1 x 1 convolution (zero at
    initialisation) to ``channels`` out. Tensor[B, channels, H, W] -> Tensor[B, channels, H, W],
    H and W divisible by 2^depth."""

    def __init__(self, width: int, depth: int, channels: int = 1) -> None:
        super().__init__()
        self.depth = depth
        sizes = [width * 2**level for level in range(depth + 1)]
        inputs = [channels, *sizes[:-1]]
        self.down = nn.ModuleList(_double_conv(inputs[level], sizes[level]) for level in range(depth + 1))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(sizes[level + 1], sizes[level], 2, stride=2) for level in range(depth)
        )
        self.merge = nn.ModuleList(_double_conv(2 * sizes[level], sizes[level]) for level in range(depth))
        self.out = nn.Conv2d(width, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        h = x
        for level in range(self.depth):
            h = self.down[level](h)
            skips.append(h)
            h = F.max_pool2d(h, 2)
        h = self.down[self.depth](h)
        for level in reversed(range(self.depth)):
            h = self.merge[level](torch.cat((skips[level], self.up[level](h)), 1))
        return self.out(h)


class ResidualProx(nn.Module):
    """A learned proximal map x -> x + CNN(x): ``layers`` 3 x 3 convolutions (1 -> ``width``,
    ``layers`` - 2 times ``width`` -> ``width``, ``width`` -> 1) with ReLU between them; the last
    one is zero at initialisation (the map starts as the identity)."""

    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        sizes = [1, *[width] * (layers - 1), 1]
        parts: list[nn.Module] = []
        for i in range(layers):
            parts.append(nn.Conv2d(sizes[i], sizes[i + 1], 3, padding=1))
            if i < layers - 1:
                parts.append(nn.ReLU())
        nn.init.zeros_(parts[-1].weight)
        nn.init.zeros_(parts[-1].bias)
        self.net = nn.Sequential(*parts)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


# ----------------------------------------------------------------------------------- plugins


class _CountMixin:
    """``count_parameters`` and the network builder shared by the two plugins."""

    _NET: tuple[str, ...] = ()

    @classmethod
    def _check_net(cls, **net: Any) -> None:
        raise NotImplementedError

    @classmethod
    def _build_net(cls, **net: Any) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def count_parameters(cls, **hparams: Any) -> int:
        """The number of learned parameters of the model with these hyperparameters (the defaults
        for those not given; the operator's do not matter and are ignored). Builds only the
        network, on the meta device: cheap. A built model: ``model.num_parameters()``."""
        net = _net_hparams(cls, hparams)
        cls._check_net(**net)
        with torch.device("meta"):
            module = cls._build_net(**net)
        return sum(p.numel() for p in module.parameters())


class UNetPost(_CountMixin, ReconstructionModule):
    """Residual U-Net post-processing of a fixed linear reconstruction (FBPConvNet style):
    x_hat = x_0 + UNet(x_0), x_0 from :func:`linear_reconstruction`; see the module docstring for
    the choice of x_0.

    Args (besides those of :class:`~dtwin_estimators.reconstruction.ReconstructionModule`:
    operator, operator_args, image_size, tau, lr, ...):

    Args:
        width: channels at the top level (level l has ``width`` * 2^l).
        depth: the number of down/up levels (>= 1); ``image_size`` must be divisible by 2^depth.
        init: x_0: ``'tikhonov'`` (CG on the Tikhonov normal equations) or ``'adjoint'``
            (A^T y / ||A||^2).
        tikhonov: lam / ||A||^2 of the Tikhonov x_0 (> 0).
        cg_iterations: conjugate-gradient iterations of the Tikhonov x_0 (>= 1).
    """

    _NET = ("width", "depth")

    def __init__(
        self,
        *,
        width: int = 8,
        depth: int = 3,
        init: str = "tikhonov",
        tikhonov: float = 1e-2,
        cg_iterations: int = 10,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        self._check_net(width=width, depth=depth)
        _check_choice(owner, "init", init, ("tikhonov", "adjoint"))
        ok = isinstance(tikhonov, (int, float)) and not isinstance(tikhonov, bool)
        if not ok or not math.isfinite(tikhonov) or tikhonov <= 0:
            raise ValueError(
                f"{owner}: tikhonov must be a finite number > 0 (lam / ||A||^2), got {tikhonov!r}"
            )
        _check_int(owner, "cg_iterations", cg_iterations, 1)
        super().__init__(**kwargs)
        P = self.hparams.image_size
        if P % 2**depth:
            raise ValueError(
                f"{owner}: image_size {P} must be divisible by 2**depth = {2**depth} (depth {depth} "
                f"halves the image {depth} times); choose another depth or image_size"
            )
        self.norm_sq = operator_norm_sq(self.operator)  # ||A||^2, float
        self.unet = self._build_net(width=width, depth=depth)

    @classmethod
    def _check_net(cls, *, width: Any, depth: Any) -> None:
        _check_int(cls.__name__, "width", width, 1)
        _check_int(cls.__name__, "depth", depth, 1)

    @classmethod
    def _build_net(cls, *, width: int, depth: int) -> nn.Module:
        return UNet(width, depth)

    def initial(self, y: Tensor) -> Tensor:
        """x_0 Tensor[B, 1, P, P] (float64, no gradient), the U-Net's input."""
        hp = self.hparams
        return linear_reconstruction(
            self.operator,
            y,
            method=hp.init,
            norm_sq=self.norm_sq,
            tikhonov=hp.tikhonov,
            iterations=hp.cg_iterations,
        )

    def reconstruct(self, y: Tensor, sigma: Tensor) -> Tensor:
        x0 = self.initial(y).to(self.unet.out.weight.dtype)
        return x0 + self.unet(x0)


class UnrolledPG(_CountMixin, ReconstructionModule):
    """Unrolled proximal gradient: x_{k+1} = prox_k(x_k - eta_k A^T (A x_k - y)), k = 0..K-1,
    eta_k = softplus(rho_k) / ||A||^2 learned (1 / ||A||^2 at initialisation), prox_k a
    :class:`ResidualProx` (one shared by all iterations when ``shared``). Returns x_K.

    Args (besides those of :class:`~dtwin_estimators.reconstruction.ReconstructionModule`):

    Args:
        iterations: K, the unrolled iterations (>= 1).
        width: channels of the hidden layers of each proximal CNN.
        layers: convolutions per proximal CNN (>= 2).
        shared: one proximal CNN for all iterations (else one per iteration); the step sizes
            are per iteration either way.
        init: x_0: ``'adjoint'`` (A^T y / ||A||^2) or ``'zeros'``.
    """

    _NET = ("iterations", "width", "layers", "shared")

    def __init__(
        self,
        *,
        iterations: int = 5,
        width: int = 16,
        layers: int = 3,
        shared: bool = False,
        init: str = "adjoint",
        **kwargs: Any,
    ) -> None:
        self._check_net(iterations=iterations, width=width, layers=layers, shared=shared)
        _check_choice(type(self).__name__, "init", init, ("adjoint", "zeros"))
        super().__init__(**kwargs)
        self.norm_sq = operator_norm_sq(self.operator)  # ||A||^2, float
        net = self._build_net(iterations=iterations, width=width, layers=layers, shared=shared)
        self.prox, self.step_logits = net.prox, net.step_logits

    @classmethod
    def _check_net(cls, *, iterations: Any, width: Any, layers: Any, shared: Any) -> None:
        _check_int(cls.__name__, "iterations", iterations, 1)
        _check_int(cls.__name__, "width", width, 1)
        _check_int(cls.__name__, "layers", layers, 2)
        if not isinstance(shared, bool):
            raise ValueError(f"{cls.__name__}: shared must be True or False, got {shared!r}")

    @classmethod
    def _build_net(cls, *, iterations: int, width: int, layers: int, shared: bool) -> nn.Module:
        net = nn.Module()
        net.prox = nn.ModuleList(ResidualProx(width, layers) for _ in range(1 if shared else iterations))
        # softplus(rho) = 1  <=>  rho = log(e - 1)
        net.step_logits = nn.Parameter(torch.full((iterations,), math.log(math.e - 1.0)))
        return net

    def step_sizes(self) -> Tensor:
        """eta_k, Tensor[K]: the step sizes (in units of the image / A^T A x)."""
        return F.softplus(self.step_logits) / self.norm_sq

    def reconstruct(self, y: Tensor, sigma: Tensor) -> Tensor:
        A = self.operator
        y = y.to(self.step_logits.dtype)
        Aty = A.adjoint(y)
        x = Aty / self.norm_sq if self.hparams.init == "adjoint" else torch.zeros_like(Aty)
        eta = self.step_sizes()
        for k in range(self.hparams.iterations):
            x = x - eta[k] * (A.normal(x) - Aty)
            x = self.prox[0 if self.hparams.shared else k](x)
        return x


# -------------------------------------------------------------------------------- the budget


def width_for_budget(cls: type, budget: int, **hparams: Any) -> int:
    """The ``width`` whose parameter count (``cls.count_parameters(width=w, **hparams)``) is
    closest to ``budget`` (the smaller width on a tie), for :class:`UNetPost` or
    :class:`UnrolledPG`; the other hyperparameters as given (defaults otherwise). Returns 1 when
    even width 1 exceeds the budget."""
    if not (isinstance(cls, type) and issubclass(cls, _CountMixin)):
        raise ValueError(f"width_for_budget: cls must be UNetPost or UnrolledPG, got {cls!r}")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1:
        raise ValueError(f"width_for_budget: budget must be an integer >= 1 (parameters), got {budget!r}")
    if "width" in hparams:
        raise ValueError("width_for_budget: do not pass width; it is what this function chooses")

    def count(w: int) -> int:
        return cls.count_parameters(width=w, **hparams)

    # the count grows with the width: double to bracket the budget, then bisect
    low, high = 1, 1
    while count(high) < budget:
        low, high = high, 2 * high
        if high > 2**20:
            raise ValueError(f"width_for_budget: no width up to 2**20 reaches {budget} parameters")
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if count(mid) < budget else (low, mid)
    # count(low) < budget <= count(high), or low = high = 1
    return min((low, high), key=lambda w: (abs(count(w) - budget), w))

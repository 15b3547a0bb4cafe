"""DRIP: deep regularizers for inverse problems (Eliasof, Haber, Treister, arXiv 2304.00015).

The image is synthesised from a latent z, x = E z (E a learned convolution from C latent
channels), and z solves the convex lower level

    z*(y) = argmin_z 1/2 ||A E z - y||^2 + ||A||^2 R_theta(z)

for the data y of each sample (the factor ||A||^2 is the operator normalised: ``normalize``).
It is solved by :func:`dtwin.nn.solve`: Nesterov iterations whose vector algebra is the fused op
``dtwin.ops.drip_step``; with ``discrepancy=True`` a sample stops as soon as its misfit reaches
``tau`` times its noise level, the authors' discrepancy principle. The upper level
trains E and R (:class:`dtwin.nn.ConvexRegularizer`, convex in z by construction) on the mean
squared error of E z* against the truth, differentiating through z* implicitly (conjugate
gradients on Hessian-vector products at the solution), so the training memory does not grow
with the number of inner iterations, unlike the authors' unrolled backpropagation.

Because R is a scalar function, candidate solutions can be compared by their objective
(:meth:`DRIP.objective`); because the lower level is solved, every reconstruction that stopped by
the discrepancy principle fits its data (the ``fits_data`` metric counts them).
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from dtwin.nn import (
    PENALTIES,
    ConvexRegularizer,
    SolveResult,
    Synthesis,
    objective,
    operator_norm_sq,
    solve,
)
from dtwin_estimators.reconstruction import ReconstructionModule

__all__ = ["DRIP"]


class DRIP(ReconstructionModule):
    """DRIP estimator: data y -> x = E z*(y), z* the minimiser of a learned convex objective.

    Args:
        latent_channels: C, the channels of z (the paper: 64).
        synthesis_kernel: the odd kernel size of E (the paper: 9).
        n_filters, reg_kernel: the filters and kernel size of R's convolution.
        penalty, eps, mu, init_scale: R's penalty ('pseudo_huber' or 'log_cosh'), its smoothing
            scale, the strong convexity modulus and the initial filter weights (see
            :class:`dtwin.nn.ConvexRegularizer`).
        normalize: weigh R by ||A||^2 (fixed, from power iterations on the operator), which
            solves the problem with A / ||A|| and y / ||A||: the same R, initialisation and
            learning rate then suit every operator (||A||^2 is 1 for the blur and the inpainting
            mask, about 580 for the 18-angle Radon transform of 32 x 32 images, where an R of
            the blur's scale is negligible and the inner solve does not converge in 200
            iterations). False solves 1/2 ||A E z - y||^2 + R(z) as it stands.
        tv_init: None (the default) starts E and R at random (``nn.Conv2d``'s initialisation); a
            weight lam > 0 starts the lower level at a smoothed anisotropic total variation,
            min_u 1/2 ||A u - y||^2 + lam sum phi(grad u) (+ R's ridge; E the identity on latent channel 0,
            R's first two filters the differences of that channel, everything else small:
            :meth:`Synthesis.select_channel_`, :meth:`ConvexRegularizer.init_tv_`), so that
            training starts from a tuned classical method (lam from TV's validation search, with
            a small ``eps``) and moves it from there. The parameters are the same either way.
        max_iter: the most inner iterations per solve (training and inference).
        tol: the relative step tolerance of the inner solve.
        discrepancy: stop each sample at a misfit of ``tau`` x its noise level (needs 'sigma' in
            the batch); False solves to ``tol``.
        cg_tol, cg_max_iter: the relative residual and the most iterations of the implicit
            backward's conjugate gradients. A solution stopped by the discrepancy principle is not
            the minimiser, so its implicit gradient is an approximation anyway; 30 iterations
            keep the backward near the cost of the forward solve (at 100 iterations the backward
            of an early-stopped, ill-conditioned solve costs up to 7x the forward).
        operator, operator_args, image_size, tau: the forward operator and the discrepancy factor
            (see :class:`~dtwin_estimators.reconstruction.ReconstructionModule`).
    """

    def __init__(
        self,
        *,
        latent_channels: int = 64,
        synthesis_kernel: int = 9,
        n_filters: int = 32,
        reg_kernel: int = 3,
        penalty: str = "pseudo_huber",
        eps: float = 0.1,
        mu: float = 1e-3,
        init_scale: float = 0.01,
        normalize: bool = True,
        tv_init: float | None = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        discrepancy: bool = True,
        cg_tol: float = 1e-4,
        cg_max_iter: int = 30,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        owner = "DRIP"
        if penalty not in PENALTIES:
            raise ValueError(f"{owner}: penalty must be one of {sorted(PENALTIES)}, got {penalty!r}")
        for name, value in (("max_iter", max_iter), ("cg_max_iter", cg_max_iter)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{owner}: {name} must be an integer >= 1, got {value!r}")
        for name, value in (("tol", tol), ("cg_tol", cg_tol)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0:
                raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
        if not math.isfinite(self.hparams.tau):  # the base accepts inf; the solver does not
            raise ValueError(f"{owner}: tau must be a finite number > 0, got {self.hparams.tau!r}")
        for name, value in (("discrepancy", discrepancy), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
        if tv_init is not None:
            ok = isinstance(tv_init, (int, float)) and not isinstance(tv_init, bool)
            if not ok or not math.isfinite(tv_init) or tv_init <= 0:
                raise ValueError(f"{owner}: tv_init must be None or a finite number > 0, got {tv_init!r}")
            if n_filters < 2 or reg_kernel < 3:
                raise ValueError(
                    f"{owner}: tv_init needs n_filters >= 2 and reg_kernel >= 3 (two differences), got "
                    f"n_filters={n_filters!r}, reg_kernel={reg_kernel!r}"
                )
        self.E = Synthesis(latent_channels, synthesis_kernel)
        self.R = ConvexRegularizer(
            latent_channels,
            n_filters,
            reg_kernel,
            penalty=penalty,
            eps=eps,
            mu=mu,
            init_scale=init_scale,
            strength=operator_norm_sq(self.operator, margin=1.0) if normalize else 1.0,
        )
        if tv_init is not None:
            self.E.select_channel_(0)
            self.R.init_tv_(float(tv_init), channel=0)
        self._last: SolveResult | None = None

    # ---- the lower level -------------------------------------------------------------------------

    def solve(self, y: Tensor, sigma: Tensor | None = None, z0: Tensor | None = None) -> SolveResult:
        """z*(y) per sample: :class:`dtwin.nn.SolveResult` (z, iterations, converged,
        discrepancy, misfit). ``sigma`` Tensor[B] is used when ``discrepancy`` is on."""
        hp = self.hparams
        return solve(
            self.operator,
            self.E,
            self.R,
            y,
            sigma=sigma if hp.discrepancy else None,
            tau=float(hp.tau),
            tol=float(hp.tol),
            max_iter=hp.max_iter,
            z0=z0,
            cg_tol=float(hp.cg_tol),
            cg_max_iter=hp.cg_max_iter,
            check_convexity=False,  # ConvexRegularizer is convex by construction
        )

    def reconstruct(self, y: Tensor, sigma: Tensor) -> Tensor:
        result = self.solve(y, sigma)
        self._last = result
        return self.E(result.z)

    def objective(self, y: Tensor, z: Tensor) -> Tensor:
        """The lower-level objective 1/2 ||A E z - y||^2 + R(z) per sample: Tensor[B]."""
        return objective(self.operator, self.E, self.R, y, z)

    # ---- logging -----------------------------------------------------------------------------------

    def on_prediction(self, pred: Tensor, batch: dict[str, Tensor], stage: str) -> None:
        super().on_prediction(pred, batch, stage)
        result, self._last = self._last, None
        if result is None:
            return
        n = pred.shape[0]
        self.log(
            f"{stage}/inner_iterations",
            result.iterations.float().mean(),
            on_step=False,
            on_epoch=True,
            batch_size=n,
        )
        self.log(
            f"{stage}/stopped_by_discrepancy",
            result.discrepancy.float().mean(),
            on_step=False,
            on_epoch=True,
            batch_size=n,
        )

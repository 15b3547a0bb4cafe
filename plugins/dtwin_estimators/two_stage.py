"""Two-stage (simulation-driven) estimator with out-of-distribution fine-tuning.

theta_hat = g(h(z)) (Garatti and Bittanti 2013): h compresses a record z = (u, y) into a few
features, g (an MLP trunk with one head per parameter) is trained on simulations of the twin at
parameters drawn from a prior box. When the truth lies outside the box, :meth:`TwoStage.fine_tune`
(Lakshminarayanan and Rojas 2025, per their code) adapts g to one observed record:

1. OOD gate: chi-square statistic of h(z0) against the features simulated at g(h(z0)), in
   whitened feature space; its verdict is always in the report.
2. Gauss-Newton warm start: minimise || W (mean simulated features(theta) - h(z0)) || from
   several starts (exact Jacobians through the torch twin, common random numbers).
3. Targeted synthetic set: parameters drawn around the warm start with the covariance of the
   local Fisher matrix, simulated with the observed input.
4. The heads of g fine-tuned on that set, the trunk frozen.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import torch
from torch import Tensor, nn

from dtwin import EstimatorModule
from dtwin.estimation import batched_gauss_newton
from dtwin.sim import tanks

COMPRESSIONS = ("arx", "quantiles", "conv")
TWINS = ("tanks",)


class ConvEncoder(nn.Module):
    """A learned compression: 1D convolutions over (u, y) and a global average, `features` out."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(2, 16, 9, stride=2, padding=4),
            nn.GELU(),
            nn.Conv1d(16, 32, 9, stride=2, padding=4),
            nn.GELU(),
            nn.Conv1d(32, features, 9, stride=2, padding=4),
        )

    def forward(self, u: Tensor, y: Tensor) -> Tensor:
        return self.net(torch.stack((u, y), 1)).mean(-1)


class TwoStage(EstimatorModule):
    """Two-stage estimator of the parameters of a twin from input-output records.

    Args:
        twin: the simulator the estimator is trained on ('tanks': cascaded water tanks).
        compression: 'arx' (least-squares ARX coefficients, orders ``na``, ``nb``), 'quantiles'
            (of y; for i.i.d. data) or 'conv' (a learned 1D convolutional encoder).
        na, nb: ARX orders; arx_residual: add the log std of the ARX one-step residual.
        hidden, trunk_layers: the shared trunk (width, depth); head_hidden: each head's width.
        prior_low, prior_high: the prior box the training parameters are drawn from (default:
            the twin's).
        n_samples: samples per record.
    """

    batch_spec = {"u": "[B, N]", "y": "[B, N]"}

    def __init__(
        self,
        *,
        twin: str = "tanks",
        compression: str = "arx",
        na: int = 3,
        nb: int = 3,
        arx_residual: bool = False,
        hidden: int = 128,
        trunk_layers: int = 3,
        head_hidden: int = 32,
        prior_low: list[float] | None = None,
        prior_high: list[float] | None = None,
        n_samples: int = tanks.N_SAMPLES,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, **kwargs)
        if twin not in TWINS:
            raise ValueError(f"TwoStage: twin must be one of {TWINS}, got {twin!r}")
        if compression not in COMPRESSIONS:
            raise ValueError(f"TwoStage: compression must be one of {COMPRESSIONS}, got {compression!r}")
        if na < 0 or nb < 1:
            raise ValueError(f"TwoStage: ARX orders need na >= 0 and nb >= 1, got na={na}, nb={nb}")
        if hidden < 1 or trunk_layers < 1 or head_hidden < 1:
            raise ValueError("TwoStage: hidden, trunk_layers and head_hidden must be >= 1")
        low, high = tanks.prior_box(prior_low, prior_high, owner="TwoStage")
        if bool((low <= 0).any()):
            raise ValueError(f"TwoStage: the prior box must hold positive parameters, got low={low.tolist()}")
        self.register_buffer("prior_low", low.float())
        self.register_buffer("prior_high", high.float())
        self.n_params = 4
        n_features = {"arx": na + nb + 1 + int(arx_residual), "quantiles": 5, "conv": 16}[compression]
        self.encoder = ConvEncoder(n_features) if compression == "conv" else None
        layers: list[nn.Module] = []
        width = n_features
        for _ in range(trunk_layers):
            layers += [nn.Linear(width, hidden), nn.GELU()]
            width = hidden
        self.trunk = nn.Sequential(*layers)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, head_hidden), nn.GELU(), nn.Linear(head_hidden, 1))
            for _ in range(self.n_params)
        )
        # feature standardisation from a fixed simulation of the prior (deterministic)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        if self.encoder is None:
            g = torch.Generator().manual_seed(12345)
            theta = tanks.sample_prior(2000, g, tuple(low.tolist()), tuple(high.tolist()))
            u = tanks.random_input(2000, n_samples, generator=g)
            f = self.compress(u, tanks.simulate(theta, u, generator=g))
            self.feature_mean.copy_(f.mean(0))
            self.feature_std.copy_(f.std(0).clamp_min(1e-6))

    # ---- the two stages --------------------------------------------------------------------

    def compress(self, u: Tensor, y: Tensor) -> Tensor:
        """h: records [B, N] -> raw features [B, F] (float64 for the least-squares compressions)."""
        hp = self.hparams
        if hp.compression == "arx":
            return tanks.arx_features(u.double(), y.double(), hp.na, hp.nb, residual=hp.arx_residual)
        if hp.compression == "quantiles":
            return tanks.quantile_features(y.double())
        return self.encoder(u.float(), y.float())

    def features(self, u: Tensor, y: Tensor) -> Tensor:
        """Standardised features [B, F] (float32)."""
        f = self.compress(u, y)
        return ((f - self.feature_mean.to(f.dtype)) / self.feature_std.to(f.dtype)).float()

    def regress(self, f: Tensor) -> Tensor:
        """g: standardised features [B, F] -> parameters [B, 4]."""
        z = self.trunk(f)
        out = torch.cat([head(z) for head in self.heads], 1)
        return self.prior_low + (self.prior_high - self.prior_low) * (0.5 + out)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        self.check_batch(batch)
        u, y = batch["u"], batch["y"]
        if u.shape != y.shape:
            raise ValueError(f"TwoStage: batch['u'] {list(u.shape)} and batch['y'] {list(y.shape)} differ")
        if not bool(torch.isfinite(y).all()) or not bool(torch.isfinite(u).all()):
            raise ValueError("TwoStage: records contain non-finite values")
        return self.regress(self.features(u, y))

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        # in units of the prior box, so that every parameter weighs alike
        scale = self.prior_high - self.prior_low
        return torch.nn.functional.mse_loss(pred / scale, target.to(pred.dtype) / scale)

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        theta = tanks.sample_prior(
            batch_size, g, tuple(self.prior_low.tolist()), tuple(self.prior_high.tolist())
        )
        u = tanks.random_input(batch_size, self.hparams.n_samples, generator=g)
        y = tanks.simulate(theta, u, generator=g)
        return {"u": u.float(), "y": y.float(), "theta": theta.float()}

    # ---- fine-tuning on one out-of-distribution record ---------------------------------------

    def fine_tune(
        self,
        u0: Tensor,
        y0: Tensor,
        *,
        replicates: int = 64,
        gn_iterations: int = 3,
        restarts: int = 8,
        n_synthetic: int = 1000,
        spread: float = 2.0,
        epochs: int = 300,
        head_lr: float = 3e-3,
        gate_level: float = 0.01,
        prior_scale: float = 0.5,
        force: bool = False,
        seed: int = 0,
    ) -> tuple[TwoStage, dict[str, Any]]:
        """Adapt the estimator to the record (u0, y0) [N]. Returns the fine-tuned copy (self is
        unchanged) and a report: the gate's statistic, p-value and verdict, the Gauss-Newton
        iterations and misfits, the estimates of each stage and the seconds of each stage. An
        in-distribution record (p-value >= ``gate_level``) is not fine-tuned unless ``force``."""
        from scipy.stats import chi2

        u0, y0 = self._check_record(u0, y0)
        g = torch.Generator().manual_seed(seed)
        seconds: dict[str, float] = {}
        report: dict[str, Any] = {"seconds": seconds}
        was_training = self.training
        self.eval()

        t = time.perf_counter()
        with torch.no_grad():
            f0 = self.features(u0[None], y0[None])[0].double()
            theta_pre = self.regress(f0[None].float())[0].double()
        report["theta_pretrained"] = theta_pre.tolist()
        # common random numbers: the same noise draws at every theta make the mean features smooth
        N = u0.shape[0]
        draws = (
            torch.randn(2, N, replicates, generator=g, dtype=torch.float64),
            torch.randn(replicates, N, generator=g, dtype=torch.float64),
        )

        def sim_features_batched(thetas: Tensor) -> Tensor:  # [S, 4] -> [S, replicates, F]
            S = thetas.shape[0]
            batched = (draws[0].repeat(1, 1, S), draws[1].repeat(S, 1))
            y = tanks.simulate(thetas.repeat_interleave(replicates, 0), u0, draws=batched)
            f = self.compress(u0.expand(S * replicates, -1), y)
            return ((f - self.feature_mean.double()) / self.feature_std.double()).reshape(S, replicates, -1)

        # 1. the gate, at the pre-trained estimate (clamped to the positive parameters)
        start = theta_pre.clamp_min(1e-3)
        with torch.no_grad():
            fs = sim_features_batched(start[None])[0]
        mean, cov = fs.mean(0), torch.cov(fs.T) + 1e-6 * torch.eye(fs.shape[1], dtype=torch.float64)
        L = torch.linalg.cholesky(cov)
        d = torch.linalg.solve_triangular(L, (f0 - mean)[:, None], upper=False)[:, 0]
        stat, dof = float(d @ d), int(f0.numel())
        p_value = float(chi2.sf(stat, dof))
        ood = p_value < gate_level
        report.update(
            gate_statistic=stat,
            gate_dof=dof,
            gate_p_value=p_value,
            gate_level=gate_level,
            verdict="out of distribution" if ood else "in distribution",
        )
        seconds["gate"] = time.perf_counter() - t
        if not ood and not force:
            report["fine_tuned"] = False
            report["theta_fine_tuned"] = theta_pre.tolist()
            self.train(was_training)
            return copy.deepcopy(self), report

        # 2. Gauss-Newton warm start in log(theta), whitened by the gate's covariance, with a weak
        # prior around the pre-trained estimate: it picks a point of a valley of equal misfit
        # (the tanks' scaling) instead of wandering along it
        t = time.perf_counter()
        phi_pre = start.log()

        def residual_batched(phis: Tensor) -> Tensor:  # [S, 4] -> [S, F + 4]
            r = sim_features_batched(phis.exp()).mean(1) - f0
            whitened = torch.linalg.solve_triangular(L, r.T, upper=False).T
            return torch.cat((whitened, (phis - phi_pre) / prior_scale), 1)

        # the restarts: the pre-trained estimate and ``restarts - 1`` random points within a factor
        # e^0.5 of it; Gauss-Newton from all of them in one batch, the lowest misfit wins
        starts = torch.cat(
            (phi_pre[None], phi_pre + torch.rand(restarts - 1, 4, generator=g, dtype=torch.float64) - 0.5)
        )
        results = batched_gauss_newton(residual_batched, starts, iterations=gn_iterations, max_step=1.0)
        best = min(results, key=lambda res: res.cost)
        phi_gn = best.x
        report.update(
            theta_gauss_newton=phi_gn.exp().tolist(),
            gn_iterations=best.iterations,
            gn_initial_misfit=best.initial_cost,
            gn_misfit=best.cost,
            gn_restarts=restarts,
        )
        seconds["gauss_newton"] = time.perf_counter() - t

        # 3. the targeted synthetic set: spread^2 F^-1 (F = J^T J in log(theta)) around the warm start
        t = time.perf_counter()
        J = best.jacobian
        fisher = J.T @ J + 1e-3 * torch.eye(4, dtype=torch.float64)
        cov_phi = spread**2 * torch.linalg.inv(fisher)
        # the scaling valley of the tanks makes F nearly singular: cap each direction at +-50%
        evals, evecs = torch.linalg.eigh(cov_phi)
        cov_phi = evecs @ torch.diag(evals.clamp(max=0.5**2)) @ evecs.T
        report["fisher_std_log_theta"] = cov_phi.diagonal().sqrt().tolist()
        # drawn in theta itself (covariance D cov_phi D, D = diag(theta_gn)): centred on the warm
        # start (a log-normal draw would shift the mean up by e^(var/2) along the weak directions)
        theta_gn = phi_gn.exp()
        cov_theta = theta_gn[:, None] * cov_phi * theta_gn[None, :]
        chol = torch.linalg.cholesky(cov_theta + 1e-12 * torch.eye(4, dtype=torch.float64))
        theta_syn = theta_gn + torch.randn(n_synthetic, 4, generator=g, dtype=torch.float64) @ chol.T
        theta_syn = theta_syn.clamp_min(0.05 * float(theta_gn.min()))
        y_syn = tanks.simulate(theta_syn, u0, generator=g)
        with torch.no_grad():
            f_syn = self.features(u0.expand(n_synthetic, -1), y_syn)
        seconds["synthetic_set"] = time.perf_counter() - t

        # 4. fine-tune the heads, trunk frozen
        t = time.perf_counter()
        tuned = copy.deepcopy(self)
        tuned.train()
        for p in [*tuned.trunk.parameters(), *(tuned.encoder.parameters() if tuned.encoder else [])]:
            p.requires_grad_(False)
        optimizer = torch.optim.Adam(tuned.heads.parameters(), lr=head_lr)
        target = theta_syn.float()
        with torch.no_grad():
            z = tuned.trunk(f_syn)
        scale = tuned.prior_high - tuned.prior_low
        for _ in range(epochs):
            optimizer.zero_grad(set_to_none=True)
            out = torch.cat([head(z) for head in tuned.heads], 1)
            pred = tuned.prior_low + scale * (0.5 + out)
            loss = torch.nn.functional.mse_loss(pred / scale, target / scale)
            loss.backward()
            optimizer.step()
        tuned.eval()
        for p in tuned.parameters():
            p.requires_grad_(True)
        with torch.no_grad():
            theta_fine = tuned.regress(f0[None].float())[0]
        seconds["fine_tune"] = time.perf_counter() - t
        report.update(fine_tuned=True, theta_fine_tuned=theta_fine.tolist(), head_loss=float(loss.detach()))
        seconds["total"] = sum(seconds.values())
        self.train(was_training)
        return tuned, report

    def _check_record(self, u0: Tensor, y0: Tensor) -> tuple[Tensor, Tensor]:
        if not isinstance(u0, Tensor) or not isinstance(y0, Tensor):
            raise TypeError("TwoStage.fine_tune: u0 and y0 must be tensors")
        if u0.dim() != 1 or y0.dim() != 1:
            raise ValueError(
                "TwoStage.fine_tune: u0 and y0 must be one record each ([N]), "
                f"got {list(u0.shape)}, {list(y0.shape)}"
            )
        N = self.hparams.n_samples
        if u0.shape[0] != N or y0.shape[0] != N:
            raise ValueError(
                f"TwoStage.fine_tune: records of {N} samples expected (n_samples), "
                f"got u0 {u0.shape[0]}, y0 {y0.shape[0]}"
            )
        if not bool(torch.isfinite(u0).all()) or not bool(torch.isfinite(y0).all()):
            raise ValueError("TwoStage.fine_tune: the record contains non-finite values")
        if math.isclose(float(u0.abs().max()), 0.0):
            raise ValueError(
                "TwoStage.fine_tune: u0 is identically zero: the twin's output carries no information"
            )
        return u0.double(), y0.double()

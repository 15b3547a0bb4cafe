"""L-HiTS: latent multiscale hierarchical time stepping (Hamid, Rafiq, Nahvi, Bazaz, arXiv
2407.00011), on HiTS (Liu, Kutz, Brunton, "Hierarchical deep learning of multiscale differential
equation time-steppers", arXiv 2008.09768).

An autoencoder finds latent coordinates z = E(x); residual flow maps z -> z + N_k(z) step z by
dt * 2^k; inference rolls the largest step out first and each finer map fills in between the
coarse points, so that the coarse steps keep resetting the error of the fine ones. With
``latent_size=None`` the encoder is the identity: full-state HiTS, the comparison of the paper.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor, nn

from dtwin import AutoencoderModule
from dtwin.nn import make_activation


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """``sizes[0] -> ... -> sizes[-1]`` with the activation between layers (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(make_activation(activation, "LatentHiTS"))
    return nn.Sequential(*layers)


class FlowMap(nn.Module):
    """One residual time stepper ``z -> z + net(z)`` over a fixed step (acts on the last dim)."""

    def __init__(self, size: int, hidden: list[int], activation: str) -> None:
        super().__init__()
        self.net = mlp([size, *hidden, size], activation)

    def forward(self, z: Tensor) -> Tensor:
        return z + self.net(z)


class LatentHiTS(AutoencoderModule):
    """Autoencoder coordinates plus hierarchical flow maps (L-HiTS); full-state HiTS with
    ``latent_size=None``.

    Batch: ``x`` Tensor[B, T, D], whole trajectories sampled every ``dt`` (the data modules
    ``ks`` and ``fhn``). ``forward(batch)`` rolls each trajectory out from its first state over
    the T - 1 steps (:meth:`rollout`), so the validation and test metric ``mse`` is the MSE of
    the long rollout against the solver's trajectory.

    Training, as the authors' code by default: the autoencoder alone for ``ae_epochs`` epochs
    (MSE of the reconstruction of ``frames`` random states per trajectory), then the flow maps on
    the frozen latent coordinates: map k is trained on ``windows`` random windows per trajectory,
    the MSE of ``n_recursive`` recursive steps of 2^k samples each, in latent space. The maps
    share no parameters, so summing their losses in one optimiser step trains each separately
    (Adam's update is per parameter). With ``joint=True`` the autoencoder and the maps train
    together from the first epoch on the reconstruction plus the maps' recursive errors measured
    on decoded states (in latent space the encoder could shrink the latent scale to make them
    small). Outside a Trainer, ``training_step`` takes the joint loss. The phase follows the
    trainer's epoch, so a resumed run continues where it stopped.

    The maps step standardised coordinates: the latent (or full) state shifted and scaled per
    coordinate by the statistics of the encoded training states of the first batch of the maps'
    training (fixed from then on, saved with the weights). In separate training the learning
    rate and its plateau schedule start afresh when the maps start.

    Multiscale inference (:meth:`rollout`) uses the subset of step exponents in ``selected``:
    all of them until :meth:`select_steps` picks, on validation trajectories, the contiguous
    range of exponents with the smallest rollout MSE (HiTS's model selection); under a Trainer
    that happens at the end of every validation epoch once the maps train.

    Args:
        state_size: D, the size of a (flattened) state: KS 120, FHN 202.
        latent_size: latent coordinates; None for full-state HiTS (identity encoder).
        ae_hidden: hidden sizes of the encoder (the decoder mirrors them).
        map_hidden: hidden sizes of every flow map's network.
        step_exponents: the k of the maps' steps dt * 2^k (distinct, >= 0).
        n_recursive: recursive steps in a map's training loss (authors: 5).
        windows: training windows per trajectory, per map and batch.
        frames: states per trajectory in the reconstruction loss, per batch.
        ae_epochs: epochs of autoencoder training before the maps train (separate training).
        joint: train the autoencoder and the maps together (see above).
        activation: a name of :data:`dtwin.nn.ACTIVATIONS`.
        select_horizon: samples per validation rollout of the step selection (None: the whole
            trajectory); see :meth:`select_steps`.
        dt: the sampling step of the trajectories (recorded for reports; the maps step in samples).
        **kwargs: optimizer settings of :class:`dtwin.AutoencoderModule`.
    """

    target_key = "x"

    def __init__(
        self,
        state_size: int = 120,
        latent_size: int | None = 8,
        ae_hidden: list[int] | None = None,
        map_hidden: list[int] | None = None,
        step_exponents: list[int] | None = None,
        n_recursive: int = 5,
        windows: int = 8,
        frames: int = 64,
        ae_epochs: int = 100,
        joint: bool = False,
        activation: str = "gelu",
        select_horizon: int | None = None,
        dt: float = 0.01,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        ae_hidden = [256, 128] if ae_hidden is None else list(ae_hidden)
        map_hidden = [128, 128, 128] if map_hidden is None else list(map_hidden)
        exps = list(range(11)) if step_exponents is None else [int(k) for k in step_exponents]
        if state_size < 1:
            raise ValueError(f"LatentHiTS: state_size must be >= 1, got {state_size}")
        if latent_size is not None and not 1 <= latent_size <= state_size:
            raise ValueError(
                f"LatentHiTS: latent_size must be in [1, state_size = {state_size}] (or None for full-state "
                f"HiTS), got {latent_size}"
            )
        if not exps or min(exps) < 0 or len(set(exps)) != len(exps):
            raise ValueError(
                f"LatentHiTS: step_exponents must be distinct integers >= 0, got {step_exponents}"
            )
        if min([*ae_hidden, *map_hidden, 1]) < 1:
            raise ValueError(f"LatentHiTS: hidden sizes must be >= 1, got {ae_hidden}, {map_hidden}")
        for arg, value in (("n_recursive", n_recursive), ("windows", windows), ("frames", frames)):
            if value < 1:
                raise ValueError(f"LatentHiTS: {arg} must be >= 1, got {value}")
        if ae_epochs < 0:
            raise ValueError(f"LatentHiTS: ae_epochs must be >= 0, got {ae_epochs}")
        if dt <= 0:
            raise ValueError(f"LatentHiTS: dt must be > 0, got {dt}")
        if select_horizon is not None and select_horizon < 1:
            raise ValueError(
                f"LatentHiTS: select_horizon must be >= 1 samples (or None), got {select_horizon}"
            )
        make_activation(activation, "LatentHiTS")
        self.batch_spec = {"x": "[B, T, D]"}
        self.exponents = sorted(exps)
        self.identity = latent_size is None
        size = state_size if latent_size is None else latent_size
        if self.identity:
            self.encoder, self.decoder = nn.Identity(), nn.Identity()
        else:
            self.encoder = mlp([state_size, *ae_hidden, size], activation)
            self.decoder = mlp([size, *reversed(ae_hidden), state_size], activation)
        self.maps = nn.ModuleList(FlowMap(size, map_hidden, activation) for _ in self.exponents)
        # the exponents inference uses (saved in the checkpoint with the weights)
        self.register_buffer("selected", torch.ones(len(self.exponents), dtype=torch.bool))
        # the maps step standardised coordinates (z - shift) / scale; fixed from the encoded
        # training states when the maps start training (per coordinate)
        self.register_buffer("shift", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))
        self.register_buffer("standardised", torch.zeros((), dtype=torch.bool))

    # ---- the maps -----------------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def selected_exponents(self) -> list[int]:
        return [k for k, on in zip(self.exponents, self.selected.tolist(), strict=True) if on]

    def _map(self, k: int) -> FlowMap:
        return self.maps[self.exponents.index(k)]

    def rollout_latent(self, z0: Tensor, n_steps: int, exponents: list[int] | None = None) -> Tensor:
        """Multiscale coupled rollout: Tensor[B, d] -> Tensor[B, n_steps + 1, d] every sample.

        The largest step rolls out from ``z0`` to the horizon; each finer map, applied to every
        point of the level above at once (vectorised over batch and points), fills in between
        them. Below the finest step used the latent trajectory is interpolated linearly.
        """
        exps = sorted(self.selected_exponents() if exponents is None else exponents, reverse=True)
        if not exps or any(k not in self.exponents for k in exps):
            raise ValueError(
                f"LatentHiTS: exponents must be a non-empty subset of {self.exponents}, got {exps}"
            )
        coarse = 2 ** exps[0]
        if n_steps < 0 or n_steps % coarse:
            raise ValueError(
                f"LatentHiTS: the horizon n_steps = {n_steps} must be a multiple of the largest step in use, "
                f"2^{exps[0]} = {coarse} samples (step exponents {exps}); shorten or extend the horizon, or "
                "use smaller exponents"
            )
        points = [(z0 - self.shift) / self.scale]
        for _ in range(n_steps // coarse):
            points.append(self._map(exps[0])(points[-1]))
        traj = torch.stack(points, 1)  # [B, n_coarse + 1, d] at multiples of the coarse step
        for upper, k in itertools.pairwise(exps):
            base = traj[:, :-1]
            fill, level = [base], base
            for _ in range(2 ** (upper - k) - 1):
                level = self._map(k)(level)
                fill.append(level)
            traj = torch.cat([torch.stack(fill, 2).flatten(1, 2), traj[:, -1:]], 1)
        finest = 2 ** exps[-1]
        if finest > 1:  # linear in latent space between the finest points
            w = torch.arange(finest, dtype=traj.dtype, device=traj.device) / finest
            left, right = traj[:, :-1, None], traj[:, 1:, None]
            between = (left + w[:, None] * (right - left)).flatten(1, 2)
            traj = torch.cat([between, traj[:, -1:]], 1)
        return traj * self.scale + self.shift

    def rollout(self, x0: Tensor, n_steps: int, exponents: list[int] | None = None) -> Tensor:
        """States Tensor[B, D] -> predicted trajectories Tensor[B, n_steps + 1, D], every ``dt``."""
        d = self.hparams.state_size
        if x0.ndim != 2 or x0.shape[1] != d:
            raise ValueError(f"LatentHiTS.rollout: x0 must be Tensor[B, {d}], got {tuple(x0.shape)}")
        return self.decode(self.rollout_latent(self.encode(x0), n_steps, exponents))

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        self.check_batch(batch)
        x = batch["x"]
        return self.rollout(x[:, 0], x.shape[1] - 1)

    def check_batch(self, batch: dict[str, Tensor]) -> None:
        super().check_batch(batch)
        d = self.hparams.state_size
        if batch["x"].shape[2] != d:
            raise ValueError(
                f"LatentHiTS: batch['x'] has states of size {batch['x'].shape[2]}, expected state_size = {d}"
            )

    # ---- training -----------------------------------------------------------------------------

    def phase(self) -> str:
        """'autoencoder', 'maps' (separate training) or 'joint'."""
        hp = self.hparams
        if hp.joint or self._trainer is None:
            return "joint" if not self.identity else "maps"
        if self.identity or self.trainer.current_epoch >= hp.ae_epochs:
            return "maps"
        return "autoencoder"

    def _windows(self, x: Tensor, k: int) -> tuple[Tensor, int]:
        """Random windows of trajectories: Tensor[B, windows, n + 1, D] at spacing 2^k samples."""
        step, length = 2**k, x.shape[1]
        if length - 1 < step:
            raise ValueError(
                f"LatentHiTS: trajectories of {length} samples are shorter than the largest step 2^{k} = "
                f"{step} samples (+1); use longer trajectories or smaller step_exponents"
            )
        n = min(self.hparams.n_recursive, (length - 1) // step)
        starts = torch.randint(0, length - n * step, (x.shape[0], self.hparams.windows), device=x.device)
        index = starts[..., None] + step * torch.arange(n + 1, device=x.device)  # [B, W, n + 1]
        rows = torch.arange(x.shape[0], device=x.device)[:, None, None]
        return x[rows, index], n

    def map_loss(self, x: Tensor, decoded: bool) -> Tensor:
        """Sum over the maps of the mean squared error of their recursive steps: in latent space
        with the encoder frozen, or on decoded states when ``decoded`` (joint training)."""
        total = x.new_zeros(())
        for k, flow in zip(self.exponents, self.maps, strict=True):
            win, n = self._windows(x, k)
            with torch.set_grad_enabled(decoded and torch.is_grad_enabled()):
                z = (self.encode(win) - self.shift) / self.scale
            pred, errors = z[:, :, 0], []
            for j in range(1, n + 1):
                pred = flow(pred)
                if decoded:
                    errors.append((self.decode(pred * self.scale + self.shift) - win[:, :, j]).pow(2).mean())
                else:
                    errors.append((pred - z[:, :, j]).pow(2).mean())
            total = total + torch.stack(errors).mean()
        return total

    def reconstruction_loss(self, x: Tensor) -> Tensor:
        b, length, _ = x.shape
        idx = torch.randint(0, length, (b, min(self.hparams.frames, length)), device=x.device)
        states = x[torch.arange(b, device=x.device)[:, None], idx]
        return (self.decode(self.encode(states)) - states).pow(2).mean()

    @torch.no_grad()
    def standardise(self, x: Tensor) -> None:
        """Fix the maps' coordinates from the encoded states of trajectories ``x`` [B, T, D]: per
        coordinate mean and standard deviation (over up to 64 states per trajectory)."""
        idx = torch.linspace(0, x.shape[1] - 1, min(64, x.shape[1]), device=x.device).long()
        z = self.encode(x[:, idx]).flatten(0, 1)
        self.shift.copy_(z.mean(0))
        self.scale.copy_(z.std(0).clamp_min(1e-6) if len(z) > 1 else torch.ones_like(self.scale))
        self.standardised.fill_(True)

    def on_train_epoch_start(self) -> None:
        """Separate training: the maps start with the learning rate and plateau schedule afresh."""
        hp = self.hparams
        if hp.joint or self.identity or not hp.ae_epochs or self.current_epoch != hp.ae_epochs:
            return
        for optimizer in self.trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = hp.lr
        for config in self.trainer.lr_scheduler_configs:
            config.scheduler.best = float("inf")
            config.scheduler.num_bad_epochs = 0

    def _set_trainable(self, phase: str) -> None:
        ae = phase != "maps"
        maps = phase != "autoencoder"
        for p in itertools.chain(self.encoder.parameters(), self.decoder.parameters()):
            p.requires_grad_(ae)
        for p in self.maps.parameters():
            p.requires_grad_(maps)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self.check_batch(batch)
        x = batch["x"]
        phase = self.phase()
        self._set_trainable(phase)
        if phase != "autoencoder" and not self.standardised:
            self.standardise(x)
        if phase == "autoencoder":
            loss = self.reconstruction_loss(x)
        elif phase == "maps":
            loss = self.map_loss(x, decoded=False)
        else:
            loss = self.reconstruction_loss(x) + self.map_loss(x, decoded=True)
        n = x.shape[0]
        self.log_train_loss(loss, n)
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        x = batch["x"]
        if not self.identity:
            recon = (self.decode(self.encode(x)) - x).pow(2).mean()
            self.log("val/recon_mse", recon, on_epoch=True, batch_size=x.shape[0])
        if self._trainer is not None and self.phase() != "autoencoder" and not self.trainer.sanity_checking:
            self._val_trajectories.append(x)
        return super().validation_step(batch, batch_idx)

    def on_validation_epoch_start(self) -> None:
        self._val_trajectories: list[Tensor] = []

    def on_validation_epoch_end(self) -> None:
        """Once the maps train, every validation epoch re-selects the step exponents on the
        validation trajectories (before the checkpoint of the epoch is written)."""
        x, self._val_trajectories = self._val_trajectories, []
        lengths = {t.shape[1] for t in x}
        horizon = self.hparams.select_horizon or 0
        if len(lengths) == 1 and next(iter(lengths)) - 1 >= max(2 ** min(self.exponents), horizon):
            self.select_steps(torch.cat(x))
            chosen = self.selected_exponents()
            self.log("val/k_min", float(chosen[0]), batch_size=1)
            self.log("val/k_max", float(chosen[-1]), batch_size=1)

    def on_train_end(self) -> None:
        for p in self.parameters():
            p.requires_grad_(True)

    @torch.no_grad()
    def select_steps(self, x: Tensor, horizon: int | None = None) -> dict[tuple[int, ...], float]:
        """Choose the contiguous range of step exponents whose multiscale rollout of the
        trajectories ``x`` Tensor[B, T, D] has the smallest MSE; store it in ``selected``.

        Args:
            x: validation trajectories.
            horizon: samples per rollout (default: ``select_horizon``, else T - 1). With a horizon
                H < T - 1 every trajectory is cut into (T - 1) // H windows, each rolled out from
                its first state: on a chaotic system the MSE over a whole long trajectory is
                dominated by the divergence of nearby states and ranks the ranges at random.

        Ranges whose largest step does not divide the horizon are skipped. Returns range -> MSE.
        """
        self.check_batch({"x": x})
        horizon = horizon if horizon is not None else self.hparams.select_horizon
        n_steps = x.shape[1] - 1 if horizon is None else int(horizon)
        if not 1 <= n_steps <= x.shape[1] - 1:
            raise ValueError(
                f"LatentHiTS.select_steps: horizon must be in [1, {x.shape[1] - 1}] samples for "
                f"trajectories of {x.shape[1]} samples, got {horizon}"
            )
        n_windows = (x.shape[1] - 1) // n_steps
        x = x[:, : n_windows * n_steps + 1]
        x = torch.cat([x[:, j * n_steps : (j + 1) * n_steps + 1] for j in range(n_windows)])
        was_training = self.training
        self.eval()
        z0 = self.encode(x[:, 0])
        scores: dict[tuple[int, ...], float] = {}
        for lo, hi in itertools.combinations_with_replacement(range(len(self.exponents)), 2):
            exps = self.exponents[lo : hi + 1]
            if n_steps % 2 ** exps[-1]:
                continue
            pred = self.decode(self.rollout_latent(z0, n_steps, exps))
            scores[tuple(exps)] = float((pred - x).pow(2).mean())
        self.train(was_training)
        if not scores:
            raise ValueError(
                f"LatentHiTS.select_steps: no step exponent divides the horizon of {n_steps} samples"
            )
        finite = {k: v for k, v in scores.items() if math.isfinite(v)}
        best = min(finite or scores, key=(finite or scores).get)
        self.selected.copy_(torch.tensor([k in best for k in self.exponents]))
        return scores

    def example_batch(self, batch_size: int = 2) -> dict[str, Tensor]:
        g = torch.Generator().manual_seed(0)
        hp = self.hparams
        length = hp.n_recursive * 2 ** max(self.exponents) + 1
        return {"x": torch.randn(batch_size, length, hp.state_size, generator=g)}

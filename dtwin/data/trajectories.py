"""Long trajectories of the PDE twins for multiscale time steppers (L-HiTS): Kuramoto-Sivashinsky
(:mod:`dtwin.sim.ks`) and FitzHugh-Nagumo (:mod:`dtwin.sim.fhn`), generated once and cached on disk.

Each split ('train', 'val', 'test') is a :class:`~dtwin.data.base.TensorDictDataset` of one key,
'x': Tensor[n_traj, T + 1, D] float32, one whole trajectory per sample at spacing ``dt`` with the
state flattened to D values (KS: u on 120 points; FHN: u then v on 101 points each, D = 202).
The model cuts its own windows (e.g. the 5 recursive steps of 2^10 samples that the default 5120
steps allow). ``field_shape`` unflattens: ``x.unflatten(-1, dm.field_shape)``.

The splits are drawn from separate seeds (derived from ``seed``), so changing n_train leaves the
val and test trajectories as they were.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from dtwin.data.base import SplitDataModule, TensorDictDataset, cached, check_integers
from dtwin.sim import fhn, ks

__all__ = ["FHNDataModule", "KSDataModule", "TrajectoryDataModule"]

SPLITS = ("train", "val", "test")
# generated float64 trajectories per simulate call are kept under this many bytes (the batch of
# a split is cut into chunks when it would not fit)
CHUNK_BYTES = 1 << 30
# bump when the generation changes in a way the configuration does not show
VERSION = 1


class TrajectoryDataModule(SplitDataModule):
    """The shared machinery of the trajectory data modules; subclasses say which twin.

    Args:
        n_train, n_val, n_test: trajectories per split (n_train >= 1; n_val, n_test >= 0).
        n_steps_train: steps per training trajectory (>= 1; trajectories of n_steps_train + 1
            samples).
        n_steps_eval: steps per validation and test trajectory (>= 1).
        dt: the sampling interval (> 0, time units of the twin).
        substeps: the twin's ETDRK4 steps per sampling interval (>= 1).
        seed: seed of the initial states (an integer >= 0; fixes the data set).
        batch_size: trajectories per batch (>= 1; training batches are shuffled).
        cache_dir: where generated data are cached (None: $DTWIN_CACHE_DIR or ~/.cache/dtwin).

    Attributes:
        dt: the sampling interval; state_size: D; field_shape: the unflattened state shape;
        grid: Tensor of the twin's grid points (float64); datasets: the splits after :meth:`setup`.
    """

    name = ""  # the cache's file prefix
    field_shape: tuple[int, ...] = ()

    def __init__(
        self,
        n_train: int,
        n_val: int,
        n_test: int,
        n_steps_train: int,
        n_steps_eval: int,
        dt: float,
        substeps: int,
        seed: int,
        batch_size: int,
        cache_dir: str | None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_integers(
            owner,
            ("n_train", n_train, 1),
            ("n_val", n_val, 0),
            ("n_test", n_test, 0),
            ("n_steps_train", n_steps_train, 1),
            ("n_steps_eval", n_steps_eval, 1),
            ("substeps", substeps, 1),
            ("seed", seed, 0),
            ("batch_size", batch_size, 1),
        )
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ValueError(f"{owner}: dt must be a finite number > 0 (time units), got {dt!r}")
        self.save_hyperparameters()
        self.dt = float(dt)
        self.state_size = math.prod(self.field_shape)

    # -- what a subclass supplies -------------------------------------------------------------

    def initial_states(self, n: int, generator: torch.Generator) -> Tensor:
        """Tensor[n, *field_shape] float64: the initial states of n trajectories."""
        raise NotImplementedError

    def _simulate_fields(self, state0: Tensor, n_steps: int) -> Tensor:
        """Tensor[B, n_steps + 1, *field_shape] float64 from float64 states [B, *field_shape]."""
        raise NotImplementedError

    def generating_config(self) -> dict[str, Any]:
        """The twin's own settings that shape the data (beyond the shared ones), for the cache key."""
        return {}

    # -- generation and loading ---------------------------------------------------------------

    def _steps(self, split: str) -> int:
        return self.hparams.n_steps_train if split == "train" else self.hparams.n_steps_eval

    def _config(self, split: str) -> dict[str, Any]:
        hp = self.hparams
        return {
            "system": self.name,
            "version": VERSION,
            "split": split,
            "n": hp[f"n_{split}"],
            "n_steps": self._steps(split),
            "dt": self.dt,
            "substeps": hp.substeps,
            "seed": hp.seed,
            **self.generating_config(),
        }

    def simulate(self, state0: Tensor, n_steps: int) -> Tensor:
        """The twin, in the data's layout: trajectories from ``state0`` Tensor[B, D] (flattened
        like the data; [B, *field_shape] works too) for ``n_steps`` >= 0 steps of ``dt``, with this
        module's ``substeps``, computed in float64.

        Returns:
            Tensor[B, n_steps + 1, D] in state0's dtype (the data's samples, for float32 states
            that are data samples, up to float32 rounding of the start).
        """
        owner = type(self).__name__
        if not isinstance(state0, Tensor) or not state0.is_floating_point():
            raise ValueError(f"{owner}.simulate: state0 must be a floating-point tensor")
        shapes = ((self.state_size,), self.field_shape)
        if state0.dim() < 2 or state0.shape[0] < 1 or tuple(state0.shape[1:]) not in shapes:
            raise ValueError(
                f"{owner}.simulate: state0 must be [B, {self.state_size}] or [B, *{self.field_shape}] "
                f"with B >= 1, got {list(state0.shape)}"
            )
        fields = state0.reshape(state0.shape[0], *self.field_shape).double()
        return self._simulate_fields(fields, n_steps).flatten(2).to(state0.dtype)

    def generate(self, split: str) -> Tensor:
        """Simulate one split: Tensor[n, T + 1, D] float32 (uncached; :meth:`setup` caches)."""
        if split not in SPLITS:
            raise ValueError(f"{type(self).__name__}: split must be one of {SPLITS}, got {split!r}")
        n, n_steps = self.hparams[f"n_{split}"], self._steps(split)
        out = torch.empty(n, n_steps + 1, self.state_size, dtype=torch.float32)
        if n == 0:
            return out
        generator = torch.Generator().manual_seed(3 * self.hparams.seed + SPLITS.index(split))
        state0 = self.initial_states(n, generator)
        chunk = max(1, CHUNK_BYTES // ((n_steps + 1) * self.state_size * 8))
        for s in range(0, n, chunk):
            out[s : s + chunk] = self._simulate_fields(state0[s : s + chunk], n_steps).flatten(2)
        return out

    def _load(self, split: str) -> Tensor:
        data = cached(
            f"{self.name}-{split}",
            self._config(split),
            lambda: {"x": self.generate(split)},
            self.hparams.cache_dir,
        )
        return data["x"]

    def prepare_data(self) -> None:
        for split in SPLITS:
            self._load(split)

    def make_split(self, split: str) -> TensorDictDataset:
        return TensorDictDataset({"x": self._load(split)})


class KSDataModule(TrajectoryDataModule):
    """Kuramoto-Sivashinsky at L = 22 on 120 points (:mod:`dtwin.sim.ks`): D = 120, field_shape
    (120,). Every trajectory starts on the attractor: a random smooth field integrated for
    ``burn_in`` time units first. Defaults: 200 / 5 / 5 trajectories (the L-HiTS authors' split)
    of 5121 samples at dt = 0.01 (51.2 time units, ~2.2 Lyapunov times), ETDRK4 with 4 substeps
    (relative error ~3e-8 over the trajectory, below float32 rounding). The training split is
    ~490 MB in memory and on disk.

    Args: those of :class:`TrajectoryDataModule`, and ``burn_in`` (time units >= 0).
    """

    name = "ks"
    field_shape = (ks.N_GRID,)

    def __init__(
        self,
        n_train: int = 200,
        n_val: int = 5,
        n_test: int = 5,
        n_steps_train: int = 5120,
        n_steps_eval: int = 5120,
        dt: float = ks.DT,
        substeps: int = ks.SUBSTEPS,
        seed: int = 0,
        batch_size: int = 32,
        cache_dir: str | None = None,
        burn_in: float = 100.0,
    ) -> None:
        if isinstance(burn_in, bool) or not isinstance(burn_in, (int, float)) or not burn_in >= 0:
            raise ValueError(f"KSDataModule: burn_in must be a number >= 0 (time units), got {burn_in!r}")
        super().__init__(
            n_train, n_val, n_test, n_steps_train, n_steps_eval, dt, substeps, seed, batch_size, cache_dir
        )
        self.grid = ks.grid()

    def initial_states(self, n: int, generator: torch.Generator) -> Tensor:
        return ks.attractor_initial(n, burn_in=self.hparams.burn_in, generator=generator)

    def _simulate_fields(self, state0: Tensor, n_steps: int) -> Tensor:
        return ks.simulate(state0, n_steps, dt=self.dt, substeps=self.hparams.substeps)

    def generating_config(self) -> dict[str, Any]:
        return {
            "burn_in": float(self.hparams.burn_in),
            "burn_in_dt": ks.BURN_IN_DT,
            "length": ks.LENGTH,
            "n_grid": ks.N_GRID,
            "n_modes": ks.N_MODES,
        }


class FHNDataModule(TrajectoryDataModule):
    """FitzHugh-Nagumo on [0, 20], 101 points, no flux (:mod:`dtwin.sim.fhn`): D = 202 (u then
    v), field_shape (2, 101). Trajectories start from random front states on the slow manifold
    (:func:`dtwin.sim.fhn.random_initial`). Defaults: 200 / 5 / 5 trajectories of 5121 samples at
    dt = 0.05 (256 time units: the fronts slosh with a period of ~200, v moves on the ~1/eps ~ 170
    time scale), ETDRK4 with 2 substeps.

    Args: those of :class:`TrajectoryDataModule`.
    """

    name = "fhn"
    field_shape = (2, fhn.N_GRID)

    def __init__(
        self,
        n_train: int = 200,
        n_val: int = 5,
        n_test: int = 5,
        n_steps_train: int = 5120,
        n_steps_eval: int = 5120,
        dt: float = fhn.DT,
        substeps: int = fhn.SUBSTEPS,
        seed: int = 0,
        batch_size: int = 32,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(
            n_train, n_val, n_test, n_steps_train, n_steps_eval, dt, substeps, seed, batch_size, cache_dir
        )
        self.grid = fhn.grid()

    def initial_states(self, n: int, generator: torch.Generator) -> Tensor:
        return fhn.random_initial(n, generator)

    def _simulate_fields(self, state0: Tensor, n_steps: int) -> Tensor:
        return fhn.simulate(state0, n_steps, dt=self.dt, substeps=self.hparams.substeps)

    def generating_config(self) -> dict[str, Any]:
        return {
            "Du": fhn.DU,
            "Dv": fhn.DV,
            "eps": fhn.EPS,
            "a0": fhn.A0,
            "a1": fhn.A1,
            "n_grid": fhn.N_GRID,
            "initial": "fronts",
        }

"""The DRIP estimator plugin (dtwin_estimators.drip): conformance, shapes for each operator, the
reconstruction as the synthesis of the lower level's minimiser, the discrepancy principle, the
implicit gradients against the unrolled reference and finite differences, training on a fixed
batch, bad hyperparameters and batches, and the operator check against the data module."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from dtwin import registry
from dtwin.data.images import ImagePatchesDataModule
from dtwin.nn import solve_unrolled
from dtwin.testing import check_plugin, quiet_trainer
from dtwin_estimators.drip import DRIP
from dtwin_estimators.reconstruction import ReconstructionModule

DT = torch.float64
OPERATORS = {
    "blur": None,
    "inpainting": {"observed": 0.11, "seed": 0},
    "tomography": {"n_angles": 6},
}
SMALL = {"latent_channels": 4, "synthesis_kernel": 3, "n_filters": 4, "image_size": 16, "max_iter": 30}
#: a lower level that converges in a few hundred iterations: strongly convex, R not negligible
EXACT = {
    **SMALL,
    "max_iter": 2000,
    "tol": 1e-12,
    "discrepancy": False,
    "mu": 0.05,
    "init_scale": 0.2,
    "cg_tol": 1e-13,
    "cg_max_iter": 500,
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(model: DRIP, n: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    return {k: v.to(dtype) for k, v in model.example_batch(n).items()}


def test_registered_and_conforms():
    assert registry.load("estimators", "drip") is DRIP
    assert issubclass(DRIP, ReconstructionModule)
    results = check_plugin(DRIP, "drip", kind="estimators")
    assert set(results.values()) == {"ok"}


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_shapes_for_each_operator(operator):
    model = DRIP(operator=operator, operator_args=OPERATORS[operator], **SMALL)
    batch = model.example_batch(3)
    assert batch["y"].shape == (3, *model.operator.out_shape)
    assert batch["sigma"].shape == (3,) and batch["x"].shape == (3, 1, 16, 16)
    with torch.no_grad():
        out = model(batch)
    assert out.shape == (3, 1, 16, 16) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_reconstruction_is_the_synthesis_of_the_minimiser(operator):
    torch.manual_seed(0)
    model = DRIP(operator=operator, operator_args=OPERATORS[operator], **EXACT).to(DT)
    batch = _batch(model, 2, DT)
    y, sigma = batch["y"], batch["sigma"]
    with torch.no_grad():
        x_hat = model(batch)
        result = model.solve(y, sigma)
    assert bool(result.converged.all()) and not bool(result.discrepancy.any())
    assert torch.equal(x_hat, model.E(result.z))

    def grad_norm(z: torch.Tensor) -> torch.Tensor:
        z = z.detach().requires_grad_()
        (g,) = torch.autograd.grad(model.objective(y, z).sum(), z)
        return g.flatten(1).norm(dim=1)

    z_star = result.z
    ratio = grad_norm(z_star) / grad_norm(torch.zeros_like(z_star))
    assert bool((ratio < 1e-6).all()), ratio
    # a minimiser: random perturbations do not lower the objective of any sample
    f_star = model.objective(y, z_star).detach()
    g = torch.Generator().manual_seed(1)
    for scale in (1e-3, 1e-1):
        dz = scale * torch.randn(z_star.shape, generator=g, dtype=DT)
        assert bool((model.objective(y, z_star + dz).detach() >= f_star - 1e-12).all())


@pytest.mark.parametrize("dtype", [torch.float32, DT])
@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_samples_stopped_by_the_discrepancy_principle_fit_the_data(operator, dtype):
    torch.manual_seed(0)
    model = DRIP(operator=operator, operator_args=OPERATORS[operator], **{**SMALL, "max_iter": 300})
    model = model.to(dtype)
    assert model.hparams.discrepancy is True and model.hparams.tau == 1.2
    batch = _batch(model, 6, dtype)
    with torch.no_grad():
        x_hat = model(batch)
    result = model._last  # what the last reconstruction solved (kept for the logging)
    ratio = model.misfit_ratio(x_hat, batch)
    assert ratio.shape == (6,)
    stopped = result.discrepancy
    assert bool(stopped.any())
    assert bool((ratio[stopped] <= model.hparams.tau * (1 + 1e-5)).all()), ratio
    # the misfit the solver reports is that of the returned reconstruction
    M = batch["y"][0].numel()
    assert torch.allclose(result.misfit, ratio * batch["sigma"] * math.sqrt(M), rtol=1e-4)
    # the same model without the discrepancy principle: the same iterates, none stopped early
    plain = DRIP(operator=operator, operator_args=OPERATORS[operator], **{**SMALL, "max_iter": 300})
    plain.load_state_dict(model.state_dict())
    plain = plain.to(dtype)
    plain.hparams.discrepancy = False
    with torch.no_grad():
        plain(batch)
    assert not bool(plain._last.discrepancy.any())
    assert bool((plain._last.iterations >= result.iterations).all())
    assert bool((plain._last.iterations[stopped] > result.iterations[stopped]).all())


def _gradient_model(seed: int = 0) -> tuple[DRIP, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model = DRIP(**{**EXACT, "latent_channels": 3, "image_size": 8, "max_iter": 600}).to(DT)
    return model, _batch(model, 2, DT)


def test_implicit_gradients_match_the_unrolled_reference_at_convergence():
    model, batch = _gradient_model()
    names, params = zip(*model.named_parameters(), strict=True)
    assert {n.split(".")[0] for n in names} == {"E", "R"}
    loss = model.loss(model(batch), batch["x"])
    assert bool(model._last.converged.all())
    implicit = torch.autograd.grad(loss, params)
    hp = model.hparams
    ref = solve_unrolled(
        model.operator, model.E, model.R, batch["y"], tol=hp.tol, max_iter=hp.max_iter, check_convexity=False
    )
    unrolled = torch.autograd.grad(model.loss(model.E(ref.z), batch["x"]), params)
    for name, a, b in zip(names, implicit, unrolled, strict=True):
        assert float(b.norm()) > 0, name
        assert float((a - b).norm() / b.norm()) < 1e-6, name


def test_implicit_gradients_match_finite_differences():
    model, batch = _gradient_model(seed=1)
    params = list(model.parameters())
    loss = model.loss(model(batch), batch["x"])
    grads = torch.autograd.grad(loss, params)
    g = torch.Generator().manual_seed(2)
    directions = [torch.randn(p.shape, generator=g, dtype=DT) for p in params]
    analytic = sum(float((gr * d).sum()) for gr, d in zip(grads, directions, strict=True))

    def loss_at(h: float) -> float:
        with torch.no_grad():
            for p, d in zip(params, directions, strict=True):
                p.add_(h * d)
            value = float(model.loss(model(batch), batch["x"]))
            for p, d in zip(params, directions, strict=True):
                p.sub_(h * d)
            return value

    h = 1e-5
    numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
    assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-9)


def test_every_parameter_gets_a_gradient_through_a_training_step():
    torch.manual_seed(0)
    model = DRIP(operator="tomography", operator_args=OPERATORS["tomography"], **SMALL)
    batch = model.example_batch(2)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        loss = model.training_step(batch, 0)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
        assert float(p.grad.abs().max()) > 0, name
    assert model._last is None  # consumed by the logging


def test_training_on_a_fixed_batch_reduces_the_loss():
    torch.manual_seed(0)
    model = DRIP(operator="inpainting", operator_args=OPERATORS["inpainting"], **SMALL)
    batch = model.example_batch(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model.loss(model(batch), batch["x"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[1:]) < 0.6 * losses[0], losses


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_normalize_weighs_the_regularizer_by_the_operator_norm(operator):
    """normalize (the default): R weighed by ||A||^2, which is 1 for the blur and the mask and
    large for a Radon transform; normalize=False leaves R as it is."""
    args = {"operator": operator, "operator_args": OPERATORS[operator]}
    model = DRIP(**SMALL, **args)
    A = model.operator
    x = torch.randn(4, *A.in_shape, dtype=DT, generator=torch.Generator().manual_seed(0))
    ratio = float(A.adjoint(A(x)).flatten(1).norm(dim=1).div(x.flatten(1).norm(dim=1)).max())
    assert ratio <= model.R.strength * (1 + 1e-9)  # ||A^T A x|| <= ||A||^2 ||x||
    if operator == "tomography":
        assert model.R.strength > 10
    else:
        assert model.R.strength == pytest.approx(1.0, rel=1e-6)
    assert DRIP(**SMALL, **args, normalize=False).R.strength == 1.0


@pytest.mark.parametrize(
    ("hparams", "name"),
    [
        ({"max_iter": 0}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"cg_max_iter": 0}, "cg_max_iter"),
        ({"tol": -1}, "tol"),
        ({"tol": math.nan}, "tol"),
        ({"tol": math.inf}, "tol"),
        ({"cg_tol": -1e-3}, "cg_tol"),
        ({"cg_tol": math.nan}, "cg_tol"),
        ({"penalty": "nope"}, "penalty"),
        ({"discrepancy": "yes"}, "discrepancy"),
        ({"normalize": 1}, "normalize"),
        ({"operator": "nope"}, "operator"),
        ({"image_size": 2}, "image_size"),
        ({"image_size": 16.0}, "image_size"),
        ({"tau": 0}, "tau"),
        ({"tau": -1.0}, "tau"),
        ({"tau": math.inf}, "tau"),
        ({"operator_args": [2.0]}, "operator_args"),
        ({"operator_args": {"bogus": 1}}, "operator_args"),
        ({"operator": "tomography", "operator_args": {"sigma": 2.0}}, "operator_args"),
        ({"latent_channels": 0}, "latent_channels"),
        ({"synthesis_kernel": 4}, "kernel_size"),
        ({"tv_init": 0.0}, "tv_init"),
        ({"tv_init": -1e-3}, "tv_init"),
        ({"tv_init": math.inf}, "tv_init"),
        ({"tv_init": 1e-3, "n_filters": 1}, "n_filters >= 2"),
    ],
)
def test_bad_hyperparameters_are_named(hparams, name):
    with pytest.raises(ValueError, match=name):
        DRIP(**{**SMALL, **hparams})


def _nan_at(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[5] = math.nan
    return t


#: (label, good batch -> bad batch, what the error says)
BAD_BATCHES = [
    ("missing sigma", lambda b: {"y": b["y"], "x": b["x"]}, "no 'sigma'"),
    ("missing y", lambda b: {"sigma": b["sigma"], "x": b["x"]}, "no 'y'"),
    (
        "y of the wrong shape",
        lambda b: {**b, "y": b["y"][..., :-1]},
        r"batch\['y'\] must be Tensor\[B, 1, 16, 16\]",
    ),
    ("y of the wrong rank", lambda b: {**b, "y": b["y"][:, 0]}, r"batch\['y'\] must be"),
    ("non-finite y", lambda b: {**b, "y": _nan_at(b["y"])}, r"batch\['y'\] contains non-finite"),
    ("integer y", lambda b: {**b, "y": b["y"].long()}, r"batch\['y'\] must be a float"),
    ("sigma of the wrong shape", lambda b: {**b, "sigma": b["sigma"][:, None]}, r"batch\['sigma'\] must be"),
    (
        "negative sigma",
        lambda b: {**b, "sigma": -b["sigma"]},
        r"batch\['sigma'\] \(the noise std\) must be >= 0",
    ),
    (
        "infinite sigma",
        lambda b: {**b, "sigma": b["sigma"] + math.inf},
        r"batch\['sigma'\] contains non-finite",
    ),
    (
        "mismatched batch sizes",
        lambda b: {**b, "sigma": b["sigma"][:2]},
        r"batch\['sigma'\] has 2 samples, batch\['y'\] has 3",
    ),
]


@pytest.mark.parametrize(("label", "corrupt", "message"), BAD_BATCHES, ids=[c[0] for c in BAD_BATCHES])
def test_bad_batches_are_named(label, corrupt, message):
    model = DRIP(**SMALL)
    batch = corrupt(model.example_batch(3))
    with pytest.raises(ValueError, match=message):
        model.check_batch(batch)
    with pytest.raises(ValueError, match=message), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        model.training_step(batch, 0)


def test_a_batch_that_is_not_a_dict_is_refused():
    model = DRIP(**SMALL)
    with pytest.raises(TypeError, match="a batch is a dict"):
        model.check_batch([model.example_batch(2)["y"]])


def _data_module() -> ImagePatchesDataModule:
    return ImagePatchesDataModule(
        operator="blur", patch_size=16, n_train=8, n_val=4, n_test=4, operator_args={"sigma": 1.0}
    )


def test_an_operator_other_than_the_data_modules_fails_at_setup(tmp_path):
    model = DRIP(operator="blur", operator_args={"sigma": 2.0}, **SMALL)
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    with pytest.raises(ValueError, match="is not the data module's") as info:
        trainer.fit(model, datamodule=_data_module())
    message = str(info.value)
    assert "sigma=2.0 vs shape=(16, 16), sigma=1.0" in message and "operator_args" in message
    # another operator altogether, and another image size
    for other in (
        DRIP(operator="inpainting", operator_args=OPERATORS["inpainting"], **SMALL),
        DRIP(operator_args={"sigma": 1.0}, **{**SMALL, "image_size": 12}),
    ):
        with pytest.raises(ValueError, match="is not the data module's"):
            quiet_trainer(tmp_path, max_epochs=1).fit(other, datamodule=_data_module())


def test_a_matching_operator_trains_and_logs_its_metrics(tmp_path):
    torch.manual_seed(0)
    model = DRIP(operator="blur", operator_args={"sigma": 1.0}, **SMALL)
    trainer = quiet_trainer(tmp_path, max_epochs=1)
    trainer.fit(model, datamodule=_data_module())
    metrics = trainer.callback_metrics
    for key in (
        "val/psnr",
        "val/ssim",
        "val/fits_data",
        "val/inner_iterations",
        "val/stopped_by_discrepancy",
    ):
        assert key in metrics, sorted(metrics)
        assert math.isfinite(float(metrics[key])), key
    assert 0 <= float(metrics["val/fits_data"]) <= 1
    assert -1 <= float(metrics["val/ssim"]) <= 1
    assert 1 <= float(metrics["val/inner_iterations"]) <= SMALL["max_iter"]
    assert "train/inner_iterations" in metrics


@pytest.mark.parametrize("operator", ["blur", "tomography"])
def test_a_tv_start_solves_the_smoothed_tv_problem(operator):
    """tv_init: the lower level starts as min_u 1/2 ||A u - y||^2 + lam sum phi(grad u) + s mu/2 ||u||^2
    (+ the small other channels), whatever ||A||^2 = s: E z* is close to the direct minimiser in u."""
    from dtwin.nn import PENALTIES

    lam = 0.05
    model = DRIP(**{**EXACT, "operator": operator, "operator_args": OPERATORS[operator], "tv_init": lam})
    model = model.double().eval()
    batch = _batch(model, 2, DT)
    with torch.no_grad():
        u_drip = model(batch)
    A, eps, phi = model.operator, model.R.eps, PENALTIES["pseudo_huber"].value

    def tv_objective(u):
        dx = torch.nn.functional.pad(u[..., :, 1:], (0, 1)) - u  # the zero-padded forward differences
        dy = torch.nn.functional.pad(u[..., 1:, :], (0, 0, 0, 1)) - u
        misfit = (A(u) - batch["y"]).flatten(1).square().sum(1)
        ridge = 0.5 * model.R.modulus * u.flatten(1).square().sum(1)  # R's strongly convex term
        return (0.5 * misfit + lam * (phi(dx, eps) + phi(dy, eps)).flatten(1).sum(1) + ridge).sum()

    u = torch.zeros_like(u_drip).requires_grad_(True)  # solved from zero, not from DRIP's answer
    optimizer = torch.optim.LBFGS([u], max_iter=500, tolerance_grad=1e-12, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = tv_objective(u)
        loss.backward()
        return loss

    optimizer.step(closure)
    gap = (u.detach() - u_drip).flatten(1).norm(dim=1) / u.detach().flatten(1).norm(dim=1)
    assert float(gap.max()) < 5e-3, gap
    # and the start is not what a random one gives
    random = DRIP(**{**EXACT, "operator": operator, "operator_args": OPERATORS[operator]}).double().eval()
    with torch.no_grad():
        assert float((random(batch) - u_drip).norm()) > 10 * float((u.detach() - u_drip).norm())

"""The learned baselines of the DRIP experiment (UNetPost, UnrolledPG): conformance, shapes for each
operator, the classical start (Tikhonov / Landweber) of an untrained model, training on a fixed
batch, parameter counts and budgets, bad hyperparameters, and the operator check against the data
module."""

from __future__ import annotations

import pytest
import torch

from dtwin import registry
from dtwin.data.images import ImagePatchesDataModule
from dtwin.testing import check_plugin, quiet_trainer
from dtwin_estimators.recon_nets import UNetPost, UnrolledPG, linear_reconstruction, width_for_budget

OPERATORS = {
    "blur": {"sigma": 2.0},
    "inpainting": {"observed": 0.11, "seed": 0},
    "tomography": {"n_angles": 18},
}
SMALL = {UNetPost: {"width": 4, "depth": 2}, UnrolledPG: {"width": 8, "iterations": 3}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("cls", "name"), [(UNetPost, "unet_post"), (UnrolledPG, "unrolled_pg")])
def test_registered_and_conforms(cls, name):
    assert registry.load("estimators", name) is cls
    results = check_plugin(cls, name, kind="estimators")
    assert set(results.values()) == {"ok"}


@pytest.mark.parametrize("operator", sorted(OPERATORS))
@pytest.mark.parametrize("cls", [UNetPost, UnrolledPG])
def test_shapes_for_each_operator(cls, operator):
    model = cls(operator=operator, operator_args=OPERATORS[operator], **SMALL[cls])
    batch = model.example_batch(3)
    assert batch["y"].shape[1:] == model.operator.out_shape
    out = model(batch)
    assert out.shape == (3, 1, 32, 32) and out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("cls", [UNetPost, UnrolledPG])
def test_image_size_64(cls):
    model = cls(image_size=64, **SMALL[cls])
    batch = model.example_batch(2)
    assert model(batch).shape == (2, 1, 64, 64)


def test_untrained_unet_returns_its_linear_input():
    model = UNetPost(**SMALL[UNetPost]).eval()
    batch = model.example_batch(2)
    with torch.no_grad():
        assert torch.equal(model(batch), model.initial(batch["y"]).float())


def test_untrained_unrolled_pg_is_landweber():
    model = UnrolledPG(**SMALL[UnrolledPG]).eval()
    A, L = model.operator, model.norm_sq
    assert torch.allclose(model.step_sizes(), torch.full((3,), 1.0 / L))
    batch = model.example_batch(2)
    y = batch["y"].double()
    x = A.adjoint(y) / L
    for _ in range(3):
        x = x - (A.normal(x) - A.adjoint(y)) / L
    with torch.no_grad():
        assert torch.allclose(model(batch).double(), x, atol=1e-5)


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_tikhonov_input_solves_the_regularised_normal_equations(operator):
    model = UNetPost(operator=operator, operator_args=OPERATORS[operator], cg_iterations=200, tikhonov=0.05)
    A, lam = model.operator, 0.05 * model.norm_sq
    y = model.example_batch(2)["y"]
    x = model.initial(y)
    residual = A.normal(x) + lam * x - A.adjoint(y.double())
    assert float(residual.norm() / A.adjoint(y.double()).norm()) < 1e-8
    if operator == "inpainting":  # A^T A is the mask: one CG step gives A^T y / (1 + lam)
        one = linear_reconstruction(A, y, norm_sq=model.norm_sq, tikhonov=0.05, iterations=1)
        assert torch.allclose(one, A.adjoint(y.double()) / (1 + lam))


@pytest.mark.parametrize("cls", [UNetPost, UnrolledPG])
def test_training_on_a_fixed_batch_reduces_the_loss(cls):
    torch.manual_seed(0)
    model = cls(operator="inpainting", operator_args=OPERATORS["inpainting"], **SMALL[cls])
    batch = model.example_batch(4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        optimizer.zero_grad()
        loss = model.loss(model(batch), batch["x"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize(
    ("cls", "hparams"),
    [
        (UNetPost, {}),
        (UNetPost, {"width": 5, "depth": 1}),
        (UnrolledPG, {}),
        (UnrolledPG, {"width": 3, "layers": 2, "iterations": 4, "shared": True}),
    ],
)
def test_count_parameters_matches_the_built_model(cls, hparams):
    assert cls.count_parameters(**hparams) == cls(**hparams).num_parameters()


def test_shared_prox_has_one_cnn_and_k_step_sizes():
    per_iteration = UnrolledPG.count_parameters(iterations=4, shared=False)
    shared = UnrolledPG.count_parameters(iterations=4, shared=True)
    assert per_iteration - 4 == 4 * (shared - 4)


@pytest.mark.parametrize("budget", [20_000, 100_000])
@pytest.mark.parametrize(("cls", "hparams"), [(UNetPost, {"depth": 2}), (UnrolledPG, {"iterations": 5})])
def test_width_for_budget(cls, hparams, budget):
    w = width_for_budget(cls, budget, **hparams)
    count = cls.count_parameters(width=w, **hparams)
    assert abs(count - budget) <= 0.15 * budget, (w, count)
    for other in (w - 1, w + 1):  # the closest
        if other >= 1:
            assert abs(count - budget) <= abs(cls.count_parameters(width=other, **hparams) - budget)
    assert width_for_budget(cls, 1, **hparams) == 1
    with pytest.raises(ValueError, match="width"):
        width_for_budget(cls, budget, width=3)
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        width_for_budget(cls, budget, widht=3)
    # the operator's hyperparameters do not change the count
    assert width_for_budget(cls, budget, operator="tomography", image_size=64, **hparams) == w


@pytest.mark.parametrize(
    ("cls", "hparams", "name"),
    [
        (UNetPost, {"width": 0}, "width"),
        (UNetPost, {"depth": 0}, "depth"),
        (UNetPost, {"depth": 3, "image_size": 36}, "image_size"),
        (UNetPost, {"init": "fbp"}, "init"),
        (UNetPost, {"tikhonov": 0.0}, "tikhonov"),
        (UNetPost, {"cg_iterations": 0}, "cg_iterations"),
        (UnrolledPG, {"width": 0}, "width"),
        (UnrolledPG, {"iterations": 0}, "iterations"),
        (UnrolledPG, {"layers": 1}, "layers"),
        (UnrolledPG, {"shared": "yes"}, "shared"),
        (UnrolledPG, {"init": "tikhonov"}, "init"),
    ],
)
def test_bad_hyperparameters(cls, hparams, name):
    with pytest.raises(ValueError, match=name):
        cls(**hparams)
    if name in cls._NET:
        with pytest.raises(ValueError, match=name):
            cls.count_parameters(**hparams)


def test_the_data_modules_operator_must_match(tmp_path):
    dm_args = dict(operator="blur", patch_size=32, n_train=8, n_val=4, n_test=4, batch_size=4)
    dm = ImagePatchesDataModule(**dm_args, operator_args={"sigma": 1.0})
    model = UNetPost(operator="blur", operator_args={"sigma": 2.0}, **SMALL[UNetPost])
    with pytest.raises(ValueError, match=r"model's operator .*sigma=2\.0 vs .*sigma=1\.0"):
        quiet_trainer(tmp_path, max_epochs=1).fit(model, dm)
    # the same operator trains and validates, with the base's metrics
    model = UnrolledPG(operator="blur", operator_args={"sigma": 1.0}, **SMALL[UnrolledPG])
    trainer = quiet_trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0)
    trainer.fit(model, dm)
    logged = trainer.callback_metrics
    assert {"val/psnr", "val/ssim", "val/fits_data", "train/loss_epoch"} <= set(logged)
    assert float(logged["val/psnr"]) > 10

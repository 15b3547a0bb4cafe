"""ImagePatchesDataModule: the split by image (no image in two splits, every patch from its split's
images), the patches' range and shape, determinism by seed, the noisy measurements through the
DRIP operators, the LFW faces, and bad arguments."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("skimage", reason="the image data sets ship with scikit-image")

from dtwin.data import images as images_module
from dtwin.data.images import (
    FACE_SIZE,
    TEST_FACES,
    TEST_IMAGES,
    TRAIN_FACES,
    TRAIN_IMAGES,
    VAL_FACES,
    VAL_IMAGES,
    ImagePatchesDataModule,
    load_face,
    load_image,
)
from dtwin.sim.imaging import GaussianBlur, Inpainting, Tomography

SPLITS = ("train", "val", "test")
SMALL = dict(n_train=50, n_val=7, n_test=7, patch_size=32)


def _tensors(dm: ImagePatchesDataModule, split: str) -> dict[str, torch.Tensor]:
    dm.setup()
    return dm.datasets[split].tensors


def test_image_lists_are_disjoint_real_grayscale_images():
    lists = [set(TRAIN_IMAGES), set(VAL_IMAGES), set(TEST_IMAGES)]
    assert [len(s) for s in lists] == [len(TRAIN_IMAGES), len(VAL_IMAGES), len(TEST_IMAGES)]
    assert not (lists[0] & lists[1] or lists[0] & lists[2] or lists[1] & lists[2])
    every = lists[0] | lists[1] | lists[2]
    assert "cat" not in every  # skimage's cat is the file of chelsea
    for name in every:
        img = load_image(name)
        assert img.dim() == 2 and min(img.shape) >= 172 and img.dtype == torch.float32
        assert 0.0 <= img.min() and img.max() <= 1.0 and img.std() > 0.05
    faces = [set(TRAIN_FACES), set(VAL_FACES), set(TEST_FACES)]
    assert not (faces[0] & faces[1] or faces[0] & faces[2] or faces[1] & faces[2])
    assert faces[0] | faces[1] | faces[2] <= set(range(100))
    dm = ImagePatchesDataModule(**SMALL)
    assert [dm.images(s) for s in SPLITS] == [list(TRAIN_IMAGES), list(VAL_IMAGES), list(TEST_IMAGES)]
    assert dm.sources == [*TRAIN_IMAGES, *VAL_IMAGES, *TEST_IMAGES]


def test_every_patch_is_a_crop_of_an_image_of_its_split():
    dm = ImagePatchesDataModule(**SMALL)
    assert dm.patch_size == 32 and dm.operator is None
    for split in SPLITS:
        data = _tensors(dm, split)
        n = dm.sizes[split]
        assert set(data) == {"x", "image", "position"}
        x, image, position = data["x"], data["image"], data["position"]
        assert x.shape == (n, 1, 32, 32) and x.dtype == torch.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        names = [dm.sources[i] for i in image.tolist()]
        assert set(names) == set(dm.images(split))  # from its images only, and from all of them
        for name, (top, left), patch in zip(names, position.tolist(), x[:, 0], strict=True):
            assert torch.equal(patch, load_image(name)[top : top + 32, left : left + 32])
    train = _tensors(dm, "train")
    counts = torch.bincount(train["image"], minlength=len(TRAIN_IMAGES))[: len(TRAIN_IMAGES)]
    assert counts.max() - counts.min() <= 1  # every training image contributes equally


def test_default_sizes_and_loaders():
    dm = ImagePatchesDataModule(batch_size=16)
    assert dm.patch_size == 64 and dm.sizes == {"train": 2000, "val": 200, "test": 200}
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (16, 1, 64, 64) and batch["image"].shape == (16,)
    assert next(iter(dm.test_dataloader()))["position"].shape == (16, 2)
    assert len(dm.val_dataloader().dataset) == 200


def test_determinism_by_seed():
    a = ImagePatchesDataModule(**SMALL, operator="inpainting", noise=0.1)
    b = ImagePatchesDataModule(**SMALL, operator="inpainting", noise=0.1)
    c = ImagePatchesDataModule(**SMALL, operator="inpainting", noise=0.1, seed=1)
    for split in SPLITS:
        ta, tb, tc = (_tensors(dm, split) for dm in (a, b, c))
        assert all(torch.equal(ta[k], tb[k]) for k in ta)
        assert not torch.equal(ta["x"], tc["x"]) and not torch.equal(ta["y"], tc["y"])
    # another size of the training split leaves the held-out splits as they were, and the
    # operator or the noise do not move the patches
    more = ImagePatchesDataModule(**{**SMALL, "n_train": 80}, operator="blur", noise=0.3)
    for split in ("val", "test"):
        assert torch.equal(_tensors(more, split)["x"], _tensors(a, split)["x"])
    clean = ImagePatchesDataModule(**SMALL)
    assert torch.equal(_tensors(clean, "train")["x"], _tensors(a, "train")["x"])


@pytest.mark.parametrize(
    ("operator", "args", "cls"),
    [
        ("blur", {"sigma": 2.0}, GaussianBlur),
        ("inpainting", {"observed": 0.2, "seed": 3}, Inpainting),
        ("tomography", {"n_angles": 12, "angle_range": [0.0, 120.0]}, Tomography),
    ],
)
def test_measurements_have_the_operators_shape_and_the_noise_level(operator, args, cls):
    noise = 0.05
    dm = ImagePatchesDataModule(**SMALL, operator=operator, operator_args=args, noise=noise)
    assert isinstance(dm.operator, cls) and dm.operator.in_shape == (1, 32, 32)
    data = _tensors(dm, "train")
    n = dm.sizes["train"]
    y, sigma = data["y"], data["sigma"]
    assert y.shape == (n, *dm.operator.out_shape) and y.dtype == torch.float32
    assert sigma.shape == (n,) and sigma.dtype == torch.float32
    clean = dm.operator(data["x"].double())
    expected = noise * clean.abs().flatten(1).mean(1)
    torch.testing.assert_close(sigma.double(), expected, rtol=1e-5, atol=0)
    # the noise is N(0, sigma^2) per sample: standardised residuals have mean 0 and std 1
    z = ((y.double() - clean) / sigma.double().view(n, *[1] * (y.dim() - 1))).flatten()
    assert z.numel() > 5000
    assert abs(z.mean().item()) < 0.05 and abs(z.std().item() - 1.0) < 0.05
    # a batch from the loader carries the measurement with its std
    batch = next(iter(dm.val_dataloader()))
    assert batch["y"].shape[1:] == dm.operator.out_shape and batch["sigma"].dim() == 1


def test_no_noise_gives_the_exact_measurement():
    dm = ImagePatchesDataModule(**SMALL, operator="blur", noise=0.0)
    data = _tensors(dm, "test")
    assert torch.equal(data["sigma"], torch.zeros(7))
    torch.testing.assert_close(data["y"], dm.operator(data["x"].double()).float(), rtol=0, atol=1e-6)


def test_faces_are_whole_lfw_faces_split_by_index():
    dm = ImagePatchesDataModule(source="faces")
    assert dm.patch_size == FACE_SIZE and dm.sizes == {"train": 80, "val": 10, "test": 10}
    assert dm.images("test") == [f"lfw_subset[{i}]" for i in TEST_FACES]
    for split, faces in zip(SPLITS, (TRAIN_FACES, VAL_FACES, TEST_FACES), strict=True):
        data = _tensors(dm, split)
        assert data["x"].shape == (len(faces), 1, 25, 25)
        assert data["image"].tolist() == list(faces)
        assert torch.equal(data["x"][:, 0], load_face(list(faces)))
        assert data["x"].min() >= 0.0 and data["x"].max() <= 1.0
    # resized, repeated with fresh noise, measured
    big = ImagePatchesDataModule(source="faces", patch_size=48, n_train=160, operator="tomography")
    data = _tensors(big, "train")
    assert data["x"].shape == (160, 1, 48, 48) and data["y"].shape == (160, *big.operator.out_shape)
    assert data["x"].min() >= 0.0 and data["x"].max() <= 1.0
    assert torch.equal(data["image"][:80], data["image"][80:])
    assert torch.equal(data["x"][:80], data["x"][80:]) and not torch.equal(data["y"][:80], data["y"][80:])
    assert set(data["image"].tolist()) == set(TRAIN_FACES)


def test_min_std_redraws_flat_patches():
    dm = ImagePatchesDataModule(**SMALL, min_std=0.03)
    for split in SPLITS:
        assert _tensors(dm, split)["x"].flatten(1).std(1).min() >= 0.03


@pytest.mark.parametrize(
    ("kwargs", "arg"),
    [
        ({"operator": "deconvolution"}, "operator"),
        ({"noise": -0.01}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"patch_size": 200}, "patch_size"),
        ({"patch_size": 0}, "patch_size"),
        ({"n_train": 0}, "n_train"),
        ({"n_val": -1}, "n_val"),
        ({"source": "celeba"}, "source"),
        ({"operator_args": {"sigma": 2.0}}, "operator_args"),
        ({"operator": "blur", "operator_args": {"radius": 2}}, "operator_args"),
        ({"operator": "blur", "operator_args": {"sigma": -1.0}}, "sigma"),
        ({"min_std": -1.0}, "min_std"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        ImagePatchesDataModule(**kwargs)


def test_impossible_min_std_and_unknown_split_are_errors(monkeypatch):
    monkeypatch.setattr(images_module, "_MAX_REDRAWS", 3)
    dm = ImagePatchesDataModule(n_train=10, n_val=1, n_test=1, patch_size=16, min_std=0.6)
    with pytest.raises(ValueError, match="min_std"):
        dm.setup()
    with pytest.raises(ValueError, match="split"):
        dm.images("holdout")
    with pytest.raises(ValueError, match="not an image"):
        load_image("lena")

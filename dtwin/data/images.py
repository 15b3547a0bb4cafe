"""Grayscale patches of real images for the DRIP inverse problems (learned regularizers;
Eliasof, Haber, Treister, arXiv 2304.00015), optionally with their noisy measurements through a
forward operator of :mod:`dtwin.sim.imaging`.

Two sources, both shipped inside the scikit-image wheel (no download; pooch is not needed):

- ``'images'``: the natural, microscopy, astronomy, texture and document images of
  ``skimage.data``, converted to grayscale float in [0, 1] (``skimage.color.rgb2gray`` for colour
  images, luma weights 0.2125 / 0.7154 / 0.0721), at their native resolution. Patches of
  ``patch_size`` x ``patch_size`` pixels are cut at random positions. The split is BY IMAGE:
  :data:`TRAIN_IMAGES`, :data:`VAL_IMAGES` and :data:`TEST_IMAGES` share no image, so no pixel of
  a held-out image is ever seen in training. Sample i of a split comes from image i mod K of its
  K images (every image of a split contributes equally, whatever its size).
- ``'faces'``: the 100 faces of ``skimage.data.lfw_subset()`` (Labeled Faces in the Wild,
  25 x 25; the subset's other 100 images are non-faces and are not used), each sample a whole
  face resized to ``patch_size`` (bilinear with antialiasing; none at the native 25). Split by
  face index: :data:`TRAIN_FACES`, :data:`VAL_FACES`, :data:`TEST_FACES`. Sample i of a split is
  face i mod K of its K faces (n larger than K repeats faces, each repeat with fresh noise).

Images of skimage.data left out, and why: ``cat`` (the same file as ``chelsea``), ``cell`` (one
blob on a flat background), ``clock`` (motion-blurred: no clean ground truth), ``microaneurysms``
(102 x 102, low contrast), ``horse`` (a binary silhouette), the synthetic ``logo``,
``colorwheel``, ``checkerboard``, ``binary_blobs``, ``shepp_logan_phantom``, and those that
skimage only downloads (``brain``, ``cells3d``, ``eagle``, ``kidney``, ``lily``, ``skin``, ...).
``motorcycle`` is the left view of ``stereo_motorcycle()``.

Each split is a :class:`~dtwin.data.base.TensorDictDataset` of samples

    'x': Tensor[1, P, P] float32 in [0, 1], the clean patch (P = ``patch_size``);
    'image': Tensor[] int64, the patch's source, an index into ``dm.sources``;
    'position': Tensor[2] int64, (row, column) of the patch's top-left pixel in its image
        ((0, 0) for faces);

and, when an ``operator`` is configured,

    'y': Tensor[*operator.out_shape] float32, the measurement A x + sigma * N(0, 1);
    'sigma': Tensor[] float32, the noise std: sigma = noise * mean(|A x|) of the sample.

Everything is drawn from generators seeded by ``seed`` and the split (positions and noise from
separate streams): the data set is fixed, the same for the same arguments. Changing the operator
or the noise leaves the patches as they were; changing one split's size leaves the other splits as
they were. Generation is fast, so nothing is cached on disk: the default 2000 / 200 / 200 patches
of 64 x 64 take about 0.03 s to cut (plus about 0.25 s to read the images, once per process); the
measurements add 0.2 s (inpainting), 0.6 s (tomography) or 0.9 s (blur: float64 FFTs), timed on
one busy core.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from dtwin.data.base import SplitDataModule, TensorDictDataset, check_integers
from dtwin.sim.imaging import OPERATORS, LinearOperator, add_noise, make_operator

__all__ = [
    "FACE_SIZE",
    "SOURCES",
    "TEST_FACES",
    "TEST_IMAGES",
    "TRAIN_FACES",
    "TRAIN_IMAGES",
    "VAL_FACES",
    "VAL_IMAGES",
    "ImagePatchesDataModule",
    "load_face",
    "load_image",
]

SPLITS = ("train", "val", "test")
SOURCES = ("images", "faces")

#: training images (names of skimage.data functions, 'motorcycle' = left view of stereo_motorcycle):
#: people and objects, textures, coins, astronomy, histology, a fundus photograph, a document
TRAIN_IMAGES: tuple[str, ...] = (
    "astronaut",  # 512 x 512, colour
    "brick",  # 512 x 512, texture
    "camera",  # 512 x 512
    "coins",  # 303 x 384
    "grass",  # 512 x 512, texture
    "hubble_deep_field",  # 872 x 1000, colour
    "immunohistochemistry",  # 512 x 512, colour
    "moon",  # 512 x 512
    "page",  # 191 x 384, scanned text
    "retina",  # 1411 x 1411, colour
)
#: validation images: a street photograph, a night launch, handwriting on a textured background
VAL_IMAGES: tuple[str, ...] = (
    "motorcycle",  # 500 x 741, colour
    "rocket",  # 427 x 640, colour
    "text",  # 172 x 448
)
#: held-out test images: an animal photograph, a still life, a texture
TEST_IMAGES: tuple[str, ...] = (
    "chelsea",  # 300 x 451, colour
    "coffee",  # 400 x 600, colour
    "gravel",  # 512 x 512, texture
)

#: the faces of skimage.data.lfw_subset() (rows 0..99; rows 100..199 are non-faces), split by index
TRAIN_FACES: tuple[int, ...] = tuple(range(0, 80))
VAL_FACES: tuple[int, ...] = tuple(range(80, 90))
TEST_FACES: tuple[int, ...] = tuple(range(90, 100))
FACE_SIZE = 25  # the faces' native size

_IMAGE_SPLITS = {"train": TRAIN_IMAGES, "val": VAL_IMAGES, "test": TEST_IMAGES}
_FACE_SPLITS = {"train": TRAIN_FACES, "val": VAL_FACES, "test": TEST_FACES}
DEFAULT_PATCH = {"images": 64, "faces": FACE_SIZE}
# redraws of a patch position below min_std before giving up
_MAX_REDRAWS = 200


def _skimage_data():
    try:
        import skimage.data
    except ModuleNotFoundError as err:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "dtwin.data.images needs scikit-image (pip install scikit-image; it is in dtwin's dev extra)"
        ) from err
    return skimage.data


def _to_gray(array: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    if array.ndim == 3:
        return rgb2gray(array[..., :3])
    return img_as_float(array)


@functools.cache
def _image(name: str) -> Tensor:
    data = _skimage_data()
    if name == "motorcycle":
        array = data.stereo_motorcycle()[0]
    elif name in data.__all__ and name not in ("lfw_subset", "stereo_motorcycle"):
        array = getattr(data, name)()
    else:
        raise ValueError(f"load_image: {name!r} is not an image of skimage.data")
    gray = torch.from_numpy(np.ascontiguousarray(_to_gray(np.asarray(array)))).float().clamp_(0.0, 1.0)
    if gray.dim() != 2:
        raise ValueError(f"load_image: {name!r} is not a 2D image (shape {tuple(gray.shape)})")
    return gray


def load_image(name: str) -> Tensor:
    """The skimage.data image ``name`` in grayscale: Tensor[H, W] float32 in [0, 1] (a copy).
    ``'motorcycle'`` is the left view of ``stereo_motorcycle()``. Read once per process."""
    return _image(name).clone()


@functools.lru_cache(maxsize=1)
def _faces() -> Tensor:
    from skimage.util import img_as_float

    faces = img_as_float(np.asarray(_skimage_data().lfw_subset()))[:100]
    return torch.from_numpy(np.ascontiguousarray(faces)).float().clamp_(0.0, 1.0)


def load_face(index: int | list[int] | Tensor) -> Tensor:
    """Faces of ``skimage.data.lfw_subset()`` (0..99): Tensor[25, 25] for one index,
    Tensor[N, 25, 25] for several; float32 in [0, 1] (a copy)."""
    return _faces()[index].clone()


class ImagePatchesDataModule(SplitDataModule):
    """Grayscale patches of real images (or whole LFW faces), split by source image, with their
    noisy measurements through a DRIP forward operator; see the module's docstring for the
    samples' keys and the image lists.

    Args:
        source: ``'images'`` (patches of the skimage.data images) or ``'faces'`` (whole LFW faces).
        patch_size: P, the side of the square patches (default 64 for images, 25 for faces). For
            images, at most the smaller side of the smallest image (172, of ``text``); for
            faces, any P >= 1 (the faces are resized to P x P).
        n_train, n_val, n_test: samples per split (n_train >= 1; n_val, n_test >= 0; default
            2000 / 200 / 200 for images, the split's faces 80 / 10 / 10 for faces).
        operator: None (clean patches only), or ``'blur'``, ``'inpainting'``, ``'tomography'``:
            the forward operator A for P x P images, built by
            :func:`dtwin.sim.imaging.make_operator` and exposed as ``dm.operator``.
        operator_args: keyword arguments of the operator's class (e.g. ``{'sigma': 2.0}`` for
            blur, ``{'observed': 0.11, 'seed': 0}`` for inpainting, ``{'n_angles': 18,
            'angle_range': [0, 180]}`` for tomography).
        noise: the noise level, a fraction of the mean |A x| of each sample (0.01 = 1%; the DRIP
            paper trains at 10-15%); >= 0. Used only with an operator.
        min_std: patches (images source) whose pixel std is below this are redrawn at another
            position (0 keeps every draw); >= 0.
        seed: fixes the positions and the noise (an integer >= 0).
        batch_size: samples per batch (>= 1; training batches are shuffled).
        num_workers: DataLoader workers (>= 0).

    Attributes:
        operator: the LinearOperator (float64; share it with the model) or None; patch_size;
        source; sizes: the samples per split; sources: the names of all images (or faces,
        ``'lfw_subset[i]'``) of the source, which the samples' 'image' key indexes; datasets:
        the splits after :meth:`setup`.
    """

    def __init__(
        self,
        source: str = "images",
        patch_size: int | None = None,
        n_train: int | None = None,
        n_val: int | None = None,
        n_test: int | None = None,
        operator: str | None = None,
        operator_args: dict[str, Any] | None = None,
        noise: float = 0.01,
        min_std: float = 0.0,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if source not in SOURCES:
            raise ValueError(f"{owner}: source must be one of {list(SOURCES)}, got {source!r}")
        if patch_size is None:
            patch_size = DEFAULT_PATCH[source]
        faces = source == "faces"
        default_n = (
            {s: len(_FACE_SPLITS[s]) for s in SPLITS} if faces else dict(train=2000, val=200, test=200)
        )
        n_train = default_n["train"] if n_train is None else n_train
        n_val = default_n["val"] if n_val is None else n_val
        n_test = default_n["test"] if n_test is None else n_test
        check_integers(
            owner,
            ("patch_size", patch_size, 1),
            ("n_train", n_train, 1),
            ("n_val", n_val, 0),
            ("n_test", n_test, 0),
            ("seed", seed, 0),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        )
        for arg, value in (("noise", noise), ("min_std", min_std)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                what = " (a fraction of the mean |A x|: 0.01 = 1%)" if arg == "noise" else ""
                raise ValueError(f"{owner}: {arg} must be a finite number >= 0{what}, got {value!r}")
        if operator is not None and operator not in OPERATORS:
            raise ValueError(
                f"{owner}: operator must be None or one of {sorted(OPERATORS)}, got {operator!r}"
            )
        if operator_args is not None and not isinstance(operator_args, dict):
            raise ValueError(
                f"{owner}: operator_args must be a dict of keyword arguments or None, "
                f"got {type(operator_args).__name__}"
            )
        if operator is None and operator_args:
            raise ValueError(f"{owner}: operator_args {operator_args} given without an operator")
        self.save_hyperparameters()
        self.source, self.patch_size = source, patch_size
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}  # samples per split
        self.sources: list[str] = (
            [f"lfw_subset[{i}]" for i in range(100)] if faces else [*TRAIN_IMAGES, *VAL_IMAGES, *TEST_IMAGES]
        )
        if not faces:
            for name in self.sources:
                H, W = _image(name).shape
                if patch_size > min(H, W):
                    raise ValueError(
                        f"{owner}: patch_size {patch_size} is larger than the image {name!r} "
                        f"({H} x {W}); the largest patch_size all images allow is "
                        f"{min(min(_image(n).shape) for n in self.sources)}"
                    )
        self.operator: LinearOperator | None = None
        if operator is not None:
            try:
                self.operator = make_operator(operator, (patch_size, patch_size), **(operator_args or {}))
            except TypeError as err:
                raise ValueError(
                    f"{owner}: operator_args {operator_args} do not fit the operator {operator!r} "
                    f"({OPERATORS[operator].__name__}): {err}"
                ) from err

    def images(self, split: str) -> list[str]:
        """The names of the images (or faces) of ``split`` ('train', 'val' or 'test')."""
        if split not in SPLITS:
            raise ValueError(f"{type(self).__name__}: split must be one of {SPLITS}, got {split!r}")
        if self.source == "faces":
            return [f"lfw_subset[{i}]" for i in _FACE_SPLITS[split]]
        return list(_IMAGE_SPLITS[split])

    def _generators(self, split: str) -> tuple[torch.Generator, torch.Generator]:
        base = 6 * self.hparams.seed + 2 * SPLITS.index(split)
        return torch.Generator().manual_seed(base), torch.Generator().manual_seed(base + 1)

    def _patches(self, split: str, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(x Tensor[n, 1, P, P], image index Tensor[n], position Tensor[n, 2]) of one split."""
        P = self.patch_size
        names = self.images(split)
        image = torch.arange(n) % len(names)
        position = torch.zeros(n, 2, dtype=torch.int64)
        x = torch.empty(n, 1, P, P)
        if self.source == "faces":
            index = torch.tensor(_FACE_SPLITS[split], dtype=torch.int64)[image]
            faces = _faces()[index][:, None]
            if P != FACE_SIZE and n:
                faces = F.interpolate(
                    faces, size=(P, P), mode="bilinear", align_corners=False, antialias=True
                )
            return faces.clamp(0.0, 1.0), index, position
        # the positions of all samples are drawn first (one stream), so they do not depend on
        # min_std's redraws; redraws continue the stream, image by image
        pending = []
        for k, name in enumerate(names):
            img = _image(name)
            H, W = img.shape
            rows = torch.nonzero(image == k).flatten()
            top = torch.randint(H - P + 1, (rows.numel(),), generator=generator)
            left = torch.randint(W - P + 1, (rows.numel(),), generator=generator)
            position[rows] = torch.stack((top, left), 1)
            pending.append((name, img, rows))
        min_std = self.hparams.min_std
        for name, img, rows in pending:
            patches = img.unfold(0, P, 1).unfold(1, P, 1)  # a view [H - P + 1, W - P + 1, P, P]
            top, left = position[rows, 0], position[rows, 1]
            out = patches[top, left]
            bad = out.flatten(1).std(1) < min_std if min_std > 0 else torch.zeros(len(rows), dtype=torch.bool)
            tries = 0
            while bool(bad.any()):
                tries += 1
                if tries > _MAX_REDRAWS:
                    raise ValueError(
                        f"{type(self).__name__}: min_std {min_std} is too high for the image {name!r}: "
                        f"{int(bad.sum())} of its patches were still below it after {_MAX_REDRAWS} redraws"
                    )
                m = int(bad.sum())
                top[bad] = torch.randint(patches.shape[0], (m,), generator=generator)
                left[bad] = torch.randint(patches.shape[1], (m,), generator=generator)
                out[bad] = patches[top[bad], left[bad]]
                bad = out.flatten(1).std(1) < min_std
            position[rows] = torch.stack((top, left), 1)
            x[rows, 0] = out
        return x, image + self.sources.index(names[0]), position

    def generate(self, split: str) -> dict[str, Tensor]:
        """The tensors of one split (uncached): 'x' [n, 1, P, P], 'image' [n], 'position' [n, 2],
        and with an operator 'y' [n, *out_shape], 'sigma' [n]; see the module's docstring."""
        if split not in SPLITS:
            raise ValueError(f"{type(self).__name__}: split must be one of {SPLITS}, got {split!r}")
        n = self.sizes[split]
        positions, noise = self._generators(split)
        x, image, position = self._patches(split, n, positions)
        out = {"x": x.contiguous(), "image": image, "position": position}
        if self.operator is not None:
            if n == 0:
                out["y"] = torch.empty(0, *self.operator.out_shape)
                out["sigma"] = torch.empty(0)
            else:
                with torch.no_grad():
                    clean = self.operator(x.double())
                    y, sigma = add_noise(clean, float(self.hparams.noise), generator=noise)
                out["y"], out["sigma"] = y.float(), sigma.float()
        return out

    def make_split(self, split: str) -> TensorDictDataset:
        return TensorDictDataset(self.generate(split))

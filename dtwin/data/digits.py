"""Synthetic digits rendered from the fonts matplotlib ships, and the real digits of scikit-learn
(the UCI optical handwritten digits), in the same 8x8 format: the synthetic-to-real data set of
the SMCAE experiment (SPECS.md section 4).

UCI's format: a 32x32 binary bitmap of the digit, size-normalised, cut into 4x4 blocks whose
on-pixels are counted, giving 8x8 integers in 0..16. The synthetic digits go through the same
steps after a random affine jitter (rotation, shear, scale, shift), a random stroke width and a
random blur of the rendered glyph.
"""

from __future__ import annotations

import math
import os
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from dtwin.data.base import cached

__all__ = ["DigitsSyn2RealDataModule", "PairedDigits", "digit_fonts", "load_real_digits", "render_digits"]

#: font files of matplotlib whose glyphs at '0'..'9' are not usable digits: symbol fonts, the
#: fallback font, and cmmi10 (old-style numerals of mixed heights); fonts without the glyphs at
#: all are found by their character map
_SKIP_FONTS = ("LastResort", "cmex10", "cmsy10", "cmmi10")
CANVAS = 64  # the canonical glyph image, before jitter
FILL = 0.95  # the glyph's longer side over the canvas: UCI's digits span the frame's height
GRID = 32  # UCI's bitmap


def digit_fonts() -> list[str]:
    """Paths of the TrueType fonts in matplotlib's font folder that render the ten digits."""
    import matplotlib
    from matplotlib.ft2font import FT2Font

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    paths = sorted(
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f.endswith(".ttf") and not f.startswith(_SKIP_FONTS)
    )
    return [p for p in paths if all(FT2Font(p).get_char_index(ord(str(d))) for d in range(10))]


def _glyph(path: str, digit: int) -> Tensor:
    """The digit of a font as a CANVAS x CANVAS image in [0, 1], its bounding box scaled to fill a
    centred square of FILL x CANVAS (aspect ratio kept), as UCI's size normalisation."""
    from matplotlib.ft2font import FT2Font

    font = FT2Font(path)
    font.set_size(96, 72)
    font.set_text(str(digit), 0.0)
    font.draw_glyphs_to_bitmap(antialiased=True)
    img = torch.tensor(font.get_image(), dtype=torch.float32) / 255.0
    rows, cols = torch.nonzero(img > 0.1, as_tuple=True)
    if rows.numel() == 0:
        raise ValueError(f"digits: the font {path} renders no glyph for {digit}")
    img = img[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = img.shape
    scale = FILL * CANVAS / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    img = F.interpolate(img[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    canvas = torch.zeros(CANVAS, CANVAS)
    top, left = (CANVAS - size[0]) // 2, (CANVAS - size[1]) // 2
    canvas[top : top + size[0], left : left + size[1]] = img.clamp(0, 1)
    return canvas


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur every image [N, 1, H, W] with its own sigma (pixels; 0 = none), a 5x5 kernel."""
    r = torch.arange(-2, 3, dtype=x.dtype)
    s = sigma.clamp_min(1e-3)[:, None]
    k1 = torch.exp(-0.5 * (r[None, :] / s) ** 2)
    k1 = k1 / k1.sum(1, keepdim=True)
    kernel = (k1[:, :, None] * k1[:, None, :])[:, None]  # [N, 1, 5, 5]
    out = F.conv2d(x.transpose(0, 1), kernel, padding=2, groups=x.shape[0]).transpose(0, 1)
    return out


def render_digits(
    n_per_class: int,
    generator: torch.Generator,
    *,
    rotation: float = 12.0,
    shear: float = 0.25,
    scale: tuple[float, float] = (0.9, 1.1),
    shift: float = 0.08,
    stroke: tuple[int, int] = (-1, 3),
    blur: float = 1.0,
    fonts: list[str] | None = None,
) -> tuple[Tensor, Tensor]:
    """Synthetic digits in UCI's 8x8 format.

    Args:
        n_per_class: samples per digit (fonts drawn uniformly).
        generator: the random source (fixes the set).
        rotation: the largest rotation (degrees); shear: the largest shear; scale: the range of
            the scale factor; shift: the largest shift (fraction of the frame).
        stroke: the range [lo, hi) of the stroke change, in pixels of the CANVAS image (negative
            thins, positive thickens); the default matches the mean ink of the real digits
            (4.6 against 4.9 of 16 per block).
        blur: the largest Gaussian blur sigma, in pixels of the 32x32 bitmap.
        fonts: font files (default :func:`digit_fonts`).

    Returns:
        (features Tensor[10 n, 64] of integers 0..16 as float32, labels Tensor[10 n] int64)
    """
    if n_per_class < 1:
        raise ValueError(f"render_digits: n_per_class must be >= 1, got {n_per_class}")
    fonts = digit_fonts() if fonts is None else fonts
    glyphs = torch.stack([torch.stack([_glyph(f, d) for f in fonts]) for d in range(10)])  # [10, F, C, C]
    n = 10 * n_per_class
    labels = torch.arange(10).repeat_interleave(n_per_class)
    font_idx = torch.randint(len(fonts), (n,), generator=generator)
    images = glyphs[labels, font_idx][:, None]  # [n, 1, C, C]

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    # stroke width: dilation (max pool) or erosion (min pool) by |s| pixels
    s = torch.randint(stroke[0], stroke[1], (n,), generator=generator)
    for step in range(1, max(abs(stroke[0]), abs(stroke[1])) + 1):
        grow = F.max_pool2d(images, 3, 1, 1)
        shrink = -F.max_pool2d(-images, 3, 1, 1)
        images = torch.where((s >= step)[:, None, None, None], grow, images)
        images = torch.where((s <= -step)[:, None, None, None], shrink, images)
    # affine jitter, sampled straight onto the 32x32 grid (inverse map: output -> input coords)
    angle = uniform(-rotation, rotation) * math.pi / 180
    sh = uniform(-shear, shear)
    zoom = uniform(*scale)
    cos, sin = torch.cos(angle), torch.sin(angle)
    a = torch.stack([torch.stack([cos, -sin + sh * cos], -1), torch.stack([sin, cos + sh * sin], -1)], 1)
    theta = torch.cat(
        [
            a / zoom[:, None, None],
            torch.stack([uniform(-shift, shift), uniform(-shift, shift)], 1)[..., None],
        ],
        2,
    )
    grid = F.affine_grid(theta, [n, 1, GRID, GRID], align_corners=False)
    bitmaps = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    bitmaps = _gaussian_blur(bitmaps, uniform(0.0, blur))
    on = (bitmaps > 0.5).float()
    features = F.avg_pool2d(on, 4) * 16  # on-pixels per 4x4 block
    return features.reshape(n, 64).round(), labels


def load_real_digits() -> tuple[Tensor, Tensor]:
    """scikit-learn's digits (1797 UCI optical handwritten digits): (Tensor[N, 64] in 0..16, labels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return torch.tensor(digits.data, dtype=torch.float32), torch.tensor(digits.target, dtype=torch.int64)


PAIRINGS = ("random", "nearest")


class PairedDigits(Dataset):
    """Synthetic samples, each paired with a real sample of its class.

    ``pairing='random'`` (the authors'): a random real sample of the class, drawn afresh at every
    access; the squared-error optimum of the synthetic channel is then the class's real mean,
    whatever the synthetic input. ``'nearest'``: always the real sample of the class nearest to
    the synthetic one (Euclidean, over the features), so the target depends on the input.
    """

    def __init__(
        self, synthetic: Tensor, labels: Tensor, real: Tensor, real_labels: Tensor, pairing: str = "random"
    ) -> None:
        if pairing not in PAIRINGS:
            raise ValueError(f"PairedDigits: pairing must be one of {PAIRINGS}, got {pairing!r}")
        if synthetic.ndim != 2 or real.ndim != 2 or synthetic.shape[1] != real.shape[1]:
            raise ValueError(
                "PairedDigits: synthetic and real must be Tensor[N, D] with the same feature size D, got "
                f"synthetic {tuple(synthetic.shape)} and real {tuple(real.shape)}"
            )
        if labels.shape != synthetic.shape[:1] or real_labels.shape != real.shape[:1]:
            raise ValueError(
                f"PairedDigits: one label per sample expected, got {tuple(labels.shape)} labels for "
                f"{synthetic.shape[0]} synthetic and {tuple(real_labels.shape)} for {real.shape[0]} real"
            )
        syn_classes, real_classes = set(labels.tolist()), set(real_labels.tolist())
        if syn_classes != real_classes:
            raise ValueError(
                "PairedDigits: synthetic and real samples must cover the same classes; only synthetic: "
                f"{sorted(syn_classes - real_classes)}, only real: {sorted(real_classes - syn_classes)}"
            )
        self.synthetic, self.labels, self.real = synthetic, labels, real
        self.by_class = {c: torch.nonzero(real_labels == c).flatten() for c in real_classes}
        self.nearest = None
        if pairing == "nearest":
            d = torch.cdist(synthetic, real)
            d[labels[:, None] != real_labels[None, :]] = float("inf")
            self.nearest = d.argmin(1)

    def __len__(self) -> int:
        return self.synthetic.shape[0]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if self.nearest is not None:
            j = self.nearest[i]
        else:
            pool = self.by_class[int(self.labels[i])]
            j = pool[torch.randint(pool.numel(), ())]
        return {"x": self.synthetic[i], "real": self.real[j], "label": self.labels[i]}


class DigitsSyn2RealDataModule(L.LightningDataModule):
    """Synthetic digits (rendered from matplotlib's fonts) and real ones (scikit-learn's UCI
    digits), scaled to [0, 1], for learning from synthetic data with a few real samples.

    The real digits are split once by class (``data_seed``): ``test_fraction`` of each class is
    the held-out test set, never used for training; from the rest, ``k`` samples per class
    (drawn with ``seed``) are the real training samples. Training batches pair every synthetic
    sample with a real training sample of its class (``pairing``: a random one, or its nearest;
    see :class:`PairedDigits`):

        'x': Tensor[64], the synthetic sample; 'real': Tensor[64], a real sample of its class;
        'label': the class.

    The test set pairs a fresh synthetic set (another seed) with the held-out real digits.
    Attributes after ``setup``: ``synthetic``/``synthetic_labels``, ``real_train``/``real_train_labels``,
    ``real_test``/``real_test_labels`` (Tensor[N, 64] in [0, 1]), ``real_train_index``/``real_test_index``
    (their rows in scikit-learn's ``load_digits()``).

    Args:
        k: real training samples per class.
        n_synthetic_per_class: synthetic samples per class.
        seed: draws the k real samples and the synthetic set.
        data_seed: the real train/test split.
        test_fraction: share of each class held out.
        pairing: 'random' (the authors') or 'nearest', how training pairs are formed.
        batch_size, num_workers: DataLoader settings.
        cache_dir: where the rendered set is cached.
    """

    def __init__(
        self,
        k: int = 5,
        n_synthetic_per_class: int = 200,
        seed: int = 0,
        data_seed: int = 0,
        test_fraction: float = 0.5,
        batch_size: int = 100,
        num_workers: int = 0,
        cache_dir: str | None = None,
        pairing: str = "random",
    ) -> None:
        super().__init__()
        if pairing not in PAIRINGS:
            raise ValueError(f"DigitsSyn2RealDataModule: pairing must be one of {PAIRINGS}, got {pairing!r}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(
                f"DigitsSyn2RealDataModule: test_fraction must be in (0, 1), got {test_fraction}"
            )
        if k < 1 or n_synthetic_per_class < 1 or batch_size < 1:
            raise ValueError(
                "DigitsSyn2RealDataModule: k, n_synthetic_per_class and batch_size must be >= 1, got "
                f"{k}, {n_synthetic_per_class}, {batch_size}"
            )
        self.save_hyperparameters()
        self.grid_label, self.target_label = "pixel", "ink (0..1)"

    def _synthetic(self, n: int, seed: int) -> dict[str, Tensor]:
        def make() -> dict[str, Tensor]:
            x, y = render_digits(n, torch.Generator().manual_seed(seed))
            return {"x": x, "y": y}

        return cached("digits-synthetic", {"n": n, "seed": seed, "version": 1}, make, self.hparams.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "real_test"):
            return
        hp = self.hparams
        real, labels = load_real_digits()
        split = torch.Generator().manual_seed(hp.data_seed)
        draw = torch.Generator().manual_seed(hp.seed)
        train_idx, test_idx = [], []
        for c in range(10):
            idx = torch.nonzero(labels == c).flatten()
            idx = idx[torch.randperm(idx.numel(), generator=split)]
            n_test = round(hp.test_fraction * idx.numel())
            pool = idx[n_test:]
            if hp.k > pool.numel():
                raise ValueError(
                    f"DigitsSyn2RealDataModule: k = {hp.k} real samples per class requested but class {c} "
                    f"has {pool.numel()} outside the test set (test_fraction = {hp.test_fraction})"
                )
            test_idx.append(idx[:n_test])
            train_idx.append(pool[torch.randperm(pool.numel(), generator=draw)[: hp.k]])
        train_idx, test_idx = torch.cat(train_idx), torch.cat(test_idx)
        self.real_train_index, self.real_test_index = train_idx, test_idx  # rows of load_digits()
        self.real_train, self.real_train_labels = real[train_idx] / 16, labels[train_idx]
        self.real_test, self.real_test_labels = real[test_idx] / 16, labels[test_idx]
        syn = self._synthetic(hp.n_synthetic_per_class, hp.seed)
        self.synthetic, self.synthetic_labels = syn["x"] / 16, syn["y"]
        held = self._synthetic(max(1, len(test_idx) // 10), 10_000 + hp.seed)
        self.test_synthetic, self.test_synthetic_labels = held["x"] / 16, held["y"]

    def train_dataloader(self) -> DataLoader:
        data = PairedDigits(
            self.synthetic,
            self.synthetic_labels,
            self.real_train,
            self.real_train_labels,
            pairing=self.hparams.pairing,
        )
        return DataLoader(
            data, batch_size=self.hparams.batch_size, shuffle=True, num_workers=self.hparams.num_workers
        )

    def test_dataloader(self) -> DataLoader:
        data = PairedDigits(
            self.test_synthetic, self.test_synthetic_labels, self.real_test, self.real_test_labels
        )
        return DataLoader(data, batch_size=self.hparams.batch_size, num_workers=self.hparams.num_workers)

    def real_sets(self) -> dict[str, Any]:
        """The arrays a classifier experiment needs, as numpy (features in [0, 1])."""
        return {
            name: getattr(self, name).numpy()
            for name in (
                "synthetic",
                "synthetic_labels",
                "real_train",
                "real_train_labels",
                "real_test",
                "real_test_labels",
            )
        }

"""The synthetic-to-real digits: fonts, rendering in UCI's format, the data module's split and
pairing, and its errors on bad input."""

from __future__ import annotations

import os

import pytest
import torch

from dtwin import registry
from dtwin.data.digits import (
    DigitsSyn2RealDataModule,
    PairedDigits,
    digit_fonts,
    load_real_digits,
    render_digits,
)


def test_fonts_are_matplotlibs_that_render_digits():
    fonts = digit_fonts()
    names = {os.path.basename(f) for f in fonts}
    assert len(fonts) >= 10 and "DejaVuSans.ttf" in names and "DejaVuSerif.ttf" in names
    assert not any(n.startswith(("LastResort", "cmex10")) for n in names)


def test_rendered_digits_have_ucis_format_and_ink():
    x, y = render_digits(30, torch.Generator().manual_seed(0))
    assert x.shape == (300, 64) and y.tolist() == [d for d in range(10) for _ in range(30)]
    assert torch.equal(x, x.round()) and x.min() >= 0 and x.max() <= 16
    real, _ = load_real_digits()
    # the stroke default matches the real digits' mean ink (4.9 of 16 per block) within 1
    assert abs(x.mean().item() - real.mean().item()) < 1.0
    again, _ = render_digits(30, torch.Generator().manual_seed(0))
    other, _ = render_digits(30, torch.Generator().manual_seed(1))
    assert torch.equal(x, again) and not torch.equal(x, other)


def test_synthetic_digits_teach_a_classifier_about_real_ones():
    """Trained on synthetic digits alone, logistic regression reads real digits far above chance
    (0.64 measured with 200 per class): the rendering is digit-like, with a gap left to close."""
    from sklearn.linear_model import LogisticRegression

    x, y = render_digits(60, torch.Generator().manual_seed(0))
    real, labels = load_real_digits()
    score = LogisticRegression(max_iter=2000).fit(x / 16, y).score(real / 16, labels)
    assert 0.4 < score < 0.95


def test_datamodule_split_and_pairing(tmp_path):
    dm = DigitsSyn2RealDataModule(k=3, n_synthetic_per_class=20, seed=1, cache_dir=str(tmp_path))
    dm.setup()
    assert registry.load("datamodules", "digits_syn2real") is DigitsSyn2RealDataModule
    assert torch.bincount(dm.real_train_labels, minlength=10).tolist() == [3] * 10
    assert not set(dm.real_train_index.tolist()) & set(dm.real_test_index.tolist())
    assert abs(len(dm.real_test_index) - 1797 / 2) <= 10
    for t in (dm.synthetic, dm.real_train, dm.real_test):
        assert t.shape[1] == 64 and t.min() >= 0 and t.max() <= 1
    batch = next(iter(dm.train_dataloader()))
    real_rows = {tuple(r.tolist()): int(c) for r, c in zip(dm.real_train, dm.real_train_labels, strict=True)}
    for r, c in zip(batch["real"], batch["label"], strict=True):
        assert real_rows[tuple(r.tolist())] == int(c)  # the target is a real sample of the same class
    test = next(iter(dm.test_dataloader()))
    test_rows = {tuple(r.tolist()) for r in dm.real_test}
    assert all(tuple(r.tolist()) in test_rows for r in test["real"])
    # the same seeds give the same split; another seed draws other real training samples
    same = DigitsSyn2RealDataModule(k=3, n_synthetic_per_class=20, seed=1, cache_dir=str(tmp_path))
    other = DigitsSyn2RealDataModule(k=3, n_synthetic_per_class=20, seed=2, cache_dir=str(tmp_path))
    same.setup(), other.setup()
    assert torch.equal(same.real_train_index, dm.real_train_index)
    assert torch.equal(other.real_test_index, dm.real_test_index)
    assert not torch.equal(other.real_train_index, dm.real_train_index)


def test_k_larger_than_the_real_pool_is_an_error(tmp_path):
    dm = DigitsSyn2RealDataModule(k=120, n_synthetic_per_class=2, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"k = 120 .* class \d has \d+ outside the test set"):
        dm.setup()
    with pytest.raises(ValueError, match="k, n_synthetic_per_class and batch_size must be >= 1"):
        DigitsSyn2RealDataModule(k=0)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        DigitsSyn2RealDataModule(test_fraction=1.0)


def test_paired_digits_rejects_mismatched_sets():
    syn, labels = torch.rand(20, 64), torch.arange(10).repeat(2)
    with pytest.raises(ValueError, match=r"same feature size D, got synthetic \(20, 64\) and real \(20, 49"):
        PairedDigits(syn, labels, torch.rand(20, 49), labels)
    with pytest.raises(ValueError, match=r"only synthetic: \[9\], only real: \[\]"):
        PairedDigits(syn, labels, torch.rand(18, 64), labels[labels != 9])
    with pytest.raises(ValueError, match=r"only synthetic: \[\], only real: \[10\]"):
        PairedDigits(syn, labels, torch.rand(21, 64), torch.cat([labels, torch.tensor([10])]))
    with pytest.raises(ValueError, match="one label per sample"):
        PairedDigits(syn, labels[:5], syn, labels)
    with pytest.raises(ValueError, match=r"pairing must be one of \('random', 'nearest'\), got 'closest'"):
        PairedDigits(syn, labels, syn, labels, pairing="closest")
    with pytest.raises(ValueError, match="pairing must be one of"):
        DigitsSyn2RealDataModule(pairing="closest")


def test_nearest_pairing_is_the_nearest_real_sample_of_the_class():
    g = torch.Generator().manual_seed(0)
    syn, labels = torch.rand(40, 64, generator=g), torch.arange(10).repeat(4)
    real, real_labels = torch.rand(30, 64, generator=g), torch.arange(10).repeat(3)
    data = PairedDigits(syn, labels, real, real_labels, pairing="nearest")
    for i in range(len(data)):
        item = data[i]
        same = torch.nonzero(real_labels == labels[i]).flatten()
        best = same[torch.cdist(syn[i : i + 1], real[same]).argmin()]
        assert torch.equal(item["real"], real[best]) and torch.equal(data[i]["real"], item["real"])
    # the nearest of all real samples is often of another class: the pairing stays within the class
    anyclass = torch.cdist(syn, real).argmin(1)
    assert (real_labels[anyclass] != labels).any()

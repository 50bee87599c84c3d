"""Batched crop/flip against torchvision's per-image transforms, and the per-epoch RNG streams."""

from __future__ import annotations

import torch
import torchvision.transforms.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from data.augment import CropFlipParams, crop_flip, draw_crop_flip, random_crop_flip
from data.rng import AUGMENT, SHUFFLE, epoch_generator, epoch_permutation, epoch_seed

FAST = settings(max_examples=40, deadline=None)


@st.composite
def batches_and_params(draw, padding: int = 4):
    n = draw(st.integers(1, 6))
    c = draw(st.sampled_from([1, 3]))
    h = draw(st.integers(1, 12))
    w = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    offsets = st.integers(0, 2 * padding)
    top = torch.tensor(draw(st.lists(offsets, min_size=n, max_size=n)), dtype=torch.int64)
    left = torch.tensor(draw(st.lists(offsets, min_size=n, max_size=n)), dtype=torch.int64)
    flip = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=torch.bool)
    return x, CropFlipParams(top, left, flip)


def torchvision_crop_flip(image: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """What RandomCrop(size, padding) then RandomHorizontalFlip do to one image, given their draws."""
    h, w = image.shape[-2:]
    out = TF.crop(TF.pad(image, [padding], fill=0), top, left, h, w)
    return TF.hflip(out) if flip else out


@FAST
@given(batches_and_params())
def test_batch_crop_flip_equals_torchvision_per_image(case):
    x, params = case
    out = crop_flip(x, params, padding=4)
    assert out.dtype == x.dtype and out.shape == x.shape
    for i in range(x.shape[0]):
        expected = torchvision_crop_flip(
            x[i], int(params.top[i]), int(params.left[i]), bool(params.flip[i]), 4
        )
        assert torch.equal(out[i], expected)


@FAST
@given(batches_and_params(), st.integers(0, 3))
def test_centre_crop_without_flip_is_identity(case, padding):
    x, _ = case
    n = x.shape[0]
    centre = torch.full((n,), padding, dtype=torch.int64)
    assert torch.equal(
        crop_flip(x, CropFlipParams(centre, centre, torch.zeros(n, dtype=torch.bool)), padding), x
    )


@FAST
@given(batches_and_params())
def test_flip_twice_is_identity(case):
    x, params = case
    n = x.shape[0]
    centre = torch.full((n,), 4, dtype=torch.int64)
    flip_only = CropFlipParams(centre, centre, params.flip)
    assert torch.equal(crop_flip(crop_flip(x, flip_only), flip_only), x)
    flipped = crop_flip(x, flip_only)
    assert torch.equal(flipped[params.flip], x[params.flip].flip(-1))


def test_crop_pads_with_zeros():
    x = torch.full((1, 1, 4, 4), 7, dtype=torch.uint8)
    corner = CropFlipParams(torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    out = crop_flip(x, corner, padding=2)[0, 0]
    assert (out[:2] == 0).all() and (out[:, :2] == 0).all() and (out[2:, 2:] == 7).all()


def test_crop_flip_works_on_float_batches():
    x = torch.randn(3, 2, 5, 5)
    params = CropFlipParams(
        torch.tensor([0, 4, 8]), torch.tensor([8, 4, 0]), torch.tensor([True, False, True])
    )
    out = crop_flip(x, params)
    for i in range(3):
        expected = torchvision_crop_flip(
            x[i], int(params.top[i]), int(params.left[i]), bool(params.flip[i]), 4
        )
        assert torch.equal(out[i], expected)


def test_drawn_parameters_cover_every_offset_and_both_flips():
    params = draw_crop_flip(4000, 4, epoch_generator(0, 0, AUGMENT))
    assert set(params.top.tolist()) == set(range(9)) == set(params.left.tolist())
    assert 0.45 < params.flip.float().mean().item() < 0.55


def test_random_crop_flip_is_deterministic_per_generator_seed():
    x = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    a = random_crop_flip(x, epoch_generator(3, 1, AUGMENT))
    b = random_crop_flip(x, epoch_generator(3, 1, AUGMENT))
    c = random_crop_flip(x, epoch_generator(3, 2, AUGMENT))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@FAST
@given(st.integers(1, 300), st.integers(0, 2**40), st.integers(0, 1000))
def test_shuffle_is_a_permutation_of_all_indices(n, seed, epoch):
    order = epoch_permutation(n, seed, epoch)
    assert order.dtype == torch.int64
    assert torch.equal(order.sort().values, torch.arange(n))
    assert torch.equal(order, epoch_permutation(n, seed, epoch))


def test_shuffle_depends_on_seed_and_epoch_only():
    base = epoch_permutation(1000, 7, 3)
    torch.manual_seed(123)  # the global RNG must not matter
    torch.rand(10)
    assert torch.equal(base, epoch_permutation(1000, 7, 3))
    assert not torch.equal(base, epoch_permutation(1000, 7, 4))
    assert not torch.equal(base, epoch_permutation(1000, 8, 3))


def test_epoch_seeds_do_not_collide_across_neighbouring_seeds_epochs_and_streams():
    seeds = {epoch_seed(s, e, stream) for s in range(20) for e in range(20) for stream in (SHUFFLE, AUGMENT)}
    assert len(seeds) == 20 * 20 * 2
    assert all(0 <= s < 2**63 for s in seeds)

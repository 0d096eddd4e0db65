"""Properties every registered mixer must have, and the registry itself."""

import pytest
import torch

from pretrain.mixing import MIXERS, PAPER_ORDER, MixResult, make_mixer, mix_loss


def methods(*composites):
    """The registered methods whose ``composite`` is one of ``composites`` (a new method is
    selected by what it declares, never by a list of names here)."""
    return [name for name, cls in MIXERS.items() if cls.composite in composites]


# Every output pixel comes from the image or its partner (a graph cut: a convex mix of the two).
CUT_AND_PASTE = methods("paste", "graph_cut")
SINGLE_IMAGE = methods("identity", "single_image")


def build(name, seed=0, **kwargs):
    return make_mixer(name, generator=torch.Generator().manual_seed(seed), **kwargs)


@pytest.mark.parametrize("name", list(MIXERS))
def test_contract(name, model, make_batch):
    images, targets = make_batch(b=8, h=32, w=32)
    before = images.clone()
    result = build(name)(images, targets, model=model)
    assert isinstance(result, MixResult)
    assert result.images.shape == images.shape and result.images.dtype == images.dtype
    assert result.targets_a.dtype == torch.long and result.targets_b.dtype == torch.long
    assert result.targets_a.shape == (8,) and result.targets_b.shape == (8,)
    assert result.lam.shape == (8,) and result.lam.is_floating_point()
    assert ((result.lam >= 0) & (result.lam <= 1)).all()
    assert torch.equal(images, before), "the input batch must not be modified"
    assert torch.isfinite(mix_loss(model(result.images), result))
    if name in SINGLE_IMAGE:
        assert torch.equal(result.lam, torch.ones(8)) and torch.equal(result.targets_b, targets)


@pytest.mark.parametrize("name", list(MIXERS))
def test_seeded_determinism(name, model, make_batch):
    images, targets = make_batch(b=8)
    a = build(name, seed=3)(images, targets, model=model)
    b = build(name, seed=3)(images, targets, model=model)
    assert torch.equal(a.images, b.images) and torch.equal(a.lam, b.lam)
    assert torch.equal(a.targets_b, b.targets_b)


def constant_batch(b=12):
    """Constant images with distinct values: a mixed pixel's value says where it came from."""
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 32, 32).contiguous()
    return images, torch.arange(b), torch.rand(b, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", CUT_AND_PASTE)
def test_lam_is_true_pixel_ratio(name):
    images, targets, saliency = constant_batch()
    # Per-sample draws where a method offers them (HybridMix draws per pair by default).
    per_sample = "per_sample" in MIXERS[name].config_args
    result = (build(name, per_sample=True) if per_sample else build(name))(images, targets, saliency=saliency)
    for i in range(12):
        a, p = int(result.targets_a[i]), int(result.targets_b[i])
        if a == p:
            continue
        px = result.images[i, 0]
        from_a = torch.isclose(px, torch.tensor(float(a)), atol=1e-3).float().mean()
        from_b = torch.isclose(px, torch.tensor(float(p)), atol=1e-3).float().mean()
        if MIXERS[name].composite == "paste":  # a graph cut's mask has fractional levels (n_labels > 2)
            assert float(from_a + from_b) == pytest.approx(1.0, abs=1e-6), "pixels come from the pair only"
            assert float(result.lam[i]) == pytest.approx(float(from_a), abs=1e-6)
        # For every method the image is, pixel by pixel, a convex mix of the pair with weight lam.
        assert float(px.mean()) == pytest.approx(float(result.lam[i]) * a + (1 - float(result.lam[i])) * p, abs=1e-3)


def test_mixup_lam_is_mixing_weight():
    images, targets, _ = constant_batch()
    result = build("mixup", per_sample=True)(images, targets)
    for i in range(12):
        lam, a, p = float(result.lam[i]), int(result.targets_a[i]), int(result.targets_b[i])
        assert torch.allclose(result.images[i], torch.full_like(result.images[i], lam * a + (1 - lam) * p), atol=1e-5)


@pytest.mark.parametrize("name", [n for n in MIXERS if MIXERS[n].needs_saliency])
def test_needs_saliency_or_model(name, make_batch):
    with pytest.raises(ValueError, match="needs a saliency map"):
        build(name)(*make_batch())


@pytest.mark.parametrize("name", list(MIXERS))
def test_bad_inputs(name, model, make_batch):
    images, targets = make_batch()
    mixer = build(name)
    with pytest.raises(ValueError, match="images: expected a 4-D tensor"):
        mixer(images[0], targets, model=model)
    with pytest.raises(ValueError, match="targets: batch size"):
        mixer(images, targets[:3], model=model)
    with pytest.raises(ValueError, match="targets: expected dtype torch.long"):
        mixer(images, targets.float(), model=model)
    if MIXERS[name].needs_saliency:
        with pytest.raises(ValueError, match="saliency: expected shape"):
            mixer(images, targets, saliency=torch.rand(8, 16, 16))


@pytest.mark.parametrize("name", [n for n in MIXERS if MIXERS[n].needs_saliency])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_saliency_is_refused(name, bad, make_batch):
    images, targets = make_batch()
    saliency = torch.rand(8, 32, 32)
    saliency[3, 5, 7] = bad
    with pytest.raises(
        ValueError, match=r"saliency: not finite \(NaN or Inf\) for 1 of 8 samples \(batch positions \[3\]\)"
    ):
        build(name)(images, targets, saliency=saliency)


def test_registry_holds_the_papers_methods_first():
    assert len(PAPER_ORDER) == 14 and list(MIXERS)[:14] == list(PAPER_ORDER)
    for name, cls in MIXERS.items():
        assert cls.name == name and cls.__doc__, f"{name}: registered under its name, with a docstring"


def test_register_refuses_an_unknown_composite():
    from pretrain.mixing.base import Mixer, register

    class Odd(Mixer):
        composite = "collage"

    with pytest.raises(ValueError, match="'odd': Odd.composite must be one of identity, single_image"):
        register("odd")(Odd)
    assert "odd" not in MIXERS


def test_build_mixer_errors():
    with pytest.raises(ValueError, match="unknown mixing method 'cutmx'; valid names: none, cutout"):
        make_mixer("cutmx")
    with pytest.raises(ValueError, match="mixing method 'cutmix': .*unexpected keyword argument 'alpha'"):
        make_mixer("cutmix", alpha=1.0)


def test_mix_loss_weights():
    logits = torch.randn(4, 5)
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([4, 3, 2, 1])
    lam = torch.tensor([1.0, 0.0, 0.5, 0.25])
    ce = torch.nn.functional.cross_entropy
    expected = (
        sum(
            float(lam[i]) * ce(logits[i : i + 1], a[i : i + 1])
            + (1 - float(lam[i])) * ce(logits[i : i + 1], b[i : i + 1])
            for i in range(4)
        )
        / 4
    )
    assert mix_loss(logits, MixResult(logits, a, b, lam)) == pytest.approx(float(expected), rel=1e-5)


PASTING = methods("single_image", "paste")


@pytest.mark.parametrize("name", PASTING)
def test_own_marks_exactly_the_untouched_pixels(name, make_batch):
    images, _ = make_batch(b=8)  # continuous random values: a moved pixel differs from the one it covers
    targets = torch.arange(8)  # distinct labels tell a sample paired with itself
    saliency = torch.rand(8, 32, 32, generator=torch.Generator().manual_seed(1))
    result = build(name, seed=2)(images, targets, saliency=saliency)
    assert result.own is not None and result.own.shape == (8, 32, 32) and result.own.dtype == torch.bool
    same = (result.images == images).all(dim=1)  # [B, H, W]
    assert torch.equal(same | ~result.own, torch.ones_like(same)), "an own pixel was changed"
    paired_with_other = result.targets_b != result.targets_a
    if MIXERS[name].composite == "paste":
        assert paired_with_other.any()
    else:
        paired_with_other[:] = True
    assert not (same & ~result.own)[paired_with_other].any(), "a pixel marked as not own is unchanged"


# A blend reports an own mask only after a saliency-guided single-image step (HybridMix v1).
@pytest.mark.parametrize(
    "name",
    [
        n
        for n in methods("identity", "blend", "graph_cut")
        if not (MIXERS[n].composite == "blend" and MIXERS[n].needs_saliency)
    ],
)
def test_own_is_none_for_blends_and_identity(name, make_batch):
    images, targets = make_batch(b=8)
    result = build(name)(images, targets, saliency=torch.rand(8, 32, 32))
    assert result.own is None


def test_hybridmix_v1_own_is_the_self_mix_mask(make_batch):
    images, targets = make_batch(b=8)
    result = build("hybridmix_v1")(images, targets, saliency=torch.rand(8, 32, 32))
    o = int(32 * 0.3)
    assert result.own is not None and bool(((~result.own).flatten(1).sum(1) == o * o).all())


def test_patch_ratio_methods_are_derived_from_the_config_keys():
    from pretrain.mixing import takes_patch_ratio

    # The SalfMix family and its ablations share MIX.R; the paper's other baselines do not.
    assert {n for n in PAPER_ORDER if takes_patch_ratio(n)} == {
        "cutout_saliency",
        "salfmix",
        "salfmix_random",
        "salfmix_nopool",
        "hybridmix_v1",
        "hybridmix_v2",
        "hybridmix_v3",
    }
    for name, cls in MIXERS.items():
        assert takes_patch_ratio(name) == ("r" in cls.config_keys), name

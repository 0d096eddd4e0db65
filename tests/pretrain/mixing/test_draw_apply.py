"""Every mixer split into host draws and device work: ``mixer(...) == apply(..., draw(...))``, the
draws reach the device in one copy and exactly, channels_last is kept, and ``Mixer.apply``
compiles whole (``fullgraph``) to the same result, except for a mixer that says ``runs_on_host``."""

import pytest
import torch

from pretrain.mixing import MIXERS, make_mixer
from pretrain.mixing.base import PairMixer, host_to_device


def batch(b=8, h=32, seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 3, h, h, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (b,), generator=g), torch.rand(b, h, h, generator=g)


def variants():
    """Every method with its defaults, plus each two-image method skipping half of its batches."""
    out = [(name, {}) for name in MIXERS]
    out += [(name, {"prob": 0.5}) for name, cls in MIXERS.items() if issubclass(cls, PairMixer)]
    return out


VARIANTS = variants()
IDS = [f"{name}{'-prob0.5' if kw else ''}" for name, kw in VARIANTS]


def same(a, b):
    fields = ("images", "targets_a", "targets_b", "lam", "own")
    return all(
        (getattr(a, f) is None and getattr(b, f) is None) or torch.equal(getattr(a, f), getattr(b, f)) for f in fields
    )


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_call_is_apply_of_draw(name, kw):
    x, y, s = batch()
    called = make_mixer(name, seed=5, **kw)
    split = make_mixer(name, seed=5, **kw)
    for _ in range(3):  # consecutive calls draw the same sequence
        sal = s if called.needs_saliency else None
        assert same(called(x, y, saliency=sal), split.apply(x, y, sal, split.draw(x.shape, x.device)))
    assert torch.equal(called.generator.get_state(), split.generator.get_state())


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_channels_last_in_channels_last_out(name, kw):
    x, y, s = batch()
    xl = x.contiguous(memory_format=torch.channels_last)
    a = make_mixer(name, seed=1, **kw)(x, y, saliency=s if MIXERS[name].needs_saliency else None)
    b = make_mixer(name, seed=1, **kw)(xl, y, saliency=s if MIXERS[name].needs_saliency else None)
    assert b.images.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a.images, b.images) and torch.equal(a.lam, b.lam)


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_apply_compiles_whole_and_equals_eager(name, kw):
    """``fullgraph=True``: any graph break (a host read, a Python draw) fails. The aot_eager backend
    checks what Dynamo and AOTAutograd trace; a slow test below runs Inductor's code on some."""
    mixer = make_mixer(name, seed=2, **kw)
    if mixer.runs_on_host:
        assert name == "puzzlemix"  # the graph cut: the only method left on the host
        return
    torch._dynamo.reset()
    compiled = torch.compile(mixer.apply, fullgraph=True, backend="aot_eager")
    x, y, s = batch(channels_last=True)
    for _ in range(2):
        draws = mixer.draw(x.shape, x.device)
        sal = s if mixer.needs_saliency else None
        assert same(mixer.apply(x, y, sal, draws), compiled(x, y, sal, draws))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["salfmix", "hybridmix_v3", "saliencymix", "resizemix"])
def test_inductor_code_equals_eager(name):
    mixer = make_mixer(name, seed=3)
    torch._dynamo.reset()
    compiled = torch.compile(mixer.apply, fullgraph=True)
    x, y, s = batch(channels_last=True)
    draws = mixer.draw(x.shape, x.device)
    assert same(mixer.apply(x, y, s, draws), compiled(x, y, s, draws))


def test_host_to_device_round_trip_is_exact():
    """The one packed float64 copy returns every draw bit for bit (checked through the packing on
    the CPU itself: on the CPU nothing is copied, so the packing is forced here)."""
    import pretrain.mixing.base as base

    g = torch.Generator().manual_seed(0)
    draws = {
        "u": torch.rand(7, generator=g),
        "perm": torch.randperm(9, generator=g),
        "flag": True,
        "nested": {"lam": torch.rand(3, dtype=torch.float64, generator=g), "mask": torch.rand(4, generator=g) > 0.5},
    }
    leaves = []
    base._tensors(draws, leaves)
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in leaves])
    parts = flat.split([t.numel() for t in leaves])
    back = base._rebuild(draws, iter([p.view(t.shape).to(t.dtype) for p, t in zip(parts, leaves)]))
    assert back["flag"] is True
    for a, b in (
        (draws["u"], back["u"]),
        (draws["perm"], back["perm"]),
        (draws["nested"]["lam"], back["nested"]["lam"]),
        (draws["nested"]["mask"], back["nested"]["mask"]),
    ):
        assert a.dtype == b.dtype and torch.equal(a, b)
    assert host_to_device(draws, torch.device("cpu")) is draws  # nothing to do on the CPU

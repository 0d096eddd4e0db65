"""The mixer contract shared by every method: inputs, result, loss, random draws.

A mixer is called as ``mixer(images, targets, model=None, saliency=None)`` and returns a
:class:`MixResult`. Training with it is::

    result = mixer(images, targets, model=model)       # before model.train() forward
    loss = mix_loss(model(result.images), result)

Every random draw goes through the mixer's own ``torch.Generator`` (``mixer.generator``), so a
seeded mixer is deterministic and its state can be checkpointed with ``get_state()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pretrain.mixing.saliency import gradient_saliency


@dataclass
class MixResult:
    """What a mixer returns: the mixed batch and its two-label targets.

    ``lam[i]`` is the weight of ``targets_a[i]``; ``1 - lam[i]`` the weight of ``targets_b[i]``.
    ``own[i]`` (bool [H, W], optional) marks the pixels of ``images[i]`` that still show sample
    i's own content at its own place (not pasted from its partner or from elsewhere in the image,
    not erased): the pixels whose input gradient describes sample i. ``None`` means every pixel
    (also for blends such as Mixup, where each pixel holds part of sample i's own content).
    """

    images: Tensor  # [B, C, H, W]
    targets_a: Tensor  # long [B]
    targets_b: Tensor  # long [B]
    lam: Tensor  # float [B], on the images' device
    own: Tensor | None = None  # bool [B, H, W]


def mix_loss(logits: Tensor, result: MixResult) -> Tensor:
    """``mean_i(lam_i * CE(logits_i, a_i) + (1 - lam_i) * CE(logits_i, b_i))``."""
    lam = result.lam.to(device=logits.device, dtype=torch.float32)
    ce_a = F.cross_entropy(logits.float(), result.targets_a, reduction="none")
    ce_b = F.cross_entropy(logits.float(), result.targets_b, reduction="none")
    return (lam * ce_a + (1.0 - lam) * ce_b).mean()


def check_batch(images: Tensor, targets: Tensor | None = None) -> None:
    """Raise ValueError unless ``images`` is [B, C, H, W] float and ``targets`` is long [B]."""
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images: expected a 4-D tensor [B, C, H, W], got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images: expected a floating-point tensor, got {images.dtype}")
    if images.shape[0] == 0:
        raise ValueError("images: the batch is empty")
    if targets is not None:
        if not isinstance(targets, Tensor) or targets.dim() != 1:
            shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
            raise ValueError(f"targets: expected a 1-D tensor of class indices [B], got {shape}")
        if targets.shape[0] != images.shape[0]:
            raise ValueError(f"targets: batch size {targets.shape[0]} does not match images' {images.shape[0]}")
        if targets.dtype != torch.long:
            raise ValueError(f"targets: expected dtype torch.long (class indices), got {targets.dtype}")


def check_pair(x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor) -> None:
    """Raise ValueError unless (x1, y1) and (x2, y2) are valid batches of the same shape."""
    check_batch(x1, y1)
    check_batch(x2, y2)
    if x1.shape != x2.shape:
        raise ValueError(f"x2: expected the shape of x1 {tuple(x1.shape)}, got {tuple(x2.shape)}")


class NonFiniteSaliencyError(ValueError):
    """A saliency map holds NaN or Inf (the model that produced it has gone non-finite)."""


def check_saliency(saliency: Tensor, images: Tensor) -> None:
    """Raise ValueError unless ``saliency`` is a finite [B, H, W] map matching ``images`` [B, C, H, W].

    A NaN or Inf map would be used silently otherwise: argmax and argmin both pick the NaN cell.
    The finiteness test reads one flag back from the device (a sync per batch, as the loss does).
    """
    b, _, h, w = images.shape
    if not isinstance(saliency, Tensor) or tuple(saliency.shape) != (b, h, w):
        shape = tuple(saliency.shape) if isinstance(saliency, Tensor) else type(saliency).__name__
        raise ValueError(f"saliency: expected shape {(b, h, w)} to match images {tuple(images.shape)}, got {shape}")
    finite = torch.isfinite(saliency).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise NonFiniteSaliencyError(
            f"saliency: not finite (NaN or Inf) for {len(bad)} of {b} samples (batch positions {bad[:8]})"
        )


def check_prob(name: str, value: float) -> float:
    """Return ``value`` as float if it lies in [0, 1], else raise ValueError naming ``name``."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}: expected a probability in [0, 1], got {value}")
    return float(value)


def check_positive(name: str, value: float) -> float:
    """Return ``value`` as float if it is > 0, else raise ValueError naming ``name``."""
    if not float(value) > 0.0:
        raise ValueError(f"{name}: expected a value > 0, got {value}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Random draws: made on the host from the mixer's own CPU torch.Generator (a seeded run draws the
# same numbers on every device; they are O(B) numbers), then moved to the images' device at once.
# ---------------------------------------------------------------------------------------------
#: A step's random draws: tensors and Python flags, possibly nested in dicts (see Mixer.draw).
Draws = dict[str, Any]


def uniform(size: int, generator: torch.Generator | None) -> Tensor:
    """``size`` float32 values uniform in [0, 1) drawn from ``generator`` (on the host)."""
    return torch.rand(size, generator=generator)


def permutation(n: int, generator: torch.Generator | None) -> Tensor:
    """A random permutation of ``range(n)`` (int64, on the host) drawn from ``generator``."""
    return torch.randperm(n, generator=generator)


def integers(high: int, size: int, generator: torch.Generator | None) -> Tensor:
    """``size`` int64 values uniform in [0, high) (on the host) drawn from ``generator``."""
    return torch.randint(high, (size,), generator=generator)


def beta(alpha: float, size: int, generator: torch.Generator | None) -> np.ndarray:
    """``size`` draws of Beta(alpha, alpha) as float64, seeded from ``generator``.

    torch's Beta/Gamma samplers take no generator, so one 63-bit seed is drawn from ``generator``
    and fed to numpy's PCG64: still a pure function of the generator's state.
    """
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return np.random.default_rng(seed).beta(alpha, alpha, size)


def rand(size: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """:func:`uniform` moved to ``device`` (a library helper; mixers draw with :meth:`Mixer.draw`)."""
    return host_to_device({"u": uniform(size, generator)}, device)["u"]


def _tensors(draws: Any, out: list[Tensor]) -> None:
    if isinstance(draws, Tensor):
        out.append(draws)
    elif isinstance(draws, dict):
        for value in draws.values():
            _tensors(value, out)


def _rebuild(draws: Any, moved: Iterator[Tensor]) -> Any:
    if isinstance(draws, Tensor):
        return next(moved)
    if isinstance(draws, dict):
        return {key: _rebuild(value, moved) for key, value in draws.items()}
    return draws


def host_to_device(draws: Draws, device: torch.device) -> Draws:
    """``draws`` with every tensor on ``device``, in ONE non-blocking host-to-device copy.

    On the CPU nothing is copied. Elsewhere the tensors are packed into one float64 buffer (pinned
    when CUDA is available, so the copy is asynchronous), copied, split and cast back: float32,
    float64, bool and int64 draws below 2**53 (indices, permutations) survive the round trip
    exactly, so the same generator state gives the same mixed batch on every device.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return draws
    leaves: list[Tensor] = []
    _tensors(draws, leaves)
    if not leaves:
        return draws
    flat = torch.cat([t.reshape(-1).to(torch.float64) for t in leaves])
    if torch.cuda.is_available():
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=True)
    parts = flat.split([t.numel() for t in leaves])
    moved = iter([part.view(t.shape).to(t.dtype) for part, t in zip(parts, leaves)])
    return _rebuild(draws, moved)


#: The values of :attr:`Mixer.composite`.
COMPOSITES = ("identity", "single_image", "paste", "blend", "graph_cut")


class Mixer:
    """Base class: validates inputs, resolves saliency, draws, and applies.

    A mixer is split in two so that a training step never waits for the host:

    - :meth:`draw` ``(shape, device)``: every random draw of one call, made on the host from the
      mixer's generator (:meth:`host_draws`, implemented by each method) and moved to ``device`` in
      one non-blocking copy (:func:`host_to_device`);
    - :meth:`apply` ``(images, targets, saliency, draws)``: the device work, a pure function of
      tensors with static shapes, no host read-back: ``torch.compile(mixer.apply, fullgraph=True)``
      takes it whole (unless ``runs_on_host``).

    ``mixer(images, targets, saliency=...)`` = ``apply(..., draw(...))`` after checking the inputs
    (and, for the library user's convenience, that the saliency is finite: one read-back).

    Each method declares what a training loop needs to know about it (class attributes, read by
    the trainer and the tools, never by the mixer):

    - ``needs_saliency`` and ``saliency_reduction``: whether ``apply`` takes a saliency map and the
      channel reduction of the input gradient it expects (``"max"`` for SalfMix's eq. 3, ``"rms"``
      for PuzzleMix);
    - ``pixel_saliency``: whether it reads the map pixel by pixel (not by pooled cells);
    - ``runs_on_host``: whether ``apply`` needs the host (PuzzleMix's graph cut): it then reads
      device data back and cannot be compiled;
    - ``start_epoch``: the first epoch (1-based) its method mixes by default;
    - ``composite``: what an output image is made of (the tests select methods on it):
      ``"identity"`` the input itself; ``"single_image"`` one image with regions moved or erased
      (lam 1, one label); ``"paste"`` pixels taken from the image or its partner, lam their
      ratio; ``"blend"`` a weighted sum of the two images, lam the weight; ``"graph_cut"`` a
      mask with fractional levels (PuzzleMix). ``MixResult.own`` is reported by the
      ``single_image`` and ``paste`` methods (and a blend after such a step: HybridMix v1);
    - ``config_args``: the constructor arguments that are the method's own hyperparameters; the
      config tree gets a node ``MIX.<NAME>`` (the registered name in capitals) with one key per
      argument, its default the constructor's (:meth:`config_defaults`), e.g. ``MIX.CUTMIX.BETA``;
    - ``config_keys``: constructor argument -> a dotted key outside that node it is read from
      (the SalfMix geometry ``MIX.N`` / ``MIX.R`` every SalfMix-based method shares, the data's
      ``AUG.MEAN``); arguments in neither keep their defaults.
    """

    name: str = ""
    needs_saliency: bool = False
    saliency_reduction: str = "max"
    pixel_saliency: bool = False
    runs_on_host: bool = False
    start_epoch: int = 1  # the baselines' official code mixes from the first epoch
    composite: str = "identity"
    config_args: tuple[str, ...] = ()
    config_keys: dict[str, str] = {}

    @classmethod
    def config_defaults(cls) -> dict[str, Any]:
        """``{arg: default}`` of :attr:`config_args`, read from the constructor's signature (one
        source of truth for the library and the config tree)."""
        params = inspect.signature(cls.__init__).parameters
        defaults = {}
        for arg in cls.config_args:
            if arg not in params or params[arg].default is inspect.Parameter.empty:
                raise TypeError(f"{cls.__name__}.config_args: {arg!r} is not a constructor argument with a default")
            defaults[arg] = params[arg].default
        return defaults

    def __init__(self, generator: torch.Generator | None = None, seed: int | None = None) -> None:
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.randint(2**62, (1,))) if seed is None else seed)
        self.generator = generator

    def check_input(self, h: int, w: int) -> None:
        """Raise ValueError (naming the argument) unless this mixer can mix ``h x w`` images; the
        trainer calls it once, before training, so a bad geometry fails before the first step."""

    def host_draws(self, shape: tuple[int, ...]) -> Draws:
        """Every random draw of one call on a batch of ``shape`` [B, C, H, W], from
        ``self.generator``, as host tensors and Python flags; implemented by each method."""
        return {}

    def draw(self, shape: Sequence[int], device: torch.device) -> Draws:
        """:meth:`host_draws` moved to ``device`` (one non-blocking copy)."""
        return host_to_device(self.host_draws(tuple(shape)), device)

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        """Mix a validated batch with the draws of :meth:`draw`; implemented by each method."""
        raise NotImplementedError

    def __call__(
        self,
        images: Tensor,
        targets: Tensor,
        model: torch.nn.Module | None = None,
        saliency: Tensor | None = None,
    ) -> MixResult:
        """Mix a batch. ``saliency`` [B, H, W] is used if given, else computed with ``model``."""
        check_batch(images, targets)
        if self.needs_saliency:
            if saliency is None:
                if model is None:
                    raise ValueError(f"{type(self).__name__} needs a saliency map: pass saliency=[B, H, W] or model=")
                saliency = gradient_saliency(model, images, targets, self.saliency_reduction)
            check_saliency(saliency, images)
        return self.apply(images, targets, saliency, self.draw(images.shape, images.device))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "generator")
        return f"{type(self).__name__}({params})"


def unmixed(images: Tensor, targets: Tensor, own: Tensor | None = None) -> MixResult:
    """The result of a single-image method or of a skipped mix: one label with weight 1."""
    lam = torch.ones(images.shape[0], device=images.device)
    return MixResult(images, targets, targets, lam, own)


def both_own(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """The pixels own in both masks (``None`` = all pixels)."""
    return b if a is None else a if b is None else a & b


class PairMixer(Mixer):
    """A two-image method: picks a partner per sample (a random permutation), then mixes the pairs.

    The pair step is split like the mixer: :meth:`pair_draws` (host) and :meth:`apply_pair`
    (device). ``mix_pair(x1, y1, x2, y2, s2)`` does both and is also what HybridMix uses on
    self-mixed images, with the partners it chose itself (``s2`` is the partners' saliency for
    methods that use it).
    """

    config_args: tuple[str, ...] = ("prob",)

    def __init__(self, prob: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prob = check_prob("prob", prob)

    def skips_batch(self) -> bool:
        """Whether this batch goes unmixed: the official loops draw one r ~ U(0, 1) per batch
        and mix only when r < prob (no draw is made when prob = 1). A host draw."""
        return self.prob < 1.0 and float(torch.rand(1, generator=self.generator)) >= self.prob

    def host_draws(self, shape: tuple[int, ...]) -> Draws:
        if self.skips_batch():
            return {"skip": True}
        return {"skip": False, "index": permutation(shape[0], self.generator), "pair": self.pair_draws(shape)}

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        if draws["skip"]:
            return unmixed(images, targets)
        index = draws["index"]
        partner_saliency = saliency[index] if saliency is not None else None
        return self.apply_pair(images, targets, images[index], targets[index], partner_saliency, draws["pair"])

    def pair_draws(self, shape: tuple[int, ...]) -> Draws:
        """The pair step's host draws for pairs of ``shape`` [B, C, H, W]; implemented by each method."""
        raise NotImplementedError

    def apply_pair(self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Tensor | None, draws: Draws) -> MixResult:
        """Mix each ``x1[i]`` with its partner ``x2[i]`` using ``draws``; implemented by each method."""
        raise NotImplementedError

    def mix_pair(self, x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, s2: Tensor | None = None) -> MixResult:
        """Mix each ``x1[i]`` with its partner ``x2[i]`` (checks, draws, applies)."""
        check_pair(x1, y1, x2, y2)
        return self.apply_pair(x1, y1, x2, y2, s2, host_to_device(self.pair_draws(tuple(x1.shape)), x1.device))


MixerFactory = Callable[..., Mixer]

#: Every registered method by name (see :func:`register`); ``pretrain.mixing`` orders it.
REGISTRY: dict[str, type[Mixer]] = {}


def register(name: str) -> Callable[[type[Mixer]], type[Mixer]]:
    """Class decorator: register a :class:`Mixer` subclass under ``name`` (its ``MIX.METHOD``)."""

    def add(cls: type[Mixer]) -> type[Mixer]:
        if name in REGISTRY and REGISTRY[name] is not cls:
            raise ValueError(f"mixing method {name!r} is registered twice ({REGISTRY[name].__name__}, {cls.__name__})")
        if cls.composite not in COMPOSITES:
            raise ValueError(
                f"mixing method {name!r}: {cls.__name__}.composite must be one of {', '.join(COMPOSITES)}, "
                f"got {cls.composite!r}"
            )
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


@register("none")
class NoMix(Mixer):
    """The baseline: images and labels pass through unchanged (lam = 1)."""

    def apply(self, images: Tensor, targets: Tensor, saliency: Tensor | None, draws: Draws) -> MixResult:
        return unmixed(images, targets)

"""Generated images with a learnable class structure, for demos and tests.

These are generated content, not a real dataset: each class is a coloured shape (disc, square,
triangle, ring, bar, cross) of a class-specific colour, at a random position and scale, on a
noisy textured background. Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

SHAPES = ("disc", "square", "triangle", "ring", "bar", "cross")


def _class_colour(label: int) -> np.ndarray:
    """A fixed, well-separated RGB colour per class (golden-angle hues)."""
    hue = (label * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    rgb = 1.0 - np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return 40.0 + 200.0 * rgb


def _shape_mask(shape: str, size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    if shape == "disc":
        return dy**2 + dx**2 <= radius**2
    if shape == "square":
        return (np.abs(dy) <= radius * 0.8) & (np.abs(dx) <= radius * 0.8)
    if shape == "triangle":
        return (dy <= radius * 0.7) & (dy >= -radius) & (np.abs(dx) <= (dy + radius) * 0.6)
    if shape == "ring":
        d2 = dy**2 + dx**2
        return (d2 <= radius**2) & (d2 >= (0.55 * radius) ** 2)
    if shape == "bar":
        return (np.abs(dy) <= radius * 0.3) & (np.abs(dx) <= radius)
    return ((np.abs(dy) <= radius * 0.25) & (np.abs(dx) <= radius)) | (
        (np.abs(dx) <= radius * 0.25) & (np.abs(dy) <= radius)
    )


def synthetic_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 RGB image [size, size, 3] of class ``label``."""
    background = rng.uniform(60, 190, 3) + rng.normal(0, 18, (size, size, 3))
    radius = rng.uniform(0.18, 0.32) * size
    cy, cx = rng.uniform(radius, size - radius, 2)
    mask = _shape_mask(SHAPES[label % len(SHAPES)], size, cy, cx, radius)
    colour = _class_colour(label) + rng.normal(0, 10, (size, size, 3))
    image = np.where(mask[..., None], colour, background)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_images(num: int, size: int = 64, num_classes: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``num`` generated images uint8 [N, size, size, 3] and their labels int64 [N]."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num) % num_classes
    images = np.stack([synthetic_image(int(y), size, rng) for y in labels])
    return images, labels.astype(np.int64)

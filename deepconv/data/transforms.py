"""Image transforms for ImageNet-style training and evaluation (AlexNet,
Krizhevsky et al. 2012, section 4.1; VGG, Simonyan & Zisserman 2015,
section 3.1).

Every transform works on one image: a float array (C, H, W), RGB, pixel
values on the 0..255 scale (as :class:`~deepconv.data.folder.ImageFolder` loads
them), and is called as ``transform(image, rng) -> image`` with ``rng`` a
``numpy.random.Generator``. Randomness comes only from ``rng``, so the same
generator state gives the same result; :func:`sample_rng` seeds one per
(seed, epoch, sample index), the scheme the data loader uses for batches.
Deterministic transforms ignore ``rng`` (it may be None).

Training, AlexNet: ``Compose(Rescale(256), CenterCrop(256), RandomCrop(227),
RandomHorizontalFlip(), PCAColor(*fit_pca_color(images)), SubtractMean(m))``.
VGG: ``Compose(ScaleJitter(256, 512), RandomCrop(224),
RandomHorizontalFlip(), PCAColor(...), SubtractMean(m))``.
"""

from __future__ import annotations

import numpy as np

from deepconv.nn.layer import check_int, check_real

__all__ = [
    "CenterCrop",
    "Compose",
    "PCAColor",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Rescale",
    "ScaleJitter",
    "SubtractMean",
    "crop",
    "fit_pca_color",
    "mean_rgb",
    "rescale",
    "sample_rng",
    "std_rgb",
]

PCA_COLOR_STD = 0.1  # AlexNet: alpha_i ~ N(0, 0.1)
PIXEL_MAX = 255.0  # images are on the 0..255 scale; the colour PCA works on 0..1


def sample_rng(seed, epoch, index) -> np.random.Generator:
    """The generator for sample ``index`` of ``epoch``:
    ``numpy.random.default_rng([seed, epoch, index])``, so a sample's
    augmentation does not depend on which worker or batch loads it."""
    return np.random.default_rng([check_int(seed, "seed", 0), check_int(epoch, "epoch", 0),
                                  check_int(index, "index", 0)])


def _image(image, name="image") -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"{name}: expected an image (C, H, W), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    return image


def _pil():
    from deepconv.data.folder import import_pillow

    return import_pillow()


def rescale(image, size) -> np.ndarray:
    """``image`` resized isotropically so that its smaller side is ``size``
    (the larger side rounded to the nearest pixel). Bilinear, with Pillow's
    antialiasing when shrinking; float32 result."""
    image = _image(image)
    size = check_int(size, "size")
    c, h, w = image.shape
    if h <= w:
        new_h, new_w = size, max(1, int(round(w * size / h)))
    else:
        new_h, new_w = max(1, int(round(h * size / w))), size
    if (new_h, new_w) == (h, w):
        return image.astype(np.float32, copy=True)
    Image = _pil()
    out = np.empty((c, new_h, new_w), np.float32)
    for ch in range(c):
        plane = Image.fromarray(np.ascontiguousarray(image[ch], dtype=np.float32), mode="F")
        out[ch] = np.asarray(plane.resize((new_w, new_h), Image.BILINEAR))
    return out


def crop(image, top, left, size) -> np.ndarray:
    """The ``size`` x ``size`` window of ``image`` at (``top``, ``left``)
    (a view); ValueError if it does not fit."""
    image = _image(image)
    h, w = image.shape[1:]
    if not (0 <= top <= h - size and 0 <= left <= w - size):
        raise ValueError(f"image: a {size}x{size} crop at ({top}, {left}) does not fit in {h}x{w}")
    return image[:, top:top + size, left:left + size]


def _check_fits(image, size):
    h, w = image.shape[1:]
    if h < size or w < size:
        raise ValueError(f"image: expected at least {size}x{size} for the crop, got {h}x{w}")


class Compose:
    """Applies ``transforms`` in order, passing each the same ``rng``."""

    def __init__(self, *transforms):
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}]: expected a callable, got {type(t).__name__}")
        self.transforms = tuple(transforms)

    def __call__(self, image, rng=None):
        for t in self.transforms:
            image = t(image, rng)
        return image

    def __repr__(self):
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class Rescale:
    """Isotropic rescale: the smaller side becomes ``size`` (S)."""

    def __init__(self, size):
        self.size = check_int(size, "size")

    def __call__(self, image, rng=None):
        return rescale(image, self.size)

    def __repr__(self):
        return f"Rescale({self.size})"


class ScaleJitter:
    """VGG's scale jittering: the smaller side is rescaled to S drawn
    uniformly from the integers in [``smin``, ``smax``] (256, 512)."""

    def __init__(self, smin=256, smax=512):
        self.smin = check_int(smin, "smin")
        self.smax = check_int(smax, "smax")
        if self.smax < self.smin:
            raise ValueError(f"smax: expected >= smin = {self.smin}, got {self.smax}")

    def __call__(self, image, rng):
        return rescale(image, int(rng.integers(self.smin, self.smax + 1)))

    def __repr__(self):
        return f"ScaleJitter({self.smin}, {self.smax})"


class RandomCrop:
    """A ``size`` x ``size`` window at a uniformly drawn position (AlexNet:
    227 from 256; VGG: 224 from the rescaled image)."""

    def __init__(self, size):
        self.size = check_int(size, "size")

    def __call__(self, image, rng):
        image = _image(image)
        _check_fits(image, self.size)
        h, w = image.shape[1:]
        top = int(rng.integers(0, h - self.size + 1))
        left = int(rng.integers(0, w - self.size + 1))
        return crop(image, top, left, self.size)

    def __repr__(self):
        return f"RandomCrop({self.size})"


class CenterCrop:
    """The central ``size`` x ``size`` window (offsets rounded down)."""

    def __init__(self, size):
        self.size = check_int(size, "size")

    def __call__(self, image, rng=None):
        image = _image(image)
        _check_fits(image, self.size)
        h, w = image.shape[1:]
        return crop(image, (h - self.size) // 2, (w - self.size) // 2, self.size)

    def __repr__(self):
        return f"CenterCrop({self.size})"


class RandomHorizontalFlip:
    """Mirrors the image left-right with probability ``p``."""

    def __init__(self, p=0.5):
        self.p = check_real(p, "p", low=0.0, high=1.0)

    def __call__(self, image, rng):
        image = _image(image)
        if rng.random() < self.p:
            return image[:, :, ::-1]
        return image

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p})"


def _rgb_pixels(images) -> np.ndarray:
    """Every pixel of ``images`` (a list of (3, H, W) or an (N, 3, H, W)
    array) as rows of a (P, 3) float64 array."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    if len(images) == 0:
        raise ValueError("images: expected at least one image")
    rows = []
    for i, image in enumerate(images):
        image = _image(image, f"images[{i}]")
        if image.shape[0] != 3:
            raise ValueError(f"images[{i}]: expected 3 (RGB) channels, got shape {image.shape}")
        rows.append(image.reshape(3, -1).T.astype(np.float64))
    return np.concatenate(rows)


def mean_rgb(images) -> np.ndarray:
    """The mean RGB value over every pixel of ``images`` (3,), float64 (VGG
    subtracts it from each pixel)."""
    return _rgb_pixels(images).mean(axis=0)


def std_rgb(images) -> np.ndarray:
    """The standard deviation of each RGB channel over every pixel of
    ``images`` (3,), float64 (what :class:`SubtractMean` divides by when
    inputs are standardised, as torchvision's Normalize)."""
    return _rgb_pixels(images).std(axis=0)


def fit_pca_color(images):
    """AlexNet's colour PCA: the eigen-decomposition of the 3x3 covariance
    of the RGB values of every pixel of ``images`` (training images, 0..255)
    measured on the 0..1 scale, as the reference implementations do (on the
    0..255 scale the eigenvalues, and so :class:`PCAColor`'s offsets, would
    be 255 times larger relative to the pixels: hundreds of levels instead
    of a few). Returns ``(eigenvalues (3,), eigenvectors (3, 3))``, float64,
    the eigenvectors in the columns, eigenvalues in descending order."""
    pixels = _rgb_pixels(images) / PIXEL_MAX
    if pixels.shape[0] < 2:
        raise ValueError("images: expected at least two pixels for a covariance")
    cov = np.cov(pixels, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return np.clip(values[order], 0.0, None), vectors[:, order]


class PCAColor:
    """AlexNet's colour augmentation: to every pixel of an image add
    ``sum_i alpha_i lambda_i p_i`` = ``eigenvectors @ (alpha * eigenvalues)``
    on the 0..1 scale of :func:`fit_pca_color`, i.e. 255 times that on the
    image's 0..255 scale, with ``alpha_i ~ N(0, std)`` drawn once per image
    (``std`` = 0.1). The offset therefore has covariance
    ``255^2 P diag((std lambda)^2) P^T``. ``eigenvalues`` (3,) and
    ``eigenvectors`` (3, 3, columns) as returned by :func:`fit_pca_color`."""

    def __init__(self, eigenvalues, eigenvectors, std=PCA_COLOR_STD):
        values = np.asarray(eigenvalues, dtype=np.float64)
        vectors = np.asarray(eigenvectors, dtype=np.float64)
        if values.shape != (3,):
            raise ValueError(f"eigenvalues: expected shape (3,), got {values.shape}")
        if vectors.shape != (3, 3):
            raise ValueError(f"eigenvectors: expected shape (3, 3), got {vectors.shape}")
        self.eigenvalues, self.eigenvectors = values, vectors
        self.std = check_real(std, "std", low=0.0)

    def offset(self, rng) -> np.ndarray:
        """One draw of the RGB offset (3,), on the 0..255 scale."""
        alpha = rng.normal(0.0, self.std, size=3)
        return PIXEL_MAX * (self.eigenvectors @ (alpha * self.eigenvalues))

    def __call__(self, image, rng):
        image = _image(image)
        if image.shape[0] != 3:
            raise ValueError(f"image: expected 3 (RGB) channels, got shape {image.shape}")
        return image + self.offset(rng).astype(image.dtype)[:, None, None]

    def __repr__(self):
        return f"PCAColor(eigenvalues={np.round(self.eigenvalues, 3).tolist()}, std={self.std})"


class SubtractMean:
    """Subtracts a per-channel mean (``mean`` of shape (C,), e.g. the
    training set's :func:`mean_rgb`) from every pixel, as AlexNet and VGG
    did; with ``std`` (C,) (e.g. :func:`std_rgb`) also divides each channel
    by it, standardising the input (torchvision's Normalize)."""

    def __init__(self, mean, std=None):
        mean = np.asarray(mean, dtype=np.float64)
        if mean.ndim != 1 or not mean.size:
            raise ValueError(f"mean: expected one value per channel (C,), got shape {mean.shape}")
        if not np.all(np.isfinite(mean)):
            raise ValueError("mean: expected finite values")
        self.mean = mean
        self.std = None
        if std is not None:
            std = np.asarray(std, dtype=np.float64)
            if std.shape != mean.shape or not np.all(np.isfinite(std)) or np.any(std <= 0):
                raise ValueError(f"std: expected {mean.size} finite values > 0 (one per mean "
                                 f"value), got {std.tolist()}")
            self.std = std

    def __call__(self, image, rng=None):
        image = _image(image)
        if image.shape[0] != self.mean.size:
            raise ValueError(
                f"image: expected {self.mean.size} channels (one per mean value), got shape {image.shape}"
            )
        centred = image - self.mean.astype(image.dtype)[:, None, None]
        if self.std is None:
            return centred
        return centred / self.std.astype(image.dtype)[:, None, None]

    def __repr__(self):
        std = "" if self.std is None else f", std={np.round(self.std, 3).tolist()}"
        return f"SubtractMean({np.round(self.mean, 3).tolist()}{std})"

"""deepconv.data.transforms: rescale, crops, flips, scale jitter, mean
subtraction and AlexNet's PCA colour augmentation."""

import numpy as np
import pytest

pytest.importorskip("PIL.Image")

from deepconv.data import transforms as T  # noqa: E402


@pytest.fixture
def image(rng):
    return rng.uniform(0, 255, size=(3, 30, 40)).astype(np.float32)


@pytest.mark.parametrize("shape, size, expected", [
    ((3, 30, 40), 15, (3, 15, 20)),
    ((3, 40, 30), 15, (3, 20, 15)),
    ((3, 30, 40), 60, (3, 60, 80)),
    ((3, 33, 50), 20, (3, 20, 30)),  # 50 * 20 / 33 = 30.3 -> 30
    ((1, 8, 8), 8, (1, 8, 8)),
])
def test_rescale_sets_the_smaller_side(rng, shape, size, expected):
    out = T.Rescale(size)(rng.uniform(0, 255, shape).astype(np.float32))
    assert out.shape == expected and out.dtype == np.float32


def test_rescale_keeps_constants_and_mean(image):
    flat = np.full((3, 30, 40), 77.0, np.float32)
    np.testing.assert_allclose(T.rescale(flat, 13), 77.0, rtol=1e-6)
    down = T.rescale(image, 15)
    np.testing.assert_allclose(down.mean(axis=(1, 2)), image.mean(axis=(1, 2)), rtol=0.02)


def test_crops(image, rng):
    c = T.CenterCrop(10)(image)
    np.testing.assert_array_equal(c, image[:, 10:20, 15:25])
    r = T.RandomCrop(10)(image, rng)
    assert r.shape == (3, 10, 10)
    found = [(t, l) for t in range(21) for l in range(31)
             if np.array_equal(image[:, t:t + 10, l:l + 10], r)]
    assert len(found) == 1
    tops = {int(np.argwhere(image[0] == T.RandomCrop(10)(image, rng)[0, 0, 0])[0][0])
            for _ in range(200)}
    assert tops == set(range(21))  # every offset is reachable
    with pytest.raises(ValueError, match="at least 31x31"):
        T.RandomCrop(31)(image, rng)


def test_flip(image):
    always, never = T.RandomHorizontalFlip(1.0), T.RandomHorizontalFlip(0.0)
    g = np.random.default_rng(0)
    np.testing.assert_array_equal(always(image, g), image[:, :, ::-1])
    np.testing.assert_array_equal(never(image, g), image)
    flips = [T.RandomHorizontalFlip()(image, g)[0, 0, 0] == image[0, 0, -1] for _ in range(400)]
    assert 150 < sum(flips) < 250


def test_scale_jitter_range_and_determinism(rng):
    image = rng.uniform(0, 255, (3, 12, 16)).astype(np.float32)
    jitter = T.ScaleJitter(16, 24)
    sides = {min(jitter(image, np.random.default_rng(s)).shape[1:]) for s in range(60)}
    assert sides == set(range(16, 25))
    with pytest.raises(ValueError, match="smax"):
        T.ScaleJitter(512, 256)


def test_pipeline_deterministic_per_seed(image):
    pipeline = T.Compose(T.ScaleJitter(20, 40), T.RandomCrop(18), T.RandomHorizontalFlip(),
                         T.PCAColor(*T.fit_pca_color([image])), T.SubtractMean([1.0, 2.0, 3.0]))
    a = pipeline(image, T.sample_rng(5, 2, 17))
    b = pipeline(image, T.sample_rng(5, 2, 17))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 18, 18)
    others = [pipeline(image, T.sample_rng(*key)) for key in ((6, 2, 17), (5, 3, 17), (5, 2, 18))]
    assert all(not np.array_equal(a, o) for o in others)
    assert "ScaleJitter(20, 40)" in repr(pipeline)


def test_mean_subtraction(image):
    mean = T.mean_rgb([image, image + 10])
    np.testing.assert_allclose(mean, image.mean(axis=(1, 2)) + 5, rtol=1e-6)
    centred = T.SubtractMean(mean)(np.concatenate([image[None], image[None] + 10]).mean(axis=0))
    np.testing.assert_allclose(centred.mean(axis=(1, 2)), 0.0, atol=1e-3)
    with pytest.raises(ValueError, match="3 channels"):
        T.SubtractMean(mean)(image[:2])


def test_pca_fit_recovers_the_covariance(rng):
    # Pixels with a known RGB covariance: eigen-decomposition gives it back.
    cov = np.array([[400.0, 300.0, 100.0], [300.0, 500.0, 200.0], [100.0, 200.0, 300.0]])
    pixels = rng.multivariate_normal([120, 110, 100], cov, size=60000)
    images = list(pixels.T.reshape(3, 6, 100, 100).transpose(1, 0, 2, 3))
    values, vectors = T.fit_pca_color(images)
    assert np.all(np.diff(values) <= 0)
    # ... on the 0..1 scale: the covariance of 0..255 pixels over 255^2
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T * 255.0 ** 2, cov, rtol=0.05,
                               atol=8.0)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-12)


def test_pca_colour_offset_statistics(rng):
    """Over many draws the offset's covariance is 255^2 P diag((0.1 lambda)^2)
    P^T, and each image gets one offset, the same at every pixel."""
    images = [rng.uniform(0, 255, (3, 8, 8)) * np.array([1.0, 0.6, 0.3])[:, None, None]
              for _ in range(4)]
    values, vectors = T.fit_pca_color(images)
    pca = T.PCAColor(values, vectors)
    draws = np.stack([pca.offset(np.random.default_rng(s)) for s in range(20000)])
    predicted = 255.0 ** 2 * vectors @ np.diag((0.1 * values) ** 2) @ vectors.T
    np.testing.assert_allclose(np.cov(draws, rowvar=False), predicted, rtol=0.05,
                               atol=0.05 * np.abs(predicted).max())
    np.testing.assert_allclose(draws.mean(axis=0), 0.0, atol=0.05 * np.sqrt(predicted.diagonal().max()))
    image = np.zeros((3, 5, 7))
    shifted = pca(image, np.random.default_rng(3))
    np.testing.assert_allclose(shifted, pca.offset(np.random.default_rng(3))[:, None, None]
                               * np.ones((3, 5, 7)), rtol=1e-12)


def test_pca_colour_offsets_are_a_few_levels(rng):
    """AlexNet's augmentation shifts colours slightly: for images whose
    pixels spread over the whole 0..255 range (variance 255^2 / 12 per
    channel: lambda = 1/12 on the 0..1 scale), the offset's standard
    deviation along each component is 255 * 0.1 / 12 ~ 2.1 levels."""
    images = [rng.uniform(0, 255, (3, 32, 32)) for _ in range(8)]
    pca = T.PCAColor(*T.fit_pca_color(images))
    draws = np.stack([pca.offset(np.random.default_rng(s)) for s in range(4000)])
    np.testing.assert_allclose(draws.std(axis=0), 255 * 0.1 / 12, rtol=0.1)


def test_standardising_gives_unit_variance_channels(rng):
    images = [rng.normal([[[120.0]], [[90.0]], [[60.0]]], [[[30.0]], [[10.0]], [[5.0]]],
                         size=(3, 16, 16)) for _ in range(6)]
    mean, std = T.mean_rgb(images), T.std_rgb(images)
    np.testing.assert_allclose(std, [30.0, 10.0, 5.0], rtol=0.1)
    out = np.stack([T.SubtractMean(mean, std)(im) for im in images])
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-9)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1.0, rtol=1e-9)


@pytest.mark.parametrize("make, error, match", [
    (lambda: T.Rescale(0), ValueError, "size"),
    (lambda: T.RandomCrop(2.5), TypeError, "size"),
    (lambda: T.RandomHorizontalFlip(1.5), ValueError, "p"),
    (lambda: T.PCAColor(np.ones(2), np.eye(3)), ValueError, "eigenvalues"),
    (lambda: T.PCAColor(np.ones(3), np.eye(2)), ValueError, "eigenvectors"),
    (lambda: T.SubtractMean([]), ValueError, "mean"),
    (lambda: T.SubtractMean([1.0, 2.0, 3.0], std=[1.0, 0.0, 1.0]), ValueError, "std"),
    (lambda: T.SubtractMean([1.0, 2.0, 3.0], std=[1.0, 2.0]), ValueError, "std"),
    (lambda: T.Compose(T.Rescale(4), 3), TypeError, r"transforms\[1\]"),
    (lambda: T.rescale(np.zeros((4, 4)), 2), ValueError, "image"),
    (lambda: T.fit_pca_color([np.zeros((1, 4, 4))]), ValueError, r"images\[0\]"),
])
def test_argument_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()

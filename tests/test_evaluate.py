"""deepconv.evaluate: crop views, dense evaluation (FC as convolution) and
top-k error under the centre / 10-crop / multi-crop / dense / dense +
multi-crop protocols, ensembles and timing, with a small VGG-style net on
the emulator."""

import numpy as np
import pytest

pytest.importorskip("PIL.Image")  # rescaling

from deepconv import asarray, nn, to_numpy  # noqa: E402
from deepconv.data import ArrayDataset  # noqa: E402
from deepconv.data.transforms import rescale  # noqa: E402
from deepconv.evaluate import (PROTOCOLS, VIEWS_PER_SCALE, dense_model, evaluate,  # noqa: E402
                               grid_crops, predict, ten_crop, vgg_scales)
from deepconv.models import vgg_small  # noqa: E402

CLASSES = 5


def _net(input_size=32, dtype="float32", seed=1):
    # Glorot keeps the scores of an 8-layer net away from 0 and from overflow.
    return vgg_small("A", input_size=input_size, num_classes=CLASSES, width=4, fc_width=16,
                     init="glorot", seed=seed, dtype=dtype).eval()


def _forward(model, x):
    return to_numpy(model.forward(asarray(np.ascontiguousarray(x, dtype=model["fc8"].dtype)))).copy()


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_ten_crop_views():
    image = np.arange(3 * 6 * 7, dtype=np.float32).reshape(3, 6, 7)
    views = ten_crop(image, 4)
    assert views.shape == (10, 3, 4, 4)
    expected = [image[:, :4, :4], image[:, :4, 3:], image[:, 2:, :4], image[:, 2:, 3:],
                image[:, 1:5, 1:5]]
    for v, e in zip(views[:5], expected):
        np.testing.assert_array_equal(v, e)
    np.testing.assert_array_equal(views[5:], views[:5, :, :, ::-1])
    with pytest.raises(ValueError, match="smaller than the 8x8 crop"):
        ten_crop(image, 8)


def test_grid_crops_span_the_image():
    image = np.arange(2 * 9 * 11, dtype=np.float32).reshape(2, 9, 11)
    views = grid_crops(image, 5, grid=5)
    assert views.shape == (50, 2, 5, 5)
    np.testing.assert_array_equal(views[0], image[:, :5, :5])
    np.testing.assert_array_equal(views[24], image[:, 4:, 6:])
    np.testing.assert_array_equal(views[25:], views[:25, :, :, ::-1])


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-12)])
def test_dense_equals_crop_forward(rng, dtype, tol):
    """On an input exactly the crop size, the fully convolutional network
    gives the plain network's class scores."""
    model = _net(dtype=dtype)
    x = rng.standard_normal((3, 3, 32, 32))
    expected = _forward(model, x)
    dense = dense_model(model, 32)
    score_map = _forward(dense, x)
    assert score_map.shape == (3, CLASSES, 1, 1)
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(score_map[:, :, 0, 0], expected, rtol=tol, atol=tol * scale)


def test_dense_model_shares_weights_and_sizes_its_score_map(rng):
    model = _net(input_size=64)  # five 2x2 poolings: a 2x2 map feeds fc6
    dense = dense_model(model, 64)
    assert isinstance(dense["fc6"], nn.Conv2d) and dense["fc6"].kernel_size == (2, 2)
    assert dense["fc7"].kernel_size == (1, 1) and dense["fc8"].kernel_size == (1, 1)
    assert dense["conv1_1"] is model["conv1_1"]
    for name in ("fc6", "fc7", "fc8"):
        assert np.shares_memory(to_numpy(dense[name].params["weight"]),
                                to_numpy(model[name].params["weight"]))
    # 96x96: the last feature map is 3x3, so a 2x2 filter leaves a 2x2 score map.
    assert dense.output_shape((1, 3, 96, 96)) == (1, CLASSES, 2, 2)
    assert _forward(dense, rng.standard_normal((1, 3, 96, 96))).shape == (1, CLASSES, 2, 2)
    small = dense_model(_net(), 32)  # the task's example: net at 32, a 48x48 and a 64x80 image
    assert _forward(small, rng.standard_normal((1, 3, 48, 48))).shape == (1, CLASSES, 1, 1)
    assert _forward(small, rng.standard_normal((1, 3, 64, 80))).shape == (1, CLASSES, 2, 2)


def test_dense_protocol_averages_image_and_mirror(rng):
    model = _net()
    image = rng.standard_normal((3, 32, 32))
    probs = predict(model, [image], "dense", 32)
    pair = _forward(model, np.stack([image, image[:, :, ::-1]]))
    np.testing.assert_allclose(probs[0], _softmax(pair.astype(np.float64)).mean(axis=0), atol=1e-6)
    big = rng.standard_normal((3, 64, 80))
    score_map = _forward(dense_model(model, 32), np.stack([big, big[:, :, ::-1]]))
    expected = _softmax(score_map.astype(np.float64).mean(axis=(2, 3))).mean(axis=0)
    np.testing.assert_allclose(predict(model, [big], "dense", 32)[0], expected, atol=1e-6)


def test_ten_crop_protocol_averages_ten_views(rng):
    model = _net()
    images = [rng.standard_normal((3, 36, 40)), rng.standard_normal((3, 40, 34))]
    probs = predict(model, images, "10crop", 32, batch_size=1)
    assert probs.shape == (2, CLASSES)
    for image, p in zip(images, probs):
        views = ten_crop(image, 32)
        assert views.shape[0] == 10
        expected = _softmax(_forward(model, views).astype(np.float64)).mean(axis=0)
        np.testing.assert_allclose(p, expected, atol=1e-6)
    np.testing.assert_allclose(predict(model, images, "10crop", 32, batch_size=2), probs, atol=1e-12)


def test_center_and_multicrop_protocols(rng):
    model = _net()
    image = rng.standard_normal((3, 36, 44))
    centre = predict(model, [image], "center", 32)[0]
    expected = _softmax(_forward(model, image[None, :, 2:34, 6:38]).astype(np.float64))[0]
    np.testing.assert_allclose(centre, expected, atol=1e-6)
    multi = predict(model, [image], "multicrop", 32)[0]
    expected = _softmax(_forward(model, grid_crops(image, 32)).astype(np.float64)).mean(axis=0)
    np.testing.assert_allclose(multi, expected, atol=1e-6)


def test_evaluate_top_k_and_scales(rng):
    model = _net().train()
    images = rng.uniform(0, 255, (6, 3, 40, 48)).astype(np.float32)
    data = ArrayDataset(images, [0, 1, 2, 3, 4, 0], num_classes=CLASSES)
    mean = images.mean(axis=(0, 2, 3))

    def centred(image, rng_unused):
        return image - mean[:, None, None].astype(np.float32)

    result = evaluate(model, data, "10crop", 32, scales=(32, 36), preprocess=centred, k=2,
                      batch_size=4)
    assert model.training  # the mode is restored
    from deepconv.data.transforms import rescale
    probs = sum(predict(model, [centred(rescale(im, q), None) for im in images], "10crop", 32)
                for q in (32, 36)) / 2
    ranks = (-probs).argsort(axis=1)
    labels = data.labels
    assert result["images"] == 6 and result["scales"] == (32, 36)
    assert result["top1_error"] == pytest.approx(np.mean(ranks[:, 0] != labels))
    assert result["top2_error"] == pytest.approx(np.mean([l not in r[:2] for l, r in zip(labels, ranks)]))
    dense = evaluate(model, data, "dense", 32, scales=(32,), preprocess=centred, k=10)
    assert set(dense) >= {"top1_error", "top10_error"} and dense["top10_error"] == 0.0


def test_errors(rng):
    model = _net()
    with pytest.raises(ValueError, match="protocol"):
        predict(model, [np.zeros((3, 32, 32))], "12crop", 32)
    with pytest.raises(ValueError, match="Flatten"):
        dense_model(nn.Sequential(nn.Conv2d(3, 4, 3)), 8)
    with pytest.raises(TypeError, match="Sequential"):
        dense_model(nn.Graph(), 8)
    odd = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Flatten())
    with pytest.raises(ValueError, match="cannot evaluate layer '2'"):
        dense_model(odd, 8)
    with pytest.raises(ValueError, match="scales"):
        evaluate(model, ArrayDataset(np.zeros((1, 3, 32, 32)), [0]), scales=())


def test_dense_plus_multicrop_is_the_mean_of_the_two(rng):
    """VGG's Table 5 combination: the softmax of the dense and of the
    multi-crop evaluation, averaged."""
    model = _net()
    images = [rng.standard_normal((3, 36, 44)), rng.standard_normal((3, 40, 34))]
    both = predict(model, images, "dense+multicrop", 32)
    expected = (predict(model, images, "dense", 32) + predict(model, images, "multicrop", 32)) / 2
    np.testing.assert_allclose(both, expected, rtol=0, atol=1e-12)
    assert not np.allclose(predict(model, images, "dense", 32), both, atol=1e-6)  # both parts count


def test_ensemble_averages_the_members_probabilities(rng):
    # Members on two emulated devices: each runs on its own.
    members = [_net(seed=1), vgg_small("A", input_size=32, num_classes=CLASSES, width=4, fc_width=16,
                                       init="glorot", seed=2, device="emu:1")]
    images = [rng.standard_normal((3, 36, 40)), rng.standard_normal((3, 32, 48))]
    for protocol in ("10crop", "dense+multicrop"):
        each = [predict(m, images, protocol, 32) for m in members]
        assert not np.allclose(each[0], each[1], atol=1e-3)  # distinct members
        ensemble = predict(members, images, protocol, 32)
        np.testing.assert_allclose(ensemble, np.mean(each, axis=0), rtol=0, atol=1e-12)

    labels = [0, 1, 2, 3, 4, 4]
    data = ArrayDataset(rng.uniform(-1, 1, (6, 3, 36, 40)), labels, num_classes=CLASSES)
    result = evaluate(tuple(members), data, "center", 32, scales=(32, 40), k=2)
    probs = np.mean([sum(predict(m, [rescale(im, q) for im in data.images], "center", 32)
                         for q in (32, 40)) / 2 for m in members], axis=0)
    ranks = (-probs).argsort(axis=1)
    assert result["models"] == 2
    assert result["top1_error"] == pytest.approx(np.mean(ranks[:, 0] != labels))
    assert result["top2_error"] == pytest.approx(np.mean([l not in r[:2] for l, r in zip(labels, ranks)]))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_view_counts_and_timing(rng, protocol):
    """Each protocol classifies its documented number of views per image
    and scale (counted at the first convolution, which the dense network
    shares), and reports its time."""
    model = _net()
    seen = []
    first = model["conv1_1"]
    first.forward = _counting(first.forward, seen)  # an instance attribute: this layer only
    data = ArrayDataset(rng.uniform(-1, 1, (3, 3, 32, 40)), [0, 1, 2], num_classes=CLASSES)
    result = evaluate(model, data, protocol, 32, scales=(32, 36), batch_size=2)
    assert result["views"] == 2 * VIEWS_PER_SCALE[protocol]
    assert sum(seen) == 3 * result["views"]
    assert result["seconds"] > 0
    assert result["images_per_s"] == pytest.approx(3 / result["seconds"])


def _counting(forward, seen):
    def counted(x):
        seen.append(x.shape[0])
        return forward(x)
    return counted


def test_view_counts_match_the_croppers():
    image = np.zeros((3, 40, 48), np.float32)
    assert ten_crop(image, 32).shape[0] == VIEWS_PER_SCALE["10crop"] == 10
    assert grid_crops(image, 32).shape[0] == VIEWS_PER_SCALE["multicrop"] == 50
    assert VIEWS_PER_SCALE["dense+multicrop"] == VIEWS_PER_SCALE["dense"] + VIEWS_PER_SCALE["multicrop"]


def test_vgg_scales():
    assert vgg_scales(256) == (224, 256, 288)
    assert vgg_scales((256, 512)) == (256, 384, 512)
    assert vgg_scales([384, 512]) == (384, 448, 512)
    with pytest.raises(ValueError, match="train_scale: expected Smin < Smax"):
        vgg_scales((512, 256))
    with pytest.raises(ValueError, match="train_scale: expected an int >= 33"):
        vgg_scales(32)
    with pytest.raises(ValueError, match="train_scale: expected S or a pair"):
        vgg_scales((1, 2, 3))


def test_ensemble_and_scale_errors(rng):
    model = _net()
    image = [np.zeros((3, 32, 32))]
    with pytest.raises(ValueError, match="model: expected a network or a non-empty list"):
        predict([], image, "center", 32)
    with pytest.raises(TypeError, match="model: expected deepconv.nn networks, got str at index 1"):
        predict([model, "net"], image, "center", 32)
    other = vgg_small("A", input_size=32, num_classes=CLASSES + 1, width=4, fc_width=16)
    with pytest.raises(ValueError, match="ensemble member 1 gives 6 classes, member 0 gives 5"):
        predict([model, other], image, "center", 32)
    with pytest.raises(ValueError, match=r"dense: expected one network per model \(2\), got 1"):
        predict([model, model], image, "dense", 32, dense=[dense_model(model, 32)])
    data = ArrayDataset(np.zeros((1, 3, 40, 40)), [0], num_classes=CLASSES)
    with pytest.raises(ValueError, match=r"scales: expected sizes >= crop_size \(32\)"):
        evaluate(model, data, "center", 32, scales=(32, 28))
    with pytest.raises(ValueError, match="protocol: expected one of"):
        evaluate(model, data, "dense+10crop", 32, scales=(32,))

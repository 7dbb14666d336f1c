"""What a trained network has learnt, as numbers and pictures (AlexNet,
Krizhevsky et al. 2012, section 6.1; VGG, Simonyan & Zisserman 2015,
appendix B):

- :func:`extract_features`: the activations of the last hidden layer (the
  4096-d input of AlexNet's fc8) or of any named layer, one row per image;
- :func:`nearest_neighbours`: the training images whose feature vectors are
  closest (Euclidean) to a query's, and :func:`neighbours_grid`, the picture
  of each query beside them (AlexNet's figure 4, right);
- :func:`filter_grid`: the first convolution's filters as a picture
  (AlexNet's figure 3), :func:`first_conv_weight` finds them;
- :func:`linear_classifier`: a linear SVM on features of another dataset
  (VGG's appendix B, where the net serves as a fixed feature extractor);
- :func:`save_png`: a picture written atomically.

Pictures are ``uint8`` arrays (H, W, 3). Images going in are (C, H, W) on
the 0..255 scale, as :class:`~deepconv.data.folder.ImageFolder` loads them
(before mean subtraction), with C = 3 (RGB) or 1 (grey).

``deepconv features`` (:mod:`deepconv.features_command`) runs all of this
from the command line.
"""

from __future__ import annotations

import io
import math
from contextlib import contextmanager

import numpy as np

from deepconv.backend import device as _device, device_of, is_array, to_numpy
from deepconv.checkpoint import atomic_write
from deepconv.evaluate import model_input
from deepconv.nn import Conv2d, Graph, Linear, ReLU, Sequential
from deepconv.nn.layer import check_int, check_real

__all__ = ["extract_features", "filter_grid", "first_conv_weight", "linear_classifier",
           "nearest_neighbours", "neighbours_grid", "save_png"]

_INPUT = ""  # the key of a Sequential's input among the layer outputs (never a layer name)
_SKLEARN_HINT = 'pip install scikit-learn (or: pip install "deepconv[train]")'


# --- feature extraction -----------------------------------------------------------------


def _steps(model):
    """``(input key, [(name, layer, input keys), ...])`` in execution order;
    a step's output is keyed by its name (``"name:i"`` for the outputs of a
    multi-output Graph node)."""
    if isinstance(model, Sequential):
        steps, previous = [], _INPUT
        for name, layer in model.children():
            steps.append((name, layer, [previous]))
            previous = name
        return _INPUT, steps
    if isinstance(model, Graph):
        if model.num_inputs != 1:
            raise ValueError(f"model: expected a Graph with one input, got {model.num_inputs}")
        return model.input_names[0], [(name, layer, model.node_inputs(name))
                                      for name, layer in model.children()]
    raise TypeError(f"model: expected a deepconv.nn.Sequential or Graph, got "
                    f"{type(model).__name__}")


def _output_keys(name, layer):
    return [name] if layer.num_outputs == 1 else [f"{name}:{i}" for i in range(layer.num_outputs)]


def _target(model, layer):
    """The key of the output to extract: ``layer``, or what the last Linear reads."""
    source, steps = _steps(model)
    keys = [key for name, lay, _ in steps for key in _output_keys(name, lay)]
    if layer is not None:
        if not isinstance(layer, str):
            raise TypeError(f"layer: expected a layer or node name (str), got "
                            f"{type(layer).__name__}")
        if layer not in keys:
            raise ValueError(f"layer: the model has no layer named {layer!r} (it has: "
                             f"{', '.join(keys)})")
        return layer
    linears = [inputs[0] for _, lay, inputs in steps if isinstance(lay, Linear)]
    if not linears:
        raise ValueError("model: has no Linear layer, so no last hidden layer; pass layer=NAME")
    if linears[-1] == source:
        raise ValueError("model: its last Linear reads the input directly (no hidden layer); "
                         "pass layer=NAME")
    return linears[-1]


def _fused_into_next(model, target):
    """The layer of Sequential ``model`` named ``target`` if the container
    folded the following ReLU into it (its output is then rectified)."""
    names = [name for name, _ in model.children()]
    at = names.index(target)
    producer = model[at]
    follower = model[at + 1] if at + 1 < len(names) else None
    fused = isinstance(follower, ReLU) and follower.fused
    return producer if isinstance(producer, (Conv2d, Linear)) and producer.relu and fused else None


def _handle_text(graph, handle):
    name, index = handle
    single = name in graph.input_names or graph[name].num_outputs == 1
    return name if single else f"{name}:{index}"


@contextmanager
def _stopping_at(model, target):
    """A function computing ``model``'s ``target`` output from an input.

    A Sequential runs its layers up to ``target``, with the ReLU a container
    may have fused into it unfused meanwhile. A Graph is run whole with
    ``target`` as its output for the duration: its own forward then moves
    values between devices if it is placed on several, and its fusion plan
    leaves a graph output unrectified."""
    if isinstance(model, Graph):
        outputs = [_handle_text(model, h) for h in model.output_handles]
        model.output(target)
        try:
            yield model.forward
        finally:
            model.output(*outputs)
        return
    names = [name for name, _ in model.children()]
    layers = [layer for _, layer in model.children()][:names.index(target) + 1]

    def run(x):
        for layer in layers:
            x = layer.forward(x)
        return x

    producer = _fused_into_next(model, target)
    if producer is not None:
        producer.relu = False
    try:
        yield run
    finally:
        if producer is not None:
            producer.relu = True


def _batches(images_or_dataset, batch_size):
    """(N, C, H, W) host batches of an array, a list of images, or a dataset
    (``len`` and ``dataset[i] -> (image, label)``, optionally ``batch``)."""
    data = images_or_dataset
    if isinstance(data, np.ndarray) or is_array(data):
        data = to_numpy(data)
        if data.ndim != 4:
            raise ValueError(f"images_or_dataset: expected an (N, C, H, W) array, got shape "
                             f"{tuple(data.shape)}")
        for start in range(0, len(data), batch_size):
            yield data[start:start + batch_size]
        return
    if isinstance(data, (list, tuple)):
        for start in range(0, len(data), batch_size):
            chunk = [np.asarray(im) for im in data[start:start + batch_size]]
            if any(im.ndim != 3 or im.shape != chunk[0].shape for im in chunk):
                raise ValueError("images_or_dataset: expected images (C, H, W) of one shape, got "
                                 f"shapes {sorted({im.shape for im in chunk})}")
            yield np.stack(chunk)
        return
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise TypeError("images_or_dataset: expected an (N, C, H, W) array, a list of (C, H, W) "
                        f"images or a dataset, got {type(data).__name__}")
    for start in range(0, len(data), batch_size):
        wanted = range(start, min(start + batch_size, len(data)))
        if hasattr(data, "batch"):
            images = data.batch(list(wanted))[0]
        else:
            images = np.stack([np.asarray(data[i][0]) for i in wanted])
        if len(images) != len(wanted):  # e.g. ImageFolder(on_error="skip") left a file out
            raise ValueError(f"images_or_dataset: a batch of images {wanted.start}.."
                             f"{wanted.stop - 1} came back with {len(images)} images (unreadable "
                             "files skipped?); features must stay one row per image")
        yield images


def extract_features(model, images_or_dataset, layer=None, *, batch_size=16, device=None):
    """The activations of ``model`` at ``layer`` for every image, as float32
    (N, D) numpy (each output flattened in NCHW order).

    ``layer=None``: the last hidden layer, i.e. what the model's last
    :class:`~deepconv.nn.Linear` reads: after fc7's ReLU and Dropout in
    AlexNet and VGG (4096-d at full size), the ``concat7`` node of the
    two-column AlexNet. Else a layer name of a
    :class:`~deepconv.nn.Sequential` or a node name of a
    :class:`~deepconv.nn.Graph` (``"name:i"`` for one output of a
    multi-output node); a Conv2d or Linear gives its output *before* a ReLU
    the container fused into it, as the name says.

    ``images_or_dataset``: an (N, C, H, W) array, a list of (C, H, W)
    images of one shape, or a dataset (``dataset[i] -> (image, label)``,
    e.g. :class:`~deepconv.data.folder.ImageFolder` with a transform that
    rescales, crops and subtracts the mean), already sized for the model.
    Runs ``batch_size`` images at a time on ``device`` (default: the
    model's), in evaluation mode (restored afterwards); a Sequential only
    up to the layer asked for, a Graph whole (with that node as its output
    meanwhile, so a graph placed on several devices works as in training).
    """
    batch_size = check_int(batch_size, "batch_size")
    params = model.parameters() if hasattr(model, "parameters") else []
    if not params:
        raise ValueError("model: has no parameters (build it materialised and load its weights)")
    dev = _device(device) if device is not None else device_of(params[0])
    target = _target(model, layer)
    rows = []
    was_training = model.training
    model.eval()
    try:
        with _stopping_at(model, target) as run:
            for images in _batches(images_or_dataset, batch_size):
                y = run(model_input(model, images, dev))
                # np.array copies: y is a layer-owned buffer, rewritten by the next forward
                rows.append(np.array(to_numpy(y), dtype=np.float32).reshape(len(images), -1))
    finally:
        model.train(was_training)
    if not rows:
        raise ValueError("images_or_dataset: expected at least one image")
    return np.concatenate(rows)


# --- nearest neighbours -----------------------------------------------------------------


def _feature_matrix(features, name) -> np.ndarray:
    features = np.asarray(to_numpy(features) if is_array(features) else features)
    if features.ndim != 2 or not features.shape[0]:
        raise ValueError(f"{name}: expected a non-empty (N, D) array, got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.number):
        raise TypeError(f"{name}: expected numbers, got dtype {features.dtype}")
    features = features.astype(np.float64)
    if not np.all(np.isfinite(features)):
        raise ValueError(f"{name}: expected finite values (NaN or inf found)")
    return features


def nearest_neighbours(query_features, train_features, k=5):
    """The ``k`` rows of ``train_features`` (N, D) nearest to each row of
    ``query_features`` (Q, D) in Euclidean distance: ``(indices (Q, k)
    int64, distances (Q, k) float64)``, nearest first, ties broken by the
    lower index.

    Candidates are found with ``|q|^2 + |t|^2 - 2 q.t`` (one matrix
    product), keeping every training row within that formula's rounding
    error of the k-th; their distances are then computed exactly from
    ``q - t``, so a training copy of a query is at distance exactly 0 and
    the ranking does not depend on rounding."""
    q = _feature_matrix(query_features, "query_features")
    t = _feature_matrix(train_features, "train_features")
    if q.shape[1] != t.shape[1]:
        raise ValueError(f"query_features: expected {t.shape[1]} features per row (as "
                         f"train_features), got {q.shape[1]}")
    k = check_int(k, "k")
    if k > len(t):
        raise ValueError(f"k: expected at most the {len(t)} training rows, got {k}")
    t_norms = (t * t).sum(axis=1)
    # The expansion's rounding error is below D * eps * (|q|^2 + |t|^2); 8x margin.
    slack = 8 * t.shape[1] * np.finfo(np.float64).eps
    indices = np.empty((len(q), k), np.int64)
    distances = np.empty((len(q), k), np.float64)
    chunk = max(1, (1 << 22) // len(t))  # queries per matrix product: ~32 MiB of distances
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        q_norms = (block * block).sum(axis=1)
        approx = q_norms[:, None] + t_norms[None, :] - 2.0 * (block @ t.T)
        for r, row in enumerate(approx):
            kth = np.partition(row, k - 1)[k - 1]
            candidates = np.flatnonzero(row <= kth + slack * (q_norms[r] + t_norms.max()))
            exact = np.sqrt(((t[candidates] - block[r]) ** 2).sum(axis=1))
            order = np.lexsort((candidates, exact))[:k]  # by distance, then by index
            indices[start + r] = candidates[order]
            distances[start + r] = exact[order]
    return indices, distances


# --- pictures ---------------------------------------------------------------------------


def _tile(image, name) -> np.ndarray:
    """A (C, H, W) image on the 0..255 scale as a uint8 (H, W, 3) tile."""
    image = np.asarray(to_numpy(image) if is_array(image) else image)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"{name}: expected an image (C, H, W) with C = 1 or 3, got shape "
                         f"{image.shape}")
    if not np.issubdtype(image.dtype, np.number):
        raise TypeError(f"{name}: expected numbers, got dtype {image.dtype}")
    pixels = np.clip(np.nan_to_num(image.astype(np.float64)), 0, 255).round().astype(np.uint8)
    return np.repeat(pixels, 3 // pixels.shape[0], axis=0).transpose(1, 2, 0)


def _canvas(rows, columns, tile_h, tile_w, gap, fill):
    return np.full((rows * tile_h + (rows + 1) * gap, columns * tile_w + (columns + 1) * gap, 3),
                   fill, np.uint8)


def _place(canvas, tile, row, column, gap):
    h, w = tile.shape[:2]
    top, left = gap + row * (h + gap), gap + column * (w + gap)
    canvas[top:top + h, left:left + w] = tile


def neighbours_grid(query_images, train_images, indices, gap=2) -> np.ndarray:
    """AlexNet's figure 4 (right): one row per query, the query image then
    its neighbours ``train_images[indices[q, j]]`` in order, separated and
    framed by ``gap`` white pixels. Images (C, H, W), 0..255, C = 1 or 3,
    all of one height and width (e.g. the centre crops fed to the net);
    ``query_images`` / ``train_images`` an (N, C, H, W) array or a list.
    Returns uint8 (Q*H + (Q+1)*gap, (k+1)*W + (k+2)*gap, 3)."""
    gap = check_int(gap, "gap", minimum=0)
    indices = np.asarray(indices)
    queries = [_tile(im, f"query_images[{i}]") for i, im in enumerate(query_images)]
    if not queries:
        raise ValueError("query_images: expected at least one image")
    if indices.ndim != 2 or indices.shape[0] != len(queries) or not indices.shape[1]:
        raise ValueError(f"indices: expected shape ({len(queries)}, k) (one row per query, "
                         f"k >= 1), got {indices.shape}")
    if not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"indices: expected integers, got dtype {indices.dtype}")
    count = len(train_images)
    if indices.min() < 0 or indices.max() >= count:
        raise ValueError(f"indices: expected values in [0, {count}) (train_images has {count}), "
                         f"got [{indices.min()}, {indices.max()}]")
    h, w = queries[0].shape[:2]
    canvas = _canvas(len(queries), indices.shape[1] + 1, h, w, gap, 255)
    for q, (query, row) in enumerate(zip(queries, indices)):
        tiles = [query] + [_tile(train_images[int(i)], f"train_images[{i}]") for i in row]
        for column, tile in enumerate(tiles):
            if tile.shape[:2] != (h, w):
                raise ValueError(f"train_images: expected every image {h}x{w} (as "
                                 f"query_images[0]), got {tile.shape[0]}x{tile.shape[1]}")
            _place(canvas, tile, q, column, gap)
    return canvas


def filter_grid(conv_weight, columns=None, scale=None, gap=1) -> np.ndarray:
    """AlexNet's figure 3: every filter of ``conv_weight`` (K, C, R, S), C =
    3 (RGB) or 1 (grey), as an image tile, normalised on its own to 0..255
    (its minimum black, its maximum white; a constant filter mid grey), in
    a grid of ``columns`` (default ceil(sqrt(K))) and as many rows as
    needed, separated by ``gap`` black pixels. Filters are a few pixels
    wide, so each is enlarged ``scale`` times (nearest neighbour; default:
    the smallest factor making it at least 32 pixels). Returns uint8
    (rows*R*scale + (rows+1)*gap, columns*S*scale + (columns+1)*gap, 3)."""
    weight = np.asarray(to_numpy(conv_weight) if is_array(conv_weight) else conv_weight)
    if weight.ndim != 4 or weight.shape[1] not in (1, 3) or 0 in weight.shape:
        raise ValueError(f"conv_weight: expected (K, C, R, S) filters with C = 1 or 3 input "
                         f"channels (grey or RGB), got shape {weight.shape}")
    weight = weight.astype(np.float64)
    if not np.all(np.isfinite(weight)):
        raise ValueError("conv_weight: expected finite values (NaN or inf found)")
    k, _, r, s = weight.shape
    columns = math.ceil(math.sqrt(k)) if columns is None else check_int(columns, "columns")
    scale = math.ceil(32 / max(r, s)) if scale is None else check_int(scale, "scale")
    gap = check_int(gap, "gap", minimum=0)
    low = weight.min(axis=(1, 2, 3), keepdims=True)
    span = weight.max(axis=(1, 2, 3), keepdims=True) - low
    normalised = np.where(span > 0, (weight - low) * 255 / np.where(span > 0, span, 1), 127.5)
    rows = math.ceil(k / columns)
    canvas = _canvas(rows, columns, r * scale, s * scale, gap, 0)
    for i, f in enumerate(normalised):
        big = f.repeat(scale, axis=1).repeat(scale, axis=2)
        _place(canvas, _tile(big, f"conv_weight[{i}]"), i // columns, i % columns, gap)
    return canvas


def first_conv_weight(model) -> np.ndarray:
    """The weights (K, C, R, S) of the convolution(s) reading the images, on
    the host: a Sequential's first :class:`~deepconv.nn.Conv2d`; for a
    Graph, every Conv2d node reading the graph input, concatenated in node
    order (the two-column AlexNet: conv1a's 48 filters, then conv1b's)."""
    if isinstance(model, Conv2d):
        convs = [model]
    elif isinstance(model, Graph):
        convs = [layer for name, layer in model.children() if isinstance(layer, Conv2d)
                 and all(h in model.input_names for h in model.node_inputs(name))]
    elif isinstance(model, Sequential):
        convs = [layer for _, layer in model.named_layers() if isinstance(layer, Conv2d)][:1]
    else:
        raise TypeError(f"model: expected a Sequential, Graph or Conv2d, got "
                        f"{type(model).__name__}")
    if not convs:
        raise ValueError("model: no Conv2d layer reads the input images")
    return np.concatenate([np.array(to_numpy(c.params["weight"])) for c in convs])


def save_png(path, image) -> None:
    """Write ``image`` (uint8 (H, W, 3) or (H, W)) to ``path`` as PNG,
    atomically (a temporary file renamed over ``path``)."""
    from deepconv.data.folder import import_pillow

    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image: expected uint8, got dtype {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)) or 0 in image.shape:
        raise ValueError(f"image: expected (H, W, 3) or (H, W), got shape {image.shape}")
    buffer = io.BytesIO()
    import_pillow().fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    atomic_write(str(path), lambda f: f.write(buffer.getvalue()))


# --- a linear classifier on features ----------------------------------------------------


def _labels(labels, count, name) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (count,):
        raise ValueError(f"{name}: expected shape ({count},) (one per feature row), got "
                         f"{labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class labels, got dtype {labels.dtype}")
    return labels


def _l2_normalised(features):
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def linear_classifier(train_features, train_labels, test_features, test_labels, C=1.0, *,
                      normalize=True):
    """VGG's appendix B: a linear SVM (scikit-learn's ``LinearSVC``, one vs
    rest, regularisation ``C``) fit on ``train_features`` (N, D) and
    ``train_labels`` (N,), scored on the test pair. ``normalize``: scale
    every feature vector to unit L2 norm first, as the paper does. Returns
    ``(accuracy on the test set in [0, 1], the fitted classifier)``; the
    classifier expects features normalised the same way."""
    try:
        from sklearn.svm import LinearSVC
    except ImportError as exc:
        raise ImportError(f"linear_classifier needs scikit-learn, which is not installed ({exc}); "
                          f"{_SKLEARN_HINT}") from None
    x_train = _feature_matrix(train_features, "train_features")
    x_test = _feature_matrix(test_features, "test_features")
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"test_features: expected {x_train.shape[1]} features per row (as "
                         f"train_features), got {x_test.shape[1]}")
    y_train = _labels(train_labels, len(x_train), "train_labels")
    y_test = _labels(test_labels, len(x_test), "test_labels")
    if len(np.unique(y_train)) < 2:
        raise ValueError("train_labels: expected at least two classes to separate")
    C = check_real(C, "C", low=0.0, low_open=True)
    if normalize:
        x_train, x_test = _l2_normalised(x_train), _l2_normalised(x_test)
    classifier = LinearSVC(C=C, random_state=0, max_iter=10000)
    classifier.fit(x_train, y_train)
    accuracy = float(np.mean(classifier.predict(x_test) == y_test))
    return accuracy, classifier

"""The ``deepconv features`` command: a trained network's features of a
folder of images, nearest neighbours, the first layer's filters, and a
linear SVM on the features (see :mod:`deepconv.features`).

Files written in ``--out``:

- ``features.npy`` (float32 (N, D)), ``labels.npy`` (int64 (N,)) and
  ``classes.json`` (class name -> label) of the ``--data`` images, in
  :class:`~deepconv.data.folder.ImageFolder` order;
- ``filters.png``: the first convolution's filters;
- with ``--query``: ``query_features.npy``, ``neighbours.png`` (a row per
  query image: the image, then its ``--k`` nearest ``--data`` images) and
  ``neighbours.json`` (the same as paths and distances);
- with ``--svm-test``: ``svm.json``; the accuracy is also printed.

Every image is rescaled isotropically (smaller side ``--scale``), centre
cropped to ``--crop-size`` and has the ``--mean`` subtracted before it
enters the network.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from deepconv.checkpoint import atomic_write, atomic_write_json
from deepconv.command_common import (
    UsageError,
    at_least,
    checkpoint_classes,
    load_trained_model,
    option,
    parse_rgb,
)
from deepconv.data.folder import ImageFolder
from deepconv.data.transforms import CenterCrop, Compose, Rescale, SubtractMean, mean_rgb
from deepconv.features import (
    _target,
    extract_features,
    filter_grid,
    first_conv_weight,
    linear_classifier,
    nearest_neighbours,
    neighbours_grid,
    save_png,
)

__all__ = ["add_features_arguments", "features_command"]

_PROG = "deepconv features"


def add_features_arguments(parser):
    """The options of ``deepconv features`` (added to an argparse parser)."""
    parser.add_argument("--model", required=True,
                        help="a function in deepconv.models, as the checkpoint was trained with")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra keyword argument for the model function (repeatable; VALUE "
                        "read as JSON when it parses); num_classes defaults to the checkpoint's")
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="the trained weights (a deepconv checkpoint)")
    parser.add_argument("--data", required=True, metavar="TRAIN_DIR",
                        help="images, one sub-folder per class: the features and the images "
                        "searched for neighbours (and the SVM's training set)")
    parser.add_argument("--query", metavar="QUERY_DIR",
                        help="images (one sub-folder per class, any names) whose nearest "
                        "--data images to show in neighbours.png")
    parser.add_argument("--k", type=int, default=5,
                        help="neighbours per query (default %(default)s)")
    parser.add_argument("--scale", type=int, default=256,
                        help="rescale the smaller image side to this (default %(default)s)")
    parser.add_argument("--crop-size", type=int, default=224,
                        help="then take the central crop of this size (default %(default)s)")
    parser.add_argument("--mean", default="train", metavar="train|none|R,G,B|FILE",
                        help="subtracted from every pixel: the mean RGB of the --data crops "
                        "(default), nothing, these three values, or the mean in the data.json "
                        "deepconv train wrote in its --out")
    parser.add_argument("--layer", metavar="NAME",
                        help="the layer (or Graph node) whose output to take (default: the "
                        "input of the last fully connected layer, e.g. fc7's after ReLU and "
                        "dropout)")
    parser.add_argument("--out", required=True, metavar="DIR", help="where to write the files")
    parser.add_argument("--svm-test", metavar="TEST_DIR",
                        help="fit a linear SVM on the --data features and print its accuracy "
                        "on these images (same class folder names)")
    parser.add_argument("--svm-c", type=float, default=1.0,
                        help="the SVM's regularisation C (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="default %(default)s")
    parser.add_argument("--device", default="emu:0", help="emu:N or cuda:N (default %(default)s)")
    return parser


def features_command(args) -> int:
    """Run ``deepconv features``; returns the exit status."""
    try:
        _run(args)
    except UsageError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    return 0


def _note(text):
    print(f"{_PROG}: {text}", file=sys.stderr, flush=True)


def _run(args):
    at_least(args.k, "--k")
    at_least(args.batch_size, "--batch-size")
    crop = at_least(args.crop_size, "--crop-size")
    if args.scale < crop:
        raise UsageError(f"--scale: expected >= --crop-size ({crop}), got {args.scale}")
    view = Compose(Rescale(args.scale), CenterCrop(crop))
    train_view = _folder(args.data, "--data", view)
    if args.query and args.k > len(train_view):
        raise UsageError(f"--k: expected at most the {len(train_view)} --data images, "
                          f"got {args.k}")
    model = _model(args, train_view, crop)
    with option("--layer"):
        target = _target(model, args.layer)
    mean, std = _mean(args.mean, train_view)
    with option("--out"):  # only once the other options are known to be good
        os.makedirs(args.out, exist_ok=True)
    to_net = Compose(view, SubtractMean(mean, std))
    train = _folder(args.data, "--data", to_net)
    with option("--data"):
        features = extract_features(model, train, args.layer, batch_size=args.batch_size)
    _note(f"{len(train)} images of {args.data}: {features.shape[1]}-d features of {target!r}")
    written = [_save_npy(args.out, "features.npy", features),
               _save_npy(args.out, "labels.npy", train.labels)]
    classes = os.path.join(args.out, "classes.json")
    train.save_class_index(classes)
    written.append(classes)
    with option("--model"):
        grid = filter_grid(first_conv_weight(model))
    written.append(_save_png(args.out, "filters.png", grid))
    if args.query:
        written += _neighbours(args, model, to_net, view, train, train_view, features)
    if args.svm_test:
        written.append(_svm(args, model, to_net, classes, train, features))
    print("wrote " + ", ".join(written))


def _folder(root, name, transform, class_index=None) -> ImageFolder:
    """An ImageFolder of at least one image (files are decoded when used)."""
    with option(name):
        folder = ImageFolder(root, transform, class_index=class_index, verify=False)
    if not len(folder):
        raise UsageError(f"{name}: no .jpg / .jpeg / .png images in the class folders of "
                         f"{root!r}")
    return folder


def _mean(text, train_view):
    """The --mean option as ``(mean RGB, std RGB or None)``."""
    value, std = parse_rgb(text, "--mean", {"train": "train", "none": "none"})
    if value == "none":
        return np.zeros(3), None
    if value == "train":
        # One pass over the crops; they all have one size, so the mean of the
        # per-image means is the mean over every pixel.
        with option("--data"):
            means = [mean_rgb([train_view[i][0]]) for i in range(len(train_view))]
        mean = np.mean(means, axis=0)
        _note(f"mean RGB of the --data crops: {np.round(mean, 2).tolist()}")
        return mean, None
    return np.asarray(value), std


def _model(args, train_view, crop):
    with option("--checkpoint"):
        classes = checkpoint_classes(args.checkpoint)
    return load_trained_model(args.model, args.model_arg, args.checkpoint, crop,
                              classes or train_view.num_classes, args.device)


def _neighbours(args, model, to_net, view, train, train_view, features) -> list:
    queries = _folder(args.query, "--query", to_net)
    with option("--query"):
        query_features = extract_features(model, queries, args.layer, batch_size=args.batch_size)
    with option("--k"):
        indices, distances = nearest_neighbours(query_features, features, args.k)
    # Only the images shown are loaded again (as crops, without the mean).
    shown = np.unique(indices)
    with option("--data"):
        neighbour_images = [train_view[int(i)][0] for i in shown]
    query_view = _folder(args.query, "--query", view)
    with option("--query"):
        query_images = [query_view[i][0] for i in range(len(query_view))]
    grid = neighbours_grid(query_images, neighbour_images, np.searchsorted(shown, indices))
    listing = [{"query": path, "neighbours": [_sample(train, i, d) for i, d in zip(row, dist)]}
               for (path, _), row, dist in zip(queries.samples, indices.tolist(), distances)]
    return [_save_npy(args.out, "query_features.npy", query_features),
            _save_png(args.out, "neighbours.png", grid),
            _save_json(args.out, "neighbours.json", listing)]


def _sample(folder, index, distance) -> dict:
    path, label = folder.samples[index]
    return {"image": path, "label": folder.classes[label], "distance": float(distance)}


def _svm(args, model, to_net, classes, train, features) -> str:
    test = _folder(args.svm_test, "--svm-test", to_net, class_index=classes)
    with option("--svm-test"):
        test_features = extract_features(model, test, args.layer, batch_size=args.batch_size)
        accuracy, _ = linear_classifier(features, train.labels, test_features, test.labels,
                                        C=args.svm_c)
    print(f"LinearSVC accuracy {100 * accuracy:.2f} % on {len(test)} images of {args.svm_test} "
          f"(fit on {len(train)} images of {args.data}, {features.shape[1]}-d features, "
          f"C={args.svm_c:g})")
    return _save_json(args.out, "svm.json", {
        "accuracy": accuracy, "test_images": len(test), "train_images": len(train),
        "features": int(features.shape[1]), "C": args.svm_c})


def _save_npy(out, name, array) -> str:
    path = os.path.join(out, name)
    atomic_write(path, lambda f: np.save(f, array))
    return path


def _save_png(out, name, image) -> str:
    path = os.path.join(out, name)
    save_png(path, image)
    return path


def _save_json(out, name, data) -> str:
    path = os.path.join(out, name)
    atomic_write_json(path, data)
    return path

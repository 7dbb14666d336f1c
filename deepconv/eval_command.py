"""The ``deepconv eval`` command: top-1 / top-k error of trained checkpoints
on a folder of images (ImageNet layout), under one or more test protocols of
:mod:`deepconv.evaluate`, with the wall time of each.

Example (a VGG trained at S = 256, evaluated at Q in {224, 256, 288})::

    deepconv eval --model vgg --model-arg config=\\"D\\" --checkpoint runs/vgg/best.safetensors \\
        --data val/ --protocol center,dense,dense+multicrop --train-scale 256 --mean imagenet

Pretrained weights (torchvision's, the VGG authors' Caffe models) are
evaluated with ``--weights FILE`` instead of ``--checkpoint``
(:func:`deepconv.interop.load_weights`)::

    deepconv eval --model alexnet_owt --weights alexnet-owt-7be5be79.pth --mean torchvision \\
        --data val/ --class-index imagenet_classes.json

Several ``--checkpoint`` (repeated, or a comma list) make an ensemble: the
softmax outputs of the members are averaged. The network is rebuilt from
``--model`` / ``--model-arg`` (as ``deepconv train`` builds it: num_classes
from the folder or ``--class-index``, 3 input channels, input size
``--crop-size``) and the checkpoint's weights are loaded into it.

Exit status: 0 after printing the results; 2 for a bad option (the message
names it): a missing or mismatched checkpoint, an unknown protocol, an empty
folder, a scale smaller than the crop, and so on.
"""

from __future__ import annotations

import json
import os
import sys
import types

from deepconv.backend import device as deepconv_device

from deepconv.command_common import (UsageError, at_least, load_trained_model, option, parse_rgb,
                                     rebuild_model)
from deepconv.evaluate import PROTOCOLS, dense_model, evaluate, vgg_scales

__all__ = ["IMAGENET_MEAN_RGB", "add_eval_arguments", "eval_command"]

# The mean RGB pixel of the ImageNet (ILSVRC-2012) training set, 0..255, as
# VGG subtracts it (and Caffe's reference models).
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)


def add_eval_arguments(parser):
    """The options of ``deepconv eval`` (added to an argparse parser)."""
    parser.add_argument("--model", required=True,
                        help="the function in deepconv.models the checkpoints were trained with, "
                        "e.g. vgg_small")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra keyword argument for the model function, as for deepconv "
                        "train (repeatable)")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", action="append", metavar="PATH",
                         help="a checkpoint written by deepconv train (repeatable, or a comma "
                         "list: several make an ensemble averaging their softmax outputs)")
    weights.add_argument("--weights", action="append", metavar="FILE",
                         help="pretrained weights instead of checkpoints (repeatable, or a comma "
                         "list, as --checkpoint): .safetensors (deepconv or torchvision names), "
                         "torchvision .pth (needs torch), Caffe .caffemodel (by layer name, "
                         "filters turned to RGB); e.g. --model alexnet_owt with torchvision's "
                         "alexnet weights and --mean torchvision")
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="images in the ImageNet layout: one sub-folder per class")
    parser.add_argument("--class-index", metavar="FILE",
                        help="JSON class index fixing the class order (e.g. the training set's); "
                        "default: the sorted sub-folder names")
    parser.add_argument("--protocol", action="append", metavar="NAME",
                        help=f"one of {', '.join(PROTOCOLS)} (repeatable, or a comma list: one "
                        "result row each; default center)")
    scales = parser.add_mutually_exclusive_group()
    scales.add_argument("--scales", metavar="Q[,Q...]",
                        help="test scales: each image is rescaled so that its smaller side is Q, "
                        "and the softmax is averaged over the scales (default 256)")
    scales.add_argument("--train-scale", metavar="S|SMIN,SMAX",
                        help="instead of --scales, VGG's multi-scale test sizes for this training "
                        "scale: S-32,S,S+32 for a fixed S; SMIN,(SMIN+SMAX)/2,SMAX for a jittered "
                        "one")
    parser.add_argument("--crop-size", type=int, default=224,
                        help="crop (and network input) size (default %(default)s)")
    parser.add_argument("--mean", default="none",
                        metavar="R,G,B|FILE|imagenet|torchvision|none",
                        help="mean RGB pixel (0..255) subtracted from every image: three numbers, "
                        "the data.json deepconv train wrote in its --out (its mean, and its "
                        "standard deviation if it standardised), 'imagenet' (%s: VGG's and "
                        "Caffe's models), 'torchvision' (torchvision's mean and std, for its "
                        "pretrained weights) or 'none' (default %%(default)s)"
                        % ",".join(str(v) for v in IMAGENET_MEAN_RGB))
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images cropped and classified together (default %(default)s)")
    parser.add_argument("--device", default="emu:0", help="emu:N or cuda:N (default %(default)s)")
    parser.add_argument("--k", type=int, default=5,
                        help="top-k error besides top-1 (default %(default)s)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="an image that cannot be decoded stops the command (raise) or is "
                        "left out with a warning (skip); default %(default)s")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON instead of a table")
    return parser


def eval_command(args) -> int:
    """Run ``deepconv eval``; returns the exit status."""
    try:
        setup = _setup(args)
    except (UsageError, ImportError) as exc:
        print(f"deepconv eval: {exc}", file=sys.stderr)
        return 2
    print(f"deepconv eval: {args.model} on {args.data} ({len(setup.dataset)} images, "
          f"{setup.dataset.num_classes} classes), {_members_text(setup.checkpoints)}, "
          f"device {args.device}, crop {args.crop_size}, mean {args.mean}", file=sys.stderr)
    topk = f"top{args.k}_error"
    if not args.json:  # top-k is capped at the number of classes, as evaluate() does
        shown_k = min(args.k, setup.dataset.num_classes)
        print(_row(("protocol", "scales", "views", "top-1 err", f"top-{shown_k} err", "seconds",
                    "images/s")), flush=True)
    rows = []
    for protocol in setup.protocols:
        result = evaluate(setup.models, setup.dataset, protocol, args.crop_size, setup.scales,
                          preprocess=setup.preprocess, k=args.k, batch_size=args.batch_size)
        row = {key: result[key] for key in ("protocol", "views", "top1_error", topk, "images",
                                             "seconds", "images_per_s")}
        row["scales"] = list(setup.scales)
        rows.append(row)
        if not args.json:  # each row as soon as it is known: a protocol can take a while
            print(_row((protocol, ",".join(map(str, row["scales"])), row["views"],
                        f"{100 * row['top1_error']:.2f} %", f"{100 * row[topk]:.2f} %",
                        f"{row['seconds']:.3f}", f"{row['images_per_s']:.2f}")), flush=True)
    if args.json:
        print(json.dumps({"model": args.model, "checkpoints": setup.checkpoints, "data": args.data,
                          "images": len(setup.dataset), "classes": setup.dataset.num_classes,
                          "crop_size": args.crop_size, "mean": setup.mean, "std": setup.std,
                          "k": args.k,
                          "device": args.device, "results": rows}, indent=2))
    return 0


def _row(cells) -> str:
    widths = (16, 12, 6, 10, 10, 9, 10)
    return "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def _members_text(checkpoints) -> str:
    if len(checkpoints) == 1:
        return "1 checkpoint"
    return f"an ensemble of {len(checkpoints)} checkpoints"


# --- turning the options into a dataset, models and protocols ------------------------


def _setup(args):
    """Check every option before any image is classified (a slow pass should
    not end in a usage error); raises UsageError naming the option."""
    at_least(args.crop_size, "--crop-size")
    at_least(args.batch_size, "--batch-size")
    at_least(args.k, "--k")
    protocols = _protocols(args.protocol or ["center"])
    scales = _scales(args)
    mean, std = _mean(args.mean)
    flag = "--checkpoint" if args.checkpoint else "--weights"
    checkpoints = _split(args.checkpoint or args.weights or [])
    if not checkpoints:
        raise UsageError(f"{flag}: expected at least one path")
    for path in checkpoints:
        if not os.path.isfile(path):
            raise UsageError(f"{flag}: no such file: {path}")
    with option("--device", also=(RuntimeError,)):
        device = deepconv_device(args.device)
    dataset = _dataset(args)
    load = load_trained_model if args.checkpoint else _pretrained_model
    models = [load(args.model, args.model_arg, path, args.crop_size, dataset.num_classes, device)
              for path in checkpoints]
    if any(p in ("dense", "dense+multicrop") for p in protocols):
        try:
            dense_model(models[0], args.crop_size)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--protocol: {args.model} cannot be evaluated densely: {exc}") from None
    from deepconv.data.transforms import SubtractMean

    return types.SimpleNamespace(
        protocols=protocols, scales=scales, mean=mean, std=std, checkpoints=checkpoints,
        dataset=dataset, models=models,
        preprocess=SubtractMean(mean, std) if mean is not None else None)


def _pretrained_model(name, model_args, path, crop_size, num_classes, device):
    """``--model`` built as for a checkpoint, holding ``--weights`` ``path``
    (:func:`deepconv.interop.load_weights`); errors name the option."""
    from deepconv.interop import load_weights

    model = rebuild_model(name, model_args, crop_size, num_classes, device)
    try:
        load_weights(model, path)
    except (ValueError, TypeError, OSError) as exc:
        raise UsageError(f"--weights: {exc} (the network: --model {name} for {num_classes} "
                         f"classes, --crop-size {crop_size})") from None
    return model


def _split(values) -> list:
    """Repeated options whose values may also be comma lists, flattened."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _protocols(values) -> list:
    protocols = []
    for name in _split(values):
        if name not in PROTOCOLS:
            raise UsageError(f"--protocol: expected one of {', '.join(PROTOCOLS)}, got {name!r}")
        if name not in protocols:
            protocols.append(name)
    if not protocols:
        raise UsageError(f"--protocol: expected one of {', '.join(PROTOCOLS)}")
    return protocols


def _ints(text, name) -> list:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"{name}: expected comma-separated integers, got {text!r}") from None
    return values


def _scales(args) -> tuple:
    if args.train_scale is not None:
        values = _ints(args.train_scale, "--train-scale")
        with option("--train-scale"):
            scales = vgg_scales(values[0] if len(values) == 1 else values)
        name = "--train-scale"
    else:
        scales = tuple(_ints(args.scales or "256", "--scales"))
        name = "--scales"
    if min(scales) < args.crop_size:
        raise UsageError(f"{name}: every test scale must be >= --crop-size ({args.crop_size}), "
                         f"got {','.join(map(str, scales))}")
    return scales


def _mean(text):
    """``(mean, std)``: what --mean says to subtract (None: nothing), and to
    divide by (a data.json of a standardised training; else None)."""
    if text.lower() == "torchvision":  # its weights want x / 255 standardised per channel
        from deepconv.interop import TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB

        return list(TORCHVISION_MEAN_RGB), list(TORCHVISION_STD_RGB)
    return parse_rgb(text, "--mean", {"none": None, "imagenet": list(IMAGENET_MEAN_RGB)})


def _dataset(args):
    from deepconv.data.folder import ImageFolder, read_class_index

    if args.class_index is not None:
        with option("--class-index"):
            read_class_index(args.class_index)
    try:
        dataset = ImageFolder(args.data, class_index=args.class_index, on_error=args.on_error)
    except ValueError as exc:  # ImageLoadError too: the folder is decoded once up front
        hint = " (--on-error skip leaves bad images out)" if args.on_error == "raise" else ""
        raise UsageError(f"--data: {exc}{hint}") from None
    if len(dataset) == 0:
        raise UsageError(f"--data: {args.data} holds no readable images (.jpg, .jpeg, .png) in "
                         "its class sub-folders")
    return dataset

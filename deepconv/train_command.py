"""The ``deepconv train`` command: options, the dataset, model, loaders and
optimiser they describe, and :func:`deepconv.train.fit` on one device, on
several devices of this process (``--devices``) or across MPI ranks
(``mpiexec -n N deepconv train``)."""

from __future__ import annotations

import inspect
import json
import os
import sys
import time

from deepconv.train import ResumeError, TrainingDiverged, fit

__all__ = ["DEFAULTS", "add_train_arguments", "build_model", "model_arguments", "train_command"]

# Defaults sized for a laptop without a GPU: the digits set on the emulator.
DEFAULTS = dict(model="digits_net", data="digits", epochs=12, batch_size=32, lr=0.02,
                momentum=0.9, weight_decay=5e-4, lr_step=8, lr_gamma=0.1, device="emu:0",
                out="runs/digits", seed=0, workers=1)


def add_train_arguments(parser):
    """The options of ``deepconv train`` (added to an argparse parser)."""
    d = DEFAULTS
    parser.add_argument("--model", default=d["model"],
                        help="a function in deepconv.models, e.g. vgg_small, or digits_net: a "
                        "small VGG-style net for 8x8 images (default %(default)s)")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="extra keyword argument for the model function (repeatable; "
                        "VALUE read as JSON when it parses, else as a string)")
    parser.add_argument("--data", default=d["data"], metavar="digits|DIR",
                        help="'digits' (scikit-learn's 8x8 digits; the default), or a folder "
                        "holding train/ and val/, each one sub-folder of images per class "
                        "(the ImageNet layout; needs Pillow)")
    parser.add_argument("--crop-size", type=int, default=224,
                        help="with a folder: the random training crop and the network's input "
                        "size (default %(default)s; AlexNet: 227)")
    parser.add_argument("--scale", default="256", metavar="S|SMIN,SMAX",
                        help="with a folder: rescale each training image's smaller side to S, "
                        "or to a random S in [SMIN, SMAX] (VGG's scale jittering); validation "
                        "uses S, or (SMIN+SMAX)/2 (default %(default)s)")
    parser.add_argument("--pca-color", action="store_true",
                        help="with a folder: AlexNet's PCA colour augmentation")
    parser.add_argument("--standardize", action="store_true",
                        help="with a folder: divide each channel by the training set's standard "
                        "deviation after subtracting its mean (unit-variance inputs, as "
                        "torchvision's Normalize; AlexNet and VGG only subtracted the mean)")
    parser.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                        help="with a folder: an unreadable image stops training (raise, the "
                        "default) or is left out with a warning (skip)")
    parser.add_argument("--epochs", type=int, default=d["epochs"], help="default %(default)s")
    parser.add_argument("--batch-size", type=int, default=d["batch_size"], help="default %(default)s")
    parser.add_argument("--lr", type=float, default=d["lr"], help="learning rate (default %(default)s)")
    parser.add_argument("--momentum", type=float, default=d["momentum"], help="default %(default)s")
    parser.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                        help="default %(default)s")
    parser.add_argument("--lr-step", type=int, default=d["lr_step"], metavar="EPOCHS",
                        help="multiply the lr by --lr-gamma every EPOCHS epochs (0: constant lr; "
                        "default %(default)s)")
    parser.add_argument("--lr-gamma", type=float, default=d["lr_gamma"], help="default %(default)s")
    parser.add_argument("--device", default=d["device"],
                        help="emu:N or cuda:N (default %(default)s); under MPI every rank's "
                        "device, where plain 'cuda' means cuda:<the rank's index on its node>")
    parser.add_argument("--devices", default=None, metavar="DEV,DEV,...",
                        help="data parallel over these devices of this process, e.g. "
                        "emu:0,emu:1 (each global batch cut into one shard per device)")
    parser.add_argument("--mpi", action="store_true",
                        help="data parallel across MPI ranks even if the launcher was not "
                        "detected (it is, from PMI_SIZE / OMPI_COMM_WORLD_SIZE / "
                        "MV2_COMM_WORLD_SIZE > 1: `mpiexec -n 2 deepconv train ...`)")
    parser.add_argument("--out", default=d["out"],
                        help="directory for logs, plot and checkpoints (default %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from OUT/checkpoint.safetensors")
    parser.add_argument("--seed", type=int, default=d["seed"],
                        help="seeds the weights, the data order and the split (default %(default)s)")
    parser.add_argument("--workers", type=int, default=d["workers"],
                        help="background threads assembling batches (default %(default)s)")
    return parser


def train_command(args) -> int:
    """Run ``deepconv train``; returns the exit status.

    Under an MPI launcher (``mpiexec -n N deepconv train ...``, detected by
    :func:`~deepconv.parallel.launched_world_size`, or with ``--mpi``) each
    rank trains its shard of every batch
    (:class:`~deepconv.parallel.DistributedDataParallel`); only rank 0
    prints, logs and writes to ``--out``. An error on any rank stops every
    rank (``MPI_Abort``, non-zero exit) instead of leaving them waiting.
    """
    from deepconv.parallel import launched_world_size, mpi_world, run_or_abort

    if not (args.mpi or launched_world_size() > 1):
        return _train(args, None)
    try:
        comm = mpi_world()
    except ImportError as exc:
        print(f"deepconv train: {exc}", file=sys.stderr)
        return 2
    return run_or_abort(comm, lambda: _train(args, comm), prog="deepconv train")


def _train(args, comm) -> int:
    """``deepconv train`` in this process: alone, or as one rank of ``comm``."""
    from deepconv import data as datasets
    from deepconv.optim import SGD, StepLR
    from deepconv.parallel import DataParallel, DistributedDataParallel

    started = time.perf_counter()
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    try:
        devices = _device_list(args.devices, comm)
        device = devices[0] if devices else _rank_device(args.device, comm)
        train_set, test_set, image_shape, data_info = _datasets(args)
        model = build_model(args.model, model_arguments(args.model_arg), image_shape,
                            train_set.num_classes, args.seed, device, data_name=args.data)
        if devices:
            strategy, where = DataParallel(model, devices), f"devices {','.join(devices)}"
        elif comm is not None:
            strategy = DistributedDataParallel(model, comm)
            where = f"{size} MPI ranks, device {device} on rank 0"
        else:
            strategy, where = None, f"device {device}"
        # pin_memory: batches land in reused (page-locked on CUDA) host buffers;
        # fit is done with batch k before it asks for k + 2, their lifetime.
        train_loader = datasets.DataLoader(train_set, args.batch_size, shuffle=True,
                                           seed=args.seed, num_workers=args.workers,
                                           shard=(rank, size) if comm is not None else None,
                                           pin_memory=True)
        # digits: the whole test set in one batch; images: training-sized batches
        test_loader = datasets.DataLoader(test_set, 500 if data_info is None else args.batch_size,
                                          pin_memory=True)
        optimizer = SGD(model, args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
        schedule = StepLR(optimizer, args.lr_step, args.lr_gamma) if args.lr_step > 0 else None
    except (ImportError, ValueError, TypeError) as exc:
        print(f"deepconv train: {exc}", file=sys.stderr)
        return 2
    if rank == 0:
        print(f"deepconv train: {args.model} on {args.data} ({len(train_set)} train, "
              f"{len(test_set)} test images), {where}, {args.epochs} epochs, out {args.out}",
              file=sys.stderr)
    if rank == 0 and data_info is not None:
        _write_data_info(args.out, data_info, train_set)
    try:
        result = fit(model, optimizer, train_loader, test_loader, args.epochs, device,
                     args.out, schedule=schedule, resume=args.resume, strategy=strategy)
    except TrainingDiverged as exc:
        if rank == 0:  # every rank stops on the same global loss: one message is enough
            print(f"deepconv train: stopped: {exc}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ResumeError) as exc:
        # the user's file, not a bug here: one line, no traceback
        print(f"deepconv train: {exc}", file=sys.stderr)
        return 2
    if rank != 0:
        return 0
    final = result["final"]
    wall = time.perf_counter() - started
    if result["epochs_trained"] == 0:
        print(f"deepconv train: nothing to do (the checkpoint is already at epoch "
              f"{final['epoch'] if final else 0} of {args.epochs})")
        if final is None:
            return 0
    print(f"test accuracy {100 * (1 - final['val_top1_error']):.2f} % "
          f"(top-1 error {100 * final['val_top1_error']:.2f} %, top-5 error "
          f"{100 * final['val_top5_error']:.2f} %) after {final['epoch']} epochs; "
          f"wall time {wall:.1f} s; logs and checkpoints in {args.out}")
    return 0


def _datasets(args):
    """``(train, test, image shape, info)``: the digits, or ``--data``'s
    train/ and val/ folders preprocessed as the options say (``info`` as
    :attr:`deepconv.data.pipeline.FolderSets.info`; None for digits)."""
    from deepconv import data as datasets

    if args.data in datasets.DATASETS:
        train = datasets.DATASETS[args.data]("train", seed=args.seed)
        return train, datasets.DATASETS[args.data]("test", seed=args.seed), train.image_shape, None
    if not os.path.isdir(args.data):
        known = ", ".join(datasets.DATASETS)
        raise ValueError(f"--data: expected {known} or a folder holding train/ and val/, got "
                         f"{args.data!r} (no such folder)")
    try:
        scale = [int(part) for part in args.scale.split(",")]
    except ValueError:
        raise ValueError(f"--scale: expected S or SMIN,SMAX (integers), got {args.scale!r}") from None
    from deepconv.data.pipeline import folder_sets

    try:
        sets = folder_sets(args.data, args.crop_size, scale, pca_color=args.pca_color,
                           standardize=args.standardize, seed=args.seed, on_error=args.on_error)
    except ValueError as exc:
        text = str(exc)
        for name, option in (("crop_size", "--crop-size"), ("scale", "--scale"), ("root", "--data")):
            if text.startswith(f"{name}:"):
                raise ValueError(option + text[len(name):]) from None
        raise ValueError(f"--data: {text}") from None
    return sets.train, sets.val, sets.image_shape, sets.info


def _write_data_info(out, info, train_set):
    """OUT/data.json and OUT/classes.json: how to evaluate what is trained."""
    from deepconv.data.pipeline import DATA_INFO, write_data_info

    os.makedirs(out, exist_ok=True)
    write_data_info(os.path.join(out, DATA_INFO), info)
    train_set.save_class_index(os.path.join(out, "classes.json"))


def _device_list(text, comm):
    """``--devices``: None, or the list of device names."""
    if text is None:
        return None
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise ValueError(f"--devices: expected a comma-separated list such as emu:0,emu:1, "
                         f"got {text!r}")
    if comm is not None:
        raise ValueError("--devices: not under MPI, where each rank trains on one device "
                         "(--device)")
    return devices


def _rank_device(spec, comm):
    """``--device``; under MPI, plain ``cuda`` becomes ``cuda:<local rank>``
    (the rank's index among the ranks on its machine)."""
    if comm is None or spec != "cuda":
        return spec
    from mpi4py import MPI

    return f"cuda:{comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()}"


def model_arguments(pairs) -> dict:
    """``--model-arg KEY=VALUE`` strings as keyword arguments (VALUE read
    as JSON when it parses, else kept as a string)."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg: expected KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def build_model(name, kwargs, image_shape, num_classes, seed, device, *, data_name="the data"):
    """``name`` from :mod:`deepconv.models` for (C, H, W) ``image_shape``
    inputs and ``num_classes`` classes, called with the keyword arguments
    it accepts among num_classes, input_size (H), in_channels (C), seed and
    device, plus ``kwargs``; ValueError naming ``--model`` if the network
    does not take such images (``data_name`` says whose they are)."""
    from deepconv import models

    factory = getattr(models, name, None)
    if factory is None or name.startswith("_") or not callable(factory):
        known = sorted(n for n in getattr(models, "__all__", []) if callable(getattr(models, n)))
        raise ValueError(f"--model: no model named {name!r} (known: {', '.join(known)})")
    image_shape = tuple(image_shape)
    channels, height, _ = image_shape
    offered = dict(num_classes=num_classes, input_size=height, in_channels=channels,
                   seed=seed, device=device)
    accepted = inspect.signature(factory).parameters
    call = {k: v for k, v in offered.items() if k in accepted}
    call.update(kwargs)
    model = factory(**call)
    try:
        model.output_shape((1,) + image_shape)
    except ValueError as exc:
        raise ValueError(f"--model: {name} does not take {data_name}'s images "
                         f"{image_shape}: {exc}") from None
    return model

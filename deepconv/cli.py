"""The ``deepconv`` command (also ``python -m deepconv``).

Subcommands:
  info    what is installed: backends, devices, CUDA status, emulator settings
  train   train a model on a dataset (see deepconv.train_command)
  eval    error of checkpoints on an image folder (see deepconv.eval_command)
  features  a trained net's features, nearest neighbours and first-layer filters as
            PNGs, a linear SVM on the features (see deepconv.features_command)
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys

import numpy as np

import deepconv
from deepconv.backend import cuda as cuda_backend
from deepconv.backend.device import EMU_DEVICES_ENV, emu_device_count
from deepconv.backend.emu import _emu


def collect_info() -> dict:
    """Everything ``deepconv info`` reports, as JSON-ready data."""
    return {
        "version": deepconv.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cupy": _cupy_version(),
        "backends": {"emu": _emu_info(), "cuda": _cuda_info()},
        "cuda_available": deepconv.cuda_available(),
        "cuda_unavailable_reason": cuda_backend.unavailable_reason(),
        "devices": [str(d) for d in deepconv.devices()],
        "emulator": dict(_emu.settings(), virtual_devices=emu_device_count()),
    }


def _cupy_version():
    try:
        import cupy
    except Exception:
        return None
    return getattr(cupy, "__version__", "unknown")


def _emu_info() -> dict:
    return {"built": True, "path": getattr(_emu, "__file__", None)}


def _cuda_info() -> dict:
    module = cuda_backend.module_or_none()
    if module is None:
        return {"built": False, "import_error": cuda_backend.import_error()}
    info = {"built": True, "path": getattr(module, "__file__", None)}
    # _cuda promises not to raise without a GPU; guard anyway so that `info`
    # always prints, since it is what a user runs when something is wrong.
    for key, call in (
        ("architectures", lambda: list(module.architectures())),
        ("runtime_version", lambda: int(module.runtime_version())),
        ("device_count", lambda: int(module.device_count())),
        ("status", lambda: str(module.device_status())),
    ):
        try:
            info[key] = call()
        except Exception as exc:
            info[key] = None
            info[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
    info["devices"] = [_device_properties(module, i) for i in range(info["device_count"] or 0)]
    return info


def _device_properties(module, index: int) -> dict:
    try:
        return dict(module.device_properties(index), index=index)
    except Exception as exc:
        return {"index": index, "error": f"{type(exc).__name__}: {exc}"}


def _cuda_version_text(version) -> str:
    if not isinstance(version, int) or version <= 0:
        return "unknown"
    return f"{version // 1000}.{version % 1000 // 10}"


def _yes_no(flag) -> str:
    return "yes" if flag else "no"


def format_info(info: dict) -> str:
    """``collect_info()`` as the text ``deepconv info`` prints."""
    emu, cuda = info["backends"]["emu"], info["backends"]["cuda"]
    lines = [
        f"deepconv {info['version']}",
        f"python {info['python']}, numpy {info['numpy']}, cupy {info['cupy'] or 'not installed'}",
        "backends:",
        f"  emu:  built: yes ({emu['path']})",
    ]
    if cuda["built"]:
        lines += [
            f"  cuda: built: yes ({cuda['path']})",
            f"        architectures: {' '.join(cuda['architectures'] or []) or 'unknown'}",
            f"        CUDA runtime: {_cuda_version_text(cuda['runtime_version'])}",
            f"        device status: {cuda['status']}",
        ]
        for props in cuda["devices"]:
            lines.append(f"        cuda:{props['index']}: " + ", ".join(
                f"{k}={v}" for k, v in props.items() if k != "index"
            ))
    else:
        lines.append(f"  cuda: built: no ({cuda['import_error']})")
    lines += [
        f"devices: {' '.join(info['devices'])}",
        f"CUDA available: {_yes_no(info['cuda_available'])}"
        + (f" ({info['cuda_unavailable_reason']})" if not info["cuda_available"] else ""),
        "emulator:",
    ]
    settings = dict(info["emulator"])
    virtual = settings.pop("virtual_devices")
    for key, value in settings.items():
        lines.append(f"  {key}: {_setting_text(value)}")
    lines.append(f"  virtual devices: {virtual} (set with {EMU_DEVICES_ENV})")
    return "\n".join(lines)


def _setting_text(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def cmd_info(args) -> int:
    info = collect_info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(format_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepconv", description="deepconv: CUDA convnets with a CPU emulator."
    )
    parser.add_argument("--version", action="version", version=f"deepconv {deepconv.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = commands.add_parser(
        "info", help="show version, backends, devices and emulator settings",
        description="Show the version, the backends built, the devices found, the CUDA "
        "status and the emulator settings.",
    )
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(handler=cmd_info)
    # The commands that do the work: (name, module, help, description); each
    # module has add_<name>_arguments(parser) and <name>_command(args).
    for name, module, summary, description in (
        ("train", "deepconv.train_command", "train a model on a dataset",
         "Train a model from deepconv.models on a dataset, with logs, a plot and checkpoints in "
         "--out."),
        ("eval", "deepconv.eval_command", "top-1 / top-5 error of checkpoints on a folder of images",
         "Evaluate checkpoints (one, or several as an ensemble) of a model from deepconv.models "
         "on an image folder under the AlexNet / VGG test protocols; prints top-1 / top-k error "
         "and the time taken per protocol."),
        ("features", "deepconv.features_command",
         "features, nearest neighbours, filters; a linear SVM on features",
         "Extract a trained network's last hidden layer features of an image folder; write the "
         "nearest training images of query images and the first layer's filters as PNGs; "
         "optionally score a linear SVM on the features (AlexNet section 6.1, VGG appendix B)."),
    ):
        command = commands.add_parser(name, help=summary, description=description)
        code = importlib.import_module(module)
        getattr(code, f"add_{name}_arguments")(command)
        command.set_defaults(handler=getattr(code, f"{name}_command"))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

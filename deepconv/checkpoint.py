"""Checkpoints in the safetensors format, read and written here with numpy
alone (no pickle: loading a file never runs code from it).

The format (https://huggingface.co/docs/safetensors), as written here::

    8 bytes    N, the header length, unsigned little-endian
    N bytes    JSON: {"<tensor name>": {"dtype": "F32", "shape": [..],
               "data_offsets": [begin, end]}, ..., "__metadata__": {str: str}},
               padded with spaces so that the data starts 8-byte aligned
    the rest   every tensor's bytes, little-endian, C order; offsets count
               from the first data byte, tensors back to back, no holes

Tensors are stored largest item size first (then by name), as the
reference implementation does, so each one starts aligned for its dtype.

:func:`save_file` / :func:`load_file` are the format; :func:`save_checkpoint`
/ :func:`load_checkpoint` put a whole training state in one file: the
model's parameters (``model.<name>``), the optimiser's arrays (momentum
buffers, ``optimizer/<path>``), and as JSON in ``__metadata__`` the rest of
the optimiser's and the schedule's state and the caller's training state
(epoch, step, loader seed and epoch, dropout counters, ...). A deepconv file
also records a SHA-256 of its data bytes, checked on load, so a flipped bit
is an error rather than a silently different model.

Saving is atomic: the file is written under a temporary name in the same
directory, flushed and fsync'ed, renamed over the target, and the directory
fsync'ed. A crash (or SIGKILL) at any moment leaves either the previous file
or the new one, never a mix; at worst a stray ``.<name>.*.tmp`` file stays,
which the next save of that name removes once it is STALE_SECONDS old.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time

import numpy as np

import deepconv
from deepconv.backend import asarray, backend_for, device_of, is_array, to_numpy

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODEL_PREFIX",
    "atomic_write",
    "atomic_write_json",
    "load_checkpoint",
    "load_file",
    "read_header",
    "read_metadata",
    "save_checkpoint",
    "save_file",
]

FORMAT = "deepconv.checkpoint"
FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 100 * 1024 * 1024  # as the reference reader: a larger "header" is not one

_DTYPES = {  # safetensors name -> numpy dtype (little-endian)
    "F64": "<f8", "F32": "<f4", "F16": "<f2",
    "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_CHECKSUM_KEY = "deepconv.data_sha256"
MODEL_PREFIX = "model."  # a model parameter p is stored as tensor "model.p"
_OPTIMIZER_PREFIX = "optimizer/"


# --- the file format ------------------------------------------------------------------


def save_file(tensors: dict, path, metadata: dict | None = None) -> None:
    """Write ``tensors`` (name -> array; numpy, or any device array, which
    is copied to the host) and ``metadata`` (str -> str) to ``path`` as a
    safetensors file, atomically (see the module docstring)."""
    path = os.fspath(path)
    arrays = {}
    for name, arr in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"tensors: invalid tensor name {name!r}")
        host = np.asarray(to_numpy(arr) if is_array(arr) else arr)
        dtype = host.dtype.newbyteorder("<") if host.dtype.byteorder == ">" else host.dtype
        if dtype not in _NAMES:
            raise TypeError(f"tensors[{name!r}]: dtype {host.dtype} has no safetensors equivalent")
        arrays[name] = np.asarray(host, dtype=dtype, order="C")  # keeps 0-d shapes
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata: keys and values must be str, got {key!r}: {type(value).__name__}")

    order = sorted(arrays, key=lambda n: (-arrays[n].dtype.itemsize, n))
    header, offset, digest = {}, 0, hashlib.sha256()
    for name in order:
        arr = arrays[name]
        header[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        digest.update(_bytes_of(arr))
    meta[_CHECKSUM_KEY] = digest.hexdigest()
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)

    def write(f):
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for name in order:
            f.write(_bytes_of(arrays[name]))

    atomic_write(path, write)


def _bytes_of(arr: np.ndarray) -> memoryview:
    return memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else memoryview(b"")


def atomic_write(path, write) -> None:
    """Write ``path`` all or nothing: ``write(f)`` fills a temporary file
    beside it (binary), which is fsynced and renamed over ``path``. A crash
    at any moment leaves either the old file or the new one, never a part;
    the temporary file a crash leaves behind is removed by a later save of
    the same path (:func:`_remove_stale_temporaries`)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(directory, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


# tempfile.mkstemp's names: prefix, 8 characters of this alphabet, suffix.
_TEMPORARY_NAME = r"\.{}\.[a-z0-9_]{{8}}\.tmp"
STALE_SECONDS = 600  # a save writes or renames its file well within this


def _remove_stale_temporaries(directory, basename):
    """Delete ``.<basename>.XXXXXXXX.tmp`` files (our naming) left by a
    crashed save. Only those untouched for STALE_SECONDS: a fresh one may
    belong to a save running now in another process."""
    pattern = re.compile(_TEMPORARY_NAME.format(re.escape(basename)))
    now = time.time()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not pattern.fullmatch(name):
            continue
        full = os.path.join(directory, name)
        try:
            if now - os.lstat(full).st_mtime > STALE_SECONDS:
                os.unlink(full)
        except OSError:
            pass  # gone already, or not ours to remove


def atomic_write_json(path, data) -> None:
    """``data`` as indented JSON text (UTF-8, newline-terminated) at
    ``path``, through :func:`atomic_write`."""
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories
    cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fail(path, what):
    raise ValueError(f"{path}: {what}")


def _parse_json(path, text, where, what=None):
    """``json.loads(text)``; a ValueError naming the file and ``where`` if it
    is not JSON or is nested deeper than Python's recursion limit."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(path, f"{what or 'corrupted metadata: ' + where} is not JSON ({exc})")
    except RecursionError:
        _fail(path, f"corrupted: {where} is JSON nested too deeply to read")


def _read_header(f, path, size):
    if size < 8:
        _fail(path, f"not a safetensors file: {size} bytes, too short for the 8-byte header "
                    "length (empty or truncated)")
    n = int.from_bytes(f.read(8), "little")
    if n > size - 8 or n > MAX_HEADER_BYTES:
        _fail(path, f"not a safetensors file, or truncated: the header length {n} exceeds the "
                    f"{size - 8} bytes that follow it")
    raw = f.read(n)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(path, f"not a safetensors file: its header is not UTF-8 JSON ({exc})")
    header = _parse_json(path, text, "the header", "not a safetensors file: its header")
    if not isinstance(header, dict):
        _fail(path, f"not a safetensors file: the header is a JSON {type(header).__name__}, "
                    "not an object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        _fail(path, "corrupted header: __metadata__ must map str to str")
    return header, meta, 8 + n


def _check_entries(header, path, data_bytes):
    """Validate every tensor entry; returns [(name, dtype, shape, begin, end)]
    sorted by offset, after checking they tile the data exactly."""
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            _fail(path, f"corrupted header: tensor {name!r} needs exactly dtype, shape, data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if dtype not in _DTYPES:
            _fail(path, f"tensor {name!r}: unsupported dtype {dtype!r} (supported: "
                        f"{', '.join(_DTYPES)})")
        if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            _fail(path, f"corrupted header: tensor {name!r} has shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1]):
            _fail(path, f"corrupted header: tensor {name!r} has data_offsets {offsets!r}")
        nbytes = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
        if offsets[1] - offsets[0] != nbytes:
            _fail(path, f"corrupted header: tensor {name!r} of {dtype} {shape} needs {nbytes} "
                        f"bytes, its data_offsets {offsets} span {offsets[1] - offsets[0]}")
        entries.append((name, np.dtype(_DTYPES[dtype]), tuple(shape), offsets[0], offsets[1]))
    entries.sort(key=lambda e: (e[3], e[4]))
    end = 0
    for name, _, _, begin, stop in entries:
        if begin != end:
            _fail(path, f"corrupted header: tensor {name!r} starts at byte {begin}, expected {end} "
                        "(tensors must be back to back)")
        end = stop
    if end > data_bytes:
        _fail(path, f"truncated: the header describes {end} bytes of tensor data, the file holds "
                    f"{data_bytes}")
    if end < data_bytes:
        _fail(path, f"corrupted: {data_bytes - end} bytes after the last tensor")
    return entries


def read_header(path) -> tuple:
    """``(tensors, metadata)`` of a safetensors file from its header alone:
    name -> ``{"dtype", "shape", "data_offsets"}``, and the str -> str
    ``__metadata__``."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        header, meta, _ = _read_header(f, path, os.fstat(f.fileno()).st_size)
    return header, meta


def read_metadata(path) -> dict:
    """The ``__metadata__`` of a safetensors file (reads the header only)."""
    return read_header(path)[1]


def load_file(path) -> tuple:
    """``(tensors, metadata)`` of a safetensors file: name -> new numpy
    array (writable, native byte order), and the str -> str metadata.

    Any problem (too short, truncated, a header that is not safetensors
    JSON, offsets that do not tile the data, a checksum mismatch in a file
    deepconv wrote) raises ValueError naming the file and what is wrong.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header, meta, start = _read_header(f, path, size)
        entries = _check_entries(header, path, size - start)
        digest = hashlib.sha256()
        tensors = {}
        for name, dtype, shape, begin, stop in entries:
            arr = np.empty(shape, dtype=dtype)
            f.seek(start + begin)
            view = _bytes_of(arr)
            if arr.size and f.readinto(view) != stop - begin:
                _fail(path, f"truncated while reading tensor {name!r}")
            digest.update(view)
            tensors[name] = arr.astype(dtype.newbyteorder("="), copy=False)
    expected = meta.get(_CHECKSUM_KEY)
    if expected is not None and expected != digest.hexdigest():
        _fail(path, "corrupted: the tensor data does not match the checksum recorded when it "
                    f"was written ({_CHECKSUM_KEY})")
    return tensors, meta


# --- training state -------------------------------------------------------------------


def save_checkpoint(path, model, optimizer=None, schedule=None, state=None) -> None:
    """Save a training state to ``path`` (atomically).

    ``model``: its ``named_parameters()`` are stored as tensors ``model.<name>``.
    ``optimizer`` / ``schedule``: their ``state_dict()`` (arrays become
    tensors ``optimizer/<path>``; everything else JSON). ``state``: a
    JSON-serialisable dict of the caller's own counters (epoch, step,
    loader and dropout state, best error...), returned by
    :func:`load_checkpoint`.
    """
    tensors = {MODEL_PREFIX + name: arr for name, arr in model.named_parameters()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "deepconv_version": deepconv.__version__,
        "parameters": json.dumps([name for name, _ in model.named_parameters()]),
        "state": json.dumps(state or {}, allow_nan=True),
    }
    if optimizer is not None:
        metadata["optimizer"] = json.dumps(_flatten(optimizer.state_dict(), _OPTIMIZER_PREFIX,
                                                    tensors))
    if schedule is not None:
        metadata["schedule"] = json.dumps(_flatten(schedule.state_dict(), "schedule/", tensors))
    save_file(tensors, path, metadata)


def load_checkpoint(path, model=None, optimizer=None, schedule=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote; returns its ``state``.

    The model's parameters are overwritten in place (whoever holds them,
    e.g. an optimiser, sees the new values); names, shapes and dtypes must
    match the checkpoint exactly. The optimiser's and schedule's states are
    rebuilt (arrays on the model's device) and handed to their
    ``load_state_dict``. Nothing is changed unless the whole file is valid:
    the model's tensors, and the optimiser's and schedule's sections through
    their ``check_state_dict`` (where they have one), are all checked before
    anything is copied. A bad entry raises ValueError naming the file and it.
    """
    path = os.fspath(path)
    tensors, meta = load_file(path)
    if meta.get("format") != FORMAT:
        _fail(path, f"a safetensors file but not a deepconv checkpoint (metadata 'format' is "
                    f"{meta.get('format')!r}, expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        _fail(path, f"checkpoint format version {meta.get('format_version')!r}; this deepconv "
                    f"reads version {FORMAT_VERSION}")
    state = _parse_json(path, meta.get("state", "{}"), "metadata 'state'")
    if not isinstance(state, dict):
        _fail(path, f"corrupted metadata 'state': expected a JSON object, got a "
                    f"{_json_kind(state)}")
    sections = {}
    for key, target in (("optimizer", optimizer), ("schedule", schedule)):
        if target is None:
            continue
        if key not in meta:
            _fail(path, _ABSENT[key])
        skeleton = _parse_json(path, meta[key], f"metadata {key!r}")
        _check_section(path, key, target, _unflatten(skeleton, tensors, None, path))
        sections[key] = (target, skeleton)
    targets = _match_parameters(path, model, tensors) if model is not None else []
    # Everything is valid: copy.
    for dst, host in targets:
        _copy_into(dst, host)
    device = device_of(targets[0][0]) if targets else None
    for key, (target, skeleton) in sections.items():
        target.load_state_dict(_unflatten(skeleton, tensors, device, path))
    return state


_ABSENT = {"optimizer": "holds no optimiser state (saved without an optimizer)",
           "schedule": "holds no schedule state (saved without a schedule)"}


def _check_section(path, key, target, value):
    """The optimiser's / schedule's own check of its state, its complaint
    turned into a ValueError naming the file and the section."""
    check = getattr(target, "check_state_dict", None)
    if check is None:
        return
    try:
        check(value)
    except (ValueError, TypeError) as exc:
        _fail(path, f"{key} section: {exc}")


def _json_kind(value):
    return {list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _match_parameters(path, model, tensors):
    params = model.named_parameters()
    stored = {k[len(MODEL_PREFIX):] for k in tensors if k.startswith(MODEL_PREFIX)}
    names = [name for name, _ in params]
    missing = [n for n in names if n not in stored]
    extra = sorted(stored - set(names))
    if missing or extra:
        _fail(path, "its parameters do not match the model: "
                    + "; ".join(part for part in (
                        f"missing {missing}" if missing else "",
                        f"unexpected {extra}" if extra else "") if part))
    targets = []
    for name, arr in params:
        host = tensors[MODEL_PREFIX + name]
        if tuple(host.shape) != tuple(arr.shape) or host.dtype != arr.dtype:
            _fail(path, f"parameter {name!r} is {host.dtype} {tuple(host.shape)} in the file, "
                        f"{arr.dtype} {tuple(arr.shape)} in the model")
        targets.append((arr, host))
    return targets


def _copy_into(dst, host):
    dev = device_of(dst)
    be = backend_for(dev)
    src = asarray(host, device=dev)
    with be.activate(dev):
        dst[...] = src


# JSON skeletons: arrays are replaced by {"__tensor__": name}; tuples and
# dicts with non-str keys are tagged so that they come back as they went in.

def _flatten(value, prefix, tensors):
    if is_array(value) or isinstance(value, np.ndarray):
        name = prefix.rstrip("/") or "tensor"
        tensors[name] = value
        return {"__tensor__": name}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _flatten(v, f"{prefix}{k}/", tensors) for k, v in value.items()}
        return {"__items__": [[_flatten(k, f"{prefix}key{i}/", tensors),
                               _flatten(v, f"{prefix}{i}/", tensors)]
                              for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        items = [_flatten(v, f"{prefix}{i}/", tensors) for i, v in enumerate(value)]
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"state_dict: cannot store a {type(value).__name__} at {prefix.rstrip('/')!r}")


def _unflatten(value, tensors, device, path):
    if isinstance(value, list):
        return [_unflatten(v, tensors, device, path) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__tensor__"}:
        name = value["__tensor__"]
        if name not in tensors:
            _fail(path, f"corrupted: the state refers to a missing tensor {name!r}")
        host = tensors[name]
        return host if device is None else asarray(host, device=device)
    if set(value) == {"__tuple__"}:
        return tuple(_unflatten(v, tensors, device, path) for v in value["__tuple__"])
    if set(value) == {"__items__"}:
        return {_unflatten(k, tensors, device, path): _unflatten(v, tensors, device, path)
                for k, v in value["__items__"]}
    return {k: _unflatten(v, tensors, device, path) for k, v in value.items()}

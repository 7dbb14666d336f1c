"""The layer base class, and the argument checks the layers share.

A layer is explicit forward / backward, as in cuda-convnet and Caffe (no
autograd tape): ``forward(x)`` keeps what its backward needs, ``backward(dy)``
returns ``dx`` and overwrites ``layer.grads``. Outputs live in buffers the
layer owns and reuses while the input shape stays the same, so a training
step allocates nothing once warmed up: an array a layer returns is valid
until that layer's next forward (or backward).

Parameters are allocated by ``reset_parameters(rng)``. A layer built with
``materialize=False`` only knows its parameter shapes (enough to count
parameters or infer output shapes of a full-size VGG without allocating
half a gigabyte); ``reset_parameters`` allocates it later.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from deepconv.backend import backend_for, device_of, is_array, to_device, to_numpy
from deepconv.backend import device as _device

__all__ = ["IncompatibleKeys", "Layer", "count_parameters", "load_named_arrays"]


class Layer:
    """Base class: validate in ``__init__``, then ``reset_parameters(rng)``;
    ``forward(x)``, ``backward(dy)`` -> dx (filling ``grads``),
    ``parameters()`` (arrays) / ``named_parameters()`` ((name, array)
    pairs), ``gradients()`` / ``named_gradients()`` likewise,
    ``state_dict()`` / ``load_state_dict()``, ``summary(input_shape)``,
    ``train()`` / ``eval()``, ``to(device)``, ``output_shape(input_shape)``.

    Subclasses with parameters list their shapes in ``parameter_shapes()``
    and keep the arrays in ``self.params`` (name -> array) and their
    gradients, same shapes, in ``self.grads``.
    """

    num_inputs = 1
    num_outputs = 1

    def __init__(self, dtype="float32", device="emu:0"):
        self.dtype = _float_dtype(dtype)
        self.device = _device(device, arg="device")
        self.training = True
        self.params: dict = {}
        self.grads: dict = {}
        self._buffers: dict = {}

    # --- parameters -------------------------------------------------------------

    def parameter_shapes(self) -> dict:
        """name -> shape of every parameter (known without allocating)."""
        return {}

    @property
    def materialized(self) -> bool:
        return len(self.params) == len(self.parameter_shapes())

    def reset_parameters(self, rng=None):
        """(Re)initialise the parameters (allocating them if needed); ``rng``
        is a ``numpy.random.Generator``, an int seed, or None (fresh entropy).
        Layers without parameters do nothing."""
        return self

    def named_parameters(self) -> list:
        """``[(name, array), ...]`` in a fixed order (as PyTorch's)."""
        self._require_materialized()
        return [(name, self.params[name]) for name in self.parameter_shapes()]

    def parameters(self) -> list:
        """The parameter arrays, in :meth:`named_parameters`' order."""
        return [arr for _, arr in self.named_parameters()]

    def named_gradients(self) -> list:
        """``[(name, array), ...]``, the gradients of :meth:`named_parameters`,
        in the same order; overwritten (not accumulated) by every backward."""
        self._require_materialized()
        return [(name, self.grads[name]) for name in self.parameter_shapes()]

    def gradients(self) -> list:
        """The gradient arrays, in :meth:`named_parameters`' order."""
        return [arr for _, arr in self.named_gradients()]

    def state_dict(self) -> dict:
        """``{name: array}``: the live parameter arrays (on their device), as
        PyTorch's ``state_dict()`` holds its tensors; copy them (e.g. with
        :func:`deepconv.to_numpy`) to keep a snapshot."""
        return dict(self.named_parameters())

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy ``state_dict`` (name -> numpy / cupy array, a torch tensor or
        anything with ``__dlpack__`` or ``__array__``) into the parameters,
        in place; returns ``(missing_keys, unexpected_keys)``.

        ``strict`` (default): the names must be exactly
        :meth:`named_parameters`' (ValueError listing the missing and the
        unexpected ones). Shapes must match (ValueError naming the key);
        values of another float dtype are converted, non-float ones are a
        TypeError naming the key. Everything is checked before anything is
        copied, so a bad dict leaves the layer as it was.
        """
        return load_named_arrays(self, state_dict, strict)

    def summary(self, input_shape, file=None) -> list:
        """Print a table of the leaf layers for an input of ``input_shape``:
        output shapes, parameter counts and FLOPs (multiply-adds x 2, of
        Conv2d and Linear; other layers count 0), then the totals. Works on
        models built with ``materialize=False``. Returns the rows as dicts
        (``name, type, output_shape, parameters, flops``). ``file``: where
        to print (default stdout; ``False``: do not print)."""
        from deepconv.nn.summary import summarize

        return summarize(self, input_shape, file)

    def _set_parameters(self, host_values: dict):
        """Install host (numpy) initial values, allocating the parameters and
        zeroed gradients on the layer's device on first use."""
        be = backend_for(self.device)
        for name, shape in self.parameter_shapes().items():
            value = np.asarray(host_values[name], dtype=self.dtype).reshape(shape)
            if name not in self.params:
                self.params[name] = be.empty(shape, self.dtype, self.device)
                self.grads[name] = be.empty(shape, self.dtype, self.device)
                with be.activate(self.device):
                    self.grads[name].fill(0)
            _copy_into(self.params[name], value, self.device)

    def _require_materialized(self):
        if not self.materialized:
            raise RuntimeError(
                f"{type(self).__name__}: parameters not allocated (built with "
                "materialize=False); call reset_parameters(rng) first"
            )

    # --- modes and placement ----------------------------------------------------

    def train(self, mode: bool = True):
        """Training mode (dropout drops); returns self."""
        if not isinstance(mode, (bool, np.bool_)):
            raise TypeError(f"mode: expected a bool, got {type(mode).__name__}")
        self.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode (dropout is the identity or AlexNet's scaling)."""
        return self.train(False)

    def to(self, device):
        """Move the parameters and gradients to ``device`` (an explicit,
        counted transfer); returns self. Inputs must then be on that device."""
        dev = _device(device, arg="device")
        for store in (self.params, self.grads):
            for name, arr in store.items():
                store[name] = to_device(arr, dev)
        self.device = dev
        self._buffers.clear()
        return self

    # --- computation --------------------------------------------------------------

    def forward(self, x):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def output_shape(self, input_shape):
        """The output shape for an input of ``input_shape``, computed
        symbolically (nothing is allocated or launched); ValueError if the
        input does not fit the layer."""
        return tuple(input_shape)

    def __call__(self, *args):
        return self.forward(*args)

    def _buffer(self, key, shape, dtype, device):
        """A layer-owned array, reused while shape, dtype and device stay."""
        shape = tuple(int(d) for d in shape)
        buf = self._buffers.get(key)
        if buf is None or buf.shape != shape or buf.dtype != dtype or device_of(buf) != device:
            buf = backend_for(device).empty(shape, dtype, device)
            self._buffers[key] = buf
        return buf

    def _buffer_like(self, key, arr, shape=None):
        return self._buffer(key, arr.shape if shape is None else shape, arr.dtype, device_of(arr))

    # --- description ----------------------------------------------------------------

    def extra_repr(self) -> str:
        """The arguments that differ from their defaults, ``a=1, b=2``."""
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class IncompatibleKeys(NamedTuple):
    """What :meth:`Layer.load_state_dict` returns (PyTorch's names)."""

    missing_keys: list
    unexpected_keys: list


def load_named_arrays(layer, state_dict, strict=True) -> IncompatibleKeys:
    """:meth:`Layer.load_state_dict` for any layer or model that has
    ``named_parameters()``: check all, then copy each value in place."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict: expected a mapping of name -> array, got "
                        f"{type(state_dict).__name__}")
    check_bool(strict, "strict")
    own = layer.named_parameters()
    names = {name for name, _ in own}
    missing = [name for name, _ in own if name not in state_dict]
    unexpected = [key for key in state_dict if key not in names]
    if strict and (missing or unexpected):
        parts = [f"missing keys {missing}" if missing else "",
                 f"unexpected keys {unexpected}" if unexpected else ""]
        raise ValueError("state_dict: does not match the model's parameters: "
                         + "; ".join(p for p in parts if p))
    values = []
    for name, arr in own:
        if name not in state_dict:
            continue
        host = host_array(state_dict[name], f"state_dict[{name!r}]")
        if tuple(host.shape) != tuple(arr.shape):
            raise ValueError(f"state_dict[{name!r}]: expected shape {tuple(arr.shape)}, got "
                             f"{tuple(host.shape)}")
        if host.dtype.kind != "f":
            raise TypeError(f"state_dict[{name!r}]: expected a float array (the parameter is "
                            f"{arr.dtype}), got {host.dtype}")
        values.append((arr, host))
    for arr, host in values:
        _copy_into(arr, np.asarray(host, dtype=arr.dtype), device_of(arr))
    return IncompatibleKeys(missing, unexpected)


def host_array(value, name: str) -> np.ndarray:
    """A numpy view or copy of ``value``: a deepconv (numpy / cupy) array,
    a torch tensor (detached; through DLPack, no torch import), anything
    with ``__dlpack__`` on the CPU, or with ``__array__``."""
    if is_array(value):
        return to_numpy(value)
    if hasattr(value, "detach") and callable(value.detach):  # torch: drop autograd
        value = value.detach()
        if getattr(value, "device", None) is not None and str(value.device) != "cpu":
            value = value.cpu()
    try:
        if hasattr(value, "__dlpack__"):
            return np.from_dlpack(value)
        if hasattr(value, "__array__") or isinstance(value, (list, tuple, numbers.Number)):
            return np.asarray(value)
    except (TypeError, ValueError, BufferError, RuntimeError) as exc:
        raise TypeError(f"{name}: cannot read it as an array ({exc})") from None
    raise TypeError(f"{name}: expected an array or a tensor, got {type(value).__name__}")


def count_parameters(layer) -> int:
    """Number of parameters (scalars) of a layer or model, from the shapes
    alone: works on models built with ``materialize=False``."""
    return sum(math.prod(shape) for shape in layer.parameter_shapes().values())


# --- shared helpers -----------------------------------------------------------------


def _copy_into(dst, host, device):
    """Copy the numpy array ``host`` into ``dst`` (on ``device``) in place,
    so that whoever holds ``dst`` (an optimiser, a view) sees the values."""
    be = backend_for(device)
    src = be.copy_in(np.ascontiguousarray(host), device)
    with be.activate(device):
        dst[...] = src


def make_rng(rng):
    """A numpy Generator from a Generator, an int seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng: expected a numpy.random.Generator, an int seed or None, got {type(rng).__name__}")


def _float_dtype(dtype) -> np.dtype:
    if dtype is None:  # numpy reads None as float64; a layer wants a choice
        raise TypeError("dtype: expected float32 or float64, got None")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_int(value, name: str, minimum: int = 1) -> int:
    if not is_int(value):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


def check_pair(value, name: str, minimum: int) -> tuple:
    """An int or an (h, w) pair of ints, each >= ``minimum``."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(is_int(v) for v in items):
        raise TypeError(f"{name}: expected an int or a pair of ints (h, w), got {value!r}")
    if min(items) < minimum:
        raise ValueError(f"{name}: expected values >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def check_real(value, name: str, low=None, high=None, low_open=False, high_open=False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    value = float(value)
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        rule = " and ".join(part for part in (lo, hi) if part) or "finite"
        raise ValueError(f"{name}: expected a finite value {rule}, got {value}")
    return value


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def check_input(x, name: str, ndim=None):
    """A layer input: a numpy / cupy array of ``ndim`` dimensions (the ops
    check dtype, contiguity and device)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    if ndim is not None and x.ndim not in ((ndim,) if is_int(ndim) else ndim):
        want = ndim if is_int(ndim) else " or ".join(str(n) for n in ndim)
        raise ValueError(f"{name}: expected {want} dimensions, got shape {tuple(x.shape)}")
    return x


def check_shape(shape, name: str, ndim=None) -> tuple:
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of ints, got {shape!r}") from None
    if not all(is_int(d) and d >= 0 for d in dims):
        raise ValueError(f"{name}: expected non-negative ints, got {shape!r}")
    if ndim is not None and len(dims) not in ((ndim,) if is_int(ndim) else ndim):
        raise ValueError(f"{name}: expected {ndim} dimensions, got {dims}")
    return tuple(int(d) for d in dims)


def short_pair(pair):
    """``3`` for ``(3, 3)``, the pair itself otherwise (for reprs)."""
    return pair[0] if pair[0] == pair[1] else pair


def args_repr(**pairs) -> str:
    """``a=1, b=2`` for the (value, default) pairs whose value differs."""
    return ", ".join(f"{k}={v!r}" for k, (v, default) in pairs.items() if v != default)

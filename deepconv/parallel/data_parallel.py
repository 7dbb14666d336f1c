"""Data parallelism over several devices of one process.

One replica of the model per device; each step the global batch is cut into
contiguous shards (one per device, sizes as ``numpy.array_split``: the first
``B % D`` shards one example longer), every replica runs forward, loss and
backward on its shard, the gradients are summed onto the first device in a
fixed order, one optimiser step runs there, and the updated weights are
copied back to the other replicas. Every copy between devices goes through
:func:`deepconv.to_device`, so :func:`deepconv.transfer_stats` sees it.

Bytes moved per :meth:`DataParallel.train_step` (``P`` parameters of
``itemsize`` bytes, ``D`` devices, batch and labels on the first device)::

    gradient gather   P * itemsize * (D - 1)       device d -> device 0
    weight broadcast  P * itemsize * (D - 1)       device 0 -> device d
    input shards      sum over d >= 1 of n_d * (x bytes per example
                                                + y bytes per example)

(:func:`data_parallel_step_bytes`). The same ``2 P (D - 1)`` total is what a
ring all-reduce moves over all links together, so the figure also stands for
the multi-process case.

Agreement with one device on the same global batch: each replica scales its
loss gradient by ``n_d / B`` (the gradient of its share of the batch mean),
so the summed gradient is the gradient of the global mean loss. It is not
bitwise the one-device result: the batch sum inside the weight-gradient
kernels becomes ``D`` partial sums added afterwards, a different reduction
order (and ``(1 / n_d) * (n_d / B)`` is not always exactly ``1 / B``).
Dropout layers draw their masks per replica, so a network with dropout
trains differently (still correctly) from its one-device self.
"""

from __future__ import annotations

import copy

import numpy as np

from deepconv.backend import asarray, backend_for, device_of, is_array, to_device
from deepconv.backend import device as _device
from deepconv.nn import Layer, SoftmaxCrossEntropy
from deepconv.nn.loss import finite_loss

__all__ = ["DataParallel", "data_parallel_step_bytes", "shard_sizes"]


def shard_sizes(batch: int, num_devices: int) -> list:
    """Examples per device for a batch of ``batch``: contiguous shards, the
    first ``batch % num_devices`` one example longer."""
    base, extra = divmod(batch, num_devices)
    return [base + (1 if d < extra else 0) for d in range(num_devices)]


def data_parallel_step_bytes(num_params: int, num_devices: int, itemsize: int = 4, *,
                             batch: int = 0, example_bytes: int = 0) -> int:
    """Bytes one data-parallel step moves between devices (closed form):
    ``2 * num_params * itemsize * (D - 1)`` for the gradient gather and the
    weight broadcast, plus, when the batch starts on the first device, the
    shards sent to the others: ``(batch - n_0) * example_bytes`` (an
    example's input and label bytes)."""
    gather_and_broadcast = 2 * num_params * itemsize * (num_devices - 1)
    if batch == 0:
        return gather_and_broadcast
    return gather_and_broadcast + (batch - shard_sizes(batch, num_devices)[0]) * example_bytes


class DataParallel:
    """Replicas of a model on ``devices``, trained in lock step.

    ::

        dp = DataParallel(lambda dev: digits_net(device=dev), ["emu:0", "emu:1"])
        opt = SGD(dp.module, lr=0.1)           # the first device's parameters
        loss = dp.train_step(x, y, opt)        # x, y: the global batch

    ``model``: a :class:`~deepconv.nn.Layer` whose parameters are on
    ``devices[0]`` (the other replicas are deep copies moved with
    ``Layer.to``, which also moves their gradient buffers), or a factory
    ``device -> model`` called once per device (its replicas' own weights
    are overwritten by device 0's). ``devices``: distinct device names or
    :class:`~deepconv.Device` objects, at least one.

    :attr:`module` is the first replica: build the optimiser over it,
    evaluate and checkpoint it. ``loss``: the criterion class used per
    replica (default :class:`~deepconv.nn.SoftmaxCrossEntropy`).
    """

    def __init__(self, model, devices, *, loss=SoftmaxCrossEntropy):
        self.devices = _check_devices(devices)
        if isinstance(model, Layer):
            first = model
        elif callable(model):
            first = _built(model, self.devices[0])
        else:
            raise TypeError(f"model: expected a deepconv.nn.Layer or a callable device -> model, "
                            f"got {type(model).__name__}")
        _check_on(first, self.devices[0], "model")
        self.replicas = [first]
        for dev in self.devices[1:]:
            if isinstance(model, Layer):
                self.replicas.append(copy.deepcopy(first).to(dev))
            else:
                replica = _built(model, dev)
                _check_on(replica, dev, "model")
                _check_same_shapes(first, replica)
                self.replicas.append(replica)
        if not isinstance(model, Layer):
            self.broadcast_parameters()
        self.criteria = [loss() for _ in self.devices]

    @property
    def module(self):
        """The replica on the first device (the one the optimiser updates)."""
        return self.replicas[0]

    def train(self, mode: bool = True):
        for replica in self.replicas:
            replica.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # --- one step, in its parts ----------------------------------------------------

    def scatter(self, x, *, arg="x") -> list:
        """``x`` cut along axis 0 into one contiguous shard per device, each
        moved (explicitly) to its device; ValueError if the batch has fewer
        examples than there are devices."""
        if not is_array(x):
            raise TypeError(f"{arg}: expected an array, got {type(x).__name__}")
        sizes = shard_sizes(x.shape[0] if x.ndim else 0, len(self.devices))
        if x.ndim == 0 or min(sizes) == 0:
            raise ValueError(f"{arg}: expected a batch of at least {len(self.devices)} examples "
                             f"(one per device), got shape {tuple(x.shape)}")
        shards, start = [], 0
        for dev, n in zip(self.devices, sizes):
            shards.append(asarray(x[start:start + n], device=dev))
            start += n
        return shards

    def forward_backward(self, x, y) -> float:
        """Forward, loss and backward on every replica (gradients left on
        each replica, each that of its share of the global mean loss);
        returns the global mean loss."""
        xs, ys = self.scatter(x, arg="x"), self.scatter(y, arg="y")
        if xs[0].shape[0] != ys[0].shape[0] or x.shape[0] != y.shape[0]:
            raise ValueError(f"y: expected {x.shape[0]} labels (one per example of x), "
                             f"got shape {tuple(y.shape)}")
        batch = x.shape[0]
        total = 0.0
        for replica, criterion, xd, yd in zip(self.replicas, self.criteria, xs, ys):
            share = xd.shape[0] / batch
            total += float(criterion.forward(replica.forward(xd), yd)) * share
            replica.backward(criterion.backward(share))
        return total

    def reduce_gradients(self):
        """Sum every replica's gradients into the first replica's, in the
        fixed order device 0 + 1 + 2 + ... (each copied to device 0 first)."""
        home = self.devices[0]
        be = backend_for(home)
        targets = self.replicas[0].gradients()
        for replica in self.replicas[1:]:
            for acc, g in zip(targets, replica.gradients()):
                moved = to_device(g, home)
                with be.activate(home):
                    acc += moved

    def broadcast_parameters(self):
        """Copy the first replica's parameters into every other replica (in
        place, so optimisers or views holding them stay valid)."""
        source = self.replicas[0].parameters()
        for dev, replica in zip(self.devices[1:], self.replicas[1:]):
            be = backend_for(dev)
            for w0, w in zip(source, replica.parameters()):
                moved = to_device(w0, dev)
                with be.activate(dev):
                    w[...] = moved

    def train_step(self, x, y, optimizer) -> float:
        """One data-parallel SGD step on the global batch ``(x, y)``:
        :meth:`forward_backward`, :meth:`reduce_gradients`,
        ``optimizer.step()`` (over :attr:`module`), :meth:`broadcast_parameters`.
        Returns the global mean loss."""
        loss = finite_loss(self.forward_backward(x, y))
        self.reduce_gradients()
        optimizer.step()
        self.broadcast_parameters()
        return loss

    def step_bytes(self, batch: int = 0, example_bytes: int = 0) -> int:
        """:func:`data_parallel_step_bytes` for this model and these devices."""
        params = self.module.parameters()
        count = sum(int(np.prod(w.shape)) for w in params)
        itemsize = params[0].dtype.itemsize if params else 4
        return data_parallel_step_bytes(count, len(self.devices), itemsize, batch=batch,
                                        example_bytes=example_bytes)

    def __repr__(self):
        names = ", ".join(str(d) for d in self.devices)
        return f"DataParallel({type(self.module).__name__}, devices=[{names}])"


def _check_devices(devices) -> list:
    if isinstance(devices, (str, bytes)) or not hasattr(devices, "__iter__"):
        raise TypeError(f"devices: expected a list of devices, got {type(devices).__name__}")
    found = [_device(d, arg=f"devices[{i}]") for i, d in enumerate(devices)]
    if not found:
        raise ValueError("devices: expected at least one device")
    if len(set(found)) != len(found):
        raise ValueError(f"devices: expected distinct devices, got {[str(d) for d in found]}")
    return found


def _built(factory, dev):
    model = factory(dev)
    if not isinstance(model, Layer):
        raise TypeError(f"model: the factory returned {type(model).__name__}, not a deepconv.nn.Layer")
    return model


def _check_on(model, dev, arg):
    for name, w in model.named_parameters():
        where = device_of(w)
        if where != dev:
            raise ValueError(f"{arg}: parameter {name!r} is on {where}, expected {dev}; "
                             "move the model with model.to(device) first")


def _check_same_shapes(first, other):
    a = [(n, tuple(w.shape), w.dtype) for n, w in first.named_parameters()]
    b = [(n, tuple(w.shape), w.dtype) for n, w in other.named_parameters()]
    if a != b:
        raise ValueError("model: the factory built replicas with different parameters "
                         "(names, shapes or dtypes) on different devices")

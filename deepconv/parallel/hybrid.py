"""Hybrid parallelism in one process (Krizhevsky 2014, "One weird trick for
parallelizing convolutional neural networks"): the convolutional layers
data parallel, the fully connected layers model parallel.

The model is a :class:`~deepconv.nn.Sequential` whose convolutional part
ends with a :class:`~deepconv.nn.Flatten`, followed by Linear, ReLU and
Dropout layers, the last a Linear (VGG, one-tower AlexNet, the small
variants). On ``D`` devices:

- the conv part is replicated (a :class:`~deepconv.parallel.DataParallel`
  over it), each replica running its contiguous shard of the batch;
- every Linear is cut by output units: device ``d`` holds rows
  ``[o_d, o_{d+1})`` of the weight and bias (``shard_sizes(out, D)``);
- forward: each device receives the whole batch of a FC layer's input
  (fc6: every device's conv-feature shard, rows; later layers: every
  device's slice of units, columns), applies the ReLU / Dropout layers
  before its slice (on the whole tensor, so dropout draws the one-device
  mask), and computes its units; the logits' slices are gathered onto the
  first device for the loss;
- backward: the logits' gradient slices go back to their owners; each
  device's input gradient is a partial sum (over its units) for the whole
  batch, of which every owner receives its part from every device and
  sums them in the fixed order device 0 + 1 + ...; the conv replicas
  backpropagate their shard, and their gradients are summed onto the
  first device in a fixed order (as DataParallel);
- the optimiser (over :class:`Hybrid` itself: the first replica's conv
  parameters and every device's FC slices) updates each tensor where it
  lives, then the conv weights are broadcast.

Every copy between devices goes through :func:`deepconv.to_device`; the
bytes per step are :func:`~deepconv.parallel.hybrid_step_bytes` (conv
parameters twice, FC inputs twice, logits twice, input shards once).

Agreement with a one-device step of the same model on the same global
batch holds to rounding: a FC layer's sum over input features runs in
one kernel either way, but the input gradient's sum over units becomes
``D`` partial sums, and the conv weight gradients ``D`` batch partial sums.
The ReLU and dropout masks are applied to the partial input gradients
before they are summed (a multiplication by 0 / 1, or by the kept scale).
"""

from __future__ import annotations

import copy

import numpy as np

from deepconv.backend import asarray, backend_for, to_device, to_numpy
from deepconv.backend import device as _device
from deepconv.nn import Dropout, Flatten, Linear, ReLU, Sequential, SoftmaxCrossEntropy
from deepconv.nn.loss import finite_loss
from deepconv.parallel.data_parallel import DataParallel, shard_sizes
from deepconv.parallel.placement import hybrid_step_bytes

__all__ = ["Hybrid", "allgather", "gather", "reduce_scatter", "scatter"]

_FC_LAYERS = (Linear, ReLU, Dropout)


# --- exchanges: one array per device, cut along ``axis`` into ``sizes`` ------------


def _cut(axis, start, stop):
    return (slice(start, stop),) if axis == 0 else (slice(None), slice(start, stop))


def _offsets(sizes):
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return list(zip(starts, [s + n for s, n in zip(starts, sizes)]))


def _devices(devices):
    return [_device(d, arg=f"devices[{i}]") for i, d in enumerate(devices)]


def _joined_shape(parts, axis):
    shape = list(parts[0].shape)
    shape[axis] = sum(p.shape[axis] for p in parts)
    return tuple(shape)


def gather(parts, axis, device):
    """``parts`` (one per device) joined along ``axis`` on ``device``; the
    parts from other devices are copied there (counted)."""
    device = _device(device, arg="device")
    be = backend_for(device)
    out = be.empty(_joined_shape(parts, axis), parts[0].dtype, device)
    for part, (start, stop) in zip(parts, _offsets([p.shape[axis] for p in parts])):
        moved = to_device(part, device)
        with be.activate(device):
            out[_cut(axis, start, stop)] = moved
    return out


def allgather(parts, axis, devices):
    """:func:`gather` onto every device: each receives the others' parts."""
    return [gather(parts, axis, dev) for dev in devices]


def scatter(full, sizes, axis, devices):
    """``full`` cut along ``axis`` into ``sizes``, piece ``d`` on
    ``devices[d]`` (C-contiguous; copies to other devices counted)."""
    return [asarray(full[_cut(axis, start, stop)], device=dev)
            for dev, (start, stop) in zip(devices, _offsets(sizes))]


def reduce_scatter(partials, sizes, axis, devices):
    """Piece ``d`` (``sizes`` along ``axis``) of the sum of ``partials``
    (one full-size array per device), on ``devices[d]``: every device's
    piece is copied to the owner and summed in the fixed order 0 + 1 + ..."""
    out = []
    for dev, (start, stop) in zip(_devices(devices), _offsets(sizes)):
        be = backend_for(dev)
        shape = list(partials[0].shape)
        shape[axis] = stop - start
        acc = be.empty(tuple(shape), partials[0].dtype, dev)
        for i, partial in enumerate(partials):
            moved = to_device(partial[_cut(axis, start, stop)], dev)
            with be.activate(dev):
                if i == 0:
                    acc[...] = moved
                else:
                    acc += moved
        out.append(acc)
    return out


# --- the executor ---------------------------------------------------------------------


class _Stage:
    """One Linear of the FC part: the ReLU / Dropout layers applied to its
    (gathered) input, per device, and its slice of units per device."""

    def __init__(self, name, layer, pre, devices, first):
        self.name, self.full = name, layer
        self.units = shard_sizes(layer.out_features, len(devices))
        if min(self.units) == 0:
            raise ValueError(f"model: {name} has {layer.out_features} output units, fewer than the "
                             f"{len(devices)} devices")
        # device 0 runs the model's own ReLU / Dropout objects; the others
        # copies with the same seeds and steps, so every device draws the
        # one-device dropout mask
        self.pre = [pre] + [copy.deepcopy(pre) for _ in devices[1:]]
        self.slices = [_slice_linear(layer, start, stop, dev)
                       for dev, (start, stop) in zip(devices, _offsets(self.units))]
        self.first = first


def _slice_linear(layer, start, stop, dev):
    """A Linear holding output units [start, stop) of ``layer`` on ``dev``
    (weights copied; a transfer for devices other than the layer's)."""
    part = Linear(layer.in_features, stop - start, bias=layer.bias, relu=layer.relu,
                  input_grad=True, dtype=layer.dtype, device=dev, materialize=False)
    be = backend_for(dev)
    for name, shape in part.parameter_shapes().items():
        part.params[name] = be.empty(shape, layer.dtype, dev)
        part.grads[name] = be.empty(shape, layer.dtype, dev)
        moved = to_device(layer.params[name][start:stop], dev)
        with be.activate(dev):
            part.params[name][...] = moved
            part.grads[name].fill(0)
    part.training = layer.training
    return part


class Hybrid:
    """A model trained with its conv layers data parallel and its FC layers
    model parallel over ``devices`` (see the module docstring).

    ::

        hy = Hybrid(vgg_small("A", input_size=8), ["emu:0", "emu:1"])
        opt = SGD(hy, lr=0.01)                  # every device's parameters
        loss = hy.train_step(x, y, opt)         # x, y: the global batch
        model = hy.collect()                    # the one-device model, updated

    ``model``: a Sequential on ``devices[0]`` (conv layers, a Flatten, then
    Linear / ReLU / Dropout layers ending with a Linear). Its conv layers
    become the first replica; its Linear layers are copied into per-device
    slices and are stale until :meth:`collect`. ``forward(x)`` returns the
    logits on the first device, ``backward(dlogits)`` fills every device's
    gradients; :meth:`parameters` / :meth:`gradients` list them for an
    optimiser (FC slices named ``"fc6.weight@emu:1"``).
    """

    def __init__(self, model, devices, *, loss=SoftmaxCrossEntropy):
        if not isinstance(model, Sequential):
            raise TypeError(f"model: expected a deepconv.nn.Sequential, got {type(model).__name__}")
        children = model.children()
        flat = [i for i, (_, layer) in enumerate(children) if isinstance(layer, Flatten)]
        if not flat:
            raise ValueError("model: expected a Flatten between the conv layers and the FC layers")
        conv, fc = children[:flat[-1] + 1], children[flat[-1] + 1:]
        for name, layer in conv:
            if isinstance(layer, Linear):
                raise ValueError(f"model: Linear {name!r} comes before the last Flatten; the FC "
                                 "layers must all follow it")
        for name, layer in fc:
            if not isinstance(layer, _FC_LAYERS):
                raise ValueError(f"model: after the Flatten expected only Linear, ReLU and Dropout "
                                 f"layers, got {type(layer).__name__} {name!r}")
        if not fc or not isinstance(fc[-1][1], Linear):
            raise ValueError("model: expected the FC part to end with a Linear (the classifier)")
        self.model = model
        self.conv = DataParallel(Sequential(*conv, fuse=False), devices)  # checks devices
        self.devices = self.conv.devices
        self.stages, pre = [], []
        for name, layer in fc:
            if isinstance(layer, Linear):
                layer._require_materialized()
                self.stages.append(_Stage(name, layer, Sequential(*pre, fuse=False),
                                          self.devices, first=not self.stages))
                pre = []
            else:
                pre.append((name, layer))
        self.criterion = loss()
        self._batch = None

    # --- modes and parameters ---------------------------------------------------------

    def train(self, mode: bool = True):
        self.conv.train(mode)
        for stage in self.stages:
            for layer in stage.pre + stage.slices:
                layer.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def named_parameters(self) -> list:
        """The first conv replica's parameters, then every FC slice's
        (``"name.param@device"``), in a fixed order."""
        return self._named(lambda layer: layer.named_parameters())

    def parameters(self) -> list:
        return [arr for _, arr in self.named_parameters()]

    def named_gradients(self) -> list:
        return self._named(lambda layer: layer.named_gradients())

    def gradients(self) -> list:
        return [arr for _, arr in self.named_gradients()]

    def _named(self, listing):
        found = list(listing(self.conv.module))
        for stage in self.stages:
            for dev, part in zip(self.devices, stage.slices):
                found += [(f"{stage.name}.{p}@{dev}", arr) for p, arr in listing(part)]
        return found

    def assembled(self, kind="parameters") -> dict:
        """Host (numpy) copies of the whole model's ``"parameters"`` or
        ``"gradients"``, FC slices joined, under the model's names."""
        if kind not in ("parameters", "gradients"):
            raise ValueError(f"kind: expected 'parameters' or 'gradients', got {kind!r}")
        pick = (lambda layer: layer.named_parameters()) if kind == "parameters" else (
            lambda layer: layer.named_gradients())
        found = {n: np.array(to_numpy(a)) for n, a in pick(self.conv.module)}
        for stage in self.stages:
            for p, _ in pick(stage.slices[0]):
                found[f"{stage.name}.{p}"] = np.concatenate(
                    [np.array(to_numpy(dict(pick(part))[p])) for part in stage.slices])
        return {name: found[name] for name, _ in self.model.named_parameters()}

    def collect(self):
        """Copy the FC slices back into the model's Linear layers (counted
        transfers onto the first device) and return the model, whose conv
        layers are the first replica's: ready to evaluate or checkpoint."""
        home = self.devices[0]
        be = backend_for(home)
        for stage in self.stages:
            for part, (start, stop) in zip(stage.slices, _offsets(stage.units)):
                for p, arr in part.named_parameters():
                    moved = to_device(arr, home)
                    with be.activate(home):
                        stage.full.params[p][start:stop] = moved
        return self.model

    # --- one step ----------------------------------------------------------------------

    def forward(self, x):
        """Logits (B, K) on the first device for the global batch ``x``."""
        xs = self.conv.scatter(x, arg="x")
        self._batch = [shard.shape[0] for shard in xs]
        feats = [replica.forward(shard) for replica, shard in zip(self.conv.replicas, xs)]
        acts = allgather(feats, 0, self.devices)  # every device: the whole batch
        for stage in self.stages:
            outs = [part.forward(pre.forward(a)) for pre, part, a in zip(stage.pre, stage.slices, acts)]
            if stage is self.stages[-1]:
                return gather(outs, 1, self.devices[0])
            acts = allgather(outs, 1, self.devices)  # every device: all units

    def backward(self, dlogits):
        """Backpropagate the logits' gradient (on the first device) through
        every device; fills :meth:`gradients`. Returns None."""
        if self._batch is None:
            raise RuntimeError("Hybrid.backward: call forward first")
        dys = scatter(dlogits, self.stages[-1].units, 1, self.devices)
        for stage in reversed(self.stages):
            partials = [pre.backward(part.backward(dy))
                        for pre, part, dy in zip(stage.pre, stage.slices, dys)]
            if stage.first:
                dfeats = reduce_scatter(partials, self._batch, 0, self.devices)
            else:
                previous = self.stages[self.stages.index(stage) - 1]
                dys = reduce_scatter(partials, previous.units, 1, self.devices)
        for replica, dfeat in zip(self.conv.replicas, dfeats):
            replica.backward(dfeat)

    def __call__(self, x):
        return self.forward(x)

    def forward_backward(self, x, y) -> float:
        """Forward, the loss on the first device (labels moved there if
        needed) and backward; returns the global mean loss."""
        logits = self.forward(x)
        if not hasattr(y, "shape") or y.shape[:1] != x.shape[:1]:
            raise ValueError(f"y: expected {x.shape[0]} labels (one per example of x), got "
                             f"{getattr(y, 'shape', type(y).__name__)}")
        labels = asarray(y, device=self.devices[0])
        loss = float(self.criterion.forward(logits, labels))
        self.backward(self.criterion.backward())
        return loss

    def train_step(self, x, y, optimizer) -> float:
        """One SGD step on the global batch: :meth:`forward_backward`, conv
        gradients summed onto the first device, ``optimizer.step()`` (over
        this object), conv weights broadcast. Returns the global mean loss."""
        loss = finite_loss(self.forward_backward(x, y))
        self.conv.reduce_gradients()
        optimizer.step()
        self.conv.broadcast_parameters()
        return loss

    def step_bytes(self, batch: int, example_bytes: int = 0) -> int:
        """:func:`~deepconv.parallel.hybrid_step_bytes` for this model."""
        itemsize = self.stages[0].full.dtype.itemsize
        return hybrid_step_bytes(self.model, batch, len(self.devices), itemsize,
                                 example_bytes=example_bytes)

    def __repr__(self):
        names = ", ".join(str(d) for d in self.devices)
        fc = ", ".join(stage.name for stage in self.stages)
        return f"Hybrid(conv x{len(self.devices)}, FC split: {fc}; devices=[{names}])"


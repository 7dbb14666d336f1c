"""Containers: Sequential (a chain) and Graph (a DAG, for networks with
branches such as AlexNet's two columns; the Concat and Split layers that
join and part channel groups are in ``join.py``).

Both run forward in order and backward in reverse, explicitly; a gradient
reaching a node from several consumers is summed in a fixed order (reverse
insertion order of the consumers), so results are deterministic. Both fuse
a Conv2d or Linear followed by a ReLU (the ReLU is applied in the
convolution's epilogue, see :class:`~deepconv.nn.ReLU`).

A Graph can be spread over several devices (:meth:`Graph.place`): each
node runs on the device of its group (or its own), and a value read on
another device is copied there by :func:`deepconv.to_device` (counted in
:func:`deepconv.transfer_stats`), its gradient going back the same way.
"""

from __future__ import annotations

import copy

from deepconv.backend import backend_for, device_of, to_device
from deepconv.backend import device as _device
from deepconv.nn.activation import ReLU
from deepconv.nn.conv import Conv2d
from deepconv.nn.layer import Layer, check_bool, check_input, check_shape, make_rng
from deepconv.nn.linear import Linear

__all__ = ["Sequential", "Graph"]

_FUSABLE = (Conv2d, Linear)


class _Container(Layer):
    """Shared by Sequential and Graph: named children, parameters named
    ``child.param``, modes and placement applied to every child."""

    def children(self) -> list:
        """``[(name, layer), ...]`` in execution order."""
        raise NotImplementedError

    def parameter_shapes(self):
        return {f"{name}.{p}": shape for name, layer in self.children()
                for p, shape in layer.parameter_shapes().items()}

    @property
    def materialized(self):
        return all(layer.materialized for _, layer in self.children())

    def reset_parameters(self, rng=None):
        """Re-initialise every child in order from one generator."""
        rng = make_rng(rng)
        for _, layer in self.children():
            layer.reset_parameters(rng)
        return self

    def named_parameters(self):
        return [(f"{name}.{p}", arr) for name, layer in self.children()
                for p, arr in layer.named_parameters()]

    def named_gradients(self):
        return [(f"{name}.{p}", arr) for name, layer in self.children()
                for p, arr in layer.named_gradients()]

    @property
    def params(self):
        return dict(self.named_parameters()) if self.materialized else {}

    @params.setter
    def params(self, value):
        pass  # Layer.__init__ assigns; containers hold no parameters themselves

    @property
    def grads(self):
        return dict(self.named_gradients()) if self.materialized else {}

    @grads.setter
    def grads(self, value):
        pass

    def train(self, mode=True):
        super().train(mode)
        for _, layer in self.children():
            layer.train(mode)
        return self

    def to(self, device):
        for _, layer in self.children():
            layer.to(device)
        self.device = self.children()[0][1].device if self.children() else self.device
        self._buffers.clear()
        return self

    def named_layers(self):
        """Every leaf layer with its dotted path, depth first."""
        found = []
        for name, layer in self.children():
            if isinstance(layer, _Container):
                found += [(f"{name}.{sub}", leaf) for sub, leaf in layer.named_layers()]
            else:
                found.append((name, layer))
        return found

    def __getitem__(self, key):
        if isinstance(key, str):
            for name, layer in self.children():
                if name == key:
                    return layer
            raise KeyError(f"no layer named {key!r}")
        return self.children()[key][1]

    def __len__(self):
        return len(self.children())

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, layer in self.children():
            body = repr(layer).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


def _fuse(producer, consumer):
    """Fold a ReLU into the convolution before it; True if fused."""
    if isinstance(producer, _FUSABLE) and isinstance(consumer, ReLU):
        producer.relu = True
        consumer.fused = True
        return True
    return False


def _unfuse(producer, consumer):
    producer.relu = False
    consumer.fused = False


def _check_layer(layer, name):
    if not isinstance(layer, Layer):
        raise TypeError(f"{name}: expected a deepconv.nn.Layer, got {type(layer).__name__}")


class Sequential(_Container):
    """Layers run one after another: ``Sequential(layer, ...)`` or with names,
    ``Sequential(("conv1", layer), ...)`` (default names "0", "1", ...).

    ``fuse=True`` folds each ReLU that follows a Conv2d or Linear into it.
    ``backward`` stops at a layer that returns None (``input_grad=False``,
    e.g. a network's first convolution) and then returns None.
    """

    def __init__(self, *layers, fuse=True):
        super().__init__()
        self._layers = []
        seen = set()
        for i, item in enumerate(layers):
            if isinstance(item, tuple) and (len(item) != 2 or not isinstance(item[0], str)):
                raise TypeError(f"layers[{i}]: expected a Layer or a (name, Layer) pair")
            name, layer = item if isinstance(item, tuple) else (str(i), item)
            if not name or "." in name:
                raise ValueError(f"layers[{i}]: expected a non-empty name without '.', got {name!r}")
            _check_layer(layer, f"layers[{i}]")
            if name in seen:
                raise ValueError(f"layers[{i}]: duplicate name {name!r}")
            if any(layer is other for _, other in self._layers):
                raise ValueError(f"layers[{i}]: the same layer object appears twice")
            seen.add(name)
            self._layers.append((name, layer))
        if check_bool(fuse, "fuse"):
            for (_, a), (_, b) in zip(self._layers, self._layers[1:]):
                _fuse(a, b)

    def children(self):
        return list(self._layers)

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for _, layer in self._layers:
            shape = layer.output_shape(shape)
        return shape

    def walk_shapes(self, input_shapes, visit, prefix=""):
        """Shapes child by child: ``visit(path, layer, input_shapes)``
        returns each child's output shape (see :mod:`deepconv.nn.summary`)."""
        shape = tuple(input_shapes[0])
        for name, layer in self._layers:
            shape = visit(prefix + name, layer, (shape,))
        return shape

    def forward(self, x):
        for _, layer in self._layers:
            x = layer.forward(x)
        return x

    def backward(self, dy):
        for _, layer in reversed(self._layers):
            dy = layer.backward(dy)
            if dy is None:
                return None
        return dy


class _Node:
    __slots__ = ("name", "layer", "inputs", "group")

    def __init__(self, name, layer, inputs, group):
        self.name, self.layer, self.inputs, self.group = name, layer, inputs, group


class Graph(_Container):
    """A directed acyclic graph of layers.

    ::

        g = Graph()                                  # one input, named "input"
        a = g.add("conv_a", Conv2d(3, 8, 3), "input", group="column0")
        b = g.add("conv_b", Conv2d(3, 8, 3), "input", group="column1")
        c = g.add("cat", Concat(), a, b)
        g.output(c)
        y = g.forward(x); dx = g.backward(dy)

    Nodes are added in execution order (each reads earlier nodes or graph
    inputs, so the graph is acyclic by construction). A node of a layer with
    several outputs (:class:`Split`) is read as ``"name:0"``, ``"name:1"``...
    ``group`` labels a node (e.g. the column of a split network) for
    placement; :meth:`groups` lists them. Outputs used by several nodes get
    the sum of their gradients. ``forward`` takes one array per graph input
    and returns one per output (a tuple if several); ``backward`` the reverse.

    Until :meth:`place` is called every array must be on one device (mixing
    devices is an error, as for any layer); after it, the graph moves values
    between its nodes' devices itself (see :meth:`place`).
    """

    def __init__(self, inputs=("input",), fuse=True):
        super().__init__()
        if isinstance(inputs, str):
            inputs = (inputs,)
        self.input_names = tuple(inputs)
        if not self.input_names or not all(isinstance(n, str) and n for n in self.input_names):
            raise ValueError(f"inputs: expected non-empty names, got {inputs!r}")
        if len(set(self.input_names)) != len(self.input_names):
            raise ValueError(f"inputs: duplicate names in {inputs!r}")
        self.fuse = check_bool(fuse, "fuse")
        self._nodes: dict[str, _Node] = {}
        self.output_handles: tuple = ()
        self._fused: list = []
        self._planned = False
        self._meta = {}  # handle -> (shape, dtype, device) of the last forward
        self._owned = set()
        self._placement = None  # node name -> Device once placed (free nodes absent)
        self._wanted = {}  # free join node -> devices its readers run on
        self._homes = {}  # handle -> devices its producer ran on in the last forward
        self._instances = {}  # node name -> [(device, layer)] of the last forward
        self._replicas = {}  # (node name, device) -> copy of a free node's layer

    @property
    def num_inputs(self):
        return len(self.input_names)

    @property
    def num_outputs(self):
        return len(self.output_handles)

    # --- building -----------------------------------------------------------------

    def add(self, name, layer, *inputs, group=None):
        """Add node ``name`` computing ``layer`` on ``inputs`` (handles of
        graph inputs or earlier nodes). Returns its handle, or a tuple of
        handles for a multi-output layer."""
        if not isinstance(name, str) or not name or ":" in name or "." in name:
            raise ValueError(f"name: expected a non-empty str without ':' or '.', got {name!r}")
        if name in self._nodes or name in self.input_names:
            raise ValueError(f"name: {name!r} is already used in the graph")
        _check_layer(layer, "layer")
        for node in self._nodes.values():
            if node.layer is layer:
                raise ValueError(f"layer: this layer object is already node {node.name!r}")
        if group is not None and not isinstance(group, str):
            raise TypeError(f"group: expected a str or None, got {type(group).__name__}")
        want = layer.num_inputs
        if not inputs or (want is not None and len(inputs) != want):
            raise ValueError(
                f"inputs: {type(layer).__name__} takes {want or 'one or more'} input(s), "
                f"got {len(inputs)}"
            )
        handles = tuple(self._resolve(h, f"inputs[{i}]") for i, h in enumerate(inputs))
        self._nodes[name] = _Node(name, layer, handles, group)
        self._planned = False
        if layer.num_outputs == 1:
            return name
        return tuple(f"{name}:{i}" for i in range(layer.num_outputs))

    def output(self, *handles):
        """Declare the graph's outputs (in order)."""
        if not handles:
            raise ValueError("handles: expected at least one output")
        self.output_handles = tuple(self._resolve(h, f"handles[{i}]") for i, h in enumerate(handles))
        self._planned = False
        return self

    def _resolve(self, handle, what):
        """``"name"`` or ``"name:i"`` -> (name, i), checked."""
        if not isinstance(handle, str):
            raise TypeError(f"{what}: expected a node or input name (str), got {type(handle).__name__}")
        name, _, index = handle.partition(":")
        if name in self.input_names:
            if index:
                raise ValueError(f"{what}: graph input {name!r} has one output")
            return (name, 0)
        node = self._nodes.get(name)
        if node is None:
            raise ValueError(f"{what}: no input or earlier node named {name!r}")
        count = node.layer.num_outputs
        if not index:
            if count != 1:
                raise ValueError(f"{what}: node {name!r} has {count} outputs; use '{name}:0' ...")
            return (name, 0)
        if not index.isdecimal() or int(index) >= count:
            raise ValueError(f"{what}: node {name!r} has outputs 0..{count - 1}, got {handle!r}")
        return (name, int(index))

    def children(self):
        return [(n.name, n.layer) for n in self._nodes.values()]

    def groups(self) -> dict:
        """group -> [node names] (in order); ungrouped nodes under None."""
        found = {}
        for node in self._nodes.values():
            found.setdefault(node.group, []).append(node.name)
        return found

    def node_inputs(self, name) -> list:
        """The handles node ``name`` reads."""
        return [h if i == 0 and self._is_single(h) else f"{h}:{i}"
                for h, i in self._nodes[name].inputs]

    def _is_single(self, name):
        return name in self.input_names or self._nodes[name].layer.num_outputs == 1

    def _plan(self):
        """Check outputs are declared; (re)compute ReLU fusion."""
        if self._planned:
            return
        if not self.output_handles:
            raise RuntimeError("Graph: declare the outputs with output(...) first")
        for producer, consumer in self._fused:
            _unfuse(producer, consumer)
        self._fused = []
        if self.fuse:
            readers = {}
            for node in self._nodes.values():
                for handle in node.inputs:
                    readers.setdefault(handle, []).append(node)
            for node in self._nodes.values():
                src = node.inputs[0]
                if (len(node.inputs) == 1 and src[0] in self._nodes and len(readers[src]) == 1
                        and src not in self.output_handles
                        and _fuse(self._nodes[src[0]].layer, node.layer)):
                    self._fused.append((self._nodes[src[0]].layer, node.layer))
        self._wanted = self._reader_devices() if self._placement is not None else {}
        self._planned = True

    # --- placement ------------------------------------------------------------------

    def place(self, device_map=None):
        """Spread the graph over devices; returns self.

        ``device_map``: ``{key: device}`` where a key is a group label (None
        for ungrouped nodes) or a node name (which wins over its group), e.g.
        ``{"column0": "emu:0", "column1": "emu:1", "classifier": "emu:0"}``;
        or None: every node with parameters stays on its layer's own device
        (layers built with ``device=``). A single device means ``to(device)``.

        Each placed node's layer is moved with ``Layer.to`` (a counted
        transfer). A node with parameters must get a device. A node without
        parameters that the map leaves out is *free*: with one input (ReLU,
        pooling, ...) it runs where its input is; joining several (Concat)
        it runs on every device that reads it, so each device assembles its
        own copy and only the other devices' parts cross: for AlexNet's two
        columns, exactly the paper's exchange.

        In forward, a value read on another device is copied there once per
        step (:func:`deepconv.to_device`, counted); in backward a gradient is
        copied back to its producer's device before it is summed there, in a
        fixed order (reverse node order, as on one device; a free join's
        copies in reverse device order). Where a value has at most two
        readers (AlexNet), the sums are bitwise those of one device.
        """
        if device_map is not None and not isinstance(device_map, dict):
            return self.to(device_map)
        placement = self._resolve_placement(device_map)
        for name, dev in placement.items():
            self._nodes[name].layer.to(dev)
        self._placement = placement
        self._replicas = {}
        self._meta = {}
        self._planned = False
        if placement:
            self.device = next(iter(placement.values()))
        return self

    @property
    def placement(self):
        """``{node name: Device}`` after :meth:`place` (free nodes left
        out); None for a graph on one device."""
        return None if self._placement is None else dict(self._placement)

    def _resolve_placement(self, device_map):
        nodes = list(self._nodes.values())
        if device_map is None:
            return {n.name: n.layer.device for n in nodes if n.layer.parameter_shapes()}
        groups = {n.group for n in nodes}
        by_node, by_group = {}, {}
        for key, value in device_map.items():
            if key is not None and not isinstance(key, str):
                raise TypeError(f"device_map: expected group or node names (str or None) as keys, "
                                f"got {type(key).__name__}")
            dev = _device(value, arg=f"device_map[{key!r}]")
            if key in self._nodes and key in groups:
                raise ValueError(f"device_map: {key!r} is both a node and a group; rename one")
            if key in self._nodes:
                by_node[key] = dev
            elif key in groups:
                by_group[key] = dev
            else:
                known = sorted(g for g in groups if g is not None) + ([None] if None in groups else [])
                raise ValueError(f"device_map: {key!r} is neither a node nor a group of this graph "
                                 f"(groups: {known})")
        placement = {}
        for node in nodes:
            dev = by_node.get(node.name, by_group.get(node.group))
            if dev is None and node.layer.parameter_shapes():
                raise ValueError(f"device_map: node {node.name!r} (group {node.group!r}) has "
                                 "parameters but no device; map its group or its name")
            if dev is not None:
                placement[node.name] = dev
        return placement

    def _reader_devices(self):
        """For each free node: the devices of the nodes reading it, looking
        through free readers to their own readers."""
        readers = {}
        for node in self._nodes.values():
            for src, _ in node.inputs:
                readers.setdefault(src, []).append(node.name)
        wanted = {}
        for node in reversed(list(self._nodes.values())):
            if node.name in self._placement:
                continue
            devices = []
            for r in readers.get(node.name, []):
                for dev in ([self._placement[r]] if r in self._placement else wanted[r]):
                    if dev not in devices:
                        devices.append(dev)
            wanted[node.name] = devices
        return wanted

    def _devices_for(self, node):
        """Where ``node`` runs this step: its placed device; a free node
        with one input where that input is; a free join on the devices that
        read it (its first input's, if only the graph output does)."""
        if self._placement is None:
            return [None]  # on one device: wherever the arrays are
        if node.name in self._placement:
            return [self._placement[node.name]]
        first = self._homes[node.inputs[0]]
        if len(node.inputs) == 1:
            return list(first)
        return list(self._wanted[node.name]) or [first[0]]

    def _instance_layers(self, node, devices):
        """``node``'s layer for each device it runs on. A free node on
        several devices gets a shallow copy per extra device (it has no
        parameters, and layers reassign their per-step state rather than
        mutate it), refreshed every step so that its mode and counters
        (Dropout's step) follow the original; each copy keeps its buffers."""
        layers = [node.layer]
        for dev in devices[1:]:
            old = self._replicas.get((node.name, dev))
            twin = copy.copy(node.layer)
            twin._buffers = old._buffers if old is not None else {}
            self._replicas[(node.name, dev)] = twin
            layers.append(twin)
        return layers

    # --- computation ----------------------------------------------------------------

    def walk_shapes(self, input_shapes, visit, prefix=""):
        """As :meth:`Sequential.walk_shapes`, node by node."""
        if len(input_shapes) != len(self.input_names):
            raise ValueError(
                f"input_shape: expected {len(self.input_names)} shape(s), got {len(input_shapes)}"
            )
        shapes = {(n, 0): tuple(s) for n, s in zip(self.input_names, input_shapes)}
        for node in self._nodes.values():
            out = visit(prefix + node.name, node.layer, tuple(shapes[h] for h in node.inputs))
            outs = [out] if node.layer.num_outputs == 1 else list(out)
            for i, shape in enumerate(outs):
                shapes[(node.name, i)] = tuple(shape)
        result = tuple(shapes[h] for h in self.output_handles)
        return result[0] if len(result) == 1 else result

    def output_shape(self, *input_shapes):
        if len(input_shapes) != len(self.input_names):
            raise ValueError(
                f"input_shapes: expected {len(self.input_names)} shape(s), got {len(input_shapes)}"
            )
        shapes = {(n, 0): check_shape(s, f"input_shapes[{i}]")
                  for i, (n, s) in enumerate(zip(self.input_names, input_shapes))}
        for node in self._nodes.values():
            out = node.layer.output_shape(*[shapes[h] for h in node.inputs])
            outs = [out] if node.layer.num_outputs == 1 else list(out)
            for i, shape in enumerate(outs):
                shapes[(node.name, i)] = tuple(shape)
        result = tuple(shapes[h] for h in self.output_handles)
        return result[0] if len(result) == 1 else result

    def forward(self, *xs):
        self._plan()
        if len(xs) != len(self.input_names):
            raise ValueError(f"xs: expected {len(self.input_names)} input array(s), got {len(xs)}")
        placed = self._placement is not None
        values = {}  # handle -> {device: array}, first where its producer ran, then copies
        self._homes = {}
        for i, (name, x) in enumerate(zip(self.input_names, xs)):
            dev = device_of(check_input(x, f"xs[{i}]")) if placed else None
            values[(name, 0)] = {dev: x}
            self._homes[(name, 0)] = [dev]
        self._instances = {}
        for node in self._nodes.values():
            devices = self._devices_for(node)
            instances = list(zip(devices, self._instance_layers(node, devices)))
            for dev, layer in instances:
                out = layer.forward(*[self._fetch(values, h, dev) for h in node.inputs])
                outs = [out] if node.layer.num_outputs == 1 else list(out)
                for i, arr in enumerate(outs):
                    values.setdefault((node.name, i), {})[dev] = arr
            for i in range(node.layer.num_outputs):
                self._homes[(node.name, i)] = devices
            self._instances[node.name] = instances
        first = {h: next(iter(v.values())) for h, v in values.items()}
        self._meta = {h: (tuple(a.shape), a.dtype, device_of(a)) for h, a in first.items()}
        result = tuple(first[h] for h in self.output_handles)
        return result[0] if len(result) == 1 else result

    @staticmethod
    def _fetch(values, handle, dev):
        """``handle``'s value on ``dev``, copied there (counted) on its first
        read this step; on one device (``dev`` None) the value itself."""
        held = values[handle]
        if dev not in held:
            held[dev] = to_device(next(iter(held.values())), dev)
        return held[dev]

    def _target(self, handle, dev):
        """Where a gradient for ``handle`` computed on ``dev`` is summed: the
        producer's instance on ``dev`` if it ran there, else its first one."""
        homes = self._homes[handle]
        return (handle, dev if dev in homes else homes[0])

    def backward(self, *dys):
        """Gradients of the outputs in, gradients of the inputs out (None for
        an input nothing sends a gradient to)."""
        if not self._meta:
            raise RuntimeError("Graph.backward: call forward first")
        if len(dys) != len(self.output_handles):
            raise ValueError(f"dys: expected {len(self.output_handles)} array(s), got {len(dys)}")
        self._owned = set()
        grads = {}  # (handle, device of a producer instance) -> gradient there
        for i, (handle, dy) in enumerate(zip(self.output_handles, dys)):
            check_input(dy, f"dys[{i}]")
            self._accumulate(grads, (handle, self._homes[handle][0]), dy)
        for node in reversed(list(self._nodes.values())):
            count = node.layer.num_outputs
            for dev, layer in reversed(self._instances[node.name]):
                mine = [grads.get(((node.name, i), dev)) for i in range(count)]
                if all(g is None for g in mine):
                    continue  # nothing downstream depends on this node
                if count == 1:
                    dx = layer.backward(mine[0])
                else:
                    dx = layer.backward([g if g is not None else self._zeros((node.name, i), dev)
                                         for i, g in enumerate(mine)])
                dxs = [dx] if len(node.inputs) == 1 else list(dx)
                for handle, g in zip(node.inputs, dxs):
                    if g is not None:
                        self._accumulate(grads, self._target(handle, dev), g)
        result = tuple(grads.get(((n, 0), self._homes[(n, 0)][0])) for n in self.input_names)
        return result[0] if len(result) == 1 else result

    def _accumulate(self, grads, key, g):
        """Add ``g`` into the gradient ``key`` = (handle, device), copying it
        to that device first (counted) when the graph is placed."""
        if key[1] is not None:
            g = to_device(g, key[1])
        if key not in grads:
            grads[key] = g  # by reference: nothing writes it before it is read
            return
        acc = grads[key]
        dev = device_of(acc)
        be = backend_for(dev)
        if key not in self._owned:
            buf = self._buffer(("sum",) + key, acc.shape, acc.dtype, dev)
            with be.activate(dev):
                buf[...] = acc
            acc = grads[key] = buf
            self._owned.add(key)
        with be.activate(dev):
            acc += g

    def _zeros(self, handle, dev=None):
        shape, dtype, home = self._meta[handle]
        dev = home if dev is None else dev
        buf = self._buffer(("zeros", handle, dev), shape, dtype, dev)
        be = backend_for(dev)
        with be.activate(dev):
            buf.fill(0)
        return buf

    def to(self, device):
        """Every node on ``device`` (undoes :meth:`place`)."""
        self._meta = {}
        self._placement = None
        self._replicas = {}
        self._planned = False
        return super().to(device)

    def __repr__(self):
        lines = [f"Graph(inputs={list(self.input_names)}"]
        for node in self._nodes.values():
            ins = ", ".join(h if i == 0 and self._is_single(h) else f"{h}:{i}" for h, i in node.inputs)
            group = f"  [{node.group}]" if node.group else ""
            if self._placement is not None:
                group += f"  @{self._placement.get(node.name, 'free')}"
            lines.append(f"  ({node.name}): {node.layer!r} <- {ins}{group}")
        outs = ", ".join(h if self._is_single(h) else f"{h}:{i}" for h, i in self.output_handles)
        return "\n".join(lines) + f"\n) -> {outs}"

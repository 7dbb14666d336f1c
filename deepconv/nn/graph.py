"""Containers: Sequential (a chain) and Graph (a DAG, for networks with
branches such as AlexNet's two columns), plus the Concat and Split layers
that join and part channel groups.

Both run forward in order and backward in reverse, explicitly; a gradient
reaching a node from several consumers is summed in a fixed order (reverse
insertion order of the consumers), so results are deterministic. Both fuse
a Conv2d or Linear followed by a ReLU (the ReLU is applied in the
convolution's epilogue, see :class:`~deepconv.nn.ReLU`).
"""

from __future__ import annotations

from deepconv.backend import backend_for, device_of
from deepconv.nn.activation import ReLU
from deepconv.nn.conv import Conv2d
from deepconv.nn.layer import Layer, check_bool, check_input, check_int, check_shape, make_rng
from deepconv.nn.linear import Linear

__all__ = ["Sequential", "Graph", "Concat", "Split"]

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

    def parameters(self):
        return [(f"{name}.{p}", arr) for name, layer in self.children()
                for p, arr in layer.parameters()]

    def gradients(self):
        return [(f"{name}.{p}", arr) for name, layer in self.children()
                for p, arr in layer.gradients()]

    @property
    def params(self):
        return dict(self.parameters()) if self.materialized else {}

    @params.setter
    def params(self, value):
        pass  # Layer.__init__ assigns; containers hold no parameters themselves

    @property
    def grads(self):
        return dict(self.gradients()) if self.materialized else {}

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
        self._planned = True

    # --- computation ----------------------------------------------------------------

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
        values = {}
        for i, (name, x) in enumerate(zip(self.input_names, xs)):
            values[(name, 0)] = check_input(x, f"xs[{i}]")
        for node in self._nodes.values():
            out = node.layer.forward(*[values[h] for h in node.inputs])
            outs = [out] if node.layer.num_outputs == 1 else list(out)
            for i, arr in enumerate(outs):
                values[(node.name, i)] = arr
        self._meta = {h: (tuple(a.shape), a.dtype, device_of(a)) for h, a in values.items()}
        result = tuple(values[h] for h in self.output_handles)
        return result[0] if len(result) == 1 else result

    def backward(self, *dys):
        """Gradients of the outputs in, gradients of the inputs out (None for
        an input nothing sends a gradient to)."""
        if not self._meta:
            raise RuntimeError("Graph.backward: call forward first")
        if len(dys) != len(self.output_handles):
            raise ValueError(f"dys: expected {len(self.output_handles)} array(s), got {len(dys)}")
        self._owned = set()
        grads = {}
        for i, (handle, dy) in enumerate(zip(self.output_handles, dys)):
            check_input(dy, f"dys[{i}]")
            self._accumulate(grads, handle, dy)
        for node in reversed(list(self._nodes.values())):
            count = node.layer.num_outputs
            mine = [grads.get((node.name, i)) for i in range(count)]
            if all(g is None for g in mine):
                continue  # nothing downstream depends on this node
            if count == 1:
                dx = node.layer.backward(mine[0])
            else:
                dx = node.layer.backward([g if g is not None else self._zeros((node.name, i))
                                          for i, g in enumerate(mine)])
            dxs = [dx] if len(node.inputs) == 1 else list(dx)
            for handle, g in zip(node.inputs, dxs):
                if g is not None:
                    self._accumulate(grads, handle, g)
        result = tuple(grads.get((n, 0)) for n in self.input_names)
        return result[0] if len(result) == 1 else result

    def _accumulate(self, grads, handle, g):
        if handle not in grads:
            grads[handle] = g  # by reference: nothing writes it before it is read
            return
        acc = grads[handle]
        dev = device_of(acc)
        be = backend_for(dev)
        if handle not in self._owned:
            buf = self._buffer(("sum", handle), acc.shape, acc.dtype, dev)
            with be.activate(dev):
                buf[...] = acc
            acc = grads[handle] = buf
            self._owned.add(handle)
        with be.activate(dev):
            acc += g

    def _zeros(self, handle):
        shape, dtype, dev = self._meta[handle]
        buf = self._buffer(("zeros", handle), shape, dtype, dev)
        be = backend_for(dev)
        with be.activate(dev):
            buf.fill(0)
        return buf

    def to(self, device):
        self._meta = {}
        return super().to(device)

    def __repr__(self):
        lines = [f"Graph(inputs={list(self.input_names)}"]
        for node in self._nodes.values():
            ins = ", ".join(h if i == 0 and self._is_single(h) else f"{h}:{i}" for h, i in node.inputs)
            group = f"  [{node.group}]" if node.group else ""
            lines.append(f"  ({node.name}): {node.layer!r} <- {ins}{group}")
        outs = ", ".join(h if self._is_single(h) else f"{h}:{i}" for h, i in self.output_handles)
        return "\n".join(lines) + f"\n) -> {outs}"


class Concat(Layer):
    """Joins inputs (N, C_i, ...) along axis 1 (channels, or features of a
    fully connected layer) into (N, sum C_i, ...); backward hands each input
    its slice of the gradient."""

    num_inputs = None  # one or more

    def __init__(self):
        super().__init__()
        self._channels = None

    def output_shape(self, *input_shapes):
        shapes = [_shape_2d_up(s, f"input_shapes[{i}]") for i, s in enumerate(input_shapes)]
        if not shapes:
            raise ValueError("input_shapes: expected at least one")
        for i, s in enumerate(shapes[1:], 1):
            if (s[0],) + s[2:] != (shapes[0][0],) + shapes[0][2:]:
                raise ValueError(
                    f"input_shapes[{i}]: expected all but axis 1 as in input 0 {shapes[0]}, got {s}"
                )
        return (shapes[0][0], sum(s[1] for s in shapes)) + shapes[0][2:]

    def forward(self, *xs):
        for i, x in enumerate(xs):
            check_input(x, f"xs[{i}]")
            if x.dtype != xs[0].dtype or device_of(x) != device_of(xs[0]):
                raise ValueError(f"xs[{i}]: expected the dtype and device of xs[0]")
        y = self._buffer_like("y", xs[0], self.output_shape(*[x.shape for x in xs]))
        self._channels = [x.shape[1] for x in xs]
        return _join(xs, y)

    def backward(self, dy):
        if self._channels is None:
            raise RuntimeError("Concat.backward: call forward first")
        check_input(dy, "dy")
        dxs = [self._buffer_like(("dx", i), dy, (dy.shape[0], c) + tuple(dy.shape[2:]))
               for i, c in enumerate(self._channels)]
        return _part(dy, dxs)


class Split(Layer):
    """Parts (N, C, ...) along axis 1 into ``sections`` (a list of channel
    counts, or an int: that many equal parts); outputs are contiguous
    copies. Backward joins the gradients."""

    def __init__(self, sections):
        super().__init__()
        if isinstance(sections, (list, tuple)):
            self.sections = tuple(check_int(s, f"sections[{i}]") for i, s in enumerate(sections))
            if not self.sections:
                raise ValueError("sections: expected at least one")
            self.parts = None
        else:
            self.parts = check_int(sections, "sections")
            self.sections = None
        self._shape = None

    @property
    def num_outputs(self):
        return len(self.sections) if self.sections else self.parts

    def _sizes(self, channels, name):
        if self.sections:
            if sum(self.sections) != channels:
                raise ValueError(f"{name}: sections {self.sections} do not add up to {channels} channels")
            return self.sections
        if channels % self.parts:
            raise ValueError(f"{name}: {channels} channels do not split into {self.parts} equal parts")
        return (channels // self.parts,) * self.parts

    def output_shape(self, input_shape):
        shape = _shape_2d_up(input_shape, "input_shape")
        return tuple((shape[0], s) + shape[2:] for s in self._sizes(shape[1], "input_shape"))

    def forward(self, x):
        check_input(x, "x")
        ys = [self._buffer_like(("y", i), x, shape)
              for i, shape in enumerate(self.output_shape(x.shape))]
        self._shape = tuple(x.shape)
        return _part(x, ys)

    def backward(self, dys):
        if self._shape is None:
            raise RuntimeError("Split.backward: call forward first")
        if len(dys) != self.num_outputs:
            raise ValueError(f"dys: expected {self.num_outputs} gradients, got {len(dys)}")
        return _join(dys, self._buffer_like("dx", dys[0], self._shape))

    def extra_repr(self):
        return repr(list(self.sections)) if self.sections else str(self.parts)


def _shape_2d_up(shape, name):
    shape = check_shape(shape, name)
    if len(shape) < 2:
        raise ValueError(f"{name}: expected at least 2 dimensions (N, C, ...), got {shape}")
    return shape


def _join(parts, out):
    """Copy ``parts`` one after another along axis 1 into ``out``."""
    dev = device_of(out)
    start = 0
    with backend_for(dev).activate(dev):
        for part in parts:
            out[:, start:start + part.shape[1]] = part
            start += part.shape[1]
    return out


def _part(src, outs):
    """Copy consecutive axis-1 slices of ``src`` into ``outs``; a tuple."""
    dev = device_of(src)
    start = 0
    with backend_for(dev).activate(dev):
        for out in outs:
            out[...] = src[:, start:start + out.shape[1]]
            start += out.shape[1]
    return tuple(outs)

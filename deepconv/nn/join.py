"""Concat and Split: the layers that join channel groups and part them
(AlexNet's two columns meet and part at these)."""

from __future__ import annotations

from deepconv.backend import backend_for, device_of
from deepconv.nn.layer import Layer, check_input, check_int, check_shape

__all__ = ["Concat", "Split"]


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

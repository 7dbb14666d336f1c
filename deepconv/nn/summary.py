"""``model.summary(input_shape)``: a table of the leaf layers with their
output shapes, parameter counts and FLOPs, found symbolically (nothing is
allocated or launched, so it works on full-size models built with
``materialize=False``)."""

from __future__ import annotations

import math
import sys

from deepconv.nn.conv import Conv2d
from deepconv.nn.layer import check_shape, count_parameters
from deepconv.nn.linear import Linear

__all__ = ["summarize"]


def layer_flops(layer, output_shape) -> int:
    """Floating-point operations of one forward: 2 per multiply-add of a
    Conv2d or Linear (bias, ReLU and the cheap layers are not counted, as
    in the papers' FLOP figures)."""
    if isinstance(layer, Conv2d):
        k, cg, r, s = layer.weight_shape
        return 2 * math.prod(output_shape) * cg * r * s
    if isinstance(layer, Linear):
        return 2 * math.prod(output_shape) * layer.in_features
    return 0


def summarize(model, input_shape, file=None) -> list:
    """The rows of :meth:`Layer.summary`, printed to ``file`` (stdout by
    default; ``False``: not printed)."""
    several = getattr(model, "num_inputs", 1) != 1
    shapes = ([check_shape(s, f"input_shape[{i}]") for i, s in enumerate(input_shape)]
              if several else [check_shape(input_shape, "input_shape")])
    rows = []

    def visit(path, layer, in_shapes):
        walk = getattr(layer, "walk_shapes", None)
        if walk is not None:  # a container: its children, in execution order
            return walk(in_shapes, visit, f"{path}." if path else "")
        out = layer.output_shape(*in_shapes)
        single = layer.num_outputs == 1
        rows.append({"name": path or type(layer).__name__, "type": type(layer).__name__,
                     "output_shape": tuple(out) if single else tuple(map(tuple, out)),
                     "parameters": count_parameters(layer),
                     "flops": layer_flops(layer, out) if single else 0})
        return out

    visit("", model, tuple(shapes))
    if file is not False:
        print(format_rows(rows), file=sys.stdout if file is None else file)
    return rows


def format_rows(rows) -> str:
    header = ("layer", "type", "output shape", "parameters", "FLOPs")
    body = [(r["name"], r["type"], str(r["output_shape"]), f"{r['parameters']:,}",
             _flops_text(r["flops"])) for r in rows]
    total_params = sum(r["parameters"] for r in rows)
    total_flops = sum(r["flops"] for r in rows)
    footer = ("total", "", "", f"{total_params:,}", _flops_text(total_flops))
    widths = [max(len(line[i]) for line in (header, *body, footer)) for i in range(5)]

    def line(cells):
        left = [c.ljust(w) for c, w in zip(cells[:3], widths)]
        right = [c.rjust(w) for c, w in zip(cells[3:], widths[3:])]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *map(line, body), rule, line(footer)])


def _flops_text(flops) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if flops >= scale:
            return f"{flops / scale:.2f} {unit}"
    return str(flops)

"""deepconv.optim: SGD against its written-out rule, state round trips,
schedules, and a golden end-to-end test: a small net trained a few steps
matches an independent numpy implementation (always) and PyTorch (when
importable) on the same weights and data."""

import numpy as np
import pytest

import deepconv
from deepconv import nn
from deepconv.optim import SGD, ReduceOnPlateau, StepLR

from conftest import assert_bitwise_equal


def triples(rng, dtype=np.float64):
    shapes = {"conv.weight": (3, 2, 3, 3), "conv.bias": (3,), "fc.weight": (4, 5)}
    return [(n, deepconv.asarray(rng.standard_normal(s).astype(dtype)),
             deepconv.asarray(rng.standard_normal(s).astype(dtype))) for n, s in shapes.items()]


def test_sgd_matches_the_written_rule(rng):
    params = triples(rng)
    w0 = {n: np.array(w) for n, w, _ in params}
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01, decay_mult={"bias": 0.0},
              lr_mult={"fc.weight": 2.0})
    assert opt.lr_mult == [1.0, 1.0, 2.0] and opt.decay_mult == [1.0, 0.0, 1.0]
    v = {n: np.zeros_like(w) for n, w in w0.items()}
    w = dict(w0)
    for _ in range(3):
        opt.step()
        for (name, _, g), lr_m, wd_m in zip(params, (1, 1, 2), (1, 0, 1)):
            lr, wd = 0.1 * lr_m, 0.01 * wd_m
            v[name] = 0.9 * v[name] - wd * lr * w[name] - lr * np.array(g)
            w[name] = w[name] + v[name]
    for name, arr, _ in params:
        np.testing.assert_allclose(arr, w[name], rtol=1e-14, atol=1e-15)
    assert opt.steps == 3


def test_sgd_state_dict_round_trip(rng):
    a_params = triples(rng, np.float32)
    b_params = [(n, deepconv.asarray(np.array(w)), g) for n, w, g in a_params]
    a = SGD(a_params, lr=0.05)
    a.step()
    state = a.state_dict()
    assert isinstance(state["velocities"]["conv.bias"], np.ndarray) and state["steps"] == 1
    b = SGD(b_params, lr=1.0, momentum=0.5)
    for (_, wb, _), (_, wa, _) in zip(b_params, a_params):
        wb[...] = wa
    b.load_state_dict(state)
    assert (b.lr, b.momentum, b.steps) == (0.05, 0.9, 1)
    a.step()
    b.step()
    for (_, wa, _), (_, wb, _) in zip(a_params, b_params):
        assert_bitwise_equal(wa, wb)
    bad = dict(state, velocities={"conv.weight": np.zeros(3)})
    with pytest.raises(ValueError, match="velocities"):
        b.load_state_dict(bad)


def test_sgd_takes_a_model(rng):
    model = nn.Sequential(("fc", nn.Linear(3, 2, rng=0)))
    opt = SGD(model, lr=0.1, decay_mult={"bias": 0})
    assert opt.names == ["fc.weight", "fc.bias"] and opt.decay_mult == [1.0, 0.0]
    before = np.array(model["fc"].params["weight"])
    model.forward(deepconv.asarray(rng.standard_normal((4, 3)), dtype="float32"))
    model.backward(deepconv.asarray(np.ones((4, 2), np.float32)))
    opt.step()
    assert not np.array_equal(before, model["fc"].params["weight"])


@pytest.mark.parametrize("build, error, match", [
    (lambda p: SGD(p, lr=-1.0), ValueError, "lr"),
    (lambda p: SGD(p, lr=0.1, momentum=float("nan")), ValueError, "momentum"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda p: SGD(p, lr=0.1, decay_mult=[0]), TypeError, "decay_mult"),
    (lambda p: SGD(p, lr=0.1, lr_mult={"bias": -2}), ValueError, "lr_mult"),
    (lambda p: SGD(p[0], lr=0.1), TypeError, "params"),
    (lambda p: SGD([p[0], p[0]], lr=0.1), ValueError, "duplicate"),
    (lambda p: StepLR(SGD(p, lr=0.1), step_size=0), ValueError, "step_size"),
    (lambda p: ReduceOnPlateau(SGD(p, lr=0.1), patience=1, mode="up"), ValueError, "mode"),
    (lambda p: ReduceOnPlateau(SGD(p, lr=0.1), patience=1, factor=1.0), ValueError, "factor"),
    (lambda p: ReduceOnPlateau(SGD(p, lr=0.1), patience=-1), ValueError, "patience"),
])
def test_bad_arguments(build, error, match, rng):
    with pytest.raises(error, match=match):
        build(triples(rng))


def test_step_lr(rng):
    opt = SGD(triples(rng), lr=0.01)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    lrs = [sched.step() for _ in range(5)]
    np.testing.assert_allclose(lrs, [0.01, 1e-3, 1e-3, 1e-4, 1e-4])
    assert opt.lr == pytest.approx(1e-4)


def test_reduce_on_plateau(rng):
    opt = SGD(triples(rng), lr=0.01)
    sched = ReduceOnPlateau(opt, patience=1, min_lr=1e-5)
    errors = [0.5, 0.4, 0.41, 0.40, 0.39, 0.39, 0.39, 0.39, 0.39, 0.39]
    lrs = [sched.step(e) for e in errors]
    # 0.41 and 0.40 fail to beat 0.4: two bad epochs > patience 1 -> / 10.
    np.testing.assert_allclose(lrs, [0.01, 0.01, 0.01, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    acc = ReduceOnPlateau(SGD(triples(rng), lr=1.0), patience=0, mode="max")
    assert [acc.step(a) for a in (0.5, 0.6, 0.6)] == [1.0, 1.0, pytest.approx(0.1)]
    restored = ReduceOnPlateau(SGD(triples(rng), lr=1.0), patience=0, mode="max")
    restored.load_state_dict(acc.state_dict())
    assert restored.best == 0.6 and restored.reductions == 1


# --- golden end-to-end test -------------------------------------------------------
# conv(3->4, 3x3, pad 1) -> relu -> maxpool 2 -> lrn (per_size, as PyTorch) ->
# flatten -> fc(64->10) -> relu -> fc(10->5) -> softmax cross-entropy; SGD with
# momentum and weight decay, dropout off, three steps.

LR, MOMENTUM, DECAY, STEPS = 0.1, 0.9, 5e-4, 3
LRN_ARGS = dict(size=3, alpha=0.3, beta=0.75, k=1.5)


def golden_problem():
    rng = np.random.default_rng(7)
    weights = {
        "conv.weight": rng.normal(0, 0.3, (4, 3, 3, 3)),
        "conv.bias": rng.normal(0, 0.1, 4),
        "fc1.weight": rng.normal(0, 0.2, (10, 64)),
        "fc1.bias": rng.normal(0, 0.1, 10),
        "fc2.weight": rng.normal(0, 0.3, (5, 10)),
        "fc2.bias": rng.normal(0, 0.1, 5),
    }
    x = rng.standard_normal((4, 3, 8, 8))
    labels = np.array([0, 3, 4, 1])
    return weights, x, labels


def deepconv_losses(dtype):
    weights, x, labels = golden_problem()
    model = nn.Sequential(
        ("conv", nn.Conv2d(3, 4, 3, padding=1, dtype=dtype)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("lrn", nn.LRN(alpha_convention="per_size", **LRN_ARGS)),
        ("flatten", nn.Flatten()),
        ("fc1", nn.Linear(64, 10, dtype=dtype)),
        ("relu1", nn.ReLU()),
        ("fc2", nn.Linear(10, 5, dtype=dtype)),
    )
    for name, arr in model.named_parameters():
        arr[...] = weights[name]
    xent = nn.SoftmaxCrossEntropy()
    opt = SGD(model, lr=LR, momentum=MOMENTUM, weight_decay=DECAY)
    xd = deepconv.asarray(x, dtype=dtype)
    losses = []
    for _ in range(STEPS):
        losses.append(float(xent.forward(model.forward(xd), labels)))
        model.backward(xent.backward())
        opt.step()
    losses.append(float(xent.forward(model.forward(xd), labels)))
    return np.array(losses)


def _windows(x, k):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k).transpose(0, 1, 2, 4, 3, 5).reshape(
        n, c, h // k, w // k, k * k)


def numpy_losses():
    """The same training written out in numpy, forward and backward."""
    weights, x, labels = golden_problem()
    w = {k: v.copy() for k, v in weights.items()}
    v = {k: np.zeros_like(a) for k, a in w.items()}
    size, alpha, beta, k = LRN_ARGS["size"], LRN_ARGS["alpha"] / LRN_ARGS["size"], LRN_ARGS["beta"], LRN_ARGS["k"]
    n = x.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))

    def window_sum(a):  # over channels c-1..c+1, clipped
        padded = np.pad(a, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
        return sum(padded[:, i:i + a.shape[1]] for i in range(size))

    losses = []
    for step in range(STEPS + 1):
        conv = np.zeros((n, 4, 8, 8)) + w["conv.bias"][None, :, None, None]
        for r in range(3):
            for s in range(3):
                conv += np.einsum("nchw,kc->nkhw", xp[:, :, r:r + 8, s:s + 8], w["conv.weight"][:, :, r, s])
        a1 = np.maximum(conv, 0)
        win = _windows(a1, 2)
        pooled = win.max(-1)
        scale = k + alpha * window_sum(pooled ** 2)
        normed = pooled * scale ** -beta
        flat = normed.reshape(n, 64)
        h1 = flat @ w["fc1.weight"].T + w["fc1.bias"]
        a2 = np.maximum(h1, 0)
        logits = a2 @ w["fc2.weight"].T + w["fc2.bias"]
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        losses.append(-logp[np.arange(n), labels].mean())
        if step == STEPS:
            break
        g = {}
        dlogits = np.exp(logp)
        dlogits[np.arange(n), labels] -= 1
        dlogits /= n
        g["fc2.weight"], g["fc2.bias"] = dlogits.T @ a2, dlogits.sum(0)
        dh1 = (dlogits @ w["fc2.weight"]) * (h1 > 0)
        g["fc1.weight"], g["fc1.bias"] = dh1.T @ flat, dh1.sum(0)
        dnormed = (dh1 @ w["fc1.weight"]).reshape(normed.shape)
        dpooled = dnormed * scale ** -beta - 2 * alpha * beta * pooled * window_sum(
            dnormed * normed / scale)
        first_max = win.argmax(-1)
        dwin = np.zeros_like(win)
        np.put_along_axis(dwin, first_max[..., None], dpooled[..., None], axis=-1)
        da1 = dwin.reshape(n, 4, 4, 4, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, 4, 8, 8)
        dconv = da1 * (conv > 0)
        g["conv.bias"] = dconv.sum((0, 2, 3))
        g["conv.weight"] = np.zeros_like(w["conv.weight"])
        for r in range(3):
            for s in range(3):
                g["conv.weight"][:, :, r, s] = np.einsum("nkhw,nchw->kc", dconv, xp[:, :, r:r + 8, s:s + 8])
        for name in w:
            v[name] = MOMENTUM * v[name] - DECAY * LR * w[name] - LR * g[name]
            w[name] = w[name] + v[name]
    return np.array(losses)


def test_golden_training_matches_numpy():
    expected = numpy_losses()
    assert expected[-1] < expected[0]  # it does learn
    np.testing.assert_allclose(deepconv_losses("float64"), expected, rtol=1e-10)
    np.testing.assert_allclose(deepconv_losses("float32"), expected, rtol=1e-5)


def torch_losses(torch):
    weights, x, labels = golden_problem()
    f = torch.nn.functional
    params = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in weights.items()}
    opt = torch.optim.SGD(params.values(), lr=LR, momentum=MOMENTUM, weight_decay=DECAY)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(labels)

    def loss_fn():
        h = f.relu(f.conv2d(xt, params["conv.weight"], params["conv.bias"], padding=1))
        h = f.local_response_norm(f.max_pool2d(h, 2), **LRN_ARGS)
        h = f.relu(f.linear(h.flatten(1), params["fc1.weight"], params["fc1.bias"]))
        return f.cross_entropy(f.linear(h, params["fc2.weight"], params["fc2.bias"]), yt)

    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_fn()
        losses.append(loss.item())
        loss.backward()
        opt.step()  # v = m v + g + wd w; w -= lr v: the same as ours at constant lr
    with torch.no_grad():
        losses.append(loss_fn().item())
    return np.array(losses)


def test_golden_training_matches_pytorch():
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(deepconv_losses("float32"), torch_losses(torch), rtol=1e-5)

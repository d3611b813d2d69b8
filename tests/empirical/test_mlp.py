"""The p-sim towers' MLP (paper §2.1.1): hand-written gradients against finite differences, and Adam."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from empirical.mlp import Adam, init_mlp, mlp_backward, mlp_forward, n_layers


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def f64_mlp(sizes, seed):
    params = init_mlp(sizes, np.random.default_rng(seed), np)
    rng = np.random.default_rng([seed, 1])
    # non-zero biases, so the bias gradients are exercised away from the initial point
    return {k: (v.astype(np.float64) + (0.1 * rng.standard_normal(v.shape) if k.startswith("b") else 0))
            for k, v in params.items()}


def test_init_shapes_dtype_and_bounds():
    params = init_mlp([5, 7, 3], np.random.default_rng(0), np)
    assert set(params) == {"W0", "b0", "W1", "b1"} and n_layers(params) == 2
    assert params["W0"].shape == (5, 7) and params["W1"].shape == (7, 3)
    assert params["b0"].shape == (7,) and not params["b1"].any()
    assert all(v.dtype == np.float32 for v in params.values())
    assert np.abs(params["W0"]).max() <= np.sqrt(6 / 5) and np.abs(params["W1"]).max() <= np.sqrt(6 / 7)
    again = init_mlp([5, 7, 3], np.random.default_rng(0), np)
    np.testing.assert_array_equal(params["W1"], again["W1"])  # seeded, nothing else


def test_forward_gives_unit_embeddings():
    params = init_mlp([4, 8, 8, 6], np.random.default_rng(1), np)
    x = np.random.default_rng(2).standard_normal((10, 4)).astype(np.float32)
    emb, (acts, _norm) = mlp_forward(params, x, np)
    assert emb.shape == (10, 6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    # the cache holds the input and one activation per layer; hidden ones are ReLU'd
    assert len(acts) == 4 and acts[0] is x
    assert (acts[1] >= 0).all() and (acts[2] >= 0).all() and (acts[3] < 0).any()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 6),
       sizes=st.lists(st.integers(2, 6), min_size=2, max_size=4))
def test_mlp_gradients_match_finite_differences(central_fd, seed, batch, sizes):
    """Loss sum(w * emb) through every layer and the L2 normalisation, in float64."""
    params = f64_mlp(sizes, seed)
    rng = np.random.default_rng([seed, 2])
    x = rng.standard_normal((batch, sizes[0]))
    w = rng.standard_normal((batch, sizes[-1]))

    def loss():
        return float((w * mlp_forward(params, x, np)[0]).sum())

    emb, cache = mlp_forward(params, x, np)
    assert emb.dtype == np.float64
    grads = mlp_backward(params, cache, w, np)
    assert set(grads) == set(params)
    fd = central_fd(loss, params)
    for k in params:
        assert grads[k].shape == params[k].shape
        assert rel_err(grads[k], fd[k]) < 1e-5, k


def test_mlp_gradient_through_normalisation_is_tangent():
    """A loss along the embedding itself (w = emb) cannot change: the norm is fixed at 1."""
    params = f64_mlp([3, 5, 4], 7)
    x = np.random.default_rng(0).standard_normal((4, 3))
    emb, cache = mlp_forward(params, x, np)
    grads = mlp_backward(params, cache, emb.copy(), np)
    assert max(float(np.abs(g).max()) for g in grads.values()) < 1e-6
    grads = mlp_backward(params, cache, np.ones_like(emb), np)
    assert max(float(np.abs(g).max()) for g in grads.values()) > 1e-3  # ...but a generic one does


# --- Adam ----------------------------------------------------------------------------------------

def test_adam_first_step_is_lr_times_sign():
    params = {"a": np.array([1.0, -2.0, 3.0]), "b": np.array([[0.5]])}
    opt = Adam({k: v.copy() for k, v in params.items()}, np, lr=0.1, average_decay=0.5)
    p = {k: v.copy() for k, v in params.items()}
    g = {"a": np.array([4.0, -0.01, 0.0]), "b": np.array([[-3.0]])}
    opt.step(p, g)
    # bias-corrected moments: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps)
    np.testing.assert_allclose(p["a"], [0.9, -1.9, 3.0], atol=1e-6)
    np.testing.assert_allclose(p["b"], [[0.6]], atol=1e-6)
    # the weight average moves halfway (average_decay 0.5) from the initial weights
    np.testing.assert_allclose(opt.weight_average["a"], [0.95, -1.95, 3.0], atol=1e-6)
    opt.step(p, g, lr=0.0)  # an explicit learning rate overrides the default
    np.testing.assert_allclose(p["b"], [[0.6]], atol=1e-12)
    assert opt.t == 2


def test_adam_minimises_a_quadratic():
    rng = np.random.default_rng(0)
    target = rng.standard_normal(5)
    p = {"x": np.zeros(5)}
    opt = Adam(p, np, lr=0.05, average_decay=0.9)
    for _ in range(600):
        opt.step(p, {"x": 2 * (p["x"] - target)})
    np.testing.assert_allclose(p["x"], target, atol=1e-2)
    np.testing.assert_allclose(opt.weight_average["x"], target, atol=5e-2)


def test_adam_trains_an_mlp_embedding():
    """The towers' training loop in miniature: pull embeddings of x toward fixed unit targets."""
    rng = np.random.default_rng(3)
    params = init_mlp([4, 16, 3], rng, np)
    x = rng.standard_normal((32, 4)).astype(np.float32)
    target = rng.standard_normal((32, 3)).astype(np.float32)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    opt = Adam(params, np, lr=1e-2)

    def cosine():
        return float((mlp_forward(params, x, np)[0] * target).sum(1).mean())

    before = cosine()
    for _ in range(300):
        _emb, cache = mlp_forward(params, x, np)
        opt.step(params, mlp_backward(params, cache, -target / len(x), np))  # loss = -mean cosine
    assert cosine() > before + 0.3
    assert cosine() > 0.8


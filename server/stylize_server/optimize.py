"""Optimization of the image's pixels: the compiled objective, the L-BFGS and
Adam steps (each one tf.function call that keeps every tensor on the device),
and the loop that runs one scale with progress, cancellation and NaN checks.

The steps are functional (state in, state out) rather than built on
tf.Variables: several jobs of different sizes share one traced function, and
a new image size never retraces it (height and width are None in every
signature).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from . import losses
from .errors import NumericalError
from .layout import needed_layers
from .options import Pooling
from .vgg import VGG19Features

IMAGE = tf.TensorSpec([1, None, None, 3], tf.float32)
FLAT = tf.TensorSpec([None], tf.float32)
SCALAR = tf.TensorSpec([], tf.float32)


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """What a traced objective depends on; everything else is a tensor input."""

    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: Pooling


@dataclasses.dataclass(frozen=True)
class Targets:
    """Per-scale inputs of the objective."""

    content: tuple[tf.Tensor, ...]  # feature maps, one per content layer
    style: tuple[tf.Tensor, ...]  # blended Gram matrices, one per style layer
    content_layer_weights: tf.Tensor  # [n_content]
    style_layer_weights: tf.Tensor  # [n_style]
    loss_weights: tf.Tensor  # [3]: content, style, tv


class Objective:
    """The compiled loss of one LossSpec: targets, terms, and value+gradient."""

    def __init__(self, vgg: VGG19Features, spec: LossSpec, xla: bool = False) -> None:
        self.vgg = vgg
        self.spec = spec
        self.layers = needed_layers(spec.content_layers, spec.style_layers)
        nc, ns = len(spec.content_layers), len(spec.style_layers)
        self.target_specs = (
            [tf.TensorSpec([1, None, None, None], tf.float32)] * nc,
            [tf.TensorSpec([None, None], tf.float32)] * ns,
            tf.TensorSpec([nc], tf.float32),
            tf.TensorSpec([ns], tf.float32),
            tf.TensorSpec([3], tf.float32),
        )
        self.content_features = tf.function(
            self._content_features, input_signature=[IMAGE], jit_compile=xla, reduce_retracing=True
        )
        self.style_grams = tf.function(
            self._style_grams, input_signature=[IMAGE], jit_compile=xla, reduce_retracing=True
        )
        self.terms = tf.function(self._terms_from_args, input_signature=[IMAGE, *self.target_specs], jit_compile=xla)

    def _content_features(self, image: tf.Tensor) -> list[tf.Tensor]:
        feats = self.vgg(image, self.spec.content_layers, self.spec.pooling) if self.spec.content_layers else {}
        return [feats[n] for n in self.spec.content_layers]

    def _style_grams(self, image: tf.Tensor) -> list[tf.Tensor]:
        feats = self.vgg(image, self.spec.style_layers, self.spec.pooling) if self.spec.style_layers else {}
        return [losses.gram(feats[n]) for n in self.spec.style_layers]

    def weighted_terms(self, x: tf.Tensor, targets: Sequence) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(content, style, tv) multiplied by their weights; traced inside steps."""
        content_t, style_t, cw, sw, weights = targets
        feats = self.vgg(x, self.layers, self.spec.pooling)
        zero = tf.constant(0.0, tf.float32)
        content = zero
        for i, name in enumerate(self.spec.content_layers):
            content += cw[i] * losses.content_loss(feats[name], content_t[i])
        style = zero
        for i, name in enumerate(self.spec.style_layers):
            style += sw[i] * losses.style_loss(feats[name], style_t[i])
        tv = losses.tv_loss(x)
        return weights[0] * content, weights[1] * style, weights[2] * tv

    def _terms_from_args(self, x, content_t, style_t, cw, sw, weights):
        return self.weighted_terms(x, (content_t, style_t, cw, sw, weights))

    def value_and_grad(self, x: tf.Tensor, targets: Sequence):
        with tf.GradientTape() as tape:
            tape.watch(x)
            c, s, tv = self.weighted_terms(x, targets)
            total = c + s + tv
        return (c, s, tv, total), tape.gradient(total, x)


def target_args(t: Targets) -> tuple:
    return (list(t.content), list(t.style), t.content_layer_weights, t.style_layer_weights, t.loss_weights)


class LBFGS:
    """L-BFGS in the style of torch7's optim.lbfgs (which jcjohnson/neural-style
    uses): one gradient per iteration, no line search, the first step scaled by
    min(1, 1/|g|₁), then steps of `learning_rate` along the two-loop direction;
    curvature pairs with sᵀy <= 1e-10 are skipped.

    One safeguard replaces the line search at no cost in the usual case: a trial
    point whose loss is higher than the last accepted one (or not finite) is
    rejected and the step halved, so an early overshoot costs one iteration
    instead of sending the image far away. Reported losses and images are the
    accepted point's, so they never increase.

    The history is a list of `history` flat tensors, oldest first, that each
    step returns shifted: no copy of the history is ever made.
    """

    def __init__(self, objective: Objective, history: int = 20, xla: bool = False) -> None:
        self.objective = objective
        self.m = history
        hist = [FLAT] * history
        self._step = tf.function(
            self._step_impl,
            input_signature=[
                IMAGE,
                IMAGE,
                tf.TensorSpec([3], tf.float32),
                FLAT,
                FLAT,
                hist,
                hist,
                tf.TensorSpec([history], tf.float32),
                SCALAR,
                tf.TensorSpec([], tf.bool),
                SCALAR,
                *objective.target_specs,
            ],
            jit_compile=xla,
        )

    def init(self, x: tf.Tensor) -> tuple:
        zeros = tf.zeros([tf.size(x)], tf.float32)
        # Every empty history slot shares one zero tensor.
        return (
            x,
            tf.zeros([3]),
            zeros,
            zeros,
            [zeros] * self.m,
            [zeros] * self.m,
            tf.zeros([self.m]),
            tf.constant(1.0),
            tf.constant(True),
        )

    def step(self, x: tf.Tensor, state: tuple, lr: tf.Tensor, targets: Targets):
        """-> (next trial point, state, accepted point's terms, accepted point)."""
        x_new, *state = self._step(x, *state, lr, *target_args(targets))
        return x_new, tuple(state), state[1], state[0]

    def result(self, x_next: tf.Tensor, state: tuple) -> tf.Tensor:
        return state[0]  # the best evaluated point; the next trial was never evaluated

    def _step_impl(
        self, x, x_acc, terms_acc, g_acc, s_prev, S, Y, rho, gamma, first, lr, content_t, style_t, cw, sw, weights
    ):
        terms, grad = self.objective.value_and_grad(x, (content_t, style_t, cw, sw, weights))
        terms = tf.stack(terms[:3])
        f = tf.reduce_sum(terms)
        g = tf.reshape(grad, [-1])
        accept = tf.logical_or(first, tf.logical_and(tf.math.is_finite(f), f <= tf.reduce_sum(terms_acc)))

        def accepted():
            y_new = g - g_acc
            ys = tf.tensordot(y_new, s_prev, 1)
            push = tf.logical_and(tf.logical_not(first), ys > 1e-10)

            def with_pair():
                yy = tf.tensordot(y_new, y_new, 1)
                return (list(S[1:]) + [s_prev], list(Y[1:]) + [y_new], tf.concat([rho[1:], [1.0 / ys]], 0), ys / yy)

            S2, Y2, rho2, gamma2 = tf.cond(push, with_pair, lambda: (list(S), list(Y), rho, gamma))
            # Two-loop recursion, newest pair first; empty slots have rho = 0.
            q = g
            alphas = [None] * self.m
            for j in reversed(range(self.m)):
                alphas[j] = rho2[j] * tf.tensordot(S2[j], q, 1)
                q = q - alphas[j] * Y2[j]
            r = gamma2 * q
            for j in range(self.m):
                beta = rho2[j] * tf.tensordot(Y2[j], r, 1)
                r = r + (alphas[j] - beta) * S2[j]
            step_size = tf.where(first, tf.minimum(1.0, 1.0 / tf.reduce_sum(tf.abs(g))) * lr, lr)
            s = -step_size * r
            return x + tf.reshape(s, tf.shape(x)), x, terms, g, s, S2, Y2, rho2, gamma2

        def rejected():
            s = 0.5 * s_prev
            return x_acc + tf.reshape(s, tf.shape(x)), x_acc, terms_acc, g_acc, s, list(S), list(Y), rho, gamma

        out = tf.cond(accept, accepted, rejected)
        return (*out, tf.constant(False))


class Adam:
    """Adam on the pixels (β1 0.9, β2 0.999, ε 1e-8), pixels kept in 0..255."""

    def __init__(
        self, objective: Objective, xla: bool = False, beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8
    ) -> None:
        self.objective = objective
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon
        self._step = tf.function(
            self._step_impl,
            input_signature=[IMAGE, IMAGE, IMAGE, SCALAR, SCALAR, *objective.target_specs],
            jit_compile=xla,
        )

    def init(self, x: tf.Tensor) -> tuple:
        return tf.zeros_like(x), tf.zeros_like(x), tf.constant(0.0)

    def step(self, x: tf.Tensor, state: tuple, lr: tf.Tensor, targets: Targets):
        """-> (next point, state, terms at `x`, `x`)."""
        m, v, t = state
        x_new, m, v, t, terms = self._step(x, m, v, t, lr, *target_args(targets))
        return x_new, (m, v, t), tf.stack(terms[:3]), x

    def result(self, x_next: tf.Tensor, state: tuple) -> tf.Tensor:
        return x_next

    def _step_impl(self, x, m, v, t, lr, content_t, style_t, cw, sw, weights):
        terms, g = self.objective.value_and_grad(x, (content_t, style_t, cw, sw, weights))
        t = t + 1.0
        m = self.beta1 * m + (1.0 - self.beta1) * g
        v = self.beta2 * v + (1.0 - self.beta2) * tf.square(g)
        m_hat = m / (1.0 - tf.pow(self.beta1, t))
        v_hat = v / (1.0 - tf.pow(self.beta2, t))
        x_new = tf.clip_by_value(x - lr * m_hat / (tf.sqrt(v_hat) + self.epsilon), 0.0, 255.0)
        return x_new, m, v, t, terms


@dataclasses.dataclass
class LoopHooks:
    on_report: Callable[[int, tuple[float, float, float, float], tf.Tensor], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_iteration: Callable[[int, float], None] | None = None


def run_scale(
    optimizer: LBFGS | Adam,
    x: tf.Tensor,
    targets: Targets,
    learning_rate: float,
    iterations: int,
    first_iteration: int,
    hooks: LoopHooks,
) -> tuple[tf.Tensor, int]:
    """Run up to `iterations` steps from `x`; return the image to keep and how
    many iterations ran (fewer when `hooks.should_stop` said so).

    Iterations are numbered globally from `first_iteration` (1-based). The host
    reads the loss of iteration k only after iteration k+1 has been dispatched,
    so the device is never idle waiting for Python, and the stop hook is polled
    before every dispatch: a stop request takes effect within one iteration.
    """
    lr = tf.constant(learning_rate, tf.float32)
    state = optimizer.init(x)
    pending: tuple[int, tf.Tensor, tf.Tensor] | None = None
    last_time = time.perf_counter()

    def settle(item: tuple[int, tf.Tensor, tf.Tensor]) -> None:
        nonlocal last_time
        iteration, terms, x_in = item
        parts = [float(v) for v in terms.numpy()]  # waits for that iteration only
        values = (parts[0], parts[1], parts[2], sum(parts))
        now = time.perf_counter()
        if hooks.on_iteration:
            hooks.on_iteration(iteration, now - last_time)
        last_time = now
        if not np.isfinite(values[3]):
            raise NumericalError(f"the loss became {values[3]} at iteration {iteration}: the optimization diverged")
        if hooks.on_report:
            hooks.on_report(iteration, values, x_in)

    done = 0
    for k in range(iterations):
        if hooks.should_stop and hooks.should_stop():
            break
        x, state, terms, x_reported = optimizer.step(x, state, lr, targets)
        if pending is not None:
            settle(pending)
        pending = (first_iteration + k, terms, x_reported)
        done = k + 1
    if pending is not None:
        settle(pending)
    if done == 0:
        return x, 0
    return optimizer.result(x, state), done

"""Optimization of the image's pixels: the L-BFGS and Adam steps and the
loop that runs one scale with progress, cancellation and NaN checks.

For a whole image each step is one tf.function call that evaluates the
objective and updates the state, every tensor staying on the device. For a
tiled scale the evaluation is a sequence of tile calls (tiling.Evaluator), so
the update is a function of its own that takes the loss and gradient; the two
paths share the same update code.

The steps are functional (state in, state out) rather than built on
tf.Variables: several jobs of different sizes share one traced function, and
a new image size never retraces it (height and width are None in every
signature). Pixels, gradients and all optimizer state are float32 whatever
precision the network runs in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from stylize_api.losses import Losses
from stylize_server.engine.objective import IMAGE, Objective, Targets
from stylize_server.engine.tiling import Evaluator, Stopped
from stylize_server.job.errors import NumericalError

FLAT = tf.TensorSpec([None], tf.float32)
SCALAR = tf.TensorSpec([], tf.float32)


def terms_spec(objective: Objective) -> tf.TensorSpec:
    """The weighted terms of an evaluation, one per term of the objective."""
    return tf.TensorSpec([len(objective.terms)], tf.float32)


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
    step returns shifted: no copy of the history is ever made. The cost model
    picks `history` per scale so that it fits (jcjohnson uses 5 pairs at
    3620 px).
    """

    def __init__(self, objective: Objective, history: int = 20, xla: bool = False) -> None:
        self.objective = objective
        self.m = history
        hist = [FLAT] * history
        terms = terms_spec(objective)
        state = [IMAGE, terms, FLAT, FLAT, hist, hist, tf.TensorSpec([history], tf.float32), SCALAR]
        state.append(tf.TensorSpec([], tf.bool))
        self._step = tf.function(
            self._step_impl, input_signature=[IMAGE, *state, SCALAR, *objective.target_specs], jit_compile=xla
        )
        self._update = tf.function(
            self._update_impl, input_signature=[IMAGE, terms, IMAGE, *state, SCALAR], jit_compile=xla
        )

    def init(self, x: tf.Tensor) -> tuple[Any, ...]:
        zeros = tf.zeros([tf.size(x)], tf.float32)
        # Every empty history slot shares one zero tensor.
        return (
            x,
            tf.zeros([len(self.objective.terms)]),
            zeros,
            zeros,
            [zeros] * self.m,
            [zeros] * self.m,
            tf.zeros([self.m]),
            tf.constant(1.0),
            tf.constant(True),
        )

    def step(self, x: tf.Tensor, state: tuple[Any, ...], lr: tf.Tensor, targets: Targets) -> Stepped:
        """Evaluate the whole image at `x` and update (one fused call)."""
        x_new, *rest = self._step(x, *state, lr, *targets.args)
        return x_new, tuple(rest), rest[1], rest[0]

    def update(self, x: tf.Tensor, terms: tf.Tensor, grad: tf.Tensor, state: tuple[Any, ...], lr: tf.Tensor) -> Stepped:
        """Update with the loss and gradient at `x` evaluated elsewhere (tiles).
        -> (next trial point, state, accepted point's terms, accepted point)."""
        x_new, *rest = self._update(x, terms, grad, *state, lr)
        return x_new, tuple(rest), rest[1], rest[0]

    def _step_impl(
        self,
        x: Any,
        x_acc: Any,
        terms_acc: Any,
        g_acc: Any,
        s_prev: Any,
        S: Any,
        Y: Any,
        rho: Any,
        gamma: Any,
        first: Any,
        lr: Any,
        *targets: Any,
    ) -> Any:
        terms, grad = self.objective.value_and_grad(x, targets)
        return self._update_impl(x, terms, grad, x_acc, terms_acc, g_acc, s_prev, S, Y, rho, gamma, first, lr)

    def _update_impl(
        self,
        x: Any,
        terms: Any,
        grad: Any,
        x_acc: Any,
        terms_acc: Any,
        g_acc: Any,
        s_prev: Any,
        S: Any,
        Y: Any,
        rho: Any,
        gamma: Any,
        first: Any,
        lr: Any,
    ) -> Any:
        f = tf.reduce_sum(terms)
        g = tf.reshape(grad, [-1])
        accept = tf.logical_or(first, tf.logical_and(tf.math.is_finite(f), f <= tf.reduce_sum(terms_acc)))

        def accepted() -> Any:
            y_new = g - g_acc
            ys = tf.tensordot(y_new, s_prev, 1)
            push = tf.logical_and(tf.logical_not(first), ys > 1e-10)

            def with_pair() -> Any:
                yy = tf.tensordot(y_new, y_new, 1)
                return (list(S[1:]) + [s_prev], list(Y[1:]) + [y_new], tf.concat([rho[1:], [1.0 / ys]], 0), ys / yy)

            S2, Y2, rho2, gamma2 = tf.cond(push, with_pair, lambda: (list(S), list(Y), rho, gamma))
            # Two-loop recursion, newest pair first; empty slots have rho = 0.
            q = g
            alphas: list[Any] = [None] * self.m
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

        def rejected() -> Any:
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
        self._update = tf.function(
            self._update_impl, input_signature=[IMAGE, IMAGE, IMAGE, IMAGE, SCALAR, SCALAR], jit_compile=xla
        )

    def init(self, x: tf.Tensor) -> tuple[Any, ...]:
        return tf.zeros_like(x), tf.zeros_like(x), tf.constant(0.0)

    @staticmethod
    def resized(state: tuple[Any, ...], shape: tuple[int, int]) -> tuple[Any, ...]:
        """The moments carried to the next scale's size (crowsonkb), bilinear
        so that the second moment stays non-negative; the step count carries
        on, so the bias correction does not restart."""
        m, v, t = state
        return tf.image.resize(m, shape, method="bilinear"), tf.image.resize(v, shape, method="bilinear"), t

    def step(self, x: tf.Tensor, state: tuple[Any, ...], lr: tf.Tensor, targets: Targets) -> Stepped:
        """-> (next point, state, terms at `x`, `x`)."""
        m, v, t = state
        x_new, m, v, t, terms = self._step(x, m, v, t, lr, *targets.args)
        return x_new, (m, v, t), terms, x

    def update(self, x: tf.Tensor, terms: tf.Tensor, grad: tf.Tensor, state: tuple[Any, ...], lr: tf.Tensor) -> Stepped:
        m, v, t = state
        x_new, m, v, t = self._update(x, grad, m, v, t, lr)
        return x_new, (m, v, t), terms, x

    def _step_impl(self, x: Any, m: Any, v: Any, t: Any, lr: Any, *targets: Any) -> Any:
        terms, g = self.objective.value_and_grad(x, targets)
        return (*self._update_impl(x, g, m, v, t, lr), terms)

    def _update_impl(self, x: Any, g: Any, m: Any, v: Any, t: Any, lr: Any) -> Any:
        t = t + 1.0
        m = self.beta1 * m + (1.0 - self.beta1) * g
        v = self.beta2 * v + (1.0 - self.beta2) * tf.square(g)
        m_hat = m / (1.0 - tf.pow(self.beta1, t))
        v_hat = v / (1.0 - tf.pow(self.beta2, t))
        x_new = tf.clip_by_value(x - lr * m_hat / (tf.sqrt(v_hat) + self.epsilon), 0.0, 255.0)
        return x_new, m, v, t


Optimizer = LBFGS | Adam
# (next point, state, terms of the reported point, the reported point)
Stepped = tuple[tf.Tensor, tuple[Any, ...], tf.Tensor, tf.Tensor]


class IterateAverage:
    """The bias-corrected exponential moving average of the iterates
    (crowsonkb/style-transfer-pytorch; Polyak averaging): a_t = d·a_(t−1) +
    (1 − d)·x_t from a_0 = 0, reported as a_t / (1 − d^t), so the first is
    x_1 itself. It smooths the iteration-to-iteration flicker of the pixels
    (Adam's above all) at no evaluation: one image-sized state on the device."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.total: tf.Tensor | None = None

    def update(self, x: tf.Tensor) -> tf.Tensor:
        self.steps += 1
        d = self.decay
        self.total = (1.0 - d) * x if self.total is None else d * self.total + (1.0 - d) * x
        return self.total / (1.0 - d**self.steps)


@dataclasses.dataclass
class Carry:
    """What one scale hands the next: its image, upsampled (bicubic) to the
    next scale's size, and Adam's moments, resized (Adam.resized). L-BFGS's
    history is not carried (its pairs are vectors of the old size), so each
    scale starts it afresh. The runner puts the first scale's starting image
    in `image`; run_scale leaves each scale's kept image there."""

    state: tuple[Any, ...] | None = None
    image: tf.Tensor | None = None

    def start(self, optimizer: Optimizer, x: tf.Tensor) -> tuple[Any, ...]:
        if isinstance(optimizer, Adam) and self.state is not None:
            return Adam.resized(self.state, (int(x.shape[1]), int(x.shape[2])))
        return optimizer.init(x)

    def image_at(self, shape: tuple[int, int]) -> tf.Tensor:
        """The image at `shape`: as kept where it is that size already, else
        upsampled from the coarser scale it was kept at."""
        assert self.image is not None
        if tuple(self.image.shape[1:3]) == shape:
            return self.image
        return tf.image.resize(self.image, shape, method="bicubic")


@dataclasses.dataclass
class LoopHooks:
    on_report: Callable[[int, Losses, tf.Tensor], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_iteration: Callable[[int, float], None] | None = None


def run_scale(
    optimizer: Optimizer,
    evaluator: Evaluator,
    targets: Targets,
    shape: tuple[int, int],
    learning_rate: float,
    iterations: int,
    first_iteration: int,
    hooks: LoopHooks,
    carry: Carry,
    average: float | None = None,
) -> tuple[int, Losses | None]:
    """Run up to `iterations` steps at `shape` from the carried image
    (Carry.image_at), leaving the image to keep in `carry.image`; return how
    many iterations ran (fewer when `hooks.should_stop` said so) and the
    losses of the image kept (None when none ran: `carry.image` is then the
    start, at this scale's size).

    With `average` (a decay in [0, 1)), the image reported at each iteration
    and kept at the end is the bias-corrected EMA of the reported points
    (IterateAverage), restarted at each scale; the losses reported stay the
    evaluated point's (the average is never evaluated inside the loop), and
    the average kept is evaluated once at the end (forward only), so that
    the losses returned are the kept image's.
    The optimizer starts from the carried state (Carry.start) and leaves its
    last state there.

    The image kept is the last one reported, an evaluated point whose losses
    the caller already has: L-BFGS's best accepted point, Adam's last
    evaluated one (the next trial point was never evaluated), so a job needs
    no extra pass to know its final loss.

    Iterations are numbered globally from `first_iteration` (1-based). The host
    reads the loss of iteration k only after iteration k+1 has been dispatched,
    so the device is never idle waiting for Python, and the stop hook is polled
    before every dispatch (and between tiles): a stop request takes effect
    within one iteration.
    """
    lr = tf.constant(learning_rate, tf.float32)
    x = carry.image_at(shape)
    state = carry.start(optimizer, x)
    pending: tuple[int, tf.Tensor, tf.Tensor] | None = None
    last_time = time.perf_counter()
    fused = evaluator.layout.whole
    names = evaluator.objective.names
    ema = IterateAverage(average) if average is not None else None

    def settle(item: tuple[int, tf.Tensor, tf.Tensor]) -> Losses:
        nonlocal last_time
        iteration, terms, x_in = item
        losses = Losses.of(zip(names, (float(v) for v in terms.numpy())))  # waits for that iteration only
        now = time.perf_counter()
        if hooks.on_iteration:
            hooks.on_iteration(iteration, now - last_time)
        last_time = now
        if not np.isfinite(losses.total):
            raise NumericalError(f"the loss became {losses.total} at iteration {iteration}: the optimization diverged")
        if hooks.on_report:
            hooks.on_report(iteration, losses, x_in)
        return losses

    done = 0
    for k in range(iterations):
        if hooks.should_stop and hooks.should_stop():
            break
        if fused:
            x, state, terms, x_reported = optimizer.step(x, state, lr, targets)
        else:
            try:
                value, grad = evaluator.value_and_grad(x, targets, hooks.should_stop)
            except Stopped:
                break
            x, state, terms, x_reported = optimizer.update(x, value, grad, state, lr)
        if ema is not None:
            x_reported = ema.update(x_reported)
        if pending is not None:
            settle(pending)
        pending = (first_iteration + k, terms, x_reported)
        done = k + 1
    # L-BFGS's history is dropped now, not held beside the next scale's.
    carry.state = state if isinstance(optimizer, Adam) else None
    if pending is None:  # stopped before the first step: the start, at this scale's size
        carry.image = x
        return 0, None
    losses = settle(pending)
    carry.image = pending[2]
    if ema is not None:
        losses = Losses.of(zip(names, evaluator.terms(carry.image, targets).numpy().tolist()))
    return done, losses

"""The 2-Wasserstein distance between two Gaussians fitted to feature maps
(the `mean_cov` style loss; after crowsonkb/style-transfer-pytorch), as pure
TensorFlow functions with the gradient written out:

    W2(o, s) = |μ_o − μ_s|² + tr(Σ_o) + tr(Σ_s) − 2 tr((Σ_s^½ Σ_o Σ_s^½)^½)

μ and Σ are the (guide-weighted) mean and covariance of a layer's feature
vectors. Both are functions of two sums over positions, Σ w_p g_p and
Σ w_p g_p g_pᵀ (g_p = f_p − μ_s), so the term is additive over tile interiors
like the Gram term: per tile `moment_sums`, once `w2_of_sums`, per tile
`cotangent`. The products over positions are the Gram term's own (FᵀF in
float32; a centred copy of each map measured 1.26x the Gram step at 512 px);
the centring on the style's mean is C×C work in float64, and the covariance
s2/n − ddᵀ then has d = μ_o − μ_s, small near the style.

Gradient, with M = Σ_s^½ Σ_o Σ_s^½ = V diag(λ) Vᵀ and S = M^½:
    d tr(S) = ½ tr(S⁻¹ dM)  =>  dW2/dΣ_o = G = I − Σ_s^½ S⁻¹ Σ_s^½
    dW2/dd = 2d − 2Gd (Σ_o = s2/n − ddᵀ),  dW2/ds1 = dW2/dd / n,  dW2/ds2 = G / n
and at a position dL/df_p = w_p (a + B g_p) with a = dL/ds1, B = 2 dL/ds2,
computed as w_p ((a − B μ_s) + B f_p).

Regularized: ε·I is added to both covariances (ε from the style's mean
variance, targets), so that flat styles, tiny masks and the rank-deficient
covariances of deep layers at small sizes (relu5_1 has 512 channels and, at
64 px, 16 positions) never give an infinite S⁻¹; eigenvalues of M below ε²
(its exact lower bound) are roundoff and are clipped there.

The C×C reduce (`w2_of_sums`, once per iteration) runs in float64, the sums
over positions and the cotangents in float32: measured (tests/test_w2.py), in
float32 the eigendecomposition of the ill-conditioned M turned the roundoff of
the sums' order into a 7e-4 relative difference between the tiled and the
whole gradient (2e-4 with a 10x larger ε); in float64 it is 5e-6. The matrices
are C×C whatever the image's size, so this costs the same at any size.

Square root by eigendecomposition (tf.linalg.eigh), not Newton–Schulz:
measured in benchmarks/w2_bench.py and docs/algorithm.md ("Wasserstein-2
style"): on this CPU eigh is faster at every channel count, and Newton–Schulz
needs more iterations than float32 can use on the ill-conditioned M of a
regularized rank-deficient covariance. `sqrtm_newton_schulz` stays for that
measurement.
"""

from __future__ import annotations

import tensorflow as tf


def _centred(raw: tf.Tensor, total: tf.Tensor, n: tf.Tensor, centre: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(Σ w g, Σ w g gᵀ) with g = f − μ, in float64, from the float32 raw sums
    Σ w f fᵀ, Σ w f and Σ w: Σ w g gᵀ = Σ w f fᵀ − μ sᵀ − s μᵀ + n μ μᵀ."""
    raw, s, n, mu = (tf.cast(t, tf.float64) for t in (raw, total, n, centre))
    outer = mu[:, None] * s[None, :]
    return s - n * mu, raw - outer - tf.transpose(outer) + n * mu[:, None] * mu[None, :]


def moment_sums(flat: tf.Tensor, centre: tf.Tensor, guides: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """(Σ w_p g_p, Σ w_p g_p g_pᵀ) in float64, g_p = f_p − centre, over `flat`
    [N, C]: unguided w = 1, centre [C] -> ([C], [C, C]); with `guides` [R, N],
    w = T_r², centre [R, C] -> ([R, C], [R, C, C]), one region at a time. The
    products over positions are the Gram term's, FᵀF (Fᵀ(T_r²∘F)), in float32;
    the centring is C×C work in float64 (no centred copy of the map)."""
    if guides is None:
        n = tf.cast(tf.shape(flat)[0], tf.float32)
        return _centred(tf.matmul(flat, flat, transpose_a=True), tf.reduce_sum(flat, axis=0), n, centre)
    c, regions = flat.shape[1], tf.shape(guides)[0]
    padded, centres = _past_the_end(guides), _past_the_end(centre)
    firsts = tf.TensorArray(tf.float64, size=regions, element_shape=tf.TensorShape([c]))
    seconds = tf.TensorArray(tf.float64, size=regions, element_shape=tf.TensorShape([c, c]))

    def body(r: tf.Tensor, firsts: tf.TensorArray, seconds: tf.TensorArray) -> tuple[tf.Tensor, ...]:
        w = tf.square(padded[r])
        weighted = w[:, None] * flat
        s1, s2 = _centred(tf.matmul(flat, weighted, True), tf.reduce_sum(weighted, 0), tf.reduce_sum(w), centres[r])
        return r + 1, firsts.write(r, s1), seconds.write(r, s2)

    _, firsts, seconds = tf.while_loop(
        lambda r, *_: r < regions, body, [tf.constant(0), firsts, seconds], parallel_iterations=1
    )
    return firsts.stack(), seconds.stack()


def cotangent(flat: tf.Tensor, a: tf.Tensor, b: tf.Tensor, guides: tf.Tensor | None = None) -> tf.Tensor:
    """dL/dF at every position of `flat` [N, C]: a + f B, or Σ_r T_r² (a_r + f B_r)
    with `guides` [R, N] (`a` has −μ B folded in: w2_of_sums)."""
    if guides is None:
        return a + tf.matmul(flat, b)
    regions = tf.shape(guides)[0]
    padded, firsts, seconds = (_past_the_end(t) for t in (guides, a, b))

    def body(r: tf.Tensor, total: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        share = firsts[r] + tf.matmul(flat, seconds[r])
        return r + 1, total + tf.square(padded[r])[:, None] * share

    _, total = tf.while_loop(
        lambda r, _: r < regions, body, [tf.constant(0), tf.zeros_like(flat)], parallel_iterations=1
    )
    return total


def sqrtm_eigh(m: tf.Tensor, floor: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(tr M^½, M^½, M^-½) of symmetric [..., C, C] matrices, eigenvalues
    clipped at `floor` [...]."""
    lam, v = tf.linalg.eigh(m)
    root = tf.sqrt(tf.maximum(lam, floor[..., None]))
    inv = tf.matmul(v * (1.0 / root)[..., None, :], v, transpose_b=True)
    sqrt = tf.matmul(v * root[..., None, :], v, transpose_b=True)
    return tf.reduce_sum(root, axis=-1), sqrt, inv


def sqrtm_newton_schulz(m: tf.Tensor, iterations: int = 20) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(tr M^½, M^½, M^-½) by the coupled Newton–Schulz iteration
    (Higham 2008, eq. 6.35) on M / |M|_F (the iteration converges for
    eigenvalues in (0, 1]): matrix products only."""
    c = tf.shape(m)[-1]
    norm = tf.sqrt(tf.reduce_sum(tf.square(m), axis=[-2, -1]))[..., None, None]
    eye = tf.eye(c, batch_shape=tf.shape(m)[:-2], dtype=m.dtype)
    y, z = m / norm, eye
    for _ in range(iterations):
        t = 0.5 * (3.0 * eye - tf.matmul(z, y))
        y, z = tf.matmul(y, t), tf.matmul(t, z)
    sqrt, inv = y * tf.sqrt(norm), z / tf.sqrt(norm)
    return tf.linalg.trace(sqrt), sqrt, inv


def w2_of_sums(
    s1: tf.Tensor,
    s2: tf.Tensor,
    counts: tf.Tensor,
    style_sqrt: tf.Tensor,
    centre: tf.Tensor,
    eps: tf.Tensor,
    weight: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One layer's weighted W2 from its centred moment sums, batched over
    regions: s1 [R, C], s2 [R, C, C], counts [R] (Σ w_p), style_sqrt
    [R, C, C] (Σ_s^½, ε·I included), centre [R, C] (μ_s), eps [] (the
    regularization). -> (weight · Σ_r W2_r, a − B μ_s [R, C], B [R, C, C]): the
    cotangent's multipliers (see `cotangent`). A region with no area has no term."""
    s1, s2, counts, style_sqrt, centre, eps = (
        tf.cast(t, tf.float64) for t in (s1, s2, counts, style_sqrt, centre, eps)
    )
    weight = tf.cast(weight, tf.float64)
    c = tf.shape(s1)[-1]
    present = tf.cast(counts > 0, tf.float64)
    inv_n = present / tf.maximum(counts, 1e-30)
    d = s1 * inv_n[:, None]
    eye = tf.eye(c, batch_shape=tf.shape(s1)[:1], dtype=tf.float64)
    cov = s2 * inv_n[:, None, None] - d[:, :, None] * d[:, None, :] + eps * eye
    m = tf.matmul(style_sqrt, tf.matmul(cov, style_sqrt))
    m = 0.5 * (m + tf.linalg.matrix_transpose(m))
    floor = tf.fill(tf.shape(s1)[:1], eps * eps)
    tr_root, _, inv_root = sqrtm_eigh(m, floor)
    w2 = (
        tf.reduce_sum(tf.square(d), axis=-1)
        + tf.linalg.trace(cov)
        + tf.reduce_sum(tf.square(style_sqrt), axis=[-2, -1])
        - 2.0 * tr_root
    )
    g = eye - tf.matmul(style_sqrt, tf.matmul(inv_root, style_sqrt))
    g = 0.5 * (g + tf.linalg.matrix_transpose(g))
    dd = 2.0 * d - 2.0 * tf.linalg.matvec(g, d)
    scale = weight * inv_n
    b = 2.0 * scale[:, None, None] * g
    a = scale[:, None] * dd - tf.linalg.matvec(b, centre)  # a + (f − μ)B = (a − Bμ) + fB, B symmetric
    value = weight * tf.reduce_sum(present * w2)
    return tf.cast(value, tf.float32), tf.cast(a, tf.float32), tf.cast(b, tf.float32)


def _past_the_end(t: tf.Tensor) -> tf.Tensor:
    """`t` with one zero row after its last, never read (as losses.py: with
    --xla a loop body is compiled even for no regions)."""
    return tf.concat([t, tf.zeros(tf.concat([[1], tf.shape(t)[1:]], 0), t.dtype)], 0)

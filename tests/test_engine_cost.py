"""The cost model's choices (TF-free): what runs whole, what is tiled and
how, the L-BFGS history that fits, bfloat16's half-size activations, and
that its tiles and halos are the engine's own."""

from __future__ import annotations

import pytest

from stylize_server.job import cost, profiles, tilings
from stylize_server.job.errors import TooLarge
from stylize_server.job.geometry import Scale
from stylize_server.job.options import InputShapes, JobOptions, Optimizer, resolve
from stylize_server.job.tilings import Tiling
from stylize_server.job.types import Estimate
from tests.support.terms import TERMS, spec_of

F32 = profiles.profile_for("CPU", "float32")
BF16 = profiles.profile_for("CPU", "bfloat16")


def estimate(*args: object, **kwargs: object) -> Estimate:
    """cost.estimate with every registered term's share."""
    return cost.estimate(*args, **kwargs, terms=TERMS)  # type: ignore[arg-type]


def shapes(side: int, styles: int = 1) -> InputShapes:
    return InputShapes((side, side), ((side, side),) * styles, (None,) * styles, (1.0,) * styles)


def options(side: int, **kw) -> JobOptions:
    return resolve(JobOptions(size=side, multiscale=False, iterations=10, **kw))


def one_scale(side: int, tiling: Tiling, history: int = 20, profile: profiles.Profile = F32, **kw):
    return cost.scale_estimate(options(side, **kw), shapes(side), Scale(side, 10), 1, profile, tiling, history, TERMS)


def test_the_whole_image_when_it_fits() -> None:
    est = estimate(options(512), shapes(512), F32, 1 << 40, 1 << 40)
    (scale,) = est.scales
    assert scale.tile_size == 0 and scale.lbfgs_history == 20 and scale.split_block == 0
    assert est.device_memory_bytes == scale.device_memory_bytes


def test_a_shorter_history_before_tiles_then_the_fastest_tiling_that_fits() -> None:
    whole = one_scale(2048, Tiling())
    shorter = one_scale(2048, Tiling(), history=5)
    assert shorter.device_memory_bytes < whole.device_memory_bytes
    chosen = estimate(options(2048), shapes(2048), F32, shorter.device_memory_bytes, 1 << 40).scales[0]
    assert chosen.tile_size == 0 and chosen.lbfgs_history == 5
    squeezed = estimate(options(2048), shapes(2048), F32, shorter.device_memory_bytes - 1, 1 << 40).scales[0]
    assert squeezed.tile_size > 0 and squeezed.device_memory_bytes < shorter.device_memory_bytes
    # Among the tilings that fit, the fastest: nothing that fits is faster.
    target = shorter.device_memory_bytes - 1
    for tiling in tilings.tilings("relu5_1", -1):
        for history in (20, 10, 5):
            other = one_scale(2048, tiling, history)
            if other.tile_size and other.device_memory_bytes <= target:
                assert other.seconds_per_iteration >= squeezed.seconds_per_iteration - 1e-9


def test_tile_setting_forces_or_forbids_tiles() -> None:
    never = estimate(options(2048), shapes(2048), F32, 1 << 20, 1 << 40, tile_setting=0).scales[0]
    assert never.tile_size == 0
    forced = estimate(options(2048), shapes(2048), F32, 1 << 40, 1 << 40, tile_setting=256).scales[0]
    assert forced.tile_size == 256 and forced.tiles == 64
    small = estimate(options(128), shapes(128), F32, 1 << 40, 1 << 40, tile_setting=256).scales[0]
    assert small.tile_size == 0  # a tile larger than the image is the whole image


def test_cutting_after_block_3_holds_a_fraction_of_the_memory_cutting_after_2_costs_less_time() -> None:
    whole = one_scale(2000, Tiling(), 5)
    cut3 = one_scale(2000, Tiling(512, 3, 0), 5)
    cut2 = one_scale(2000, Tiling(512, 2, 0), 5)
    assert cut3.device_memory_bytes < whole.device_memory_bytes / 3
    assert cut2.seconds_per_iteration < 1.3 * whole.seconds_per_iteration < cut3.seconds_per_iteration * 1.3
    assert (cut3.split_block, cut3.deep_tile_size, cut3.tiles) == (3, 0, 16)


def test_bfloat16_halves_the_activations() -> None:
    a32 = cost.activation_bytes(tilings.parts("relu5_1", Tiling(), 1024, 1024), F32)
    a16 = cost.activation_bytes(tilings.parts("relu5_1", Tiling(), 1024, 1024), BF16)
    assert 2 * a16 / BF16.keep == pytest.approx(a32 / F32.keep, rel=1e-6)  # 2 bytes a value, not 4
    half = one_scale(1024, Tiling(), profile=BF16).device_memory_bytes
    assert half < one_scale(1024, Tiling()).device_memory_bytes


def test_regions_add_work_and_guides() -> None:
    o, s = options(512), shapes(512, styles=2)
    one = cost.scale_estimate(o, s, Scale(512, 10), 1, F32, Tiling(), 20, TERMS)
    two = cost.scale_estimate(o, s, Scale(512, 10), 2, F32, Tiling(), 20, TERMS)
    assert two.seconds_per_iteration > one.seconds_per_iteration
    assert two.device_memory_bytes > one.device_memory_bytes
    assert two.seconds_per_iteration < 1.2 * one.seconds_per_iteration  # the extra Gram terms are cheap


def test_adam_has_no_history_and_the_estimate_grows_with_size() -> None:
    adam = estimate(options(1024, optimizer=Optimizer.ADAM), shapes(1024), F32, 1 << 40, 1 << 40)
    assert adam.scales[0].lbfgs_history == 0
    sizes = [estimate(options(s), shapes(s), F32, 1 << 40, 1 << 40).device_memory_bytes for s in (256, 512, 1024)]
    assert sizes == sorted(sizes) and sizes[2] > 3 * sizes[1]


def test_a_job_that_never_fits_says_what_would() -> None:
    expected = r"size: the job needs an estimated .* GiB .* budget of 0\.10 GiB; what would fit: size \d+"
    with pytest.raises(TooLarge, match=expected):
        estimate(options(4096), shapes(4096), F32, 100 << 20, 100 << 20)


def test_the_cost_model_tiles_and_halos_are_the_engines() -> None:
    """cost.py plans with the same parts, halos and tile counts that
    tiling.Evaluator runs (it imports TensorFlow, so only here)."""
    from stylize_server.engine.objective import stages_for
    from stylize_server.engine.spec import layout_of
    from stylize_server.engine.tiling import stage_halo, tile_grid
    from stylize_server.job.layout import Pooling

    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    spec = spec_of(("relu4_2",), layers, Pooling.AVG)
    for tiling in (Tiling(256, 3, 0), Tiling(256, 2, 256), Tiling(192)):
        scale = one_scale(1000, tiling)
        layout = layout_of(scale)
        parts = tilings.parts("relu5_1", tiling, 1000, 1000)
        stages = stages_for(spec, layout.splits)
        assert len(stages) == len(parts)
        for stage, part in zip(stages, parts):
            unit = 1 << (stage.first_block - 1)
            assert stage_halo(stage, "relu5_1") * unit == part.halo
            side = 1000 // unit
            tile = part.tile // unit
            expected = len(part.pieces)
            assert len(tile_grid(side, side, tile, stage_halo(stage, "relu5_1"))) == expected
        assert scale.tiles == len(tile_grid(1000, 1000, tiling.tile, 0))


def test_masks_are_priced_per_region_and_the_default_layers_are_unchanged() -> None:
    """Issue 17, item 3: each region's guides and Grams, the guided Gram's
    working set and the loss maps of layers wider than the default ones;
    nothing for an unmasked job with the default layers (keep's fit)."""
    early = (("relu1_1", 1.0), ("relu1_2", 1.0), ("relu2_1", 1.0), ("relu2_2", 1.0))
    masked = InputShapes((512, 512), ((512, 512),) * 2, ((512, 512),) * 2, (1.0,) * 2)

    def memory(regions: int, masks: InputShapes, **kw) -> int:
        return cost.scale_estimate(
            options(512, **kw), masks, Scale(512, 10), regions, F32, Tiling(), 20, TERMS
        ).device_memory_bytes

    assert cost.loss_bytes(tilings.parts("relu5_1", Tiling(), 512, 512), cost.Shares.of(TERMS, options(512), 0)) == 0
    unmasked, one, eight = memory(1, shapes(512)), memory(1, masked), memory(8, masked)
    assert unmasked < one < eight
    # Per region: a guide per style layer and the image-sized planes, and a Gram per style layer.
    per_region = (eight - one) / 7
    assert per_region >= 512 * 512 * 4 * 4 + 3 * 4 * sum(c * c for c in (64, 128, 256, 512, 512))
    # The early layers' maps are the widest (64 values a pixel at relu1_x):
    # the guided Gram's working set holds one more.
    assert memory(1, masked, style_layers=early) - memory(1, shapes(512), style_layers=early) > 64 * 512 * 512 * 4
    # Tiled, the loss side is a tile's.
    o = options(512, style_layers=early)
    shares, deepest = cost.Shares.of(TERMS, o, 1), cost.deepest_layer(o)
    tiled = cost.loss_bytes(tilings.parts(deepest, Tiling(128, 3, 0), 512, 512), shares)
    assert 0 < tiled < cost.loss_bytes(tilings.parts(deepest, Tiling(), 512, 512), shares) / 4

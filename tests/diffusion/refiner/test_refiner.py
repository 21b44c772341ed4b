"""The refiner: the in-graph resampler against soxr and its exact round trips, the
compressed STFT's inverse, the network and its zero-residual identity, windowed refining
without seams, save/load, and the debug experiment through the shared runtime."""

import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from codec.api import random_codec
from diffusion.refiner.api import Refiner
from diffusion.refiner.family import RefinerFamily
from diffusion.refiner.model import (
    CoarseConfig,
    RefinerConfig,
    RefinerNet,
    codec_round_trip,
    condition,
    latent_to_frames,
    output_audio,
    refine_window,
)
from diffusion.refiner.resample import resample
from diffusion.refiner.spectral import SpectralConfig, analyze, compress, decompress, synthesize
from diffusion.samplers import SamplerConfig
from mgcore.audio import resample as soxr_resample
from mgcore.config import load_experiment
from mgcore.metrics import read_metrics
from musicgen import cli

EXPERIMENT = "experiments/refiner_tiny.py:debug"
TONES = ((0.4, 220.37, 0.1), (0.3, 1000.9, 1.0), (0.2, 4321.3, 2.0), (0.1, 7001.7, 0.5))


def tones(rate: int, n: int) -> np.ndarray:
    t = np.arange(n) / rate
    return sum(a * np.sin(2 * np.pi * f * t + p) for a, f, p in TONES).astype(np.float32)


def tiny_config(**changes) -> RefinerConfig:
    coarse = CoarseConfig(sample_rate=16000, hop_length=320, dim=16, codebooks=2)
    return RefinerConfig(coarse=coarse, width=16, depth=1, noise_dim=16, **changes)


def make_net(config: RefinerConfig, zero_head: bool = False) -> RefinerNet:
    with nnx.use_eager_sharding(False):
        net = RefinerNet(config, rngs=nnx.Rngs(0))
    if zero_head:  # with the "x0" objective: the denoiser predicts a zero residual
        net.head.kernel[...] = 0.0
        net.head.bias[...] = 0.0
    return net


@pytest.fixture(scope="module")
def codec():
    return random_codec()


# ------------------------------------------------------------------------- resampling
@pytest.mark.parametrize("rate", [16000, 32000])
def test_fft_resampler_agrees_with_soxr_on_a_band_limited_signal(rate):
    x = tones(rate, rate)  # 1 s, tones below 7.1 kHz, not periodic in the segment
    ours = np.asarray(resample(x, rate, 44100))
    theirs = soxr_resample(x, rate, 44100)
    assert ours.shape == theirs.shape == (44100,)
    inner = slice(2205, -2205)  # 50 ms from the edges: the FFT treats the segment as periodic
    assert np.abs(ours - theirs)[inner].max() < 2e-4
    assert np.abs(ours - tones(44100, 44100))[inner].max() < 2e-4


def test_fft_resampler_round_trips_exactly(rng):
    for rate, length in ((16000, 1600), (32000, 3200), (16000, 1760)):
        x = rng.standard_normal((2, length)).astype(np.float32)
        up = resample(x, rate, 44100)
        assert up.shape == (2, length * 441 // (rate // 100))
        np.testing.assert_allclose(resample(up, 44100, rate), x, atol=1e-5)
        # A signal band-limited below the codec's Nyquist frequency survives down and up.
        np.testing.assert_allclose(resample(resample(up, 44100, rate), rate, 44100), up, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of 160"):
        resample(np.zeros(1000, np.float32), 16000, 44100)


# --------------------------------------------------------------------------- spectral
def test_compressed_stft_round_trip(rng):
    config = SpectralConfig()
    wav = (0.3 * rng.standard_normal((2, 10_000))).astype(np.float32)
    wav[:, 4000:4500] = 0.0  # exact zeros in the spectrum must survive too
    x = analyze(wav, config)
    assert x.shape == (2, config.frames(10_000), 1026)
    back = synthesize(x, 10_000, config)
    assert np.abs(np.asarray(back) - wav).max() < 1e-5 * np.abs(wav).max() * 10
    spec = jnp.asarray(rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5)))
    spec = spec.at[0, 0].set(0.0).astype(jnp.complex64)
    c = compress(spec, config)
    np.testing.assert_allclose(jnp.abs(c), 0.33 * jnp.abs(spec) ** 0.5, rtol=1e-5)
    np.testing.assert_allclose(decompress(c, config), spec, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------- network
def test_network_shapes_and_a_zero_residual_gives_the_coarse_audio_back(rng):
    config = tiny_config()
    coarse_c = jnp.asarray(tones(16000, 3200)[None].repeat(2, 0))  # 0.2 s
    latent = jnp.asarray(rng.standard_normal((2, 10, 16)), jnp.float32)
    net = make_net(config)

    @jax.jit
    def run(coarse_c, latent):
        cond = condition(coarse_c, latent, config)
        out = net(jnp.zeros_like(cond.spec_BxNxS), jnp.array([0.1, 0.9]), cond.spec_BxNxS,
                  cond.latent_BxNxD)  # fmt: skip
        return cond, out, output_audio(cond, jnp.zeros_like(cond.spec_BxNxS), config)

    cond, out, zero = run(coarse_c, latent)
    assert cond.coarse_BxT.shape == (2, 8820)
    assert cond.spec_BxNxS.shape == (2, 35, 1026) and cond.latent_BxNxD.shape == (2, 35, 16)
    assert out.shape == (2, 35, 1026) and bool(jnp.isfinite(out).all())
    # r = 0: exactly the coarse audio at 44.1 kHz (compression and STFT invert)
    np.testing.assert_allclose(zero, cond.coarse_BxT, atol=1e-5)
    # ... and through the sampler, with a denoiser that predicts a zero residual
    x0_config = tiny_config(objective="x0")
    zero_net = make_net(x0_config, zero_head=True)
    sampled = jax.jit(
        lambda c, z: refine_window(
            zero_net, c, z, jax.random.key(0), x0_config, SamplerConfig(steps=3)
        )
    )(coarse_c, latent)
    np.testing.assert_allclose(sampled, cond.coarse_BxT, atol=1e-5)


def test_below_the_crossover_the_coarse_band_passes_unchanged(rng):
    config = tiny_config(keep_below_hz=5000.0, crossover_hz=1000.0)
    mask = config.band_mask()
    hz = np.arange(513) * 44100 / 1024
    assert mask.shape == (1026,) and np.array_equal(mask[:513], mask[513:])
    assert (mask[:513][hz <= 4500] == 0).all() and (mask[:513][hz >= 5500] == 1).all()
    ramp = (hz > 4500) & (hz < 5500)
    np.testing.assert_allclose(mask[:513][ramp], (hz[ramp] - 4500) / 1000, atol=1e-6)
    assert (tiny_config().band_mask() == 1).all()
    # A random network's refinement changes the audio above the crossover only.
    coarse_c = jnp.asarray(tones(16000, 8000)[None])  # 0.5 s
    latent = jnp.asarray(rng.standard_normal((1, 25, 16)), jnp.float32)
    out = refine_window(make_net(config), coarse_c, latent, jax.random.key(0), config,
                        SamplerConfig(steps=2))  # fmt: skip
    coarse = condition(coarse_c, latent, config).coarse_BxT
    change = np.abs(np.fft.rfft(np.asarray(out - coarse)[0] * np.hanning(22050))) ** 2
    f = np.fft.rfftfreq(22050, 1 / 44100)
    assert change[f > 6000].mean() > 0
    assert change[f < 3500].mean() < 1e-4 * change[f > 6000].mean()


def test_latent_is_interpolated_to_stft_frames():
    config = tiny_config()
    latent = jnp.broadcast_to(jnp.arange(10, dtype=jnp.float32)[None, :, None], (1, 10, 2))
    frames = np.asarray(latent_to_frames(latent, 35, config))[0, :, 0]
    want = np.clip(np.arange(35) * 256 / 44100 * 50 - 0.5, 0, 9)  # code frame centres
    np.testing.assert_allclose(frames, want, atol=1e-5)


def test_codec_round_trip_in_the_graph_matches_the_codec(codec, rng):
    config = tiny_config()
    wav = (0.3 * rng.standard_normal((2, 8820))).astype(np.float32)
    coarse_c, latent = jax.jit(lambda w: codec_round_trip(codec.model, w, config))(wav)
    codes = codec.encode(np.asarray(resample(wav, 44100, 16000))[:, None], 2)
    np.testing.assert_allclose(latent, np.swapaxes(codec.embed_codes(codes).sum(1), 1, 2),
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(coarse_c, codec.decode(codes)[:, 0], atol=1e-5)
    # The frozen codec is state, not a parameter: the trainer optimises the network only.
    config = load_experiment(EXPERIMENT)
    with nnx.use_eager_sharding(False):
        model = nnx.eval_shape(lambda: RefinerFamily(config, codec).create_model(nnx.Rngs(0)))
    params = nnx.state(model, nnx.Param)
    assert set(params) == {"net"} and "codec" in nnx.state(model, nnx.Not(nnx.Param))


# ------------------------------------------------------------------------ refining
def test_long_inputs_are_refined_in_windows_without_seams(codec):
    config = tiny_config(objective="x0")
    refiner = Refiner(make_net(config, zero_head=True), codec, window_seconds=0.3,
                      overlap_seconds=0.06)  # fmt: skip
    n = 16000 + 777  # 1.05 s at 16 kHz: 5 windows of 0.3 s, evenly spread
    width, starts = refiner.windows(n)
    assert width == 4800 and len(starts) == 5 and starts[-1] + width >= n
    assert all(b - a <= width - 960 for a, b in itertools.pairwise(starts))
    out = refiner.refine(tones(16000, n)[None, None], 16000, steps=1)
    assert out.shape == (1, 1, refiner.output_length(n)) == (1, 1, 46242)
    # Each window alone is the coarse audio brought up by the FFT resampler, which rings
    # at the window's edges; the cross-fades weight every edge down to nothing.
    want = tones(44100, out.shape[-1])
    inner = slice(2205, -2205)
    assert np.abs(out[0, 0] - want)[inner].max() < 1e-3
    assert np.abs(np.diff(out[0, 0]))[inner].max() < 1.02 * np.abs(np.diff(want)).max()


def test_refine_is_seeded_and_survives_save_and_load(codec, rng, tmp_path):
    # The debug experiment's network at its evaluation's shapes (2 x 0.5 s, 2 and 3
    # steps), so the training test below reuses these compiled programs.
    refiner = Refiner(make_net(load_experiment(EXPERIMENT).model), codec)
    codes = rng.integers(0, 64, (2, 4, 25))  # 0.5 s at 50 Hz; 4 codebooks, k = 2 used
    a = refiner.refine(codes, steps=3, seed=7)
    assert a.shape == (2, 1, 22050) and np.isfinite(a).all()
    np.testing.assert_array_equal(refiner.refine(codes, steps=3, seed=7), a)
    assert np.abs(refiner.refine(codes, steps=3, seed=8) - a).max() > 1e-3
    saved = Refiner.from_pretrained(refiner.save_pretrained(tmp_path / "refiner"))
    assert saved.window_seconds == refiner.window_seconds and saved.config == refiner.config
    np.testing.assert_array_equal(saved.refine(codes, steps=3, seed=7), a)
    # Coarse audio in: refined as it is, encoded only for the latent.
    from_audio = refiner.refine(refiner.coarse(codes), steps=2)
    assert from_audio.shape == (2, 1, 22050) and np.isfinite(from_audio).all()


def test_compare_gives_original_baseline_and_refined(codec, rng):
    config = tiny_config(objective="x0")
    refiner = Refiner(make_net(config, zero_head=True), codec)
    clip = (0.3 * rng.standard_normal((2, 1, 22050))).astype(np.float32)
    result = refiner.compare(clip, 44100, steps=(1, 2))
    assert result.original.shape == result.baseline.shape == result.refined[2].shape
    np.testing.assert_allclose(result.original, clip, atol=1e-6)
    scores = result.scores()
    assert set(scores) == {f"{m}_{r}" for m in ("mel", "lsd_high")
                           for r in ("baseline", "refined_1", "refined_2")}  # fmt: skip
    # A zero residual is the baseline, up to the resampler (FFT in the graph, soxr outside;
    # they differ most at the codec's Nyquist frequency, where the random codec's flat
    # noise is as loud as anywhere).
    np.testing.assert_allclose(scores["mel_refined_1"], scores["mel_baseline"], rtol=0.04)


# ------------------------------------------------------------------ training runtime
@pytest.fixture(scope="module")
def manifest(embedded_manifest) -> str:
    return embedded_manifest


def test_debug_experiment_trains_evaluates_resumes_and_loads(manifest, tmp_path, rng):
    work = tmp_path / "w"
    args = ["train", "--config", EXPERIMENT, "--workdir", str(work), "--no-progress",
            "--set", f"data.manifest={manifest}", "--set", "train.wandb=disabled"]  # fmt: skip
    assert cli.main(args) == 0
    records = read_metrics(work)
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4, 6]
    assert all(np.isfinite(r["loss"]) and 0 < r["loss"] < 10 for r in steps)
    evals = [r for r in records if "eval/mel_baseline" in r]
    assert evals and {"eval/mel_refined_3", "eval/lsd_high_refined_2"} <= set(evals[-1])
    checkpoints = sorted(p.name for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    assert checkpoints == ["3", "6"]
    assert list((work / "samples").rglob("*.flac")) and list((work / "samples").rglob("*.png"))
    assert cli.main([*args, "--set", "train.steps=8"]) == 0
    assert max(r["step"] for r in read_metrics(work) if "loss" in r) == 8

    # The workdir's EMA network and the codec kept in its checkpoint, then saved as a folder.
    refiner = Refiner.from_pretrained(work)
    codes = rng.integers(0, 64, (2, 2, 25))
    audio = refiner.refine(codes, steps=2)
    assert audio.shape == (2, 1, 22050) and np.isfinite(audio).all()
    saved = Refiner.from_pretrained(refiner.save_pretrained(tmp_path / "saved"))
    np.testing.assert_array_equal(saved.refine(codes, steps=2), audio)

    # `musicgen eval refiner`: the baseline and each step count, with paired differences.
    evaluate = ["eval", "refiner", "--checkpoint", str(work), "--manifest", manifest, "--split",
                "valid", "--clips", "2", "--seconds", "0.5", "--steps", "2", "3"]  # fmt: skip
    assert cli.main([*evaluate, "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "refiner_eval.json").read_text())
    assert report["clips"] == 2 and list(report["rows"]) == ["baseline", "2 steps", "3 steps"]
    base, two = report["rows"]["baseline"], report["rows"]["2 steps"]
    assert base["lsd_high"] > 0 and np.isfinite(two["mel"]) and "mel_delta" not in base
    assert two["mel_delta"] == pytest.approx(two["mel"] - base["mel"], abs=1e-6)
    assert "| 3 steps |" in (tmp_path / "eval" / "refiner_eval.md").read_text()

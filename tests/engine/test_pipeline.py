"""Tests of the two-stage pipeline and the engine API on a tiny random checkpoint.

Most renders use a 32x48 base, a 64x96 target and direct attention, so both stages
and the VAE run in seconds. FreeSwim methods mostly run where the window covers the
token grid, which keeps these tests short. One slow test renders the built-in demo
model with a window smaller than the grid.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy
import pytest
import torch

from freeswim_engine import pipeline
from freeswim_engine.api import RenderCallbacks, RenderResult, Stage, decode_latents_file, render, upscale
from freeswim_engine.demo_model import demo_checkpoint_dir
from freeswim_engine.errors import InputVideoError, InvalidRequestError, NonFiniteLatentsError, RenderCancelled
from freeswim_engine.intermediates import load_latents
from freeswim_engine.latent_preview import preview_frames
from freeswim_engine.models import LoadedModel, load_model
from freeswim_engine.request import RenderRequest
from freeswim_engine.video_io import probe_mp4, read_video
from tests.engine.tiny_checkpoints import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-wan")


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> LoadedModel:
    return load_model(str(checkpoint), device="cpu")


def small_request(checkpoint: Path, tmp_path: Path, **changes: Any) -> RenderRequest:
    request = RenderRequest(
        prompt="a lighthouse in a storm",
        model=str(checkpoint),
        width=96,
        height=64,
        base_width=48,
        base_height=32,
        num_frames=5,
        fps=12,
        seed=11,
        num_inference_steps=4,
        method="direct",
        device="cpu",
        output_path=tmp_path / "out.mp4",
    )
    return dataclasses.replace(request, **changes)


@dataclasses.dataclass
class Recorder:
    """Callbacks that record what a render reports, and cancel at a chosen step."""

    cancel_at: tuple[Stage, int] | None = None
    stages: list[Stage] = dataclasses.field(default_factory=list)
    progress: list[tuple[Stage, int, int]] = dataclasses.field(default_factory=list)
    previews: list[tuple[Stage, numpy.ndarray]] = dataclasses.field(default_factory=list)

    def callbacks(self) -> RenderCallbacks:
        return RenderCallbacks(
            on_stage=self.stages.append,
            on_progress=lambda stage, step, total: self.progress.append((stage, step, total)),
            on_preview=lambda stage, frames: self.previews.append((stage, frames)),
            should_cancel=self.should_cancel,
        )

    def should_cancel(self) -> bool:
        return self.cancel_at is not None and bool(self.progress) and self.progress[-1][:2] == self.cancel_at

    def steps_of(self, stage: Stage) -> list[int]:
        return [step for recorded, step, _ in self.progress if recorded is stage]


def make_testsrc(path: Path, size: str, frames: int, rate: int) -> Path:
    """Encode ``frames`` frames of ffmpeg's testsrc pattern with libx264."""
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size={size}:rate={rate}",
        "-frames:v",
        str(frames),
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        str(path),
    ]
    subprocess.run(command, check=True)
    return path


# -- building blocks ---------------------------------------------------------------------------


def test_same_seed_gives_identical_latents(model: LoadedModel) -> None:
    embeddings = pipeline.encode_prompts(model, "a red kite", "blurry", guidance_scale=5.0)
    arguments: dict[str, Any] = dict(
        height=32, width=48, num_frames=5, num_inference_steps=3, guidance_scale=5.0, flow_shift=3.0
    )
    first = pipeline.run_stage1(model, embeddings, generator=pipeline.make_generator(5), **arguments)
    second = pipeline.run_stage1(model, embeddings, generator=pipeline.make_generator(5), **arguments)
    other = pipeline.run_stage1(model, embeddings, generator=pipeline.make_generator(6), **arguments)
    assert first.shape == (1, 16, 2, 4, 6)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_prompt_embeddings_cached_per_model(model: LoadedModel) -> None:
    first = pipeline.encode_prompts(model, "a paper boat", "blurry", guidance_scale=5.0)
    assert pipeline.encode_prompts(model, "a paper boat", "blurry", guidance_scale=5.0) is first
    assert pipeline.encode_prompts(model, "a paper boat", "grainy", guidance_scale=5.0) is not first


def test_prompts_cleaned_with_ftfy(model: LoadedModel) -> None:
    # diffusers' Wan pipeline runs ftfy.fix_text when ftfy is installed, which turns full-width
    # letters into ASCII. The demo tokenizer knows only ASCII, so without ftfy "ｃａｔ" is <unk>.
    full_width = pipeline.encode_prompts(model, "the \uff43\uff41\uff54", "", guidance_scale=1.0)
    ascii_text = pipeline.encode_prompts(model, "the cat", "", guidance_scale=1.0)
    unrelated = pipeline.encode_prompts(model, "the dog", "", guidance_scale=1.0)
    assert torch.equal(full_width.prompt, ascii_text.prompt)
    assert not torch.equal(unrelated.prompt, ascii_text.prompt)


def test_guidance_off_skips_negative_prompt(model: LoadedModel) -> None:
    embeddings = pipeline.encode_prompts(model, "a red kite", "blurry", guidance_scale=1.0)
    assert embeddings.negative is None
    assert embeddings.prompt.shape == (1, 512, 32)


def test_stage2_runs_last_steps_of_schedule(model: LoadedModel) -> None:
    embeddings = pipeline.encode_prompts(model, "a red kite", "", guidance_scale=5.0)
    clean = torch.randn(1, 16, 2, 8, 12, generator=torch.Generator().manual_seed(0))
    steps: list[tuple[int, int]] = []
    latents = pipeline.run_stage2(
        model,
        embeddings,
        clean,
        num_inference_steps=10,
        strength=0.7,
        guidance_scale=5.0,
        flow_shift=9.0,
        method="freeswim-cached",
        cache_interval=2,
        base_size=(64, 96),  # a window that covers the grid, so no attention kernel is compiled
        generator=pipeline.make_generator(1),
        on_step=lambda step, total, estimate: steps.append((step, total)),
    )
    assert steps == [(step, 7) for step in range(1, 8)]
    assert latents.shape == clean.shape
    assert bool(torch.isfinite(latents).all())


def test_stage2_full_strength_starts_from_noise(model: LoadedModel) -> None:
    embeddings = pipeline.encode_prompts(model, "", "", guidance_scale=1.0)
    arguments: dict[str, Any] = dict(
        num_inference_steps=2,
        strength=1.0,
        guidance_scale=1.0,
        flow_shift=9.0,
        method="direct",
        cache_interval=1,
        base_size=(32, 48),
    )
    zeros = torch.zeros(1, 16, 1, 4, 6)
    ones = torch.ones(1, 16, 1, 4, 6)
    from_zeros = pipeline.run_stage2(model, embeddings, zeros, generator=pipeline.make_generator(3), **arguments)
    from_ones = pipeline.run_stage2(model, embeddings, ones, generator=pipeline.make_generator(3), **arguments)
    # At strength 1 the first sigma is 1, so the input latents are replaced by noise entirely.
    assert torch.allclose(from_zeros, from_ones, atol=1e-5)


def test_encode_decode_shapes(model: LoadedModel) -> None:
    video = torch.rand(1, 3, 5, 64, 96) * 2 - 1
    latents = pipeline.encode_video(model, video)
    assert latents.shape == (1, 16, 2, 8, 12)
    assert latents.dtype == torch.float32
    decoded = pipeline.decode_latents(model, latents)
    assert decoded.shape == (1, 3, 5, 64, 96)
    assert float(decoded.min()) >= -1.0
    assert float(decoded.max()) <= 1.0


def test_encode_uses_distribution_mode(model: LoadedModel) -> None:
    video = torch.rand(1, 3, 1, 32, 48) * 2 - 1
    assert torch.equal(pipeline.encode_video(model, video), pipeline.encode_video(model, video))


def test_non_finite_latents_rejected_before_decode(model: LoadedModel) -> None:
    latents = torch.zeros(1, 16, 1, 4, 6)
    latents[0, 3, 0, 1, 1] = float("nan")
    latents[0, 4, 0, 2, 2] = float("inf")
    with pytest.raises(NonFiniteLatentsError) as caught:
        pipeline.decode_latents(model, latents)
    assert "2 NaN or infinite values" in str(caught.value)


def test_resize_video_is_bilinear() -> None:
    video = torch.linspace(-1, 1, 2 * 4 * 6).reshape(1, 1, 2, 4, 6).repeat(1, 3, 1, 1, 1)
    resized = pipeline.resize_video(video, 8, 12)
    expected = torch.nn.functional.interpolate(video[0].transpose(0, 1), size=(8, 12), mode="bilinear")
    assert resized.shape == (1, 3, 2, 8, 12)
    assert torch.allclose(resized[0].transpose(0, 1), expected)


def test_resize_keeps_constant_frames_constant() -> None:
    video = torch.full((1, 3, 3, 10, 10), 0.25)
    assert torch.allclose(pipeline.resize_video(video, 20, 30), torch.full((1, 3, 3, 20, 30), 0.25))


def test_frames_round_trip_through_video_tensor() -> None:
    frames = numpy.random.default_rng(0).integers(0, 256, size=(3, 4, 6, 3), dtype=numpy.uint8)
    video = pipeline.frames_to_video(frames, torch.device("cpu"))
    assert video.shape == (1, 3, 3, 4, 6)
    numpy.testing.assert_array_equal(pipeline.video_to_frames(video), frames)


def test_preview_is_small_uint8() -> None:
    frames = preview_frames(torch.randn(1, 16, 3, 540, 960))
    assert frames.dtype == numpy.uint8
    assert frames.shape == (3, 135, 240, 3)
    assert frames.max() == 255
    assert frames.min() == 0


# -- render and upscale ------------------------------------------------------------------------


def test_render_writes_requested_mp4(checkpoint: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    result = render(small_request(checkpoint, tmp_path, save_latents=tmp_path / "final.pt"), recorder.callbacks())

    info = probe_mp4(result.output_path)
    assert (info.width, info.height, info.num_frames) == (96, 64, 5)
    assert info.fps == 12
    assert result.output_path == tmp_path / "out.mp4"
    assert result.seed == 11
    assert result.base_video_path is None
    assert result.peak_memory_bytes is None
    assert result.request.num_inference_steps == 4
    assert result.request.flow_shift == 9.0

    sidecar = json.loads(result.sidecar_path.read_text())
    assert sidecar["seed"] == 11
    assert sidecar["prompt"] == "a lighthouse in a storm"
    assert sidecar["request"]["method"] == "direct"
    assert sidecar["request"]["strength"] == 0.7

    assert recorder.stages == list(Stage)
    assert recorder.steps_of(Stage.STAGE1) == [1, 2, 3, 4]
    assert recorder.steps_of(Stage.STAGE2) == [1, 2, 3]  # round(4 x 0.7)
    stage2_previews = [frames for stage, frames in recorder.previews if stage is Stage.STAGE2]
    assert len(stage2_previews) == 3
    assert stage2_previews[0].shape == (2, 8, 12, 3)
    assert stage2_previews[0].dtype == numpy.uint8


def test_render_is_reproducible(checkpoint: Path, tmp_path: Path) -> None:
    # Target equal to base: the FreeSwim window covers the whole grid, so no kernel is compiled.
    same_size = dict(width=48, height=32, method="freeswim-cached", cache_interval=2)
    first = render(small_request(checkpoint, tmp_path, save_latents=tmp_path / "a.pt", output_path=tmp_path / "a.mp4", **same_size))
    second = render(small_request(checkpoint, tmp_path, save_latents=tmp_path / "b.pt", output_path=tmp_path / "b.mp4", **same_size))
    assert first.latents_path is not None
    assert second.latents_path is not None
    first_latents, _ = load_latents(first.latents_path)
    second_latents, _ = load_latents(second.latents_path)
    assert torch.equal(first_latents, second_latents)
    numpy.testing.assert_array_equal(read_video(first.output_path)[0], read_video(second.output_path)[0])


def test_random_seed_chosen_and_reported(checkpoint: Path, tmp_path: Path) -> None:
    result = render(small_request(checkpoint, tmp_path, seed=None, num_frames=1, num_inference_steps=2))
    assert isinstance(result.seed, int)
    assert result.request.seed == result.seed
    assert json.loads(result.sidecar_path.read_text())["seed"] == result.seed


def test_saved_latents_decode_again(checkpoint: Path, tmp_path: Path) -> None:
    result = render(small_request(checkpoint, tmp_path, save_latents=tmp_path / "final.pt"))
    assert result.latents_path == tmp_path / "final.pt"
    latents, metadata = load_latents(result.latents_path)
    assert latents.shape == (1, 16, 2, 8, 12)
    assert metadata["seed"] == 11
    assert metadata["model"] == str(checkpoint)

    again = decode_latents_file(result.latents_path, tmp_path / "again.mp4", device="cpu")
    info = probe_mp4(again)
    assert (info.width, info.height, info.num_frames, info.fps) == (96, 64, 5, 12)
    numpy.testing.assert_array_equal(read_video(again)[0], read_video(result.output_path)[0])


def test_cancel_in_stage2_leaves_no_output(checkpoint: Path, tmp_path: Path) -> None:
    recorder = Recorder(cancel_at=(Stage.STAGE2, 2))
    with pytest.raises(RenderCancelled):
        render(small_request(checkpoint, tmp_path), recorder.callbacks())
    assert recorder.steps_of(Stage.STAGE2) == [1, 2]
    assert Stage.DECODING not in recorder.stages
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_cancel_in_stage1_stops_at_once(checkpoint: Path, tmp_path: Path) -> None:
    recorder = Recorder(cancel_at=(Stage.STAGE1, 1))
    with pytest.raises(RenderCancelled):
        render(small_request(checkpoint, tmp_path, save_latents=tmp_path / "final.pt"), recorder.callbacks())
    assert recorder.steps_of(Stage.STAGE1) == [1]
    assert Stage.STAGE2 not in recorder.stages
    assert not (tmp_path / "out.mp4").exists()
    assert not (tmp_path / "final.pt").exists()


def test_invalid_request_rejected_before_loading(checkpoint: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    with pytest.raises(InvalidRequestError) as caught:
        render(small_request(checkpoint, tmp_path, height=60), recorder.callbacks())
    assert caught.value.field == "height"
    assert "48" in caught.value.fix
    assert "64" in caught.value.fix
    assert recorder.stages == [Stage.LOADING]


def test_work_dir_retry_skips_stage1(checkpoint: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    first_recorder = Recorder()
    first = render(
        small_request(checkpoint, tmp_path, seed=None, save_latents=tmp_path / "first.pt"),
        first_recorder.callbacks(),
        work_dir=work_dir,
    )
    assert first.base_video_path == work_dir / "base.mp4"
    base_info = probe_mp4(first.base_video_path)
    assert (base_info.width, base_info.height, base_info.num_frames) == (48, 32, 5)
    assert (work_dir / "stage1_latents.pt").is_file()
    assert json.loads((work_dir / "stage1.json").read_text())["seed"] == first.seed
    assert first_recorder.steps_of(Stage.STAGE1) == [1, 2, 3, 4]

    retry_recorder = Recorder()
    retry = render(
        small_request(checkpoint, tmp_path, seed=None, save_latents=tmp_path / "retry.pt", output_path=tmp_path / "retry.mp4"),
        retry_recorder.callbacks(),
        work_dir=work_dir,
    )
    assert retry.seed == first.seed
    assert retry_recorder.steps_of(Stage.STAGE1) == []
    assert Stage.STAGE1 in retry_recorder.stages
    assert retry_recorder.steps_of(Stage.STAGE2) == [1, 2, 3]
    assert torch.equal(load_latents(tmp_path / "first.pt")[0], load_latents(tmp_path / "retry.pt")[0])


def test_work_dir_changed_prompt_reruns_stage1(checkpoint: Path, tmp_path: Path) -> None:
    work_dir = tmp_path / "work"
    render(small_request(checkpoint, tmp_path, num_frames=1), work_dir=work_dir)
    recorder = Recorder()
    render(small_request(checkpoint, tmp_path, num_frames=1, prompt="a different prompt"), recorder.callbacks(), work_dir=work_dir)
    assert recorder.steps_of(Stage.STAGE1) == [1, 2, 3, 4]


def test_upscale_h264_testsrc_trims_to_4k_plus_1(checkpoint: Path, tmp_path: Path) -> None:
    source = make_testsrc(tmp_path / "testsrc.mp4", "80x48", frames=8, rate=10)
    recorder = Recorder()
    request = small_request(checkpoint, tmp_path, input_video=source, num_frames=None, fps=None)
    result = upscale(request, recorder.callbacks())

    info = probe_mp4(result.output_path)
    assert (info.width, info.height, info.num_frames) == (96, 64, 5)
    assert info.fps == 10
    assert result.base_video_path is None
    assert result.request.num_frames == 5
    assert any("dropped the last 3 frames" in warning for warning in result.warnings)
    assert Stage.STAGE1 not in recorder.stages
    assert recorder.stages == [Stage.LOADING, Stage.ENCODING_PROMPT, Stage.UPSAMPLING, Stage.STAGE2, Stage.DECODING, Stage.EXPORTING]
    assert json.loads(result.sidecar_path.read_text())["mode"] == "upscale"


def test_render_with_input_video_upscales(checkpoint: Path, tmp_path: Path) -> None:
    source = make_testsrc(tmp_path / "testsrc.mp4", "96x64", frames=5, rate=8)
    recorder = Recorder()
    result = render(small_request(checkpoint, tmp_path, input_video=source, fps=None), recorder.callbacks())
    assert Stage.STAGE1 not in recorder.stages
    assert probe_mp4(result.output_path).num_frames == 5
    assert not any("dropped" in warning for warning in result.warnings)


def test_upscale_from_png_folder(checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=48x32:rate=5",
            "-frames:v",
            "6",
            str(folder / "frame%02d.png"),
        ],
        check=True,
    )
    result = upscale(small_request(checkpoint, tmp_path, input_video=folder, num_frames=None, fps=None))
    info = probe_mp4(result.output_path)
    assert (info.width, info.height, info.num_frames) == (96, 64, 5)
    assert info.fps == 16  # a folder states no frame rate, so the model's is used
    assert any("dropped the last 1 frame and" in warning for warning in result.warnings)
    assert any("no frame rate" in warning for warning in result.warnings)


def test_upscale_unreadable_input_rejected(checkpoint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(InputVideoError):
        upscale(small_request(checkpoint, tmp_path, input_video=broken))
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_demo_render_default_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Render the built-in demo model at a size where the window is smaller than the token grid."""
    monkeypatch.setenv("FREESWIM_CACHE_DIR", str(tmp_path / "cache"))
    request = RenderRequest(prompt="a city at night", width=352, height=192, seed=2, device="cpu", output_path=tmp_path / "demo")
    result: RenderResult = render(request)
    info = probe_mp4(result.output_path)
    assert result.output_path == tmp_path / "demo.mp4"
    assert (info.width, info.height) == (352, 192)
    assert info.num_frames == 5
    assert info.fps == 16
    assert result.request.method == "freeswim-cached"
    assert (demo_checkpoint_dir(tmp_path / "cache") / "model_index.json").is_file()

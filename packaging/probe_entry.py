"""Check that a frozen build can import and run every heavy dependency of FreeSwim Studio.

Build it in place of the app with ``python3 packaging/build.py --entry probe`` and
run ``dist/FreeSwimProbe/FreeSwimProbe``. It exits 0 and prints ``probe: ok`` when
every check passes. Otherwise it prints one line per failed check and exits 1.
The checks cover what a PyInstaller build of these libraries can miss.
transformers and diffusers read package metadata at import and import their
classes lazily by name. torch.compile needs torch's Python sources, its C++
headers and Python.h. Qt needs its plugins, and the export needs the bundled
ffmpeg binary.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import sysconfig
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

# Distributions whose metadata transformers, diffusers or huggingface_hub read at import.
METADATA_DISTRIBUTIONS = (
    "torch", "transformers", "diffusers", "tokenizers", "safetensors", "huggingface-hub",
    "tqdm", "regex", "requests", "packaging", "filelock", "numpy", "accelerate",
    "imageio-ffmpeg", "PySide6-Essentials", "pyyaml", "ftfy", "platformdirs", "psutil",
)


def check_metadata() -> str:
    versions = [f"{name}=={importlib.metadata.version(name)}" for name in METADATA_DISTRIBUTIONS]
    return ", ".join(versions)


def check_engine() -> str:
    import freeswim_engine
    from freeswim_engine import errors, logs, presets

    assert issubclass(errors.InvalidRequestError, errors.FreeSwimError)
    assert logs.APP_NAME == "FreeSwimStudio"
    return f"freeswim_engine {freeswim_engine.__version__}, presets {', '.join(presets.preset_names())}"


def check_transformers() -> str:
    import transformers
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    # A two-layer encoder with random weights runs one forward pass without any download.
    import torch

    config = UMT5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=2)
    encoder = UMT5EncoderModel(config).eval()
    with torch.no_grad():
        hidden = encoder(input_ids=torch.tensor([[1, 2, 3]])).last_hidden_state
    assert AutoTokenizer is not None
    return f"transformers {transformers.__version__}, UMT5 output {tuple(hidden.shape)}"


def check_diffusers() -> str:
    import diffusers
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    scheduler.set_timesteps(4)
    for component in (WanPipeline, AutoencoderKLWan, WanTransformer3DModel):
        assert isinstance(component, type)
    return f"diffusers {diffusers.__version__}, UniPC timesteps {scheduler.timesteps.tolist()}"


def check_demo_pipeline() -> str:
    from diffusers import WanPipeline

    from freeswim_engine.demo_model import save_demo_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_demo_checkpoint(Path(folder) / "demo")
        pipeline = WanPipeline.from_pretrained(checkpoint)
        frames = pipeline(
            "a red ball", height=64, width=64, num_frames=5, num_inference_steps=2, output_type="np"
        ).frames
    return f"demo checkpoint saved, loaded and rendered frames of shape {tuple(frames.shape)}"


def check_torch_compile() -> str:
    import torch

    def gelu_mix(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x) * x.sin() + 1.0

    compiled = torch.compile(gelu_mix, fullgraph=True)
    x = torch.linspace(-2.0, 2.0, 257)
    difference = (compiled(x) - gelu_mix(x)).abs().max().item()
    if difference > 1e-5:
        raise RuntimeError(f"compiled result differs from eager by {difference}")
    return f"torch {torch.__version__}, torch.compile matches eager (max difference {difference:.1e})"


def check_flex_attention() -> str:
    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    sequence_length, half_window = 200, 16

    def band(batch: torch.Tensor, head: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return (query - key).abs() <= half_window

    block_mask = torch.compile(create_block_mask)(band, None, None, sequence_length, sequence_length, device="cpu")
    query, key, value = (torch.randn(1, 2, sequence_length, 32) for _ in range(3))
    output = torch.compile(flex_attention)(query, key, value, block_mask=block_mask)

    positions = torch.arange(sequence_length)
    dense_mask = (positions[:, None] - positions[None, :]).abs() <= half_window
    expected = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=dense_mask)
    difference = (output - expected).abs().max().item()
    if difference > 1e-4:
        raise RuntimeError(f"compiled flex attention differs from masked SDPA by {difference}")
    return f"compiled flex attention matches masked SDPA (max difference {difference:.1e})"


def check_qt() -> str:
    from PySide6 import QtCore, QtGui, QtSvg, QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0], "-platform", "offscreen"])
    icon_folder = Path(sys._MEIPASS if getattr(sys, "frozen", False) else Path(__file__).parent.parent)  # type: ignore[attr-defined]
    svg_path = icon_folder / "freeswim_app" / "resources" / "icons" / "freeswim-studio.svg"
    renderer = QtSvg.QSvgRenderer(str(svg_path))
    if not renderer.isValid():
        raise RuntimeError(f"Qt could not load the app icon {svg_path}")
    image = QtGui.QImage(64, 64, QtGui.QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QtGui.QPainter(image)
    renderer.render(painter)
    painter.end()
    assert app is not None
    return f"PySide6 {QtCore.qVersion()} on {QtGui.QGuiApplication.platformName()}, icon rendered from {svg_path.name}"


def check_ffmpeg() -> str:
    import imageio_ffmpeg

    executable = imageio_ffmpeg.get_ffmpeg_exe()
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "probe.mp4"
        command = [
            executable, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
            "testsrc=size=64x64:rate=8:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(output),
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        size = output.stat().st_size
    return f"ffmpeg {Path(executable).name} wrote a {size}-byte H.264 MP4"


CHECKS: tuple[tuple[str, Callable[[], str]], ...] = (
    ("metadata", check_metadata),
    ("engine", check_engine),
    ("transformers", check_transformers),
    ("diffusers", check_diffusers),
    ("demo pipeline", check_demo_pipeline),
    ("torch.compile", check_torch_compile),
    ("flex attention", check_flex_attention),
    ("qt", check_qt),
    ("ffmpeg", check_ffmpeg),
)


def main() -> int:
    print(f"probe: frozen={getattr(sys, 'frozen', False)} python include={sysconfig.get_path('include')}")
    failures = 0
    for name, check in CHECKS:
        try:
            print(f"probe: {name}: {check()}", flush=True)
        except Exception:
            failures += 1
            print(f"probe: {name}: FAILED\n{traceback.format_exc()}", flush=True)
    print("probe: ok" if failures == 0 else f"probe: {failures} of {len(CHECKS)} checks failed")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

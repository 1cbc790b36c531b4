"""Generator throughput on a borrowed GPU machine that has JAX but no TensorFlow.

    KERAS_BACKEND=jax python -m benchmarks.gpu_jax [--model NAME_OR_PATH] [--out PATH] [--quick]

Self-contained on purpose: it imports only `models/` (plain Keras 3 layers, backend-neutral), Keras on the
JAX backend, numpy, h5py (to read `G.weights.h5`) and, when present, PyAV. It never imports TensorFlow or
`faceage_video`, so nothing over the 64 MiB wheel limit has to travel.

What it does:

1. loads the bundle's young → old generator `G` (the bundled default when present; else the default
   architecture with untrained weights, written to and read back from a temporary .weights.h5 so the
   h5py path is exercised either way);
2. wraps the forward pass, uint8 in and uint8 out as the engine does, in one `jax.jit` over
   `model.stateless_call`;
3. for 128 and 256 px (the same weights: the network is fully convolutional) and batch sizes 1…512,
   compiles, warms up, then times it twice: on device (input already there, `block_until_ready`) and
   from host to host (numpy uint8 in, numpy out), in crops/s;
4. times H.264 encode and decode of synthetic 1080p frames when PyAV imports (its FFmpeg on that CPU);
5. writes JSON to `--out`, by default `$OUT/gpu_jax.json` (or `benchmarks/results/gpu_jax.json`).

A time budget (`--budget`, 240 s) stops the sweep early, recording what was skipped, so the run fits the
device session. It measures and reports; it asserts nothing.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported, here or by models/

import argparse
import datetime as dt
import json
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a file too: `python benchmarks/gpu_jax.py`

SIZES = (128, 256)
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
DEFAULT_ARCH = {"ngf": 16, "n_blocks": 6}


def _out_default() -> Path:
    out = os.environ.get("OUT")
    return Path(out) / "gpu_jax.json" if out else ROOT / "benchmarks" / "results" / "gpu_jax.json"


def load_weights_file(model_arg: str | None, work: Path) -> tuple[Path, dict[str, Any]]:
    """The G weight file to benchmark and a description: the bundle's, or untrained ones written here."""
    from models.bundle import BundleError, Manifest, load_manifest, save_bundle
    from models.networks import GeneratorConfig, build_generator

    try:
        folder, man = load_manifest(model_arg)
        g = man.generator
        return folder / man.files["G"], {
            "name": man.name,
            "path": str(folder),
            "untrained": False,
            "ngf": g.ngf,
            "n_blocks": g.n_blocks,
            "residual": g.residual,
            "norm": g.norm,
            "trained_size": g.size,
        }
    except BundleError:
        if model_arg is not None:
            raise
    cfg = GeneratorConfig(size=128, ngf=DEFAULT_ARCH["ngf"], n_blocks=DEFAULT_ARCH["n_blocks"])
    man = Manifest(name="untrained-128", generator=cfg, template={"size": 128}, training={"steps": 0})
    folder = save_bundle(work / "untrained-128", man, {"G": build_generator(cfg, "G")}, "untrained\n")
    return folder / "G.weights.h5", {
        "name": "untrained-128",
        "path": None,
        "untrained": True,
        **DEFAULT_ARCH,
        "residual": True,
        "norm": "instance",
        "trained_size": 128,
    }


def build(size: int, weights: Path, desc: dict[str, Any]) -> Any:
    """The generator at `size` px with the bundle's weights loaded through h5py."""
    from models.networks import GeneratorConfig, build_generator

    cfg = GeneratorConfig(
        size=size, ngf=desc["ngf"], n_blocks=desc["n_blocks"], residual=desc["residual"], norm=desc["norm"]
    )
    model = build_generator(cfg, name="G")
    model.load_weights(str(weights))
    return model


def jitted_forward(model: Any) -> tuple[Callable[..., Any], Any, Any]:
    """`fwd(tv, ntv, x_uint8) -> uint8`, jitted, and the model's variable values to pass to it."""
    import jax
    import jax.numpy as jnp

    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]

    @jax.jit
    def fwd(tv: Any, ntv: Any, x: Any) -> Any:
        f = x.astype(jnp.float32) / 127.5 - 1.0  # (B, S, S, 3) in [-1, 1], the bundle's normalisation
        y, _ = model.stateless_call(tv, ntv, f, training=False)
        return jnp.clip(jnp.round((y + 1.0) * 127.5), 0, 255).astype(jnp.uint8)

    return fwd, tv, ntv


def _timed(fn: Callable[[], Any], min_time_s: float, least: int) -> tuple[int, float]:
    calls = 0
    t = time.perf_counter()
    while True:
        fn()
        calls += 1
        el = time.perf_counter() - t
        if el >= min_time_s and calls >= least:
            return calls, el


def sweep(
    weights: Path,
    desc: dict[str, Any],
    sizes: Sequence[int],
    batches: Sequence[int],
    min_time_s: float,
    deadline: float,
) -> list[dict[str, Any]]:
    """Crops/s at every size and batch, on device and host to host, until the deadline."""
    rows: list[dict[str, Any]] = []
    for size in sizes:
        fwd, tv, ntv = jitted_forward(build(size, weights, desc))
        for b in batches:
            if time.perf_counter() > deadline:
                rows.append({"size": size, "batch": b, "skipped": "time budget"})
                continue
            rows.append(_point(fwd, tv, ntv, size, b, min_time_s))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def _point(
    fwd: Callable[..., Any], tv: Any, ntv: Any, size: int, b: int, min_time_s: float
) -> dict[str, Any]:
    """One (size, batch) point: compile, warm, time on device, time host to host."""
    import jax

    row: dict[str, Any] = {"size": size, "batch": b}
    x_host = np.random.default_rng(b).integers(0, 256, (b, size, size, 3), dtype=np.uint8)
    try:
        t = time.perf_counter()
        x_dev = jax.device_put(x_host)
        fwd(tv, ntv, x_dev).block_until_ready()  # trace + compile
        row["compile_s"] = round(time.perf_counter() - t, 3)
        fwd(tv, ntv, x_dev).block_until_ready()  # warm
        calls, el = _timed(lambda: fwd(tv, ntv, x_dev).block_until_ready(), min_time_s, 3)
        row.update(
            device_calls=calls,
            device_per_s=round(calls * b / el, 2),
            device_ms_per_batch=round(1e3 * el / calls, 3),
        )
        calls, el = _timed(lambda: np.asarray(fwd(tv, ntv, x_host)), min_time_s, 3)
        row.update(
            host_calls=calls,
            host_per_s=round(calls * b / el, 2),
            host_ms_per_batch=round(1e3 * el / calls, 3),
        )
    except Exception as exc:  # out of device memory at the largest batches: record it, keep going
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return row


def media_timing(width: int = 1920, height: int = 1080, frames: int = 48) -> dict[str, Any]:
    """H.264 encode (crf 18, medium, as the pipeline's default) and decode of synthetic frames, with PyAV."""
    try:
        import av
    except ImportError as exc:
        return {"skipped": f"PyAV not importable ({exc})"}
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :, None].repeat(height, 0).repeat(3, 2)
    imgs = [
        np.clip(np.roll(base, 16 * i, axis=1) + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
        for i in range(8)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "synthetic.mp4"
        t = time.perf_counter()
        with av.open(str(path), "w") as out:
            st: Any = out.add_stream("libx264", rate=30)
            st.width, st.height, st.pix_fmt = width, height, "yuv420p"
            st.options = {"crf": "18", "preset": "medium"}
            for i in range(frames):
                f = av.VideoFrame.from_ndarray(imgs[i % len(imgs)], format="rgb24").reformat(format="yuv420p")
                out.mux(st.encode(f))
            out.mux(st.encode(None))
        enc = time.perf_counter() - t
        t = time.perf_counter()
        n = 0
        with av.open(str(path)) as inp:
            s = inp.streams.video[0]
            s.thread_type = "AUTO"
            for fr in inp.decode(s):
                fr.to_ndarray(format="rgb24")
                n += 1
        dec = time.perf_counter() - t
    return {
        "size": [width, height],
        "frames": frames,
        "encode_fps": round(frames / enc, 2),
        "decode_fps": round(n / dec, 2),
        "av": av.__version__,
        "cpu_count": os.cpu_count(),
    }


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, write the JSON; return the results."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_jax", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="bundle name or folder (default: bundled default, else untrained)")
    p.add_argument("--out", type=Path, default=None, help="JSON path (default: $OUT/gpu_jax.json)")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    p.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    p.add_argument("--min-time", type=float, default=0.5, help="least timed seconds per point")
    p.add_argument("--budget", type=float, default=240.0, help="stop the sweep after this many seconds")
    p.add_argument("--no-media", action="store_true", help="skip the PyAV encode/decode timing")
    p.add_argument("--quick", action="store_true", help="tiny sweep (128 px, batch 1 and 4) for a CPU check")
    args = list(sys.argv[1:] if argv is None else argv)
    a = p.parse_args(args)
    if a.quick:
        a.sizes, a.batches, a.min_time = [128], [1, 4], 0.2
    t0 = time.perf_counter()
    deadline = t0 + a.budget

    import jax
    import keras

    res: dict[str, Any] = {
        "schema": "faceage-gpu-jax/1",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "benchmarks.gpu_jax", *args]),
        "machine": {
            "host": platform.node(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "jax_backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "device_kind": jax.devices()[0].device_kind,
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "keras": keras.__version__,
            "keras_backend": keras.backend.backend(),
            "numpy": np.__version__,
        },
    }
    with tempfile.TemporaryDirectory(prefix="faceage-gpu-") as tmp:
        weights, desc = load_weights_file(a.model, Path(tmp))
        res["model"] = desc
        print(f"model {desc['name']} on {res['machine']['devices']}", file=sys.stderr, flush=True)
        res["generator"] = sweep(weights, desc, a.sizes, a.batches, a.min_time, deadline)
    stats = getattr(jax.devices()[0], "memory_stats", lambda: None)()
    if stats:
        res["device_memory"] = {k: stats[k] for k in ("peak_bytes_in_use", "bytes_limit") if k in stats}
    ok = [r for r in res["generator"] if "device_per_s" in r]
    res["best"] = {
        str(s): max((r for r in ok if r["size"] == s), key=lambda r: r["device_per_s"], default=None)
        for s in a.sizes
    }
    if a.no_media:
        res["media"] = {"skipped": "--no-media"}
    else:
        res["media"] = media_timing(640, 360, 12) if a.quick else media_timing()
    res["tensorflow_imported"] = "tensorflow" in sys.modules
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    out = a.out or _out_default()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    for s, r in res["best"].items():
        if r:
            print(
                f"{s} px: best {r['device_per_s']} crops/s on device (b={r['batch']}), "
                f"{r['host_per_s']} host to host"
            )
    print(f"wrote {out} in {res['wall_s']} s; tensorflow imported: {res['tensorflow_imported']}")
    return res


def main(argv: Sequence[str] | None = None) -> int:
    run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`benchmarks.alternate`: two bundles timed in turn, and whether they compute the same. No speed is asserted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmarks import alternate as alt


def test_the_same_bundle_twice_computes_the_same_and_each_round_is_timed(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    out = tmp_path / "alt.json"
    assert (
        alt.main(
            [
                str(tiny_bundle),
                str(tiny_bundle),
                "--crops",
                "4",
                "--batch",
                "2",
                "--rounds",
                "2",
                "--no-xla",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["max_difference"] == 0.0
    assert [len(m["crops_per_s"]) for m in report["models"]] == [2, 2]
    assert all(v > 0 for m in report["models"] for v in m["crops_per_s"]) and report["ratio"] > 0


def test_another_generator_shows_as_a_difference(tiny_bundle: Path, tmp_path: Path) -> None:
    from models.bundle import load_generator, load_manifest, sha256_file

    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    g, _ = load_generator(other, "G")
    conv = g.get_layer("out_conv")
    conv.kernel.assign(np.full(tuple(conv.kernel.shape), 0.01, np.float32))
    g.save_weights(str(other / "G.weights.h5"))
    manifest = json.loads((other / "manifest.json").read_text())
    manifest.setdefault("sha256", {})["G"] = sha256_file(other / "G.weights.h5")
    (other / "manifest.json").write_text(json.dumps(manifest))
    load_manifest(other)
    res = alt.alternate([str(tiny_bundle), str(other)], crops=2, batch=2, rounds=1, xla=False)
    assert res["max_difference"] > 0.5


def test_a_missing_model_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert alt.main([str(tmp_path / "none"), str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err

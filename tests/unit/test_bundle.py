"""Model bundles: a missing or damaged bundle is a ModelError (via AgingEngine) naming the file and fix."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from faceage_video.engine.generator import AgingEngine, EngineOptions
from faceage_video.errors import ModelError
from models.bundle import FORMAT, BundleError, Manifest, load_generator, load_manifest, resolve_bundle


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle, safe to damage."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def load(folder: Path | str, direction: str = "older") -> AgingEngine:
    return AgingEngine(EngineOptions(model=str(folder), direction=direction, batch_size=2, xla=False))  # type: ignore[arg-type]


def edit_manifest(folder: Path, change: Callable[[dict], None]) -> None:
    path = folder / "manifest.json"
    d = json.loads(path.read_text())
    change(d)
    path.write_text(json.dumps(d))


def test_the_intact_bundle_loads(tiny_bundle: Path) -> None:
    eng = load(tiny_bundle)
    assert eng.manifest.name == "tiny-untrained"
    assert eng.size == 128
    folder, man = load_manifest(tiny_bundle)
    assert folder == tiny_bundle and man.files == {"G": "G.weights.h5", "F": "F.weights.h5"}
    # The manifest round-trips through its own JSON.
    assert Manifest.from_json(man.to_json()) == man


def test_missing_bundle_names_what_was_looked_for(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-bundle"
    with pytest.raises(ModelError) as ei:
        load(missing)
    msg = str(ei.value)
    assert str(missing) in msg and "manifest.json" in msg
    assert "Fix" in msg and "--model" in msg


def test_unknown_bundled_name_lists_the_bundled_models() -> None:
    with pytest.raises(ModelError, match=r"'no-such-model' not found.*Bundled models:.*Fix"):
        load("no-such-model")


def test_folder_without_manifest_names_the_manifest_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "G.weights.h5").write_bytes(b"")
    with pytest.raises(ModelError) as ei:
        load(tmp_path)
    msg = str(ei.value)
    assert str(tmp_path / "manifest.json") in msg
    assert "Fix" in msg


@pytest.mark.parametrize("which", ["G", "F"])
def test_missing_weights_name_the_file_and_the_fix(bundle_copy: Path, which: str) -> None:
    (bundle_copy / f"{which}.weights.h5").unlink()
    with pytest.raises(ModelError) as ei:
        load(bundle_copy, "older" if which == "G" else "younger")
    msg = str(ei.value)
    assert str(bundle_copy / f"{which}.weights.h5") in msg
    assert "Fix" in msg and "training export" in msg
    # The other generator still loads: only the missing file matters.
    load(bundle_copy, "younger" if which == "G" else "older")


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[]",
        "null",
        '"a string"',
        json.dumps({"format": "something-else/9", "name": "x"}),
        json.dumps({"format": FORMAT, "name": "x"}),  # no generator, template or files
    ],
    ids=["syntax", "list", "null", "string", "format", "incomplete"],
)
def test_corrupt_manifest_names_the_file_and_the_fix(bundle_copy: Path, text: str) -> None:
    (bundle_copy / "manifest.json").write_text(text)
    with pytest.raises(ModelError) as ei:
        load(bundle_copy)
    msg = str(ei.value)
    assert str(bundle_copy / "manifest.json") in msg
    assert "Fix" in msg


def test_binary_manifest_is_a_model_error(bundle_copy: Path) -> None:
    (bundle_copy / "manifest.json").write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(ModelError, match=r"manifest\.json.*Fix"):
        load(bundle_copy)


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda d: d["generator"].update(size=130), "generator"),  # not a multiple of 4
        (lambda d: d["generator"].update(colour="blue"), "generator"),  # unknown field
        (lambda d: d.update(files={"G": "G.weights.h5"}), "files"),  # F missing from files
        (lambda d: d.update(template={}), "template"),  # no size
        (lambda d: d.update(template={"size": 4}), "template"),  # too small
        (lambda d: d.update(template={"size": 256}), "template"),  # not the generator's size
    ],
    ids=["size", "field", "files", "template-empty", "template-small", "template-size"],
)
def test_inconsistent_manifest_is_a_model_error(
    bundle_copy: Path, change: Callable[[dict], None], what: str
) -> None:
    edit_manifest(bundle_copy, change)
    with pytest.raises(ModelError) as ei:
        load(bundle_copy, "younger")
    msg = str(ei.value)
    assert str(bundle_copy / "manifest.json") in msg and what in msg.lower() and "Fix" in msg


@pytest.mark.parametrize("which", ["G", "F"])
def test_truncated_weights_name_the_file_and_the_fix(bundle_copy: Path, which: str) -> None:
    w = bundle_copy / f"{which}.weights.h5"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as ei:
        load(bundle_copy, "older" if which == "G" else "younger")
    msg = str(ei.value)
    assert str(w) in msg and "corrupt" in msg
    assert "Fix" in msg and "training export" in msg


def test_weights_of_another_architecture_are_refused(bundle_copy: Path) -> None:
    edit_manifest(bundle_copy, lambda d: d["generator"].update(ngf=16))
    with pytest.raises(ModelError) as ei:
        load(bundle_copy)
    msg = str(ei.value)
    assert str(bundle_copy / "G.weights.h5") in msg and "do not match" in msg and "Fix" in msg
    assert len(msg) < 1000, "the message must not dump weight tensors"


def test_weights_path_is_a_folder(bundle_copy: Path) -> None:
    (bundle_copy / "G.weights.h5").unlink()
    (bundle_copy / "G.weights.h5").mkdir()
    with pytest.raises(ModelError, match=r"G\.weights\.h5.*Fix"):
        load(bundle_copy)


def test_bundle_api_raises_bundle_error_directly(tmp_path: Path) -> None:
    with pytest.raises(BundleError):
        resolve_bundle(tmp_path / "nothing")
    with pytest.raises(BundleError, match="'G' or 'F'"):
        load_generator(tmp_path, "D")

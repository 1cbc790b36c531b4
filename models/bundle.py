"""The model-bundle format: a folder holding `manifest.json`, both generators' weights and a model card.

    models/<name>/
        manifest.json       format version, generator config, alignment template, normalisation, data, metrics
        G.weights.h5        young → old generator (Keras weights, no pickles)
        F.weights.h5        old → young generator
        CARD.md             data, licence, quality numbers
        samples.png         before/after grid (optional)

Bundled models live beside this file; `resolve_bundle` also accepts any folder path.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import keras

from models.networks import GeneratorConfig, build_generator

FORMAT = "faceage-bundle/1"
_REEXPORT = (
    "Fix: re-export the bundle with `python -m training export`, "
    "or reinstall faceage-video to restore the bundled models."
)
DEFAULT_MODEL = "utkface-jawline-xlong-128"
# The generator fields one of G and F may change on its own (`Manifest.overrides`).
OVERRIDABLE = ("detail_head",)
BUNDLED_DIR = Path(__file__).resolve().parent


class BundleError(Exception):
    """A bundle is missing, incomplete or corrupt. The message names the file and the fix."""


@dataclass(frozen=True)
class Manifest:
    """Contents of `manifest.json`.

    Attributes:
        name: bundle name.
        generator: the architecture of G and F.
        overrides: per generator ("G" or "F"), the fields of `generator` that differ for it: only those in
            `OVERRIDABLE`, which leave the input and output alone (the engine runs both alike). A `G` whose
            detail head is zero ships without it (`{"G": {"detail_head": false}}`) and costs no head time.
        template: the alignment template (`AlignTemplate.to_dict()` of faceage_video), so crops at run time
            match the crops the model was trained on.
        normalisation: how uint8 pixels map to the network's range.
        files: weight file of each generator, relative to the bundle.
        data: what the model was trained on (dataset, counts, age ranges, licence).
        training: steps, config name, and other provenance.
        metrics: quality numbers measured by independent judges.
        sha256: hex SHA-256 of each weight file, checked on load; a bundle exported before this field existed
            has none and loads unchecked.
    """

    name: str
    generator: GeneratorConfig
    template: dict[str, Any]
    normalisation: str = "x / 127.5 - 1"
    files: dict[str, str] = field(default_factory=lambda: {"G": "G.weights.h5", "F": "F.weights.h5"})
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def config(self, which: str) -> GeneratorConfig:
        """The architecture of generator `which` ("G" or "F"): `generator` with its `overrides`."""
        return replace(self.generator, **self.overrides.get(which, {}))

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "name": self.name,
                "generator": self.generator.to_dict(),
                **({"generator_overrides": self.overrides} if self.overrides else {}),
                "template": self.template,
                "normalisation": self.normalisation,
                "files": self.files,
                "data": self.data,
                "training": self.training,
                "metrics": self.metrics,
                **({"sha256": self.sha256} if self.sha256 else {}),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, source: str = "manifest.json") -> Manifest:
        try:
            d = json.loads(text)
            if not isinstance(d, dict):
                raise TypeError(f"expected a JSON object, got {type(d).__name__}")
            if d.get("format") != FORMAT:
                raise BundleError(
                    f"{source}: format {d.get('format')!r} is not {FORMAT!r} (a bundle from another version, "
                    f"or not a faceage bundle). {_REEXPORT}"
                )
            files = {str(k): str(v) for k, v in dict(d["files"]).items()}
            missing = [k for k in ("G", "F") if k not in files]
            if missing:
                raise KeyError(f"files lacks {', '.join(missing)}")
            for key, name in files.items():
                _check_weight_name(key, name)
            sha = {str(k): str(v).lower() for k, v in dict(d.get("sha256", {})).items()}
            bad = [k for k, v in sha.items() if len(v) != 64 or any(c not in "0123456789abcdef" for c in v)]
            if bad:
                raise ValueError(f"sha256 of {', '.join(bad)} is not 64 hex digits")
            overrides = {str(k): dict(v) for k, v in dict(d.get("generator_overrides", {})).items()}
            for which, changes in overrides.items():
                if which not in ("G", "F") or not set(changes) <= set(OVERRIDABLE):
                    raise ValueError(
                        f"generator_overrides may set {', '.join(OVERRIDABLE)} of G or F, got {which}: {changes}"
                    )
            manifest = cls(
                name=str(d["name"]),
                generator=GeneratorConfig(**d["generator"]),
                template=dict(d["template"]),
                normalisation=str(d.get("normalisation", "x / 127.5 - 1")),
                files=files,
                data=dict(d.get("data", {})),
                training=dict(d.get("training", {})),
                metrics=dict(d.get("metrics", {})),
                sha256=sha,
                overrides=overrides,
            )
            for which in overrides:
                manifest.config(which)  # each generator's architecture must be valid
            return manifest
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BundleError(f"{source} is corrupt ({type(exc).__name__}: {exc}). {_REEXPORT}") from exc


def _check_weight_name(key: str, name: str) -> None:
    """A weight file must be a plain file name inside the bundle: no folder, no `..`, not absolute."""
    if not name or name in (".", "..") or os.path.isabs(name) or "/" in name or "\\" in name:
        raise ValueError(
            f"files.{key} = {name!r} leaves the bundle folder; weight files must be plain names like G.weights.h5"
        )


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def bundled_names() -> list[str]:
    """Names of the bundles shipped in this package."""
    return sorted(p.parent.name for p in BUNDLED_DIR.glob("*/manifest.json"))


def _is_plain_name(key: str) -> bool:
    return bool(key) and key not in (".", "..") and os.sep not in key and "/" not in key


def resolve_bundle(name_or_path: str | Path | None = None) -> Path:
    """Folder of a bundle: a bundled name, or a path to a bundle folder. None is the default model.

    A bundled name always means the bundled model, even where a folder of that name is in the current
    directory (pass `./NAME` for the folder). Any other value is a path.

    Raises:
        BundleError: naming what was looked for and the bundles available.
    """
    key = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    p = Path(key)
    if isinstance(name_or_path, str | None) and _is_plain_name(key) and key in bundled_names():
        return BUNDLED_DIR / key
    if (p / "manifest.json").is_file():
        return p
    if p.is_dir() or p.suffix == ".json":
        raise BundleError(
            f"{p / 'manifest.json'} not found: {p} is not a model bundle. Fix: pass the folder that holds "
            f"manifest.json, G.weights.h5 and F.weights.h5 (as written by `python -m training export`), "
            f"or a bundled model name ({', '.join(bundled_names()) or 'none installed'})."
        )
    raise BundleError(
        f"model {key!r} not found (no {p}/manifest.json, no bundled model of that name). "
        f"Bundled models: {', '.join(bundled_names()) or 'none'}. Fix: pass --model NAME or a bundle folder."
    )


def load_manifest(bundle: str | Path | None = None) -> tuple[Path, Manifest]:
    """Resolve and parse a bundle's manifest."""
    folder = resolve_bundle(bundle)
    mpath = folder / "manifest.json"
    try:
        text = mpath.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath} cannot be read ({type(exc).__name__}: {exc}). {_REEXPORT}") from exc
    return folder, Manifest.from_json(text, str(mpath))


def load_generator(bundle: str | Path | None, which: str) -> tuple[keras.Model, Manifest]:
    """Build one generator ("G" or "F") and load its weights.

    Raises:
        BundleError: the weight file is missing or does not match the manifest's architecture.
    """
    if which not in ("G", "F"):
        raise BundleError(f"generator must be 'G' or 'F', got {which!r}")
    folder, manifest = load_manifest(bundle)
    wpath = folder / manifest.files[which]
    if not wpath.is_file():
        raise BundleError(
            f"weights {wpath} missing from bundle {folder}. "
            f"Fix: re-export it with `python -m training export`."
        )
    if not wpath.resolve().is_relative_to(folder.resolve()):  # a symlink out of the bundle
        raise BundleError(
            f"weights {wpath} lead outside bundle {folder}. Fix: keep the weight files inside the bundle "
            "folder (re-export it with `python -m training export`)."
        )
    want = manifest.sha256.get(which)
    if want is not None:
        got = sha256_file(wpath)
        if got != want:
            raise BundleError(
                f"weights {wpath} are corrupt or from another bundle: their sha256 {got[:12]}… is not the "
                f"{want[:12]}… that {folder / 'manifest.json'} records. Fix: re-export the bundle with "
                "`python -m training export`, or reinstall faceage-video for the bundled models."
            )
    config = manifest.config(which)
    model = build_generator(config, name=which)
    try:
        model.load_weights(str(wpath))
    except Exception as exc:  # h5py and Keras raise many types for a damaged or mismatched file
        # Keras' mismatch message embeds whole weight tensors: keep its first line only.
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise BundleError(
            f"weights {wpath} are corrupt or do not match the manifest's generator "
            f"({config}): {type(exc).__name__}: {first}. "
            f"Fix: re-export the bundle with `python -m training export`."
        ) from exc
    return model, manifest


def save_bundle(
    folder: str | Path, manifest: Manifest, generators: dict[str, keras.Model], card: str
) -> Path:
    """Write a bundle: each generator's weights, the manifest (with each weight file's sha256) and the card."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for key, model in generators.items():
        model.save_weights(str(out / manifest.files[key]))
    digests = {key: sha256_file(out / manifest.files[key]) for key in generators}
    manifest = replace(manifest, sha256={**manifest.sha256, **digests})
    (out / "manifest.json").write_text(manifest.to_json() + "\n", encoding="utf-8")
    (out / "CARD.md").write_text(card, encoding="utf-8")
    return out

"""Many shots from one manifest, locally or on Ray, with a per-shot status file so a re-run resumes.

The manifest is a CSV (header row) or a JSONL file (one object per line). Each shot names an `input` and an
`output`, optionally an `id`, and any per-shot options (the `age` command's option names, `-` or `_`):

    id,input,output,direction,strength
    sc010,plates/sc010.mov,aged/sc010.mov,older,0.8
    sc020,plates/sc020.mov,aged/sc020.mov,younger,

    {"id": "sc010", "input": "plates/sc010.mov", "output": "aged/sc010.mov", "strength": 0.8}

Relative paths are relative to the manifest's folder; an empty cell takes the batch's default.

Status. `<manifest>.status.json` beside the manifest records, per shot id, "running", "done" or "failed"
(with the error), the frame count and a fingerprint of the input file, the output path and the options. A
re-run skips every shot that is "done" with the same fingerprint and whose output exists, and runs the rest
(failed, interrupted, new or changed shots). A shot that fails is recorded and the others still run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from faceage_video.distributed import RayOptions
from faceage_video.errors import FaceAgeError, InputError, OptionsError
from faceage_video.media.reader import is_url
from faceage_video.pipeline import AgeOptions, Report

ShotStatus = Literal["running", "done", "failed", "skipped"]
STATUS_SUFFIX = ".status.json"
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")
# Makes AgeOptions from one shot's option values (the batch defaults already merged in); the CLI passes its
# own builder, so a manifest column means exactly what the `age` option of the same name means.
BuildOptions = Callable[[Mapping[str, Any]], AgeOptions]


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on", "y"):
        return True
    if s in ("0", "false", "no", "off", "n"):
        return False
    raise ValueError(f"expected true/false, got {v!r}")


def _to_faces(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ",".join(str(int(x)) for x in v)
    return str(v)


# Per-shot options a manifest may set, each with the conversion of its text.
SHOT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "direction": str,
    "strength": float,
    "target_age": float,
    "input_age": float,
    "model": str,
    "batch_size": int,
    "xla": _to_bool,
    "temporal": float,
    "mask": str,
    "feather": float,
    "color_match": _to_bool,
    "max_faces": int,
    "faces": _to_faces,
    "codec": str,
    "crf": int,
    "preset": str,
    "audio": _to_bool,
    "start": float,
    "end": float,
    "matte": str,
    "side_by_side": str,
    "report": str,
    "landmarker": str,
    "detect_width": int,
    "allow_protocols": _to_bool,
}
# Written files, relative to the manifest's folder when not absolute.
_OUTPUT_PATHS = ("matte", "side_by_side", "report")
# Files that may also be names (a bundled model): resolved against the manifest's folder only if there.
_MAYBE_PATHS = ("model", "landmarker")


@dataclass(frozen=True)
class Shot:
    """One line of a manifest.

    Attributes:
        id: the shot's name in the status file (the `id` column, else the output path as written).
        line: line number in the manifest (for messages).
        input, output: resolved paths.
        params: the shot's own option values as written (converted when the shot runs, so a bad value
            fails only its shot).
    """

    id: str
    line: int
    input: str
    output: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShotOutcome:
    """What happened to one shot in this run.

    Attributes:
        status: "done", "skipped" (already done before) or "failed".
        error: why it failed.
        report: the pipeline's report when it ran.
    """

    shot: Shot
    status: ShotStatus
    error: str | None = None
    report: Report | None = None


@dataclass
class BatchReport:
    """Every shot's outcome, in manifest order, and where the status was recorded."""

    outcomes: list[ShotOutcome]
    status_file: Path

    def _with(self, status: ShotStatus) -> list[ShotOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def done(self) -> list[ShotOutcome]:
        return self._with("done")

    @property
    def skipped(self) -> list[ShotOutcome]:
        return self._with("skipped")

    @property
    def failed(self) -> list[ShotOutcome]:
        return self._with("failed")


# ----------------------------------------------------------------------------------------------------------
# Manifest


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    text = path.read_text(encoding="utf-8-sig")
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise OptionsError(f"{path}: empty CSV; the first row must name the columns (input,output,...)")
        for row in reader:
            if None in row:
                raise OptionsError(f"{path}:{reader.line_num}: more cells than column names")
            if not any((v or "").strip() for v in row.values()):
                continue
            rows.append((reader.line_num, dict(row)))
        return rows
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as e:
            raise OptionsError(f"{path}:{n}: not a JSON object ({e.msg})") from None
        if not isinstance(obj, dict):
            raise OptionsError(f"{path}:{n}: each line must be a JSON object, got {type(obj).__name__}")
        rows.append((n, obj))
    return rows


def read_manifest(path: str | os.PathLike[str]) -> list[Shot]:
    """Parse a CSV or JSONL manifest.

    Raises:
        InputError: the manifest is missing.
        OptionsError: it is malformed: unknown column, missing input/output, repeated id or output.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such manifest; pass a .csv or .jsonl file")
    if p.suffix.lower() not in MANIFEST_SUFFIXES:
        raise OptionsError(f"{p}: a manifest must be .csv or .jsonl (one JSON object per line)")
    base = p.resolve().parent
    allowed = {"id", "input", "output", *SHOT_FIELDS}
    shots: list[Shot] = []
    for line, raw in _rows(p):
        row = {str(k).strip().lower().replace("-", "_"): v for k, v in raw.items()}
        unknown = sorted(set(row) - allowed)
        if unknown:
            raise OptionsError(
                f"{p}:{line}: unknown column(s) {', '.join(unknown)}; allowed: id, input, output, "
                + ", ".join(SHOT_FIELDS)
            )
        values = {
            k: v for k, v in row.items() if v is not None and not (isinstance(v, str) and not v.strip())
        }
        for key in ("input", "output"):
            if key not in values:
                raise OptionsError(f"{p}:{line}: the shot has no {key}")
        inp, out = str(values.pop("input")).strip(), str(values.pop("output")).strip()
        sid = str(values.pop("id", out)).strip()

        def here(v: str) -> str:
            return v if os.path.isabs(v) or is_url(v) else str(base / v)

        params: dict[str, Any] = {}
        for k, v in values.items():
            if k in _OUTPUT_PATHS and isinstance(v, str):
                v = here(v.strip())
            elif k in _MAYBE_PATHS and isinstance(v, str) and (base / v.strip()).exists():
                v = str(base / v.strip())
            params[k] = v
        shots.append(Shot(id=sid, line=line, input=here(inp), output=here(out), params=params))
    seen: dict[str, int] = {}
    outputs: dict[str, str] = {}
    for s in shots:
        if s.id in seen:
            raise OptionsError(
                f"{p}:{s.line}: shot id {s.id!r} repeats line {seen[s.id]}; ids must be unique"
            )
        seen[s.id] = s.line
        key = os.path.realpath(s.output)
        if key in outputs:
            raise OptionsError(f"{p}:{s.line}: output {s.output} is also shot {outputs[key]!r}'s output")
        outputs[key] = s.id
    return shots


def shot_params(shot: Shot) -> dict[str, Any]:
    """The shot's option values converted to their types.

    Raises:
        OptionsError: a value does not parse, naming the shot and the column.
    """
    out: dict[str, Any] = {}
    for k, v in shot.params.items():
        try:
            out[k] = SHOT_FIELDS[k](v)
        except (TypeError, ValueError) as e:
            raise OptionsError(f"shot {shot.id!r} (line {shot.line}): {k}={v!r} is not valid ({e})") from None
    return out


# ----------------------------------------------------------------------------------------------------------
# Status file


def status_path(manifest: str | os.PathLike[str]) -> Path:
    """The status file beside a manifest: `<manifest>.status.json`."""
    p = Path(manifest)
    return p.with_name(p.name + STATUS_SUFFIX)


class StatusFile:
    """Per-shot status beside the manifest, rewritten atomically after every change."""

    def __init__(self, path: Path, manifest: Path) -> None:
        self.path = path
        self.manifest = manifest
        self.shots: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.shots = dict(data.get("shots", {}))
            except (json.JSONDecodeError, AttributeError, TypeError):
                # An unreadable status means nothing is known to be done: keep it aside and start over.
                path.replace(path.with_name(path.name + ".corrupt"))
                self.shots = {}

    def get(self, shot_id: str) -> dict[str, Any] | None:
        return self.shots.get(shot_id)

    def set(self, shot_id: str, **fields: Any) -> None:
        entry = self.shots.setdefault(shot_id, {})
        entry.update(fields)
        entry["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
        self._write()

    def mark(self, shot: Shot, fp: str | None, status: str, **fields: Any) -> None:
        """Record a shot's status with its identity (input, output, options fingerprint)."""
        self.set(shot.id, status=status, input=shot.input, output=shot.output, fingerprint=fp, **fields)

    def _write(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        body = {"manifest": self.manifest.name, "shots": self.shots}
        tmp.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def fingerprint(shot: Shot, options: AgeOptions) -> str:
    """What makes a finished shot still valid: the input file (size, mtime), the output path, the options."""
    try:
        st = os.stat(shot.input)
        src: Any = [st.st_size, st.st_mtime_ns]
    except OSError:
        src = None
    key = {
        "input": shot.input,
        "input_stat": src,
        "output": os.path.abspath(shot.output),
        "options": repr(replace(options, progress=True)),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FaceAgeError) else f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------------------------------------
# Running


def run_batch(
    manifest: str | os.PathLike[str],
    build_options: BuildOptions,
    ray_options: RayOptions | None = None,
    force: bool = False,
    progress: bool = True,
    on_shot: Callable[[ShotOutcome], None] | None = None,
) -> BatchReport:
    """Age every shot of a manifest that is not already done; record each shot's status as it ends.

    Args:
        manifest: a .csv or .jsonl manifest.
        build_options: makes a shot's `AgeOptions` from its option values (see `BuildOptions`).
        ray_options: run on Ray with these settings (segments of all shots share the
            warm actors); None runs the shots one after another in this process, reusing loaded models.
        force: run shots already done too.
        progress: on Ray, one progress bar over all shots (locally each shot's `options.progress` applies).
        on_shot: called as each shot ends (done, skipped or failed).

    Returns:
        Every shot's outcome. A failed shot does not raise: see `BatchReport.failed`.

    Raises:
        InputError, OptionsError: the manifest is missing or malformed (nothing is run).
        DistributedError: Ray is missing or the cluster cannot be reached.
    """
    mpath = Path(manifest)
    shots = read_manifest(mpath)
    status = StatusFile(status_path(mpath), mpath)
    outcomes: dict[str, ShotOutcome] = {}
    todo: list[tuple[Shot, AgeOptions | None, str | None, BaseException | None]] = []

    def finish(outcome: ShotOutcome) -> None:
        outcomes[outcome.shot.id] = outcome
        if on_shot is not None:
            on_shot(outcome)

    for shot in shots:
        try:
            opts: AgeOptions | None = build_options(shot_params(shot))
            err: BaseException | None = None
        except Exception as exc:  # a bad value fails its own shot only
            opts, err = None, exc
        fp = fingerprint(shot, opts) if opts is not None else None
        prev = status.get(shot.id)
        if (
            not force
            and opts is not None
            and prev is not None
            and prev.get("status") == "done"
            and prev.get("fingerprint") == fp
            and Path(shot.output).exists()
        ):
            finish(ShotOutcome(shot, "skipped"))
            continue
        todo.append((shot, opts, fp, err))

    def record(shot: Shot, fp: str | None, report: Report | None, exc: BaseException | None) -> None:
        if exc is not None:
            status.mark(shot, fp, "failed", error=_message(exc))
            finish(ShotOutcome(shot, "failed", error=_message(exc)))
        else:
            assert report is not None
            status.mark(
                shot,
                fp,
                "done",
                error=None,
                frames=report.frames,
                faces=report.faces,
                wall_s=round(report.wall_s, 2),
                warnings=report.warnings,
            )
            finish(ShotOutcome(shot, "done", report=report))

    if ray_options is None:
        _run_local(todo, status, record)
    else:
        _run_ray(todo, status, record, ray_options, progress)
    return BatchReport([outcomes[s.id] for s in shots], status.path)


_Record = Callable[[Shot, str | None, Report | None, BaseException | None], None]


def _run_local(
    todo: list[tuple[Shot, AgeOptions | None, str | None, BaseException | None]],
    status: StatusFile,
    record: _Record,
) -> None:
    from faceage_video.engine.generator import AgingEngine
    from faceage_video.pipeline import age_video

    engines: dict[Any, AgingEngine] = {}  # one loaded model per engine options, reused across shots
    for shot, opts, fp, err in todo:
        if opts is None:
            record(shot, fp, None, err or OptionsError("invalid options"))
            continue
        status.mark(shot, fp, "running", started=time.time())
        try:
            eng = engines.get(opts.engine)
            if eng is None:
                if len(engines) >= 2:
                    engines.pop(next(iter(engines)))
                eng = engines[opts.engine] = AgingEngine(opts.engine)
            report = age_video(shot.input, shot.output, opts, engine=eng)
        except Exception as exc:  # one shot's failure must not stop the batch
            record(shot, fp, None, exc)
        else:
            record(shot, fp, report, None)


def _run_ray(
    todo: list[tuple[Shot, AgeOptions | None, str | None, BaseException | None]],
    status: StatusFile,
    record: _Record,
    ray_options: RayOptions,
    progress: bool,
) -> None:
    from faceage_video.distributed import RayPool, ShotPlan

    plans: list[ShotPlan] = []
    by_plan: dict[int, tuple[Shot, str | None]] = {}
    if not todo:
        return
    with RayPool(ray_options) as pool:
        for shot, opts, fp, err in todo:
            plan = ShotPlan(input=shot.input, output=shot.output, options=opts or AgeOptions(), key=shot.id)
            if opts is None:
                plan.failed = err or OptionsError("invalid options")
            else:
                try:
                    pool.prepare(plan)
                except Exception as exc:  # unreadable input, bad output path: this shot only
                    plan.failed = exc
            if plan.failed is None:
                status.mark(shot, fp, "running", started=time.time())
            by_plan[id(plan)] = (shot, fp)
            plans.append(plan)

        def done(plan: ShotPlan, report: Report | None, exc: BaseException | None) -> None:
            shot, fp = by_plan[id(plan)]
            record(shot, fp, report, exc)

        pool.run(plans, on_done=done, progress=progress)

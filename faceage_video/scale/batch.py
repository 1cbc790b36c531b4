"""Many shots from one manifest, locally or on Ray, with a per-shot status file so a re-run resumes.

The manifest is a CSV (header row) or a JSONL file (one object per line). Each shot names an `input` and an
`output`, optionally an `id`, and any per-shot options (the `age` command's option names, `-` or `_`):

    id,input,output,direction,strength
    sc010,plates/sc010.mov,aged/sc010.mov,older,0.8
    sc020,plates/sc020.mov,aged/sc020.mov,younger,

    {"id": "sc010", "input": "plates/sc010.mov", "output": "aged/sc010.mov", "strength": 0.8}

Relative paths are relative to the manifest's folder; an empty cell takes the batch's default.

Confinement. The whole manifest is checked before any shot runs, and a refused manifest names every bad row:
- every written path (output, matte, side_by_side, report) stays inside the manifest's folder, or inside
  `output_root` when one is given (relative written paths then resolve against it), unless `allow_outside`;
- no written path equals, or resolves to (symlink, hard link, `../`), any shot's input or any other written
  path of the manifest;
- a row cannot turn on `allow_protocols`: only the caller (the CLI flag) can.
A bundled model name in the `model` column always means the bundled model, never a folder of that name.

Status. `<manifest>.status.json` beside the manifest records, per shot id, "running", "done" or "failed"
(with the error), the frame count and a fingerprint of the input file, the output path and the options. A
re-run skips every shot that is "done" with the same fingerprint and whose output still opens as a video
with the recorded frame count (a truncated output runs again), and runs the rest (failed, interrupted, new
or changed shots). A shot that fails is recorded and the others still run. The status file is locked for the
whole run (`<manifest>.status.json.lock`), so a second run of the same manifest is refused at once.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from faceage_video.errors import FaceAgeError, InputError, OptionsError, OutputError
from faceage_video.media.reader import is_url
from faceage_video.pipeline import AgeOptions, Report
from faceage_video.scale.plan import RayOptions

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
}
# Options a row may not set: they widen what the tool may read, so only the caller decides.
_CALLER_ONLY = ("allow_protocols",)
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


def read_manifest(
    path: str | os.PathLike[str],
    output_root: str | os.PathLike[str] | None = None,
    allow_outside: bool = False,
) -> list[Shot]:
    """Parse a CSV or JSONL manifest and check it whole (see "Confinement" above).

    Args:
        path: the manifest.
        output_root: written paths resolve against this folder and must stay inside it; None: the
            manifest's folder.
        allow_outside: let written paths leave that folder (absolute or `../` paths).

    Raises:
        InputError: the manifest is missing.
        OptionsError: it is malformed (unknown column, missing input/output, repeated id or output), or it
            is refused: every row that writes outside the root, onto an input or onto another output, or
            sets a caller-only option, is named in one message.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such manifest; pass a .csv or .jsonl file")
    if p.suffix.lower() not in MANIFEST_SUFFIXES:
        raise OptionsError(f"{p}: a manifest must be .csv or .jsonl (one JSON object per line)")
    base = p.resolve().parent
    root = Path(output_root).resolve() if output_root is not None else base
    if output_root is not None and not root.is_dir():
        raise OptionsError(f"--output-root {output_root} is not a folder; create it first")
    allowed = {"id", "input", "output", *SHOT_FIELDS, *_CALLER_ONLY}
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

        def here(v: str, folder: Path = base) -> str:
            return v if os.path.isabs(v) or is_url(v) else str(folder / v)

        params: dict[str, Any] = {}
        for k, v in values.items():
            if k in _OUTPUT_PATHS and isinstance(v, str):
                v = here(v.strip(), root)
            elif k in _MAYBE_PATHS and isinstance(v, str) and _is_local_file(k, v.strip(), base):
                v = str(base / v.strip())
            params[k] = v
        shots.append(Shot(id=sid, line=line, input=here(inp), output=here(out, root), params=params))
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
    problems = _confinement_problems(shots, root, allow_outside)
    if problems:
        raise OptionsError(
            f"{p}: manifest refused, nothing was run ({len(problems)} problem(s)): " + "; ".join(problems)
        )
    return shots


def _is_local_file(column: str, value: str, base: Path) -> bool:
    """Whether a `model`/`landmarker` cell names a file beside the manifest (a bundled model name never)."""
    if column == "model":
        from models.bundle import bundled_names

        if value in bundled_names():
            return False
    return (base / value).exists()


def _written(shot: Shot) -> list[tuple[str, str]]:
    """(column, path) of every file a shot writes."""
    out = [("output", shot.output)]
    out += [(k, str(shot.params[k])) for k in _OUTPUT_PATHS if isinstance(shot.params.get(k), str)]
    return out


def _same(a: str, b: str) -> bool:
    """Same file: by inode when both exist (hard links), else by the fully resolved path (symlinks, ../)."""
    with contextlib.suppress(OSError):
        if os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b):
            return True
    return os.path.realpath(a) == os.path.realpath(b)


def _confinement_problems(shots: list[Shot], root: Path, allow_outside: bool) -> list[str]:
    """Every row that writes where it must not, or sets a caller-only option; one line per problem."""
    problems: list[str] = []
    written = [(s, col, path) for s in shots for col, path in _written(s)]
    for s in shots:
        for k in _CALLER_ONLY:
            if k in s.params:
                problems.append(
                    f"line {s.line} (shot {s.id!r}): {k} cannot be set per shot; pass --allow-protocols "
                    "to the batch command instead"
                )
    for i, (s, col, path) in enumerate(written):
        where = f"line {s.line} (shot {s.id!r}): {col} {path}"
        if is_url(path):
            problems.append(f"{where} is a URL; outputs must be local files")
            continue
        if not allow_outside and not Path(os.path.realpath(path)).is_relative_to(root):
            problems.append(f"{where} is outside {root}; keep it inside, or pass --allow-outside")
        for other in shots:
            if not is_url(other.input) and _same(path, other.input):
                problems.append(f"{where} is shot {other.id!r}'s input (line {other.line})")
        for s2, col2, path2 in written[:i]:
            if s2 is s and col2 == "output" and col == "output":
                continue
            if _same(path, path2):
                problems.append(f"{where} is also shot {s2.id!r}'s {col2} (line {s2.line})")
    return problems


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

    def __init__(self, path: Path, manifest: Path, lock: bool = False) -> None:
        """Read the status (after taking the run's lock when `lock`; see `lock()`)."""
        self.path = path
        self.manifest = manifest
        self.shots: dict[str, dict[str, Any]] = {}
        self._lock: Any = None
        if lock:
            self.lock()
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self.shots = dict(data.get("shots", {}))
            except (json.JSONDecodeError, AttributeError, TypeError):
                # An unreadable status means nothing is known to be done: keep it aside and start over.
                path.replace(path.with_name(path.name + ".corrupt"))
                self.shots = {}

    def lock(self) -> None:
        """Hold an exclusive lock for this run, so a second run of the same manifest is refused.

        Raises:
            OutputError: another run holds it (or the folder refuses the lock file).
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self._lock = open(lock_path, "a+")  # noqa: SIM115 - held until unlock()
        except OSError as e:
            raise OutputError(
                f"{lock_path}: cannot create the status lock ({e.strerror}); check the folder"
            ) from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            self._lock = None
            raise OutputError(
                f"{self.path}: another batch run of this manifest is in progress (it holds {lock_path}); "
                "wait for it to end, or stop it first"
            ) from None

    def unlock(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

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


def output_intact(path: str, frames: Any) -> bool:
    """Whether a finished shot's output still opens as a video holding `frames` video packets.

    Counting packets (no decoding) is cheap, and a truncated file either fails to open (an MP4 without its
    index) or holds fewer packets than were written.
    """
    from faceage_video.media.reader import open_input

    if not isinstance(frames, int) or not os.path.isfile(path):
        return False
    try:
        container = open_input(path)
    except FaceAgeError:
        return False
    try:
        if not container.streams.video:
            return False
        n = sum(1 for pkt in container.demux(container.streams.video[0]) if pkt.size > 0)
    except Exception:  # any demux error means the file is damaged: run the shot again
        return False
    finally:
        container.close()
    return n == frames


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
    output_root: str | os.PathLike[str] | None = None,
    allow_outside: bool = False,
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
        output_root, allow_outside: where written paths may go (see `read_manifest`).

    Returns:
        Every shot's outcome. A failed shot does not raise: see `BatchReport.failed`.

    Raises:
        InputError, OptionsError: the manifest is missing, malformed or refused (nothing is run).
        OutputError: another run of the same manifest holds the status file.
        DistributedError: Ray is missing or the cluster cannot be reached.
    """
    mpath = Path(manifest)
    shots = read_manifest(mpath, output_root, allow_outside)
    status = StatusFile(status_path(mpath), mpath, lock=True)
    try:
        return _run_batch(shots, status, build_options, ray_options, force, progress, on_shot)
    finally:
        status.unlock()


def _run_batch(
    shots: list[Shot],
    status: StatusFile,
    build_options: BuildOptions,
    ray_options: RayOptions | None,
    force: bool,
    progress: bool,
    on_shot: Callable[[ShotOutcome], None] | None,
) -> BatchReport:
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
            and output_intact(shot.output, prev.get("frames"))
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
    from faceage_video.scale.pool import RayPool, ShotPlan

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

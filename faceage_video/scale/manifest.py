"""The batch manifest: its shots, their per-shot options, and the confinement of what they write.

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
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceage_video.errors import InputError, OptionsError
from faceage_video.flags import CALLER_ONLY, manifest_fields
from faceage_video.media.atomic import same_file
from faceage_video.media.reader import is_url

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".ndjson")


# Per-shot options a manifest may set (the `AgeFlags` fields), each with the conversion of its text.
SHOT_FIELDS: dict[str, Callable[[Any], Any]] = manifest_fields()
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
    allowed = {"id", "input", "output", *SHOT_FIELDS, *CALLER_ONLY}
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


def _confinement_problems(shots: list[Shot], root: Path, allow_outside: bool) -> list[str]:
    """Every row that writes where it must not, or sets a caller-only option; one line per problem."""
    problems: list[str] = []
    written = [(s, col, path) for s in shots for col, path in _written(s)]
    for s in shots:
        for k in CALLER_ONLY:
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
            if not is_url(other.input) and same_file(path, other.input):
                problems.append(f"{where} is shot {other.id!r}'s input (line {other.line})")
        for s2, col2, path2 in written[:i]:
            if s2 is s and col2 == "output" and col == "output":
                continue
            if same_file(path, path2):
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

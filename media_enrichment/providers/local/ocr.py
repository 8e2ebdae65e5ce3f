"""Reading the text in an image offline, with RapidOCR.

RapidOCR runs the PP-OCRv4 detection and recognition models bundled in the
``rapidocr-onnxruntime`` wheel on ONNX Runtime (CPU). ``TextReader`` builds the engine lazily,
once; the engine keeps per-call state on itself, so calls into it are serialised with a lock
(ONNX Runtime uses several threads per call).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
from PIL import Image

from media_enrichment.errors import FatalProviderError
from media_enrichment.providers.local.pixels import thumbnail

__all__ = ["TextReader"]


class TextReader:
    """The texts of an image, with their confidence and height. Thread-safe."""

    def __init__(self, *, min_confidence: float = 0.5, max_side: int = 1280, threads: int | None = None):
        """Set up the reader (the OCR engine itself is built on first use).

        Args:
            min_confidence: recognised texts scored below this are dropped.
            max_side: images are scaled down to this long edge before OCR (speed).
            threads: ONNX Runtime intra-op threads; ``None`` lets it choose.
        """
        self.min_confidence = min_confidence
        self.max_side = max_side
        self.threads = threads
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._call_lock = threading.Lock()

    def engine(self) -> Any:
        """The RapidOCR engine, built on the first call.

        Raises:
            FatalProviderError: RapidOCR is not installed or its models cannot be loaded.
        """
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    try:
                        from rapidocr_onnxruntime import RapidOCR
                    except ImportError as exc:  # pragma: no cover - install problem
                        raise FatalProviderError(f"the local describer needs rapidocr-onnxruntime: {exc}") from exc
                    kwargs: dict[str, Any] = {"print_verbose": False}
                    if self.threads:
                        kwargs.update(intra_op_num_threads=self.threads, inter_op_num_threads=1)
                    try:
                        self._engine = RapidOCR(**kwargs)
                    except Exception as exc:  # noqa: BLE001 - a broken model file or runtime
                        raise FatalProviderError(f"cannot load the bundled OCR models: {exc}") from exc
        return self._engine

    def read(self, rgb: Image.Image) -> list[tuple[str, float, float]]:
        """Read the text in an RGB image.

        Args:
            rgb: the image.

        Returns:
            ``(text, confidence, box_height_fraction)`` in reading order (top to bottom, left
            to right), only texts with confidence >= ``min_confidence`` and at least two
            letters or digits.
        """
        engine = self.engine()
        small = thumbnail(rgb, self.max_side)
        bgr = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])
        with self._call_lock:
            result, _ = engine(bgr)
        texts: list[tuple[str, float, float]] = []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            # Lone characters are mostly shapes misread as text (two stripes read as "二").
            if float(score) < self.min_confidence or sum(ch.isalnum() for ch in text) < 2:
                continue
            ys = [point[1] for point in box]
            texts.append((text, float(score), (max(ys) - min(ys)) / small.height))
        return texts

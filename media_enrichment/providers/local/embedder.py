"""The local embedder: a content-based image vector, computed offline and deterministically.

An image's ``features`` are projected to the vector size by a fixed Gaussian random matrix and
L2-normalised. A text query has no content to measure, so ``text_swatch`` renders the colours
it names (or implies with a few scene words) as an image whose colour block is embedded.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from media_enrichment.images import TITAN_LIMITS, ImageLimits, PreparedImage, decode_rgb
from media_enrichment.providers.base import Embedder
from media_enrichment.providers.local.features import FEATURE_DIM, colour_features, feature_vector, image_features

__all__ = ["LOCAL_EMBEDDING_DIMS", "LocalEmbedder", "text_swatch"]

LOCAL_EMBEDDING_DIMS = (256, 384, 1024)

# Colour words a text query may use, and what they look like.
_COLOUR_WORDS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 40), "crimson": (190, 20, 50), "scarlet": (230, 35, 25), "maroon": (120, 20, 30),
    "orange": (245, 130, 30), "amber": (250, 170, 20), "yellow": (250, 215, 40), "gold": (230, 180, 40),
    "golden": (230, 180, 40), "green": (50, 160, 60), "lime": (150, 220, 50), "olive": (110, 120, 40),
    "teal": (30, 150, 150), "turquoise": (50, 200, 190), "cyan": (40, 200, 220), "aqua": (40, 200, 210),
    "blue": (40, 90, 210), "navy": (20, 35, 100), "azure": (60, 140, 240), "purple": (120, 50, 170),
    "violet": (140, 70, 200), "lavender": (180, 150, 220), "magenta": (220, 40, 160), "pink": (245, 130, 170),
    "brown": (120, 75, 40), "beige": (225, 205, 170), "tan": (210, 180, 140), "black": (15, 15, 15),
    "grey": (128, 128, 128), "gray": (128, 128, 128), "silver": (190, 190, 195), "white": (250, 250, 250),
}
# Words whose usual colours are well known; they count a little less than colour words.
_SCENE_WORDS: dict[str, tuple[str, ...]] = {
    "sunset": ("orange", "red", "purple"), "sunrise": ("orange", "yellow", "pink"), "dusk": ("purple", "orange"),
    "sky": ("azure",), "sea": ("blue",), "ocean": ("blue",), "lake": ("blue",), "water": ("blue",),
    "forest": ("green",), "grass": ("green",), "meadow": ("green",), "hills": ("green",), "trees": ("green",),
    "snow": ("white",), "night": ("black", "navy"), "fire": ("orange", "red"), "flame": ("orange", "red"),
    "sand": ("beige",), "desert": ("beige", "tan"), "beach": ("beige", "azure"), "city": ("grey",),
    "concrete": ("grey",), "sun": ("yellow",), "lemon": ("yellow",), "leaf": ("green",), "leaves": ("green",),
}
_DARK_WORDS = {"dark", "dim", "deep", "night", "shadowy", "gloomy"}
_LIGHT_WORDS = {"light", "bright", "pale", "pastel", "pastels", "soft"}


def text_swatch(text: str, size: int = 96) -> Image.Image:
    """Render the colours a text names as an image: one band per colour, in proportion.

    Colour words count 1, words of scenes with well-known colours ("sunset", "forest", "sky")
    count 0.6 shared among their colours; "dark"/"night" darken and "light"/"pale" lighten
    every colour. A text naming no colour gives a mid-grey swatch (or dark/light grey when
    only brightness words are present).

    Args:
        text: the query.
        size: side of the square swatch.

    Returns:
        An RGB image.
    """
    words = re.findall(r"[a-z]+", text.lower())
    weights: dict[tuple[int, int, int], float] = {}
    for word in words:
        if word in _COLOUR_WORDS:
            weights[_COLOUR_WORDS[word]] = weights.get(_COLOUR_WORDS[word], 0.0) + 1.0
        elif word.rstrip("s") in _COLOUR_WORDS:  # "reds", "blues"
            colour = _COLOUR_WORDS[word.rstrip("s")]
            weights[colour] = weights.get(colour, 0.0) + 1.0
        elif word in _SCENE_WORDS:
            names = _SCENE_WORDS[word]
            for name in names:
                colour = _COLOUR_WORDS[name]
                weights[colour] = weights.get(colour, 0.0) + 0.6 / len(names)
    dark = any(word in _DARK_WORDS for word in words)
    light = any(word in _LIGHT_WORDS for word in words)
    if not weights:
        grey = 60 if dark and not light else 215 if light and not dark else 128
        weights = {(grey, grey, grey): 1.0}
    elif dark != light:
        factor = 0.45 if dark else None
        adjusted: dict[tuple[int, int, int], float] = {}
        for colour, weight in weights.items():
            if factor is not None:
                new = tuple(int(c * factor) for c in colour)
            else:
                new = tuple(int(c + (255 - c) * 0.45) for c in colour)
            adjusted[new] = adjusted.get(new, 0.0) + weight  # type: ignore[index]
        weights = adjusted
    array = np.zeros((size, size, 3), dtype=np.uint8)
    total = sum(weights.values())
    start = 0
    items = list(weights.items())
    for i, (colour, weight) in enumerate(items):
        end = size if i == len(items) - 1 else start + round(size * weight / total)
        array[:, start:end] = colour
        start = end
    return Image.fromarray(array, "RGB")


class LocalEmbedder(Embedder):
    """A content-based image vector, computed offline and deterministically.

    An image becomes four standardised feature blocks (a blurred 8x8 grayscale layout and a
    4x4 opponent-colour layout of its central 80%, a soft HSV colour histogram, and a 4x4 grid
    of gradient-orientation histograms), weighted and concatenated (``FEATURE_DIM`` values),
    then projected to ``dim`` by a fixed Gaussian random matrix seeded by ``dim`` (orthonormalised:
    for 384 and 1024 cosines between feature vectors are kept exactly, for 256 approximately)
    and L2-normalised.
    Near-duplicates (small crops, resizes, re-encodes, small colour shifts) stay close; a
    mirror image is *not* treated as a duplicate.

    Limitation: this space knows colours, brightness, layout and texture, not meaning.
    ``embed_text`` can only use the colours a query names (or implies with a few scene words
    like "sunset" or "forest"): it renders them as a swatch and embeds the swatch's colour
    histogram, leaving the layout and edge parts empty. So "red" ranks red images first, but
    "cat" or "invoice" carry no information and map to the vector of a neutral grey swatch.
    """

    image_limits: ImageLimits = TITAN_LIMITS
    dims = LOCAL_EMBEDDING_DIMS

    def __init__(self, dim: int = 1024):
        """Set up the projection for one vector size.

        Args:
            dim: vector length, one of 256, 384, 1024 (those of Titan Multimodal Embeddings).
        """
        if dim not in LOCAL_EMBEDDING_DIMS:
            raise ValueError(f"dim must be one of {LOCAL_EMBEDDING_DIMS}, got {dim}")
        self.dim = dim
        self.model_id = f"local/visual-embed-v1-{dim}"
        rng = np.random.default_rng(20_240_601 + dim)
        gaussian = rng.standard_normal((dim, FEATURE_DIM))
        if dim >= FEATURE_DIM:
            q, r = np.linalg.qr(gaussian)  # (dim, FEATURE_DIM), orthonormal columns: an isometry
            projection = q * np.sign(np.diag(r))
        else:  # orthonormal rows: cosines are kept approximately
            q, r = np.linalg.qr(gaussian.T)
            projection = (q * np.sign(np.diag(r))).T
        self._projection = np.ascontiguousarray(projection)
        self._projection.setflags(write=False)

    def _project(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        vector = self._projection @ feature_vector(blocks)
        norm = float(np.linalg.norm(vector))
        if norm < 1e-12:  # nothing measurable: a fixed, defined direction
            vector = self._projection[:, 0].copy()
            norm = float(np.linalg.norm(vector))
        return (vector / norm).astype(np.float32)

    def embed_pil(self, rgb: Image.Image) -> np.ndarray:
        """Embed a decoded RGB image (see ``embed_image``)."""
        return self._project(image_features(rgb))

    def embed_image(self, image: PreparedImage) -> np.ndarray:
        """Embed one image.

        Args:
            image: the image, already within ``image_limits``.

        Returns:
            A unit-norm float32 vector of length ``dim``.

        Raises:
            ImageError: the bytes do not decode.
        """
        return self.embed_pil(decode_rgb(image))

    def embed_text(self, text: str) -> np.ndarray:
        """Embed a text query by the colours it names (see the class docstring's limitation).

        Args:
            text: the query.

        Returns:
            A unit-norm float32 vector of length ``dim``; defined for any text, empty included.
        """
        return self._project(colour_features(text_swatch(text or "")))

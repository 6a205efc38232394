"""Mask codecs: (N, S, S) bool crops <-> (N, D) codes. Every built-in codec is registered here."""

from .base import CAPABILITIES, CODECS, CodecModule, MaskCodec, codec_class, get_codec, list_codecs, register_codec
from .bitmap import BitmapCodec
from .contour import ContourCodec, PolarCodec
from .dct import DCTCodec
from .files import load
from .learned import LearnedCodec
from .pca import PCACodec
from .svd import SVDCodec, compose_units

register_codec("bitmap", BitmapCodec)
register_codec("contour", ContourCodec)
register_codec("dct", DCTCodec)
register_codec("learned", LearnedCodec)
register_codec("pca", PCACodec)
register_codec("polar", PolarCodec)
register_codec("svd", SVDCodec)

__all__ = [
    "CAPABILITIES",
    "CODECS",
    "BitmapCodec",
    "CodecModule",
    "ContourCodec",
    "DCTCodec",
    "LearnedCodec",
    "MaskCodec",
    "PCACodec",
    "PolarCodec",
    "SVDCodec",
    "codec_class",
    "compose_units",
    "get_codec",
    "list_codecs",
    "load",
    "register_codec",
]

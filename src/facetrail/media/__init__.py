"""Safe decoding of untrusted media into plain RGB pixel arrays."""

from facetrail.media.image import DecodedImage, decode_image, encode_jpeg

__all__ = ["DecodedImage", "decode_image", "encode_jpeg"]

"""Typed media errors: each names the file, what was wrong, and what to do about it.

Every way a user's file can be unusable maps to one class, whose ``kind`` is the
value stored in the catalog's ``error_kind`` column. All of them pickle, so they
cross the process boundary of the isolated decoder intact.
"""

from __future__ import annotations


class MediaError(Exception):
    """A file that cannot be used as a video; ``kind`` is its catalog label."""

    kind = "media_error"
    hint = "check the file, or remove it from the library"
    #: Deterministic failures are not retried on the next run of the same file content.
    deterministic = True

    def __init__(self, path: str, reason: str):
        super().__init__(path, reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason} ({self.hint})"


class VideoNotFound(MediaError):
    kind = "not_found"
    hint = "the path does not exist or is not readable; check the library path"
    deterministic = False


class NotAVideo(MediaError):
    kind = "not_a_video"
    hint = "the file is corrupt, truncated or not a video container; re-export or re-download it"


class NoVideoStream(MediaError):
    kind = "no_video_stream"
    hint = "the container holds no video stream (audio only?); remove it from the library"


class TooShort(MediaError):
    kind = "too_short"
    hint = "the video has fewer frames than one clip needs; lower clip_frames or drop the file"


class DecodeFailed(MediaError):
    kind = "decode_failed"
    hint = "the decoder stopped part-way (damaged stream?); re-encode it, e.g. `ffmpeg -i in -c:v libx264 out.mp4`"


class DecodeTimeout(MediaError):
    kind = "decode_timeout"
    hint = "decoding exceeded its time limit (a known decord hang on broken containers); re-encode the file or raise decode_timeout_s"
    deterministic = False


class DecoderCrashed(MediaError):
    kind = "decoder_crashed"
    hint = "the decoder process died (e.g. a segfault on a corrupt stream); re-encode the file"


def retryable_kinds() -> frozenset[str]:
    """Catalog ``error_kind`` values worth another try on the next run (the non-deterministic ones)."""
    def subclasses(cls: type) -> list[type]:
        return [cls] + [s for sub in cls.__subclasses__() for s in subclasses(sub)]

    return frozenset(cls.kind for cls in subclasses(MediaError) if not cls.deterministic)

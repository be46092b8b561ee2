"""The media layer on real encoded files: probe, identity, decode, and every bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import EXPECTED_KIND
from speednet import errors
from speednet.clips import plan_clips
from speednet.isolation import run_isolated
from speednet.media import VideoDecoder, content_hash, probe_container, scaled_size
from tasks.decode_job import decode_to_part
from tasks.ingest_params import IngestParams


def test_probe_reads_codec_size_fps_duration(media):
    info = probe_container(media["landscape"])
    assert (info.codec, info.width, info.height, info.fps, info.rotation_deg) == ("h264", 192, 108, 25.0, 0)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert not info.has_audio


def test_content_hash_follows_bytes_not_name(media, tmp_path):
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(media["landscape"], renamed)
    assert content_hash(renamed) == content_hash(media["landscape"])
    with open(renamed, "ab") as f:
        f.write(b"\0")
    assert content_hash(renamed) != content_hash(media["landscape"])


def test_decoder_resizes_on_the_decoder_side_to_the_short_side(media):
    decoder = VideoDecoder(media["landscape"], probe_container(media["landscape"]), short_side_px=64)
    frames = decoder.decode([0, 1])
    assert frames.shape == (2, 64, 114, 3) and frames.dtype == np.uint8
    assert decoder.frame_count == 75


def test_random_access_matches_sequential_decode(media):
    decoder = VideoDecoder(media["landscape"], probe_container(media["landscape"]))
    everything = decoder.decode(np.arange(decoder.frame_count))
    picks = [70, 3, 41, 12, 12]
    np.testing.assert_array_equal(decoder.decode(picks), everything[picks])


def test_rotation_metadata_is_read_and_frames_come_out_upright(media):
    info = probe_container(media["rotated"])
    assert info.rotation_deg == 90
    upright = VideoDecoder(media["rotated"], info).decode([5])
    stored = VideoDecoder(media["rotated_source"], probe_container(media["rotated_source"])).decode([5])
    assert upright.shape == (1, 160, 96, 3)
    np.testing.assert_array_equal(upright[0], np.rot90(stored[0]))  # what ffmpeg's autorotate shows
    assert VideoDecoder(media["rotated"], info).probe("x").width == 96


def test_rotated_source_resized_to_short_side_stays_upright(media):
    info = probe_container(media["rotated"])
    small = VideoDecoder(media["rotated"], info, short_side_px=48).decode([5])
    assert small.shape == (1, 80, 48, 3)
    full = VideoDecoder(media["rotated"], info).decode([5])[0].astype(float)
    block_means = full.reshape(80, 2, 48, 2, 3).mean(axis=(1, 3))
    assert np.abs(small[0] - block_means).mean() < 12  # same picture, same orientation


def test_fast_sources_are_thinned_by_dropping_frames_never_duplicating():
    clips = plan_clips(frame_count=120, clip_frames=16, frame_step=2)
    assert clips.shape == (3, 16)
    assert np.all(np.diff(clips, axis=1) == 2)
    assert len(np.unique(clips)) == clips.size


def test_too_short_video_plans_no_clips():
    assert plan_clips(frame_count=10, clip_frames=16).shape == (0, 16)


def test_scaled_size_keeps_aspect_even_and_never_upscales():
    assert scaled_size(1920, 1080, 128) == (228, 128)
    assert scaled_size(1080, 1920, 128) == (128, 228)
    assert scaled_size(175, 99, 128) == (174, 98)


@pytest.mark.parametrize("kind", sorted(EXPECTED_KIND))
def test_bad_input_becomes_its_typed_error_in_the_isolated_decoder(media, tmp_path, kind):
    """Probe, then decode in a worker process, exactly as ingest does: a typed error, never a crash."""
    path = media[kind]
    with pytest.raises(errors.MediaError) as caught:
        info = probe_container(path)
        run_isolated(decode_to_part, str(path), "vid", info, IngestParams(clip_frames=16).as_dict(),
                     str(tmp_path / "part.parquet"), path=str(path), timeout_s=60)
    assert caught.value.kind == EXPECTED_KIND[kind]
    assert str(path) in str(caught.value)
    assert not (tmp_path / "part.parquet").exists()


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(errors.VideoNotFound, match="no such file"):
        probe_container(tmp_path / "nope.mp4")
    with pytest.raises(errors.VideoNotFound):
        content_hash(tmp_path / "nope.mp4")


def test_a_hung_decoder_is_killed_and_reported_as_timeout():
    import _isolated_jobs

    with pytest.raises(errors.DecodeTimeout, match="hang.mp4"):
        run_isolated(_isolated_jobs.sleep_forever, path="hang.mp4", timeout_s=2)
    assert run_isolated(_isolated_jobs.add, 2, 3, path="-", timeout_s=60) == 5  # the pool recovers


def test_a_crashing_decoder_is_reported_not_fatal():
    import _isolated_jobs

    with pytest.raises(errors.DecoderCrashed, match="crash.mp4"):
        run_isolated(_isolated_jobs.segfault, path="crash.mp4", timeout_s=60)
    assert run_isolated(_isolated_jobs.add, 1, 1, path="-", timeout_s=60) == 2


def test_a_script_without_a_main_guard_fails_fast_with_what_to_do(tmp_path):
    import subprocess
    import sys

    # Spawned workers re-import the main script, so each worker re-runs its unguarded call.
    script = tmp_path / "unguarded.py"
    script.write_text("import os\nfrom speednet.isolation import run_isolated\n"
                      "print(run_isolated(os.getpid, path='-', timeout_s=60))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "while importing your script's main module" in done.stderr  # said by each worker
    assert "the decode worker pool broke" in done.stderr  # and by the caller, instead of hanging
    assert 'if __name__ == "__main__":' in done.stderr


def test_media_errors_survive_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(errors.TooShort("/x.mp4", "3 frames")))
    assert isinstance(error, errors.TooShort) and error.path == "/x.mp4" and "3 frames" in str(error)


def test_batched_probe_gives_each_file_the_same_answer_as_probing_it_alone(media, tmp_path):
    from speednet.media import probe_containers

    files = [media[k] for k in ("landscape", "text", "rotated", "audio_only", "zero_bytes", "still_image", "fast")]
    files.append(tmp_path / "missing.mp4")
    batched = probe_containers(files)
    assert len(batched) == len(files)
    for path, result in zip(files, batched):
        try:
            alone = probe_container(path)
        except errors.MediaError as e:
            alone = e
        assert type(result) is type(alone), path
        assert (result.kind, result.reason) == (alone.kind, alone.reason) if isinstance(alone, errors.MediaError) else result == alone


def test_only_transient_error_kinds_are_retried_on_the_next_run():
    assert errors.retryable_kinds() == {"not_found", "decode_timeout"}

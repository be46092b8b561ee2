-- speednet catalog schema. Created idempotently on every connection; bump
-- schema_version when a change needs a migration (storage/catalog.py applies them).

CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

-- One row per distinct video content (video_id = BLAKE2b-128 of the file's bytes).
CREATE TABLE IF NOT EXISTS videos (
    video_id        VARCHAR PRIMARY KEY,
    path            VARCHAR NOT NULL,      -- where it was last seen
    size_bytes      BIGINT,
    mtime_ns        BIGINT,                -- with path and size: lets a re-run skip re-hashing unchanged files
    codec           VARCHAR,
    width           INTEGER,               -- upright, source resolution
    height          INTEGER,
    fps             DOUBLE,
    frame_count     INTEGER,
    duration_s      DOUBLE,
    rotation_deg    INTEGER,
    has_audio       BOOLEAN,
    status          VARCHAR NOT NULL CHECK (status IN ('ingested', 'failed')),
    error_kind      VARCHAR,               -- not_found, not_a_video, no_video_stream, too_short, decode_failed, ...
    error           VARCHAR,               -- what was wrong and what to do
    ingest_params   VARCHAR,               -- canonical JSON of the ingest parameters
    params_hash     VARCHAR,               -- hash of ingest_params: a change re-ingests
    short_side_px   INTEGER,
    clip_frames     INTEGER,
    clip_fps        DOUBLE,                -- rate of stored frames (source fps / frame step)
    clip_count      INTEGER,
    shard_path      VARCHAR,               -- the shard holding this video's clips
    ingested_at     TIMESTAMP NOT NULL
);

-- Every shard file the catalog vouches for; files in the shard folder not listed here are debris.
CREATE TABLE IF NOT EXISTS shards (
    shard_path      VARCHAR PRIMARY KEY,
    clip_count      INTEGER NOT NULL,
    video_count     INTEGER NOT NULL,
    size_bytes      BIGINT NOT NULL,
    created_at      TIMESTAMP NOT NULL
);

-- Which files failed and why, newest first.
CREATE OR REPLACE VIEW ingest_failures AS
    SELECT path, error_kind, error, ingested_at
    FROM videos WHERE status = 'failed' ORDER BY ingested_at DESC;

-- Clips available for training/scoring: one row per ingested video.
CREATE OR REPLACE VIEW ingested_videos AS
    SELECT video_id, path, fps, clip_fps, frame_count, duration_s, width, height,
           short_side_px, clip_frames, clip_count, shard_path
    FROM videos WHERE status = 'ingested';

-- Registered models: one row per checkpoint (model_id = BLAKE2b-128 of the checkpoint file).
CREATE TABLE IF NOT EXISTS models (
    model_id        VARCHAR PRIMARY KEY,
    checkpoint_path VARCHAR NOT NULL,
    preset          VARCHAR NOT NULL,
    config          VARCHAR NOT NULL,      -- JSON: model config and training config
    data_snapshot   VARCHAR NOT NULL,      -- hash of the training videos and their clip parameters
    train_videos    INTEGER,
    val_videos      INTEGER,
    metrics         VARCHAR NOT NULL,      -- JSON: held-out accuracies (SpeedNet, flow baseline; synthetic, real)
    created_at      TIMESTAMP NOT NULL
);

CREATE OR REPLACE VIEW latest_model AS
    SELECT * FROM models ORDER BY created_at DESC LIMIT 1;

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
    clip_fps        DOUBLE,                -- rate of stored frames: the model's time base (speednet/timebase.py)
    clip_count      INTEGER,
    shard_path      VARCHAR,               -- the shard holding this video's clips
    ingested_at     TIMESTAMP NOT NULL,
    missing_since   TIMESTAMP              -- set when an ingest of its library found the file gone or holding
                                           -- other bytes; NULL while present (clears if the bytes come back)
);
-- Catalogs made before missing_since existed get the column here (a no-op otherwise).
ALTER TABLE videos ADD COLUMN IF NOT EXISTS missing_since TIMESTAMP;

-- Every shard file the catalog vouches for; files in the shard folder not listed here are debris.
CREATE TABLE IF NOT EXISTS shards (
    shard_path      VARCHAR PRIMARY KEY,
    clip_count      INTEGER NOT NULL,
    video_count     INTEGER NOT NULL,
    size_bytes      BIGINT NOT NULL,
    created_at      TIMESTAMP NOT NULL
);

-- Which files in the library failed and why, newest first.
CREATE OR REPLACE VIEW ingest_failures AS
    SELECT path, error_kind, error, ingested_at
    FROM videos WHERE status = 'failed' AND missing_since IS NULL ORDER BY ingested_at DESC;

-- Clips available for training/scoring: one row per ingested video still in its library.
CREATE OR REPLACE VIEW ingested_videos AS
    SELECT video_id, path, fps, clip_fps, frame_count, duration_s, width, height,
           short_side_px, clip_frames, clip_count, shard_path
    FROM videos WHERE status = 'ingested' AND missing_since IS NULL;

-- Catalogued videos whose file was deleted or overwritten since they were ingested.
CREATE OR REPLACE VIEW missing_videos AS
    SELECT video_id, path, status, missing_since, ingested_at
    FROM videos WHERE missing_since IS NOT NULL ORDER BY missing_since DESC, path;

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

-- ---------------------------------------------------------------- speediness scores
-- P(natural) of every source frame at every speed X^i, per (video, model). No key or
-- index (HAZARDS.md): a video's rows are replaced by delete + insert in one transaction.
-- Columnar and dictionary-compressed: ~2-3 bytes per row, so 100M rows stay queryable.
CREATE TABLE IF NOT EXISTS frame_scores (
    video_id        VARCHAR NOT NULL,
    model_id        VARCHAR NOT NULL,
    frame           INTEGER NOT NULL,      -- source frame index
    t_seconds       DOUBLE NOT NULL,       -- frame / fps
    speed           REAL NOT NULL,         -- X^i
    p_natural       REAL NOT NULL          -- P(natural) of the version at this speed around this frame
);

-- One row per (video, model) scored or failed: V(t) summary, or the reason it failed.
CREATE TABLE IF NOT EXISTS video_speediness (
    video_id            VARCHAR NOT NULL,
    model_id            VARCHAR NOT NULL,
    path                VARCHAR,
    status              VARCHAR NOT NULL CHECK (status IN ('scored', 'failed')),
    error_kind          VARCHAR,
    error               VARCHAR,
    score_params        VARCHAR,           -- canonical JSON of the scoring parameters
    rho                 DOUBLE,            -- threshold ρ used for V(t) and segments
    fps                 DOUBLE,
    frames              INTEGER,
    duration_s          DOUBLE,
    mean_speediness     DOUBLE,            -- mean of V(t) (0 where even 1x looks unnatural)
    median_speediness   DOUBLE,
    p10_speediness      DOUBLE,
    p90_speediness      DOUBLE,
    max_speediness      DOUBLE,
    frac_slow_motion    DOUBLE,            -- share of frames with V ≥ 1.9 (natural at ~2x)
    frac_sped_up        DOUBLE,            -- share of frames with V < 1
    windows_run         INTEGER,
    windows_skipped     INTEGER,           -- budget mode: windows answered without the network
    seconds             DOUBLE,            -- wall time spent scoring
    plot_path           VARCHAR,
    scored_at           TIMESTAMP NOT NULL,
    PRIMARY KEY (video_id, model_id)
);

-- Runs of one kind in V(t): slow_motion = natural at ~2x (V ≥ 1.9), sped_up = unnatural even at 1x.
CREATE TABLE IF NOT EXISTS segments (
    video_id        VARCHAR NOT NULL,
    model_id        VARCHAR NOT NULL,
    start_s         DOUBLE NOT NULL,
    end_s           DOUBLE NOT NULL,
    kind            VARCHAR NOT NULL CHECK (kind IN ('slow_motion', 'natural', 'sped_up')),
    mean_speediness DOUBLE,
    mean_p_natural  DOUBLE                 -- mean P(natural) at 1x over the segment
);

-- V(t) per frame, derived from frame_scores with each video's ρ: the largest speed up to which
-- every speed is judged natural (speednet.scoring.speediness), 0 where 1x is not.
CREATE OR REPLACE VIEW frame_speediness AS
    SELECT video_id, model_id, frame, any_value(t_seconds) AS t_seconds,
           coalesce(max(speed) FILTER (WHERE speed < first_unnatural), 0) AS speediness
    FROM (SELECT f.video_id, f.model_id, f.frame, f.t_seconds, f.speed,
                 coalesce(min(f.speed) FILTER (WHERE f.p_natural <= v.rho)
                          OVER (PARTITION BY f.video_id, f.model_id, f.frame), 'infinity'::DOUBLE) AS first_unnatural
          FROM frame_scores f JOIN video_speediness v USING (video_id, model_id))
    GROUP BY video_id, model_id, frame;

-- Slow-motion stretches with their file, longest first (add `WHERE duration_s > 2`).
CREATE OR REPLACE VIEW slow_motion_segments AS
    SELECT s.video_id, s.model_id, v.path, s.start_s, s.end_s, s.end_s - s.start_s AS duration_s,
           s.mean_speediness
    FROM segments s JOIN video_speediness v USING (video_id, model_id)
    WHERE s.kind = 'slow_motion' AND s.video_id NOT IN (SELECT video_id FROM missing_videos)
    ORDER BY duration_s DESC;

-- Videos that can be sped up most while still looking natural, by the latest model.
CREATE OR REPLACE VIEW speedupable_videos AS
    SELECT v.video_id, v.path, v.duration_s, v.mean_speediness, v.median_speediness, v.frac_slow_motion,
           v.duration_s / greatest(v.mean_speediness, 1.0) AS watch_time_s, v.model_id
    FROM video_speediness v
    WHERE v.status = 'scored' AND v.model_id = (SELECT model_id FROM latest_model)
      AND v.video_id NOT IN (SELECT video_id FROM missing_videos)
    ORDER BY v.mean_speediness DESC;

-- Each model's view of the library, side by side.
CREATE OR REPLACE VIEW model_comparison AS
    SELECT v.model_id, m.created_at AS model_created_at, count(*) AS videos,
           avg(v.mean_speediness) AS mean_speediness, avg(v.frac_slow_motion) AS frac_slow_motion,
           avg(v.frac_sped_up) AS frac_sped_up, max(v.scored_at) AS last_scored_at
    FROM video_speediness v LEFT JOIN models m USING (model_id)
    WHERE v.status = 'scored'
    GROUP BY v.model_id, m.created_at
    ORDER BY model_created_at DESC NULLS LAST;

CREATE OR REPLACE VIEW score_failures AS
    SELECT video_id, model_id, path, error_kind, error, scored_at
    FROM video_speediness WHERE status = 'failed' ORDER BY scored_at DESC;

-- ---------------------------------------------------------------- embeddings (embed-library)
-- One row per embedded window; `vector_id` is its id in the model's FAISS index.
CREATE TABLE IF NOT EXISTS embeddings (
    vector_id       BIGINT NOT NULL,
    model_id        VARCHAR NOT NULL,
    video_id        VARCHAR NOT NULL,
    start_frame     INTEGER NOT NULL,
    start_s         DOUBLE NOT NULL,
    end_s           DOUBLE NOT NULL,
    PRIMARY KEY (model_id, vector_id)
);

-- Per (video, model): embedded or failed, so a re-run adds only new videos.
CREATE TABLE IF NOT EXISTS embedded_videos (
    video_id        VARCHAR NOT NULL,
    model_id        VARCHAR NOT NULL,
    path            VARCHAR,
    status          VARCHAR NOT NULL CHECK (status IN ('embedded', 'failed')),
    error_kind      VARCHAR,
    error           VARCHAR,
    windows         INTEGER,
    embed_params    VARCHAR,
    embedded_at     TIMESTAMP NOT NULL,
    PRIMARY KEY (video_id, model_id)
);

-- ---------------------------------------------------------------- renders (render-speedups)
CREATE TABLE IF NOT EXISTS renders (
    video_id            VARCHAR NOT NULL,
    model_id            VARCHAR NOT NULL,
    rate                DOUBLE NOT NULL,     -- requested overall speedup R_o
    params              VARCHAR NOT NULL,    -- canonical JSON: rate, alpha, beta, fps, audio, ...
    params_hash         VARCHAR NOT NULL,
    output_path         VARCHAR,
    output_duration_s   DOUBLE,
    source_duration_s   DOUBLE,
    status              VARCHAR NOT NULL CHECK (status IN ('rendered', 'failed')),
    error               VARCHAR,
    created_at          TIMESTAMP NOT NULL,
    PRIMARY KEY (video_id, model_id, params_hash)
);

-- Spatial speediness maps (speednet explain, score-library --maps): where in the frame one
-- window of a video looks sped up. The files hold the per-cell P(sped up) over the frames.
CREATE TABLE IF NOT EXISTS speediness_maps (
    video_id            VARCHAR NOT NULL,
    model_id            VARCHAR NOT NULL,
    at_s                DOUBLE NOT NULL,     -- the window's start in the video
    speed               DOUBLE NOT NULL,     -- the window is played at this speed (1: as recorded)
    input_size          INTEGER NOT NULL,    -- short side fed to the model (the map's resolution)
    p_sped_up           DOUBLE NOT NULL,     -- the model's answer for the whole window
    grid_rows           INTEGER NOT NULL,
    grid_cols           INTEGER NOT NULL,
    hottest_row         INTEGER NOT NULL,    -- the cell most sure it is sped up (mean over the window's time)
    hottest_col         INTEGER NOT NULL,
    png_path            VARCHAR NOT NULL,    -- frames above, heat over them below (a path or URI)
    mp4_path            VARCHAR NOT NULL,    -- the window with the heat laid over it
    created_at          TIMESTAMP NOT NULL,
    PRIMARY KEY (video_id, model_id, at_s, speed, input_size)
);

-- transfer-eval: what a model's features know about a labelled folder (one subfolder per
-- class), against the same network at random init. Re-running the same evaluation
-- replaces its rows.
CREATE TABLE IF NOT EXISTS transfer_results (
    run_id              VARCHAR NOT NULL,    -- hash of the folder, its videos, the model and the settings
    library             VARCHAR NOT NULL,    -- the labelled folder
    model_id            VARCHAR NOT NULL,    -- the pre-trained model compared
    init                VARCHAR NOT NULL CHECK (init IN ('pretrained', 'random')),
    method              VARCHAR NOT NULL CHECK (method IN ('linear_probe', 'fine_tune')),
    classes             INTEGER NOT NULL,
    train_videos        INTEGER NOT NULL,
    test_videos         INTEGER NOT NULL,
    test_clips          INTEGER NOT NULL,
    clip_accuracy       DOUBLE NOT NULL,
    video_accuracy      DOUBLE NOT NULL,     -- a video's clips vote by their mean logits
    params              VARCHAR NOT NULL,    -- canonical JSON of the settings
    created_at          TIMESTAMP NOT NULL,
    PRIMARY KEY (run_id, init, method)
);

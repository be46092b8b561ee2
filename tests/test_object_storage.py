"""A data root on an S3-compatible server (moto's, started here): shards, checkpoints, staged parts, vectors, renders.

The catalog and Prefect's state stay in the local data folder; everything bulky goes to
``SPEEDNET_DATA_ROOT=s3://…``. The pipeline's rows must equal a run with a local root.
"""

from __future__ import annotations

import secrets

import numpy as np
import pyarrow as pa
import pytest
from moto import server as moto_server

from _catalog import rows
from storage import objects

BUCKET = "speednet-test"
SMALL = dict(short_side_px=64, clip_frames=16)
LEVELS = 4


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 server on a free local port with one bucket, for the whole module."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import pyarrow.fs as pafs

    pafs.S3FileSystem(endpoint_override=endpoint, access_key="test", secret_key="test", region="us-east-1",
                      allow_bucket_creation=True).create_dir(BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_root(s3_endpoint, monkeypatch) -> str:
    """A fresh prefix in the bucket, with the AWS settings a user would export."""
    for key, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    return f"s3://{BUCKET}/{secrets.token_hex(4)}"


def test_objects_read_write_list_and_delete_alike_on_s3_and_on_disk(s3_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEEDNET_CACHE", str(tmp_path / "cache"))
    table = pa.table({"x": [1, 2, 3]}).replace_schema_metadata({b"k": b"v"})
    for root in (s3_root, str(tmp_path / "local")):
        part = objects.join(root, "parts", "a.parquet")
        assert not objects.exists(part) and objects.list_files(objects.join(root, "parts")) == []
        objects.write_parquet(part, table)
        assert objects.exists(part) and objects.read_table(part).column("x").to_pylist() == [1, 2, 3]
        assert objects.read_schema(part).metadata[b"k"] == b"v"
        assert objects.list_files(objects.join(root, "parts"), ".parquet") == [part]
        assert objects.parquet_file(part).metadata.num_rows == 3

        with objects.staging_file(objects.join(root, "files", "b.bin")) as tmp:
            tmp.write_bytes(b"first")
        copy = objects.local_copy(objects.join(root, "files", "b.bin"))
        assert copy.read_bytes() == b"first"
        objects.write_bytes(objects.join(root, "files", "b.bin"), b"second!")
        assert objects.local_copy(objects.join(root, "files", "b.bin")).read_bytes() == b"second!", "a replaced object is fetched again"
        local = tmp_path / "to-publish.bin"
        local.write_bytes(b"moved")
        objects.publish(local, objects.join(root, "files", "c.bin"))
        assert not local.exists() and objects.read_bytes(objects.join(root, "files", "c.bin")) == b"moved"

        with pytest.raises(RuntimeError), objects.staging_file(objects.join(root, "files", "d.bin")) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
        assert not objects.exists(objects.join(root, "files", "d.bin")), "a failed write leaves nothing"

        objects.delete(part)
        objects.delete(part)  # already gone: no error
        with pytest.raises(FileNotFoundError):
            objects.read_table(part)
        objects.delete_tree(objects.join(root, "files"))
        assert objects.list_files(objects.join(root, "files")) == []


def test_ingest_score_embed_and_render_on_an_s3_root_give_the_rows_of_a_local_root(
        s3_root, library, tmp_path, monkeypatch, pan_model):
    from flows.embed import embed_library
    from flows.ingest import ingest_library
    from flows.render import render_speedups
    from flows.score import score_library
    from speednet.model import save_checkpoint
    from storage.clip_dataset import ClipSource, read_unit
    from tasks.train import DataSplit, register_model
    from tasks.trainer import TrainConfig

    checkpoint = tmp_path / "pan.pt"
    save_checkpoint(checkpoint, pan_model)
    monkeypatch.setenv("SPEEDNET_CACHE", str(tmp_path / "cache"))
    homes = {"s3": tmp_path / "on-s3", "local": tmp_path / "on-disk"}
    for kind, home in homes.items():
        monkeypatch.setenv("SPEEDNET_HOME", str(home))
        if kind == "s3":
            monkeypatch.setenv("SPEEDNET_DATA_ROOT", s3_root)
        else:
            monkeypatch.delenv("SPEEDNET_DATA_ROOT", raising=False)
        assert ingest_library(library=str(library), **SMALL)["ingested"] == 3
        model_id = register_model.fn(str(checkpoint), TrainConfig(), DataSplit((), (), "test"), {},
                                     str(home / "catalog.duckdb"), objects.join(
                                         s3_root if kind == "s3" else str(home), "models"))
        assert score_library(levels=LEVELS, plots=True)["scored"] == 3
        assert embed_library()["embedded"] == 3
        rendered = render_speedups(rate=1.5, plots=True)
        assert rendered["rendered"] == 3, rendered

    s3_home = homes["s3"]
    # every bulky output is in the bucket, and none in the local data folder
    shard_paths = [p for (p,) in rows(s3_home, "SELECT shard_path FROM shards")]
    assert shard_paths and all(p.startswith(s3_root + "/shards/") and objects.exists(p) for p in shard_paths)
    (checkpoint_path,) = rows(s3_home, "SELECT checkpoint_path FROM models")[0]
    assert checkpoint_path == f"{s3_root}/models/{model_id}.pt" and objects.exists(checkpoint_path)
    assert len(objects.list_files(f"{s3_root}/plots/speediness", ".png")) == 3
    assert objects.list_files(f"{s3_root}/staging/scores") == [], "every staged part is committed and removed"
    assert len(objects.list_files(f"{s3_root}/index/{model_id}/vectors", ".parquet")) == 3
    assert objects.exists(f"{s3_root}/index/{model_id}/index.faiss")
    outputs = [p for (p,) in rows(s3_home, "SELECT output_path FROM renders WHERE status = 'rendered'")]
    assert len(outputs) == 3 and all(p.startswith(f"{s3_root}/renders/") and objects.exists(p) for p in outputs)
    assert len(objects.list_files(f"{s3_root}/renders", ".png")) == 3
    local_files = {p.relative_to(s3_home).parts[0] for p in s3_home.rglob("*") if p.is_file()}
    assert not local_files & {"models", "index", "plots", "renders", "staging"}, local_files
    assert not list((s3_home / "shards").glob("*.parquet"))

    # the same rows as the local root's run
    for query in ("SELECT video_id, speed, frame, round(p_natural, 4) FROM frame_scores ORDER BY ALL",
                  "SELECT video_id, start_s, end_s, kind FROM segments ORDER BY ALL",
                  "SELECT vector_id, video_id, start_frame FROM embeddings ORDER BY ALL",
                  "SELECT video_id, clip_count FROM ingested_videos ORDER BY ALL",
                  "SELECT video_id, output_duration_s FROM renders ORDER BY ALL"):
        assert rows(s3_home, query) == rows(homes["local"], query), query

    # training reads its clips straight from the bucket
    (video_id, shard) = rows(s3_home, "SELECT video_id, shard_path FROM ingested_videos ORDER BY video_id LIMIT 1")[0]
    (local_shard,) = rows(homes["local"], "SELECT shard_path FROM ingested_videos WHERE video_id = ?", [video_id])[0]
    def clips_of(shard: str) -> list[np.ndarray]:  # as a training loader reads them: the units, then their row groups
        wanted = frozenset([video_id])
        return [clip for unit in ClipSource({shard: wanted}).units() for clip in read_unit(*unit, wanted)]

    from_s3, from_disk = clips_of(shard), clips_of(local_shard)
    assert len(from_s3) == len(from_disk) > 0 and all(np.array_equal(a, b) for a, b in zip(from_s3, from_disk))

    # and search fetches the index from it
    from tasks.search import search

    monkeypatch.setenv("SPEEDNET_DATA_ROOT", s3_root)
    hits = search(video=str(library / "a.mp4"), at_s=0.5, k=3, data_home=s3_home)
    assert len(hits) == 3

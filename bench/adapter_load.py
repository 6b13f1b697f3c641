"""An adapter's first request: served from S3 (download + verify + load) vs from the local adapter store.

    .venv/bin/python bench/adapter_load.py [--adapters 8] [--rank 16]

Starts, side by side from this process, an S3 server (SeaweedFS's `weed mini`, on loopback) and two
`ftserve serve` processes with their vLLM engines: one with the local adapter store (the default:
adapters in its data dir), one with `--storage-url s3://...` (adapters in the bucket, a local
content-addressed cache). It publishes the same N LoRA adapters of the tiny model (peft's own
initialisation, distinct seeds) into each store, then, interleaving the two servers, times for each
adapter the first chat request (max_tokens=1: a cold adapter, i.e. resolve + verify + vLLM load,
plus for S3 the download) and the next one (warm). Writes bench/results/adapter_load.json with the
medians and the ratios S3 / local.

The reference is the local store at its best: the adapter already on local disk, verified by its
sha256 and loaded by vLLM on first use, exactly as S3's cold path ends.

Adapters in and out, on the same servers:
- import -> first token: each adapter as a .tar.gz uploaded (purpose `adapter`), imported with
  `POST /v1/models` (every check: archive, config, each tensor's shape), then its first chat request;
  against the reference of an adapter published straight into the store (a finished job's path) and its
  first request (the cold median above).
- download: `GET /v1/models/{model}/content` of a 256 MB adapter, from each server (local disk; S3),
  against reading the same files straight from that store in this process (the store's own reader:
  a file read, or boto3's GET in 1 MiB chunks): throughput and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.paths import REPO

RESULTS = REPO / "bench" / "results" / "adapter_load.json"


def _make_adapters(model: Path, out: Path, n: int, rank: int) -> list[Path]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i in range(n):
        torch.manual_seed(i)
        base = AutoModelForCausalLM.from_pretrained(model)
        peft = get_peft_model(base, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear",
                                               init_lora_weights="gaussian"))
        peft.save_pretrained(out / f"a{i}")
        config = json.loads((out / f"a{i}" / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = "ftserve-tiny"
        (out / f"a{i}" / "adapter_config.json").write_text(json.dumps(config))
        paths.append(out / f"a{i}")
    return paths


def _first_token(http: httpx.Client, model: str) -> float:
    started = time.perf_counter()
    response = http.post("/v1/chat/completions", json={
        "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "temperature": 0})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed


def _tar_gz(folder: Path) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname="adapter")
    return buf.getvalue()


def _import_first_token(http: httpx.Client, name: str, archive: bytes) -> tuple[float, float]:
    """(upload + import seconds, then the first request's), for one adapter archive."""
    started = time.perf_counter()
    file = http.post("/v1/files", data={"purpose": "adapter"}, files={"file": ("a.tar.gz", archive)})
    file.raise_for_status()
    http.post("/v1/models", json={"model": name, "file_id": file.json()["id"]}).raise_for_status()
    imported = time.perf_counter() - started
    return imported, _first_token(http, name)


def _big_adapter(source: Path, out: Path, size: int) -> Path:
    """An adapter folder whose weights file is `size` random bytes (the store checks its sha256, not its
    content): a download the size of a large model's adapter."""
    import shutil

    shutil.copytree(source, out)
    with (out / "adapter_model.safetensors").open("wb") as f:
        for _ in range(size >> 20):
            f.write(os.urandom(1 << 20))
    return out


def _download_mb_s(http: httpx.Client, name: str, size: int) -> float:
    started, got = time.perf_counter(), 0
    with http.stream("GET", f"/v1/models/{name}/content") as r:
        r.raise_for_status()
        for chunk in r.iter_bytes(1 << 20):
            got += len(chunk)
    assert got >= size
    return got / (time.perf_counter() - started) / 1e6


def _direct_mb_s(store, name: str) -> float:
    started, got = time.perf_counter(), 0
    for file in store.files(name)[1]:
        for chunk in file.chunks():
            got += len(chunk)
    return got / (time.perf_counter() - started) / 1e6


def main() -> None:
    from adapters import AdapterCache, AdapterStore, ObjectAdapterStore, open_objects
    from tests.support.seaweedfs import SeaweedS3
    from tests.support.server import Server
    from trainer.tiny_model import build_tiny_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--adapters", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--download-mb", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_model(tmp / "ftserve-tiny")
        sources = _make_adapters(model, tmp / "src", args.adapters, args.rank)
        size = sum(p.stat().st_size for p in sources[0].rglob("*") if p.is_file())
        s3 = SeaweedS3(tmp / "s3").start()
        os.environ.update(s3.env)
        common = dict(model=model, max_lora_rank=max(16, args.rank), max_cpu_loras=args.adapters + 1,
                      max_model_len=512)
        servers = {"local": Server(tmp / "local", **common),
                   "s3": Server(tmp / "s3-replica", env=s3.env, storage_url=s3.url(), **common)}
        stores = {"local": AdapterStore(tmp / "local" / "adapters"),
                  "s3": ObjectAdapterStore(open_objects(s3.url(), tmp / "pub", tmp / "pub"),
                                           AdapterCache(tmp / "pub" / "adapters", 1 << 30))}
        names = [f"ft:ftserve-tiny:bench:load:{i:06d}" for i in range(args.adapters)]
        cold: dict[str, list[float]] = {k: [] for k in servers}
        warm: dict[str, list[float]] = {k: [] for k in servers}
        try:
            for server in servers.values():
                server.spawn()
            for server in servers.values():
                server.wait_ready(timeout=300)
            for store in stores.values():
                for name, source in zip(names, sources):
                    store.publish(name, source)
            clients = {k: httpx.Client(base_url=s.url, timeout=120) for k, s in servers.items()}
            for http in clients.values():  # warm-up: the base model's first request
                _first_token(http, "ftserve-tiny")
            for name in names:
                for key, http in clients.items():
                    cold[key].append(_first_token(http, name))
                    warm[key].append(_first_token(http, name))
            archives = [_tar_gz(source) for source in sources]
            imported: dict[str, list[tuple[float, float]]] = {k: [] for k in servers}
            for i, archive in enumerate(archives):
                for key, http in clients.items():
                    imported[key].append(_import_first_token(http, f"ft:ftserve-tiny:bench:imported-{i}", archive))
            big_size = args.download_mb << 20
            big = _big_adapter(sources[0], tmp / "big", big_size)
            download: dict[str, dict[str, list[float]]] = {k: {"api": [], "direct": []} for k in servers}
            for key, store in stores.items():
                store.publish("ft:ftserve-tiny:bench:big", big)
            for _ in range(3):
                for key, http in clients.items():
                    download[key]["direct"].append(_direct_mb_s(stores[key], "ft:ftserve-tiny:bench:big"))
                    download[key]["api"].append(_download_mb_s(http, "ft:ftserve-tiny:bench:big", big_size))
        finally:
            for server in servers.values():
                server.stop()
            s3.stop()
    med = {phase: {k: statistics.median(v) for k, v in times.items()} for phase, times in
           (("cold", cold), ("warm", warm))}
    result = {
        "what": "chat request with max_tokens=1 naming an adapter: first request (cold) and the next (warm)",
        "adapters": args.adapters, "rank": args.rank, "adapter_bytes": size,
        "median_s": {phase: {k: round(v, 4) for k, v in m.items()} for phase, m in med.items()},
        "ratio_s3_over_local": {phase: round(m["s3"] / m["local"], 3) for phase, m in med.items()},
        "reference": "the local adapter store (adapters on local disk: sha256 verified, loaded by vLLM)",
        "note": "warm S3 requests still read the adapter's manifest (one GET), so that deletes and "
                "republishes are seen by every replica at once",
        "import_to_first_token": {
            "what": "upload a .tar.gz (purpose adapter) + POST /v1/models (every check) + the first chat request",
            "archive_bytes": len(archives[0]),
            "median_s": {k: {"upload_and_import": round(statistics.median(i for i, _ in v), 4),
                             "first_request": round(statistics.median(f for _, f in v), 4),
                             "total": round(statistics.median(i + f for i, f in v), 4)}
                         for k, v in imported.items()},
            "ratio_total_over_published_cold": {
                k: round(statistics.median(i + f for i, f in v) / med["cold"][k], 2) for k, v in imported.items()},
            "reference": "an adapter published straight into the store (a finished job's path), then its first "
                         "request (median_s.cold)",
        },
        "download": {
            "what": f"GET /v1/models/{{model}}/content of a {args.download_mb} MiB adapter (tar streamed "
                    "from the store), best of 3",
            "mb_per_s": {k: {"api": round(max(v["api"]), 1), "direct": round(max(v["direct"]), 1)}
                         for k, v in download.items()},
            "ratio_api_over_direct": {k: round(max(v["api"]) / max(v["direct"]), 3) for k, v in download.items()},
            "reference": "the same files read straight from the store in the benchmark's process (the store's "
                         "own reader: a local file read; boto3 GET in 1 MiB chunks for S3)",
        },
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, S3 on loopback",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""`ftserve download MODEL`: a fine-tuned model's or checkpoint's PEFT adapter from a running server, into a
folder that `PeftModel.from_pretrained(base, folder)` loads (or vLLM, LLaMA-Factory, any PEFT-aware tool).

The server sends a tar of `adapter_config.json`, `adapter_model.safetensors` and `ftserve.json` (the model's
metadata: base model, method, job, step, and every file's sha256); each file is checked against its sha256
here before the folder is put in place. `--archive FILE` keeps the tar as it came instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import quote


def add_parser(sub) -> None:
    p = sub.add_parser("download", help="download a fine-tuned model's PEFT adapter from a server",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="the model's id (ft:... or a checkpoint's ft:...:ckpt-step-N)")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="the adapter folder to write (default: the model's name, made safe, in the current folder)")
    p.add_argument("--archive", type=Path, default=None, help="write the tar as it came to this file instead")
    p.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the server's API (default: %(default)s)")
    p.add_argument("--api-key", default=None, help="bearer key for the server (default: $FTSERVE_API_KEY)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import httpx
    from tqdm import tqdm

    key = args.api_key or os.environ.get("FTSERVE_API_KEY") or "unused"
    url = f"{args.base_url.rstrip('/')}/models/{quote(args.model, safe=':')}/content"
    target = args.archive or args.output or Path(re.sub(r"[^A-Za-z0-9._-]", "_", args.model))
    if target.exists():
        print(f"ftserve download: {target} exists; choose another with -o / --archive", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        tar_path = Path(tmp) / "model.tar"
        try:
            with httpx.stream("GET", url, headers={"Authorization": f"Bearer {key}"}, timeout=300) as r:
                if r.status_code != 200:
                    r.read()
                    try:
                        message = r.json()["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        message = r.text[:500]
                    print(f"ftserve download: {r.status_code}: {message}", file=sys.stderr)
                    return 1
                total = int(r.headers.get("content-length", 0)) or None
                with tar_path.open("wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=args.model,
                                                      disable=args.quiet, file=sys.stderr) as bar:
                    for chunk in r.iter_bytes(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except httpx.HTTPError as e:
            print(f"ftserve download: {e}", file=sys.stderr)
            return 1
        if args.archive:
            shutil.move(tar_path, target)
            print(target)
            return 0
        folder = Path(tmp) / "adapter"
        problem = unpack(tar_path, folder)
        if problem:
            print(f"ftserve download: {problem}", file=sys.stderr)
            return 1
        folder.rename(target)
    print(target)
    return 0


def unpack(tar_path: Path, folder: Path) -> str | None:
    """Extract the downloaded tar into `folder` and check every file against `ftserve.json`; a problem, or None."""
    with tarfile.open(tar_path) as tar:
        tar.extractall(folder, filter="data")
    manifest = json.loads((folder / "ftserve.json").read_text())
    for rel, info in manifest["files"].items():
        digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        if digest != info["sha256"]:
            return f"{rel} does not match its sha256 in ftserve.json: the download is damaged"
    return None

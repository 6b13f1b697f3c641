"""Vendor the schemas ftserve implements from the official OpenAI OpenAPI document.

    python tests/openai_spec/vendor.py path/to/openai-openapi/openapi.json COMMIT

writes tests/openai_spec/schemas.json: the named schemas below and every schema they reference,
normalised for a JSON-Schema (2020-12) validator, with the commit they came from. The document
mixes OpenAPI 3.0 idioms into 3.1: `nullable: true` becomes a `null` alternative, a boolean
`exclusiveMinimum` becomes the number form. The AMENDMENTS below are the only changes of meaning;
each one is a place where the document contradicts itself or the API's observed behaviour.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

ROOTS = [
    # responses
    "OpenAIFile", "ListFilesResponse", "DeleteFileResponse",
    "FineTuningJob", "ListPaginatedFineTuningJobsResponse", "ListFineTuningJobEventsResponse",
    "ListFineTuningJobCheckpointsResponse", "Model", "ListModelsResponse", "DeleteModelResponse",
    "CreateChatCompletionResponse", "CreateChatCompletionStreamResponse", "CreateCompletionResponse",
    "ErrorResponse", "Batch", "ListBatchesResponse", "Eval", "EvalList", "EvalRun", "EvalRunList",
    "EvalRunOutputItem", "EvalRunOutputItemList",
    "Project", "ProjectListResponse", "ProjectServiceAccount", "ProjectServiceAccountListResponse",
    "ProjectServiceAccountCreateResponse", "ProjectServiceAccountDeleteResponse", "FineTuningCheckpointPermission",
    "ListFineTuningCheckpointPermissionResponse", "DeleteFineTuningCheckpointPermissionResponse",
    "Response", "ResponseStreamEvent", "ResponseItemList", "RunGraderResponse", "ValidateGraderResponse",
    # requests: every field they name must have an answer in ftserve
    "CreateChatCompletionRequest", "CreateCompletionRequest", "CreateFineTuningJobRequest", "CreateFileRequest",
    "CreateBatchRequest", "CreateEvalRequest", "CreateEvalRunRequest", "CreateResponse", "RunGraderRequest",
    "ValidateGraderRequest",
]

AMENDMENTS = [
    ("FineTuningJob status gains 'paused'", "the document has /pause and /resume, but its status enum lacks "
     "the status they produce"),
    ("OpenAIFile purpose gains 'evals'", "CreateFileRequest accepts purpose 'evals'; the file object's enum "
     "lacks it"),
    ("CreateCompletionResponse choices' finish_reason may be null", "streamed pieces before the last carry "
     "null, as OpenAI's legacy API and vLLM send them (the document says both shapes are the same)"),
    ("CreateCompletionResponse token_logprobs and top_logprobs items may be null", "with echo, the first "
     "prompt token has no logprob: OpenAI's legacy API and vLLM send null there"),
    ("EvalRun error and EvalRunOutputItem sample error may be null", "the document's own examples of both "
     "objects send `\"error\": null` where nothing failed"),
    ("CreateEvalCompletionsRunDataSource and CreateEvalResponsesRunDataSource template items: oneOf becomes "
     "anyOf", "a plain {role, content} message is both an EasyInputMessage (or a {role, content} object) and "
     "an EvalItem, so no template could satisfy oneOf"),
]


def _normalise(node):
    if isinstance(node, list):
        return [_normalise(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _normalise(v) for k, v in node.items()}
    if isinstance(node.get("exclusiveMinimum"), bool):
        if node.pop("exclusiveMinimum") and "minimum" in node:
            node["exclusiveMinimum"] = node.pop("minimum")
    if isinstance(node.get("exclusiveMaximum"), bool):
        if node.pop("exclusiveMaximum") and "maximum" in node:
            node["exclusiveMaximum"] = node.pop("maximum")
    if node.pop("nullable", False):
        if "enum" in node and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        elif "type" not in node:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def _refs(node, into: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            into.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            _refs(v, into)
    elif isinstance(node, list):
        for v in node:
            _refs(v, into)


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _amend(schemas: dict) -> None:
    schemas["FineTuningJob"]["properties"]["status"]["enum"].append("paused")
    schemas["OpenAIFile"]["properties"]["purpose"]["enum"].append("evals")
    choice = schemas["CreateCompletionResponse"]["properties"]["choices"]["items"]["properties"]
    choice["finish_reason"] = _nullable(choice["finish_reason"])
    logprobs = next(s for s in choice["logprobs"]["anyOf"] if s.get("type") == "object")["properties"]
    for key in ("token_logprobs", "top_logprobs"):
        logprobs[key]["items"] = _nullable(logprobs[key]["items"])
    schemas["EvalRun"]["properties"]["error"] = _nullable(schemas["EvalRun"]["properties"]["error"])
    sample = schemas["EvalRunOutputItem"]["properties"]["sample"]["properties"]
    sample["error"] = _nullable(sample["error"])
    for source in ("CreateEvalCompletionsRunDataSource", "CreateEvalResponsesRunDataSource"):
        template = schemas[source]["properties"]["input_messages"]["oneOf"][0]
        items = template["properties"]["template"]["items"]
        items["anyOf"] = items.pop("oneOf")


def vendor(source: Path, commit: str) -> dict:
    doc = json.loads(source.read_text())
    all_schemas = doc["components"]["schemas"]
    wanted, todo = set(), list(ROOTS)
    while todo:
        name = todo.pop()
        if name in wanted:
            continue
        wanted.add(name)
        found: set[str] = set()
        _refs(all_schemas[name], found)
        todo += sorted(found - wanted)
    schemas = {name: _normalise(copy.deepcopy(all_schemas[name])) for name in sorted(wanted)}
    _amend(schemas)
    return {"source": "https://github.com/openai/openai-openapi (openapi.json)", "commit": commit,
            "openapi": doc["openapi"], "amendments": [f"{a}: {why}" for a, why in AMENDMENTS],
            "components": {"schemas": schemas}}


if __name__ == "__main__":
    out = vendor(Path(sys.argv[1]), sys.argv[2])
    target = Path(__file__).with_name("schemas.json")
    target.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    print(f"{len(out['components']['schemas'])} schemas written to {target}")

"""Runs third-party clients against a live ftserve, in their own venv (.venv/clients); prints JSON.

    .venv/clients/bin/python tests/conformance/clients_driver.py CLIENT BASE_URL MODEL [ARGS...]

CLIENT: openai2 | langchain | langchain_tools TOOLS_JSONL QUESTION | litellm | lm_eval_mc TOKENIZER TASK_DIR |
        lm_eval_chat TASK_DIR
"""

import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list at import
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUESTION = [{"role": "user", "content": "What is the secret code of Alpha?"}]


def openai2(base: str, model: str) -> dict:
    import openai

    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model=model, messages=QUESTION, temperature=0, max_tokens=32)
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=QUESTION, temperature=0, max_tokens=32, stream=True,
        stream_options={"include_usage": True}) if c.choices)
    completion = client.completions.create(model=model, prompt="Once upon", max_tokens=4, echo=True, logprobs=1)
    return {"version": openai.__version__, "chat": chat.choices[0].message.content, "streamed": streamed,
            "request_id": chat._request_id, "completion_logprobs": completion.choices[0].logprobs.token_logprobs,
            "models": [m.id for m in client.models.list()], "jobs": len(client.fine_tuning.jobs.list().data)}


def langchain(base: str, model: str) -> dict:
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Verdict(BaseModel):
        ok: bool

    llm = ChatOpenAI(base_url=base + "/v1", api_key="unused", model=model, temperature=0, max_tokens=32,
                     max_retries=0)
    question = QUESTION[0]["content"]
    structured = llm.with_structured_output(Verdict, method="json_schema").invoke("Is BLUE-51 a code?")
    return {"invoke": llm.invoke(question).content, "stream": "".join(c.content for c in llm.stream(question)),
            "structured": structured.model_dump()}


def langchain_tools(base: str, model: str, tools_file: str, question: str) -> dict:
    """`bind_tools` on a model fine-tuned to call the tools; `with_structured_output(method="function_calling")`
    (a named tool_choice) on the same model."""
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel

    class Verdict(BaseModel):
        ok: bool

    tools = json.loads(open(tools_file).readline())["tools"]
    llm = ChatOpenAI(base_url=base + "/v1", api_key="unused", model=model, temperature=0, max_tokens=64,
                     max_retries=0)
    called = llm.bind_tools(tools).invoke(question)
    streamed = None
    for chunk in llm.bind_tools(tools).stream(question):
        streamed = chunk if streamed is None else streamed + chunk
    structured = llm.with_structured_output(Verdict, method="function_calling").invoke("Is BLUE-51 a code?")
    return {"tool_calls": [{"name": c["name"], "args": c["args"]} for c in called.tool_calls],
            "streamed_tool_calls": [{"name": c["name"], "args": c["args"]} for c in streamed.tool_calls],
            "structured": structured.model_dump()}


def litellm_(base: str, model: str) -> dict:
    import litellm

    litellm.telemetry = False
    kw = dict(model="openai/" + model, api_base=base + "/v1", api_key="unused", messages=QUESTION,
              temperature=0, max_tokens=32)
    plain = litellm.completion(**kw)
    streamed = "".join(c.choices[0].delta.content or "" for c in litellm.completion(stream=True, **kw)
                       if c.choices)
    return {"completion": plain.choices[0].message.content, "stream": streamed}


def _evaluate(model_type: str, model_args: str, task: str, task_dir: str, **kw) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(model=model_type, model_args=model_args, tasks=[task],
                                      task_manager=TaskManager(include_path=task_dir), log_samples=False,
                                      **kw)
    return {k: v for k, v in results["results"][task].items() if isinstance(v, (int, float))}


def lm_eval_mc(base: str, model: str, tokenizer: str, task_dir: str) -> dict:
    args = (f"model={model},base_url={base}/v1/completions,tokenizer_backend=huggingface,tokenizer={tokenizer},"
            "num_concurrent=1,max_retries=1")
    return _evaluate("local-completions", args, "ftserve_facts_mc", task_dir)


def lm_eval_chat(base: str, model: str, task_dir: str) -> dict:
    args = f"model={model},base_url={base}/v1/chat/completions,num_concurrent=1,max_retries=1"
    return _evaluate("local-chat-completions", args, "ftserve_facts_gen", task_dir, apply_chat_template=True)


CLIENTS = {"openai2": openai2, "langchain": langchain, "langchain_tools": langchain_tools, "litellm": litellm_, "lm_eval_mc": lm_eval_mc,
           "lm_eval_chat": lm_eval_chat}

if __name__ == "__main__":
    name, *args = sys.argv[1:]
    print("RESULT " + json.dumps(CLIENTS[name](*args)))

"""Graders for reinforcement fine-tuning (fast: no engine): the multi grader's formula, the python
grader's sandbox, and `/v1/fine_tuning/alpha/graders/{run,validate}` in the app."""

import asyncio
import shutil

import pytest

from service.graders import formula
from service.graders.sandbox import Limits, PythonSandbox
from tests.support.app import app_client

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None,
                                 reason="python graders need bubblewrap (scripts/install.sh clients installs it)")
RUN = "/v1/fine_tuning/alpha/graders/run"
VALIDATE = "/v1/fine_tuning/alpha/graders/validate"
EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
         "operation": "eq"}


# ---------------------------------------------------------------- formula
def test_formula_computes_over_the_graders_scores_with_the_guides_operators():
    tree = formula.parse("0.5 * a + 0.5 * max(b, 0.2) ^ 2 - abs(-0.1)", {"a", "b"})
    assert formula.evaluate(tree, {"a": 1.0, "b": 0.0}) == pytest.approx(0.5 + 0.5 * 0.04 - 0.1)
    assert formula.evaluate(formula.parse("(a + b) / 2", {"a", "b"}), {"a": 1, "b": 0}) == 0.5


@pytest.mark.parametrize("text, fragment", [
    ("a + c", "names 'c'"), ("__import__('os')", "may call only"), ("a.real", "Attribute"),
    ("a if a else b", "IfExp"), ("[a][0]", "Subscript"), ("'x'", "only numbers"), ("a +", "not a formula"),
    ("min(a, key=b)", "plain arguments"), ("a < b", "Compare"),
])
def test_formula_refuses_anything_but_arithmetic(text, fragment):
    with pytest.raises(formula.FormulaError, match=fragment):
        formula.parse(text, {"a", "b"})


def test_formula_without_a_value_is_an_error_not_a_crash():
    with pytest.raises(formula.FormulaError):
        formula.evaluate(formula.parse("a / b", {"a", "b"}), {"a": 1, "b": 0})
    with pytest.raises(formula.FormulaError, match="above 64"):
        formula.evaluate(formula.parse("a ^ 1000", {"a"}), {"a": 9})


# ---------------------------------------------------------------- sandbox
def _grade(source: str, limits: Limits = Limits(wall_s=10, case_s=2)) -> list:
    cases = [{"sample": {"output_text": "hello"}, "item": {"n": 5}}]
    return asyncio.run(PythonSandbox(limits).run(source, cases))


@needs_bwrap
def test_python_grader_scores_with_the_standard_library_and_numpy():
    [out] = _grade("import numpy as np, json\ndef grade(sample, item):\n"
                   "    print('noise on stdout')\n    return float(np.mean([len(sample['output_text']), item['n']]))")
    assert (out.score, out.error) == (5.0, None)


@needs_bwrap
@pytest.mark.parametrize("name, body, error", [
    ("server files", "return len(open(%r).read())" % __file__, "FileNotFoundError"),
    ("the data dir", "import os; return len(os.listdir('/work'))", "FileNotFoundError"),
    ("another process's environment", "return len(open('/proc/1/environ').read())", "PermissionError"),
    ("its own environment", "import os; assert not set(os.environ) - {'PATH', 'PWD', 'LC_CTYPE', "
     "'OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS'}, os.environ; return 1 / 0", "ZeroDivisionError"),
    ("a socket", "import socket; socket.create_connection(('127.0.0.1', 8000), timeout=1); return 1",
     "ConnectionRefusedError|OSError|unreachable"),
    ("a fork bomb", "import os\n    while True: os.fork()", "BlockingIOError|Resource temporarily"),
    ("10 GB", "x = bytearray(10 * 1024 ** 3); return 1", "MemoryError"),
    ("a non-number", "return 'high'", "not a finite number"),
    ("NaN", "return float('nan')", "not a finite number"),
    ("an endless loop", "while True: pass", "longer than 2 s"),
])
def test_python_grader_escapes_score_nothing_and_say_why(name, body, error):
    [out] = _grade("def grade(sample, item):\n    " + body)
    assert out.score is None and out.error is not None
    assert __import__("re").search(error, out.error), (name, out.error)


@needs_bwrap
def test_python_grader_that_ignores_its_alarm_is_stopped_at_the_wall_clock_limit():
    source = ("import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
              "def grade(sample, item):\n    while True: pass")
    [out] = _grade(source, Limits(wall_s=3, case_s=60))
    assert out.score is None and "3 s limit" in out.error


# ---------------------------------------------------------------- endpoints
@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with app_client(tmp_path_factory.mktemp("graders")) as client:
        yield client


def test_run_scores_a_sample_with_string_check_and_text_similarity(app):
    r = app.post(RUN, json={"grader": EXACT, "model_sample": "Paris", "item": {"answer": "Paris"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reward"] == 1.0 and body["metadata"]["type"] == "string_check"
    assert not any(v is True for v in body["metadata"]["errors"].values())
    assert app.post(RUN, json={"grader": EXACT, "model_sample": "Lyon", "item": {"answer": "Paris"}}
                    ).json()["reward"] == 0.0
    similar = {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
               "reference": "{{item.answer}}", "evaluation_metric": "fuzzy_match"}
    reward = app.post(RUN, json={"grader": similar, "model_sample": "Pariss", "item": {"answer": "Paris"}}
                      ).json()["reward"]
    assert 0.5 < reward < 1.0


@needs_bwrap
def test_run_multi_grader_combines_named_sub_graders_with_its_formula(app):
    grader = {"type": "multi", "name": "both", "calculate_output": "0.25 * exact + 0.75 * short", "graders": {
        "exact": EXACT,
        "short": {"type": "python", "name": "short",
                  "source": "def grade(sample, item):\n    return 1.0 if len(sample['output_text']) <= 5 else 0.0"},
    }}
    body = app.post(RUN, json={"grader": grader, "model_sample": "Lyon", "item": {"answer": "Paris"}}).json()
    assert body["reward"] == 0.75 and body["sub_rewards"] == {"exact": 0.0, "short": 1.0}
    assert body["metadata"]["scores"] == {"exact": 0.0, "short": 1.0}


@needs_bwrap
def test_run_reports_a_failing_python_grader_as_an_error_with_reward_zero(app):
    grader = {"type": "python", "name": "p", "source": "def grade(sample, item):\n    return item['missing']"}
    r = app.post(RUN, json={"grader": grader, "model_sample": "x", "item": {}})
    assert r.status_code == 200
    errors = r.json()["metadata"]["errors"]
    assert r.json()["reward"] == 0 and errors["python_grader_runtime_error"]
    assert "KeyError" in errors["python_grader_runtime_error_details"]


def test_run_reads_json_samples_as_output_json(app):
    grader = {**EXACT, "input": "{{sample.output_json.city}}"}
    assert app.post(RUN, json={"grader": grader, "model_sample": '{"city": "Paris"}', "item": {"answer": "Paris"}}
                    ).json()["reward"] == 1.0


@pytest.mark.parametrize("grader, param, fragment", [
    ({**EXACT, "input": "{{sample.text}}"}, "grader.input", "sample.text"),
    ({**EXACT, "reference": "{{answer}}"}, "grader.reference", "answer"),
    ({"type": "python", "name": "p", "source": "def grade(sample, item) return 1"}, "grader.source", "parse"),
    ({"type": "python", "name": "p", "source": "def score(sample, item): return 1"}, "grader.source", "grade"),
    ({"type": "multi", "name": "m", "graders": {"a": EXACT}, "calculate_output": "a + b"},
     "grader.calculate_output", "'b'"),
    ({"type": "multi", "name": "m", "graders": {"a": {**EXACT, "input": "{{x}}"}}, "calculate_output": "a"},
     "grader.graders.a.input", "x"),
    ({"type": "text_similarity", "name": "t", "input": "a", "reference": "b", "evaluation_metric": "meteor"},
     "grader.text_similarity.evaluation_metric", "fuzzy_match"),
    ({"type": "score_model", "name": "s", "model": "m", "input": [{"role": "user", "content": "x"}],
      "range": [1, 0]}, "grader.range", "low < high"),
])
def test_validate_names_the_parameter_at_fault(app, grader, param, fragment):
    for path in (VALIDATE, RUN):
        body = {"grader": grader} if path == VALIDATE else {"grader": grader, "model_sample": "x"}
        r = app.post(path, json=body)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == param and fragment in error["message"], error


def test_validate_returns_the_grader(app):
    r = app.post(VALIDATE, json={"grader": EXACT})
    assert r.status_code == 200 and r.json() == {"grader": EXACT}


def test_python_graders_can_be_turned_off(tmp_path):
    grader = {"type": "python", "name": "p", "source": "def grade(sample, item):\n    return 1.0"}
    with app_client(tmp_path, python_graders=False) as client:
        r = client.post(VALIDATE, json={"grader": grader})
    assert r.status_code == 400 and "turned off" in r.json()["error"]["message"]

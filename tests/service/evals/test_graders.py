"""The graders computed in the server (fast: no engine): templates, string checks, text similarity, and
how a judge's answer becomes a result."""

import pytest

from service.evals import graders
from service.evals.protocol import LabelModelGrader, ScoreModelGrader, StringCheckGrader, TextSimilarityGrader

NS = {"item": {"answer": "Paris", "nested": {"n": 3}}, "sample": {"output_text": "The capital is Paris."}}


def test_templates_fill_from_the_item_and_sample_and_name_what_is_missing():
    assert graders.render("{{ item.answer }} / {{item.nested.n}}", NS) == "Paris / 3"
    assert graders.render("{{item.nested}}", NS) == '{"n": 3}'
    assert graders.fields("{{item.a}} and {{ sample.output_text }}") == ["item.a", "sample.output_text"]
    with pytest.raises(graders.TemplateError, match="item.missing"):
        graders.render("{{item.missing}}", NS)


@pytest.mark.parametrize("operation, reference, passed", [
    ("eq", "The capital is Paris.", True), ("eq", "Paris", False), ("ne", "Paris", True),
    ("like", "Paris", True), ("like", "paris", False), ("ilike", "paris", True),
])
def test_string_check_operations(operation, reference, passed):
    grader = StringCheckGrader(type="string_check", name="s", input="{{sample.output_text}}", reference=reference,
                               operation=operation)
    result = graders.string_check(grader, NS)
    assert (result.passed, result.score) == (passed, float(passed))


@pytest.mark.parametrize("metric", ["fuzzy_match", "bleu", "rouge_1", "rouge_2", "rouge_l"])
def test_text_similarity_is_one_for_the_same_text_and_lower_for_another(metric):
    def score(text: str) -> float:
        grader = TextSimilarityGrader(type="text_similarity", name="t", input=text,
                                      reference="the cat sat on the mat today", evaluation_metric=metric,
                                      pass_threshold=0.9)
        return graders.text_similarity(grader, NS)

    same, other = score("the cat sat on the mat today"), score("a dog ran in the park")
    assert same.score == pytest.approx(1.0) and same.passed
    assert other.score < 0.7 and not other.passed


def test_text_similarity_counts_chinese_characters_as_words():
    assert graders.similarity("rouge_1", "我爱北京", "我爱上海") == pytest.approx(0.5)
    assert graders.similarity("rouge_1", "我爱北京", "我爱北京") == pytest.approx(1.0)


def test_label_judge_answers_are_checked_against_the_labels():
    grader = LabelModelGrader(type="label_model", name="l", model="m", input=[{"role": "user", "content": "x"}],
                              labels=["good", "bad"], passing_labels=["good"])
    request = graders.judge_request(grader, NS)
    assert request["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == ["good", "bad"]
    assert graders.judge_result(grader, '{"label": "good"}').passed
    assert not graders.judge_result(grader, '{"label": "bad"}').passed
    with pytest.raises(ValueError, match="not one of the labels"):
        graders.judge_result(grader, '{"label": "meh"}')


def test_score_judge_answers_are_clamped_to_the_range_and_pass_at_the_threshold():
    grader = ScoreModelGrader(type="score_model", name="s", model="m", input=[{"role": "user", "content": "x"}],
                              range=[0, 10], pass_threshold=7)
    scale = graders.judge_request(grader, NS)["response_format"]["json_schema"]["schema"]["properties"]["result"]
    assert scale["enum"][0] == 0 and scale["enum"][-1] == 10 and len(scale["enum"]) == 11
    assert graders.judge_result(grader, '{"result": 12}').score == 10
    assert graders.judge_result(grader, '{"result": 7}').passed
    assert not graders.judge_result(grader, '{"result": 6.9}').passed

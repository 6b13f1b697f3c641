"""What a trainer's event says to a person: the messages of a job's events (the data stays the event's)."""

from __future__ import annotations

from trainer.contract import Evaluation, Metrics


def metrics_message(event: Metrics) -> str:
    data = event.values
    message = f"Step {event.step}/{event.total_steps}: training loss={event.train_loss:.4f}"
    if "train_reward_accuracy" in data:
        message += f", reward accuracy={data['train_reward_accuracy']:.3f}"
    if "valid_loss" in data:
        message += f", validation loss={data['valid_loss']:.4f}"
        message += (f", token accuracy={data['valid_mean_token_accuracy']:.3f}"
                    if "valid_mean_token_accuracy" in data
                    else f", reward accuracy={data['valid_reward_accuracy']:.3f}")
    return message


def evaluation_message(event: Evaluation) -> str:
    m, when = event.metrics, "Before training" if event.step == 0 else f"After step {event.step}"
    n = len(event.answers)
    if "valid_reward_mean" in m:  # reinforcement: the job's grader on the validation prompts
        return (f"{when}: validation reward {m['valid_reward_mean']:.3f} (std {m['valid_reward_std']:.3f}) over "
                f"{n} sampled answers, graded by the job's grader")
    text = (f"{when}: {round(m['valid_exact_match'] * n)}/{n} validation answers exact (fuzzy match "
            f"{m['valid_fuzzy_match']:.2f}); general perplexity {m['general_perplexity']:.2f}")
    if event.step:
        text += f", {m['general_agreement']:.0%} of general answers unchanged"
    return text

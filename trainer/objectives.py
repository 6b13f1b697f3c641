"""What a training step minimises: next-token loss (SFT, continued pre-training) or DPO's preference loss.

The recipe treats both alike. An objective turns rows into batches, counts a batch's *items* (what
the loss is averaged over: label tokens, or preference pairs), and computes a micro-batch's loss,
already divided by the items of the whole optimizer step, together with the sums its metrics
are made of. Metrics are named `{split}_{name}`, e.g. `train_loss`, `valid_reward_accuracy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.encoding import IGNORE_INDEX, Encoded, EncodedPair, collate


class LanguageModeling:
    """Cross-entropy on the labelled tokens (assistant turns, or every token of a text block)."""

    def collate(self, rows: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
        return collate(rows, pad_id)

    def n_items(self, batch: dict) -> int:
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def loss(self, model, batch: dict, n_items: int) -> tuple[torch.Tensor, dict]:
        out = model(**batch, num_items_in_batch=n_items)
        return out.loss, {"loss": out.loss.item(), "correct": correct_predictions(out.logits, batch["labels"]),
                          "tokens": int(batch["attention_mask"].sum())}

    def metrics(self, split: str, sums: dict, n_items: int) -> dict:
        return {f"{split}_loss": round(sums["loss"], 6),
                f"{split}_mean_token_accuracy": round(sums["correct"] / max(n_items, 1), 6)}


class Preference:
    """Direct preference optimisation, sigmoid loss (Rafailov et al., 2023):

        loss = -log sigmoid(beta * ((log pi(chosen) - log ref(chosen)) - (log pi(rejected) - log ref(rejected))))

    `pi` is the policy being trained; `ref` the reference policy, the model as training starts
    (the base with the adapter disabled, or the adapter a job trains on from). Its log-probabilities
    are computed once, before the first step (`precompute_reference`), so there is never a second
    copy of the model. Both answers of a pair go through the model in one forward pass (chosen rows
    first, then rejected). Rewards are `beta * (log pi - log ref)` of each answer."""

    def __init__(self, beta: float):
        self.beta = beta

    def collate(self, rows: list[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
        batch = collate([r.chosen for r in rows] + [r.rejected for r in rows], pad_id)
        if all(r.reference is not None for r in rows):
            batch["reference"] = torch.tensor([r.reference for r in rows], dtype=torch.float64)
        return batch

    def n_items(self, batch: dict) -> int:
        return batch["input_ids"].shape[0] // 2

    @torch.no_grad()
    def precompute_reference(self, model, rows: list[EncodedPair], batch_size: int, pad_id: int, device) -> None:
        was_training = model.training
        model.eval()
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            batch = {k: v.to(device) for k, v in self.collate(chunk, pad_id).items()}
            logps = answer_logps(model, batch).view(2, -1).T.tolist()
            for row, ref in zip(chunk, logps):
                row.reference = (ref[0], ref[1])
        model.train(was_training)

    def loss(self, model, batch: dict, n_items: int) -> tuple[torch.Tensor, dict]:
        policy = answer_logps(model, batch).view(2, -1)  # [chosen; rejected] x pairs
        reference = batch["reference"].to(policy.dtype).T
        rewards = self.beta * (policy - reference.to(policy.device))
        margin = rewards[0] - rewards[1]
        losses = -F.logsigmoid(margin)
        r = rewards.detach()
        return losses.sum() / n_items, {
            "loss": losses.sum().item() / n_items, "chosen": r[0].sum().item(), "rejected": r[1].sum().item(),
            "correct": int((margin > 0).sum()), "margin": margin.detach().sum().item(),
            "tokens": int(batch["attention_mask"].sum())}

    def metrics(self, split: str, sums: dict, n_items: int) -> dict:
        n = max(n_items, 1)
        return {f"{split}_loss": round(sums["loss"], 6),
                f"{split}_rewards_chosen": round(sums["chosen"] / n, 6),
                f"{split}_rewards_rejected": round(sums["rejected"] / n, 6),
                f"{split}_reward_accuracy": round(sums["correct"] / n, 6),
                f"{split}_reward_margin": round(sums["margin"] / n, 6)}


def answer_logps(model, batch: dict) -> torch.Tensor:
    """The summed log-probability of each row's labelled tokens (its answer)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    token_logps = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    return (token_logps * mask).sum(-1)


def correct_predictions(logits: torch.Tensor, labels: torch.Tensor) -> int:
    pred = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    return int(((pred == target) & mask).sum())

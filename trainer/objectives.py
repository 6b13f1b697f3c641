"""What a training step minimises: next-token loss (SFT, continued pre-training), a preference loss on pairs,
or KTO's on labelled answers.

The recipe treats both alike. An objective turns rows into batches, counts a batch's *items* (what
the loss is averaged over: label tokens, or preference pairs), and computes a micro-batch's loss,
already divided by the items of the whole optimizer step, together with the sums its metrics
are made of. Metrics are named `{split}_{name}`, e.g. `train_loss`, `valid_reward_accuracy`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.encoding import IGNORE_INDEX, Encoded, EncodedLabelled, EncodedPair, collate


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
    """Preference optimisation on pairs, with the losses LLaMA-Factory offers (`pref_loss`):

    - `sigmoid` (DPO, Rafailov et al., 2023): -log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r))))
    - `ipo` (Azar et al., 2023): ((mean log pi(c) - mean log ref(c)) - (mean log pi(r) - mean log ref(r)) - 1/(2 beta))^2
    - `orpo` (Hong et al., 2024), no reference: -mean log pi(c) - beta * log sigmoid(log odds(c) - log odds(r))
    - `simpo` (Meng et al., 2024), no reference: -log sigmoid(beta * (mean log pi(c) - mean log pi(r)) - gamma)

    (`mean`: per answer token; `gamma` is `simpo_gamma`.) `pref_ftx` adds that multiple of the chosen
    answers' language-modelling loss (LLaMA-Factory's name; TRL calls it `rpo_alpha`), which keeps their
    likelihood from falling with the rejected ones'.

    `pi` is the policy being trained; `ref` the reference policy, the model as training starts (the base
    with the adapter disabled, or the adapter a job trains on from). Its log-probabilities are computed
    once, before the first step (`precompute_reference`), so there is never a second copy of the model.
    Both answers of a pair go through the model in one forward pass (chosen rows first, then rejected).
    Rewards are `beta * (log pi - log ref)` of each answer (`beta * mean log pi` without a reference);
    `chosen_logp_change` is how far the chosen answers' mean log-probability moved from the reference."""

    REFERENCE_FREE = ("orpo", "simpo")

    def __init__(self, beta: float, loss: str = "sigmoid", simpo_gamma: float = 0.5, ftx: float = 0.0):
        self.beta, self.kind, self.gamma, self.ftx = beta, loss, simpo_gamma, ftx

    @property
    def needs_reference(self) -> bool:
        return self.kind not in self.REFERENCE_FREE

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
        summed, lengths = answer_logps(model, batch, with_lengths=True)
        policy, lengths = summed.view(2, -1), lengths.view(2, -1).clamp(min=1)  # [chosen; rejected] x pairs
        mean = policy / lengths
        reference = batch["reference"].to(policy.dtype).T.to(policy.device) if "reference" in batch else None
        if self.kind == "sigmoid":
            rewards = self.beta * (policy - reference)
            margin = rewards[0] - rewards[1]
            losses = -F.logsigmoid(margin)
        elif self.kind == "ipo":
            rewards = self.beta * (policy - reference)
            shift = (mean - reference / lengths)
            margin = shift[0] - shift[1]
            losses = (margin - 1 / (2 * self.beta)) ** 2
        elif self.kind == "orpo":
            rewards = self.beta * mean
            log_odds = (mean[0] - mean[1]) - (_log1mexp(mean[0]) - _log1mexp(mean[1]))
            margin = log_odds
            losses = -mean[0] - self.beta * F.logsigmoid(log_odds)
        else:  # simpo
            rewards = self.beta * mean
            margin = rewards[0] - rewards[1] - self.gamma
            losses = -F.logsigmoid(margin)
        if self.ftx:
            losses = losses + self.ftx * -mean[0]
        r = rewards.detach()
        change = (mean[0] - reference[0] / lengths[0]).detach() if reference is not None else mean[0].detach()
        return losses.sum() / n_items, {
            "loss": losses.sum().item() / n_items, "chosen": r[0].sum().item(), "rejected": r[1].sum().item(),
            "correct": int((r[0] > r[1]).sum()), "margin": (r[0] - r[1]).sum().item(),
            "chosen_change": change.sum().item(), "tokens": int(batch["attention_mask"].sum())}

    def metrics(self, split: str, sums: dict, n_items: int) -> dict:
        n = max(n_items, 1)
        out = {f"{split}_loss": round(sums["loss"], 6),
               f"{split}_rewards_chosen": round(sums["chosen"] / n, 6),
               f"{split}_rewards_rejected": round(sums["rejected"] / n, 6),
               f"{split}_reward_accuracy": round(sums["correct"] / n, 6),
               f"{split}_reward_margin": round(sums["margin"] / n, 6)}
        if self.needs_reference:  # the guard: how far the chosen answers' likelihood fell (per token)
            out[f"{split}_chosen_logp_change"] = round(sums["chosen_change"] / n, 6)
        return out


class Kto(Preference):
    """Kahneman-Tversky optimisation (Ethayarajh et al., 2024) on labelled answers, as TRL's KTOTrainer:

        z = max(0, mean over the batch of (log pi(y'|x) - log ref(y'|x)))     y': another row's answer
        desirable:   loss = w_d * (1 - sigmoid(beta * ((log pi(y|x) - log ref(y|x)) - z)))
        undesirable: loss = w_u * (1 - sigmoid(beta * (z - (log pi(y|x) - log ref(y|x)))))

    `z` (the KL term, detached) is estimated from each row's prompt with the next row's answer, a fixed
    pairing whose reference log-probabilities are computed once with the answers'. Rewards are
    `beta * (log pi - log ref)`: `rewards_chosen` averages the desirable answers', `rewards_rejected`
    the undesirable ones'."""

    def __init__(self, beta: float, desirable_weight: float = 1.0, undesirable_weight: float = 1.0):
        super().__init__(beta)
        self.kind = "kto"
        self.weights = (desirable_weight, undesirable_weight)

    def collate(self, rows: list[EncodedLabelled], pad_id: int) -> dict[str, torch.Tensor]:
        batch = collate([r.completion for r in rows] + [r.mismatched for r in rows], pad_id)
        batch["desirable"] = torch.tensor([r.desirable for r in rows])
        if all(r.reference is not None for r in rows):
            batch["reference"] = torch.tensor([r.reference for r in rows], dtype=torch.float64)
        return batch

    def loss(self, model, batch: dict, n_items: int) -> tuple[torch.Tensor, dict]:
        policy = answer_logps(model, batch).view(2, -1)  # [answers; mismatched] x rows
        ratios = policy - batch["reference"].to(policy.dtype).T.to(policy.device)
        z = ratios[1].detach().mean().clamp(min=0)
        good = batch["desirable"].to(policy.device)
        losses = torch.where(good, self.weights[0] * (1 - torch.sigmoid(self.beta * (ratios[0] - z))),
                             self.weights[1] * (1 - torch.sigmoid(self.beta * (z - ratios[0]))))
        rewards = self.beta * ratios[0].detach()
        return losses.sum() / n_items, {
            "loss": losses.sum().item() / n_items, "chosen": rewards[good].sum().item(),
            "rejected": rewards[~good].sum().item(), "n_chosen": int(good.sum()), "n_rejected": int((~good).sum()),
            "correct": int(((rewards > 0) == good).sum()), "kl": z.item() * len(good),
            "tokens": int(batch["attention_mask"].sum())}

    def metrics(self, split: str, sums: dict, n_items: int) -> dict:
        chosen = sums["chosen"] / max(sums["n_chosen"], 1)
        rejected = sums["rejected"] / max(sums["n_rejected"], 1)
        return {f"{split}_loss": round(sums["loss"], 6),
                f"{split}_rewards_chosen": round(chosen, 6),
                f"{split}_rewards_rejected": round(rejected, 6),
                f"{split}_reward_accuracy": round(sums["correct"] / max(n_items, 1), 6),
                f"{split}_reward_margin": round(chosen - rejected, 6),
                f"{split}_kl": round(sums["kl"] / max(n_items, 1), 6)}


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, stable."""
    x = x.clamp(max=-1e-6)
    return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def answer_logps(model, batch: dict, with_lengths: bool = False):
    """The summed log-probability of each row's labelled tokens (its answer); with their counts if asked."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE_INDEX
    token_logps = torch.gather(logits.log_softmax(-1), 2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    summed = (token_logps * mask).sum(-1)
    return (summed, mask.sum(-1)) if with_lengths else summed


def correct_predictions(logits: torch.Tensor, labels: torch.Tensor) -> int:
    pred = logits[:, :-1].argmax(-1)
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    return int(((pred == target) & mask).sum())

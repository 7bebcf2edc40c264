"""Label-smoothed cross-entropy on the slots each s2s-ft method predicts (s2s-ft §2; docs/design.md §2).

The model returns hidden states of the predicting slots; only the slots with a label
(``sample["loss_target"] != pad``) go through the tied output layer, so the vocabulary
projection costs nothing for unlabelled slots. The loss is summed and fairseq divides by
``sample_size`` = the number of predicted target tokens (normalised per target token).
"""
import math
from dataclasses import dataclass, field

from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
from fairseq.dataclass import FairseqDataclass


@dataclass
class S2SLabelSmoothedCrossEntropyConfig(FairseqDataclass):
    label_smoothing: float = field(default=0.1, metadata={"help": "epsilon for label smoothing, 0 = none"})


@register_criterion("s2s_label_smoothed_cross_entropy", dataclass=S2SLabelSmoothedCrossEntropyConfig)
class S2SLabelSmoothedCrossEntropy(FairseqCriterion):
    def __init__(self, task, label_smoothing=0.1):
        super().__init__(task)
        self.eps = label_smoothing
        self.pad = task.target_dictionary.pad()

    def compute(self, model, sample):
        """Summed (loss, nll_loss, n_correct, n_predicted) for a batch."""
        features, _ = model(**sample["net_input"], features_only=True)
        labels = sample["loss_target"]
        selected = labels.ne(self.pad)
        logits = model.output_layer(features[selected])
        lprobs = utils.log_softmax(logits, dim=-1)
        target = labels[selected]
        loss, nll_loss = label_smoothed_nll_loss(lprobs, target.unsqueeze(-1), self.eps, ignore_index=None, reduce=True)
        n_correct = (lprobs.argmax(-1) == target).sum()
        return loss, nll_loss, n_correct, int(selected.sum())

    def forward(self, model, sample, reduce=True):
        loss, nll_loss, n_correct, n = self.compute(model, sample)
        logging_output = {
            "loss": loss.data,
            "nll_loss": nll_loss.data,
            "ntokens": n,
            "nsentences": sample["nsentences"],
            "sample_size": n,
            "n_correct": n_correct.data,
        }
        return loss, n, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss = sum(log.get("loss", 0) for log in logging_outputs)
        nll = sum(log.get("nll_loss", 0) for log in logging_outputs)
        ntokens = sum(log.get("ntokens", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        n_correct = sum(log.get("n_correct", 0) for log in logging_outputs)
        denom = max(sample_size, 1)
        metrics.log_scalar("loss", loss / denom / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll / max(ntokens, 1) / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda m: utils.get_perplexity(m["nll_loss"].avg))
        metrics.log_scalar("accuracy", 100.0 * float(n_correct) / max(ntokens, 1), ntokens, round=2)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        """Every logged value is a sum, so data-parallel workers reduce them with one all-reduce
        (fairseq's all_gather_list fallback allocates CUDA buffers and fails on CPU/gloo)."""
        return True

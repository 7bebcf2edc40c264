"""Paired examples for s2s-ft fine-tuning: truncation, the method's target input and labels, batching.

Each item is ``[CLS] s [SEP]`` (source) and ``t_1 .. t_n`` ending in ``[SEP]`` (target), plus the
target block's input and labels of the fine-tuning method
(:meth:`s2sft_fairseq.packing.Method.target_input_and_labels`; the corruption of masked and
pseudo-masked fine-tuning is :class:`~s2sft_fairseq.data.corruption.TargetCorruption`). The model
packs a batch of these into one sequence (:func:`s2sft_fairseq.packing.pack`).

Corruption is drawn from a generator seeded by ``(seed, epoch, index)``: the same example is
corrupted the same way whichever process or batch it lands in (data-parallel safe).

No example is silently lost in batching (:meth:`PairedExamplesDataset.batch_by_size`): outside
training one that needs more than ``--max-tokens`` gets a batch of its own (training: a one-line
error), and the last batch fairseq drops for ``--required-batch-size-multiple`` is kept.
:meth:`PairedExamplesDataset.select_shard` keeps one of ``--num-shards`` contiguous blocks of ids
(ids stay the corpus's, so the shards' outputs join).
"""
import logging

import numpy as np
import torch
from fairseq.data import FairseqDataset, data_utils

from ..errors import S2SFTError
from ..packing import get_method
from .corruption import build_corruption

logger = logging.getLogger(__name__)


class PairedExamplesDataset(FairseqDataset):
    def __init__(self, src, tgt, dictionary, method, max_source_positions, max_target_positions,
                 target_mask_prob=0.5, seed=1, left_pad_source=False, shuffle=True, name="data",
                 corruption="paper", max_masked_tokens=0):
        if tgt is not None and len(src) != len(tgt):
            raise S2SFTError(f"{name}: source has {len(src)} examples but target has {len(tgt)}")
        if max_source_positions < 3 or max_target_positions < 2:
            raise S2SFTError(f"--max-source-positions {max_source_positions} / --max-target-positions "
                             f"{max_target_positions}: the source needs >= 3 positions ([CLS] x [SEP]) and the "
                             "target >= 2")
        self.src, self.tgt, self.dict = src, tgt, dictionary
        self.method = get_method(method, corruption)
        self.max_src, self.max_tgt = max_source_positions, max_target_positions
        self.corruption = build_corruption(corruption, dictionary, target_mask_prob, max_masked_tokens)
        self.seed, self.epoch = seed, 1
        self.left_pad_source = left_pad_source
        self.shuffle = shuffle
        self.name = name
        self.shard = None  # ids kept by select_shard (None: all)
        self.bos, self.eos, self.pad = dictionary.bos(), dictionary.eos(), dictionary.pad()
        # raw sizes include the eos fairseq-preprocess appends
        src_raw = np.asarray(src.sizes, dtype=np.int64)
        self.src_sizes = np.minimum(src_raw + 1, self.max_src)  # + [CLS]
        if tgt is not None:
            tgt_raw = np.asarray(tgt.sizes, dtype=np.int64)
            self.tgt_sizes = np.minimum(tgt_raw, self.max_tgt)
            n_tgt_trunc = int((tgt_raw > self.max_tgt).sum())
        else:
            self.tgt_sizes = np.zeros_like(self.src_sizes)
            n_tgt_trunc = 0
        n_src_trunc = int((src_raw + 1 > self.max_src).sum())
        if n_src_trunc or n_tgt_trunc:
            logger.info(f"{name}: truncated {n_src_trunc} of {len(src)} sources to {self.max_src} tokens and "
                        f"{n_tgt_trunc} targets to {self.max_tgt} tokens (nothing dropped)")

    def set_epoch(self, epoch):
        self.epoch = epoch

    @property
    def can_reuse_epoch_itr_across_epochs(self):
        return False  # corruption changes with the epoch

    # ------------------------------------------------------------------ items
    def source_item(self, index):
        body = self.src[index]
        if len(body) and body[-1] == self.eos:
            body = body[:-1]
        body = body[: self.max_src - 2]
        return torch.cat([body.new_tensor([self.bos]), body, body.new_tensor([self.eos])])

    def target_item(self, index):
        body = self.tgt[index]
        if len(body) and body[-1] == self.eos:
            body = body[:-1]
        body = body[: self.max_tgt - 1]
        return torch.cat([body, body.new_tensor([self.eos])])

    def __getitem__(self, index):
        item = {"id": index, "source": self.source_item(index)}
        if self.tgt is None:
            return item
        target = self.target_item(index)
        item["target"] = target
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item["tgt_input"], item["loss_target"], pseudo = self.method.target_input_and_labels(
            target, self.method.start_token(self.dict), self.pad, self.corruption, rng)
        if pseudo is not None:
            item["pseudo_input"] = pseudo
        return item

    def __len__(self):
        return len(self.src)

    # ------------------------------------------------------------------ batching
    def collater(self, samples):
        if not samples:
            return {}
        pad = self.pad
        src = data_utils.collate_tokens([s["source"] for s in samples], pad, left_pad=self.left_pad_source)
        batch = {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "nsentences": len(samples),
            "net_input": {"src_tokens": src,
                          "src_lengths": torch.LongTensor([len(s["source"]) for s in samples])},
        }
        if "target" in samples[0]:
            batch["target"] = data_utils.collate_tokens([s["target"] for s in samples], pad)
            batch["loss_target"] = data_utils.collate_tokens([s["loss_target"] for s in samples], pad)
            batch["net_input"]["tgt_input"] = data_utils.collate_tokens([s["tgt_input"] for s in samples], pad)
            if "pseudo_input" in samples[0]:
                batch["net_input"]["pseudo_input"] = data_utils.collate_tokens([s["pseudo_input"] for s in samples], pad)
            batch["ntokens"] = int(batch["loss_target"].ne(pad).sum())
        else:
            batch["ntokens"] = 0
        return batch

    def num_tokens(self, index):
        return int(self.method.num_slots(self.src_sizes[index], self.tgt_sizes[index]))

    def num_tokens_vec(self, indices):
        return self.method.num_slots(self.src_sizes[indices], self.tgt_sizes[indices])

    def size(self, index):
        return (int(self.src_sizes[index]), int(self.tgt_sizes[index]))

    @property
    def sizes(self):
        return np.stack([self.src_sizes, self.tgt_sizes], axis=1)

    def select_shard(self, num_shards: int, shard_id: int) -> None:
        """Keep block ``shard_id`` of ``num_shards`` contiguous, near-equal blocks of ids.

        ``len()`` and the ids stay the corpus's: only :meth:`ordered_indices` (what is batched)
        shrinks, so ``H-<id>`` lines of all shards together cover every example exactly once.
        """
        if not (num_shards >= 1 and 0 <= shard_id < num_shards):
            raise S2SFTError(f"--shard-id {shard_id} with --num-shards {num_shards}: need 0 <= shard id < num shards")
        self.shard = np.array_split(np.arange(len(self), dtype=np.int64), num_shards)[shard_id]
        first_last = f"ids {self.shard[0]}..{self.shard[-1]}" if len(self.shard) else "no ids"
        logger.info(f"{self.name}: shard {shard_id} of {num_shards}: {len(self.shard)} of {len(self)} examples "
                    f"({first_last})")

    def ordered_indices(self):
        if self.shard is not None:
            indices = self.shard.copy()
            if self.shuffle:
                indices = np.random.permutation(indices)
        elif self.shuffle:
            indices = np.random.permutation(len(self)).astype(np.int64)
        else:
            indices = np.arange(len(self), dtype=np.int64)
        indices = indices[np.argsort(self.tgt_sizes[indices], kind="mergesort")]
        return indices[np.argsort(self.src_sizes[indices], kind="mergesort")]

    def batch_by_size(self, indices, max_tokens=None, max_sentences=None, required_batch_size_multiple=1):
        """fairseq's batching, without its two ways of losing or refusing examples.

        * An example that needs more than ``max_tokens`` makes fairseq stop with an
          ``AssertionError``. Outside training each such example gets a batch of its own (with a
          warning), so generation never loses or refuses one; in training it is a one-line error
          naming the example and the options to change.
        * fairseq 0.12 drops the last batch when its size is not a multiple of
          ``--required-batch-size-multiple`` (default 8 in training). Indices are sorted by size,
          so those are always the longest examples, never seen in any epoch (and a split with
          fewer examples than the multiple gives "The dataset is empty"). They are kept here as
          a final, smaller batch.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) == 0:
            return []
        num_tokens = np.asarray(self.num_tokens_vec(indices), dtype=np.int64)
        if max_tokens is not None:
            over = num_tokens > max_tokens
            if over.any():
                worst = int(indices[int(np.argmax(num_tokens))])
                src, tgt = self.size(worst)
                if getattr(self, "is_train", self.shuffle):
                    raise S2SFTError(
                        f"{self.name}: --max-tokens {max_tokens} is smaller than {int(over.sum())} training "
                        f"example(s); the longest, example {worst}, needs {int(num_tokens.max())} tokens (source "
                        f"{src}, target {tgt}{' twice ([P] slots)' if self.method.pseudo_block else ''}); "
                        "raise --max-tokens or lower --max-source-positions / --max-target-positions")
                logger.warning(f"{self.name}: {int(over.sum())} example(s) need more than --max-tokens "
                               f"{max_tokens} tokens (up to {int(num_tokens.max())}); each gets a batch of its own "
                               "(nothing dropped)")
                num_tokens = np.minimum(num_tokens, max_tokens)

        def batches_of(idx, tokens, multiple):
            return data_utils.batch_by_size(
                idx, num_tokens_fn=self.num_tokens, num_tokens_vec=tokens, max_tokens=max_tokens,
                max_sentences=max_sentences, required_batch_size_multiple=multiple)

        batches = batches_of(indices, num_tokens, required_batch_size_multiple)
        if required_batch_size_multiple > 1:
            batched = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
            left = ~np.isin(indices, batched)
            if left.any():
                batches = list(batches) + list(batches_of(indices[left], num_tokens[left], 1))
                logger.info(f"{self.name}: kept {int(left.sum())} example(s) fairseq would drop as a batch smaller "
                            f"than --required-batch-size-multiple {required_batch_size_multiple}")
        return batches

    @property
    def supports_prefetch(self):
        return False

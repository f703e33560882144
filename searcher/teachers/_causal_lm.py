"""A causal language model as teacher: a prompt and one verbalizer per label.

Its logit for a label is the log-probability of that label's verbalizer after the prompt (a verbalizer of several
tokens: the sum of their log-probabilities, each given the ones before it), so softmax over the labels is the model's
choice among them. Computed once per example and cached like any teacher's logits; usable alone, in an ensemble and
for transfer text. The prompt's literal parts and each text are tokenized separately (as lm-evaluation-harness does
with context and continuation) and each text is cut to [data] max_length tokens, so the instruction around it stays.
Any `AutoModelForCausalLM` works: a tiny random one in the tests, a Hub id with the same code path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from searcher.teachers import loading as teacher_loading, logits

from searcher import files
from searcher.train import models
from searcher.config import TeacherMember
from searcher.data.loading import Split, Task
from searcher.errors import ConfigError, TeacherError, first_line
from searcher.teachers.logits import TeacherLogits
from searcher.teachers._base import Teacher, TeacherCompute

FIELD = re.compile(r"\{(text|text_pair)\}")


@dataclass(frozen=True)
class CausalLMSettings:
    """A causal LM teacher's keys: "... {text} ..." (and {text_pair} for pairs), and one verbalizer per label name."""

    prompt: Optional[str] = None
    verbalizers: tuple[tuple[str, str], ...] = field(default=(), metadata={"parse": "verbalizers"})


class CausalLMTeacher(Teacher):
    type = "causal_lm"
    title = "causal LM"
    selected_by = "prompt and verbalizers"
    Settings = CausalLMSettings

    @classmethod
    def teaches(cls, kind) -> bool:
        return kind.exclusive_classes  # it picks one verbalizer per example

    @classmethod
    def selects(cls, table: dict) -> bool:
        return "prompt" in table or "verbalizers" in table

    @classmethod
    def check_settings(cls, member, where: str, config) -> None:
        if member.prompt is None or not member.verbalizers:
            raise ConfigError(f"{where} a causal LM teacher needs both prompt = \"... {{text}} ...\" and "
                              f"verbalizers = {{label = \"word\", ...}}")
        if member.base:
            raise ConfigError(f"{where} a causal LM teacher is prompted, not fine-tuned: give model = "
                              f"\"<causal LM>\" instead of base")
        if "{text}" not in member.prompt:
            raise ConfigError(f"{where} prompt must contain {{text}} where the example goes (and {{text_pair}} "
                              f"for the second column of pairs), got {member.prompt!r}")
        try:
            member.prompt.format(text="", text_pair="")
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(f"{where} prompt may name only {{text}} and {{text_pair}} (write {{{{ and }}}} "
                              f"for braces): {e!r} in {member.prompt!r}") from None
        if "{text_pair}" in member.prompt and len(config.data.text_columns) < 2:
            raise ConfigError(f"{config.path}: teacher {member.name!r} prompt uses {{text_pair}}, the second text of "
                              f"a pair, and the data has one text column (text_columns = "
                              f"{list(config.data.text_columns)}); remove {{text_pair}} from the prompt, or name both "
                              f"columns in [data] text_columns")

    @classmethod
    def from_member(cls, member, source, compute, config, several):
        return cls(member, source, compute)

    def __init__(self, member: TeacherMember, source: str, compute: TeacherCompute):
        super().__init__(member.name, compute)
        self.member = member
        self.source = source
        self.prompt = member.prompt
        self.verbalizers = dict(member.verbalizers)
        self._config = None
        self._loaded: Optional[tuple] = None
        self._order: list[str] = list(self.verbalizers)

    def model_config(self):
        if self._config is None:
            self._config = teacher_loading.load_config(self.source, self.member.revision, "the causal LM teacher's model")
        return self._config

    def label_order(self) -> Optional[list[str]]:
        return None  # it scores the data's labels by name, in the data's order

    def check(self, task: Task) -> None:
        if not self.teaches(task.kind):
            raise TeacherError(f"teacher {self.name!r} is a causal LM that picks one verbalizer per example, and this "
                               f"study is {task.kind.title}; use a classifier teacher for it")
        given, wanted = set(self.verbalizers), set(task.label_names)
        if given != wanted:
            missing, extra = sorted(wanted - given), sorted(given - wanted)
            raise TeacherError(f"teacher {self.name!r} verbalizers name {sorted(given)[:6]} but the data's labels are "
                               f"{sorted(wanted)[:6]}" + (f" (missing: {', '.join(missing[:6])})" if missing else "")
                               + (f" (not labels: {', '.join(extra[:6])})" if extra else "")
                               + "; give one verbalizer per label name")
        self._order = list(task.label_names)
        self._check_verbalizers(self._tokenizer())

    def _check_verbalizers(self, tokenizer) -> None:
        """Verbalizers that tokenize alike, or to the unknown token, cannot tell the labels apart: the teacher would
        give those labels the same logit and teach a uniform target. Refused before it runs."""
        ids = dict(zip(self._order, self._verbalizer_ids(tokenizer)))
        unknown = getattr(tokenizer, "unk_token_id", None)
        for name, tokens in ids.items():
            if unknown is not None and unknown in tokens:
                raise TeacherError(f"teacher {self.name!r}: the verbalizer of {name!r} (\"{self.verbalizers[name]}\") "
                                   f"holds the tokenizer's unknown token {tokenizer.unk_token}, which stands for any "
                                   f"word it does not know; give each label words the tokenizer knows")
        seen: dict[tuple, str] = {}
        for name, tokens in ids.items():
            other = seen.setdefault(tuple(tokens), name)
            if other != name:
                raise TeacherError(f"teacher {self.name!r}: the verbalizers of {other!r} (\"{self.verbalizers[other]}\") "
                                   f"and {name!r} (\"{self.verbalizers[name]}\") are the same tokens {tokens}, so the "
                                   f"teacher cannot tell those labels apart; give each label a verbalizer of its own")

    def ready(self, task: Task) -> None:
        content = teacher_loading.identity(self.source, self.model_config(), self.member.revision)
        words = [[name, self.verbalizers[name]] for name in self._order]
        self.identity = files.cache_key([content, self.prompt, words], 20)

    def _tokenizer(self):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.source, revision=self.member.revision)
        except Exception as e:
            raise TeacherError(f"cannot load causal LM teacher {self.source!r}'s tokenizer: {first_line(e)}; it must "
                               f"be an AutoModelForCausalLM with a tokenizer") from e

    def model(self):
        """(model, tokenizer) of the causal LM, loaded on first use."""
        if self._loaded is None:
            from transformers import AutoModelForCausalLM

            try:
                model = AutoModelForCausalLM.from_pretrained(self.source, revision=self.member.revision)
            except Exception as e:
                raise TeacherError(f"cannot load causal LM teacher {self.source!r}: {first_line(e)}; it must be an "
                                   f"AutoModelForCausalLM with a tokenizer") from e
            self._loaded = (model.eval(), self._tokenizer())
        return self._loaded

    def release(self) -> None:
        self._loaded = None

    def _verbalizer_ids(self, tokenizer) -> list[list[int]]:
        ids = [tokenizer(self.verbalizers[name], add_special_tokens=False)["input_ids"] for name in self._order]
        empty = [name for name, i in zip(self._order, ids) if not i]
        if empty:
            raise TeacherError(f"teacher {self.name!r}: the verbalizer of {empty[0]!r} is no token at all; give a word")
        return ids

    def _prompt_ids(self, tokenizer, texts: tuple[str, ...]) -> list[int]:
        """The prompt with the example's text(s) in it: literal parts and texts tokenized apart, texts cut to length."""
        values = {"text": texts[0], "text_pair": texts[1] if len(texts) > 1 else ""}
        ids: list[int] = []
        pos = 0
        for m in FIELD.finditer(self.prompt):
            literal = self.prompt[pos:m.start()].replace("{{", "{").replace("}}", "}")
            if literal:
                ids += tokenizer(literal, add_special_tokens=False)["input_ids"]
            ids += tokenizer(values[m.group(1)], add_special_tokens=False)["input_ids"][: self.compute.max_length]
            pos = m.end()
        tail = self.prompt[pos:].replace("{{", "{").replace("}}", "}")
        if tail:
            ids += tokenizer(tail, add_special_tokens=False)["input_ids"]
        if getattr(tokenizer, "bos_token_id", None) is not None and getattr(tokenizer, "add_bos_token", False):
            ids = [tokenizer.bos_token_id] + ids
        return ids

    def _label(self, split: Split, start: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """Label log-probabilities for rows start..stop-1 of a split, float32 (rows, labels)."""
        model, tokenizer = self.model()
        device = self.compute.runtime.device
        model.to(device)
        stop = len(split) if stop is None else stop
        verbalizers = self._verbalizer_ids(tokenizer)
        limit = int(getattr(self.model_config(), "max_position_embeddings", 0)
                    or getattr(self.model_config(), "n_positions", 0) or 0)
        # one sequence per (row, label): the prompt, then the verbalizer; its score reads the verbalizer's positions
        sequences = []
        for i in range(start, stop):
            prompt = self._prompt_ids(tokenizer, tuple(col[i] for col in split.texts))
            for j, v in enumerate(verbalizers):
                seq = prompt + v
                if limit and len(seq) > limit:
                    seq = seq[len(seq) - limit:]  # keep the end: the instruction's last words and the verbalizer
                sequences.append((i - start, j, seq, len(v)))
        out = np.zeros((stop - start, len(verbalizers)), dtype=np.float32)
        return self._score(model, tokenizer, sequences, out, device)

    def _score(self, model, tokenizer, sequences, out: np.ndarray, device: str) -> np.ndarray:
        import torch

        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        order = sorted(range(len(sequences)), key=lambda k: len(sequences[k][2]))
        batch = max(1, self.compute.inference_batch_size)
        with torch.inference_mode():
            for b in range(0, len(order), batch):
                chunk = [sequences[k] for k in order[b:b + batch]]
                width = max(len(s[2]) for s in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, (_, _, seq, _) in enumerate(chunk):  # right-padded: real positions start at 0
                    ids[r, :len(seq)] = torch.tensor(seq)
                    mask[r, :len(seq)] = 1
                with self.compute.runtime.autocast():
                    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                logp = torch.log_softmax(logits.float(), dim=-1).cpu()
                for r, (row, label, seq, n) in enumerate(chunk):
                    L = len(seq)
                    targets = torch.tensor(seq[L - n:])
                    out[row, label] = float(logp[r, L - n - 1:L - 1].gather(1, targets[:, None]).sum())
        return out

    def logits(self, task: Task) -> TeacherLogits:
        path = self.compute.logits_path(self.identity, task.fingerprint, "causal_lm")
        found = logits.cached_logits(path, task, lambda name, split: self._label(split), self.source)
        self.metrics = found.metrics
        return found

    def extra_logits(self, name: str, split: Split, content: str) -> np.ndarray:
        path = self.compute.extra_path(name, self.identity, content)
        return logits.cached_extra_logits(path, name, len(split), len(self._order),
                                           lambda start, stop: self._label(split, start, stop))

    def describe(self) -> dict:
        model, _ = self.model()
        return {
            "name": self.name,
            "type": self.type,
            "model": self.member.model,
            "base": None,
            "fine_tuned_by_searcher": False,
            "path": self.source,
            "prompt": self.prompt,
            "verbalizers": {name: self.verbalizers[name] for name in self._order},
            **models.shape(model),
            "size_mb": round(int(model.num_parameters()) * 4 / 1e6, 1),
            "metrics": self.metrics,
        }

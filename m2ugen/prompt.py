"""Prompt template and multi-turn history: the one place that turns a dialogue into token ids.

The template is the original's (so released checkpoints see what they were trained on)::

    <s>Below is an instruction ... the request.\n\n### Instruction:\n{instruction}\n\n### Response:{response}</s>

Earlier turns come first, each closed by EOS; the oldest turns are dropped first when the dialogue
would not fit the context. Responses that produce music end with `` [AUD0]...[AUD7]`` before EOS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from m2ugen.errors import M2UGenError

SYSTEM = ("Below is an instruction that describes a task. "
          "Write a response that appropriately completes the request.")
IGNORE_INDEX = -100


@dataclass
class Turn:
    instruction: str
    response: str


def instruction_block(instruction: str, first: bool) -> str:
    head = SYSTEM if first else ""
    return f"{head}\n\n### Instruction:\n{instruction}\n\n### Response:"


def with_aud_tokens(response: str, num_aud_tokens: int) -> str:
    """Append the [AUD] run that makes the model produce music."""
    tokens = "".join(f"[AUD{i}]" for i in range(num_aud_tokens))
    return f"{response} {tokens}" if response else tokens


_LEADING_VERB = re.compile(r"^\s*(?:please\s+)?(?:write|compose|play|make|generate|create|give\s+me)\s+(?:me\s+)?",
                           re.IGNORECASE)


def score_request(text: str) -> str:
    """A request for new music as a model that writes ABC was taught to read it:
    "a lively jig in D on the fiddle" -> "Write a lively jig in D on the fiddle in ABC notation."
    Text that already names ABC notation is kept as it is."""
    if re.search(r"\babc\b|\bnotation\b", text, re.IGNORECASE):
        return text
    body = _LEADING_VERB.sub("", text.strip()).rstrip(" .!")
    return f"Write {body} in ABC notation."


def _ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False).input_ids


def encode_dialogue(tokenizer: PreTrainedTokenizerBase, instruction: str, history: list[Turn] | None = None,
                    response: str | None = None, max_tokens: int | None = None) -> tuple[list[int], list[int]]:
    """Token ids and labels for a dialogue; labels are ``IGNORE_INDEX`` except on ``response`` + EOS.

    Without ``response`` the ids end at ``### Response:`` (a generation prompt). Oldest history turns
    are dropped until the ids fit ``max_tokens``; if the last turn alone does not fit, it is an error.
    """
    history = list(history or [])
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    while True:
        ids, labels = [bos], [IGNORE_INDEX]
        for turn in history:
            part = _ids(tokenizer, instruction_block(turn.instruction, first=len(ids) == 1))
            part += _ids(tokenizer, turn.response) + [eos]
            ids += part
            labels += [IGNORE_INDEX] * len(part)
        prompt = _ids(tokenizer, instruction_block(instruction, first=len(ids) == 1))
        ids += prompt
        labels += [IGNORE_INDEX] * len(prompt)
        if response is not None:
            target = _ids(tokenizer, response) + [eos]
            ids += target
            labels += target
        if max_tokens is None or len(ids) <= max_tokens:
            return ids, labels
        if not history:
            raise M2UGenError(f"the request is {len(ids)} tokens long and does not fit the context of "
                              f"{max_tokens} tokens")
        history.pop(0)

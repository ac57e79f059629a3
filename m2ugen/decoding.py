"""KV-cached decoding of :class:`~m2ugen.llm.M2UGenLLM` whose step costs little more than its weight reads.

Batch-1 decoding reads every weight once per token, so the machine's memory bandwidth bounds it.
transformers' ``generate`` adds a fixed cost to every step (cache objects, mask and position
bookkeeping, hooks, stopping criteria), which at M2UGen's sizes is a large part of the step.
:class:`Decoder` runs the LLaMA layers' own modules directly instead:

- the keys and values live in one pre-allocated (static) cache of the whole answer's length;
- the per-turn injection vectors are written once into that state and added in the injected layers;
- a step is one pass over the layers (its only per-step inputs are the new token and its slot), and
  the next token is chosen on the device (argmax, or temperature / top-p sampling);
- on CUDA the step is compiled with CUDA graphs (``torch.compile(mode="reduce-overhead")``), so its
  hundreds of small kernels launch as one. On CPU it runs eagerly: compiling the step took about a
  minute and gave no faster step there (see ``docs/benchmarks.md``).

The arithmetic is the layers' own (their modules are called), so the tokens equal those of
transformers' ``generate`` on the same model, greedy and batched with left padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

if TYPE_CHECKING:
    from m2ugen.llm import M2UGenLLM

# CUDA graphs are recorded per cache length: lengths are rounded up to this many positions.
CUDA_LENGTH_STEP = 256


@dataclass
class Decoded:
    """New tokens and the states that chose them (steps after a row's EOS hold ``pad_token_id``)."""

    tokens: torch.Tensor  # (B, S) long
    states: torch.Tensor  # (B, S, D) last decoder layer's output (before the final norm) that predicted each token


class _State:
    """Static buffers of one (batch, length): KV cache, injection vectors, real-key flags, RoPE tables."""

    def __init__(self, llm: "M2UGenLLM", batch: int, length: int, device: torch.device, dtype: torch.dtype) -> None:
        cfg = llm.model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        shape = (cfg.num_hidden_layers, batch, cfg.num_key_value_heads, length, head_dim)
        # Zeros, not empty: a masked key still multiplies its value by 0, and 0 * NaN would be NaN.
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.vectors = torch.zeros(llm.injection.num_injected, batch, cfg.num_attention_heads * head_dim,
                                   device=device, dtype=dtype)
        self.key_ok = torch.zeros(batch, length, device=device, dtype=torch.bool)  # slot holds a real token
        self.slots = torch.arange(length, device=device)
        positions = self.slots[None]
        self.cos, self.sin = (t[0] for t in llm.model.model.rotary_emb(self.keys[0, 0], positions))  # (length, hd)
        self.batch, self.length, self.device, self.dtype = batch, length, device, dtype

    def fits(self, batch: int, length: int, device: torch.device, dtype: torch.dtype) -> bool:
        return (self.batch, self.length, self.device, self.dtype) == (batch, length, device, dtype)

    def static_tensors(self) -> list[torch.Tensor]:
        return [self.keys, self.values, self.vectors, self.key_ok, self.slots, self.cos, self.sin]


class Decoder:
    """Greedy or sampled decoding of left-padded prompts with the LLM's injection (see the module doc).

    ``compile``: compile the one-token step with CUDA graphs; None = on CUDA devices only.
    """

    def __init__(self, llm: "M2UGenLLM", compile: bool | None = None) -> None:
        self.llm = llm
        self.compile = compile
        self._state: _State | None = None
        self._compiled_step = None

    # --- one forward pass ----------------------------------------------------------------------
    def _forward(self, state: _State, ids: torch.Tensor, positions: torch.Tensor, slots: torch.Tensor,
                 length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``ids`` (B, T) at rotary ``positions`` (B, T) into cache ``slots`` (T,), attending to the
        first ``length`` slots -> (last position's state (B, D), its logits (B, V + N))."""
        llm = self.llm
        bsz, width = ids.shape
        first_injected = llm.injection.first_layer
        # A query sees real keys at or before its own slot, and always itself (so padding rows stay finite).
        keys_seen = state.slots[:length]
        mask = (state.key_ok[:, None, :length] & (keys_seen[None, None] <= slots[None, :, None])) | \
            (keys_seen[None, None] == slots[None, :, None])  # (B, T, length)
        mask = mask[:, None]
        cos, sin = state.cos[positions], state.sin[positions]  # (B, T, hd)
        hidden = llm.model.model.embed_tokens(ids)
        for i, layer in enumerate(llm.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            shape = (bsz, width, -1, attn.head_dim)
            q = attn.q_proj(x).view(shape).transpose(1, 2)
            k = attn.k_proj(x).view(shape).transpose(1, 2)
            v = attn.v_proj(x).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            cache_k, cache_v = state.keys[i], state.values[i]
            cache_k.index_copy_(2, slots, k)
            cache_v.index_copy_(2, slots, v)
            out = F.scaled_dot_product_attention(q, cache_k[:, :, :length], cache_v[:, :, :length], attn_mask=mask,
                                                 scale=attn.scaling, enable_gqa=q.shape[1] != k.shape[1])
            out = out.transpose(1, 2).reshape(bsz, width, -1)
            if i >= first_injected:
                out = out + state.vectors[i - first_injected].unsqueeze(1)
            hidden = hidden + attn.o_proj(out)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        last = hidden[:, -1]
        return last, llm.model.lm_head(llm.model.model.norm(last))

    def _step(self, state: _State, ids: torch.Tensor, positions: torch.Tensor,
              slot: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One new token per row (B, 1) into cache ``slot``: compiled on CUDA (fixed shapes, the whole cache)."""
        slots = state.slots[slot:slot + 1]
        if self._compiled_step is None:
            return self._forward(state, ids, positions, slots, slot + 1)  # eager: only the filled slots
        return self._compiled_step(state, ids, positions, slots, state.length)

    def _get_state(self, batch: int, length: int, device: torch.device, dtype: torch.dtype) -> _State:
        use_compile = device.type == "cuda" if self.compile is None else self.compile
        if use_compile:  # one recorded graph per (batch, length bucket); the buffers are reused
            length = -(-length // CUDA_LENGTH_STEP) * CUDA_LENGTH_STEP
        if self._state is None or not self._state.fits(batch, length, device, dtype):
            self._state = _State(self.llm, batch, length, device, dtype)
            if use_compile:
                for tensor in self._state.static_tensors():
                    torch._dynamo.mark_static_address(tensor)
        if use_compile and self._compiled_step is None:
            self._compiled_step = torch.compile(self._forward, mode="reduce-overhead", fullgraph=True, dynamic=False)
        elif not use_compile:
            self._compiled_step = None
        return self._state

    # --- decoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, vectors: torch.Tensor,
                 max_new_tokens: int, eos_token_id: int, pad_token_id: int, temperature: float = 0.0,
                 top_p: float = 1.0, logits_processor: LogitsProcessorList | None = None,
                 generator: torch.Generator | None = None) -> Decoded:
        """Decode after left-padded prompts ``input_ids`` (B, W) with ``attention_mask`` (B, W) (0 = padding).

        ``vectors`` (num_injected, B, H * hd) are the turn's injection (see
        :meth:`~m2ugen.llm.M2UGenLLM.injection_vectors`). Stops at ``max_new_tokens`` or once every row
        has produced ``eos_token_id``. ``temperature`` 0 is greedy; otherwise temperature and top-p
        sampling (transformers' warpers) drawn from ``generator`` (a local, seeded one for reproducible
        text; None: torch's default generator). ``logits_processor`` sees the
        token ids so far (B, W + step) and the float32 scores (B, V + N), as in transformers.
        """
        bsz, width = input_ids.shape
        device = input_ids.device
        self.llm.injection.set_vectors(None)  # the injection is added below, not (again) by the o_proj hooks
        dtype = self.llm.model.model.norm.weight.dtype
        state = self._get_state(bsz, width + max_new_tokens, device, dtype)
        state.vectors.copy_(vectors)
        pad = width - attention_mask.sum(1)  # (B,) left padding of each row
        state.key_ok.copy_(state.slots[None] >= pad[:, None])
        warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopPLogitsWarper(top_p)]) \
            if temperature > 0 else None
        seq = torch.full((bsz, width + max_new_tokens), pad_token_id, dtype=torch.long, device=device)
        seq[:, :width] = input_ids
        states = torch.empty(bsz, max_new_tokens, self.llm.model.config.hidden_size, device=device, dtype=dtype)
        unfinished = torch.ones(bsz, dtype=torch.bool, device=device)
        prompt_slots = state.slots[:width]
        positions = (prompt_slots[None] - pad[:, None]).clamp(min=0)
        last, logits = self._forward(state, input_ids, positions, prompt_slots, width)
        steps = 0
        for step in range(max_new_tokens):
            slot = width + step
            so_far = seq[:, :slot]
            scores = logits.to(torch.float32, copy=True)
            if logits_processor is not None:
                scores = logits_processor(so_far, scores)
            if warpers is not None:
                token = torch.multinomial(F.softmax(warpers(so_far, scores), dim=-1), 1, generator=generator)[:, 0]
            else:
                token = scores.argmax(-1)
            token = torch.where(unfinished, token, pad_token_id)
            seq[:, slot] = token
            states[:, step] = last
            unfinished &= token != eos_token_id
            steps = step + 1
            if steps == max_new_tokens or not bool(unfinished.any()):
                break
            last, logits = self._step(state, token[:, None], (slot - pad)[:, None], slot)
        return Decoded(tokens=seq[:, width:width + steps], states=states[:, :steps])

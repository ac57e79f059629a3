"""LLaMA with gated modality injection, bias/norm/LoRA tuning and trainable [AUD] token rows.

Injection (the fix of the original's never-trained gates). For each of the top ``3 * L`` decoder
layers ``l`` (bottom-up: L music layers, L image layers, L video layers) and each head ``h``::

    heads_out[..., h, :] += tanh(gate[l, h]) * Wv_l(feature_m + prefix_query[l])[h, :]

before ``o_proj``. ``feature_m`` is the adapter token of the layer's modality (zeros when absent), and
``Wv_l`` the layer's frozen value projection (no LoRA, no bias). The term does not depend on the
position, so per turn it is one constant vector per layer: it is computed once and added by a
forward pre-hook on ``o_proj`` (training, scoring), or held by :mod:`m2ugen.decoding` for the whole answer,
and decoding with the KV cache costs the same as plain LLaMA.
Gates start at zero, so an untrained model is exactly the base LLaMA; they receive gradient from the
first step (d tanh(g)/dg = 1 at 0), and once they move, the adapters and prefix queries do too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from m2ugen.config import MODALITIES, M2UGenConfig
from m2ugen.cpu_linear import BlockedLinear, blocked_wins, use_blocked_linears
from m2ugen.decoding import Decoded, Decoder
from m2ugen.errors import CheckpointError, ConfigError
from m2ugen.quantize import quantize_linears
from m2ugen.seeding import seeded

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Bias tuning as in the original: q, o and the MLP. k and v carry frozen zero biases (HF has one switch).
TRAINABLE_BIASES = ("q_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ExtendedEmbedding(nn.Module):
    """Frozen base embedding (V, D) plus trainable rows (N, D) for ids V..V+N-1."""

    def __init__(self, base_weight: torch.Tensor, new_rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(base_weight, requires_grad=False)
        self.new_weight = nn.Parameter(new_rows)

    @property
    def base_vocab_size(self) -> int:
        return self.weight.shape[0]

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        v = self.base_vocab_size
        is_new = input_ids >= v
        out = F.embedding(input_ids.clamp(max=v - 1), self.weight)
        # Without autograd (decoding) never wait for the device; with it, no new row gets a zero gradient.
        if not torch.is_grad_enabled() or bool(is_new.any()):
            new = F.embedding((input_ids - v).clamp(min=0), self.new_weight).to(out.dtype)
            out = torch.where(is_new.unsqueeze(-1), new, out)
        return out


class ExtendedLMHead(nn.Module):
    """Frozen LM head (V, D) plus trainable rows (N, D): logits over V + N tokens."""

    def __init__(self, base_weight: torch.Tensor, new_rows: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(base_weight, requires_grad=False)
        self.new_weight = nn.Parameter(new_rows)
        # Inference: the (V, D) product as a linear module chosen for the machine (blocked, quantized).
        self.base: nn.Module | None = None

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        base = F.linear(hidden, self.weight) if self.base is None else self.base(hidden)
        return torch.cat([base, F.linear(hidden, self.new_weight.to(hidden.dtype))], -1)


def _new_rows(weight: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """Mean of the existing rows plus small noise (1% of the rows' per-dim std)."""
    w = weight.detach().float()
    noise = torch.randn(num, w.shape[1], generator=generator) * (0.01 * w.std(0, keepdim=True))
    return (w.mean(0, keepdim=True) + noise).to(weight.dtype)


class ModalityInjection(nn.Module):
    """Gates and prefix queries of the injected layers, and the hooks that add their term."""

    def __init__(self, num_layers: int, num_heads: int, hidden_size: int, layers_per_modality: int) -> None:
        super().__init__()
        self.layers_per_modality = layers_per_modality
        num_injected = len(MODALITIES) * layers_per_modality
        self.first_layer = num_layers - num_injected
        self.num_heads = num_heads
        self.gate = nn.Parameter(torch.zeros(num_injected, num_heads))
        self.prefix_query = nn.Parameter(torch.randn(num_injected, hidden_size))
        self._vectors: torch.Tensor | None = None  # (num_injected, B, hidden) while active
        # After ``M2UGenLLM.optimize_for_inference``: LoRA factors (A, B, scaling) folded into each injected v_proj.
        self.fused_v_lora: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}

    @property
    def num_injected(self) -> int:
        return self.gate.shape[0]

    @contextlib.contextmanager
    def closed(self) -> Iterator[None]:
        """Every gate at 0 inside the block (no audio, image or video reaches the LLM: the deaf control
        that evaluations put beside the model), then restored."""
        saved = self.gate.detach().clone()
        with torch.no_grad():
            self.gate.zero_()
        try:
            yield
        finally:
            with torch.no_grad():
                self.gate.copy_(saved)

    def modality_of(self, index: int) -> str:
        """Modality injected into the ``index``-th injected layer (0 = lowest)."""
        return MODALITIES[index // self.layers_per_modality]

    def compute(self, layers: nn.ModuleList, tokens: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        """Adapter tokens {modality: (B, hidden)} (missing = absent) -> per-layer vectors (num_injected, B, hidden)."""
        vectors = []
        for i in range(self.num_injected):
            attn = layers[self.first_layer + i].self_attn
            x = self.prefix_query[i].expand(batch_size, -1)
            token = tokens.get(self.modality_of(i))
            if token is not None:
                x = x + token.to(x.dtype)
            v = _frozen_projection(attn.v_proj, x, self.fused_v_lora.get(i))  # (B, kv_heads * head_dim)
            head_dim = v.shape[-1] // attn.config.num_key_value_heads
            v = v.view(batch_size, -1, head_dim)
            v = v.repeat_interleave(self.num_heads // v.shape[1], dim=1)  # GQA -> one value per query head
            gated = torch.tanh(self.gate[i]).to(v.dtype)[None, :, None] * v
            vectors.append(gated.reshape(batch_size, -1))
        return torch.stack(vectors)

    def set_vectors(self, vectors: torch.Tensor | None) -> None:
        self._vectors = vectors

    def add_to_input(self, index: int, module: nn.Module, args: tuple) -> tuple | None:
        """Forward pre-hook of the ``index``-th injected layer's ``o_proj``: input (B, T, H*hd) + vector."""
        if self._vectors is None:
            return None
        x = args[0]
        return (x + self._vectors[index].unsqueeze(1).to(x.dtype),) + args[1:]


def gate_report(gate: torch.Tensor, layers_per_modality: int, first_layer: int) -> list[str]:
    """Human-readable summary of the injection gates (num_injected, heads): the largest |tanh(gate)|
    per modality, and a warning when every gate is zero (the media never reach the LLM)."""
    values = torch.tanh(gate.detach().float())
    lines = []
    for m, modality in enumerate(MODALITIES):
        block = values[m * layers_per_modality:(m + 1) * layers_per_modality]
        lo = first_layer + m * layers_per_modality
        lines.append(f"gates {modality} (layers {lo}-{lo + layers_per_modality - 1}): "
                     f"max |tanh(gate)| = {block.abs().max().item():.4g}")
    if bool((gate == 0).all()):
        lines.append("WARNING: every gate is zero, so this checkpoint ignores its audio, image and video inputs "
                     "(the original code never trained its gates); answers about media will not depend on "
                     "the media. Train the gates (stage 1 or 3) to use them.")
    return lines


def _frozen_projection(linear: nn.Module, x: torch.Tensor, fused_lora: tuple | None) -> torch.Tensor:
    """``x`` through the frozen base weight of a linear layer, without its LoRA update.

    The layer is LoRA-wrapped (peft: its ``base_layer`` is used), or fused into a plain ``nn.Linear``
    for inference (then ``fused_lora`` = (A, B, scaling) of the folded update, which is subtracted).
    """
    weight = getattr(linear, "base_layer", linear).weight
    out = F.linear(x.to(weight.dtype), weight)
    if fused_lora is not None:
        a, b, scaling = fused_lora
        out = out - scaling * F.linear(F.linear(x.to(a.dtype), a), b).to(out.dtype)
    return out


class LastHiddenCapture:
    """Forward hook on the last decoder layer: while ``full``, keeps its (B, T, D) output (pre final norm)."""

    def __init__(self) -> None:
        self.full = False
        self.output: torch.Tensor | None = None

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self.full:
            self.output = output[0] if isinstance(output, tuple) else output



def _load_llama(path: Path, llama_cfg: LlamaConfig, dtype: torch.dtype) -> LlamaForCausalLM:
    """A LLaMA directory with room for biases it does not hold (they start at zero, then trained ones
    load): transformers' report of those "missing" biases is silenced; any other missing key is an error."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model, info = LlamaForCausalLM.from_pretrained(path, config=llama_cfg, dtype=dtype, output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = sorted(k for k in info.get("missing_keys", []) if not k.endswith(".bias"))
    mismatched = [str(m[0]) if isinstance(m, tuple) else str(m) for m in info.get("mismatched_keys", [])]
    if missing or mismatched:
        raise CheckpointError(f"LLM: {path}: does not fit its config.json: missing {missing[:5]}, "
                              f"wrong shape {mismatched[:5]}")
    return model

class M2UGenLLM(nn.Module):
    """``LlamaForCausalLM`` + LoRA (peft) + gated injection + [AUD] rows."""

    def __init__(self, model: LlamaForCausalLM, config: M2UGenConfig) -> None:
        super().__init__()
        llama_cfg = model.config
        if llama_cfg.num_attention_heads % llama_cfg.num_key_value_heads:
            raise ConfigError("LLM: num_attention_heads must be a multiple of num_key_value_heads")
        if config.num_injected_layers > llama_cfg.num_hidden_layers:
            raise ConfigError(f"LLM has {llama_cfg.num_hidden_layers} layers; "
                              f"{config.num_injected_layers} injected layers do not fit")
        self.base_vocab_size = llama_cfg.vocab_size
        self.num_aud_tokens = config.num_aud_tokens
        generator = torch.Generator().manual_seed(1234)
        emb = model.model.embed_tokens.weight
        model.model.embed_tokens = ExtendedEmbedding(emb.data, _new_rows(emb, config.num_aud_tokens, generator))
        head = model.lm_head.weight
        model.lm_head = ExtendedLMHead(head.data, _new_rows(head, config.num_aud_tokens, generator))
        model.config.vocab_size = self.base_vocab_size + config.num_aud_tokens
        for p in model.parameters():
            p.requires_grad_(False)
        if config.lora_rank > 0:
            lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,
                              target_modules=list(LORA_TARGETS), bias="none")
            inject_adapter_in_model(lora, model)
        self.model = model
        self.injection = ModalityInjection(llama_cfg.num_hidden_layers, llama_cfg.num_attention_heads,
                                           llama_cfg.hidden_size, config.layers_per_modality)
        layers = model.model.layers
        self._hooks: list = []
        self._hook_injection()
        self.capture = LastHiddenCapture()
        layers[-1].register_forward_hook(self.capture)
        self.fused = False
        self.quantized: str | None = None
        self._decoder = Decoder(self)
        self._set_trainable_defaults()

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: M2UGenConfig) -> "M2UGenLLM":
        """Base LLaMA from ``llm_path`` (local HF directory) or random from ``llm_config``."""
        dtype = getattr(torch, config.dtype)
        if config.llm_path is not None:
            path = Path(config.llm_path)
            if not (path / "config.json").is_file():
                raise CheckpointError(f"LLM: {path} is not a Hugging Face model directory (no config.json); "
                                      "convert Meta weights first with `m2ugen convert llama`")
        with seeded(0):  # random weights (llm_config), LoRA and prefix queries: the same in every process
            if config.llm_path is not None:
                llama_cfg = LlamaConfig.from_pretrained(path)
                llama_cfg.attention_bias = True
                llama_cfg.mlp_bias = True
                model = _load_llama(path, llama_cfg, dtype)
            else:
                llama_cfg = LlamaConfig(**config.llm_config, attention_bias=True, mlp_bias=True,
                                        tie_word_embeddings=False)
                model = LlamaForCausalLM(llama_cfg).to(dtype)
            for name, param in model.named_parameters():
                if name.endswith(".bias"):  # base LLaMA has none: bias tuning starts from zero
                    param.data.zero_()
            return cls(model, config)

    def _set_trainable_defaults(self) -> None:
        for group in self.parameter_groups().values():
            for p in group:
                p.requires_grad_(True)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The tunable parameters by kind; everything else in the LLM is frozen."""
        groups: dict[str, list[nn.Parameter]] = {"gate": [self.injection.gate],
                                                  "prefix_query": [self.injection.prefix_query],
                                                  "bias": [], "norm": [], "lora": [],
                                                  "new_tokens": [self.model.model.embed_tokens.new_weight,
                                                                 self.model.lm_head.new_weight]}
        for name, param in self.model.named_parameters():
            if "lora_" in name:
                groups["lora"].append(param)
            elif name.endswith(".bias") and any(f".{t}." in name for t in TRAINABLE_BIASES):
                groups["bias"].append(param)
            elif "norm" in name:
                groups["norm"].append(param)
        return groups

    def _hook_injection(self) -> None:
        """(Re)attach the injection to the current ``o_proj`` modules of the injected layers."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = [self.layers[self.injection.first_layer + i].self_attn.o_proj.register_forward_pre_hook(
            partial(self.injection.add_to_input, i)) for i in range(self.injection.num_injected)]

    def optimize_for_inference(self, quantize: str | None = None) -> None:
        """Inference only: fold LoRA into the base weights; linear layers chosen for the machine, or quantized.

        Every LoRA update is merged into its base weight and the peft wrappers are dropped, so
        decoding runs plain linear layers (no per-module peft overhead). Each of these, and the LM
        head, then computes through :func:`~m2ugen.cpu_linear.blocked_linear` where a start-up
        measurement shows it faster on this machine (:func:`~m2ugen.cpu_linear.blocked_wins`), else
        stays ``nn.Linear``. ``quantize`` ("int8" or "int4", see :mod:`m2ugen.quantize`) stores the
        weights of all of them quantized instead. The injected layers' value projections keep their
        LoRA factors aside, since the injection uses the frozen weight without LoRA. Saving afterwards
        is refused and training is impossible (the LoRA tensors are gone). Calling it again does
        nothing, except quantizing a model that is not yet quantized.
        """
        if self.fused:
            if quantize is not None and self.quantized is None:
                self._quantize(quantize)
            return
        for i in range(self.injection.num_injected):
            v_proj = self.layers[self.injection.first_layer + i].self_attn.v_proj
            if hasattr(v_proj, "lora_A"):
                for name in v_proj.active_adapters:
                    self.injection.fused_v_lora[i] = (v_proj.lora_A[name].weight.detach().clone(),
                                                      v_proj.lora_B[name].weight.detach().clone(),
                                                      float(v_proj.scaling[name]))
        for parent in list(self.layers.modules()):
            for child_name, child in list(parent.named_children()):
                if hasattr(child, "lora_A") and hasattr(child, "base_layer"):
                    if not child.merged:
                        child.merge()
                    setattr(parent, child_name, child.get_base_layer())
        head = self.model.lm_head
        if quantize is None:
            use_blocked_linears(self.layers, where=blocked_wins)
            if blocked_wins(head.weight):
                head.base = BlockedLinear.sharing(head.weight)
        else:
            self._quantize(quantize)
        self._hook_injection()
        self.fused = True

    def _quantize(self, mode: str) -> None:
        head = self.model.lm_head
        linear = nn.Linear(head.weight.shape[1], head.weight.shape[0], bias=False, device="meta")
        linear.weight = head.weight
        quantize_linears(self.layers, mode)
        holder = nn.ModuleDict({"base": linear})
        quantize_linears(holder, mode)
        head.base = holder["base"]
        head.weight = None  # only the quantized copy is kept
        self.quantized = mode
        self._hook_injection()

    # --- running -----------------------------------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        return self.model.model.layers

    @property
    def aud_token_ids(self) -> list[int]:
        return list(range(self.base_vocab_size, self.base_vocab_size + self.num_aud_tokens))

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.model.embed_tokens(input_ids)

    def injection_vectors(self, tokens: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        return self.injection.compute(self.layers, tokens, batch_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> logits (B, T, V + N) and last-layer hidden states before the final norm (B, T, D)."""
        self.injection.set_vectors(vectors)
        self.capture.full = True
        try:
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
            hidden = self.capture.output
        finally:
            self.capture.full = False
            self.capture.output = None
            # The hooks inject only inside this call, except where checkpointed training re-runs the
            # layers in backward: that recomputation needs the same vectors (the next call replaces them).
            if not (self.model.model.gradient_checkpointing and torch.is_grad_enabled()):
                self.injection.set_vectors(None)
        return logits, hidden

    def decode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, vectors: torch.Tensor,
               **options: Any) -> Decoded:
        """KV-cached decoding after left-padded prompts with the injection ``vectors``: see
        :meth:`m2ugen.decoding.Decoder.generate` for ``options``."""
        return self._decoder.generate(input_ids, attention_mask, vectors, **options)

"""Understanding adapters: one frozen-encoder output -> one LLM-sized token per modality."""

from adapters.modality_adapter import AdapterBlock, ModalityAdapter

__all__ = ["AdapterBlock", "ModalityAdapter"]

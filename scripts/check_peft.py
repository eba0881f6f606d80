"""Our PEFT export read by PEFT itself (run by scripts/check-peft.sh, not by the app).

For each case folder written by `evolve fixture adapter` (peft/, logits.json) and its base GGUF:
transformers loads the base from the GGUF (`gguf_file=`), PeftModel.from_pretrained applies our
PEFT export, and both logits (base, adapted, every position) are compared with candle's.

    python check_peft.py NAME=CASE_DIR=MODEL.gguf ...
"""

import json
import sys
import time
from pathlib import Path

import peft
import torch
import transformers
from peft import PeftModel
from gguf import GGUFReader
from transformers import AutoConfig, AutoModelForCausalLM

LIMIT = 1e-3


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def check(name: str, case: Path, gguf: Path) -> bool:
    ref = json.loads((case / "logits.json").read_text())
    tokens = torch.tensor([ref["tokens"]])
    t0 = time.time()
    config = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers' GGUF mapping ignores `<arch>.attention.key_length` and assumes Qwen3's
    # usual head size (128); the tiny qwen3 has its own (32).
    key_length = GGUFReader(str(gguf)).get_field(f"{config.model_type}.attention.key_length")
    if key_length is not None:
        config.head_dim = int(key_length.contents())
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, config=config, dtype=torch.float32
    ).eval()
    n_params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        base = model(tokens).logits[0]
    peft_config = json.loads((case / "peft" / "adapter_config.json").read_text())
    adapted_model = PeftModel.from_pretrained(model, str(case / "peft")).eval()
    with torch.no_grad():
        adapted = adapted_model(tokens).logits[0]
    ours_base, ours_adapted = torch.tensor(ref["base"]), torch.tensor(ref["adapted"])
    e_base, e_adapted = rel(base, ours_base), rel(adapted, ours_adapted)
    moved = rel(ours_adapted, ours_base)
    ok = e_base < LIMIT and e_adapted < LIMIT and moved > 100 * e_adapted
    print(
        f"| {name} | {model.config.model_type} | {n_params:,} "
        f"| {peft_config['base_model_name_or_path']} | {len(ref['tokens'])} | {e_base:.1e} "
        f"| {e_adapted:.1e} | {moved:.1e} | {time.time() - t0:.1f} | {'pass' if ok else 'FAIL'} |",
        flush=True,
    )
    return ok


def main() -> int:
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}")
    print()
    print(
        "| case | architecture | parameters | base_model_name_or_path | tokens "
        "| base: transformers vs candle | adapted: PEFT vs candle | adapter's effect | s | result |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for arg in sys.argv[1:]:
        name, case, gguf = arg.split("=", 2)
        results.append(check(name, Path(case), Path(gguf)))
    print()
    print(f"relative error ‖ours − theirs‖/‖ours‖ over all positions; limit {LIMIT:g}; the adapter's")
    print("effect (‖adapted − base‖/‖base‖ in candle) must be ≥ 100× the adapted error")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())

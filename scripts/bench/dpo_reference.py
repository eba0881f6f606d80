"""The reference for `evolve bench train`: one LoRA-DPO optimiser step in PyTorch + transformers +
PEFT, as TRL's DPOTrainer runs it with a PEFT adapter — the reference log-probs with the adapter
disabled, the policy forward and backward, an AdamW step — on the same shape, pairs, sequence
lengths, rank, target modules and threads as ours. Prints one JSON line (what the bench reads).

    python dpo_reference.py --shape tiny|0.5b|1b|8b|FILE.gguf --pairs 4 --seq 256 \\
        --prompt-tokens 128 --rank 16 --threads 2 --device cpu --dtype f32 --warmup 1 --steps 1

A benchmark tool (scripts/bench/setup.sh installs it), not a runtime dependency.
"""

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, Qwen2Config

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama(hidden, layers, heads, kv_heads, ff, vocab=32000):
    return LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=ff, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=4096,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )


def model_for(shape: str, dtype):
    if shape.endswith(".gguf"):
        path = Path(shape)
        return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    config = {
        # The tiny test Llama: 64 wide, 2 layers, 4/2 heads, 128 feed-forward, its 356-token vocabulary.
        "tiny": lambda: llama(64, 2, 4, 2, 128, vocab=356),
        "0.5b": lambda: Qwen2Config(
            vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
            num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
            rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
        ),
        "1b": lambda: llama(2048, 16, 32, 8, 8192),
        "8b": lambda: llama(4096, 32, 32, 8, 14336),
    }[shape]()
    config._attn_implementation = "sdpa"
    torch.manual_seed(1)
    return AutoModelForCausalLM.from_config(config).to(dtype)


def check(a, dtype):
    """`--check DIR`: recompute ours (DIR/check.json, DIR/peft, DIR/grads) and compare."""
    from peft import PeftModel
    from safetensors.torch import load_file

    d = Path(a.check)
    spec = json.loads((d / "check.json").read_text())
    model = model_for(spec["model"], torch.float32)
    model = PeftModel.from_pretrained(model, str(d / "peft"), is_trainable=True)
    seqs, prompt_lens = [], []
    for part in ("chosen", "rejected"):
        for p in spec["pairs"]:
            seqs.append(torch.tensor(p["prompt"] + p[part]))
            prompt_lens.append(len(p["prompt"]))
    ids = torch.stack(seqs)

    def seq_logp(m):
        logits = m(input_ids=ids).logits[:, :-1].float()
        lp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return torch.stack([lp[i, k - 1 :].sum() for i, k in enumerate(prompt_lens)])

    n = len(spec["pairs"])
    with torch.no_grad(), model.disable_adapter():
        ref = seq_logp(model)
    pol = seq_logp(model)
    r = spec["beta"] * (pol - ref)
    loss = -F.logsigmoid(r[:n] - r[n:]).mean()
    loss.backward()
    ours = load_file(str(d / "grads" / "adapter_model.safetensors"))
    worst, count = 0.0, 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = name.replace(".default", "")
        g_ours, g_ref = ours[key].float(), param.grad.float()
        worst = max(worst, float((g_ours - g_ref).norm() / g_ref.norm().clamp_min(1e-30)))
        count += 1
    if count != len(ours):
        raise SystemExit(f"{len(ours)} gradients written, {count} LoRA parameters in PEFT")
    print(json.dumps({
        "loss": float(loss),
        "loss_rel_err": abs(float(loss) - spec["loss"]) / abs(float(loss)),
        "grad_rel_err_max": worst,
        "tensors": count,
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="tiny")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--check", help="compare with ours: the folder `evolve bench train --check` wrote")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[a.dtype]
    if a.check:
        return check(a, dtype)
    model = model_for(a.shape, dtype).to(a.device)
    n_params = sum(t.numel() for t in model.parameters())
    vocab = model.config.vocab_size
    lora = LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0, target_modules=TARGETS)
    g = torch.Generator().manual_seed(0xBE4C)
    answer = a.seq - a.prompt_tokens
    prompts = torch.randint(0, vocab, (a.pairs, a.prompt_tokens), generator=g)
    chosen = torch.randint(0, vocab, (a.pairs, answer), generator=g)
    rejected = torch.randint(0, vocab, (a.pairs, answer), generator=g)
    # TRL's concatenated forward: chosen sequences, then rejected ones, in one batch.
    ids = torch.cat([torch.cat([prompts, chosen], 1), torch.cat([prompts, rejected], 1)]).to(a.device)

    def seq_logp(m):
        logits = m(input_ids=ids).logits[:, :-1].float()
        lp = torch.gather(F.log_softmax(logits, -1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return lp[:, a.prompt_tokens - 1 :].sum(-1)

    times, loss = [], float("nan")
    for i in range(a.warmup + a.steps):
        # A fresh adapter and optimiser each step, as ours: every step is a first step.
        peft_model = get_peft_model(model, lora)
        opt = torch.optim.AdamW([t for t in peft_model.parameters() if t.requires_grad], lr=1e-5)
        if a.device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.no_grad(), peft_model.disable_adapter():
            ref = seq_logp(peft_model)
        pol = seq_logp(peft_model)
        r = 0.1 * (pol - ref)
        step_loss = -F.logsigmoid(r[: a.pairs] - r[a.pairs :]).mean()
        step_loss.backward()
        torch.nn.utils.clip_grad_norm_([t for t in peft_model.parameters() if t.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if a.device == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - started)
        loss = float(step_loss)
        model = peft_model.unload()
    seconds = statistics.median(times)
    print(json.dumps({
        "ms_per_step": seconds * 1e3,
        "tokens_per_s": 2 * a.pairs * a.seq / seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "parameters": n_params,
        "loss": loss,
    }))


if __name__ == "__main__":
    main()

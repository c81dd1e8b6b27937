"""A stand-in trainer with the interface of an HF/PEFT training script.

It prints `PHASEGATE_METRIC {...}` lines while it "trains", then writes what the HF Trainer and the
team's scripts write: output/trainer_state.json, output/training_metrics.json and a LoRA adapter
directory. The loss follows a deterministic decaying curve so runs are comparable.

It also writes output/eval_rubric.json, a rubric score file in the shape the team's eval script
writes (and `phasegate import` reads), so the run's [gate] stage has results to judge. The scores
are fixed stand-ins: no model is trained or evaluated here (pass --scores to change them).
"""

import argparse
import json
import math
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--max-length", type=int, default=512)
parser.add_argument("--steps", type=int, default=24)
parser.add_argument("--step-seconds", type=float, default=0.05)
parser.add_argument("--scores", default="6,5,4,5,6,4,5,5", help="stand-in rubric scores of Q1..Q8, 0-10 each")
args = parser.parse_args()

os.makedirs("output/adapter", exist_ok=True)
history = []
loss = None
for step in range(1, args.steps + 1):
    epoch = args.epochs * step / args.steps
    loss = 0.75 + 1.6 * math.exp(-step / (args.steps / 3))
    history.append({"step": step, "epoch": round(epoch, 3), "loss": round(loss, 4), "learning_rate": 2e-4})
    print("PHASEGATE_METRIC " + json.dumps({"step": step, "loss": round(loss, 4), "epoch": round(epoch, 3)}))
    print(f"step {step}/{args.steps} epoch {epoch:.2f} loss {loss:.4f}", flush=True)
    time.sleep(args.step_seconds)

with open("output/trainer_state.json", "w") as f:
    json.dump({"global_step": args.steps, "epoch": float(args.epochs), "log_history": history}, f, indent=1)
with open("output/training_metrics.json", "w") as f:
    json.dump(
        {
            "model": "TinyLlama-1.1B-Chat",
            "num_examples": 97,
            "epochs": args.epochs,
            "max_length": args.max_length,
            "lora_r": 16,
            "lora_alpha": 32,
            "final_loss": round(loss, 4),
            "vram_peak_gb": 1.9,
            "phase": "10",
        },
        f,
        indent=1,
    )
with open("output/adapter/adapter_config.json", "w") as f:
    json.dump({"r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]}, f)

QUESTIONS = [
    "Quem é o Tomás?",
    "O que é o Quintal?",
    "E a Banca, o sistema da Ipê Digital, faz o quê?",
    "Quais tecnologias vocês usam no dia a dia?",
    "Me fala sobre você.",
    "Como é a sua personalidade?",
    "Como é o seu jeito de trabalhar?",
    "Quais são seus pontos fortes e fracos?",
]
scores = [int(s) for s in args.scores.split(",")]
assert len(scores) == len(QUESTIONS), "--scores needs one score per question"
total = sum(scores)
with open("output/eval_rubric.json", "w") as f:
    json.dump(
        {
            "phase": "10",
            "model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            "adapter": "output/adapter",
            "training_loss_final": round(loss, 4),
            "generation_params": {"max_new_tokens": 200, "temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3},
            "scores": {
                f"Q{i + 1}": {"question": q, "score": s, "max_score": 10, "notes": "stand-in score"}
                for i, (q, s) in enumerate(zip(QUESTIONS, scores))
            },
            "overall": {"total": total, "max": 10 * len(QUESTIONS), "normalized_10": total / (10 * len(QUESTIONS)) * 10},
        },
        f,
        indent=1,
        ensure_ascii=False,
    )
print("training done", flush=True)

"""A stand-in trainer with the interface of an HF/PEFT training script.

It prints `PHASEGATE_METRIC {...}` lines while it "trains", then writes what the HF Trainer and the
team's scripts write: output/trainer_state.json, output/training_metrics.json and a LoRA adapter
directory. The loss follows a deterministic decaying curve so runs are comparable.
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
print("training done", flush=True)

"""llama.cpp reference figures for `phasegate bench eval`, through llama-cpp-python.

Measures, on the same GGUF, prompts and token counts as phasegate-eval's `bench`:
  (a) single-stream greedy generation of exactly N tokens (EOS ignored) for the first suite
      question, with its prompt tokens/s;
  (b) the wall time of the whole suite answered one by one: every question x samples x N tokens,
      sampled (temperature 0.7, top_p 0.9, no top-k, no min-p, no repetition penalty), EOS ignored;
  (c) the peak RSS of this process (ru_maxrss).
Prints one JSON object. See bench/README.md for the exact commands.
"""

import argparse
import json
import os
import resource
import sys
import time
import tomllib


def parse_args():
    here = os.path.dirname(os.path.abspath(__file__))
    default_suite = os.path.join(here, "..", "datasets", "persona-v1", "suite.toml")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="path to the .gguf file")
    p.add_argument("--suite", default=default_suite, help="eval suite TOML (persona system prompt + questions)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--max-new-tokens", type=int, default=150)
    p.add_argument("--n-ctx", type=int, default=1024, help="context: must hold prompt + max-new-tokens")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-suite", action="store_true", help="only the single-stream figures")
    return p.parse_args()


def suite_prompts(path, count):
    """The same prompts as phasegate-eval's bench: trimmed persona system prompt + question text."""
    with open(path, "rb") as f:
        suite = tomllib.load(f)
    system = suite["persona"]["system_prompt"].strip()
    questions = suite["questions"]
    picked = [questions[i % len(questions)] for i in range(count)]
    return [(q["id"], system, q["text"]) for q in picked]


def chatml(system, user):
    # SmolLM2's own template renders exactly this for a system + user conversation.
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def tokenize(llm, text):
    return llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def single_stream(llm, tokens, n):
    """Greedy: prompt eval, then exactly n tokens (the first from the prompt's logits)."""
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    prompt_s = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(n):
        token = llm.sample(top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0)
        if i + 1 < n:
            llm.eval([token])
    gen_s = time.perf_counter() - started
    return {
        "prompt_tokens": len(tokens),
        "single_stream_prompt_tok_s": len(tokens) / prompt_s,
        "single_stream_generated_tokens": n,
        "single_stream_generation_tok_s": n / gen_s,
    }


def suite_run(llm, prompts, samples, n, seed):
    """Answers one by one; llama-cpp-python reuses the KV cache of the longest shared prefix."""
    started = time.perf_counter()
    generated = 0
    llm.reset()
    for index, (_, system, user) in enumerate(prompts):
        tokens = tokenize(llm, chatml(system, user))
        for sample in range(samples):
            llm.set_seed(seed + index * samples + sample)
            count = 0
            for _ in llm.generate(tokens, top_k=0, top_p=0.9, min_p=0.0, typical_p=1.0, temp=0.7,
                                  repeat_penalty=1.0, reset=True):
                count += 1
                if count >= n:
                    break
            generated += count
    wall = time.perf_counter() - started
    return {"suite_wall_s": wall, "suite_answers": len(prompts) * samples,
            "suite_generated_tokens": generated, "suite_generation_tok_s": generated / wall}


def main():
    args = parse_args()
    import llama_cpp

    started = time.perf_counter()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.n_ctx, n_threads=args.threads,
                          n_threads_batch=args.threads, seed=args.seed, verbose=False)
    load_s = time.perf_counter() - started
    prompts = suite_prompts(args.suite, args.questions)
    first = tokenize(llm, chatml(prompts[0][1], prompts[0][2]))
    if len(first) + args.max_new_tokens > args.n_ctx:
        sys.exit(f"prompt ({len(first)}) + max-new-tokens exceed n_ctx {args.n_ctx}; raise --n-ctx")
    figures = {"engine": "llama.cpp", "llama_cpp_python": llama_cpp.__version__, "threads": args.threads,
               "n_ctx": args.n_ctx, "load_s": load_s}
    figures.update(single_stream(llm, first, args.max_new_tokens))
    if not args.skip_suite:
        figures["suite_prompt_tokens"] = [len(tokenize(llm, chatml(s, u))) for _, s, u in prompts]
        figures.update(suite_run(llm, prompts, args.samples, args.max_new_tokens, args.seed))
    # Linux reports ru_maxrss in KiB.
    figures["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

"""llama.cpp (llama-cpp-python) on the same GGUF and chat prompts as Quarry's local generator.

usage: llm_reference.py MODEL.gguf PROMPTS.json THREADS
PROMPTS.json: [{"messages": [{"role": ..., "content": ...}], "max_tokens": N}, ...]
Prints JSON: per prompt the prompt tokens, generated tokens, seconds to the first token and in total;
greedy decoding, repeat penalty 1.1 over the last 64 tokens (Quarry's defaults). Each prompt runs twice
with a fresh cache and the faster run is kept, as on the Quarry side (the first call also pays
llama.cpp's lazy initialisation).
"""
import json
import sys
import time

from llama_cpp import Llama


def main():
    model, prompts, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    llm = Llama(model_path=model, n_ctx=4096, n_threads=threads, n_threads_batch=threads,
                n_batch=256, verbose=False, last_n_tokens_size=64)
    out = []
    for p in json.load(open(prompts)):
        runs = [run(llm, p) for _ in range(2)]
        out.append(min(runs, key=lambda r: r["total_s"]))
    print(json.dumps({"results": out, "llama_cpp": __import__("llama_cpp").__version__}))


def run(llm, p):
    llm.reset()
    start = time.perf_counter()
    first = None
    pieces = []
    for chunk in llm.create_chat_completion(messages=p["messages"], max_tokens=p["max_tokens"],
                                            temperature=0.0, top_k=1, repeat_penalty=1.1, stream=True):
        delta = chunk["choices"][0].get("delta", {})
        if delta.get("content"):
            if first is None:
                first = time.perf_counter() - start
            pieces.append(delta["content"])
    total = time.perf_counter() - start
    # One streamed chunk per generated token; the context then holds prompt + generated tokens.
    generated = len(pieces)
    return {"text": "".join(pieces), "first_token_s": first, "total_s": total,
            "generated_tokens": generated, "prompt_tokens": llm.n_tokens - generated}


if __name__ == "__main__":
    main()

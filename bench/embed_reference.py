"""The reference side of the embedding benchmark: sentence-transformers on the same texts.

usage: python bench/embed_reference.py MODEL_DIR TEXTS_FILE BATCH_SIZE THREADS
prints one JSON line: {"sentences", "seconds", "per_second", "torch", "threads"}
"""
import json
import sys
import time

import torch
from sentence_transformers import SentenceTransformer

model_dir, texts_file, batch, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
texts = [line.rstrip("\n") for line in open(texts_file, encoding="utf-8")]
model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=batch)  # warm-up
start = time.perf_counter()
model.encode(texts, batch_size=batch)
secs = time.perf_counter() - start
print(json.dumps({"sentences": len(texts), "seconds": secs, "per_second": len(texts) / secs,
                  "torch": torch.__version__, "threads": torch.get_num_threads()}))

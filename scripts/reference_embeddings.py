"""Writes golden embeddings from the Python reference (sentence-transformers) for Quarry's model test.

Run once, by hand, after scripts/setup.sh (needs `pip install sentence-transformers`):
    python scripts/reference_embeddings.py [MODEL_DIR] > crates/quarry-models/tests/data/minilm_reference.json
"""
import json
import os
import sys

from sentence_transformers import SentenceTransformer

CACHE = os.environ.get("QUARRY_CACHE", os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "quarry"))
model_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(CACHE, "models", "all-MiniLM-L6-v2")

TEXTS = [
    "Hello world",
    "0-dimensional biomaterials lack inductive properties.",
    "The quick brown fox jumps over the lazy dog, while the café owner naïvely counts €5 notes.",
    "BRCA1 mutations increase the lifetime risk of breast cancer; screening with MRI is recommended from age 30.",
    "   leading and trailing spaces   ",
    "日本語のテキストと English mixed together.",
    "x",
    # Longer than max_seq_length (256 word pieces): checks truncation matches.
    " ".join(["Alterations of the architecture of cerebral white matter in the developing human brain "
              "can affect cortical development and result in functional disabilities."] * 12),
]

model = SentenceTransformer(model_dir, device="cpu")
vectors = model.encode(TEXTS, batch_size=4, normalize_embeddings=False, convert_to_numpy=True)
json.dump(
    {
        "model": "all-MiniLM-L6-v2",
        "reference": "sentence-transformers " + __import__("sentence_transformers").__version__,
        "max_seq_length": model.max_seq_length,
        "texts": TEXTS,
        "embeddings": [[round(float(x), 7) for x in v] for v in vectors],
    },
    sys.stdout,
)

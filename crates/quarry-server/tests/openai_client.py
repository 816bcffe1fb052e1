"""Drives `quarry serve` with the official openai client; run by tests/server/openai.rs.

Reads QUARRY_BASE_URL and QUARRY_API_KEY; exits non-zero on the first failed check.
"""
import os

import openai

client = openai.OpenAI(base_url=os.environ["QUARRY_BASE_URL"], api_key=os.environ["QUARRY_API_KEY"])

ids = [m.id for m in client.models.list()]
assert "quarry" in ids and "quarry-extractive" in ids, ids

# The client asks for base64 by default and decodes it itself.
emb = client.embeddings.create(model="quarry", input=["kiln", "glaze"])
assert len(emb.data) == 2, emb
assert len(emb.data[0].embedding) == 256, len(emb.data[0].embedding)
floats = client.embeddings.create(model="quarry", input="kiln", encoding_format="float")
assert all(abs(a - b) < 1e-6 for a, b in zip(floats.data[0].embedding, emb.data[0].embedding))

question = [{"role": "user", "content": "How long must the kiln cool?"}]
resp = client.chat.completions.create(model="quarry-extractive", messages=question)
text = resp.choices[0].message.content
assert "twelve hours" in text and "[1]" in text, text
assert resp.choices[0].finish_reason == "stop"
ext = resp.model_extra["quarry"]
assert ext["citations"][0]["doc_id"] == "upload://acme/kiln.txt", ext
assert ext["query_id"], ext

pieces, final = [], None
for chunk in client.chat.completions.create(model="quarry-extractive", messages=question, stream=True):
    if chunk.choices and chunk.choices[0].delta.content:
        pieces.append(chunk.choices[0].delta.content)
    if chunk.choices and chunk.choices[0].finish_reason == "stop":
        final = chunk
assert "".join(pieces) == text, ("".join(pieces), text)
assert final is not None and final.model_extra["quarry"]["citations"][0]["doc_id"] == "upload://acme/kiln.txt"

bad = openai.OpenAI(base_url=os.environ["QUARRY_BASE_URL"], api_key="qk_000000000000_wrong", max_retries=0)
try:
    bad.models.list()
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as e:
    assert "API key" in str(e), e

print("openai client: all checks passed")

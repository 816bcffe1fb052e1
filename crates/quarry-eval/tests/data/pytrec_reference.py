"""Reference values for quarry-eval's metric test, computed by pytrec_eval (trec_eval's own C code).

    python pytrec_reference.py RUN QRELS OUT.json

RUN is a TREC run file, QRELS TREC or BEIR qrels. Writes {measure: {query: value}} for the Quarry measure
names the test checks. MRR@k and MAP@k use trec_eval's `recip_rank` / `map` on the run cut to its top k
(ranked as trec_eval ranks: score descending, then document id descending).
Requires: pip install pytrec-eval-terrier
"""
import json
import sys

import pytrec_eval


def read_run(path):
    run = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 6:
                continue
            q, _, d, _, s, _ = parts
            run.setdefault(q, {})[d] = float(s)
    return run


def read_qrels(path):
    qrels = {}
    with open(path) as f:
        for i, line in enumerate(f):
            parts = line.split()
            if len(parts) == 3:
                q, d, g = parts
            elif len(parts) == 4:
                q, _, d, g = parts
            else:
                continue
            try:
                g = int(g)
            except ValueError:
                continue  # BEIR header
            qrels.setdefault(q, {})[d] = g
    return qrels


def cut(run, k):
    out = {}
    for q, docs in run.items():
        ranked = sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)[:k]
        out[q] = dict(ranked)
    return out


def main():
    run_path, qrels_path, out_path = sys.argv[1:4]
    run, qrels = read_run(run_path), read_qrels(qrels_path)
    plain = {
        "ndcg@5": "ndcg_cut_5", "ndcg@10": "ndcg_cut_10", "ndcg@100": "ndcg_cut_100", "ndcg": "ndcg",
        "recall@5": "recall_5", "recall@10": "recall_10", "recall@100": "recall_100", "recall": "set_recall",
        "p@1": "P_1", "p@5": "P_5", "p@10": "P_10", "p": "set_P",
        "mrr": "recip_rank", "map": "map", "map@10": "map_cut_10", "map@100": "map_cut_100",
        "hit@1": "success_1", "hit@5": "success_5", "hit@10": "success_10", "r-prec": "Rprec",
    }
    ev = pytrec_eval.RelevanceEvaluator(qrels, set(plain.values()))
    res = ev.evaluate(run)
    out = {ours: {q: v[theirs] for q, v in res.items()} for ours, theirs in plain.items()}
    for k in (1, 10):
        r = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut(run, k))
        out[f"mrr@{k}"] = {q: v["recip_rank"] for q, v in r.items()}
    out["_meta"] = {"pytrec_eval": getattr(pytrec_eval, "__version__", "unknown"), "queries": len(res)}
    with open(out_path, "w") as f:
        json.dump(out, f, indent=0, sort_keys=True)


if __name__ == "__main__":
    main()

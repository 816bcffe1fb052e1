//! Hierarchical navigable small world graph (Malkov & Yashunin, 2018) over unit vectors, scored by
//! dot product (= cosine). Written for Quarry's needs: removal by tombstone, a filter evaluated
//! *during* the walk (non-matching nodes are traversed but never returned), batch inserts that link
//! nodes on all cores, and a compact file format.
//!
//! Each node's links sit behind their own small lock, so a batch links its nodes in parallel (as
//! hnswlib does): a search copies a node's links out under the lock and scores them outside it.
//! Visited marks are per-thread arrays of epoch stamps, reused across searches.

use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::io::{Read, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};

use quarry_core::vector::dot;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construction: usize,
}

/// A scored node; ordered by score so heaps can be max- or min-heaps.
#[derive(Clone, Copy, PartialEq)]
struct Scored(f32, u32);
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scored {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// `links[level]`: a node's neighbours at each of its levels.
type Levels = Vec<Vec<u32>>;

/// Visited marks for one search: a node is visited when its stamp equals the current epoch, so
/// starting a new search is one increment instead of clearing a set.
struct Visited {
    stamps: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn start(&mut self, nodes: usize) {
        if self.stamps.len() < nodes {
            self.stamps.resize(nodes, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamps.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; false if it was already marked in this search.
    fn insert(&mut self, node: u32) -> bool {
        let s = &mut self.stamps[node as usize];
        let fresh = *s != self.epoch;
        *s = self.epoch;
        fresh
    }
}

thread_local! {
    static VISITED: RefCell<Visited> = const { RefCell::new(Visited { stamps: Vec::new(), epoch: 0 }) };
}

pub struct Hnsw {
    dim: usize,
    params: HnswParams,
    vectors: Vec<f32>,
    ids: Vec<u64>,
    node_of: HashMap<u64, u32>,
    links: Vec<Mutex<Levels>>,
    deleted: Vec<bool>,
    deleted_count: usize,
    entry: Option<u32>,
    rng: u64,
}

impl Hnsw {
    pub fn new(dim: usize, params: HnswParams) -> Self {
        Hnsw {
            dim,
            params: HnswParams {
                m: params.m.max(2),
                ef_construction: params.ef_construction.max(params.m),
            },
            vectors: Vec::new(),
            ids: Vec::new(),
            node_of: HashMap::new(),
            links: Vec::new(),
            deleted: Vec::new(),
            deleted_count: 0,
            entry: None,
            rng: 0x9E3779B97F4A7C15,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Live (not removed) vectors.
    pub fn len(&self) -> usize {
        self.ids.len() - self.deleted_count
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Share of nodes that are tombstones; the owner rebuilds the graph when this grows large.
    pub fn deleted_fraction(&self) -> f64 {
        if self.ids.is_empty() {
            0.0
        } else {
            self.deleted_count as f64 / self.ids.len() as f64
        }
    }

    pub fn contains(&self, id: u64) -> bool {
        self.node_of.get(&id).is_some_and(|&n| !self.deleted[n as usize])
    }

    fn vec(&self, node: u32) -> &[f32] {
        let s = node as usize * self.dim;
        &self.vectors[s..s + self.dim]
    }

    fn lock(&self, node: u32) -> MutexGuard<'_, Levels> {
        // A panic while holding a node's links cannot leave them invalid (every write is a whole
        // list of valid node ids), so a poisoned lock is still usable.
        self.links[node as usize].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Top level of a node.
    fn top(&self, node: u32) -> usize {
        self.lock(node).len() - 1
    }

    /// Copies a node's links at `level` into `buf` (empty if the node has no such level).
    fn neighbours(&self, node: u32, level: usize, buf: &mut Vec<u32>) {
        buf.clear();
        if let Some(l) = self.lock(node).get(level) {
            buf.extend_from_slice(l);
        }
    }

    fn max_links(&self, level: usize) -> usize {
        if level == 0 {
            2 * self.params.m
        } else {
            self.params.m
        }
    }

    fn random_level(&mut self) -> usize {
        // xorshift64*: deterministic, so the same inserts draw the same levels.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545F4914F6CDD1D);
        let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.params.m as f64).ln();
        ((-u.ln() * ml) as usize).min(16)
    }

    /// Inserts a vector (replacing any live vector with the same id).
    pub fn insert(&mut self, id: u64, v: &[f32]) {
        self.insert_batch(&[(id, v)]);
    }

    /// Inserts many vectors (replacing live vectors with the same ids; within the batch the last one
    /// wins). Nodes are registered in order, then linked into the graph in parallel.
    pub fn insert_batch(&mut self, items: &[(u64, &[f32])]) {
        let start = self.ids.len();
        for (id, v) in items {
            assert_eq!(v.len(), self.dim, "vector dimension");
            if self.node_of.contains_key(id) {
                self.remove(*id);
            }
            let node = self.ids.len() as u32;
            let level = self.random_level();
            self.vectors.extend_from_slice(v);
            self.ids.push(*id);
            self.node_of.insert(*id, node);
            self.links.push(Mutex::new(vec![Vec::new(); level + 1]));
            self.deleted.push(false);
        }
        let end = self.ids.len();
        if start == end {
            return;
        }
        let (entry, first) = match self.entry {
            Some(e) => (e, start),
            None => (start as u32, start + 1),
        };
        let shared = Mutex::new((entry, self.top(entry)));
        let this = &*self;
        (first..end)
            .into_par_iter()
            .with_min_len(4)
            .for_each(|node| this.link(node as u32, &shared));
        self.entry = Some(shared.into_inner().unwrap_or_else(PoisonError::into_inner).0);
    }

    /// Links a registered node into the graph: greedy descent from the entry point, then at each of
    /// its levels a beam search, the neighbour heuristic, and links back from the chosen neighbours.
    fn link(&self, node: u32, entry: &Mutex<(u32, usize)>) {
        let level = self.top(node);
        let (mut ep, top) = *entry.lock().unwrap_or_else(PoisonError::into_inner);
        let q = self.vec(node);
        for l in (level + 1..=top).rev() {
            ep = self.greedy(q, ep, l);
        }
        let mut eps = vec![ep];
        for l in (0..=level.min(top)).rev() {
            let found = self.search_layer(q, &eps, self.params.ef_construction, l, &|n| n != node);
            let chosen = self.select_neighbors(&found, self.max_links(l));
            self.lock(node)[l].clone_from(&chosen);
            for &nb in &chosen {
                self.connect(nb, node, l);
            }
            eps = found.iter().map(|s| s.1).collect();
            if eps.is_empty() {
                eps.push(ep);
            }
        }
        if level > top {
            let mut e = entry.lock().unwrap_or_else(PoisonError::into_inner);
            if level > e.1 {
                *e = (node, level);
            }
        }
    }

    /// Adds `to` to `from`'s links at `level`, pruning with the heuristic when over capacity.
    fn connect(&self, from: u32, to: u32, level: usize) {
        let cap = self.max_links(level);
        let mut guard = self.lock(from);
        let Some(links) = guard.get_mut(level) else {
            return;
        };
        if links.contains(&to) {
            return;
        }
        if links.len() < cap {
            links.push(to);
            return;
        }
        let base = self.vec(from);
        let mut cands: Vec<Scored> = links
            .iter()
            .chain(std::iter::once(&to))
            .map(|&n| Scored(dot(base, self.vec(n)), n))
            .collect();
        cands.sort_by(|a, b| b.cmp(a));
        *links = self.select_neighbors(&cands, cap);
    }

    /// The neighbour-selection heuristic: keep a candidate only if it is closer to the base than to
    /// every neighbour already kept, which spreads links across directions; fill up with the rest.
    /// `cands` must be sorted best first.
    fn select_neighbors(&self, cands: &[Scored], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        let mut skipped = Vec::new();
        for c in cands {
            if kept.len() >= m {
                break;
            }
            let v = self.vec(c.1);
            if kept.iter().all(|&k| dot(v, self.vec(k)) < c.0) {
                kept.push(c.1);
            } else {
                skipped.push(c.1);
            }
        }
        for s in skipped {
            if kept.len() >= m {
                break;
            }
            kept.push(s);
        }
        kept
    }

    fn greedy(&self, q: &[f32], mut ep: u32, level: usize) -> u32 {
        let mut best = dot(q, self.vec(ep));
        let mut buf = Vec::new();
        loop {
            let mut moved = false;
            self.neighbours(ep, level, &mut buf);
            for &n in &buf {
                let s = dot(q, self.vec(n));
                if s > best {
                    best = s;
                    ep = n;
                    moved = true;
                }
            }
            if !moved {
                return ep;
            }
        }
    }

    /// Beam search at one level. Returns up to `ef` nodes accepted by `accept`, best first; every
    /// node is traversed, accepted or not, so a filter does not cut the graph apart.
    fn search_layer(
        &self,
        q: &[f32],
        eps: &[u32],
        ef: usize,
        level: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<Scored> {
        VISITED.with(|cell| {
            let mut visited = cell.borrow_mut();
            visited.start(self.ids.len());
            let mut candidates: BinaryHeap<Scored> = BinaryHeap::new();
            let mut results: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
            for &ep in eps {
                if visited.insert(ep) {
                    let s = Scored(dot(q, self.vec(ep)), ep);
                    candidates.push(s);
                    if accept(ep) {
                        results.push(Reverse(s));
                    }
                }
            }
            let mut buf = Vec::with_capacity(2 * self.params.m);
            // Once `ef` results are held, stop when the best remaining candidate cannot beat the
            // worst result.
            while let Some(c) = candidates.pop() {
                if results.len() >= ef && results.peek().is_some_and(|w| c.0 < w.0 .0) {
                    break;
                }
                self.neighbours(c.1, level, &mut buf);
                for &n in &buf {
                    if !visited.insert(n) {
                        continue;
                    }
                    let s = Scored(dot(q, self.vec(n)), n);
                    let full = results.len() >= ef;
                    if !full || results.peek().is_some_and(|w| s.0 > w.0 .0) {
                        candidates.push(s);
                        if accept(n) {
                            results.push(Reverse(s));
                            if results.len() > ef {
                                results.pop();
                            }
                        }
                    }
                }
            }
            let mut out: Vec<Scored> = results.into_iter().map(|r| r.0).collect();
            out.sort_by(|a, b| b.cmp(a));
            out
        })
    }

    /// The `k` best live vectors for which `filter(id)` holds, with their dot-product scores.
    pub fn search(&self, q: &[f32], k: usize, ef: usize, filter: &dyn Fn(u64) -> bool) -> Vec<(u64, f32)> {
        let Some(mut ep) = self.entry else {
            return vec![];
        };
        if k == 0 {
            return vec![];
        }
        for l in (1..=self.top(ep)).rev() {
            ep = self.greedy(q, ep, l);
        }
        let accept = |n: u32| !self.deleted[n as usize] && filter(self.ids[n as usize]);
        let found = self.search_layer(q, &[ep], ef.max(k), 0, &accept);
        found
            .into_iter()
            .take(k)
            .map(|s| (self.ids[s.1 as usize], s.0))
            .collect()
    }

    /// Exact search over the given ids (used when a filter leaves few candidates).
    pub fn exact(&self, q: &[f32], k: usize, ids: impl Iterator<Item = u64>) -> Vec<(u64, f32)> {
        let mut heap: BinaryHeap<Reverse<Scored>> = BinaryHeap::new();
        for id in ids {
            let Some(&n) = self.node_of.get(&id) else {
                continue;
            };
            if self.deleted[n as usize] {
                continue;
            }
            let s = Scored(dot(q, self.vec(n)), n);
            if heap.len() < k {
                heap.push(Reverse(s));
            } else if heap.peek().is_some_and(|w| s > w.0) {
                heap.pop();
                heap.push(Reverse(s));
            }
        }
        let mut out: Vec<Scored> = heap.into_iter().map(|r| r.0).collect();
        out.sort_by(|a, b| b.cmp(a));
        out.into_iter().map(|s| (self.ids[s.1 as usize], s.0)).collect()
    }

    /// Tombstones a vector; it stays in the graph as a waypoint but is never returned.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.node_of.remove(&id) {
            Some(n) if !self.deleted[n as usize] => {
                self.deleted[n as usize] = true;
                self.deleted_count += 1;
                true
            }
            _ => false,
        }
    }

    pub fn live_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.ids
            .iter()
            .zip(&self.deleted)
            .filter(|(_, d)| !**d)
            .map(|(id, _)| *id)
    }

    const MAGIC: &'static [u8; 8] = b"QHNSW\0\0\x01";

    /// Writes the graph with a caller-chosen tag (the store generation it reflects).
    pub fn write_to(&self, w: &mut impl Write, tag: u64) -> std::io::Result<()> {
        let u = |w: &mut dyn Write, x: u64| w.write_all(&x.to_le_bytes());
        w.write_all(Self::MAGIC)?;
        for x in [
            tag,
            self.dim as u64,
            self.params.m as u64,
            self.params.ef_construction as u64,
            self.ids.len() as u64,
        ] {
            u(w, x)?;
        }
        u(w, self.entry.map_or(u64::MAX, u64::from))?;
        u(w, self.rng)?;
        for f in &self.vectors {
            w.write_all(&f.to_le_bytes())?;
        }
        for node in 0..self.ids.len() {
            u(w, self.ids[node])?;
            let levels = self.lock(node as u32);
            w.write_all(&[self.deleted[node] as u8, levels.len() as u8])?;
            for level in levels.iter() {
                w.write_all(&(level.len() as u32).to_le_bytes())?;
                for n in level {
                    w.write_all(&n.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Reads a graph written by `write_to`; returns it with its tag.
    pub fn read_from(r: &mut impl Read) -> std::io::Result<(Hnsw, u64)> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != Self::MAGIC {
            return Err(bad("not a Quarry HNSW file"));
        }
        let mut u = || -> std::io::Result<u64> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        };
        let (tag, dim, m, efc, n, entry, rng) = (
            u()?,
            u()? as usize,
            u()? as usize,
            u()? as usize,
            u()? as usize,
            u()?,
            u()?,
        );
        if dim == 0 || dim > 65_536 || n > (1 << 32) {
            return Err(bad("corrupt HNSW header"));
        }
        let mut h = Hnsw::new(
            dim,
            HnswParams {
                m,
                ef_construction: efc,
            },
        );
        h.rng = rng;
        let mut buf = vec![0u8; n * dim * 4];
        r.read_exact(&mut buf)?;
        h.vectors = buf
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        for node in 0..n {
            let mut b8 = [0u8; 8];
            r.read_exact(&mut b8)?;
            let id = u64::from_le_bytes(b8);
            let mut flags = [0u8; 2];
            r.read_exact(&mut flags)?;
            let mut levels = Vec::with_capacity(flags[1] as usize);
            for _ in 0..flags[1] {
                let mut b4 = [0u8; 4];
                r.read_exact(&mut b4)?;
                let len = u32::from_le_bytes(b4) as usize;
                let mut raw = vec![0u8; len * 4];
                r.read_exact(&mut raw)?;
                let links: Vec<u32> = raw
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                if links.iter().any(|&l| l as usize >= n) {
                    return Err(bad("corrupt HNSW link"));
                }
                levels.push(links);
            }
            if levels.is_empty() {
                return Err(bad("corrupt HNSW node"));
            }
            h.ids.push(id);
            h.links.push(Mutex::new(levels));
            h.deleted.push(flags[0] != 0);
            if flags[0] != 0 {
                h.deleted_count += 1;
            } else {
                h.node_of.insert(id, node as u32);
            }
        }
        h.entry = if entry == u64::MAX { None } else { Some(entry as u32) };
        if h.entry.is_some_and(|e| e as usize >= n) {
            return Err(bad("corrupt HNSW entry point"));
        }
        Ok((h, tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let mut v: Vec<f32> = (0..dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2000) as f32 / 1000.0 - 1.0
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }

    fn build(n: u64, dim: usize) -> Hnsw {
        let mut h = Hnsw::new(
            dim,
            HnswParams {
                m: 16,
                ef_construction: 100,
            },
        );
        for i in 0..n {
            h.insert(i, &unit(i, dim));
        }
        h
    }

    #[test]
    fn recall_against_exact_search() {
        let (n, dim) = (3000, 32);
        let h = build(n, dim);
        let mut hits = 0;
        let queries = 100;
        for qi in 0..queries {
            let q = unit(1_000_000 + qi, dim);
            let exact: Vec<u64> = h.exact(&q, 10, 0..n).into_iter().map(|x| x.0).collect();
            let approx: Vec<u64> = h.search(&q, 10, 64, &|_| true).into_iter().map(|x| x.0).collect();
            hits += approx.iter().filter(|id| exact.contains(id)).count();
        }
        let recall = hits as f64 / (queries * 10) as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn a_parallel_batch_builds_a_graph_as_good_as_one_by_one_inserts() {
        let (n, dim) = (3000u64, 32);
        let vectors: Vec<Vec<f32>> = (0..n).map(|i| unit(i, dim)).collect();
        let mut h = Hnsw::new(
            dim,
            HnswParams {
                m: 16,
                ef_construction: 100,
            },
        );
        // Two batches, the second replacing 100 ids of the first and naming one id twice.
        let first: Vec<(u64, &[f32])> = (0..n).map(|i| (i, vectors[i as usize].as_slice())).collect();
        h.insert_batch(&first[..2000]);
        let mut second: Vec<(u64, &[f32])> = first[2000..].to_vec();
        second.extend((0..100u64).map(|i| (i, vectors[(i + 1) as usize].as_slice())));
        second.push((7, vectors[7].as_slice()));
        h.insert_batch(&second);
        assert_eq!(h.len(), n as usize);
        assert_eq!(h.deleted_fraction(), 101.0 / h.ids.len() as f64);
        // Ids below 100 now hold the next id's vector, except 7, which holds its own again (the last write
        // in the batch wins): vector 7 is stored under ids 6 and 7, vector 9 under id 8 only.
        let mut top: Vec<u64> = h.search(&vectors[7], 2, 200, &|_| true).iter().map(|x| x.0).collect();
        top.sort_unstable();
        assert_eq!(top, vec![6, 7]);
        assert_eq!(h.search(&vectors[9], 1, 200, &|_| true)[0].0, 8);
        let mut hits = 0;
        for qi in 0..100 {
            let q = unit(1_000_000 + qi, dim);
            let exact: Vec<u64> = h.exact(&q, 10, 0..n).into_iter().map(|x| x.0).collect();
            let approx: Vec<u64> = h.search(&q, 10, 64, &|_| true).into_iter().map(|x| x.0).collect();
            hits += approx.iter().filter(|id| exact.contains(id)).count();
        }
        assert!(hits as f64 / 1000.0 >= 0.95, "recall@10 {}", hits as f64 / 1000.0);
    }

    #[test]
    fn filter_and_removal_apply_inside_the_walk() {
        let (n, dim) = (2000, 16);
        let mut h = build(n, dim);
        for id in (0..n).filter(|i| i % 10 == 0) {
            assert!(h.remove(id));
        }
        assert_eq!(h.len(), 1800);
        let q = unit(42_000, dim);
        let even = |id: u64| id.is_multiple_of(2);
        let got = h.search(&q, 20, 128, &even);
        assert_eq!(got.len(), 20, "top-k of the matching set, not top-k then dropped");
        assert!(got.iter().all(|(id, _)| id % 2 == 0 && id % 10 != 0));
        let exact = h.exact(&q, 20, (0..n).filter(|i| even(*i)));
        let overlap = got.iter().filter(|g| exact.iter().any(|e| e.0 == g.0)).count();
        assert!(overlap >= 18, "filtered recall {overlap}/20");
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "sorted by score");
    }

    #[test]
    fn round_trips_through_its_file_format() {
        let mut h = build(500, 8);
        h.remove(3);
        let mut buf = Vec::new();
        h.write_to(&mut buf, 77).unwrap();
        let (back, tag) = Hnsw::read_from(&mut buf.as_slice()).unwrap();
        assert_eq!(tag, 77);
        assert_eq!(back.len(), 499);
        let q = unit(9999, 8);
        assert_eq!(back.search(&q, 5, 50, &|_| true), h.search(&q, 5, 50, &|_| true));
        assert!(Hnsw::read_from(&mut &buf[..buf.len() / 2]).is_err());
        assert!(Hnsw::read_from(&mut &b"garbage!garbage!"[..]).is_err());
    }
}

//! AdamW with decoupled weight decay, a warm-up + linear-decay schedule, and state that can be saved to
//! and restored from a checkpoint (candle's own AdamW keeps its moments private).

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};

use crate::error::{Error, Result};

pub struct AdamW {
    /// (name, parameter, first moment, second moment)
    slots: Vec<(String, Var, Tensor, Tensor)>,
    /// Learning-rate multiplier per slot (1 by default).
    scales: Vec<f64>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: usize,
}

impl AdamW {
    pub fn new(params: &[(String, Var)], weight_decay: f64) -> Result<Self> {
        let slots = params
            .iter()
            .map(|(n, v)| Ok((n.clone(), v.clone(), v.zeros_like()?, v.zeros_like()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(AdamW {
            scales: vec![1.0; slots.len()],
            slots,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay,
            step: 0,
        })
    }

    /// Multiplies the learning rate of the parameters whose names start with `prefix` (e.g. a freshly
    /// initialised head that must move faster than the pretrained encoder under it).
    pub fn scale_learning_rate(&mut self, prefix: &str, factor: f64) {
        for ((name, ..), scale) in self.slots.iter().zip(&mut self.scales) {
            if name.starts_with(prefix) {
                *scale = factor;
            }
        }
    }

    /// One update with learning rate `lr` from the gradients of `grads` (divided by `accumulated`, the number
    /// of micro-batches they were summed over). Biases and LayerNorm weights get no weight decay.
    pub fn update(&mut self, grads: &Gradients, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        let scale = 1.0 / grads.micro_batches.max(1) as f64;
        for ((name, var, m, v), lr_scale) in self.slots.iter_mut().zip(&self.scales) {
            let Some(g) = grads.get(var) else { continue };
            let lr = lr * lr_scale;
            let g = (g * scale)?;
            *m = ((&*m * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&*v / c2)?.sqrt()? + self.eps)?;
            let step = ((&*m / c1)? / denom)?;
            let decay = if name.ends_with(".bias") || name.contains("LayerNorm") {
                0.0
            } else {
                self.weight_decay
            };
            let theta = var.as_tensor();
            let next = ((theta * (1.0 - lr * decay))? - (step * lr)?)?;
            var.set(&next)?;
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (name, _, m, v) in &self.slots {
            map.insert(format!("m.{name}"), m.clone());
            map.insert(format!("v.{name}"), v.clone());
        }
        map.insert("step".into(), Tensor::new(&[self.step as u32], &Device::Cpu)?);
        candle_core::safetensors::save(&map, path).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| Error::Model {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let missing = |n: &str| Error::Model {
            path: path.to_path_buf(),
            message: format!("optimizer state {n} is missing"),
        };
        for (name, _, m, v) in &mut self.slots {
            *m = map.get(&format!("m.{name}")).ok_or_else(|| missing(name))?.clone();
            *v = map.get(&format!("v.{name}")).ok_or_else(|| missing(name))?.clone();
        }
        let step = map.get("step").ok_or_else(|| missing("step"))?.to_vec1::<u32>()?;
        self.step = step.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

/// Gradients summed over one or more micro-batches (gradient accumulation).
#[derive(Default)]
pub struct Gradients {
    sums: HashMap<candle_core::TensorId, Tensor>,
    pub micro_batches: usize,
}

impl Gradients {
    /// Adds the gradients of one micro-batch.
    pub fn add(&mut self, store: GradStore, vars: &[(String, Var)]) -> Result<()> {
        self.add_part(store, vars)?;
        self.micro_batches += 1;
        Ok(())
    }

    /// Adds gradients that are one part of a micro-batch (the micro-batch count is unchanged).
    pub fn add_part(&mut self, store: GradStore, vars: &[(String, Var)]) -> Result<()> {
        let mut store = store;
        for (_, var) in vars {
            if let Some(g) = store.remove(var.as_tensor()) {
                let id = var.as_tensor().id();
                let sum = match self.sums.remove(&id) {
                    Some(prev) => (prev + g)?,
                    None => g,
                };
                self.sums.insert(id, sum);
            }
        }
        Ok(())
    }

    fn get(&self, var: &Var) -> Option<&Tensor> {
        self.sums.get(&var.as_tensor().id())
    }

    /// The global L2 norm of the summed gradients, for clipping and logging.
    /// Counts a micro-batch whose parts were added with [`Gradients::add_part`].
    pub fn finish_micro_batch(&mut self) {
        self.micro_batches += 1;
    }

    pub fn norm(&self) -> Result<f64> {
        let mut total = 0.0f64;
        for g in self.sums.values() {
            total += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        Ok(total.sqrt() / self.micro_batches.max(1) as f64)
    }

    /// Scales the gradients so that their norm is at most `max_norm`; returns the norm before clipping.
    pub fn clip(&mut self, max_norm: f64) -> Result<f64> {
        let norm = self.norm()?;
        if norm > max_norm && norm > 0.0 {
            let factor = max_norm / norm;
            for g in self.sums.values_mut() {
                *g = (&*g * factor)?;
            }
        }
        Ok(norm)
    }
}

/// Linear warm-up from 0 to `peak` over `warmup` steps, then linear decay to 0 at `total`.
pub fn learning_rate(step: usize, warmup: usize, total: usize, peak: f64) -> f64 {
    if warmup > 0 && step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let rest = total.saturating_sub(warmup).max(1);
    let done = step.saturating_sub(warmup);
    peak * (1.0 - done as f64 / rest as f64).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert!((learning_rate(0, 10, 100, 1.0) - 0.1).abs() < 1e-12);
        assert!((learning_rate(9, 10, 100, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(10, 10, 100, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 10, 100, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(learning_rate(100, 10, 100, 1.0), 0.0);
        assert_eq!(learning_rate(5, 0, 10, 2.0), 1.0);
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_its_state_round_trips() {
        let x = Var::from_tensor(&Tensor::new(&[3.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let params = vec![("w".to_string(), x.clone())];
        let mut opt = AdamW::new(&params, 0.0).unwrap();
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let mut g = Gradients::default();
            g.add(loss.backward().unwrap(), &params).unwrap();
            opt.update(&g, 0.05).unwrap();
        }
        let v = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        opt.save(&path).unwrap();
        let mut fresh = AdamW::new(&params, 0.0).unwrap();
        fresh.load(&path).unwrap();
        assert_eq!(fresh.step, 300);
        let (a, b) = (&opt.slots[0].3, &fresh.slots[0].3);
        assert_eq!(a.to_vec1::<f32>().unwrap(), b.to_vec1::<f32>().unwrap());
    }

    #[test]
    fn accumulated_gradients_average_over_micro_batches() {
        let x = Var::from_tensor(&Tensor::new(&[1.0f32], &Device::Cpu).unwrap()).unwrap();
        let params = vec![("w".to_string(), x.clone())];
        let mut g = Gradients::default();
        for k in [2.0f64, 4.0] {
            let loss = (x.as_tensor() * k).unwrap().sum_all().unwrap();
            g.add(loss.backward().unwrap(), &params).unwrap();
        }
        // Sum 6 over 2 micro-batches: mean gradient 3.
        assert!((g.norm().unwrap() - 3.0).abs() < 1e-6);
    }
}

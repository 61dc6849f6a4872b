//! Lazy (sparse) Adam for the embedding table.
//!
//! burn computes embedding gradients densely: every step would allocate and update the whole
//! `[vocab, dim]` table, which is where training time goes. A bag-of-embeddings batch touches a
//! few thousand rows, so textclf gathers those rows into a small batch-local table, lets burn's
//! autodiff produce its gradient, and applies Adam here to just those rows (the "lazy Adam" of
//! TensorFlow Addons: moments of untouched rows are left alone; bias correction uses the global
//! step). The dense layers are trained with burn's own Adam.

/// Adam state for a row-major `[rows, dim]` table.
pub struct SparseAdam {
    dim: usize,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
    beta1: f32,
    beta2: f32,
    epsilon: f32,
}

impl SparseAdam {
    pub fn new(rows: usize, dim: usize) -> Self {
        SparseAdam {
            dim,
            m: vec![0.0; rows * dim],
            v: vec![0.0; rows * dim],
            step: 0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }

    /// Applies one Adam step. `rows[i]` is the table row whose gradient is `grads[i*dim..(i+1)*dim]`;
    /// each row must appear once.
    pub fn step(&mut self, table: &mut [f32], rows: &[u32], grads: &[f32], lr: f32) {
        debug_assert_eq!(rows.len() * self.dim, grads.len());
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - self.beta1.powi(t);
        let c2 = 1.0 - self.beta2.powi(t);
        let step_size = lr * c2.sqrt() / c1;
        let (b1, b2, eps, d) = (self.beta1, self.beta2, self.epsilon, self.dim);
        for (i, &row) in rows.iter().enumerate() {
            let base = row as usize * d;
            let g = &grads[i * d..(i + 1) * d];
            let m = &mut self.m[base..base + d];
            let v = &mut self.v[base..base + d];
            let w = &mut table[base..base + d];
            for j in 0..d {
                m[j] = b1 * m[j] + (1.0 - b1) * g[j];
                v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
                w[j] -= step_size * m[j] / (v[j].sqrt() + eps * c2.sqrt());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_each_touched_weight_by_lr_against_the_gradient_sign() {
        // With zero moments, Adam's first update is lr * g/|g| (up to epsilon).
        let mut adam = SparseAdam::new(3, 2);
        let mut table = vec![1.0; 6];
        adam.step(&mut table, &[2], &[0.5, -4.0], 0.1);
        assert_eq!(&table[0..4], &[1.0, 1.0, 1.0, 1.0], "untouched rows stay");
        assert!((table[4] - 0.9).abs() < 1e-5, "{}", table[4]);
        assert!((table[5] - 1.1).abs() < 1e-5, "{}", table[5]);
    }

    #[test]
    fn minimises_a_quadratic() {
        // f(w) = (w - 3)^2 per element; Adam must drive w to 3.
        let mut adam = SparseAdam::new(1, 1);
        let mut w = vec![0.0];
        for _ in 0..2000 {
            let g = 2.0 * (w[0] - 3.0);
            adam.step(&mut w, &[0], &[g], 0.05);
        }
        assert!((w[0] - 3.0).abs() < 1e-2, "{}", w[0]);
    }
}

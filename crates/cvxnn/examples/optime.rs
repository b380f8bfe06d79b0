use cvxnn::linalg::Matrix;
use cvxnn::operator::{ArrangementOperator, Layout, LinearMap};
use cvxnn::patterns::sample_patterns;
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args[1].parse().unwrap();
    let d: usize = args[2].parse().unwrap();
    let p: usize = args[3].parse().unwrap();
    let mut x = Matrix::zeros(n, d);
    for (i, v) in x.as_mut_slice().iter_mut().enumerate() { *v = ((i * 7919) % 1000) as f64 / 500.0 - 1.0; }
    let pats = sample_patterns(&x, p, 0).unwrap();
    for layout in [Layout::Gated, Layout::Relu, Layout::ReluConstrained] {
        let op = ArrangementOperator::new(&x, &pats.masks, layout);
        let v = vec![0.1; op.n_vars()];
        let mut z = vec![0.0; op.image_len()];
        let mut g = vec![0.0; op.n_vars()];
        let reps = 200;
        let t = std::time::Instant::now();
        for _ in 0..reps { op.apply(&v, &mut z); }
        let ta = t.elapsed().as_secs_f64() / reps as f64;
        let t = std::time::Instant::now();
        for _ in 0..reps { op.adjoint(&z, &mut g); }
        let tb = t.elapsed().as_secs_f64() / reps as f64;
        // plain gemm of the same shape
        let k = op.n_vars() / d;
        let vm = Matrix::from_col_major(d, k, v.clone()).unwrap();
        let t = std::time::Instant::now();
        for _ in 0..reps { let _ = x.matmul(&vm); }
        let tg = t.elapsed().as_secs_f64() / reps as f64;
        println!("{layout:?} P={} apply {:.3} ms adjoint {:.3} ms, plain gemm {:.3} ms", pats.masks.len(), ta*1e3, tb*1e3, tg*1e3);
    }
}

//! Fourier features of 1-D signals for the linear two-layer circular CNN (DESIGN section 2,
//! "Circular CNNs"; the derivation is in DESIGN section 11).
//!
//! Conventions. A signal `x` has length `L`, indices `0..L`. The DFT is the unnormalized
//! `x̂_f = sum_t x_t e^{-2 pi i f t / L}` (realfft's forward transform), so circular convolution
//! `(u ⊛ x)_t = sum_s u_s x_{(t - s) mod L}` becomes `û_f x̂_f`, and Parseval reads
//! `<a, b> = (1/L) sum_f conj(â_f) b̂_f` for real `a, b`. For real signals `x̂_{L-f} = conj(x̂_f)`,
//! so only the `G = floor(L/2) + 1` frequencies `f = 0..=L/2` of the real FFT are independent.
//!
//! Features. Sample `x` gets `2G` features, one `(Re x̂_f, Im x̂_f)` pair per independent
//! frequency (column `2f` and `2f + 1`). `Im x̂_0 = 0` (and `Im x̂_{L/2} = 0` for even `L`), so those
//! columns are exactly zero: their coefficient never moves the prediction and, starting at
//! zero, the prox keeps it at zero. This lets one `GroupL2` with group size 2 and unit weights
//! express the exact penalty (see [`coefficients_to_spectrum`]).

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::LinearMap;
use crate::linalg::Matrix;
use crate::{CvxnnError, Result};

/// Number of independent frequencies of a real signal of length `len`: `floor(len/2) + 1`.
pub fn fourier_groups(len: usize) -> usize {
    len / 2 + 1
}

/// Whether frequency `f` of a length-`len` signal is its own conjugate partner (`f = 0`, or
/// `f = len/2` for even `len`): its DFT coefficient of a real signal is real.
fn self_conjugate(f: usize, len: usize) -> bool {
    f == 0 || 2 * f == len
}

fn check_len(len: usize) -> Result<()> {
    if len == 0 {
        return Err(CvxnnError::arg("signal length", "must be at least 1"));
    }
    Ok(())
}

/// Forward real FFT of `signal` (length `L >= 1`): the `G` coefficients `x̂_0..x̂_{L/2}`, with the
/// imaginary parts of self-conjugate frequencies set to exactly zero (they are zero in exact
/// arithmetic; the FFT may leave rounding there).
pub fn real_spectrum(signal: &[f64]) -> Result<Vec<Complex<f64>>> {
    check_len(signal.len())?;
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(signal.len());
    spectrum_with(&*fft, signal)
}

fn spectrum_with(fft: &dyn RealToComplex<f64>, signal: &[f64]) -> Result<Vec<Complex<f64>>> {
    let len = signal.len();
    // realfft uses its input as scratch space: copy it.
    let mut input = signal.to_vec();
    let mut out = fft.make_output_vec();
    fft.process(&mut input, &mut out)
        .map_err(|e| CvxnnError::Numerical(format!("real FFT of length {len}: {e}")))?;
    for (f, c) in out.iter_mut().enumerate() {
        if self_conjugate(f, len) {
            c.im = 0.0;
        }
    }
    Ok(out)
}

/// Inverse of [`real_spectrum`]: the real signal of length `len` whose independent DFT
/// coefficients are `spectrum` (`G` entries; imaginary parts of self-conjugate frequencies are
/// ignored, as they must be zero for a real signal).
pub fn inverse_real_spectrum(spectrum: &[Complex<f64>], len: usize) -> Result<Vec<f64>> {
    check_len(len)?;
    if spectrum.len() != fourier_groups(len) {
        return Err(CvxnnError::Shape(format!(
            "{} Fourier coefficients for a signal of length {len} (expected {})",
            spectrum.len(),
            fourier_groups(len)
        )));
    }
    let ifft: Arc<dyn ComplexToReal<f64>> = RealFftPlanner::<f64>::new().plan_fft_inverse(len);
    let mut input: Vec<Complex<f64>> = spectrum
        .iter()
        .enumerate()
        .map(|(f, c)| {
            if self_conjugate(f, len) {
                Complex::new(c.re, 0.0)
            } else {
                *c
            }
        })
        .collect();
    let mut out = ifft.make_output_vec();
    ifft.process(&mut input, &mut out)
        .map_err(|e| CvxnnError::Numerical(format!("inverse real FFT of length {len}: {e}")))?;
    // realfft's inverse is unnormalized: divide by L.
    let scale = 1.0 / len as f64;
    out.iter_mut().for_each(|v| *v *= scale);
    Ok(out)
}

/// The full complex DFT coefficients `c_f` (independent frequencies `f = 0..G`) of the linear map
/// `x -> sum_k z_k * feature_k(x)` given by a coefficient vector `z` of length `2G`: the map
/// equals `x -> (1/L) sum_{f=0}^{L-1} c_f x̂_f` with `c_{L-f} = conj(c_f)` and
///
/// * `c_f = L * z_{2f}` for a self-conjugate frequency (`f = 0`, `f = L/2`; `z_{2f+1}` has a zero
///   feature column and is ignored),
/// * `c_f = (L/2) * (z_{2f} - i z_{2f+1})` otherwise (the pair `f`, `L - f` contributes
///   `(2/L) Re(c_f x̂_f) = z_{2f} Re x̂_f + z_{2f+1} Im x̂_f`).
///
/// Why unit weights are exact: with `c_f = sum_j conj(â_jf) û_jf`, AM-GM and the triangle
/// inequality give, for any circular CNN realizing `c`,
///
/// ```text
/// (lambda/2) sum_j (||u_j||^2 + ||a_j||^2) = (lambda/(2L)) sum_j sum_f (|û_jf|^2 + |â_jf|^2)
///                                          >= (lambda/L) sum_{f=0}^{L-1} |c_f|
/// (1/L) sum_{f=0}^{L-1} |c_f| = |z_0| + sum_{0<f<L/2} ||(z_{2f}, z_{2f+1})|| + [L even] |z_L|
/// ```
///
/// (`z_L` is the real coefficient of `f = L/2`): a self-conjugate frequency counts once with
/// weight `|c_f|/L = |z_{2f}|`, every other one twice (`f` and `L - f`) with
/// `2|c_f|/L = ||(z_{2f}, z_{2f+1})||` — exactly unit weight on every `(Re, Im)` group of `z`.
/// [`filters_from_coefficients`] attains the bound.
pub fn coefficients_to_spectrum(z: &[f64], len: usize) -> Result<Vec<Complex<f64>>> {
    check_len(len)?;
    let g = fourier_groups(len);
    if z.len() != 2 * g {
        return Err(CvxnnError::Shape(format!(
            "{} Fourier-feature coefficients for signals of length {len} (expected {})",
            z.len(),
            2 * g
        )));
    }
    let l = len as f64;
    Ok((0..g)
        .map(|f| {
            if self_conjugate(f, len) {
                Complex::new(l * z[2 * f], 0.0)
            } else {
                Complex::new(0.5 * l * z[2 * f], -0.5 * l * z[2 * f + 1])
            }
        })
        .collect())
}

/// One circular-CNN channel `(u, a)` (filter, readout) that realizes the coefficient vector `z`
/// with the least weight decay: per frequency `â_f = sqrt(|c_f|)` (real, non-negative) and
/// `û_f = c_f / sqrt(|c_f|)`, so `conj(â_f) û_f = c_f` and `|û_f| = |â_f|` (the AM-GM equality
/// case); both spectra are Hermitian, so `u` and `a` are real, and
/// `(1/2)(||u||^2 + ||a||^2) = (1/L) sum_f |c_f|` equals the convex penalty divided by lambda.
/// One channel always suffices: the minimal width of the linear circular CNN is 1 (0 for `z = 0`).
pub fn filters_from_coefficients(z: &[f64], len: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let c = coefficients_to_spectrum(z, len)?;
    let mut u_hat = Vec::with_capacity(c.len());
    let mut a_hat = Vec::with_capacity(c.len());
    for cf in &c {
        let r = cf.norm().sqrt();
        if r > 0.0 {
            u_hat.push(cf / r);
            a_hat.push(Complex::new(r, 0.0));
        } else {
            u_hat.push(Complex::new(0.0, 0.0));
            a_hat.push(Complex::new(0.0, 0.0));
        }
    }
    Ok((
        inverse_real_spectrum(&u_hat, len)?,
        inverse_real_spectrum(&a_hat, len)?,
    ))
}

/// The Fourier-feature matrix `Xf` (`n x 2G`, column-major) of `n` signals of length `L`, as the
/// linear map `z -> Xf z` (predictions of the linear circular CNN with coefficients `z`) with
/// adjoint `r -> Xf^T r`. Computed with one real FFT per sample (`O(n L log L)`), no DFT matrix.
#[derive(Clone, Debug)]
pub struct FourierFeatures {
    len: usize,
    features: Matrix,
}

impl FourierFeatures {
    /// Features of the rows of `x` (`n x L`, one signal per row). `Err` when `L = 0` or an entry
    /// is not finite.
    pub fn new(x: &Matrix) -> Result<Self> {
        let (n, len) = (x.nrows(), x.ncols());
        check_len(len)?;
        if let Some(v) = x.as_slice().iter().find(|v| !v.is_finite()) {
            return Err(CvxnnError::arg(
                "x",
                format!("signals must be finite, found {v}"),
            ));
        }
        let g = fourier_groups(len);
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(len);
        let mut features = Matrix::zeros(n, 2 * g);
        for i in 0..n {
            let spec = spectrum_with(&*fft, &x.row(i))?;
            for (f, c) in spec.iter().enumerate() {
                features.set(i, 2 * f, c.re);
                features.set(i, 2 * f + 1, c.im);
            }
        }
        Ok(FourierFeatures { len, features })
    }

    /// Signal length `L`.
    pub fn signal_len(&self) -> usize {
        self.len
    }

    /// Number of samples `n`.
    pub fn samples(&self) -> usize {
        self.features.nrows()
    }

    /// Number of `(Re, Im)` groups `G = floor(L/2) + 1`.
    pub fn groups(&self) -> usize {
        fourier_groups(self.len)
    }

    /// The `n x 2G` feature matrix: column `2f` is `Re x̂_f`, column `2f + 1` is `Im x̂_f`.
    pub fn matrix(&self) -> &Matrix {
        &self.features
    }
}

impl LinearMap for FourierFeatures {
    fn n_vars(&self) -> usize {
        self.features.ncols()
    }
    fn image_len(&self) -> usize {
        self.features.nrows()
    }
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|o| *o = 0.0);
        for (j, &xj) in x.iter().enumerate() {
            if xj != 0.0 {
                for (o, &v) in out.iter_mut().zip(self.features.col(j)) {
                    *o += v * xj;
                }
            }
        }
    }
    fn adjoint(&self, r: &[f64], out: &mut [f64]) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = crate::linalg::dot(self.features.col(j), r);
        }
    }
}

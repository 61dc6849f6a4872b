//! The one place where the CPU backend is chosen.
//!
//! burn 0.22 picks the backend at runtime through a `Device`. textclf serves and trains on
//! burn-ndarray by default (the product's named backend, with its `simd` and `rayon` features on);
//! building with `--features flex` switches every code path to burn-flex, burn 0.22's recommended
//! CPU backend, so the benchmarks can compare the two without touching any other file.

use burn::tensor::Device;

/// Name of the compiled-in backend, reported by `/info` and the benchmarks.
#[cfg(feature = "flex")]
pub const BACKEND: &str = "flex";
#[cfg(not(feature = "flex"))]
pub const BACKEND: &str = "ndarray";

/// The device that inference runs on (no autodiff).
#[cfg(feature = "flex")]
pub fn device() -> Device {
    Device::flex()
}

/// The device that inference runs on (no autodiff).
#[cfg(not(feature = "flex"))]
#[allow(deprecated)] // burn 0.22 deprecates ndarray in favour of flex; ndarray is still our default.
pub fn device() -> Device {
    Device::ndarray()
}

/// The same backend with autodiff on, for training.
pub fn autodiff_device() -> Device {
    device().autodiff()
}

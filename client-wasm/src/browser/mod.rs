//! Browser glue: everything that touches `web-sys`. The decisions are made by the pure
//! modules; this carries them out.

pub(crate) mod core;
mod handles;
pub mod js;
#[cfg(feature = "std")]
pub mod rust_api;

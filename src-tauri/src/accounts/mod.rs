//! The use cases every face (CLI, desktop commands, `serve`) calls: open the vault, list, import
//! (with its preview and ownership choice), sign in, rename, enable/disable, remove, and the way
//! out of a store the keychain's key cannot open. One `impl Service`, split by job.

pub mod ops;
pub mod ownership;
pub mod service;
pub mod set_aside;

pub use ops::*;
pub use service::*;

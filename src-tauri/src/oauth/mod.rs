//! Everything that speaks OAuth with OpenAI's issuer, and the credential formats it produces.

pub mod auth_json;
pub mod browser;
pub mod classify;
pub mod client;
pub mod device;
pub mod jwt;
pub mod login;
pub mod paste;
pub mod peer_formats;

//! The endpoint's start-up errors. Defined here, not in `endpoint/`, so `error/` names no
//! endpoint type (the endpoint depends on `error`, never the other way round); `endpoint`
//! re-exports it, and its `IntoResponse` stays with the endpoint (`endpoint/http_error.rs`).

use super::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("port {port} on 127.0.0.1 is already in use{holder}; choose another with `--port` (or 0 for any free port), or stop the program using it")]
    PortInUse { port: u16, holder: String },
    #[error("cannot listen on 127.0.0.1:{port}: {detail}")]
    Bind { port: u16, detail: String },
}

impl EndpointError {
    pub fn code(&self) -> ErrorCode {
        match self {
            EndpointError::PortInUse { .. } => ErrorCode::PortInUse,
            EndpointError::Bind { .. } => ErrorCode::EndpointBind,
        }
    }
}

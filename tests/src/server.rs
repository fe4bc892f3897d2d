//! Binding, routing and running the fake, in the caller's runtime or on a thread of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

use crate::config::FakeConfig;
use crate::conn::{ConnHandle, ConnRegistry, KillableListener};
use crate::state::{Shared, State};
use crate::{admin, auth_routes, backend_routes, device, quota_routes};

/// Codex requests carry whole conversations; never refuse one for its size.
const BODY_LIMIT: usize = 256 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/oauth/authorize", get(auth_routes::authorize))
        .route("/oauth/token", post(auth_routes::token))
        .route("/oauth/revoke", post(auth_routes::revoke))
        .route("/api/accounts/deviceauth/usercode", post(device::usercode))
        .route("/api/accounts/deviceauth/token", post(device::token))
        .route(
            "/backend-api/codex/responses",
            post(backend_routes::responses).get(backend_routes::responses_get),
        )
        .route(
            "/backend-api/codex/responses/compact",
            post(backend_routes::compact),
        )
        .route("/backend-api/codex/models", get(backend_routes::models))
        .route("/backend-api/wham/usage", get(backend_routes::usage))
        .route(
            "/backend-api/wham/rate-limit-reset-credits",
            get(quota_routes::list),
        )
        .route(
            "/backend-api/wham/rate-limit-reset-credits/consume",
            post(quota_routes::consume),
        )
        .route(
            "/backend-api/{*rest}",
            axum::routing::any(quota_routes::unknown_backend_route),
        )
        .route(
            "/api/codex/{*rest}",
            axum::routing::any(quota_routes::unknown_backend_route),
        )
        .nest("/__admin", admin::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(shared.clone(), log_request))
        .with_state(shared)
}

async fn log_request(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    quota_routes::record_hit(&shared, req.method(), req.uri(), req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<ConnHandle>>()
        .map(|c| c.0.remote.to_string())
        .unwrap_or_default();
    let resp = next.run(req).await;
    tracing::info!(%method, %path, %peer, status = resp.status().as_u16(), "fake-openai");
    resp
}

/// A bound, not yet serving, fake.
pub(crate) struct Bound {
    pub listener: KillableListener,
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub registry: Arc<ConnRegistry>,
}

pub(crate) async fn bind(cfg: FakeConfig) -> std::io::Result<Bound> {
    let tcp = TcpListener::bind(("127.0.0.1", cfg.port)).await?;
    let addr = tcp.local_addr()?;
    // The issuer (`iss` of every token) is where the fake really listens.
    let shared = Arc::new(Shared::new(State::new(cfg, format!("http://{addr}"))));
    let registry = Arc::new(ConnRegistry::default());
    Ok(Bound {
        listener: KillableListener {
            inner: tcp,
            registry: registry.clone(),
        },
        addr,
        shared,
        registry,
    })
}

/// Serves until the returned future is dropped (connections are cut separately on shutdown).
pub(crate) async fn serve(listener: KillableListener, shared: Arc<Shared>) {
    let app = router(shared).into_make_service_with_connect_info::<ConnHandle>();
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("fake-openai server stopped: {e}");
    }
}

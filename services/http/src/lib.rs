//! How every Retrace service listens: [`bind`] a port (plain HTTP, or HTTPS with rustls when
//! [`TlsFiles`] are configured), then [`Listener::serve`] an axum router on it until shutdown,
//! answering the requests in flight first. Handlers see the caller's address
//! (`ConnectInfo<SocketAddr>`), which the audit trail records.
//!
//! Binding is separate from serving so a service can learn its address (port 0 in tests) and
//! refuse to start on a bad certificate before it consumes anything.
//!
//! Every refusal is an [`ApiError`]: its status and the one error document,
//! [`retrace_api::ErrorBody`].

mod error;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum_server::tls_rustls::RustlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use error::{ApiError, json_body};

/// The server's certificate chain and private key, PEM files (`[tls]` in a configuration
/// file, or `--tls-cert` / `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(
        "cannot read a TLS certificate chain from {path}: {problem} (expected PEM \
         `-----BEGIN CERTIFICATE-----` blocks, leaf first)"
    )]
    Certificate { path: PathBuf, problem: String },
    #[error(
        "cannot read a TLS private key from {path}: {problem} (expected a PEM PKCS#8, PKCS#1 \
         or SEC1 key, unencrypted)"
    )]
    Key { path: PathBuf, problem: String },
    #[error("the TLS key {key} does not fit the certificate {cert}: {problem}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        problem: String,
    },
    #[error("the HTTP server on {addr} stopped: {source}")]
    Serve { addr: SocketAddr, source: io::Error },
}

/// A bound port, not yet serving.
pub struct Listener {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    tls: Option<RustlsConfig>,
}

/// Binds `addr`; with `tls`, loads and checks the certificate and key first.
pub async fn bind(addr: SocketAddr, tls: Option<&TlsFiles>) -> Result<Listener, HttpError> {
    let tls = tls.map(server_config).transpose()?;
    let bound = tokio::net::TcpListener::bind(addr)
        .await
        .and_then(|listener| listener.into_std())
        .map_err(|source| HttpError::Bind { addr, source })?;
    let addr = bound
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    Ok(Listener {
        listener: bound,
        addr,
        tls,
    })
}

impl Listener {
    /// The address bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// What reloads the certificate this listener serves, when it serves HTTPS.
    pub fn tls_reload(&self) -> Option<TlsReload> {
        self.tls.clone().map(TlsReload)
    }

    /// `scheme://addr`, what a client of this listener calls.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// Answers while `starting` runs, so an orchestrator probing `/healthz` or a client
    /// calling early gets "starting" rather than a refused connection: `/healthz` answers
    /// 503 `starting`, every other path 503 with `Retry-After` and a JSON error naming
    /// `service`. Once `starting` resolves, those requests are answered and the listener is
    /// handed back for [`serve`](Self::serve); connections arriving in between wait in the
    /// socket's backlog.
    pub async fn while_starting<T>(
        self,
        service: &'static str,
        starting: impl Future<Output = T>,
    ) -> Result<(Listener, T), HttpError> {
        let clone = self
            .listener
            .try_clone()
            .map_err(|source| HttpError::Serve {
                addr: self.addr,
                source,
            })?;
        let (started, done) = tokio::sync::oneshot::channel();
        let answering = Listener {
            listener: clone,
            addr: self.addr,
            tls: self.tls.clone(),
        }
        .serve(starting_router(service), async {
            let _ = done.await;
        });
        let starting = async {
            let value = starting.await;
            let _ = started.send(());
            value
        };
        let (answered, value) = tokio::join!(answering, starting);
        answered?;
        Ok((self, value))
    }

    /// Serves `app` until `shutdown` completes, then stops accepting and answers the
    /// requests in flight before returning.
    pub async fn serve(
        self,
        app: Router,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), HttpError> {
        let addr = self.addr;
        let handle = axum_server::Handle::new();
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let serving = async {
            match self.tls {
                Some(tls) => {
                    axum_server::from_tcp_rustls(self.listener, tls)
                        .handle(handle.clone())
                        .serve(service)
                        .await
                }
                None => {
                    axum_server::from_tcp(self.listener)
                        .handle(handle.clone())
                        .serve(service)
                        .await
                }
            }
        };
        tokio::pin!(serving);
        tokio::select! {
            stopped = &mut serving => return stopped.map_err(|source| HttpError::Serve { addr, source }),
            () = shutdown => {}
        }
        // No deadline: the service's own shutdown bounds how long its handlers may run.
        handle.graceful_shutdown(None);
        serving
            .await
            .map_err(|source| HttpError::Serve { addr, source })
    }
}

/// What [`Listener::while_starting`] answers.
fn starting_router(service: &'static str) -> Router {
    Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async {
                let retry_after = [(axum::http::header::RETRY_AFTER, "1")];
                (StatusCode::SERVICE_UNAVAILABLE, retry_after, "starting\n").into_response()
            }),
        )
        .fallback(move || async move {
            ApiError::unavailable(format!(
                "the {service} is starting (waiting for Kafka, or reading its topics); retry \
                 in a moment, or see its log for what it waits on"
            ))
            .retry_after(1)
        })
}

/// Replaces the certificate and key of a serving HTTPS listener: connections accepted after
/// [`reload`](Self::reload) get the new certificate; those open keep theirs.
#[derive(Clone)]
pub struct TlsReload(RustlsConfig);

impl TlsReload {
    /// Reads and checks `files` as [`bind`] does; on any problem the listener keeps serving
    /// the certificate it has.
    pub fn reload(&self, files: &TlsFiles) -> Result<(), HttpError> {
        let fresh = server_config(files)?;
        self.0.reload_from_config(fresh.get_inner());
        Ok(())
    }
}

/// A rustls server configuration (HTTP/1.1 and HTTP/2) from PEM files, with the ring
/// provider chosen here rather than left to a process-wide default.
fn server_config(files: &TlsFiles) -> Result<RustlsConfig, HttpError> {
    let certificate = |problem: String| HttpError::Certificate {
        path: files.cert.clone(),
        problem,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| certificate(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(certificate("the file has no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| HttpError::Key {
        path: files.key.clone(),
        problem: e.to_string(),
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| HttpError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        problem: e.to_string(),
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}

#[cfg(test)]
mod tests;

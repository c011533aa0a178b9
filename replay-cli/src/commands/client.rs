//! The one HTTP client of the trace and replay API: builds URLs, sends requests, and turns
//! every answer that is not a success into the [`Failure`] (and exit code) it means.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use retrace_api::ErrorBody;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Failure;

/// How long a connection may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take; a large trace or bulk replay plan can take a while.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the server is, and the API token to show it.
#[derive(Debug, Clone)]
pub struct Server {
    pub url: String,
    pub token: Option<String>,
    /// Trusted besides the system's roots (`--ca-cert`).
    pub ca_cert: Option<PathBuf>,
    /// The `retrace dev` dev.json the URL was read from, when no --server was given.
    pub dev_json: Option<PathBuf>,
}

/// A Retrace server at one base URL.
pub struct Client {
    base: Url,
    token: Option<String>,
    dev_json: Option<PathBuf>,
    http: reqwest::Client,
}

/// A request to send: method, path segments (each percent-encoded), query, JSON body.
pub struct Request {
    method: Method,
    segments: Vec<String>,
    query: Vec<(&'static str, String)>,
    body: Option<serde_json::Value>,
    idempotency_key: Option<String>,
}

impl Request {
    pub fn get(segments: &[&str]) -> Self {
        Request {
            method: Method::GET,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            idempotency_key: None,
        }
    }

    pub fn post(segments: &[&str], body: &impl Serialize) -> Self {
        Request {
            method: Method::POST,
            body: Some(serde_json::to_value(body).expect("API requests serialise to JSON")),
            ..Request::get(segments)
        }
    }

    /// Adds `name=value` to the query when `value` is present.
    pub fn query(mut self, name: &'static str, value: Option<impl ToString>) -> Self {
        if let Some(value) = value {
            self.query.push((name, value.to_string()));
        }
        self
    }

    /// Sends an `Idempotency-Key` header, so that a retried request is not executed twice.
    pub fn idempotency_key(mut self, key: String) -> Self {
        self.idempotency_key = Some(key);
        self
    }
}

/// The certificates of a PEM file given with `--ca-cert`.
fn trusted_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, Failure> {
    let unusable = |problem: String| {
        Failure::Usage(format!(
            "--ca-cert {}: {problem}; give a PEM file of CA certificates",
            path.display()
        ))
    };
    let pem = std::fs::read(path).map_err(|e| unusable(e.to_string()))?;
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unusable(e.to_string()))?;
    if certificates.is_empty() {
        return Err(unusable("it holds no certificate".into()));
    }
    Ok(certificates)
}

impl Client {
    pub fn new(server: &Server) -> Result<Self, Failure> {
        let base = Url::parse(&server.url)
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
            .ok_or_else(|| {
                Failure::Usage(format!(
                    "--server {:?} is not a server URL such as http://127.0.0.1:7070",
                    server.url
                ))
            })?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("retrace/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &server.ca_cert {
            for certificate in trusted_certificates(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Failure::Server(format!("cannot start an HTTP client: {e}")))?;
        Ok(Client {
            base,
            token: server.token.clone(),
            dev_json: server.dev_json.clone(),
            http,
        })
    }

    /// Sends `request` and decodes a successful answer's JSON.
    pub async fn send<T: DeserializeOwned>(&self, request: Request) -> Result<T, Failure> {
        let (_, body) = self.send_raw(request).await?;
        serde_json::from_str(&body).map_err(|e| {
            Failure::Server(format!(
                "the Retrace server at {} answered with a document this retrace does not \
                 understand ({e}): are the server and the CLI the same version?",
                self.base
            ))
        })
    }

    /// Sends `request` and returns a successful answer's status and body as text.
    pub async fn send_raw(&self, request: Request) -> Result<(StatusCode, String), Failure> {
        let url = self.url(&request.segments, &request.query);
        let mut builder = self.http.request(request.method, url);
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = &request.idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        let response = builder.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            Ok((status, body))
        } else {
            Err(refusal(status, &body))
        }
    }

    fn url(&self, segments: &[impl AsRef<str>], query: &[(&'static str, String)]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn unreachable(&self, error: &reqwest::Error) -> Failure {
        let server = self.base.as_str().trim_end_matches('/');
        let cause = cause(error);
        Failure::Server(match &self.dev_json {
            Some(dev_json) => format!(
                "cannot reach the Retrace server at {server} ({cause}), the address in {}: \
                 has that `retrace dev` stopped without removing it? Start it again, or set \
                 --server or RETRACE_SERVER",
                dev_json.display()
            ),
            None => format!(
                "cannot reach the Retrace server at {server} ({cause}): is `retrace dev` or \
                 the archive running? Set --server or RETRACE_SERVER"
            ),
        })
    }
}

/// What went wrong under a transport error, in a few words.
fn cause(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".to_owned();
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut deepest = error.to_string();
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => "timed out".to_owned(),
                _ => io.to_string(),
            };
        }
        deepest = current.to_string();
        source = current.source();
    }
    deepest
}

/// The failure an unsuccessful HTTP status means, with the server's own explanation.
pub fn refusal(status: StatusCode, body: &str) -> Failure {
    let explained = serde_json::from_str::<ErrorBody>(body).ok();
    let error = explained
        .as_ref()
        .map(|e| e.error.clone())
        .unwrap_or_else(|| format!("HTTP {status}: {}", body.trim()));
    match status {
        StatusCode::BAD_REQUEST => Failure::Usage(match explained.and_then(|e| e.field) {
            Some(field) => format!("the server refused {field}: {error}"),
            None => format!("the server refused the request: {error}"),
        }),
        StatusCode::UNAUTHORIZED => Failure::Usage(format!(
            "the server did not accept the API token: {error}. Pass one with --token or \
             RETRACE_TOKEN (`retrace dev` prints one and writes it to dev.json)"
        )),
        StatusCode::FORBIDDEN => Failure::Usage(format!("not allowed: {error}")),
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => Failure::NothingToDo(error),
        _ => Failure::Server(format!("the Retrace server failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(url: &str) -> Server {
        Server {
            url: url.to_owned(),
            token: None,
            ca_cert: None,
            dev_json: None,
        }
    }

    fn message(failure: Failure) -> (u8, String) {
        failure.code_and_message()
    }

    #[test]
    fn statuses_map_to_exit_codes_with_the_servers_words() {
        let bad = r#"{"error":"limit 0 is out of range","field":"limit"}"#;
        assert_eq!(
            message(refusal(StatusCode::BAD_REQUEST, bad)),
            (
                2,
                "the server refused limit: limit 0 is out of range".to_owned()
            )
        );
        let missing = r#"{"error":"no archived message belongs to transaction \"x\""}"#;
        assert_eq!(
            message(refusal(StatusCode::NOT_FOUND, missing)),
            (
                1,
                "no archived message belongs to transaction \"x\"".to_owned()
            )
        );
        assert_eq!(message(refusal(StatusCode::CONFLICT, missing)).0, 1);
        assert_eq!(
            message(refusal(StatusCode::BAD_GATEWAY, "upstream down")),
            (
                3,
                "the Retrace server failed: HTTP 502 Bad Gateway: upstream down".to_owned()
            )
        );
    }

    #[test]
    fn ids_are_percent_encoded_in_paths() {
        let client = Client::new(&server("http://127.0.0.1:7070/")).unwrap();
        let url = client.url(
            &["v1", "subjects", "beneficiary:4 2/x", "transactions"],
            &[("limit", "5".to_owned())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/v1/subjects/beneficiary:4%202%2Fx/transactions?limit=5"
        );
    }

    #[test]
    fn a_server_that_is_not_a_url_is_a_usage_error() {
        assert_eq!(
            message(Client::new(&server("localhost:7070")).err().unwrap()).0,
            2
        );
        assert_eq!(
            message(Client::new(&server("nonsense")).err().unwrap()).0,
            2
        );
    }
}

//! The one HTTP client of the trace and replay API: builds URLs, sends requests (to the
//! first of several servers that answers), and turns every answer that is not a success into
//! the [`Failure`] (and exit code) it means.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    /// One base URL, or several separated by commas (replicas of the archive), tried in order.
    pub url: String,
    pub token: Option<String>,
    /// Trusted besides the system's roots (`--ca-cert`).
    pub ca_cert: Option<PathBuf>,
    /// The `retrace dev` dev.json the URL was read from, when no --server was given.
    pub dev_json: Option<PathBuf>,
}

/// A Retrace server at one or more base URLs: each request goes to the one that answered
/// last, and on to the next when it cannot be reached.
pub struct Client {
    bases: Vec<Url>,
    /// The index in `bases` of the server that answered last.
    current: AtomicUsize,
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
        let bases = server
            .url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                Url::parse(url)
                    .ok()
                    .filter(|parsed| {
                        matches!(parsed.scheme(), "http" | "https") && parsed.has_host()
                    })
                    .ok_or_else(|| {
                        Failure::Usage(format!(
                            "--server {url:?} is not a server URL such as http://127.0.0.1:7070 \
                             (several are separated by commas)"
                        ))
                    })
            })
            .collect::<Result<Vec<Url>, Failure>>()?;
        if bases.is_empty() {
            return Err(Failure::Usage(
                "--server is empty: give a server URL such as http://127.0.0.1:7070".into(),
            ));
        }
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
            bases,
            current: AtomicUsize::new(0),
            token: server.token.clone(),
            dev_json: server.dev_json.clone(),
            http,
        })
    }

    /// The server that answered last (the first one before any answered).
    pub fn server(&self) -> &str {
        self.bases[self.current.load(Ordering::Relaxed)]
            .as_str()
            .trim_end_matches('/')
    }

    /// Sends `request` and decodes a successful answer's JSON.
    pub async fn send<T: DeserializeOwned>(&self, request: Request) -> Result<T, Failure> {
        let (_, body) = self.send_raw(request).await?;
        serde_json::from_str(&body).map_err(|e| {
            Failure::Server(format!(
                "the Retrace server at {} answered with a document this retrace does not \
                 understand ({e}): are the server and the CLI the same version?",
                self.server()
            ))
        })
    }

    /// Sends `request` and returns a successful answer's status and body as text. Starts
    /// with the server that answered last, and moves on to the next while one cannot be
    /// reached; the one that answers is remembered for the command's next requests.
    pub async fn send_raw(&self, request: Request) -> Result<(StatusCode, String), Failure> {
        // A GET changes nothing, and a request with an Idempotency-Key (a replay) is carried
        // out once however many servers receive it: the archive's replicas agree, through
        // Kafka, on the one replay a key starts, and answer a repeat with it. Either is safe
        // to send to the next server after it may have reached one. Any other request (a
        // POST without a key: an erasure, a token) only after a failed connection, which
        // proves the server never received it.
        let resendable = request.method == Method::GET || request.idempotency_key.is_some();
        let first = self.current.load(Ordering::Relaxed);
        let count = self.bases.len();
        let mut failed = Vec::new();
        for index in (0..count).map(|i| (first + i) % count) {
            let base = &self.bases[index];
            let last = failed.len() + 1 == count;
            match self.attempt(base, &request).await {
                Ok((status, _)) if !last && resendable && is_unavailable(status) => {
                    failed.push((base, format!("HTTP {status}")));
                }
                Ok((status, body)) => {
                    self.current.store(index, Ordering::Relaxed);
                    return if status.is_success() {
                        Ok((status, body))
                    } else {
                        Err(refusal(status, &body))
                    };
                }
                Err(error) => {
                    failed.push((base, cause(&error)));
                    if !resendable && !error.is_connect() {
                        return Err(self.unreachable(&failed, !last));
                    }
                }
            }
        }
        Err(self.unreachable(&failed, false))
    }

    /// One attempt at `request` on the server at `base`: its status and body, or why no
    /// answer came.
    async fn attempt(
        &self,
        base: &Url,
        request: &Request,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let url = url(base, &request.segments, &request.query);
        let mut builder = self.http.request(request.method.clone(), url);
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        if let Some(key) = &request.idempotency_key {
            builder = builder.header("Idempotency-Key", key);
        }
        let response = builder.send().await?;
        let status = response.status();
        Ok((status, response.text().await?))
    }

    /// The failure of a request no server answered: `failed` holds each server tried and
    /// why; `not_resent` says others were left untried because the request may have
    /// reached the last one.
    fn unreachable(&self, failed: &[(&Url, String)], not_resent: bool) -> Failure {
        let tried = |(base, cause): &(&Url, String)| {
            format!("{} ({cause})", base.as_str().trim_end_matches('/'))
        };
        let (server, cause) = failed.last().expect("a server was tried");
        let server = server.as_str().trim_end_matches('/');
        Failure::Server(match (&self.dev_json, failed) {
            _ if not_resent => format!(
                "the Retrace server at {server} did not answer ({cause}) after it may have \
                 received the request, so it was not sent to another server: check whether it \
                 took effect (e.g. `retrace audit`) before repeating it"
            ),
            (Some(dev_json), [_]) => format!(
                "cannot reach the Retrace server at {server} ({cause}), the address in {}: \
                 has that `retrace dev` stopped without removing it? Start it again, or set \
                 --server or RETRACE_SERVER",
                dev_json.display()
            ),
            (None, [_]) => format!(
                "cannot reach the Retrace server at {server} ({cause}): is `retrace dev` or \
                 the archive running? Set --server or RETRACE_SERVER"
            ),
            (_, several) => format!(
                "cannot reach any of the Retrace servers: {}. Are the archives running? Set \
                 --server or RETRACE_SERVER",
                several.iter().map(tried).collect::<Vec<_>>().join(", ")
            ),
        })
    }
}

/// `base` with the path `segments` (each percent-encoded) and `query` added.
fn url(base: &Url, segments: &[impl AsRef<str>], query: &[(&'static str, String)]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("an http(s) URL has a path")
        .pop_if_empty()
        .extend(segments);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    url
}

/// A proxy or load balancer in front of a server that is down (502), or a server not ready
/// to answer (503): another server may answer.
fn is_unavailable(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE
    )
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
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

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
        let url = url(
            &client.bases[0],
            &["v1", "subjects", "beneficiary:4 2/x", "transactions"],
            &[("limit", "5".to_owned())],
        );
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:7070/v1/subjects/beneficiary:4%202%2Fx/transactions?limit=5"
        );
    }

    /// A server on loopback that answers each connection with `answer`: an HTTP response,
    /// or `None` to read the request and close the connection without one. Counts the
    /// requests it received.
    struct FakeServer {
        url: String,
        received: Arc<AtomicUsize>,
    }

    impl FakeServer {
        async fn start(answer: Option<&'static str>) -> FakeServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let received = Arc::new(AtomicUsize::new(0));
            let counter = received.clone();
            tokio::spawn(async move {
                while let Ok((mut connection, _)) = listener.accept().await {
                    let mut request = vec![0; 64 * 1024];
                    let _ = connection.read(&mut request).await;
                    counter.fetch_add(1, Ordering::SeqCst);
                    if let Some(answer) = answer {
                        let _ = connection.write_all(answer.as_bytes()).await;
                    }
                }
            });
            FakeServer { url, received }
        }

        fn received(&self) -> usize {
            self.received.load(Ordering::SeqCst)
        }
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    fn servers(urls: &[&str]) -> Client {
        Client::new(&server(&urls.join(","))).unwrap()
    }

    fn nobody_listens() -> String {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        format!("http://127.0.0.1:{port}")
    }

    #[tokio::test]
    async fn a_refused_connection_moves_every_request_on_and_the_answering_server_is_kept() {
        let down = nobody_listens();
        let up = FakeServer::start(Some(OK)).await;
        let client = servers(&[&down, &up.url]);
        let post = Request::post(&["v1", "tokens"], &serde_json::json!({}));
        assert!(client.send_raw(post).await.is_ok());
        assert_eq!(client.server(), up.url);
        assert!(
            client
                .send_raw(Request::get(&["v1", "whoami"]))
                .await
                .is_ok()
        );
        assert_eq!(up.received(), 2);
    }

    #[tokio::test]
    async fn a_request_that_may_have_arrived_moves_on_only_when_resending_is_safe() {
        let hangs_up = FakeServer::start(None).await;
        let up = FakeServer::start(Some(OK)).await;
        let client = servers(&[&hangs_up.url, &up.url]);
        assert!(
            client
                .send_raw(Request::get(&["v1", "whoami"]))
                .await
                .is_ok()
        );
        assert_eq!(up.received(), 1);

        let client = servers(&[&hangs_up.url, &up.url]);
        let replay =
            Request::post(&["v1", "replays"], &serde_json::json!({})).idempotency_key("k".into());
        assert!(client.send_raw(replay).await.is_ok());
        assert_eq!(up.received(), 2);

        let client = servers(&[&hangs_up.url, &up.url]);
        let erase = Request::post(&["v1", "subjects", "s", "erase"], &serde_json::json!({}));
        let (code, message) = message(client.send_raw(erase).await.unwrap_err());
        assert_eq!(code, 3);
        assert!(
            message.contains("it was not sent to another server"),
            "{message}"
        );
        assert_eq!(up.received(), 2, "the erasure was sent to one server only");
    }

    #[tokio::test]
    async fn an_unavailable_server_is_passed_over_and_the_last_answer_stands() {
        let unavailable = FakeServer::start(Some(UNAVAILABLE)).await;
        let up = FakeServer::start(Some(OK)).await;
        let client = servers(&[&unavailable.url, &up.url]);
        assert!(
            client
                .send_raw(Request::get(&["v1", "whoami"]))
                .await
                .is_ok()
        );

        let client = servers(&[&unavailable.url]);
        let failure = client.send_raw(Request::get(&["v1", "whoami"])).await;
        assert_eq!(message(failure.unwrap_err()).0, 3);

        let down = nobody_listens();
        let client = servers(&[&down, &unavailable.url]);
        let post = Request::post(&["v1", "tokens"], &serde_json::json!({}));
        let (code, message) = message(client.send_raw(post).await.unwrap_err());
        assert_eq!(code, 3);
        assert!(message.contains("503"), "{message}");
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
        assert_eq!(
            message(Client::new(&server("http://a:7070,b:7070")).err().unwrap()).0,
            2
        );
        assert_eq!(message(Client::new(&server(" , ")).err().unwrap()).0, 2);
    }
}

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use axum::routing::get;
use retrace_auth::{Authenticator, LogOnly};
use retrace_fixtures::{PATIENCE, eventually};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;
use retrace_api::ConfigDocument;

/// A service's configuration with the common settings, as the real ones have them.
#[derive(Debug, Clone, Serialize)]
struct Toy {
    #[serde(flatten)]
    common: CommonConfig,
    greeting: String,
}

crate::service_config!(Toy);

impl Toy {
    fn topics_needed(&self) -> Vec<TopicSpec> {
        self.provisioning
            .retrace_topics(&self.auth.tokens_topic, ["toy.jobs"])
    }
}

/// On port 0, authentication off, Kafka a librdkafka mock cluster, no topic created.
fn toy() -> Toy {
    let mut common = CommonConfig::new("localhost:9092", ([127, 0, 0, 1], 0).into());
    common.kafka = common
        .kafka
        .with_properties(["test.mock.num.brokers=1"])
        .unwrap();
    common.kafka.startup_deadline = Duration::from_millis(100);
    common.provisioning.create = false;
    common.auth.enabled = false;
    Toy {
        common,
        greeting: "hello".to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
enum ToyError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("the toy stopped: {0}")]
    Stopped(&'static str),
}

async fn open_guard() -> Guard {
    let config = AuthConfig {
        enabled: false,
        ..AuthConfig::default()
    };
    let authenticator = Authenticator::new(&config, None).await.unwrap();
    Guard::new(Arc::new(authenticator), Arc::new(LogOnly))
}

/// `GET path` over a fresh connection: the status and the body.
async fn get_from(url: &str, path: &str) -> (u16, String) {
    let addr = url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// What a test sees of a toy service under the host.
struct Running {
    url: String,
    ready: Arc<AtomicBool>,
    reads: Arc<AtomicUsize>,
    /// Ends the task the service stops with, with this error.
    end: oneshot::Sender<&'static str>,
    /// Set once the joined task has seen shutdown.
    joined: Arc<AtomicBool>,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<Result<(), ToyError>>,
}

/// Serves a toy whose start waits for `go`, with a joined task and one it stops with.
async fn host_toy(go: oneshot::Receiver<()>) -> (oneshot::Receiver<String>, Running) {
    let (url_tx, url_rx) = oneshot::channel();
    let (end, ended) = oneshot::channel::<&'static str>();
    let ready = Arc::new(AtomicBool::new(true));
    let reads = Arc::new(AtomicUsize::new(0));
    let joined = Arc::new(AtomicBool::new(false));
    let shutdown = CancellationToken::new();
    let host = Host::new("toy", Reloader::fixed("toy", toy()), shutdown.clone());
    let (flag, counted, seen) = (Arc::clone(&ready), Arc::clone(&reads), Arc::clone(&joined));
    let served = tokio::spawn(host.serve(move |start| async move {
        url_tx.send(start.url().to_owned()).unwrap();
        go.await.unwrap();
        let greeting = start.config().greeting.clone();
        let router = Router::new().route("/v1/toy", get(move || async move { greeting }));
        let audit = move |_: &Caller| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        let (stopping, stopped) = (start.shutdown(), start.shutdown());
        Ok(Hosted::new(router, open_guard().await, audit)
            .ready([flag])
            .task(async move {
                stopping.cancelled().await;
                seen.store(true, Ordering::SeqCst);
                Ok(())
            })
            .stops_with(async move {
                tokio::select! {
                    Ok(why) = ended => Err(ToyError::Stopped(why)),
                    () = stopped.cancelled() => Ok(()),
                }
            }))
    }));
    let running = Running {
        url: String::new(),
        ready,
        reads,
        end,
        joined,
        shutdown,
        served,
    };
    (url_rx, running)
}

/// Waits for `/healthz` to answer 200 (the start runs on after the URL is known).
async fn until_ready(url: &str) {
    eventually(&format!("{url} to get ready"), PATIENCE, || async {
        (get_from(url, "/healthz").await == (200, "ok\n".to_owned())).then_some(())
    })
    .await;
}

async fn started() -> Running {
    let (go, wait) = oneshot::channel();
    let (url, mut running) = host_toy(wait).await;
    running.url = url.await.unwrap();
    go.send(()).unwrap();
    running
}

#[tokio::test]
async fn the_service_is_served_beside_its_config_health_and_metrics() {
    let running = started().await;
    let url = &running.url;
    until_ready(url).await;
    assert_eq!(get_from(url, "/v1/toy").await, (200, "hello".to_owned()));
    let (status, body) = get_from(url, "/v1/config").await;
    assert_eq!(status, 200, "{body}");
    let document: ConfigDocument = serde_json::from_str(&body).unwrap();
    assert_eq!(document.service, "toy");
    assert_eq!(document.config["greeting"], "hello");
    assert!(document.config["kafka"].is_object(), "{body}");
    assert_eq!(running.reads.load(Ordering::SeqCst), 1);
    assert_eq!(get_from(url, "/metrics").await.0, 200);

    running.ready.store(false, Ordering::SeqCst);
    assert_eq!(get_from(url, "/healthz").await.0, 503);
    running.ready.store(true, Ordering::SeqCst);
    assert_eq!(get_from(url, "/healthz").await.0, 200);

    running.shutdown.cancel();
    running.served.await.unwrap().unwrap();
    assert!(running.joined.load(Ordering::SeqCst));
}

#[tokio::test]
async fn while_starting_it_answers_starting() {
    let (go, wait) = oneshot::channel();
    let (url, running) = host_toy(wait).await;
    let url = url.await.unwrap();
    let (status, body) = get_from(&url, "/healthz").await;
    assert_eq!((status, body.as_str()), (503, "starting\n"));
    let (status, body) = get_from(&url, "/v1/toy").await;
    assert_eq!(status, 503);
    assert!(body.contains("the toy is starting"), "{body}");
    go.send(()).unwrap();
    running.shutdown.cancel();
    running.served.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_service_stops_with_its_task_and_that_error_is_returned() {
    let running = started().await;
    until_ready(&running.url).await;
    running.end.send("its store failed").unwrap();
    let error = tokio::time::timeout(Duration::from_secs(10), running.served)
        .await
        .expect("the host stops when the task it stops with ends")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(error, ToyError::Stopped("its store failed")),
        "{error}"
    );
    assert!(
        running.joined.load(Ordering::SeqCst),
        "the other task was told to stop, and joined"
    );
    assert!(!running.shutdown.is_cancelled());
    assert!(
        tokio::net::TcpStream::connect(running.url.strip_prefix("http://").unwrap())
            .await
            .is_err(),
        "the server stopped with the service"
    );
}

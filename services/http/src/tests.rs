//! A real server on a loopback port, called over HTTPS with a certificate made in the test.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::routing::get;
use tokio::sync::{mpsc, oneshot};

use super::*;

/// A self-signed certificate for `localhost`, written as PEM files.
fn certificate(dir: &std::path::Path) -> (TlsFiles, reqwest::Certificate) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, made.cert.pem()).unwrap();
    std::fs::write(&files.key, made.signing_key.serialize_pem()).unwrap();
    let trusted = reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap();
    (files, trusted)
}

fn who_is_calling() -> Router {
    Router::new().route(
        "/who",
        get(|ConnectInfo(caller): ConnectInfo<SocketAddr>| async move { caller.ip().to_string() }),
    )
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate_and_knows_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (files, trusted) = certificate(dir.path());
    let listener = bind(([127, 0, 0, 1], 0).into(), Some(&files))
        .await
        .unwrap();
    let addr = listener.local_addr();
    assert_eq!(listener.scheme(), "https");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(who_is_calling(), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .add_root_certificate(trusted)
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/who", addr.port());
    let answer = client.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "127.0.0.1");

    // Plain HTTP to the HTTPS port gets no answer, and neither does a client that does not
    // trust the certificate.
    let plain = reqwest::get(format!("http://{addr}/who")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", addr)
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_request_in_flight_is_answered_after_shutdown_starts() {
    let listener = bind(([127, 0, 0, 1], 0).into(), None).await.unwrap();
    let url = format!("{}/slow", listener.url());
    let (entered, mut handler_entered) = mpsc::channel::<()>(1);
    let (release, released) = mpsc::channel::<()>(1);
    let released = std::sync::Arc::new(tokio::sync::Mutex::new(released));
    let app = Router::new().route(
        "/slow",
        get(move || async move {
            entered.send(()).await.unwrap();
            released.lock().await.recv().await;
            "done"
        }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(app, async {
        let _ = stopped.await;
    }));
    let request = tokio::spawn(async move { reqwest::get(url).await?.text().await });
    handler_entered.recv().await.unwrap();
    stop.send(()).unwrap();
    release.send(()).await.unwrap();
    assert_eq!(request.await.unwrap().unwrap(), "done");
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_bad_key_file_is_refused_at_bind_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut files, _) = certificate(dir.path());
    files.key = dir.path().join("not-a-key.pem");
    std::fs::write(&files.key, "-----BEGIN NOTHING-----\n").unwrap();
    let error = bind(([127, 0, 0, 1], 0).into(), Some(&files))
        .await
        .err()
        .expect("a bad key is refused");
    let message = error.to_string();
    assert!(message.contains("not-a-key.pem"), "{message}");
    assert!(message.contains("private key"), "{message}");
}

#[tokio::test]
async fn a_reloaded_certificate_is_served_to_new_connections_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (files, old) = certificate(dir.path());
    let listener = bind(([127, 0, 0, 1], 0).into(), Some(&files))
        .await
        .unwrap();
    let addr = listener.local_addr();
    let reload = listener.tls_reload().expect("an HTTPS listener reloads");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(who_is_calling(), async {
        let _ = stopped.await;
    }));
    let trusting = |root: reqwest::Certificate| {
        reqwest::Client::builder()
            .add_root_certificate(root)
            .resolve("localhost", addr)
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{}/who", addr.port());
    // The same paths, new content: only a client trusting the new certificate gets in.
    let (_, new) = certificate(dir.path());
    assert!(trusting(new.clone()).get(&url).send().await.is_err());
    reload.reload(&files).unwrap();
    assert_eq!(trusting(new).get(&url).send().await.unwrap().status(), 200);
    assert!(trusting(old).get(&url).send().await.is_err());

    let broken = TlsFiles {
        cert: files.cert.clone(),
        key: dir.path().join("absent.pem"),
    };
    let error = reload.reload(&broken).unwrap_err().to_string();
    assert!(error.contains("absent.pem"), "{error}");

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn while_starting_it_says_so_then_the_service_answers_on_the_same_port() {
    let listener = bind(([127, 0, 0, 1], 0).into(), None).await.unwrap();
    let url = listener.url();
    let (finish, finished) = oneshot::channel::<&str>();
    let starting =
        tokio::spawn(listener.while_starting("gateway", async { finished.await.unwrap() }));

    let health = reqwest::get(format!("{url}/healthz")).await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.text().await.unwrap(), "starting\n");
    let early = reqwest::get(format!("{url}/who")).await.unwrap();
    assert_eq!(early.status(), 503);
    assert_eq!(early.headers()["retry-after"], "1");
    let body: serde_json::Value = early.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("the gateway is starting"), "{error}");

    finish.send("started").unwrap();
    let (listener, value) = starting.await.unwrap().unwrap();
    assert_eq!(value, "started");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(listener.serve(who_is_calling(), async {
        let _ = stopped.await;
    }));
    let answer = reqwest::get(format!("{url}/who")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "127.0.0.1");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

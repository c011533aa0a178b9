//! What tests of the worker share: a queue's topics, a job, a gate that stays closed, and a
//! local HTTP server (a webhook target, or a service's API).

use retrace_proto::{Envelope, Job, JobPriority, OUTCOMES_TOPIC};
use retrace_sdk::QueueTopics;
use tokio::task::JoinHandle;

use crate::{Broker, free_port};

impl Broker {
    /// Creates `queue`'s topics (every lane, retry, dead-letter; two partitions each) and
    /// the outcomes topic.
    pub async fn create_queue(&self, queue: &str) {
        for topic in QueueTopics::of(queue).all() {
            self.create_topic(topic, 2).await;
        }
        self.create_topic(OUTCOMES_TOPIC, 1).await;
    }
}

/// A normal-priority job of `kind` from `source`, about beneficiary:7.
pub fn job(source: &str, kind: &str) -> Envelope {
    let mut envelope = Envelope::root(source, "job.requested.v1")
        .with_subject("beneficiary:7")
        .with_payload("application/json", br#"{"n":1}"#.to_vec());
    envelope.job = Some(Job {
        kind: kind.to_owned(),
        priority: JobPriority::Normal as i32,
        ..Job::default()
    });
    envelope
}

/// A gate whose only window starts in two hours: closed now, and for the whole test.
pub fn closed_gate() -> retrace_worker::gate::GateConfig {
    let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
    let at = |hours: i64| {
        let time = now
            .checked_add(jiff::SignedDuration::from_hours(hours))
            .expect("two hours from now is a time");
        format!("{:02}:{:02}", time.hour(), time.minute())
    };
    toml::from_str(&format!(
        "time_zone = \"UTC\"\nwindows = [{{ days = \"daily\", from = \"{}\", to = \"{}\" }}]\n",
        at(2),
        at(3)
    ))
    .expect("the closed gate is valid")
}

/// Serves `router` on a free loopback port; returns its base URL and the server's task.
pub async fn serve(router: axum::Router) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
        .await
        .expect("a free loopback port binds");
    let url = format!("http://{}", listener.local_addr().expect("a bound address"));
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .await
            .expect("the test server runs")
    });
    (url, server)
}

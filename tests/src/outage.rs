//! Broker outages a scenario can cause. On the mock cluster, librdkafka's own fault
//! injection takes its brokers down. tansu keeps its log in memory, so stopping its process
//! would lose the topics a real outage keeps; instead, clients reach tansu through a relay (a
//! TCP forwarder on its advertised port) that the test can cut: every connection dropped,
//! new ones refused, as when the broker's host goes away.

use std::net::SocketAddr;

use rdkafka::producer::DefaultProducerContext;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Broker;

/// Forwards connections from its own port to a broker's, while up.
pub struct Relay {
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Relays `listener`'s connections to `upstream`. Needs a tokio runtime.
    pub(crate) fn start(listener: std::net::TcpListener, upstream: SocketAddr) -> Relay {
        listener
            .set_nonblocking(true)
            .expect("the relay's socket is non-blocking");
        let listener = TcpListener::from_std(listener).expect("the relay listens");
        let (up, watch_up) = watch::channel(true);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *watch_up.borrow() {
                    tokio::spawn(relay(client, upstream, watch_up.clone()));
                }
                // Down: the connection is dropped as soon as it is accepted.
            }
        });
        Relay { up, task }
    }

    fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut broker) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
        _ = up.wait_for(|up| !up) => {}
    }
}

impl Broker {
    /// Takes every broker down: connections break and new ones are refused until
    /// [`bring_up`](Self::bring_up). Returns false, doing nothing, on an external Kafka,
    /// which a test cannot stop.
    #[must_use]
    pub fn take_down(&self) -> bool {
        self.set_up(false)
    }

    /// Ends an outage begun by [`take_down`](Self::take_down).
    pub fn bring_up(&self) {
        self.set_up(true);
    }

    fn set_up(&self, up: bool) -> bool {
        match self {
            Broker::Mock(cluster) => {
                for broker_id in 1..=MOCK_BROKERS {
                    let changed = if up {
                        cluster.broker_up(broker_id)
                    } else {
                        cluster.broker_down(broker_id)
                    };
                    changed.expect("the mock cluster has this broker");
                }
                true
            }
            Broker::Tansu { relay, .. } => {
                relay.set_up(up);
                true
            }
            Broker::External(_) => false,
        }
    }

    /// The mock cluster, for faults only it can inject (request errors, round-trip time).
    pub fn mock_cluster(
        &self,
    ) -> Option<&rdkafka::mocking::MockCluster<'static, DefaultProducerContext>> {
        match self {
            Broker::Mock(cluster) => Some(cluster),
            _ => None,
        }
    }
}

/// How many brokers [`Broker::mock`] starts.
pub(crate) const MOCK_BROKERS: i32 = 3;

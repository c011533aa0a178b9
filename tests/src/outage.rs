//! Broker outages a scenario can cause. On the mock cluster, librdkafka's own fault
//! injection takes its brokers down. On Apache Kafka, every node of the test's own cluster is
//! stopped (SIGTERM, a clean shutdown that keeps the log on disk) and started again, as when
//! an operator restarts the cluster. A scenario that stops one node at a time asks the
//! cluster's metadata which node leads a partition, and whether every partition is fully
//! replicated again.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::Broker;

impl Broker {
    /// Takes every broker down: connections break and new ones are refused until
    /// [`bring_up`](Self::bring_up). Returns false, doing nothing, on an external Kafka,
    /// which a test cannot stop.
    ///
    /// # Panics
    /// On the test binary's shared Kafka node: a scenario that takes the broker down is
    /// listed after `; private:` in [`on_every_broker!`](crate::on_every_broker).
    #[must_use]
    pub async fn take_down(&self) -> bool {
        match self {
            Broker::Mock(cluster) => {
                set_mock_up(cluster, false);
                true
            }
            Broker::Kafka { cluster, private } => {
                assert!(
                    private,
                    "this scenario stops the broker: list it after `; private:` in \
                     on_every_broker!, so it gets a Kafka node of its own"
                );
                for node in 1..=cluster.nodes() {
                    cluster.stop_node(node).await;
                }
                true
            }
            Broker::External(_) => false,
        }
    }

    /// Ends an outage begun by [`take_down`](Self::take_down); returns once every broker
    /// serves again.
    pub async fn bring_up(&self) {
        match self {
            Broker::Mock(cluster) => set_mock_up(cluster, true),
            Broker::Kafka { cluster, .. } => {
                for node in 1..=cluster.nodes() {
                    cluster.start_node(node).await;
                }
            }
            Broker::External(_) => {}
        }
    }

    /// The mock cluster, for faults only it can inject (request errors, round-trip time).
    pub fn mock_cluster(&self) -> Option<&MockCluster<'static, DefaultProducerContext>> {
        match self {
            Broker::Mock(cluster) => Some(cluster),
            _ => None,
        }
    }

    /// The Apache Kafka cluster the harness started, for faults on its nodes.
    pub fn kafka_cluster(&self) -> Option<&crate::KafkaCluster> {
        match self {
            Broker::Kafka { cluster, .. } => Some(cluster),
            _ => None,
        }
    }

    /// The broker that leads `partition` of `topic` now, as the cluster's metadata says (on
    /// the harness' Apache Kafka, a broker's id is its node number).
    pub async fn leader_of(&self, topic: &str, partition: i32) -> i32 {
        let what = format!("a leader of {topic}/{partition}");
        let topic = topic.to_owned();
        self.metadata_until(what, move |metadata| {
            let found = metadata.topics().iter().find(|t| t.name() == topic)?;
            let partition = found.partitions().iter().find(|p| p.id() == partition)?;
            (partition.error().is_none() && partition.leader() >= 0).then(|| partition.leader())
        })
        .await
    }

    /// Waits until every broker of the cluster is listed and every partition of every topic
    /// (Kafka's own included) has all its replicas in sync: no partition under-replicated,
    /// which is what a rolling restart waits for before it stops the next node.
    pub async fn wait_until_fully_replicated(&self, brokers: usize) {
        self.metadata_until(
            format!("{brokers} brokers with every partition fully replicated"),
            move |metadata| {
                let in_sync = metadata.topics().iter().all(|topic| {
                    topic.partitions().iter().all(|p| {
                        p.error().is_none()
                            && p.leader() >= 0
                            && p.isr().len() == p.replicas().len()
                    })
                });
                (metadata.brokers().len() == brokers && in_sync).then_some(())
            },
        )
        .await
    }

    /// Asks a new client for the cluster's metadata (all topics) until `probe` finds what it
    /// looks for, within [`crate::PATIENCE`].
    async fn metadata_until<T: Send + 'static>(
        &self,
        what: String,
        probe: impl Fn(&rdkafka::metadata::Metadata) -> Option<T> + Send + 'static,
    ) -> T {
        use rdkafka::producer::{BaseProducer, Producer as _};
        let client: BaseProducer = self.client_config().create().expect("a metadata client");
        tokio::task::spawn_blocking(move || {
            crate::wait_for(&what, crate::PATIENCE, || {
                let metadata = client
                    .client()
                    .fetch_metadata(None, std::time::Duration::from_secs(5))
                    .ok()?;
                probe(&metadata)
            })
        })
        .await
        .expect("the metadata probe does not panic")
    }
}

/// Takes every broker of the mock cluster down, or brings them up.
fn set_mock_up(cluster: &MockCluster<'static, DefaultProducerContext>, up: bool) {
    for broker_id in 1..=MOCK_BROKERS {
        let changed = if up {
            cluster.broker_up(broker_id)
        } else {
            cluster.broker_down(broker_id)
        };
        changed.expect("the mock cluster has this broker");
    }
}

/// How many brokers [`Broker::mock`] starts.
pub(crate) const MOCK_BROKERS: i32 = 3;

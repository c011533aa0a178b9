//! Asking the other shards, for one caller: with the caller's own credential, so each shard
//! checks the caller's permissions, masks what the caller may not see and audits the read,
//! as if the caller had asked it directly.
//!
//! Every shard is asked at once; a shard's replicas are tried in the configured order until
//! one answers. Any answer other than a success (a refused connection, a timeout, a 503
//! while the replica catches up) moves on to the next replica: a shard counts as answered
//! only with the document asked for, so a shard that cannot answer is named in
//! [`Gathered::incomplete`], never mistaken for one that holds nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use futures::future::join_all;
use retrace_api::{PositionView, RecordsQuery, ShardMarks, ShardRecords, ShardSubject};
use retrace_log_store::{
    ArchivedRecord, Mark, MarkedTransaction, RecordKey, SubjectTransaction, decode_record,
};
use retrace_telemetry::InternalEvent;
use serde::de::DeserializeOwned;

use super::{Shard, Sharding};
use crate::events::{ShardAnswered, ShardUnanswered};

/// How long one replica may take to answer before the next one is tried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The other shards, and the client that asks them.
pub(crate) struct Peers {
    sharding: Sharding,
    client: reqwest::Client,
}

impl Peers {
    pub fn new(sharding: Sharding) -> Self {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("a client without custom TLS builds");
        Peers { sharding, client }
    }
}

/// What the shards that answered gave, one entry per shard, and the shards that did not.
pub(crate) struct Gathered<T> {
    pub parts: Vec<(Shard, T)>,
    pub incomplete: Vec<String>,
}

/// The other shards as one caller asks them.
#[derive(Clone)]
pub(crate) struct Fanout {
    peers: Arc<Peers>,
    credential: Option<HeaderValue>,
}

impl Fanout {
    pub fn new(peers: Arc<Peers>, credential: Option<HeaderValue>) -> Self {
        Fanout { peers, credential }
    }

    /// The records every other shard holds of the query's transactions and events. Blocks:
    /// called from the blocking pool, where reads run.
    pub fn records(&self, query: &RecordsQuery) -> Gathered<Vec<ArchivedRecord>> {
        let gathered = self.ask::<ShardRecords>(None, |client, url| {
            client.post(format!("{url}/v1/shard/records")).json(query)
        });
        self.decoded(gathered)
    }

    /// Up to `limit` marks of every other shard (or only of `only`), newest first, after
    /// `cursor`.
    pub fn marks(
        &self,
        only: Option<Shard>,
        mark: Mark,
        (from_ms, until_ms): (i64, i64),
        cursor: Option<&str>,
        limit: usize,
    ) -> Gathered<Vec<MarkedTransaction>> {
        let mark = match mark {
            Mark::Start => "start",
            Mark::Failure => "failure",
        };
        let mut query = vec![
            ("mark", mark.to_owned()),
            ("from_ms", from_ms.to_string()),
            ("until_ms", until_ms.to_string()),
            ("limit", limit.to_string()),
        ];
        query.extend(cursor.map(|cursor| ("cursor", cursor.to_owned())));
        let gathered = self.ask::<ShardMarks>(only, |client, url| {
            client.get(format!("{url}/v1/shard/marks")).query(&query)
        });
        map_parts(gathered, |answer| {
            answer
                .marks
                .into_iter()
                .map(|mark| MarkedTransaction {
                    transaction_id: mark.transaction_id,
                    time_ms: mark.time_ms,
                    cursor: mark.cursor,
                })
                .collect()
        })
    }

    /// Every transaction of `subject` each other shard holds, and when it last saw it.
    pub fn subject_seen(&self, subject: &str) -> Gathered<Vec<SubjectTransaction>> {
        let gathered = self.ask::<ShardSubject>(None, |client, url| {
            client
                .get(format!("{url}/v1/shard/subjects"))
                .query(&[("subject", subject)])
        });
        map_parts(gathered, |answer| {
            answer
                .transactions
                .into_iter()
                .map(|seen| SubjectTransaction {
                    transaction_id: seen.transaction_id,
                    last_seen_ms: seen.last_seen_ms,
                })
                .collect()
        })
    }

    /// The other shards' names (`1/3`).
    pub fn others(&self) -> Vec<String> {
        let others = self.peers.sharding.others();
        others.map(|(shard, _)| shard.to_string()).collect()
    }

    /// The shard that archives `partition` of `topic`, and its URLs, when another does.
    pub fn holder(&self, topic: &str, partition: i32) -> Option<String> {
        if self.shard().owns(topic, partition) {
            return None;
        }
        let mut others = self.peers.sharding.others();
        let (shard, urls) = others.find(|(shard, _)| shard.owns(topic, partition))?;
        Some(format!("{shard} ({})", urls.join(", ")))
    }

    /// The shard that asks.
    pub fn shard(&self) -> Shard {
        self.peers.sharding.shard
    }

    /// Where every other shard stands in each partition it holds.
    pub fn positions(&self) -> Gathered<Vec<PositionView>> {
        self.ask(None, |client, url| {
            client.get(format!("{url}/v1/positions"))
        })
    }

    /// Asks every other shard (or only `only`) at once, each replica in turn until one
    /// answers `T`.
    fn ask<T: DeserializeOwned>(
        &self,
        only: Option<Shard>,
        request: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    ) -> Gathered<T> {
        let others = self.peers.sharding.others();
        let asked = others
            .filter(|(shard, _)| only.is_none_or(|only| only == *shard))
            .map(|(shard, urls)| {
                let request = &request;
                async move {
                    let mut errors = Vec::new();
                    for url in urls {
                        let url = url.trim_end_matches('/');
                        let mut builder = request(&self.peers.client, url);
                        if let Some(credential) = &self.credential {
                            builder = builder.header(AUTHORIZATION, credential.clone());
                        }
                        match answer::<T>(builder).await {
                            Ok(answer) => {
                                ShardAnswered { shard }.emit();
                                return (shard, Ok(answer));
                            }
                            Err(error) => errors.push(format!("{url}: {error}")),
                        }
                    }
                    ShardUnanswered {
                        shard,
                        errors: &errors,
                    }
                    .emit();
                    (shard, Err(()))
                }
            });
        let answers = tokio::runtime::Handle::current().block_on(join_all(asked));
        let mut gathered = Gathered {
            parts: Vec::new(),
            incomplete: Vec::new(),
        };
        for (shard, answer) in answers {
            match answer {
                Ok(answer) => gathered.parts.push((shard, answer)),
                Err(()) => gathered.incomplete.push(shard.to_string()),
            }
        }
        gathered
    }

    /// The records of each shard's answer; a shard whose records cannot be read (another
    /// version's encoding) counts as one that did not answer.
    fn decoded(&self, gathered: Gathered<ShardRecords>) -> Gathered<Vec<ArchivedRecord>> {
        let mut decoded = Gathered {
            parts: Vec::new(),
            incomplete: gathered.incomplete,
        };
        for (shard, answer) in gathered.parts {
            match answer.records.into_iter().map(decode).collect() {
                Ok(records) => decoded.parts.push((shard, records)),
                Err(error) => {
                    ShardUnanswered {
                        shard,
                        errors: &[error],
                    }
                    .emit();
                    decoded.incomplete.push(shard.to_string());
                }
            }
        }
        decoded
    }
}

async fn answer<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<T, String> {
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{status}: {body}"));
    }
    response.json().await.map_err(|e| e.to_string())
}

fn decode(record: retrace_api::ShardRecord) -> Result<ArchivedRecord, String> {
    let key = RecordKey {
        topic: record.topic,
        partition: record.partition,
        epoch: record.epoch,
        offset: record.offset,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&record.stored)
        .map_err(|e| format!("record {key} is not base64: {e}"))?;
    decode_record(key, &bytes).map_err(|e| e.to_string())
}

fn map_parts<T, U>(gathered: Gathered<T>, mut each: impl FnMut(T) -> U) -> Gathered<U> {
    Gathered {
        parts: gathered
            .parts
            .into_iter()
            .map(|(shard, part)| (shard, each(part)))
            .collect(),
        incomplete: gathered.incomplete,
    }
}

//! Live reload: one mechanism every service shares.
//!
//! A [`Reloader`] holds a service's effective configuration and the way it was resolved
//! (file, then `RETRACE_*` env, then flags). On SIGHUP, or when the file (or a TLS file it
//! names) changes on disk, it resolves again through the same layering. A valid result is
//! published to every [`watch`] subscriber with a new [`Loaded::version`] (a short hash of the
//! effective configuration) and logged with the fields that changed; an invalid one is refused
//! whole, the running configuration kept, and every problem reported (log line naming the file
//! and fields, `retrace_config_reloads_total{outcome="invalid"}`).
//!
//! The file is polled (modification time is not trusted: editors and config-map mounts
//! replace files in ways that keep it): its content, and the TLS files', are hashed at each
//! [`POLL_INTERVAL`], and a change is acted on once two polls in a row see the same content,
//! so a file being written is not read half-way.
//!
//! The caller owns the task: [`Reloader::run`] returns when its shutdown token is cancelled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use retrace_api::ConfigDocument;
use retrace_auth::{AuthConfig, Guard};
use retrace_http::{TlsFiles, TlsReload};
use retrace_telemetry::InternalEvent;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ConfigError;
use crate::events::{
    AuthNeedsRestart, AuthNotReloaded, AuthReloaded, ConfigApplied, ConfigRefused, ConfigUnchanged,
    TlsReloaded,
};

/// How often the configuration file is looked at.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What replaces a secret in `/v1/config` and in reload log lines.
pub const REDACTED: &str = "***";

/// Words that mark a setting as secret wherever they appear in its path
/// (`kafka.properties.sasl.password`, `auth.bootstrap_admin_sha256`).
const SECRET_WORDS: [&str; 7] = [
    "password",
    "signing_keys",
    "secret",
    "sha256",
    "credential",
    "private",
    "key.pem",
];

/// A service's effective configuration: serializable (for `/v1/config`, the version and
/// the diff), and naming the TLS files it serves with, which are reloaded with it.
pub trait Reloadable: Serialize + Clone + Send + Sync + 'static {
    fn tls(&self) -> Option<&TlsFiles>;
}

/// One published configuration.
#[derive(Debug)]
pub struct Loaded<C> {
    pub config: C,
    /// The first 12 hex digits of the SHA-256 of the effective configuration.
    pub version: String,
    /// When it was resolved, RFC 3339.
    pub loaded_at: String,
}

/// What one reload did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// A new version was published; these fields changed.
    Applied {
        version: String,
        changed: Vec<String>,
    },
    /// Resolved to the running configuration.
    Unchanged,
    /// Refused; the running configuration stays.
    Invalid(ConfigError),
}

/// Why a reload happened, for its log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChanged,
    Request,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChanged => "file changed",
            Trigger::Request => "request",
        }
    }
}

type Resolve<C> = Box<dyn Fn() -> Result<C, ConfigError> + Send + Sync>;

/// Holds a service's configuration, re-resolves it on a trigger, and publishes it.
pub struct Reloader<C> {
    service: &'static str,
    file: Option<PathBuf>,
    resolve: Resolve<C>,
    current: watch::Sender<Arc<Loaded<C>>>,
    tls: std::sync::Mutex<Option<TlsReload>>,
    /// How often the files are looked at; `None`: only SIGHUP reloads.
    poll: Option<Duration>,
}

impl<C: Reloadable> Reloader<C> {
    /// Resolves the configuration a first time (its error is the start-up refusal), and
    /// keeps `resolve` to do it again on each trigger. `file` is the file `resolve` reads.
    pub fn new(
        service: &'static str,
        file: Option<PathBuf>,
        resolve: impl Fn() -> Result<C, ConfigError> + Send + Sync + 'static,
    ) -> Result<Self, ConfigError> {
        let config = resolve()?;
        let reloader = Reloader {
            service,
            file,
            resolve: Box::new(resolve),
            current: watch::Sender::new(Arc::new(loaded(config))),
            tls: std::sync::Mutex::new(None),
            poll: Some(POLL_INTERVAL),
        };
        reloader.announce();
        Ok(reloader)
    }

    /// A configuration given whole (tests, `retrace dev`): nothing to reload from, but it
    /// is published and versioned the same way.
    pub fn fixed(service: &'static str, config: C) -> Self {
        let again = config.clone();
        Reloader::new(service, None, move || Ok(again.clone()))
            .expect("a fixed configuration resolves")
    }

    /// Looks at the files every `poll` ([`POLL_INTERVAL`] unless told); `None` leaves
    /// reloading to SIGHUP alone.
    pub fn poll_every(mut self, poll: Option<Duration>) -> Self {
        self.poll = poll;
        self
    }

    /// The TLS listener to hand new certificates to on each reload.
    pub fn reload_tls_of(&self, tls: Option<TlsReload>) {
        *self.tls.lock().expect("the TLS slot is never poisoned") = tls;
    }

    /// Follows every published configuration.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Loaded<C>>> {
        self.current.subscribe()
    }

    pub fn current(&self) -> Arc<Loaded<C>> {
        Arc::clone(&self.current.borrow())
    }

    /// The document `GET /v1/config` answers, now.
    pub fn document(&self) -> ConfigDocument {
        document(self.service, self.file.as_deref(), &self.current())
    }

    /// A function answering [`document`](Self::document), for a route.
    pub fn documents(&self) -> impl Fn() -> ConfigDocument + Clone + Send + Sync + 'static {
        let current = self.current.subscribe();
        let (service, file) = (self.service, self.file.clone());
        move || document(service, file.as_deref(), &current.borrow())
    }

    /// Resolves again; publishes a valid, different result; reports an invalid one.
    pub fn reload(&self, trigger: Trigger) -> ReloadOutcome {
        let outcome = match (self.resolve)() {
            Ok(config) => self.apply(config, trigger),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                ConfigRefused {
                    service: self.service,
                    file: self.file.as_deref(),
                    trigger,
                    problems: &error.problems(),
                }
                .emit();
                ReloadOutcome::Invalid(error)
            }
        }
    }

    fn apply(&self, config: C, trigger: Trigger) -> Result<ReloadOutcome, ConfigError> {
        // Certificates first: a configuration whose certificate cannot be loaded is refused
        // whole.
        let tls = self.tls.lock().expect("the TLS slot is never poisoned");
        if let (Some(listener), Some(files)) = (tls.as_ref(), config.tls()) {
            listener
                .reload(files)
                .map_err(|error| ConfigError::Invalid {
                    field: "tls".to_owned(),
                    problem: error.to_string(),
                })?;
            TlsReloaded {
                service: self.service,
                cert: &files.cert,
            }
            .emit();
        }
        drop(tls);
        let next = loaded(config);
        let previous = self.current();
        if next.version == previous.version {
            ConfigUnchanged {
                service: self.service,
                trigger,
                version: &previous.version,
            }
            .emit();
            return Ok(ReloadOutcome::Unchanged);
        }
        let changes = diff(&to_value(&previous.config), &to_value(&next.config));
        ConfigApplied {
            service: self.service,
            trigger,
            from: &previous.version,
            to: &next.version,
            changes: &changes,
        }
        .emit();
        let version = next.version.clone();
        self.current.send_replace(Arc::new(next));
        Ok(ReloadOutcome::Applied {
            version,
            changed: changes.into_iter().map(|change| change.field).collect(),
        })
    }

    /// Reloads on SIGHUP, and when the file or its TLS files change, until `shutdown`.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => Some(signal),
            Err(error) => {
                crate::events::NoHangupSignal { error: &error }.emit();
                None
            }
        };
        let mut seen = self.fingerprint();
        let mut candidate: Option<[u8; 32]> = None;
        let mut ticks = tokio::time::interval(self.poll.unwrap_or(POLL_INTERVAL));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let hung_up = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = hung_up => {
                    seen = self.fingerprint();
                    candidate = None;
                    self.reload(Trigger::Signal);
                }
                _ = ticks.tick(), if self.poll.is_some() => {
                    let now = self.fingerprint();
                    if now == seen {
                        candidate = None;
                    } else if candidate == Some(now) {
                        // Two polls in a row saw the same new content: it is written.
                        seen = now;
                        candidate = None;
                        self.reload(Trigger::FileChanged);
                    } else {
                        candidate = Some(now);
                    }
                }
            }
        }
    }

    /// A hash of the file's content and of the TLS files the running configuration names;
    /// a missing file hashes as absent.
    fn fingerprint(&self) -> [u8; 32] {
        let current = self.current();
        let tls = current.config.tls();
        let files = self
            .file
            .iter()
            .map(PathBuf::as_path)
            .chain(tls.map(|files| files.cert.as_path()))
            .chain(tls.map(|files| files.key.as_path()));
        let mut hash = Sha256::new();
        for path in files {
            match std::fs::read(path) {
                Ok(bytes) => {
                    hash.update(b"present");
                    hash.update((bytes.len() as u64).to_be_bytes());
                    hash.update(&bytes);
                }
                Err(_) => hash.update(b"absent"),
            }
        }
        hash.finalize().into()
    }

    /// Registers the service's metrics, and emits the active version's.
    fn announce(&self) {
        crate::events::register_metrics(self.service);
        crate::events::ConfigActive {
            service: self.service,
            version: &self.current().version,
            previous: None,
        }
        .emit();
    }
}

/// The next configuration `config` publishes, marked seen; `None` once `shutdown` is
/// cancelled or the reloader is gone. What a part that follows reloads loops on.
pub async fn next_config<C>(
    config: &mut watch::Receiver<Arc<Loaded<C>>>,
    shutdown: &CancellationToken,
) -> Option<Arc<Loaded<C>>> {
    tokio::select! {
        () = shutdown.cancelled() => None,
        changed = config.changed() => {
            changed.ok()?;
            Some(Arc::clone(&config.borrow_and_update()))
        }
    }
}

/// Applies each reloaded `[auth]` (what `auth_of` finds in the configuration) to `guard`:
/// the OIDC role map, issuer, audience, keys and the bootstrap hash apply to the next request.
/// `enabled`, `tokens_topic` and `metrics_public` shape how the service was built, so a change
/// to one of them is reported as needing a restart and nothing of that `[auth]` applies.
pub async fn follow_auth<C>(
    mut config: watch::Receiver<Arc<Loaded<C>>>,
    guard: Guard,
    service: &'static str,
    auth_of: impl Fn(&C) -> &AuthConfig,
    shutdown: CancellationToken,
) {
    let mut running = auth_of(&config.borrow_and_update().config).clone();
    while let Some(loaded) = next_config(&mut config, &shutdown).await {
        let wanted = auth_of(&loaded.config);
        if *wanted == running {
            continue;
        }
        let fixed = [
            ("auth.enabled", wanted.enabled != running.enabled),
            (
                "auth.tokens_topic",
                wanted.tokens_topic != running.tokens_topic,
            ),
            (
                "auth.metrics_public",
                wanted.metrics_public != running.metrics_public,
            ),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, changed)| *changed) {
            AuthNeedsRestart { service, field }.emit();
            continue;
        }
        match guard.reload(wanted).await {
            Ok(()) => {
                running = wanted.clone();
                AuthReloaded {
                    service,
                    version: &loaded.version,
                }
                .emit();
            }
            Err(error) => AuthNotReloaded {
                service,
                error: &error,
            }
            .emit(),
        }
    }
}

fn loaded<C: Reloadable>(config: C) -> Loaded<C> {
    let version = version_of(&to_value(&config));
    Loaded {
        config,
        version,
        loaded_at: jiff::Timestamp::now().to_string(),
    }
}

fn document<C: Reloadable>(
    service: &str,
    file: Option<&Path>,
    loaded: &Loaded<C>,
) -> ConfigDocument {
    ConfigDocument {
        service: service.to_owned(),
        version: loaded.version.clone(),
        loaded_at: loaded.loaded_at.clone(),
        file: file.map(|path| path.display().to_string()),
        config: redacted(to_value(&loaded.config)),
    }
}

fn to_value(config: &impl Serialize) -> Value {
    serde_json::to_value(config).expect("a configuration serializes to JSON")
}

/// The first 12 hex digits of the SHA-256 of `config` as JSON (objects' keys sorted).
pub fn version_of(config: &Value) -> String {
    let bytes = serde_json::to_vec(config).expect("a JSON value serializes");
    short_hash(&bytes)
}

/// A short, stable hash of a topic set: the same whatever the order or repetitions of
/// `topics`. A consumer is re-created only when this changes.
pub fn topic_set_hash<'a>(topics: impl IntoIterator<Item = &'a str>) -> String {
    let sorted: std::collections::BTreeSet<&str> = topics.into_iter().collect();
    let joined: Vec<&str> = sorted.into_iter().collect();
    short_hash(joined.join("\0").as_bytes())
}

fn short_hash(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Whether the setting at `path` (dotted) holds a secret.
pub fn is_secret(path: &str) -> bool {
    let path = path.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| path.contains(word))
}

/// `config` with every secret value replaced by [`REDACTED`].
pub fn redacted(config: Value) -> Value {
    redact_at("", config)
}

fn redact_at(path: &str, value: Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(name, value)| {
                    let inner = join(path, &name);
                    let value = if is_secret(&inner) && !value.is_null() {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact_at(&inner, value)
                    };
                    (name, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| redact_at(&format!("{path}[{index}]"), item))
                .collect(),
        ),
        other => other,
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// One setting that changed, its values shown unless secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub field: String,
    /// `"***"` for a secret; `null` where the setting was absent.
    pub from: String,
    pub to: String,
}

/// Every leaf setting that differs between `before` and `after`, in path order.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    flatten("", before, &mut old);
    flatten("", after, &mut new);
    let fields: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    fields
        .into_iter()
        .filter(|field| old.get(*field) != new.get(*field))
        .map(|field| {
            let show = |value: Option<&&Value>| match value {
                None => "null".to_owned(),
                Some(_) if is_secret(field) => REDACTED.to_owned(),
                Some(value) => value.to_string(),
            };
            Change {
                field: field.clone(),
                from: show(old.get(field)),
                to: show(new.get(field)),
            }
        })
        .collect()
}

/// Leaves by path; an array is one leaf (a list of topics changed, not its third element).
fn flatten<'a>(path: &str, value: &'a Value, into: &mut BTreeMap<String, &'a Value>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (name, value) in fields {
                flatten(&join(path, name), value, into);
            }
        }
        leaf => {
            into.insert(path.to_owned(), leaf);
        }
    }
}

#[cfg(test)]
mod tests;

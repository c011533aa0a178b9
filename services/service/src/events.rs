//! What the configuration layer reports about itself. [`register_metrics`] registers a
//! service's series at zero as its configuration is first loaded.

use std::path::Path;

use metrics::{counter, gauge};
use retrace_telemetry::InternalEvent;
use tracing::{error, info, warn};

use crate::ConfigError;
use crate::reload::{Change, Trigger};

/// The `outcome` of `retrace_config_reloads_total`.
const APPLIED: &str = "applied";
const UNCHANGED: &str = "unchanged";
const INVALID: &str = "invalid";

/// Installs Retrace's metrics recorder, then registers at zero the series of `service`'s
/// configuration: its reloads by outcome, its certificate reloads.
pub(crate) fn register_metrics(service: &str) {
    retrace_telemetry::prometheus();
    let service = [service];
    retrace_telemetry::register(
        "retrace_config_reloads_total",
        &[
            ("service", &service),
            ("outcome", &[APPLIED, UNCHANGED, INVALID]),
        ],
    );
    retrace_telemetry::register("retrace_tls_reloads_total", &[("service", &service)]);
}

/// A `RETRACE_*` variable is set that the service does not read: most likely misspelt.
pub(crate) struct UnknownEnvVar<'a> {
    pub name: &'a str,
    pub service: &'a str,
}

impl InternalEvent for UnknownEnvVar<'_> {
    fn emit(self) {
        warn!(
            variable = self.name,
            service = self.service,
            "{} is set but {} does not read it; check its spelling (`{} --help` lists each \
             variable beside its flag)",
            self.name,
            self.service,
            self.service
        );
    }
}

/// A reload produced a new configuration, now running.
pub(crate) struct ConfigApplied<'a> {
    pub service: &'a str,
    pub trigger: Trigger,
    pub from: &'a str,
    pub to: &'a str,
    pub changes: &'a [Change],
}

impl InternalEvent for ConfigApplied<'_> {
    fn emit(self) {
        let changed: Vec<String> = self
            .changes
            .iter()
            .map(|change| format!("{}: {} -> {}", change.field, change.from, change.to))
            .collect();
        info!(
            service = self.service,
            trigger = self.trigger.as_str(),
            from_version = self.from,
            version = self.to,
            changed = %changed.join("; "),
            "configuration reloaded: version {} -> {}; {}",
            self.from,
            self.to,
            changed.join("; ")
        );
        counter!("retrace_config_reloads_total", "service" => self.service.to_owned(), "outcome" => APPLIED).increment(1);
        ConfigActive {
            service: self.service,
            version: self.to,
            previous: Some(self.from),
        }
        .emit();
    }
}

/// A reload resolved to the configuration already running.
pub(crate) struct ConfigUnchanged<'a> {
    pub service: &'a str,
    pub trigger: Trigger,
    pub version: &'a str,
}

impl InternalEvent for ConfigUnchanged<'_> {
    fn emit(self) {
        info!(
            service = self.service,
            trigger = self.trigger.as_str(),
            version = self.version,
            "configuration reloaded: nothing changed (version {})",
            self.version
        );
        counter!("retrace_config_reloads_total", "service" => self.service.to_owned(), "outcome" => UNCHANGED).increment(1);
    }
}

/// A reload was refused: the running configuration stays.
pub(crate) struct ConfigRefused<'a> {
    pub service: &'a str,
    pub file: Option<&'a Path>,
    pub trigger: Trigger,
    pub problems: &'a [&'a ConfigError],
}

impl InternalEvent for ConfigRefused<'_> {
    fn emit(self) {
        let file = self
            .file
            .map_or_else(|| "(no file)".to_owned(), |file| file.display().to_string());
        let problems: Vec<String> = self.problems.iter().map(ToString::to_string).collect();
        error!(
            service = self.service,
            trigger = self.trigger.as_str(),
            file = %file,
            problems = %problems.join("; "),
            "configuration reload refused, the running configuration stays: {} has {} \
             problem(s): {}; fix the file and save it again (or send SIGHUP)",
            file,
            problems.len(),
            problems.join("; ")
        );
        counter!("retrace_config_reloads_total", "service" => self.service.to_owned(), "outcome" => INVALID).increment(1);
    }
}

/// Which configuration version runs: `retrace_config_info{service,version}` is 1 for it and
/// 0 for the one it replaced.
pub(crate) struct ConfigActive<'a> {
    pub service: &'a str,
    pub version: &'a str,
    pub previous: Option<&'a str>,
}

impl InternalEvent for ConfigActive<'_> {
    fn emit(self) {
        if let Some(previous) = self.previous {
            gauge!("retrace_config_info", "service" => self.service.to_owned(), "version" => previous.to_owned()).set(0.0);
        }
        gauge!("retrace_config_info", "service" => self.service.to_owned(), "version" => self.version.to_owned()).set(1.0);
    }
}

/// The HTTPS certificate and key were read again.
pub(crate) struct TlsReloaded<'a> {
    pub service: &'a str,
    pub cert: &'a Path,
}

impl InternalEvent for TlsReloaded<'_> {
    fn emit(self) {
        info!(
            service = self.service,
            cert = %self.cert.display(),
            "TLS certificate reloaded from {}",
            self.cert.display()
        );
        counter!("retrace_tls_reloads_total", "service" => self.service.to_owned()).increment(1);
    }
}

/// SIGHUP cannot be listened for; file changes still reload.
pub(crate) struct NoHangupSignal<'a> {
    pub error: &'a std::io::Error,
}

impl InternalEvent for NoHangupSignal<'_> {
    fn emit(self) {
        warn!(
            error = %self.error,
            "cannot listen for SIGHUP ({}); configuration reloads only when the file changes",
            self.error
        );
    }
}

/// A service re-created a Kafka consumer because its topic set changed.
pub struct ConsumerRecreated<'a> {
    pub service: &'a str,
    /// The consumer's group (`retrace-archive`, `retrace-worker.<queue>`).
    pub group: &'a str,
    /// The topic set's hash before and after ([`crate::topic_set_hash`]).
    pub from: &'a str,
    pub to: &'a str,
    pub topics: &'a str,
}

impl InternalEvent for ConsumerRecreated<'_> {
    fn emit(self) {
        info!(
            service = self.service,
            group = self.group,
            from_topics_hash = self.from,
            topics_hash = self.to,
            topics = self.topics,
            "consumer of group {} re-created: its topics are now {}",
            self.group,
            self.topics
        );
        counter!("retrace_consumer_recreated_total", "service" => self.service.to_owned(), "group" => self.group.to_owned()).increment(1);
    }
}

/// A reloaded `[auth]` checks the next requests.
pub(crate) struct AuthReloaded<'a> {
    pub service: &'a str,
    pub version: &'a str,
}

impl InternalEvent for AuthReloaded<'_> {
    fn emit(self) {
        info!(
            service = self.service,
            version = self.version,
            category = "security",
            "authentication reloaded (configuration {}): the role map and OIDC settings apply \
             to the next request",
            self.version
        );
    }
}

/// A reloaded `[auth]` changes a setting the service was built with.
pub(crate) struct AuthNeedsRestart<'a> {
    pub service: &'a str,
    pub field: &'a str,
}

impl InternalEvent for AuthNeedsRestart<'_> {
    fn emit(self) {
        warn!(
            service = self.service,
            field = self.field,
            category = "security",
            "{} changed: restart {} for it (and the rest of [auth]) to take effect; the \
             running authentication stays",
            self.field,
            self.service
        );
    }
}

/// A reloaded `[auth]` could not be set up (its OIDC keys could not be loaded).
pub(crate) struct AuthNotReloaded<'a> {
    pub service: &'a str,
    pub error: &'a retrace_auth::AuthSetupError,
}

impl InternalEvent for AuthNotReloaded<'_> {
    fn emit(self) {
        error!(
            service = self.service,
            error = %self.error,
            category = "security",
            "the reloaded [auth] cannot be applied ({}); the running authentication stays",
            self.error
        );
    }
}

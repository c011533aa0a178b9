//! What the configuration layer reports about itself.

use retrace_telemetry::InternalEvent;
use tracing::warn;

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

//! What a reloaded configuration changes in the API without a restart: the masking rules
//! and the bulk replay threshold. Handlers read the latest [`Live`] at each request.

use std::sync::Arc;

use retrace_service::{Loaded, next_config};
use retrace_telemetry::InternalEvent;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::ArchiveConfig;
use crate::events::LiveSettingsKept;
use crate::masking::{Masking, MaskingError};

/// The API's reloadable settings.
pub(crate) struct Live {
    pub masking: Arc<Masking>,
    /// Bulk replays planning more messages need `replay:bulk`.
    pub bulk_admin_above: usize,
}

impl Live {
    pub fn of(config: &ArchiveConfig) -> Result<Live, MaskingError> {
        Ok(Live {
            masking: Arc::new(Masking::new(&config.masking.json_paths)?),
            bulk_admin_above: config.replay_bulk_admin_above,
        })
    }
}

/// Publishes the [`Live`] settings of every configuration `config` publishes, until
/// `shutdown`.
pub(crate) async fn follow(
    mut config: watch::Receiver<Arc<Loaded<ArchiveConfig>>>,
    live: watch::Sender<Arc<Live>>,
    shutdown: CancellationToken,
) {
    while let Some(loaded) = next_config(&mut config, &shutdown).await {
        // The reload checked the masking paths already; should they fail here anyway, the
        // API keeps the rules it has rather than masking nothing.
        match Live::of(&loaded.config) {
            Ok(next) => {
                live.send_replace(Arc::new(next));
            }
            Err(error) => LiveSettingsKept {
                version: &loaded.version,
                error: &error,
            }
            .emit(),
        }
    }
}

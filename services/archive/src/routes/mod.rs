//! The routes of the archive's API, each behind the permission it needs (deny by default),
//! and the state they share. Every read and replay is answered only once its audit record
//! is durable; every handler reads the store on the blocking pool; every error is the one
//! JSON error document, naming the parameter at fault; every listing pages with an opaque
//! cursor. Each module below is one resource's handlers: they parse the request, call the
//! domain, and answer.

mod audit;
mod backups;
mod config;
mod digests;
mod erasure;
mod events;
mod incidents;
mod openapi;
mod plumbing;
mod positions;
mod replays;
mod responses;
mod shards;
mod tokens;
mod transactions;
mod whoami;

use std::sync::Arc;

use axum::Router;
use axum::http::HeaderValue;
use retrace_auth::{Caller, Guard, Permission, TokenRegistry};
use retrace_log_store::LogStore;
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::Auditor;
use crate::changes::ChangeLog;
use crate::lag::Lag;
use crate::live::Live;
use crate::masking::Masking;
use crate::reads::Reader;
use crate::replay::{Replayer, Replays};
use crate::shards::fanout::{Fanout, Peers};

pub use crate::reads::parse_time;
pub use openapi::openapi;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Api {
    pub replayer: Replayer,
    /// Where erasures go, for every replica to apply.
    pub changes: ChangeLog,
    pub guard: Guard,
    pub auditor: Auditor,
    /// Masking rules and the bulk replay threshold, as last reloaded.
    pub live: watch::Receiver<Arc<Live>>,
    /// Absent when authentication is disabled.
    pub registry: Option<TokenRegistry>,
    /// How far behind Kafka the archive is, as of the last check.
    pub lag: Lag,
    /// The other shards, when this archive is one.
    pub peers: Option<Arc<Peers>>,
}

impl Api {
    pub fn store(&self) -> &LogStore {
        self.replayer.store()
    }

    /// The masking to apply for `caller`: none if it may read payloads.
    fn masking_for(&self, caller: &Caller) -> Option<Arc<Masking>> {
        (!caller.can(Permission::PayloadRead)).then(|| self.live.borrow().masking.clone())
    }

    /// The archive as `caller` reads it; a shard asks the others with `credential`.
    fn reader(&self, caller: &Caller, credential: Option<HeaderValue>) -> Reader {
        Reader {
            store: self.store().clone(),
            fanout: self.fanout(credential),
            lag: self.lag.clone(),
            masking: self.masking_for(caller),
            caller: caller.clone(),
            guard: self.guard.clone(),
        }
    }

    /// Replay requests, with the bulk threshold as last reloaded; a shard asks the others
    /// with `credential`.
    fn replays(&self, credential: Option<HeaderValue>) -> Replays {
        Replays {
            replayer: self.replayer.clone(),
            guard: self.guard.clone(),
            bulk_admin_above: self.live.borrow().bulk_admin_above,
            fanout: self.fanout(credential),
        }
    }

    /// The other shards, asked with `credential`; `None` unless a shard.
    fn fanout(&self, credential: Option<HeaderValue>) -> Option<Fanout> {
        let peers = self.peers.as_ref()?;
        Some(Fanout::new(Arc::clone(peers), credential))
    }
}

/// Who may call a group of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone, without a credential.
    Open,
    /// Any authenticated caller, whatever its permissions.
    Authenticated,
    /// Callers holding this permission.
    Needs(Permission),
}

/// Every route of the API, in groups by who may call them (the table in docs/api.md): the
/// one list both the router ([`router`]) and the OpenAPI document ([`openapi`]) are made
/// from, so the document names the permission the guard checks. A group whose routes have
/// no handler here is documented only: `/v1/config` is answered by the service host
/// (retrace-service) beside this router.
pub(crate) fn table() -> Vec<(Access, OpenApiRouter<Api>)> {
    use Access::{Authenticated, Needs, Open};
    vec![
        (
            Open,
            OpenApiRouter::new().routes(routes!(openapi::document)),
        ),
        // Any authenticated caller may ask what it may do.
        (
            Authenticated,
            OpenApiRouter::new().routes(routes!(whoami::whoami)),
        ),
        (
            Needs(Permission::TraceRead),
            OpenApiRouter::new()
                .routes(routes!(transactions::list))
                .routes(routes!(transactions::get))
                .routes(routes!(transactions::of_subject))
                .routes(routes!(events::get))
                .routes(routes!(events::messages))
                .routes(routes!(incidents::list))
                .routes(routes!(incidents::get))
                .routes(routes!(incidents::subjects))
                .routes(routes!(replays::get))
                .routes(routes!(positions::positions))
                .routes(routes!(shards::records))
                .routes(routes!(shards::marks))
                .routes(routes!(shards::subject)),
        ),
        (
            Needs(Permission::Export),
            OpenApiRouter::new()
                .routes(routes!(transactions::export))
                .routes(routes!(transactions::export_of_subject))
                .routes(routes!(incidents::export_subjects)),
        ),
        // Bulk replays above the threshold also need `replay:bulk`, checked once planned.
        (
            Needs(Permission::Replay),
            OpenApiRouter::new()
                .routes(routes!(replays::transaction))
                .routes(routes!(replays::bulk)),
        ),
        (
            Needs(Permission::Erase),
            OpenApiRouter::new().routes(routes!(erasure::erase)),
        ),
        // Digests verify the archive as the trail's check verifies the trail; a digest of
        // one record would confirm a guess at a payload masked from `trace:read`.
        (
            Needs(Permission::AuditRead),
            OpenApiRouter::new()
                .routes(routes!(audit::trail))
                .routes(routes!(audit::verify))
                .routes(routes!(digests::partitions))
                .routes(routes!(digests::digest)),
        ),
        (
            Needs(Permission::TokenAdmin),
            OpenApiRouter::new()
                .routes(routes!(tokens::list, tokens::create))
                .routes(routes!(tokens::revoke)),
        ),
        (
            Needs(Permission::Backup),
            OpenApiRouter::new().routes(routes!(backups::create)),
        ),
        (Needs(Permission::ConfigRead), config::documented()),
    ]
}

/// Every route of [`table`], each group behind its permission (deny by default).
pub(crate) fn router(api: Api) -> Router {
    let guard = api.guard.clone();
    table()
        .into_iter()
        .fold(Router::new(), |router, (access, group)| {
            let (routes, _) = group.split_for_parts();
            let routes = match access {
                // Documented only (see `table`).
                _ if !routes.has_routes() => return router,
                Access::Open => routes,
                Access::Authenticated => routes.route_layer(guard.authenticated()),
                Access::Needs(permission) => routes.route_layer(guard.require(permission)),
            };
            router.merge(routes)
        })
        .with_state(api)
}

#[cfg(test)]
mod fuzz_tests;

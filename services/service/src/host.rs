//! The service host: what every Retrace service does around its own work, written once.
//!
//! A service hands [`Host::serve`] a `start` function; the host
//!
//! 1. binds the service's HTTP address (HTTPS with `[tls]`, the certificate then replaced on
//!    each reload);
//! 2. answers "starting" (503) while it creates the topics the service needs
//!    ([`ServiceConfig::topics`]) and runs `start`, which returns what to serve and run
//!    ([`Hosted`]);
//! 3. serves the service's routes beside `GET /v1/config`, `/healthz` (200 while every
//!    readiness flag is set, 503 from the moment shutdown starts, so a load balancer stops
//!    sending while requests drain) and `/metrics` (behind the service's guard);
//! 4. runs the reloader and the service's tasks (and, with a [`ServiceAuth`], its audit
//!    forwarder and `[auth]` reloads).
//!
//! Shutdown: when `shutdown` is cancelled, or a task given with [`Hosted::stops_with`]
//! ends, the service stops ([`Startup::shutdown`] is cancelled): `/healthz` turns 503, the
//! server stops accepting and answers the requests in flight, the reloader stops, and so do
//! the service's parts that follow that token. The host returns once the server and every
//! task have finished. The tasks' errors come first (in the order given), then the server's.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use retrace_auth::{AuthConfig, Caller, Guard, ServiceAuth, ServiceAuthError};
use retrace_http::HttpError;
use retrace_sdk::TopicSpec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{CommonConfig, Loaded, Reloadable, Reloader};

/// A service's configuration as the host needs it: reloadable, holding the
/// [`CommonConfig`] (`Deref`), and naming the topics to create at start. Implement it with
/// [`service_config!`](crate::service_config).
pub trait ServiceConfig: Reloadable + Deref<Target = CommonConfig> {
    /// The topics created at start when missing.
    fn topics(&self) -> Vec<TopicSpec>;
}

type Task<E> = Pin<Box<dyn Future<Output = Result<(), E>> + Send>>;

type AuditRead = Arc<dyn Fn(&Caller) -> Result<(), String> + Send + Sync>;

/// Runs one service (see the [module](self)).
pub struct Host<C> {
    service: &'static str,
    reloader: Reloader<C>,
    shutdown: CancellationToken,
}

/// What a service's `start` is given.
pub struct Startup<C> {
    service: &'static str,
    loaded: Arc<Loaded<C>>,
    updates: watch::Receiver<Arc<Loaded<C>>>,
    url: String,
    stop: CancellationToken,
}

/// What a started service hands the host: its routes, its guard, and what to run.
pub struct Hosted<E> {
    router: Router,
    guard: Guard,
    audit_reads: AuditRead,
    ready: Vec<Arc<AtomicBool>>,
    auth: Option<ServiceAuth>,
    tasks: Vec<(Task<E>, Ending)>,
}

/// What the end of a task does.
enum Ending {
    /// Nothing more: the server serves on until the service stops.
    Joined,
    /// The service stops.
    StopsService,
}

impl<C: ServiceConfig> Host<C> {
    /// The host of `service` (`gateway`: its name in logs, in the "starting" answer, in
    /// audit records, and `retrace-gateway` as the client creating topics), serving the
    /// configuration `reloader` holds until `shutdown` is cancelled.
    pub fn new(service: &'static str, reloader: Reloader<C>, shutdown: CancellationToken) -> Self {
        Host {
            service,
            reloader,
            shutdown,
        }
    }

    /// Binds, starts the service with `start` while answering "starting", then serves and
    /// runs it until shutdown (see the [module](self)). A failure to bind or to start is
    /// returned at once.
    pub async fn serve<E, F, Started>(self, start: F) -> Result<(), E>
    where
        E: From<HttpError> + Send + 'static,
        F: FnOnce(Startup<C>) -> Started,
        Started: Future<Output = Result<Hosted<E>, E>>,
    {
        let Host {
            service,
            reloader,
            shutdown,
        } = self;
        // Metrics recorded before the recorder exists are lost.
        retrace_telemetry::prometheus();
        let loaded = reloader.current();
        let config = &loaded.config;
        let listener = retrace_http::bind(config.http, config.tls.as_ref()).await?;
        reloader.reload_tls_of(listener.tls_reload());
        // The service's stop: cancelled by `shutdown`, or by the end of a task the service
        // stops with. Everything below, and the service's own parts, follow it.
        let stop = shutdown.child_token();
        // A start that fails stops what it started (the token registry's reader).
        let stop_on_error = stop.clone().drop_guard();
        let startup = Startup {
            service,
            loaded: Arc::clone(&loaded),
            updates: reloader.subscribe(),
            url: listener.url(),
            stop: stop.clone(),
        };
        let (listener, started) = listener
            .while_starting(service, async {
                retrace_sdk::provision_at_start(
                    &config.kafka,
                    &config.provisioning,
                    &config.topics(),
                    &format!("retrace-{service}"),
                )
                .await;
                start(startup).await
            })
            .await?;
        let Hosted {
            router,
            guard,
            audit_reads,
            mut ready,
            auth,
            tasks,
        } = started?;
        stop_on_error.disarm();

        let serving = Arc::new(AtomicBool::new(true));
        ready.insert(0, Arc::clone(&serving));
        let app = router
            .merge(crate::http::router(
                &guard,
                reloader.documents(),
                move |caller: &Caller| audit_reads(caller),
            ))
            .merge(retrace_telemetry::health_router(ready))
            .merge(retrace_telemetry::metrics_router().route_layer(guard.metrics()));
        let stopping = {
            let stop = stop.clone();
            async move {
                stop.cancelled().await;
                serving.store(false, Ordering::Release);
            }
        };
        let tasks = all(tasks
            .into_iter()
            .map(|(task, ending)| -> Task<E> {
                let stop = stop.clone();
                Box::pin(async move {
                    let ended = task.await;
                    if let Ending::StopsService = ending {
                        stop.cancel();
                    }
                    ended
                })
            })
            .collect());
        let authenticating = async {
            let Some(auth) = auth else { return };
            let following = crate::follow_auth(
                reloader.subscribe(),
                auth.guard.clone(),
                service,
                auth_of::<C>,
                stop.clone(),
            );
            tokio::join!(auth.run(), following);
        };
        let (served, ran, (), ()) = tokio::join!(
            listener.serve(app, stopping),
            tasks,
            reloader.run(stop.clone()),
            authenticating
        );
        ran.and(served.map_err(E::from))
    }
}

fn auth_of<C: ServiceConfig>(config: &C) -> &AuthConfig {
    &config.auth
}

/// The tasks run at once, to the end of each; the first error, in their order.
fn all<E: Send + 'static>(tasks: Vec<Task<E>>) -> Task<E> {
    tasks
        .into_iter()
        .fold(Box::pin(async { Ok(()) }), |before, task| {
            Box::pin(async move {
                let (before, this) = tokio::join!(before, task);
                before.and(this)
            })
        })
}

impl<C: ServiceConfig> Startup<C> {
    /// The configuration the service starts with: the one the address was bound with and
    /// the topics created for.
    pub fn config(&self) -> &C {
        &self.loaded.config
    }

    /// Follows the configurations the reloader publishes from now on.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Loaded<C>>> {
        let mut updates = self.updates.clone();
        updates.mark_unchanged();
        updates
    }

    /// `scheme://addr` the service is served at.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Cancelled when the service is to stop: on shutdown, or when a task given with
    /// [`Hosted::stops_with`] ends. The service's parts and tasks stop on it.
    pub fn shutdown(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Starts the kit's authentication from `[auth]` and `[kafka]`: the token registry and
    /// the audit forwarder of this service. Hand it to [`Hosted::with_auth`].
    pub async fn service_auth(&self) -> Result<ServiceAuth, ServiceAuthError> {
        let config = self.config();
        ServiceAuth::start(&config.auth, &config.kafka, self.service, self.shutdown()).await
    }
}

impl<E: Send + 'static> Hosted<E> {
    /// `router` behind `auth`'s guard. The host runs `auth` (the audit forwarder, the token
    /// registry) until shutdown, applies each reloaded `[auth]` to its guard, answers
    /// `/healthz` 503 until its tokens are read, and records `/v1/config` reads on
    /// `retrace.audit`.
    pub fn with_auth(router: Router, auth: ServiceAuth) -> Self {
        let audit = crate::http::audit_to(auth.audit());
        Hosted {
            router,
            guard: auth.guard.clone(),
            audit_reads: Arc::new(audit),
            ready: vec![auth.ready()],
            auth: Some(auth),
            tasks: Vec::new(),
        }
    }

    /// `router` behind `guard`, the service's own authentication, which follows `[auth]`
    /// reloads itself. `audit_reads` records each `/v1/config` read before it is answered
    /// (on the blocking pool; its error is answered 503).
    pub fn new(
        router: Router,
        guard: Guard,
        audit_reads: impl Fn(&Caller) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        Hosted {
            router,
            guard,
            audit_reads: Arc::new(audit_reads),
            ready: Vec::new(),
            auth: None,
            tasks: Vec::new(),
        }
    }

    /// `/healthz` answers 200 only while these flags are set too.
    pub fn ready(mut self, flags: impl IntoIterator<Item = Arc<AtomicBool>>) -> Self {
        self.ready.extend(flags);
        self
    }

    /// Runs `task` beside the server, which serves on when it ends, until the service stops
    /// (`task` should end then: [`Startup::shutdown`]). Its error is the service's.
    pub fn task(mut self, task: impl Future<Output = Result<(), E>> + Send + 'static) -> Self {
        self.tasks.push((Box::pin(task), Ending::Joined));
        self
    }

    /// Runs `task` beside the server, and stops the service when it ends, whatever ended
    /// it: the server stops accepting and drains, `/healthz` turns 503, the reloader stops.
    /// Its error is the service's.
    pub fn stops_with(
        mut self,
        task: impl Future<Output = Result<(), E>> + Send + 'static,
    ) -> Self {
        self.tasks.push((Box::pin(task), Ending::StopsService));
        self
    }
}

#[cfg(test)]
mod tests;

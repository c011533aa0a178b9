//! Log set-up: every line carries a `category` (`debug`, `app`, `audit`, `security`), and each
//! category goes to its own sink, stderr or a rotated file (`[log.sinks]`).
//!
//! A line's category is the `category` field it sets itself (audit and security events do),
//! else `debug` for debug and trace lines and `app` for the rest. Sinks are chosen per line
//! by a per-layer filter, so an audit file never receives an application line and the other
//! way round.

use std::path::{Path, PathBuf};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_appender::rolling::{self, RollingFileAppender};
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, writer::BoxMakeWriter};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::{LogFormat, TelemetryError};

/// What a log line is about, and so who reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// Detail for developers (debug and trace levels).
    Debug,
    /// The service's own working.
    App,
    /// Who did what: reads, replays, erasures, token changes.
    Audit,
    /// Authentication failures and refusals.
    Security,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Debug,
        Category::App,
        Category::Audit,
        Category::Security,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Category::Debug => "debug",
            Category::App => "app",
            Category::Audit => "audit",
            Category::Security => "security",
        }
    }

    fn named(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The `category` the event sets, if it sets a known one.
    fn explicit(event: &Event<'_>) -> Option<Category> {
        struct Find(Option<Category>);
        impl Visit for Find {
            fn record_str(&mut self, field: &Field, value: &str) {
                if field.name() == "category" {
                    self.0 = Category::named(value);
                }
            }
            fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
        }
        event.metadata().fields().field("category")?;
        let mut find = Find(None);
        event.record(&mut find);
        find.0
    }

    fn of(event: &Event<'_>) -> Category {
        Category::explicit(event).unwrap_or_else(|| Category::by_level(event.metadata()))
    }

    fn by_level(metadata: &Metadata<'_>) -> Category {
        if *metadata.level() >= Level::DEBUG {
            Category::Debug
        } else {
            Category::App
        }
    }
}

/// Where one category's lines go.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSink {
    /// The process's standard error, as every line went before sinks existed.
    #[default]
    Stderr,
    File(FileSink),
}

/// A log file rotated by time, the oldest deleted beyond `max_files`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileSink {
    /// e.g. `/var/log/retrace/audit.log`; rotated files are `audit.2026-11-23.log` beside it
    /// (`audit.log` itself with rotation `never`).
    pub path: PathBuf,
    pub rotation: Rotation,
    /// Rotated files kept; all when `None`.
    pub max_files: Option<usize>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    Never,
    Hourly,
    #[default]
    Daily,
}

impl std::str::FromStr for Rotation {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "never" => Ok(Rotation::Never),
            "hourly" => Ok(Rotation::Hourly),
            "daily" => Ok(Rotation::Daily),
            other => Err(format!(
                "rotation {other:?} is not known: use `never`, `hourly` or `daily`"
            )),
        }
    }
}

/// Each category's sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogSinks {
    pub debug: LogSink,
    pub app: LogSink,
    pub audit: LogSink,
    pub security: LogSink,
}

impl LogSinks {
    pub fn sink_mut(&mut self, category: Category) -> &mut LogSink {
        match category {
            Category::Debug => &mut self.debug,
            Category::App => &mut self.app,
            Category::Audit => &mut self.audit,
            Category::Security => &mut self.security,
        }
    }

    fn sink(&self, category: Category) -> &LogSink {
        match category {
            Category::Debug => &self.debug,
            Category::App => &self.app,
            Category::Audit => &self.audit,
            Category::Security => &self.security,
        }
    }

    /// The distinct sinks, each with the categories it receives.
    fn routes(&self) -> Vec<(&LogSink, Vec<Category>)> {
        let mut routes: Vec<(&LogSink, Vec<Category>)> = Vec::new();
        for category in Category::ALL {
            let sink = self.sink(category);
            match routes.iter_mut().find(|(known, _)| *known == sink) {
                Some((_, categories)) => categories.push(category),
                None => routes.push((sink, vec![category])),
            }
        }
        routes
    }
}

/// The subscriber [`crate::init_logging`] installs: `filter` (`RUST_LOG` syntax) over every
/// line, then each line to its category's sink in `format`.
pub fn subscriber(
    format: LogFormat,
    filter: &str,
    sinks: &LogSinks,
) -> Result<impl Subscriber + Send + Sync + 'static, TelemetryError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|e| TelemetryError::BadFilter {
        filter: filter.to_owned(),
        reason: e.to_string(),
    })?;
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let mut layers = Vec::new();
    for (sink, categories) in sinks.routes() {
        let writer = match sink {
            LogSink::Stderr => BoxMakeWriter::new(std::io::stderr),
            LogSink::File(file) => BoxMakeWriter::new(appender(file)?),
        };
        layers.push(sink_layer(json, writer, Routed(categories)));
    }
    Ok(Registry::default().with(env_filter).with(layers))
}

type Inner = tracing_subscriber::layer::Layered<EnvFilter, Registry>;

fn sink_layer(
    json: bool,
    writer: BoxMakeWriter,
    routed: Routed,
) -> Box<dyn Layer<Inner> + Send + Sync> {
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    if json {
        let format = format::format()
            .json()
            .flatten_event(true)
            .with_current_span(true);
        layer
            .fmt_fields(JsonFields::new())
            .event_format(Categorised {
                inner: format,
                json,
            })
            .with_filter(routed)
            .boxed()
    } else {
        layer
            .with_ansi(false)
            .event_format(Categorised {
                inner: format::format().with_ansi(false),
                json,
            })
            .with_filter(routed)
            .boxed()
    }
}

fn appender(file: &FileSink) -> Result<RollingFileAppender, TelemetryError> {
    let refused = |reason: String| TelemetryError::LogFile {
        path: file.path.clone(),
        reason,
    };
    let directory = file
        .path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = |part: Option<&std::ffi::OsStr>| part.and_then(|p| p.to_str()).map(str::to_owned);
    let prefix = name(file.path.file_stem()).ok_or_else(|| refused("no file name".into()))?;
    let mut builder = RollingFileAppender::builder()
        .rotation(match file.rotation {
            Rotation::Never => rolling::Rotation::NEVER,
            Rotation::Hourly => rolling::Rotation::HOURLY,
            Rotation::Daily => rolling::Rotation::DAILY,
        })
        .filename_prefix(prefix);
    if let Some(suffix) = name(file.path.extension()) {
        builder = builder.filename_suffix(suffix);
    }
    if let Some(kept) = file.max_files {
        builder = builder.max_log_files(kept);
    }
    builder.build(directory).map_err(|e| refused(e.to_string()))
}

/// Lets through only the lines of its categories.
struct Routed(Vec<Category>);

impl<S> Filter<S> for Routed {
    fn enabled(&self, _: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        self.0.contains(&Category::of(event))
    }
}

/// `inner`'s line, with a `category` field added when the event does not set one.
struct Categorised<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for Categorised<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        if Category::explicit(event).is_some() {
            return self.inner.format_event(ctx, writer, event);
        }
        let category = Category::by_level(event.metadata()).name();
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            // The JSON formatter writes one object a line: the field goes first in it.
            let rest = line.strip_prefix('{').unwrap_or(&line);
            write!(writer, "{{\"category\":\"{category}\",{rest}")
        } else {
            let body = line.strip_suffix('\n').unwrap_or(&line);
            writeln!(writer, "{body} category={category}")
        }
    }
}

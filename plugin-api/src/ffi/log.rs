//! A loaded plugin's `tracing` events, forwarded to the host's log (API 0.5).
//!
//! A plugin `.so` carries its own copy of `tracing`, whose dispatcher nobody sets: its events
//! would go nowhere. Right after loading, the host hands the plugin a [`FfiLogger`]; the
//! plugin side installs a small subscriber ([`Forwarder`]) as its copy's global default,
//! which formats each event (message, then `field=value` pairs) and passes it to the host.
//! The host emits it into its own subscriber (the `-o` log) at the same level, with the
//! plugin's name as the target. Spans of the plugin are not forwarded.

use std::fmt::Write as _;
use std::sync::OnceLock;

use abi_stable::sabi_extern_fn;
use abi_stable::sabi_trait;
use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RBox, RStr};
use tracing::callsite::{Callsite, Identifier};
use tracing::field::{Field, FieldSet, Value, Visit};
use tracing::metadata::Kind;
use tracing::subscriber::{Interest, Subscriber};
use tracing::{Event, Level, Metadata, span};

use super::PluginModRef;

/// The host's log sink as the plugin sees it.
#[sabi_trait]
pub trait FfiLogger: Send + Sync {
    /// The address of a static of the host's copy of this crate: a plugin built into the
    /// host's own process shares its `tracing` and needs no forwarding.
    fn host_marker(&self) -> usize;
    /// Whether the host records events of `level` (0 error .. 4 trace) from this plugin.
    fn enabled(&self, level: u8) -> bool;
    /// One event: its level and its formatted text.
    #[sabi(last_prefix_field)]
    fn log(&self, level: u8, message: RStr<'_>);
}

/// The logger object handed to a plugin.
pub type FfiLoggerBox = FfiLogger_TO<'static, RBox<()>>;

static MARKER: u8 = 0;

fn marker() -> usize {
    &MARKER as *const u8 as usize
}

const LEVELS: [Level; 5] = [
    Level::ERROR,
    Level::WARN,
    Level::INFO,
    Level::DEBUG,
    Level::TRACE,
];

fn level_code(level: &Level) -> u8 {
    LEVELS.iter().position(|l| l == level).unwrap_or(4) as u8
}

// ----- host side -----

/// Gives the plugin of `module` the host's logger, events targeted at `plugin`. Nothing
/// for a plugin built before API 0.5 (no such entry point).
pub(crate) fn attach(module: PluginModRef, plugin: &'static str) {
    if let Some(f) = module.attach_logger() {
        f(FfiLogger_TO::from_value(HostLogger::new(plugin), TD_Opaque));
    }
}

/// A callsite of our own per plugin and level: `tracing`'s macros need a target known at
/// compile time, a plugin's name is known at load time. Leaked: plugins are never unloaded.
struct PluginCallsite {
    meta: OnceLock<Metadata<'static>>,
}

/// What a callsite answers before its metadata is set (never observed: it is set before
/// the callsite is registered).
static NO_META: Metadata<'static> = Metadata::new(
    "plugin event",
    "criu_plugin",
    Level::TRACE,
    None,
    None,
    None,
    FieldSet::new(&[], Identifier(&NO_CALLSITE)),
    Kind::EVENT,
);

struct NoCallsite;
static NO_CALLSITE: NoCallsite = NoCallsite;
impl Callsite for NoCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        &NO_META
    }
}

impl Callsite for PluginCallsite {
    fn set_interest(&self, _: Interest) {}
    fn metadata(&self) -> &Metadata<'_> {
        // Set before the callsite is registered, so always there.
        self.meta.get().unwrap_or(&NO_META)
    }
}

fn callsite(plugin: &'static str, level: Level) -> &'static Metadata<'static> {
    let cs: &'static PluginCallsite = Box::leak(Box::new(PluginCallsite {
        meta: OnceLock::new(),
    }));
    let fields = FieldSet::new(&["message"], Identifier(cs));
    let meta = Metadata::new(
        "plugin event",
        plugin,
        level,
        None,
        None,
        None,
        fields,
        Kind::EVENT,
    );
    let _ = cs.meta.set(meta);
    tracing::callsite::register(cs);
    cs.meta.get().unwrap_or(&NO_META)
}

struct HostLogger {
    sites: Vec<&'static Metadata<'static>>,
}

impl HostLogger {
    fn new(plugin: &'static str) -> Self {
        HostLogger {
            sites: LEVELS.iter().map(|&l| callsite(plugin, l)).collect(),
        }
    }
}

impl FfiLogger for HostLogger {
    fn host_marker(&self) -> usize {
        marker()
    }

    fn enabled(&self, level: u8) -> bool {
        let Some(&meta) = self.sites.get(usize::from(level)) else {
            return false;
        };
        *meta.level() <= tracing::level_filters::LevelFilter::current()
            && tracing::dispatcher::get_default(|d| d.enabled(meta))
    }

    fn log(&self, level: u8, message: RStr<'_>) {
        let Some(&meta) = self.sites.get(usize::from(level)) else {
            return;
        };
        tracing::dispatcher::get_default(|d| {
            if !d.enabled(meta) {
                return;
            }
            let fields = meta.fields();
            let Some(field) = fields.field("message") else {
                return;
            };
            let text = message.as_str();
            let values = [(&field, Some(&text as &dyn Value))];
            d.event(&Event::new(meta, &fields.value_set(&values)));
        });
    }
}

// ----- plugin side -----

static LOGGER: OnceLock<FfiLoggerBox> = OnceLock::new();

/// The `attach_logger` entry of a plugin's root module.
#[sabi_extern_fn]
pub(crate) fn attach_logger(logger: FfiLoggerBox) {
    if logger.host_marker() == marker() {
        return; // built into the host's process: its events reach the host already
    }
    if LOGGER.set(logger).is_ok() {
        // Fails only when this plugin installed a subscriber of its own: then it logs itself.
        let _ = tracing::subscriber::set_global_default(Forwarder);
    }
}

/// The subscriber installed in a plugin's copy of `tracing`.
struct Forwarder;

impl Subscriber for Forwarder {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The host's level may change: ask `enabled` every time.
        Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event()
            && LOGGER
                .get()
                .is_some_and(|l| l.enabled(level_code(meta.level())))
    }

    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }

    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}

    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(l) = LOGGER.get() else { return };
        let mut text = Text::default();
        event.record(&mut text);
        l.log(
            level_code(event.metadata().level()),
            text.finish().as_str().into(),
        );
    }

    fn enter(&self, _: &span::Id) {}

    fn exit(&self, _: &span::Id) {}
}

/// An event's message followed by its other fields as `name=value`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Text {
    fn finish(mut self) -> String {
        if !self.fields.is_empty() {
            if !self.message.is_empty() {
                self.message.push(' ');
            }
            self.message.push_str(self.fields.trim_start());
        }
        self.message
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            // Quoted, as the host's own formatter shows string fields.
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_formatted_message_first() {
        struct Capture(std::sync::Mutex<Vec<String>>);
        impl Subscriber for Capture {
            fn enabled(&self, _: &Metadata<'_>) -> bool {
                true
            }
            fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
                span::Id::from_u64(1)
            }
            fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
            fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
            fn event(&self, event: &Event<'_>) {
                let mut t = Text::default();
                event.record(&mut t);
                self.0.lock().unwrap().push(t.finish());
            }
            fn enter(&self, _: &span::Id) {}
            fn exit(&self, _: &span::Id) {}
        }
        let cap = std::sync::Arc::new(Capture(Default::default()));
        tracing::subscriber::with_default(cap.clone(), || {
            tracing::info!(pid = 7, name = "x", "restored {} fds", 3);
            tracing::warn!("plain");
            tracing::debug!(fd = 4);
        });
        assert_eq!(
            *cap.0.lock().unwrap(),
            ["restored 3 fds pid=7 name=\"x\"", "plain", "fd=4"]
        );
        assert_eq!(level_code(&Level::ERROR), 0);
        assert_eq!(level_code(&Level::TRACE), 4);
    }

    #[test]
    fn host_logger_emits_with_the_plugin_as_target() {
        struct Targets(std::sync::Mutex<Vec<(String, String, String)>>);
        impl Subscriber for Targets {
            fn enabled(&self, m: &Metadata<'_>) -> bool {
                *m.level() <= Level::INFO
            }
            fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
                span::Id::from_u64(1)
            }
            fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
            fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
            fn event(&self, event: &Event<'_>) {
                let mut t = Text::default();
                event.record(&mut t);
                let m = event.metadata();
                self.0.lock().unwrap().push((
                    m.target().to_string(),
                    m.level().to_string(),
                    t.finish(),
                ));
            }
            fn enter(&self, _: &span::Id) {}
            fn exit(&self, _: &span::Id) {}
        }
        let seen = std::sync::Arc::new(Targets(Default::default()));
        tracing::subscriber::with_default(seen.clone(), || {
            let host = HostLogger::new("unit-plugin");
            assert!(host.enabled(2) && !host.enabled(3) && !host.enabled(9));
            host.log(2, "hello from the plugin pid=3".into());
            host.log(3, "too verbose".into());
            host.log(7, "no such level".into());
            assert_eq!(host.host_marker(), marker());
        });
        assert_eq!(
            *seen.0.lock().unwrap(),
            [(
                "unit-plugin".to_string(),
                "INFO".to_string(),
                "hello from the plugin pid=3".to_string()
            )]
        );
    }
}

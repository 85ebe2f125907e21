//! Text log lines without colours, written exactly as tracing-subscriber's
//! default `Full` format and `DefaultFields` write them, for less: with a
//! line per request, the default's general machinery (styling every name
//! and `=` through `nu_ansi_term` with no style to apply, `write!` for each
//! piece, ANSI escaping a message character by character) was most of a
//! line's cost. `r#` names and errors, which the default formats in its own
//! way, are still handed to it.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The line: `time level span{fields}:span: target: fields`. See the module
/// documentation. Only for lines without ANSI colours.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainLine<T> {
    pub timer: T,
}

impl<S, N, T> FormatEvent<S, N> for PlainLine<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_char(' ')?;
        writer.write_str(match *meta.level() {
            Level::TRACE => "TRACE ",
            Level::DEBUG => "DEBUG ",
            Level::INFO => " INFO ",
            Level::WARN => " WARN ",
            Level::ERROR => "ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                writer.write_str(span.metadata().name())?;
                seen = true;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// The fields: `name=value`, separated by spaces, the message first and
/// with its control characters escaped.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainFields;

impl<'writer> FormatFields<'writer> for PlainFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Lets the default visitor write this field, continuing the line.
    fn by_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }

    fn write(&mut self, name: &str, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.is_empty {
            self.is_empty = false;
        } else if let Err(error) = self.writer.write_char(' ') {
            self.result = Err(error);
            return;
        }
        self.result = self
            .writer
            .write_str(name)
            .and_then(|()| self.writer.write_char('='))
            .and_then(|()| value(&mut self.writer));
    }

    /// Writes the message, escaped as the default visitor escapes it.
    fn message(&mut self, value: impl FnOnce(&mut dyn fmt::Write) -> fmt::Result) {
        if self.is_empty {
            self.is_empty = false;
        } else if let Err(error) = self.writer.write_char(' ') {
            self.result = Err(error);
            return;
        }
        self.result = if self.writer.sanitizes_ansi_escapes() {
            value(&mut Escaping(&mut self.writer))
        } else {
            value(&mut self.writer)
        };
    }

    /// Whether the default visitor formats this field in its own way.
    fn special(field: &Field) -> bool {
        field.name().starts_with("r#")
    }
}

/// Escapes what tracing-subscriber escapes in messages, against terminal
/// injection: ESC, BEL, BS, FF and DEL as `\x1b` and so on, and C1 control
/// characters as `\u{9b}`; text without them is written as it is, whole.
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        while let Some((at, ch)) = s.char_indices().find(|&(_, ch)| {
            matches!(
                ch,
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' | '\u{80}'..='\u{9f}'
            )
        }) {
            self.0.write_str(&s[..at])?;
            if ch.is_ascii() {
                write!(self.0, "\\x{:02x}", ch as u32)?;
            } else {
                write!(self.0, "\\u{{{:x}}}", ch as u32)?;
            }
            s = &s[at + ch.len_utf8()..];
        }
        self.0.write_str(s)
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            return self.message(|w| write!(w, "{value:?}"));
        }
        if Self::special(field) {
            return self.by_default(|v| v.record_debug(field, value));
        }
        self.write(field.name(), |w| write!(w, "{value:?}"));
    }

    // Numbers, booleans and the rest come through `record_debug`, as in the
    // default visitor; a message given as a `&str` does not, being written
    // unquoted.
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if field.name() == "message" {
            return self.message(|w| w.write_str(value));
        }
        if Self::special(field) {
            return self.by_default(|v| v.record_str(field, value));
        }
        self.write(field.name(), |w| write!(w, "{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.by_default(|v| v.record_error(field, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::testing::Buffer;

    #[derive(Debug, thiserror::Error)]
    #[error("outer failure")]
    struct Outer(#[source] std::io::Error);

    /// Every kind of field, in spans and events, at every level.
    fn log_everything() {
        tracing::info!(target: "outside::any_span", "before");
        let span = tracing::info_span!("http", method = "GET", r#type = "a", n = 3_u64);
        let _entered = span.enter();
        span.record("n", 4_u64);
        let inner = tracing::debug_span!("store");
        let _inner = inner.enter();
        tracing::trace!(step = 1_u64, "tracing");
        tracing::debug!("bell \u{7} backspace \u{8} feed \u{c} delete \u{7f} c1 \u{9b}\u{85} é");
        tracing::info!(message = "a message \u{1b}[1m given as a str", n = 2_u64);
        tracing::info!(
            method = %"/pkg.Service/Method",
            request_id = %"0196-abc",
            principal = Some(tracing::field::display("anonymous")),
            roles = None::<tracing::field::DisplayValue<&str>>,
            code = ?tonic::Code::NotFound,
            latency_us = 1234_u64,
            delta = -5_i64,
            ok = true,
            ratio = 0.25_f64,
            quoted = "with \"quotes\" and \u{1b}[31m escape",
            "grpc request"
        );
        tracing::warn!(r#type = "raw", "a message with \u{1b}[2J an escape {}", 7);
        tracing::error!(
            error = &Outer(std::io::Error::other("inner")) as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::error!(
            error = &std::io::Error::other("alone") as &(dyn std::error::Error + 'static)
        );
        tracing::info!(only = 1_u64);
        tracing::info!("");
    }

    /// A time that does not move, so two subscribers' lines can be compared.
    struct Fixed;

    impl FormatTime for Fixed {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-12-06T03:36:05.123456Z")
        }
    }

    /// Every level's lines of [`log_everything`], as `fields` and `format`
    /// write them.
    fn lines<N, E>(fields: N, format: E) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
        E: FormatEvent<tracing_subscriber::Registry, N> + Send + Sync + 'static,
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        let buffer = Buffer::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .fmt_fields(fields)
            .event_format(format)
            .with_writer(buffer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, log_everything);
        buffer.text()
    }

    #[test]
    fn lines_read_exactly_as_in_the_default_format() {
        let plain = lines(PlainFields, PlainLine { timer: Fixed });
        let default = lines(
            PlainFields,
            tracing_subscriber::fmt::format::Format::default().with_timer(Fixed),
        );
        assert_eq!(plain, default);
        assert!(
            plain.contains(
                "2026-12-06T03:36:05.123456Z DEBUG http{method=\"GET\" type=\"a\" n=3 n=4}:store: vehicle_allocation::telemetry::plain::tests: bell"
            ),
            "{plain}"
        );
        assert!(
            plain.contains(" INFO outside::any_span: before\n"),
            "{plain}"
        );
        assert_eq!(plain.lines().count(), 10, "{plain}");
    }

    #[test]
    fn lines_read_exactly_as_with_the_default_fields() {
        let format = || tracing_subscriber::fmt::format::Format::default().without_time();
        let plain = lines(PlainFields, format());
        assert_eq!(
            plain,
            lines(
                tracing_subscriber::fmt::format::DefaultFields::new(),
                format()
            )
        );
        assert!(
            plain.contains(
                "method=/pkg.Service/Method request_id=0196-abc principal=anonymous code=NotFound latency_us=1234"
            ),
            "{plain}"
        );
        assert!(
            plain.contains(r"\x07 backspace \x08 feed \x0c delete \x7f c1 \u{9b}\u{85} é"),
            "{plain}"
        );
        assert_eq!(plain.lines().count(), 10, "{plain}");
    }
}

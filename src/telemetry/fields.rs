//! The fields of a text log line without colours, written as
//! tracing-subscriber's `DefaultFields` writes them (`name=value`, separated
//! by spaces), but without styling each name and `=` through `nu_ansi_term`
//! when there is no style to apply: with a line per request, that was half
//! of a line's cost. Messages, `r#` names and errors, which the default
//! formats specially, are still handed to it.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{RecordFields, VisitOutput as _};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

/// See the module documentation. Only for lines without ANSI colours.
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

    /// Whether the default visitor formats this field in its own way.
    fn special(field: &Field) -> bool {
        field.name() == "message" || field.name().starts_with("r#")
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
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
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer failure")]
    struct Outer(#[source] std::io::Error);

    /// Every kind of field, in spans and events.
    fn log_everything() {
        let span = tracing::info_span!("http", method = "GET", r#type = "a", n = 3_u64);
        let _entered = span.enter();
        span.record("n", 4_u64);
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

    fn lines_with<N>(fields: N) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .with_writer(buffer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log_everything);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_read_exactly_as_with_the_default_fields() {
        let plain = lines_with(PlainFields);
        assert_eq!(
            plain,
            lines_with(tracing_subscriber::fmt::format::DefaultFields::new())
        );
        assert!(
            plain.contains(
                "method=/pkg.Service/Method request_id=0196-abc principal=anonymous code=NotFound latency_us=1234"
            ),
            "{plain}"
        );
        assert_eq!(plain.lines().count(), 6, "{plain}");
    }
}

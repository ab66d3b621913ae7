//! Entries as lines for SIEM shippers: JSON lines (the stored encoding,
//! verifiable outside Airlock) or CSV (one row per entry, the fields a
//! spreadsheet or a log pipeline wants; not verifiable on its own; written
//! by the `csv` crate, RFC 4180 quoting).

use std::io::Write;

use super::{encode, AuditEntry};

/// The CSV header row's fields, in the order of [`csv_fields`].
pub const CSV_HEADER: [&str; 21] = [
    "seq",
    "time_ms",
    "node",
    "kind",
    "actor",
    "request_id",
    "method",
    "host",
    "path",
    "route",
    "pool",
    "policies",
    "decision",
    "reason",
    "status",
    "bytes",
    "duration_us",
    "approval",
    "grant",
    "prev_hash",
    "hash",
];

/// The formats entries are exported in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line, exactly as stored.
    Jsonl,
    /// One CSV row per entry, after a header row.
    Csv,
}

/// Writes entries to `out`, one line or row each.
#[derive(Debug)]
pub enum Export<W: Write> {
    Jsonl(W),
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> Export<W> {
    /// An export in `format` to `out`; CSV starts with its header row.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn new(format: ExportFormat, out: W) -> std::io::Result<Export<W>> {
        Ok(match format {
            ExportFormat::Jsonl => Export::Jsonl(out),
            ExportFormat::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                writer.write_record(CSV_HEADER)?;
                Export::Csv(Box::new(writer))
            }
        })
    }

    /// `entry`, as the next line or row.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn write(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        match self {
            Export::Jsonl(out) => {
                out.write_all(&encode(entry))?;
                out.write_all(b"\n")
            }
            Export::Csv(writer) => Ok(writer.write_record(csv_fields(entry))?),
        }
    }

    /// Flush what is buffered.
    ///
    /// # Errors
    /// When `out` cannot be written.
    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Export::Jsonl(out) => out.flush(),
            Export::Csv(writer) => writer.flush(),
        }
    }
}

/// An entry's CSV fields, in the order of [`CSV_HEADER`].
fn csv_fields(entry: &AuditEntry) -> [String; 21] {
    let request = entry.request.as_ref();
    let outcome = entry.outcome.as_ref();
    let text = |value: Option<&str>| value.unwrap_or_default().to_owned();
    let number = |value: Option<u64>| value.map(|value| value.to_string()).unwrap_or_default();
    let kind = serde_json::to_value(entry.kind)
        .ok()
        .and_then(|kind| kind.as_str().map(str::to_owned))
        .unwrap_or_default();
    let policies: Vec<&str> = entry
        .policies
        .iter()
        .map(|policy| policy.name.as_str())
        .collect();
    [
        entry.seq.to_string(),
        entry.time_ms.to_string(),
        entry.node.clone(),
        kind,
        entry.actor.clone(),
        text(entry.request_id.as_deref()),
        text(request.map(|request| request.method.as_str())),
        text(request.map(|request| request.host.as_str())),
        text(request.map(|request| request.path.as_str())),
        text(request.map(|request| request.route.as_str())),
        text(request.map(|request| request.pool.as_str())),
        policies.join(" "),
        text(entry.decision.as_deref()),
        text(entry.reason.as_deref()),
        number(outcome.map(|outcome| u64::from(outcome.status))),
        number(outcome.and_then(|outcome| outcome.bytes)),
        number(outcome.map(|outcome| outcome.duration_us)),
        text(entry.approval.as_deref()),
        text(entry.grant.as_deref()),
        entry.prev_hash.clone(),
        entry.hash.clone(),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::{EntryKind, RequestSummary, GENESIS_HASH};
    use super::*;

    #[test]
    fn csv_rows_quote_what_needs_quoting_and_match_the_header() {
        let mut entry = AuditEntry::new(EntryKind::RequestDecision, "alice");
        entry.request = Some(RequestSummary {
            method: "DELETE".into(),
            host: "example.com".into(),
            path: "/a,b".into(),
            route: "r".into(),
            pool: "p".into(),
            body_size: None,
        });
        entry.reason = Some("said \"no\"".into());
        entry.seal(7, GENESIS_HASH);
        let export = |format| {
            let mut export = Export::new(format, Vec::new()).unwrap();
            export.write(&entry).unwrap();
            export.write(&entry).unwrap();
            export.flush().unwrap();
            match export {
                Export::Jsonl(out) => String::from_utf8(out).unwrap(),
                Export::Csv(writer) => String::from_utf8(writer.into_inner().unwrap()).unwrap(),
            }
        };
        let csv = export(ExportFormat::Csv);
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert_eq!(rows[0], CSV_HEADER.join(","));
        assert!(
            rows[1].starts_with("7,0,,request_decision,alice,,DELETE,example.com,\"/a,b\",r,p,,"),
            "{csv}"
        );
        assert!(rows[1].contains(",\"said \"\"no\"\"\","), "{csv}");
        let line = String::from_utf8(encode(&entry)).unwrap();
        assert_eq!(export(ExportFormat::Jsonl), format!("{line}\n{line}\n"));
    }
}

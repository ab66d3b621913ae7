//! Entries as lines for SIEM shippers: JSON lines (the stored encoding,
//! verifiable outside Airlock) or CSV (one row per entry, the fields a
//! spreadsheet or a log pipeline wants; not verifiable on its own).

use super::{encode, AuditEntry};

/// The CSV header row.
pub const CSV_HEADER: &str = "seq,time_ms,node,kind,actor,request_id,method,host,path,route,pool,policies,decision,reason,status,bytes,duration_us,approval,grant,prev_hash,hash";

/// An entry as one JSON line (without the newline): exactly as stored.
pub fn json_line(entry: &AuditEntry) -> String {
    String::from_utf8_lossy(&encode(entry)).into_owned()
}

/// An entry as one CSV row (RFC 4180 quoting; without the newline).
pub fn csv_row(entry: &AuditEntry) -> String {
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
    .iter()
    .map(|field| csv_field(field))
    .collect::<Vec<_>>()
    .join(",")
}

fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_owned()
    }
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
        let row = csv_row(&entry);
        assert!(
            row.starts_with("7,0,,request_decision,alice,,DELETE,example.com,\"/a,b\",r,p,,"),
            "{row}"
        );
        assert!(row.contains(",\"said \"\"no\"\"\","), "{row}");
        assert_eq!(CSV_HEADER.split(',').count(), 21);
        assert_eq!(
            json_line(&entry),
            String::from_utf8(encode(&entry)).unwrap()
        );
    }
}

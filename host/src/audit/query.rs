//! Reading the trail back: filters shared by `GET /v1/audit` and
//! `airlock audit query`, with stable cursors (a cursor is the sequence number
//! to continue from, so it stays valid as the trail grows).

use serde::{Deserialize, Serialize};

use super::{decode, AuditEntry, EntryKind};
use crate::store::{Store, StoreError};

/// Most entries one page returns.
pub const MAX_LIMIT: usize = 1000;
/// Entries one page returns unless asked otherwise.
pub const DEFAULT_LIMIT: usize = 100;

/// Which entries to return. Every field given must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Entries at or after this time (RFC 3339 or Unix milliseconds).
    pub since: Option<String>,
    /// Entries before this time.
    pub until: Option<String>,
    pub kind: Option<EntryKind>,
    pub actor: Option<String>,
    pub route: Option<String>,
    pub decision: Option<String>,
    /// The request id linking a decision and its outcome.
    pub request: Option<String>,
    pub trace: Option<String>,
    /// The approval a hold, vote or outcome belongs to.
    pub approval: Option<String>,
    /// The grant an entry is about, or that let a request pass.
    pub grant: Option<String>,
    /// Page size, at most [`MAX_LIMIT`].
    pub limit: Option<usize>,
    /// Where to continue: the `next_cursor` of the page before.
    pub cursor: Option<u64>,
}

/// One page of results.
#[derive(Debug, Clone, Serialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent at the end of the trail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<u64>,
}

/// Why a query could not run.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("{field}: {message}")]
    BadFilter {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("audit entry {seq} does not parse: {message} (run verify)")]
    Corrupt { seq: u64, message: String },
}

/// A time as the filters take it: Unix milliseconds, an RFC 3339 timestamp,
/// or a date (its midnight, UTC).
///
/// # Errors
/// Naming `field` when `text` is none of these.
pub fn parse_time(field: &'static str, text: &str) -> Result<i64, QueryError> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        if let Ok(midnight) = date.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(midnight.timestamp().as_millisecond());
        }
    }
    text.parse::<jiff::Timestamp>()
        .map(|time| time.as_millisecond())
        .map_err(|error| QueryError::BadFilter {
            field,
            message: format!(
                "{text:?} is neither a date, RFC 3339 nor Unix milliseconds ({error})"
            ),
        })
}

/// Entries one call reads at most: a filter that matches little returns a
/// short (or empty) page with `next_cursor` after this many, so no single
/// query holds a CPU for the whole trail.
pub const MAX_SCANNED: usize = 50_000;

/// The page of entries matching `filter`, among at most [`MAX_SCANNED`]
/// entries read from the cursor on.
///
/// # Errors
/// A bad filter value, a store that cannot be read, or an entry that does
/// not parse.
pub fn query(store: &dyn Store, filter: &AuditFilter) -> Result<AuditPage, QueryError> {
    const SCAN: usize = 1024;
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(QueryError::BadFilter {
            field: "limit",
            message: format!("expected 1 to {MAX_LIMIT}"),
        });
    }
    let since = filter
        .since
        .as_deref()
        .map(|text| parse_time("since", text))
        .transpose()?;
    let until = filter
        .until
        .as_deref()
        .map(|text| parse_time("until", text))
        .transpose()?;
    let mut next = filter.cursor.unwrap_or(1).max(1);
    let mut entries = Vec::new();
    let mut read = 0;
    loop {
        if read >= MAX_SCANNED {
            return Ok(AuditPage {
                entries,
                next_cursor: Some(next),
            });
        }
        let wanted = SCAN.min(MAX_SCANNED - read);
        let scanned = store.audit_from(next, wanted)?;
        read += scanned.len();
        let exhausted = scanned.len() < wanted;
        for (seq, bytes) in scanned {
            next = seq + 1;
            let entry = decode(&bytes).map_err(|message| QueryError::Corrupt { seq, message })?;
            if until.is_some_and(|until| entry.time_ms >= until) {
                // Entries are in time order (one writer): nothing later matches.
                return Ok(AuditPage {
                    entries,
                    next_cursor: None,
                });
            }
            if matches(filter, since, &entry) {
                entries.push(entry);
                if entries.len() == limit {
                    return Ok(AuditPage {
                        entries,
                        next_cursor: Some(next),
                    });
                }
            }
        }
        if exhausted {
            return Ok(AuditPage {
                entries,
                next_cursor: None,
            });
        }
    }
}

fn matches(filter: &AuditFilter, since: Option<i64>, entry: &AuditEntry) -> bool {
    let same = |wanted: &Option<String>, actual: Option<&str>| {
        wanted
            .as_deref()
            .is_none_or(|wanted| Some(wanted) == actual)
    };
    since.is_none_or(|since| entry.time_ms >= since)
        && filter.kind.is_none_or(|kind| kind == entry.kind)
        && same(&filter.actor, Some(&entry.actor))
        && same(
            &filter.route,
            entry.request.as_ref().map(|request| request.route.as_str()),
        )
        && same(&filter.decision, entry.decision.as_deref())
        && same(&filter.request, entry.request_id.as_deref())
        && same(&filter.trace, entry.trace.as_deref())
        && same(&filter.approval, entry.approval.as_deref())
        && same(&filter.grant, entry.grant.as_deref())
}

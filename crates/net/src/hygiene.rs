//! Request hygiene, before anything judges a request: the path is normalized
//! (percent-encoded unreserved characters decoded, repeated slashes collapsed,
//! `.` and `..` resolved) and that normalized form is what routes match and what
//! the backend receives, so `/public/../admin`, `/public/%2e%2e/admin` and
//! `//admin` cannot slip past a rule for `/admin`. Encoded `/` or `\`, a raw `\`,
//! an encoded NUL and broken percent-encoding are refused with 400, since a
//! backend might decode them into a different path than the one judged.
//!
//! Method-override headers (`X-HTTP-Method-Override` and kin) are refused: a
//! backend that honours them would run a method no rule saw; so is a
//! `_method` query parameter or body field on a route with policies (Rails,
//! Laravel, Symfony and Express honour it; [`MethodFieldScanner`] finds the
//! field as the body streams, reading every body as a form, as multipart and
//! as JSON, and a body it cannot read, compressed or in UTF-16, is refused). Headers only Airlock may set (`Airlock-*`), URL
//! rewrite headers (`X-Original-URL`, `X-Rewrite-URL`: some frameworks serve
//! the URL they name instead of the one judged), header names with an
//! underscore (CGI and WSGI turn `_` and `-` alike into `HTTP_..._...`, so
//! `X_HTTP_METHOD_OVERRIDE` would pass as the refused override; nginx drops
//! them too), and forwarding headers from clients of listeners that do not
//! trust them, are removed. Two `Host` headers are refused (RFC 9112 3.2).

use std::borrow::Cow;

use http::header::HeaderName;
use http::HeaderMap;
use sha2::Digest as _;

use crate::headers::{
    AIRLOCK_HEADER_PREFIX, FORWARDING_HEADERS, METHOD_OVERRIDE_HEADERS, URL_REWRITE_HEADERS,
};

/// The query parameter (and form field) some frameworks read as the method.
const METHOD_OVERRIDE_PARAMETER: &str = "_method";

/// Headers that do not bind an async ticket to its request: framing and
/// hop-by-hop headers (but `Upgrade`, which turns the request into another
/// protocol), the `Host` (bound apart, with its port), Airlock's own
/// credential, the preference that asked for the ticket, and the trace
/// context (but `baggage`, which carries the application's own data).
const UNBOUND_HEADERS: [&str; 13] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "proxy-connection",
    "expect",
    "proxy-authorization",
    "prefer",
    "traceparent",
    "tracestate",
];

/// Returns the normalized path, or why it cannot be normalized.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    if !raw.starts_with('/') {
        return Err("the request target must be a path starting with `/`");
    }
    if is_normal(raw) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(raw)?;
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        if segment.contains(';') && is_dot_segment(segment) {
            return Err("a `.` or `..` segment with `;` parameters is not accepted");
        }
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// The fast path: nothing to decode, no empty segment but a trailing one, no
/// `.` or `..` segment.
fn is_normal(path: &str) -> bool {
    if path.contains(['%', '\\']) {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        if is_dot_segment(segment) || (segment.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// `.` or `..`, or one of them with `;` path parameters (`..;x`), which
/// Tomcat, Jetty and Spring strip before they resolve dot segments.
fn is_dot_segment(segment: &str) -> bool {
    matches!(segment.split(';').next(), Some("." | ".."))
}

/// Decodes `%XX` of unreserved characters, upper-cases the hex of the others,
/// and refuses what must not pass.
fn decode_unreserved(raw: &str) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    // Bytes, not chars: a raw non-ASCII byte is copied as it is (pushed as
    // a char, each byte of `é` became a character of its own).
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err("a backslash in the path is not accepted"),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or("invalid percent-encoding in the path")?;
                let value = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("invalid percent-encoding in the path")?;
                match value {
                    b'/' | b'\\' => {
                        return Err("an encoded `/` or `\\` in the path is not accepted")
                    }
                    0 => return Err("an encoded NUL in the path is not accepted"),
                    c if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') => {
                        out.push(c)
                    }
                    c => out.extend_from_slice(format!("%{c:02X}").as_bytes()),
                }
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    // Only ASCII sequences were replaced, by ASCII: still UTF-8.
    String::from_utf8(out).map_err(|_| "the path is not UTF-8")
}

/// SHA-256 (hex) of the headers an approved async request must come back
/// with: every header the client sent but [`UNBOUND_HEADERS`] and
/// `Airlock-*`, as `name:value` lines in name order (the values of one name
/// in the order sent), so a ticket approved for one set of headers cannot
/// carry another (`Authorization`, `X-Role`, `Content-Type`...).
pub fn bound_headers_digest(headers: &HeaderMap) -> String {
    let mut bound: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .filter(|(name, _)| {
            !UNBOUND_HEADERS.contains(name) && !name.starts_with(AIRLOCK_HEADER_PREFIX)
        })
        .collect();
    bound.sort_by(|a, b| a.0.cmp(b.0));
    let mut lines = Vec::new();
    for (name, value) in bound {
        lines.extend_from_slice(name.as_bytes());
        lines.push(b':');
        lines.extend_from_slice(value);
        lines.push(b'\n');
    }
    hex::encode(sha2::Sha256::digest(&lines))
}

/// Why hygiene refuses a request (400, with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("more than one Host header (RFC 9112 3.2)")]
    TwoHosts,
    #[error("the `{header}` header is not accepted: send the real method instead")]
    MethodOverrideHeader { header: &'static str },
    #[error("the `{METHOD_OVERRIDE_PARAMETER}` parameter is not accepted on this route: send the real method instead")]
    MethodParameter,
    #[error("an encoded request body (Content-Encoding) is not accepted on this route: a `{METHOD_OVERRIDE_PARAMETER}` field in it could not be looked for; send it unencoded")]
    EncodedBody,
    #[error("a request body in UTF-16, UTF-32, UTF-7 or UCS is not accepted on this route: a `{METHOD_OVERRIDE_PARAMETER}` field in it could not be looked for; send UTF-8")]
    WideCharset,
}

/// Refuses a request with more than one `Host` header.
pub fn check_single_host(headers: &HeaderMap) -> Result<(), Refused> {
    match headers.get_all(http::header::HOST).iter().nth(1) {
        Some(_) => Err(Refused::TwoHosts),
        None => Ok(()),
    }
}

/// How one family of frameworks reads a parameter or field name: the
/// bytes it skips at the start, where it stops, and whether it takes a
/// space, `.` or `[` for `_`.
struct NameReading {
    skips: &'static [u8],
    stops_at: &'static [u8],
    underscores: bool,
}

/// The readings a `_method` must not hide from: as written (Laravel and
/// Symfony read `.method` as `_method`, PHP turning `.`, ` ` and `[` into
/// `_`); PHP's own (leading spaces skipped, cut at a NUL); Rack 2's
/// (leading spaces and brackets skipped, cut at a bracket: `[_method]`,
/// `_method]`, and ` _method` after a `&`, which Rack 2 splits on `& *`).
const NAME_READINGS: [NameReading; 3] = [
    NameReading {
        skips: b"",
        stops_at: b"",
        underscores: true,
    },
    NameReading {
        skips: b" ",
        stops_at: b"\0",
        underscores: true,
    },
    NameReading {
        skips: b" []",
        stops_at: b"[]",
        underscores: false,
    },
];

/// A raw (percent-encoded, `+` for a space) name as `reading` reads it,
/// case aside.
fn name_as_read<'a>(raw: &'a [u8], reading: &'a NameReading) -> impl Iterator<Item = u8> + 'a {
    percent_encoding::percent_decode(raw)
        .map(|byte| if byte == b'+' { b' ' } else { byte })
        .skip_while(|byte| reading.skips.contains(byte))
        .take_while(|byte| !reading.stops_at.contains(byte))
        .map(|byte| match byte {
            b' ' | b'.' | b'[' if reading.underscores => b'_',
            byte => byte.to_ascii_lowercase(),
        })
}

/// Whether a raw parameter or field name reads as `_method` to one of
/// the [`NAME_READINGS`]. Compared byte by byte as it decodes.
fn names_method_override(raw: &[u8]) -> bool {
    let wanted = METHOD_OVERRIDE_PARAMETER.as_bytes();
    NAME_READINGS.iter().any(|reading| {
        name_as_read(raw, reading)
            .take(wanted.len() + 1)
            .eq(wanted.iter().copied())
    })
}

/// Whether the start of a raw name, cut where the scanner stops keeping
/// it, may still read as `_method` once the rest arrives: what one of the
/// readings makes of it so far is a start of `_method` (an escape cut in
/// two left out).
fn may_name_method_override(raw: &[u8]) -> bool {
    let whole = match raw.iter().rposition(|&byte| byte == b'%') {
        Some(at) if raw.len() - at < 3 => &raw[..at],
        _ => raw,
    };
    let wanted = METHOD_OVERRIDE_PARAMETER.as_bytes();
    NAME_READINGS.iter().any(|reading| {
        let read: Vec<u8> = name_as_read(whole, reading)
            .take(wanted.len() + 1)
            .collect();
        wanted.starts_with(&read)
    })
}

/// Refuses a query carrying a `_method` parameter (its name read as
/// [`names_method_override`] reads it).
pub fn check_method_parameter(query: Option<&str>) -> Result<(), Refused> {
    let Some(query) = query else { return Ok(()) };
    let overrides = query.split('&').any(|pair| {
        let name = pair.split('=').next().unwrap_or_default();
        names_method_override(name.as_bytes())
    });
    if overrides {
        return Err(Refused::MethodParameter);
    }
    Ok(())
}

/// Refuses a request body the `_method` guard could not read as a
/// framework would: a `Content-Encoding` other than `identity` (body-parser
/// inflates gzip, deflate and br before reading `_method`) or a charset
/// whose bytes are not ASCII's (body-parser decodes `utf-16le` and kin
/// before reading JSON).
pub fn check_guarded_body_encoding(headers: &HeaderMap) -> Result<(), Refused> {
    for value in headers.get_all(http::header::CONTENT_ENCODING) {
        let coded = value
            .as_bytes()
            .split(|&byte| byte == b',')
            .map(<[u8]>::trim_ascii)
            .any(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"));
        if coded {
            return Err(Refused::EncodedBody);
        }
    }
    for value in headers.get_all(http::header::CONTENT_TYPE) {
        if names_wide_charset(value.as_bytes()) {
            return Err(Refused::WideCharset);
        }
    }
    Ok(())
}

/// Whether a `Content-Type` names (in any parameter that looks like
/// `charset=`) a Unicode encoding other than UTF-8 (`utf-16`, `utf-32le`,
/// `utf-7`, `ucs-2`), in which `_method` is not the bytes searched for.
fn names_wide_charset(content_type: &[u8]) -> bool {
    content_type
        .split(|&byte| matches!(byte, b';' | b','))
        .filter_map(|parameter| {
            let (name, value) =
                parameter.split_at(parameter.iter().position(|&byte| byte == b'=')?);
            name.trim_ascii()
                .eq_ignore_ascii_case(b"charset")
                .then_some(&value[1..])
        })
        .any(|value| {
            // Compared letter by letter: no allocation per request.
            let letters = || {
                value
                    .iter()
                    .filter(|byte| byte.is_ascii_alphanumeric())
                    .map(u8::to_ascii_lowercase)
            };
            let starts = |prefix: &[u8]| letters().take(prefix.len()).eq(prefix.iter().copied());
            (starts(b"utf") && !letters().eq(b"utf8".iter().copied())) || starts(b"ucs")
        })
}

/// Finds a `_method` field in a request body fed in pieces (as it
/// streams), whatever its `Content-Type` says: frameworks disagree on
/// which types they parse (Rack reads an untyped body, a `multipart/mixed`
/// one or a `multipart/form-data` one without a boundary as a form;
/// Laravel reads JSON wherever the type holds `/json`), so every body is
/// read every way:
/// - as a URL-encoded form, a field whose name reads as `_method`
///   ([`names_method_override`]);
/// - as multipart, a `name=` (or `name*=`) parameter or a `Content-ID:`
///   anywhere in it, whatever header holds it or however its lines run,
///   whose value reads so (quoted or not, backslash escapes dropped);
/// - as JSON, a `"_method"` key (its letters escaped or not).
#[derive(Debug, Default)]
pub struct MethodFieldScanner {
    form: FormField,
    parts: PartName,
    php_parts: PhpLines,
    json: JsonKey,
}

/// How much of a field's raw name the scanner keeps: `_method` with every
/// byte percent-encoded and a lot of padding before it. A longer name that
/// may still read as `_method` fails closed.
const RAW_NAME_MAX: usize = 1024;

impl MethodFieldScanner {
    /// A scanner at the start of a body.
    pub fn new() -> MethodFieldScanner {
        MethodFieldScanner::default()
    }

    /// Feeds the next piece; true once a `_method` field was seen.
    pub fn feed(&mut self, piece: &[u8]) -> bool {
        self.form.feed(piece)
            || self.parts.feed(piece)
            || self.php_parts.feed(piece)
            || self.json.feed(piece)
    }

    /// Feeds the end of the body; true if its last field is `_method`.
    pub fn finish(&mut self) -> bool {
        self.form.finish() || self.parts.finish() || self.php_parts.finish()
    }
}

/// The URL-encoded reading: `name=value&...`.
#[derive(Debug, Default)]
struct FormField {
    /// The raw name of the field being read, while it may still be `_method`.
    name: Vec<u8>,
    /// Inside a field's value, or a name too long to matter.
    skipping: bool,
}

impl FormField {
    fn feed(&mut self, piece: &[u8]) -> bool {
        piece.iter().any(|&byte| self.byte(byte))
    }

    fn byte(&mut self, byte: u8) -> bool {
        match byte {
            b'&' => {
                let found = self.finish();
                self.name.clear();
                self.skipping = false;
                found
            }
            b'=' if !self.skipping => {
                let found = names_method_override(&self.name);
                self.name.clear();
                self.skipping = true;
                found
            }
            _ if self.skipping => false,
            _ => {
                self.name.push(byte);
                if self.name.len() > RAW_NAME_MAX {
                    let may = may_name_method_override(&self.name);
                    self.name.clear();
                    self.skipping = true;
                    return may;
                }
                false
            }
        }
    }

    fn finish(&self) -> bool {
        !self.skipping && names_method_override(&self.name)
    }
}

/// The multipart reading: every `name=` / `name*=` parameter and every
/// `Content-ID:` value in the body, wherever it stands. PHP joins a part
/// header's continuation lines (even ones that start with no space) and
/// splits lines longer than 5,120 bytes, Rack 2 matches `Content-Disposition:`
/// anywhere in the part's head and takes a `Content-ID` for the name: so
/// lines and header names are not trusted, only the parameters.
#[derive(Debug, Default)]
struct PartName {
    /// The words before this byte: with line breaks between words, and
    /// as PHP joins a header's continuation lines (line breaks dropped, a
    /// NUL cutting the rest of its line): `na\r\nme=` is `name=` to PHP.
    split: Word,
    joined: Word,
    /// In the joined reading, after a NUL: the rest of the line is gone.
    joined_cut: bool,
    /// As Rack 3 reads what follows an unclosed quote: a backslash escape
    /// eats the next byte and the parameters are read again after it
    /// (`x="\aname=_method` names `_method`).
    escaped: Word,
    after_backslash: bool,
    /// Values being read (a new `name=` may start inside another's).
    values: Vec<PartValue>,
}

/// The multipart reading of the body as PHP reads a part's head, line by
/// line: a line ends at LF (a CR just before it dropped) or after
/// [`PHP_LINE`] bytes; a NUL ends what is kept of its line (lines are C
/// strings); a line with no `:`, or starting with whitespace, continues
/// the one before it with nothing between (`multipart_buffer_headers`).
/// The lines so joined are read as [`PartName`] reads the body.
#[derive(Debug, Default)]
struct PhpLines {
    line: Vec<u8>,
    parts: PartName,
}

/// PHP's multipart buffer (`FILLUNIT`): a longer line is cut there.
const PHP_LINE: usize = 5120;

impl PhpLines {
    fn feed(&mut self, piece: &[u8]) -> bool {
        piece.iter().any(|&byte| self.byte(byte))
    }

    fn byte(&mut self, byte: u8) -> bool {
        if byte == b'\n' {
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            return self.end_line();
        }
        self.line.push(byte);
        self.line.len() == PHP_LINE && self.end_line()
    }

    fn end_line(&mut self) -> bool {
        let kept = match self.line.iter().position(|&byte| byte == 0) {
            Some(nul) => &self.line[..nul],
            None => &self.line[..],
        };
        let continues = !kept.is_empty()
            && (!kept.contains(&b':') || kept.first().is_some_and(|&byte| is_c_space(byte)));
        let found = (!continues && self.parts.feed(b"\n")) || self.parts.feed(kept);
        self.line.clear();
        found
    }

    fn finish(&mut self) -> bool {
        self.end_line() || self.parts.finish()
    }
}

/// Values read at once; the oldest is judged as it stands past that.
const VALUES_AT_ONCE: usize = 8;

/// What C's `isspace` takes for whitespace (PHP skips it around a
/// parameter's value, Ruby's `\s` and `strip` too), and NUL, which PHP
/// reads as a string's end and Ruby's `strip` drops.
fn is_c_space(byte: u8) -> bool {
    matches!(
        byte,
        b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r' | b'\0'
    )
}

fn trim_c_space(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_c_space(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_c_space(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// The last word read (letters, digits, `_`, `-`, `.`), lower-cased: its
/// last 16 bytes packed into an integer, and its length.
#[derive(Debug, Default, Clone, Copy)]
struct Word {
    packed: u128,
    len: usize,
    /// Still inside the word (no other byte since its last).
    open: bool,
    /// A `*` (and whitespace) came between the word and this byte.
    starred: bool,
}

/// What a byte after a word opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opens {
    Nothing,
    /// `name=`, `name*=`, `name =`; not `filename=` or `first_name=`.
    Name,
    /// `content-id:`, also at the end of a longer word (Rack matches
    /// `Content-ID:` anywhere: `X-Content-ID:` too).
    ContentId,
}

/// `bytes` (at most 16) packed as [`Word`] packs a word's end.
const fn packed(bytes: &[u8]) -> u128 {
    let mut packed = 0;
    let mut at = 0;
    while at < bytes.len() {
        packed = (packed << 8) | bytes[at] as u128;
        at += 1;
    }
    packed
}

const NAME: u128 = packed(b"name");
const CONTENT_ID: u128 = packed(b"content-id");
const CONTENT_ID_MASK: u128 = (1 << (8 * b"content-id".len())) - 1;

impl Word {
    fn byte(&mut self, byte: u8) -> Opens {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.') {
            if !self.open {
                *self = Word {
                    open: true,
                    ..Word::default()
                };
            }
            self.packed = (self.packed << 8) | u128::from(byte.to_ascii_lowercase());
            self.len += 1;
            return Opens::Nothing;
        }
        self.open = false;
        if is_c_space(byte) {
            return Opens::Nothing;
        }
        if byte == b'*' && !self.starred {
            self.starred = true;
            return Opens::Nothing;
        }
        let opens = match byte {
            b'=' if self.len == 4 && self.packed & 0xffff_ffff == NAME => Opens::Name,
            b':' if !self.starred
                && self.len >= b"content-id".len()
                && self.packed & CONTENT_ID_MASK == CONTENT_ID =>
            {
                Opens::ContentId
            }
            _ => Opens::Nothing,
        };
        // Any other byte ends what the word could still open.
        *self = Word::default();
        opens
    }
}

#[derive(Debug)]
struct PartValue {
    /// The value so far, backslashes and line breaks dropped.
    raw: Vec<u8>,
    /// The same as PHP reads a part's header: a NUL ends its line (PHP
    /// joins the header's lines as C strings), so what follows a NUL up to
    /// the line's end is dropped (`name="\0x\r\n_method"` is `_method`).
    cut: Vec<u8>,
    cutting: bool,
    /// `raw`'s length after its last escaped byte: Rack 3 keeps a quoted
    /// value that never closes only up to there (and reads the rest as
    /// parameters again).
    escaped_end: usize,
    state: ValueState,
    /// `raw`'s length when a line break last judged it, and how many times
    /// one did: a value is judged at most [`LINE_JUDGEMENTS`] times before
    /// its end, so line breaks cannot make it cost its length squared.
    judged_len: usize,
    judgements: u8,
}

/// Line breaks a value may be judged at before it counts as too long.
const LINE_JUDGEMENTS: u8 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueState {
    /// After `name=` or `content-id:`, before the value's first byte.
    Start { content_id: bool },
    /// Inside quotes (`"` or `'`); `escaped` after a backslash.
    Quoted { quote: u8, escaped: bool },
    /// An unquoted parameter, up to whitespace, `;` or `,`.
    Bare,
    /// A `Content-ID`, up to the end of its line.
    ContentId,
}

impl PartName {
    fn feed(&mut self, piece: &[u8]) -> bool {
        piece.iter().any(|&byte| self.byte(byte))
    }

    fn byte(&mut self, byte: u8) -> bool {
        let mut found = false;
        if !self.values.is_empty() {
            self.values.retain_mut(|value| match value.byte(byte) {
                Step::Reading => true,
                Step::Ended(hit) => {
                    found |= hit;
                    false
                }
            });
        }
        let split = self.split.byte(byte);
        let joined = match byte {
            b'\r' | b'\n' => {
                self.joined_cut = false;
                Opens::Nothing
            }
            _ if self.joined_cut => Opens::Nothing,
            b'\0' => {
                self.joined_cut = true;
                Opens::Nothing
            }
            _ => self.joined.byte(byte),
        };
        let escaped = if std::mem::take(&mut self.after_backslash) {
            self.escaped = Word::default();
            Opens::Nothing
        } else {
            self.after_backslash = byte == b'\\';
            self.escaped.byte(byte)
        };
        let opens = [split, joined, escaped]
            .into_iter()
            .find(|opens| *opens != Opens::Nothing)
            .unwrap_or(Opens::Nothing);
        if opens != Opens::Nothing {
            if self.values.len() == VALUES_AT_ONCE {
                found |= self.values.remove(0).judge_as_it_stands();
            }
            self.values.push(PartValue {
                raw: Vec::new(),
                cut: Vec::new(),
                cutting: false,
                escaped_end: 0,
                state: ValueState::Start {
                    content_id: opens == Opens::ContentId,
                },
                judged_len: 0,
                judgements: 0,
            });
        }
        found
    }

    fn finish(&mut self) -> bool {
        self.values
            .drain(..)
            .any(|value| value.judge_as_it_stands())
    }
}

const ESC: u8 = 0x1b;

/// `bytes` without ISO 2022 escape sequences: ESC, any intermediate bytes
/// (0x20-0x2F), a final byte (0x30-0x7E).
fn without_iso_2022_escapes(bytes: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let [first, tail @ ..] = rest {
        if *first != ESC {
            kept.push(*first);
            rest = tail;
            continue;
        }
        let intermediates = tail
            .iter()
            .take_while(|byte| (0x20..=0x2f).contains(*byte))
            .count();
        let after = &tail[intermediates..];
        rest = match after {
            [final_byte, remaining @ ..] if (0x30..=0x7e).contains(final_byte) => remaining,
            _ => after,
        };
    }
    kept
}

/// What a byte did to a value being read.
enum Step {
    Reading,
    /// The value ended; whether it names `_method`.
    Ended(bool),
}

impl PartValue {
    fn byte(&mut self, byte: u8) -> Step {
        match self.state {
            ValueState::Start { content_id } => match byte {
                // PHP skips every `=` after the key (`name=="_method"`).
                b'=' if !content_id => return Step::Reading,
                _ if is_c_space(byte) => return Step::Reading,
                b'"' | b'\'' if !content_id => {
                    self.state = ValueState::Quoted {
                        quote: byte,
                        escaped: false,
                    };
                    return Step::Reading;
                }
                _ => {
                    self.state = if content_id {
                        ValueState::ContentId
                    } else {
                        ValueState::Bare
                    };
                }
            },
            ValueState::Quoted { quote, escaped } => {
                if !escaped && byte == quote {
                    return Step::Ended(self.names_method());
                }
                self.state = ValueState::Quoted {
                    quote,
                    escaped: !escaped && byte == b'\\',
                };
                if byte == b'\\' && !escaped {
                    return Step::Reading;
                }
                if escaped && !matches!(byte, b'\r' | b'\n') {
                    self.escaped_end = self.raw.len() + 1;
                }
            }
            ValueState::Bare if matches!(byte, b' ' | b'\t' | b'\x0b' | b'\x0c' | b';' | b',') => {
                return Step::Ended(self.names_method());
            }
            ValueState::ContentId if matches!(byte, b'\r' | b'\n') => {
                return Step::Ended(self.names_method());
            }
            ValueState::Bare | ValueState::ContentId => {}
        }
        if matches!(byte, b'\r' | b'\n') {
            self.cutting = false;
            return self.judge_at_line_break();
        }
        self.raw.push(byte);
        self.cutting |= byte == 0;
        if !self.cutting {
            self.cut.push(byte);
        }
        if self.raw.len() > RAW_NAME_MAX {
            return Step::Ended(self.may_name_method());
        }
        Step::Reading
    }

    /// The value may end with its line (PHP reads an unclosed quote to the
    /// line's end) or go on in the next (PHP joins lines).
    fn judge_at_line_break(&mut self) -> Step {
        if self.raw.len() == self.judged_len {
            return Step::Reading;
        }
        self.judged_len = self.raw.len();
        self.judgements += 1;
        if self.names_method() {
            return Step::Ended(true);
        }
        if self.judgements > LINE_JUDGEMENTS {
            return Step::Ended(self.may_name_method());
        }
        Step::Reading
    }

    /// The readings of the value so far, of `raw` and of `cut` alike: as
    /// read (percent-decoded by [`names_method_override`]), after a
    /// `name*=` value's `charset'language'`, cut at Rack's token end
    /// (unquoted), trimmed of `<` `>` (a `Content-ID`), and with ISO 2022
    /// escape sequences dropped (Rack 3.2 transcodes a name in a part of
    /// `charset=ISO-2022-JP` to UTF-8, and `ESC ( B` becomes nothing).
    fn judge(&self, rule: fn(&[u8]) -> bool) -> bool {
        let unclosed = matches!(self.state, ValueState::Quoted { .. }) && self.escaped_end > 0;
        if unclosed && rule(trim_c_space(&self.raw[..self.escaped_end])) {
            return true;
        }
        [&self.raw, &self.cut].into_iter().any(|value| {
            let raw = trim_c_space(value);
            let extended = raw.rsplit(|&byte| byte == b'\'').next().unwrap_or(raw);
            let token_end = raw
                .iter()
                .position(|&byte| b"()<>,;:\\\"/[]?=".contains(&byte) || is_c_space(byte))
                .unwrap_or(raw.len());
            let angled = raw.strip_prefix(b"<").unwrap_or(raw);
            let angled = angled.strip_suffix(b">").unwrap_or(angled);
            [raw, extended, &raw[..token_end], angled]
                .into_iter()
                .any(rule)
                || (raw.contains(&ESC) && rule(&without_iso_2022_escapes(raw)))
        })
    }

    fn names_method(&self) -> bool {
        self.judge(names_method_override)
    }

    fn may_name_method(&self) -> bool {
        self.judge(may_name_method_override)
    }

    /// A value cut before its end (the body ended, or too many values at
    /// once): judged as what it is so far, failing closed if it may still
    /// become `_method`.
    fn judge_as_it_stands(&self) -> bool {
        match self.state {
            ValueState::Start { .. } => false,
            _ => self.names_method() || self.may_name_method(),
        }
    }
}

/// The JSON reading: a `"_method"` key, followed by its colon.
#[derive(Debug, Default)]
struct JsonKey {
    /// The body's last bytes as a decoder reads them (lower-cased, `\u00XX`
    /// escapes decoded, runs of whitespace as one byte), for a key split
    /// across pieces.
    tail: Vec<u8>,
    /// An escape begun but not complete: `\`, `\u`, `\u0`, ... `\u00X`.
    escape: Vec<u8>,
}

/// The JSON key looked for (lower-cased, decoded), and how much of the
/// body's end is kept for one split across pieces.
const JSON_KEY: &[u8] = b"\"_method\"";
const JSON_TAIL: usize = 64;
const ESCAPE: &[u8] = b"\\u00";

impl JsonKey {
    fn feed(&mut self, piece: &[u8]) -> bool {
        for byte in piece.iter().map(u8::to_ascii_lowercase) {
            if self.escape.is_empty() && byte != b'\\' {
                self.keep(byte);
            } else {
                self.escaped(byte);
            }
        }
        // Every key starts at a quote.
        let found = self
            .tail
            .iter()
            .enumerate()
            .filter(|(_, &byte)| byte == b'"')
            .any(|(at, _)| {
                self.tail[at..].strip_prefix(JSON_KEY).is_some_and(|after| {
                    after
                        .iter()
                        .find(|byte| !byte.is_ascii_whitespace())
                        .is_some_and(|&byte| byte == b':')
                })
            });
        let keep = self.tail.len().saturating_sub(JSON_TAIL);
        self.tail.drain(..keep);
        found
    }

    /// `\u00XX` escapes of ASCII read as what they escape (a decoder reads
    /// `"_m\u0065thod"` as `_method`), each byte once, however the body is
    /// cut: what an escape decodes to is not decoded again.
    fn escaped(&mut self, byte: u8) {
        if self.escape.is_empty() && byte != b'\\' {
            return self.keep(byte);
        }
        self.escape.push(byte);
        let length = self.escape.len();
        let fits = match length {
            1..=4 => self.escape[..] == ESCAPE[..length],
            _ => {
                self.escape.starts_with(ESCAPE)
                    && self.escape[4..].iter().all(u8::is_ascii_hexdigit)
            }
        };
        if !fits {
            // Not an escape after all: its first byte is itself, and what
            // followed it is read again (it may begin an escape).
            let rest = self.escape.split_off(1);
            self.escape.clear();
            self.keep(b'\\');
            for byte in rest {
                self.escaped(byte);
            }
        } else if length == 6 {
            let hex = std::str::from_utf8(&self.escape[4..]).unwrap_or("00");
            let decoded = u8::from_str_radix(hex, 16)
                .unwrap_or(0)
                .to_ascii_lowercase();
            self.escape.clear();
            self.keep(decoded);
        }
    }

    #[inline]
    fn keep(&mut self, byte: u8) {
        // A run of whitespace is kept as one byte: what may stand between
        // a key and its colon does not matter, and a key padded with more
        // than the tail holds must not slip out of it before its colon
        // arrives (found by the `method_field` fuzz target).
        let repeated =
            byte.is_ascii_whitespace() && self.tail.last().is_some_and(u8::is_ascii_whitespace);
        if !repeated {
            self.tail.push(byte);
        }
    }
}

/// Refuses requests carrying a method override.
pub fn check_method_override(headers: &HeaderMap) -> Result<(), Refused> {
    match METHOD_OVERRIDE_HEADERS
        .iter()
        .find(|h| headers.contains_key(**h))
    {
        Some(header) => Err(Refused::MethodOverrideHeader { header }),
        None => Ok(()),
    }
}

/// The trace id of a valid W3C `traceparent` (`00-TRACEID-PARENTID-FLAGS`,
/// lower-case hex, ids not all zeros); passed on unchanged to the backend.
pub fn trace_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0')
        && (version != "00" || parts.next().is_none());
    valid.then(|| trace.to_owned())
}

/// Whether a `Prefer` header asks for `respond-async` (RFC 7240: a list of
/// preferences, each a token with optional value and parameters).
pub fn prefers_respond_async(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| preference.split([';', '=']).next())
        .any(|token| token.trim().eq_ignore_ascii_case("respond-async"))
}

/// What a listener lets its clients send that others may not.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTrust {
    /// Keep forwarding headers (behind a trusted balancer).
    pub forwarded: bool,
    /// Keep header names with an underscore.
    pub underscores: bool,
}

/// Removes what a client must not set: `Airlock-*` and URL rewrite
/// headers always, names with an underscore and forwarding headers unless
/// the listener keeps them.
pub fn strip_reserved_headers(headers: &mut HeaderMap, trust: ClientTrust) {
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with(AIRLOCK_HEADER_PREFIX)
                || URL_REWRITE_HEADERS.contains(&name)
                || (!trust.underscores && name.contains('_'))
        })
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(name);
    }
    if !trust.forwarded {
        for name in FORWARDING_HEADERS {
            headers.remove(name);
        }
    }
}

/// The tokens of every `Connection` header.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Removes the headers `Connection` names (they are for this hop only, RFC
/// 9110 7.6.1) before the request is judged, and keeps of `Connection` only
/// its `upgrade` token. Policies then see, and set, exactly what the backend
/// receives: a client cannot name a header a policy sets and have it dropped.
pub fn strip_connection_named(headers: &mut HeaderMap) {
    let mut upgrade = false;
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|token| {
            let is_upgrade = token.eq_ignore_ascii_case("upgrade");
            upgrade |= is_upgrade;
            !is_upgrade
        })
        .filter_map(|token| HeaderName::try_from(token).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    headers.remove(http::header::CONNECTION);
    if upgrade {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_id_comes_only_from_a_valid_traceparent() {
        let trace = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("traceparent", value.parse().unwrap());
            trace_id(&headers)
        };
        assert_eq!(
            trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(trace(bad), None, "{bad}");
        }
        assert_eq!(trace_id(&HeaderMap::new()), None);
    }

    #[test]
    fn respond_async_is_found_among_preferences() {
        let prefer = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("prefer", value.parse().unwrap());
            }
            prefers_respond_async(&headers)
        };
        assert!(prefer(&["respond-async"]));
        assert!(prefer(&["return=minimal, Respond-Async; wait=10"]));
        assert!(prefer(&["wait=5", "respond-async"]));
        assert!(!prefer(&[]));
        assert!(!prefer(&["return=representation"]));
        assert!(!prefer(&["respond-asynchronously"]));
        assert!(!prefer(&["handling=respond-async"]));
    }

    #[test]
    fn connection_named_headers_go_before_judging_and_upgrade_stays() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            "x-checked-by, Upgrade, close".parse().unwrap(),
        );
        headers.insert("x-checked-by", "forged".parse().unwrap());
        headers.insert("upgrade", "websocket".parse().unwrap());
        strip_connection_named(&mut headers);
        assert!(headers.get("x-checked-by").is_none());
        assert_eq!(headers["connection"], "upgrade");
        assert_eq!(headers["upgrade"], "websocket");
    }

    fn norm(p: &str) -> Result<String, &'static str> {
        normalize_path(p).map(Cow::into_owned)
    }

    /// Found by the `path` fuzz target: a raw non-ASCII byte beside a
    /// percent-encoding came out as one character per byte (`é` as `Ã©`),
    /// and normalizing the result again changed it again.
    #[test]
    fn raw_non_ascii_bytes_pass_unchanged() {
        assert_eq!(norm("/caf\u{e9}//%41").unwrap(), "/caf\u{e9}/A");
        assert_eq!(norm("/\u{41c}%2e%2e/x").unwrap(), "/\u{41c}../x");
        let once = norm("/%41%eaa\u{41c}//adm").unwrap();
        assert_eq!(once, "/A%EAa\u{41c}/adm");
        assert_eq!(norm(&once).unwrap(), once);
    }

    /// Found in review: Java servers strip `;` parameters before they
    /// resolve dot segments, so `/public/..;/admin` serves `/admin`.
    #[test]
    fn dot_segments_with_path_parameters_are_refused() {
        for path in ["/public/..;/admin", "/public/%2e%2e;x/admin", "/a/.;/b"] {
            assert!(norm(path).is_err(), "{path}");
        }
        assert_eq!(norm("/a;v=1/b").unwrap(), "/a;v=1/b");
    }

    #[test]
    fn normal_paths_pass_unchanged_and_borrowed() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/x/..y"] {
            assert!(matches!(normalize_path(p), Ok(Cow::Borrowed(_))), "{p}");
        }
    }

    #[test]
    fn dot_segments_and_slashes_resolve() {
        let cases = [
            ("/public/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/a/./b/.", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2e/%61dmin", "/admin"),
            ("/a/%7euser", "/a/~user"),
            ("/a%20b", "/a%20b"),
            ("/a%c3%a9", "/a%C3%A9"),
            ("/.", "/"),
            ("/..", "/"),
        ];
        for (input, want) in cases {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn dangerous_encodings_are_refused() {
        for p in [
            "/a%2fb", "/a%2Fb", "/a%5cb", "/a\\b", "/a%zz", "/a%2", "/a%", "/a%00b", "relative",
            "*",
        ] {
            assert!(norm(p).is_err(), "{p} should be refused");
        }
    }

    #[test]
    fn method_override_is_refused() {
        let mut h = HeaderMap::new();
        assert!(check_method_override(&h).is_ok());
        h.insert("X-HTTP-Method-Override", "DELETE".parse().unwrap());
        assert!(check_method_override(&h)
            .unwrap_err()
            .to_string()
            .contains("x-http-method-override"));
    }

    #[test]
    fn reserved_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert("airlock-ticket", "x".parse().unwrap());
        h.insert("Airlock-Principal", "admin".parse().unwrap());
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        h.insert("x-original-url", "/admin".parse().unwrap());
        h.insert("X-Rewrite-URL", "/admin".parse().unwrap());
        h.insert("x_http_method_override", "DELETE".parse().unwrap());
        let mut trusted = h.clone();
        strip_reserved_headers(&mut h, ClientTrust::default());
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
        let trust = ClientTrust {
            forwarded: true,
            underscores: true,
        };
        strip_reserved_headers(&mut trusted, trust);
        assert_eq!(trusted.len(), 3, "{trusted:?}");
        assert!(trusted.contains_key("x-forwarded-for"));
        assert!(trusted.contains_key("x_http_method_override"));
    }

    #[test]
    fn a_method_parameter_is_found_however_it_is_spelled() {
        for query in [
            "_method=DELETE",
            "a=1&_METHOD=put",
            "%5Fmethod=delete",
            "x&_method",
            ".method=DELETE",
            "%20method=DELETE",
            "%5Bmethod=DELETE",
            // Found in review: PHP skips leading spaces and cuts at a NUL;
            // Rack skips leading brackets and cuts at one.
            "+_method=DELETE",
            "%20_method=DELETE",
            "_method%00=DELETE",
            "[_method]=DELETE",
            "_method]=DELETE",
            &format!("{}_method=DELETE", "+".repeat(30)),
        ] {
            assert!(check_method_parameter(Some(query)).is_err(), "{query}");
        }
        for query in ["method=DELETE", "a_method=x", "q=_method", "m=%5Fmethod"] {
            assert!(check_method_parameter(Some(query)).is_ok(), "{query}");
        }
        assert!(check_method_parameter(None).is_ok());
    }

    #[test]
    fn the_bound_headers_digest_ignores_framing_tracing_and_order_of_names() {
        let mut sent = HeaderMap::new();
        sent.insert("x-role", "reader".parse().unwrap());
        sent.insert("content-type", "application/json".parse().unwrap());
        sent.insert("prefer", "respond-async".parse().unwrap());
        sent.insert("content-length", "7".parse().unwrap());
        let mut again = HeaderMap::new();
        again.insert("content-type", "application/json".parse().unwrap());
        again.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        again.insert("x-role", "reader".parse().unwrap());
        again.insert("airlock-ticket", "tkt_x".parse().unwrap());
        assert_eq!(bound_headers_digest(&sent), bound_headers_digest(&again));
        again.insert("x-role", "admin".parse().unwrap());
        assert_ne!(bound_headers_digest(&sent), bound_headers_digest(&again));
        let mut added = sent.clone();
        added.insert("authorization", "Bearer backend-superuser".parse().unwrap());
        assert_ne!(bound_headers_digest(&sent), bound_headers_digest(&added));
    }

    /// Whether `body`, fed in pieces of `size` bytes, carries `_method`.
    fn scanned(body: &[u8], size: usize) -> bool {
        let mut scanner = MethodFieldScanner::new();
        let mut found = false;
        for piece in body.chunks(size) {
            found |= scanner.feed(piece);
        }
        found | scanner.finish()
    }

    /// A multipart body of one part with these header lines.
    fn part(headers: &str) -> Vec<u8> {
        format!("--B\r\n{headers}\r\n\r\nDELETE\r\n--B--\r\n").into_bytes()
    }

    #[test]
    fn a_method_form_field_is_found_however_the_body_is_cut() {
        let mut carriers: Vec<Vec<u8>> = [
            "_method=DELETE",
            "id=7&_method=delete&x=1",
            "id=7&%5Fmethod=put",
            "a=b&_METHOD",
            "x=1&_method=",
            ".method=DELETE",
            "%20method=DELETE",
            "+method=DELETE",
            "%5Bmethod=DELETE",
            // Rack 2 splits on `& *` and skips leading brackets (review).
            "a=1& [_method]=DELETE",
            "a=1& _method]=DELETE",
            r#"{"_method":"DELETE"}"#,
            r#"{"a":1, "_METHOD" : "put"}"#,
            r#"{"\u005fmethod":"x"}"#,
            // Other escapes of the key's letters (found in review).
            r#"{"_m\u0065thod":"x"}"#,
            r#"{"\u005F\u006Dethod":"x"}"#,
        ]
        .iter()
        .map(|body| body.as_bytes().to_vec())
        .collect();
        for headers in [
            "Content-Disposition: form-data; NAME=\"_method\"",
            "Content-Disposition: form-data; name='_method'",
            "Content-Disposition: form-data; name = \"_method\"",
            "Content-Disposition: form-data; name*=UTF-8''_method",
            "Content-Disposition: form-data; name=\"%5Fmethod\"",
            "Content-Disposition: form-data; name=.method",
            // Folded (found in review).
            "Content-Disposition: form-data;\r\n name=\"_method\"",
            // The second review's: text after the closing quote (PHP and
            // Rack stop at the quote), an unquoted name before a space,
            // a backslash escape (Rack drops it), a Content-ID for the
            // name (Rack), a continuation line without a colon (PHP), the
            // header name inside another (Rack 2's unanchored match), a
            // line PHP splits at 5,120 bytes.
            "Content-Disposition: form-data; name=\"_method\"x",
            "Content-Disposition: form-data; name=_method x",
            "Content-Disposition: form-data; name=\"\\_method\"",
            "Content-ID: _method",
            "Content-ID: <_method>",
            "Content-Disposition: form-data\r\n; name=\"_method\"",
            "X-Content-Disposition: form-data; name=\"_method\"",
            &format!(
                "X-Pad: {}Content-Disposition: form-data; name=\"_method\"",
                "a".repeat(5113)
            ),
            // An unclosed quote: PHP reads to the line's end.
            "Content-Disposition: form-data; name=\"_method",
            // The third review's: C whitespace (\v, \f) and NUL around a
            // value (PHP's isspace, Ruby's \s and strip), a key split
            // across lines PHP joins, `name==`.
            "Content-Disposition: form-data; name=_method\x0b",
            "Content-Disposition: form-data; name=\x0b_method",
            "Content-Disposition: form-data; name=\x0c\"_method\"; x=1",
            "Content-Disposition: form-data; name=_method\x0cx; x=1",
            "Content-Disposition: form-data; name=\0_method x",
            "Content-Disposition: form-data; na\r\nme=\"_method\"",
            "Content-Disposition: form-data; na\nme=\"_method\"",
            "Content-Disposition: form-data; name\0\r\n=\"_method\"",
            "Content-Disposition: form-data; name==\"_method\"; x=1",
            "Content-ID:\x0b_method",
            // The fourth review's: a NUL ends a header line to PHP (the
            // rest of it is dropped before the next is joined on), and
            // Rack 3.2 drops ISO-2022-JP escapes from a name it transcodes.
            "Content-Disposition: form-data; name=\"\0x\r\n_method\"",
            "Content-Disposition: form-data; name=\"_meth\0\r\nod\"",
            "Content-Disposition: form-data; name=\"\x1b(B_method\"\r\nContent-Type: text/plain; charset=ISO-2022-JP",
            "Content-Disposition: form-data; name=\"_\x1b$B\x1b(Bmethod\"",
            "Content-ID: \x1b(J_method",
            // The fifth review's: PHP's own reading of a part's head (what
            // follows a NUL is gone to the line's end, which only LF or
            // 5,120 bytes make), and Rack 3's of an unclosed quote (the
            // value up to its last escape, the rest read again).
            "Content-Disposition: form-data; name=\"\0\"\r\n_method\"",
            "Content-Disposition: form-data; name=_\0 \r\nmethod",
            "Content-Disposition: form-data; name=\0x\r\n_method",
            "Content-Disposition: form-data; name=\"\0\rx\n_method\"",
            "Content-Disposition: form-data; na\0\rx\nme=\"_method\"",
            "Content-Disposition: form-data; name\0\rx\n=\"_method\"",
            &format!("Content-Disposition: form-data; na\0{}me=\"_method\"", "a".repeat(5085)),
            "Content-Disposition: form-data; name=\"_metho\\dx",
            "Content-Disposition: form-data; x=\"\\aname=_method",
            &{
                let (head, cut) = ("Content-Disposition: form-data; pad=", "; name=\"\0xxxxxxxx");
                let pad = "a".repeat(PHP_LINE - head.len() - cut.len());
                format!("{head}{pad}{cut}_method\"")
            },
        ] {
            carriers.push(part(headers));
        }
        // A name padded past what the scanner keeps fails closed.
        carriers.push(format!("a=1&{}_method=DELETE", "+".repeat(RAW_NAME_MAX + 10)).into_bytes());
        carriers.push(part(&format!(
            "Content-Disposition: form-data; name=\"{}_method\"",
            "%20".repeat(RAW_NAME_MAX)
        )));
        // A key padded past the scanner's tail before its colon.
        carriers.push(format!("{{\"_method\"{}:\"DELETE\"}}", " \n\t".repeat(100)).into_bytes());
        let innocents: Vec<Vec<u8>> = [
            "method=DELETE",
            "a_method=x",
            "q=_method",
            "q=x&_methods=1",
            "note=_method%3DDELETE",
            "first_name=_method&username=_method",
            "",
            "--B\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\n_method\r\n--B--",
            "--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"_method\"\r\n\r\nx\r\n--B--",
            "--B\r\nContent-Disposition: form-data; name=\"_methods\"\r\n\r\nx\r\n--B--",
            r#"{"note":"_method"}"#,
            r#"{"m":"\"_method\": x"}"#,
            r#"{"_methods":1}"#,
            r#"{"name": "_method"}"#,
            // An escape's decoding is not decoded again, however the body
            // is cut (it was, in one piece after another).
            r#"{"\u005cu005cu005fmethod":1}"#,
        ]
        .iter()
        .map(|body| body.as_bytes().to_vec())
        .chain([format!("{}=1&b=2", "x".repeat(RAW_NAME_MAX + 10)).into_bytes()])
        .collect();
        for size in [1, 2, 3, 7, 1000, 10_000] {
            for body in &carriers {
                let shown = String::from_utf8_lossy(&body[..body.len().min(120)]);
                assert!(scanned(body, size), "{shown} by {size}");
            }
            for body in &innocents {
                let shown = String::from_utf8_lossy(&body[..body.len().min(120)]);
                assert!(!scanned(body, size), "{shown} by {size}");
            }
        }
    }

    #[test]
    fn line_breaks_cannot_make_a_value_cost_its_length_squared() {
        let mut parts = PartName::default();
        let mut body = format!("name=\"{}", "+".repeat(RAW_NAME_MAX - 1)).into_bytes();
        body.extend(b"\n".repeat(100_000));
        assert!(!parts.feed(&body));
        assert_eq!(
            parts.values.len(),
            1,
            "a value without new bytes is not judged again"
        );
        let mut parts = PartName::default();
        let body = "name=\"x".to_owned() + &"y\n".repeat(100);
        assert!(!parts.feed(body.as_bytes()));
        assert!(
            parts.values.is_empty(),
            "judged past {LINE_JUDGEMENTS} line breaks, it ends"
        );
    }

    #[test]
    fn a_body_the_guard_cannot_read_is_refused() {
        let refused = |name: &str, value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            check_guarded_body_encoding(&headers).is_err()
        };
        for (name, value) in [
            ("content-encoding", &b"gzip"[..]),
            ("content-encoding", b"identity, br"),
            ("content-encoding", b"DEFLATE"),
            ("content-type", b"application/json; charset=utf-16le"),
            ("content-type", b"application/json; CHARSET=\"UTF-32\""),
            ("content-type", b"text/plain; charset = utf-7"),
            (
                "content-type",
                b"application/x-www-form-urlencoded; a=\"\xe9\"; charset=ucs-2",
            ),
        ] {
            assert!(
                refused(name, value),
                "{name}: {}",
                String::from_utf8_lossy(value)
            );
        }
        for (name, value) in [
            ("content-encoding", &b"identity"[..]),
            ("content-encoding", b""),
            ("content-type", b"application/json; charset=utf-8"),
            (
                "content-type",
                b"application/x-www-form-urlencoded; charset=UTF8",
            ),
            ("content-type", b"text/plain; charset=iso-8859-1"),
            ("content-type", b"multipart/form-data; boundary=utf-16"),
        ] {
            assert!(
                !refused(name, value),
                "{name}: {}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn two_host_headers_are_refused() {
        let mut h = HeaderMap::new();
        h.insert("host", "a.example".parse().unwrap());
        assert!(check_single_host(&h).is_ok());
        h.append("host", "b.example".parse().unwrap());
        assert!(check_single_host(&h).is_err());
    }
}

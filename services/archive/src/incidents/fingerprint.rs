//! The identity of an incident, and the error-text normaliser it rests on.
//!
//! A fingerprint is the step that failed (topic, event type, consumer) and the cause: the
//! consumer's error code when it gave one, else its error text with the parts that vary from
//! one failure to the next (numbers, ids, quoted values, addresses, times) replaced by
//! placeholders, the way error trackers group exceptions. Its id is stored in the incident
//! index, so the same failure must give the same id in every process and every release:
//! changing the rule or the hash starts new incidents for old causes, hence the version in
//! [`DOMAIN`].

use sha2::{Digest as _, Sha256};

/// Hashed ahead of the parts, so ids of another scheme (or a later version of this one) never
/// meet these.
const DOMAIN: &str = "retrace.incident.v1";

/// Longest normalised error text kept, in characters: texts that differ only after it are one
/// cause. It bounds the work per failure at ingest and what an incident stores; a stack trace
/// says what broke near its start.
pub const MAX_CAUSE_CHARS: usize = 500;

/// A quoted value longer than this (in bytes) is read as text, not as one value: the closing
/// quote is looked for this far only, which keeps a text full of stray quotes linear.
const MAX_QUOTED_LEN: usize = 256;

/// Words at least this long that hold a digit, or only hex digits, are ids (`7f9c8d2a`, a
/// SHA, `12345678`); shorter ones only have their digits replaced (`v1`, `2s`, `http2`).
const MIN_ID_LEN: usize = 8;

/// Why a step failed, as failures are grouped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The consumer's `Outcome.error_code`.
    Code(String),
    /// The error text, normalised by [`normalise_error`].
    Text(String),
}

impl Cause {
    /// The consumer's code when it gave one, whatever the text says: the code is its own
    /// word for the cause, and stays when the text changes. Else the text, normalised.
    pub fn of(error_code: &str, error: &str) -> Self {
        match error_code {
            "" => Cause::Text(normalise_error(error)),
            code => Cause::Code(code.to_owned()),
        }
    }

    /// The code, or the normalised text: what an incident shows as its cause.
    pub fn as_str(&self) -> &str {
        match self {
            Cause::Code(code) => code,
            Cause::Text(text) => text,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Cause::Code(_) => "code",
            Cause::Text(_) => "text",
        }
    }
}

/// Where and why a step failed: failures with one fingerprint are one incident.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    id: String,
    topic: String,
    event_type: String,
    consumer: String,
    cause: Cause,
}

impl Fingerprint {
    /// The fingerprint of a failure of `consumer` on an event of type `event_type` read from
    /// `topic`, for `cause` (see [`Cause::of`]).
    pub fn of(topic: &str, event_type: &str, consumer: &str, cause: Cause) -> Self {
        let mut hash = Sha256::new();
        // Each part with its length ahead of it, so no two lists of parts hash the same bytes
        // (`ab` + `c` is not `a` + `bc`).
        for part in [
            DOMAIN,
            topic,
            event_type,
            consumer,
            cause.kind(),
            cause.as_str(),
        ] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        let id = hash.finalize()[..8]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Fingerprint {
            id,
            topic: topic.to_owned(),
            event_type: event_type.to_owned(),
            consumer: consumer.to_owned(),
            cause,
        }
    }

    /// 16 lower-case hex digits: the first 64 bits of a SHA-256 over the parts.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    pub fn cause(&self) -> &Cause {
        &self.cause
    }
}

/// `error` with the parts that vary between failures of one cause replaced, so they group:
///
/// - a quoted value (`'…'`, `"…"`, `` `…` ``, on one line) keeps its quotes around `…`;
/// - a URL keeps its scheme and host (the dependency that failed), its port becomes `<n>`,
///   its path and query `/…`, credentials go;
/// - e-mail addresses become `<email>`, UUIDs `<uuid>`, ISO 8601 dates and times and times of
///   day `<time>`, IPv4 and IPv6 addresses `<ip>`;
/// - a word of 8 characters or more holding a digit, or made of hex digits only, becomes
///   `<id>` (`7f9c8d2a`, `12345678`);
/// - every other number becomes `<n>`, with its sign and its decimal or thousands part
///   (`-2.5`, `1,234`), also inside a word: `2s` → `<n>s`, `beneficiary:42` →
///   `beneficiary:<n>`, `pdf-renderer:8080` → `pdf-renderer:<n>`.
///
/// So no ASCII digit survives. Runs of white space become one space; the result is cut at
/// [`MAX_CAUSE_CHARS`] characters, marked with `…`. docs/incidents.md gives the rule to
/// consumers.
pub fn normalise_error(error: &str) -> String {
    let mut out = Normalised::default();
    let mut at = 0;
    while at < error.len() && out.chars <= MAX_CAUSE_CHARS {
        at = normalise_one(error, at, &mut out);
    }
    out.finish()
}

/// Normalises the part of `text` that starts at byte `at`; returns where the next part starts.
fn normalise_one(text: &str, at: usize, out: &mut Normalised) -> usize {
    let bytes = text.as_bytes();
    let byte = bytes[at];
    let prev = at.checked_sub(1).map(|i| bytes[i]);
    let word_start = !prev.is_some_and(|b| b.is_ascii_alphanumeric());
    if !byte.is_ascii() {
        let c = text[at..].chars().next().expect("`at` is a char boundary");
        match c.is_whitespace() {
            true => out.space(),
            false => out.push_char(c),
        }
        return at + c.len_utf8();
    }
    if char::from(byte).is_whitespace() {
        out.space();
        return at + 1;
    }
    if let Some(end) = quoted(text, at) {
        let quote = char::from(byte);
        out.push_char(quote);
        out.push("…");
        out.push_char(quote);
        return end;
    }
    if word_start {
        if let Some((end, url)) = url(text, at) {
            out.push(&url);
            return end;
        }
        for (shape, placeholder) in SHAPES {
            if let Some(end) = shape(bytes, at) {
                out.push(placeholder);
                return end;
            }
        }
        // A sign belongs to its number, and `-5` is the same cause as `5`.
        if matches!(byte, b'-' | b'+') && digit_at(bytes, at + 1) {
            return at + 1;
        }
    }
    if byte.is_ascii_alphanumeric() {
        return word(bytes, at, out);
    }
    out.push_char(char::from(byte));
    at + 1
}

/// What a part of the text that starts a word may be, tried in this order; the first that
/// matches wins. Each returns where the part ends.
type Shape = fn(&[u8], usize) -> Option<usize>;
const SHAPES: [(Shape, &str); 5] = [
    (email, "<email>"),
    (uuid, "<uuid>"),
    (time, "<time>"),
    (ipv4, "<ip>"),
    (ipv6, "<ip>"),
];

/// A word (a run of ASCII letters and digits): an id as a whole, or its numbers replaced.
fn word(bytes: &[u8], at: usize, out: &mut Normalised) -> usize {
    let end = run(bytes, at, |b| b.is_ascii_alphanumeric());
    let word = &bytes[at..end];
    if word.len() >= MIN_ID_LEN
        && (word.iter().any(u8::is_ascii_digit) || word.iter().all(u8::is_ascii_hexdigit))
    {
        out.push("<id>");
        return end;
    }
    let mut i = at;
    while let Some(&byte) = bytes.get(i) {
        if byte.is_ascii_digit() {
            i = number(bytes, i);
            out.push("<n>");
        } else if byte.is_ascii_alphabetic() {
            out.push_char(char::from(byte));
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// The end of the number at `at`: its digits, and each `.` or `,` with digits after it.
fn number(bytes: &[u8], at: usize) -> usize {
    let mut end = run(bytes, at, |b| b.is_ascii_digit());
    while matches!(bytes.get(end), Some(b'.' | b',')) && digit_at(bytes, end + 1) {
        end = run(bytes, end + 1, |b| b.is_ascii_digit());
    }
    end
}

/// A quoted value: a quote that does not follow a letter (so not the one in `can't`), up to
/// the same quote not followed by one, on the same line.
fn quoted(text: &str, at: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let quote = bytes[at];
    if !matches!(quote, b'\'' | b'"' | b'`')
        || text[..at]
            .chars()
            .next_back()
            .is_some_and(char::is_alphanumeric)
    {
        return None;
    }
    let limit = bytes.len().min(at + 1 + MAX_QUOTED_LEN);
    (at + 1..limit)
        .take_while(|&i| bytes[i] != b'\n')
        .find(|&i| {
            bytes[i] == quote
                && !text[i + 1..]
                    .chars()
                    .next()
                    .is_some_and(char::is_alphanumeric)
        })
        .map(|close| close + 1)
}

/// A URL: `scheme://` and what follows up to white space or a quote, less a sentence's
/// closing punctuation. Its host is kept, its port and path replaced.
fn url(text: &str, at: usize) -> Option<(usize, String)> {
    let bytes = text.as_bytes();
    if !bytes[at].is_ascii_alphabetic() {
        return None;
    }
    let scheme_end = run_within(bytes, at, 33, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-')
    });
    if scheme_end - at > 32 || !text[scheme_end..].starts_with("://") {
        return None;
    }
    let start = scheme_end + 3;
    let mut end = run(bytes, start, |b| {
        b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'`' | b'<' | b'>')
    });
    while end > start
        && matches!(
            bytes[end - 1],
            b'.' | b',' | b';' | b':' | b'!' | b'?' | b')'
        )
    {
        end -= 1;
    }
    let rest = &text[start..end];
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    // Credentials are nobody's business in an incident's title.
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!host.starts_with('[') || host.ends_with(']')) =>
        {
            (host, true)
        }
        _ => (host_port, false),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let host = match ipv4(bare.as_bytes(), 0).or_else(|| ipv6(bare.as_bytes(), 0)) {
        Some(len) if len == bare.len() => "<ip>".to_owned(),
        _ => normalise_error(host),
    };
    let scheme = normalise_error(&text[at..scheme_end]);
    let mut url = format!("{scheme}://{host}");
    if port {
        url.push_str(":<n>");
    }
    match path {
        "" | "/" => url.push_str(path),
        _ => url.push_str("/…"),
    }
    Some((end, url))
}

/// `local@domain.tld`.
fn email(bytes: &[u8], at: usize) -> Option<usize> {
    let local = run_within(bytes, at, 65, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
    });
    if local == at || local - at > 64 || bytes.get(local) != Some(&b'@') {
        return None;
    }
    let mut end = local + 1;
    let mut labels = 0;
    // A domain name is 253 characters at most, in labels of 63 at most.
    while end - local <= 254 {
        let label = run_within(bytes, end, 64, |b| b.is_ascii_alphanumeric() || b == b'-');
        if label == end || label - end > 63 {
            break;
        }
        labels += 1;
        let last = &bytes[end..label];
        end = label;
        if bytes.get(end) == Some(&b'.')
            && bytes.get(end + 1).is_some_and(u8::is_ascii_alphanumeric)
        {
            end += 1;
        } else {
            let top_level = last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic);
            return (labels >= 2 && top_level).then_some(end);
        }
    }
    None
}

/// `8-4-4-4-12` hex digits.
fn uuid(bytes: &[u8], at: usize) -> Option<usize> {
    let mut end = at;
    for (index, len) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if index > 0 {
            (bytes.get(end) == Some(&b'-')).then_some(())?;
            end += 1;
        }
        (run_within(bytes, end, len + 1, |b| b.is_ascii_hexdigit()) == end + len).then_some(())?;
        end += len;
    }
    Some(end)
}

/// An ISO 8601 date (`2026-03-01`), with its time and zone if it has them
/// (`2026-03-01T09:30:00.5+01:00`, `2026-03-01 09:30:00Z`); or a time of day (`09:30:00`).
fn time(bytes: &[u8], at: usize) -> Option<usize> {
    let date = digits(bytes, at, 4)
        .and_then(|end| literal(bytes, end, b'-'))
        .and_then(|end| digits(bytes, end, 2))
        .and_then(|end| literal(bytes, end, b'-'))
        .and_then(|end| digits(bytes, end, 2));
    let Some(date) = date else {
        return time_of_day(bytes, at);
    };
    let with_time = match bytes.get(date) {
        Some(b'T' | b' ') => time_of_day(bytes, date + 1),
        _ => None,
    };
    let Some(end) = with_time else {
        return Some(date);
    };
    let zone = match bytes.get(end) {
        Some(b'Z') => Some(end + 1),
        Some(b'+' | b'-') => digits(bytes, end + 1, 2).map(|hours| {
            let minutes = literal(bytes, hours, b':').unwrap_or(hours);
            digits(bytes, minutes, 2).unwrap_or(hours)
        }),
        _ => None,
    };
    Some(zone.unwrap_or(end))
}

/// `9:30:00`, `09:30:00.123`: hours, minutes and seconds, and a fraction.
fn time_of_day(bytes: &[u8], at: usize) -> Option<usize> {
    let hours = run_within(bytes, at, 3, |b| b.is_ascii_digit());
    if !(1..=2).contains(&(hours - at)) {
        return None;
    }
    let end = literal(bytes, hours, b':')
        .and_then(|end| digits(bytes, end, 2))
        .and_then(|end| literal(bytes, end, b':'))
        .and_then(|end| digits(bytes, end, 2))?;
    match bytes.get(end) {
        Some(b'.' | b',') if digit_at(bytes, end + 1) => {
            Some(run(bytes, end + 1, |b| b.is_ascii_digit()))
        }
        _ => Some(end),
    }
}

/// Four numbers of up to three digits joined by dots, and no fifth.
fn ipv4(bytes: &[u8], at: usize) -> Option<usize> {
    let mut end = at;
    for index in 0..4 {
        if index > 0 {
            end = literal(bytes, end, b'.')?;
        }
        let group = run_within(bytes, end, 4, |b| b.is_ascii_digit());
        if !(1..=3).contains(&(group - end)) {
            return None;
        }
        end = group;
    }
    let fifth = bytes.get(end) == Some(&b'.') && digit_at(bytes, end + 1);
    (!fifth && !digit_at(bytes, end)).then_some(end)
}

/// Groups of up to four hex digits joined by colons: eight of them, or fewer around one
/// `::`; with a digit, so `add::face` in a text is not an address.
fn ipv6(bytes: &[u8], at: usize) -> Option<usize> {
    let end = run_within(bytes, at, 40, |b| b.is_ascii_hexdigit() || b == b':');
    let address = &bytes[at..end];
    if address.len() > 39 || bytes.get(end).is_some_and(u8::is_ascii_alphanumeric) {
        return None;
    }
    let colons = address.iter().filter(|&&b| b == b':').count();
    let shortened = address.windows(2).filter(|pair| pair == b"::").count();
    let groups_fit = address.split(|&b| b == b':').all(|group| group.len() <= 4);
    let shape = match shortened {
        0 => colons == 7 && address.split(|&b| b == b':').all(|group| !group.is_empty()),
        1 => (2..=7).contains(&colons) && !address.windows(3).any(|triple| triple == b":::"),
        _ => false,
    };
    (shape && groups_fit && address.iter().any(u8::is_ascii_digit)).then_some(end)
}

/// The end of the run of bytes from `at` that `belongs` accepts.
fn run(bytes: &[u8], at: usize, belongs: impl Fn(u8) -> bool) -> usize {
    run_within(bytes, at, usize::MAX, belongs)
}

/// [`run`], looking at `max` bytes at most. Shapes are tried at every word's start, so a
/// shape that does not consume what it looked at must look at a bounded part, or a long
/// run of short words (`a-b-c-…`) would cost its length squared.
fn run_within(bytes: &[u8], at: usize, max: usize, belongs: impl Fn(u8) -> bool) -> usize {
    at + bytes[at.min(bytes.len())..]
        .iter()
        .take(max)
        .take_while(|&&b| belongs(b))
        .count()
}

/// The end of exactly `count` digits at `at`, and no more.
fn digits(bytes: &[u8], at: usize, count: usize) -> Option<usize> {
    (run_within(bytes, at, count + 1, |b| b.is_ascii_digit()) == at + count).then_some(at + count)
}

fn literal(bytes: &[u8], at: usize, expected: u8) -> Option<usize> {
    (bytes.get(at) == Some(&expected)).then_some(at + 1)
}

fn digit_at(bytes: &[u8], at: usize) -> bool {
    bytes.get(at).is_some_and(u8::is_ascii_digit)
}

/// The normalised text as it is written: white space collapsed, its length counted.
#[derive(Default)]
struct Normalised {
    text: String,
    chars: usize,
    /// White space was seen since the last part: one space goes before the next.
    space: bool,
}

impl Normalised {
    fn space(&mut self) {
        self.space = true;
    }

    fn push(&mut self, part: &str) {
        if std::mem::take(&mut self.space) && !self.text.is_empty() {
            self.text.push(' ');
            self.chars += 1;
        }
        self.text.push_str(part);
        self.chars += part.chars().count();
    }

    fn push_char(&mut self, c: char) {
        self.push(c.encode_utf8(&mut [0; 4]));
    }

    fn finish(mut self) -> String {
        if self.chars > MAX_CAUSE_CHARS {
            let cut = self
                .text
                .char_indices()
                .nth(MAX_CAUSE_CHARS)
                .map_or(self.text.len(), |(at, _)| at);
            self.text.truncate(cut);
            self.text.push('…');
        }
        self.text
    }
}

#[cfg(test)]
#[path = "fingerprint_tests.rs"]
mod tests;
